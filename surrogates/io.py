"""Crash-safe output writing.

Every file the package writes goes through :func:`atomic_write`: the bytes go to a
temporary file in the destination folder, are flushed to disk, and only then renamed
over the destination. A run killed mid-write therefore leaves either the old file or
the new one, never a truncated mixture.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it is renamed onto ``path``.

    Args:
        path: Final destination. Its parent folder is created if missing.

    Yields:
        A path in the same folder as ``path`` (so the final rename is atomic).
        The temporary file is removed if the body raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        yield tmp
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
