"""Bring existing networks and data in: state dicts, torch.export/TorchScript archives, arrays.

Checkpoints are untrusted input: every ``torch.load`` here uses ``weights_only=True`` (only
tensors and plain containers can be unpickled), and ``.safetensors`` files are read with
safetensors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from surrogates.errors import CheckpointError, DataError, InputError


def _existing(path: str | os.PathLike, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{what} file not found: {p}")
    return p


def load_state_dict(path: str | os.PathLike, *, key: str | None = None, prefix: str = "") -> dict[str, torch.Tensor]:
    """Read a state dict from a ``torch.save`` file (``weights_only=True``) or ``.safetensors``.

    Args:
        path: The file.
        key: Take ``obj[key]`` from a saved dict (``None``: use ``"state_dict"`` when present,
            as in Lightning checkpoints, else the dict itself).
        prefix: Strip this prefix from keys (e.g. ``"model."`` from a LightningModule checkpoint).

    Raises:
        FileNotFoundError: No such file.
        CheckpointError: The file does not hold a mapping of names to tensors.
    """
    p = _existing(path, "state dict")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj: Any = load_file(str(p))
    else:
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises UnpicklingError/RuntimeError variants
            raise CheckpointError(f"cannot read {p} as a weights-only torch checkpoint: {err}") from err
    if isinstance(obj, Mapping) and key is not None:
        if key not in obj:
            raise CheckpointError(f"{p} has no key {key!r}; keys: {sorted(map(str, obj))[:12]}")
        obj = obj[key]
    elif isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{p} does not hold a state dict (a mapping of parameter names to tensors)")
    return {(k[len(prefix):] if prefix and k.startswith(prefix) else k): v for k, v in obj.items()}


def apply_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "state dict") -> nn.Module:
    """Load ``state`` into ``model`` after checking that it fits exactly.

    Raises:
        CheckpointError: Missing keys, unexpected keys or shape mismatches, all named.
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:8]}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:8]}")
        if wrong:
            parts.append(f"shape mismatches {wrong[:8]}")
        raise CheckpointError(f"{source} does not fit the model {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return model


def load_archive(path: str | os.PathLike) -> nn.Module:
    """Load a ``torch.export`` program (``.pt2``) as a module, or a TorchScript archive.

    Exported programs are specialised to the shapes they were exported with unless dynamic
    shapes were declared; their train/eval mode is fixed at export time.
    """
    p = _existing(path, "model archive")
    if p.suffix == ".pt2":
        return torch.export.load(str(p)).module()
    try:
        return torch.jit.load(str(p), map_location="cpu")
    except RuntimeError as err:
        raise CheckpointError(f"{p} is neither a torch.export .pt2 program nor a TorchScript archive: {err}") from err


def load_surrogate(path: str | os.PathLike) -> nn.Module:
    """The ``nn.Module`` of a surrogate saved by this package (``surrogates.load(path).model``):
    its file, or the training run's folder that holds it."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"surrogate checkpoint file not found: {p}")
    from surrogates.surrogate import (
        load,  # safetensors and the MLP only when a surrogate is asked for
    )

    return load(p).model


def load_arrays(
    path: str | os.PathLike,
    *,
    targets: str | os.PathLike | None = None,
    inputs_key: str = "x",
    targets_key: str = "y",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Inputs and targets from ``.npz`` (keys ``inputs_key``/``targets_key``) or ``.npy`` files.

    Floating arrays become float tensors (dtype kept), integer arrays int64 (class labels).
    ``allow_pickle`` is off: object arrays are refused.
    """
    p = _existing(path, "data")

    def conv(a: np.ndarray, what: str) -> torch.Tensor:
        if a.dtype.kind in "iu":
            return torch.from_numpy(a.astype(np.int64))
        if a.dtype.kind in "fb":
            return torch.from_numpy(np.ascontiguousarray(a))
        raise DataError(f"{what} has unsupported dtype {a.dtype}")

    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            if inputs_key not in z:
                raise DataError(f"{p} has no array {inputs_key!r}; arrays: {sorted(z.files)}")
            X = conv(z[inputs_key], f"{p}[{inputs_key}]")
            Y = conv(z[targets_key], f"{p}[{targets_key}]") if targets_key in z else None
    elif p.suffix == ".npy":
        X = conv(np.load(p, allow_pickle=False), str(p))
        Y = None
    else:
        raise InputError(f"data file {p} must be .npz or .npy")
    if targets is not None:
        tp = _existing(targets, "targets")
        Y = conv(np.load(tp, allow_pickle=False), str(tp))
    if Y is not None and (Y.ndim == 0 or Y.shape[0] != X.shape[0]):
        raise DataError(f"{p}: inputs have shape {tuple(X.shape)} but targets have shape {tuple(Y.shape)}")
    return X, Y
