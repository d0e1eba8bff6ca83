"""Turn the many ways users hold data into one re-iterable stream of weighted batches.

The loss whose curvature we study is the mean over the whole data set,

.. math:: L(\\theta) = \\frac{1}{N}\\sum_{i=1}^{N} \\ell(f_\\theta(x_i), y_i)
          = \\sum_b \\frac{n_b}{N}\\, \\bar\\ell_b(\\theta),

where :math:`\\bar\\ell_b` is the mean loss of batch :math:`b` with :math:`n_b` samples. Weighting
each batch by :math:`n_b/N` (not :math:`1/B`) keeps an uneven last batch exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import InputError

Batch = tuple[Any, Any]


def _as_tensor(a: Any, what: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a
    if isinstance(a, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(a))
    raise TypeError(f"{what} must be a torch.Tensor or numpy array, got {type(a).__name__}")


def _is_array(a: Any) -> bool:
    return isinstance(a, (torch.Tensor, np.ndarray))


def batch_size_of(inputs: Any) -> int:
    """Number of samples in a batch of inputs (a tensor, or a tuple/list whose first item is one)."""
    first = inputs[0] if isinstance(inputs, (tuple, list)) else inputs
    if not isinstance(first, torch.Tensor) or first.ndim == 0:
        raise InputError(
            f"batch inputs must be a tensor with a leading batch dimension (or a tuple of them), got "
            f"{type(first).__name__} with shape {tuple(getattr(first, 'shape', ()))}"
        )
    return int(first.shape[0])


def split_batch(batch: Any) -> Batch:
    """Split one item of a loader into ``(inputs, targets)``; ``targets`` may be ``None``."""
    if isinstance(batch, dict):
        for xk, yk in (("x", "y"), ("inputs", "targets"), ("input", "target")):
            if xk in batch:
                return batch[xk], batch.get(yk)
        raise InputError(f"a dict batch needs keys 'x'/'y' or 'inputs'/'targets'; got keys {sorted(batch)}")
    if isinstance(batch, (tuple, list)):
        if len(batch) == 2:
            return batch[0], batch[1]
        if len(batch) == 1:
            return batch[0], None
        raise InputError(f"a batch must be (inputs, targets); got a {type(batch).__name__} of length {len(batch)}")
    if isinstance(batch, torch.Tensor):
        return batch, None
    raise TypeError(f"cannot read a batch of type {type(batch).__name__}; expected (inputs, targets)")


def check_batch(inputs: Any, targets: Any, index: int) -> int:
    """Validate that inputs and targets agree on the number of samples; return it."""
    n = batch_size_of(inputs)
    if targets is not None and isinstance(targets, torch.Tensor):
        if targets.ndim == 0 or targets.shape[0] != n:
            first = inputs[0] if isinstance(inputs, (tuple, list)) else inputs
            raise InputError(
                f"batch {index}: inputs have shape {tuple(first.shape)} but targets have shape "
                f"{tuple(targets.shape)}; both need the same number of samples along dimension 0"
            )
    return n


class BatchSource:
    """A re-iterable stream of ``(inputs, targets)`` batches over a fixed data set.

    Accepted ``data``:

    * a ``torch.utils.data.DataLoader`` (iterated afresh on every pass);
    * a ``Dataset`` (wrapped in a non-shuffling ``DataLoader`` of ``batch_size``);
    * a pair ``(X, Y)`` of tensors/numpy arrays with the same first dimension (``Y`` may be
      ``None``), cut into chunks of ``batch_size`` (default: one full batch);
    * a list of ``(x, y)`` batches.

    Args:
        data: The data, as above.
        batch_size: Chunk size for arrays and datasets; ``None`` means everything in one batch.
    """

    def __init__(self, data: Any, batch_size: int | None = None):
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise InputError(f"batch_size must be a positive int or None, got {batch_size!r}")
        self._loader: Iterable | None = None
        self._batches: list[Batch] | None = None
        if isinstance(data, DataLoader):
            self._loader = data
        elif isinstance(data, Dataset):
            size = batch_size or len(data)  # type: ignore[arg-type]
            self._loader = DataLoader(data, batch_size=size, shuffle=False)
        elif isinstance(data, tuple) and len(data) == 2 and _is_array(data[0]) and (data[1] is None or _is_array(data[1])):
            X = _as_tensor(data[0], "inputs X")
            Y = None if data[1] is None else _as_tensor(data[1], "targets Y")
            if X.ndim == 0:
                raise InputError("inputs X must have a leading sample dimension; got a 0-d array")
            if Y is not None and (Y.ndim == 0 or Y.shape[0] != X.shape[0]):
                raise InputError(
                    f"inputs X have shape {tuple(X.shape)} but targets Y have shape {tuple(Y.shape)}; "
                    "they need the same number of samples along dimension 0"
                )
            if X.shape[0] == 0:
                raise InputError("the data set is empty (0 samples)")
            size = batch_size or X.shape[0]
            self._batches = [
                (X[i : i + size], None if Y is None else Y[i : i + size]) for i in range(0, X.shape[0], size)
            ]
        elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)) and len(data) > 0:
            self._batches = [split_batch(b) for b in data]
        else:
            raise TypeError(
                "data must be a DataLoader, a Dataset, a pair (X, Y) of arrays, or a non-empty list of "
                f"(x, y) batches; got {type(data).__name__}"
            )

    def __iter__(self) -> Iterator[Batch]:
        if self._batches is not None:
            for i, (x, y) in enumerate(self._batches):
                check_batch(x, y, i)
                yield x, y
            return
        count = 0
        for i, item in enumerate(self._loader or ()):
            x, y = split_batch(item)
            check_batch(x, y, i)
            count += 1
            yield x, y
        if count == 0:
            raise InputError("the data loader yielded no batches")

    @property
    def is_in_memory(self) -> bool:
        """True when the batches are held as tensors (not re-drawn from a loader each pass)."""
        return self._batches is not None
