"""Crash-safe output writing.

Every file the package writes goes through :func:`atomic_write`: the bytes go to a
temporary file in the destination folder, are flushed to disk, and only then renamed
over the destination. A run killed mid-write therefore leaves either the old file or
the new one, never a truncated mixture. The file gets the permissions a plain ``open()``
would give it (0666 minus the umask, e.g. 0644), not a private temporary file's 0600.

Output folders are created by :func:`output_folder`; a folder that cannot exist (a
regular file in the way, no permission) is an :class:`OutputError` naming the path.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from surrogates.errors import OutputError

#: Attempts at a fresh temporary name before giving up (names are 48 random bits).
_TEMPORARY_NAME_ATTEMPTS = 100


def check_output_folder(path: str | os.PathLike) -> Path:
    """Raise :class:`OutputError` unless ``path`` is a folder or could be created as one.

    Only looks: the nearest existing path among ``path`` and its parents must be a folder
    (not, say, the data file ``data.csv`` in ``data.csv/run``).
    """
    path = Path(path)
    for existing in (path, *path.parents):
        if existing.exists() or existing.is_symlink():
            if not existing.is_dir():
                where = "it is" if existing == path else f"{existing} is"
                raise OutputError(f"output folder {path} cannot be created: {where} a file, not a folder")
            break
    return path


def output_folder(path: str | os.PathLike) -> Path:
    """Create the folder ``path`` (with its parents) for results and return it.

    Raises:
        OutputError: a regular file is in the way, or the folder cannot be created (e.g. no
            permission); the message names the path.
    """
    path = check_output_folder(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"output folder {path} cannot be created: {err.strerror or err}") from None
    return path


def _new_temporary(folder: Path, name: str) -> Path:
    """Create an empty, new ``.<name>.<random>.tmp`` in ``folder`` and return its path.

    Unlike ``tempfile.mkstemp`` (mode 0600, for private scratch files) it is created with mode
    0666 and the process umask applied by the system, so the renamed result has the
    permissions any other file the user writes would have.
    """
    for _ in range(_TEMPORARY_NAME_ATTEMPTS):
        tmp = folder / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        os.close(handle)
        return tmp
    raise FileExistsError(f"no free temporary file name for {folder / name} after {_TEMPORARY_NAME_ATTEMPTS} attempts")


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it is renamed onto ``path``.

    Args:
        path: Final destination. Its parent folder is created if missing.

    Yields:
        A path in the same folder as ``path`` (so the final rename is atomic), an empty file
        with mode 0666 & ~umask (what ``open(path, "w")`` would create).
        The temporary file is removed if the body raises.

    Raises:
        OutputError: The parent folder cannot be created (a file in the way, no permission).
    """
    path = Path(path)
    tmp = _new_temporary(output_folder(path.parent), path.name)
    mode = stat.S_IMODE(os.stat(tmp).st_mode)  # 0666 & ~umask, as the system applied it
    try:
        yield tmp
        if stat.S_IMODE(os.stat(tmp).st_mode) != mode:  # a writer that replaced the file (safetensors: 0600)
            os.chmod(tmp, mode)
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "detach") and hasattr(obj, "tolist"):  # torch.Tensor without importing torch here
        return obj.detach().cpu().tolist()
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` (dicts, lists, numpy/torch arrays and scalars) as indented JSON."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(_to_jsonable(obj), indent=2, allow_nan=True) + "\n")
    return Path(path)


def write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Atomically write ``path`` with ``writer(tmp_path)`` (e.g. ``np.savez``, ``fig.savefig``).

    The temporary path keeps the destination's suffix so writers that pick a format from
    the file name (matplotlib, numpy) behave as they would on ``path``.
    """
    path = Path(path)
    with atomic_write(path) as tmp:
        named = tmp.with_name(tmp.name + path.suffix)
        try:
            writer(named)
            os.replace(named, tmp)
        finally:
            named.unlink(missing_ok=True)
    return path
