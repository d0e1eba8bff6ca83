"""Samples and their checks: :class:`Samples`, :func:`validate_samples`, column statistics.

:func:`validate_samples` rejects what would silently ruin a fit (non-finite rows,
mismatched lengths, constant columns, too few samples, magnitudes a float32 network
overflows on) with an error naming the place. The statistics and checks read large
memory-mapped arrays in chunks and hand the pages back to the OS (:func:`release_pages`).
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from surrogates.errors import DataError
from surrogates.fitting.functions import TestFunction

MIN_SAMPLES = 10


CHUNK_ROWS = 1 << 16


_MAX_MAGNITUDE = 1e30


@dataclass
class Samples:
    """Sampled data of a function R^d → R^m.

    Attributes:
        X: Inputs (N, d); may be a read-only memory map.
        y: Outputs (N, m).
        gradients: Optional derivative samples dy/dx, (N, m, d).
        input_names: d column names.
        output_names: m column names.
        scalar_output: True when the user's outputs were 1-D (N,): predictions are then (N,).
        origin: Where the data came from, for messages ("file data.npz", "function quartic").
        function: The analytic function sampled, if any: its exact derivatives let a fit
            report derivative errors.
        lower: Box the inputs were drawn from (d,), or None for data files.
        upper: See ``lower``.
    """

    X: np.ndarray
    y: np.ndarray
    gradients: np.ndarray | None = None
    input_names: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    scalar_output: bool = True
    origin: str = "arrays"
    function: TestFunction | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def in_dim(self) -> int:
        return int(self.X.shape[1])

    @property
    def out_dim(self) -> int:
        return int(self.y.shape[1])


def to_numpy(array: Any, what: str, origin: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    if isinstance(array, np.memmap):
        return array
    try:
        array = np.asarray(array)
    except (TypeError, ValueError) as err:
        raise DataError(f"{origin}: {what} cannot be read as a numeric array: {err}") from None
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise DataError(f"{origin}: {what} must be real numbers, got dtype {array.dtype}")
    return array


def release_pages(*arrays: Any) -> None:
    """Drop the pages of memory-mapped arrays from this process's resident memory.

    Reading a memory map faults its pages into the process: a pass over a large ``.npy``
    would otherwise leave the whole file counted in the resident set, defeating the map. The
    pages stay in the kernel's page cache, so reading them again is not a disk read. Arrays
    that are not memory maps are left alone.
    """
    for array in arrays:
        handle = getattr(array, "_mmap", None)
        # a copy-on-write map ("c") holds private changes that dropping its pages would discard
        if handle is None or getattr(array, "mode", None) == "c" or not hasattr(mmap, "MADV_DONTNEED"):
            continue
        try:
            handle.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):  # closed map or a platform without madvise: only memory at stake
            pass


def read_rows(array: np.ndarray, rows: np.ndarray, group: int = 512) -> np.ndarray:
    """``array[rows]`` as float64, for sorted ``rows``; gentle on memory maps.

    Each page fault on a memory map maps a whole neighbourhood (the kernel's fault-around,
    64 KiB), so one fancy-indexed read of a few thousand scattered rows can put most of a file
    into the resident set at once. Memory maps are therefore read ``group`` rows at a time and
    their pages released after each group.
    """
    if getattr(array, "_mmap", None) is None:
        return np.asarray(array[rows], dtype=np.float64)
    out = np.empty((len(rows), *array.shape[1:]), dtype=np.float64)
    for start in range(0, len(rows), group):
        out[start : start + group] = array[rows[start : start + group]]
        release_pages(array)
    return out


@dataclass
class ColumnStats:
    """Per-column statistics gathered in one chunked pass (memory maps stay on disk)."""

    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray


def column_stats(array: np.ndarray, rows: np.ndarray | None = None) -> ColumnStats:
    """Mean, std, min and max of each column of a 2-D array, over ``rows`` (default all), in chunks."""
    n_rows = array.shape[0] if rows is None else len(rows)
    total = np.zeros(array.shape[1])
    total_sq = np.zeros(array.shape[1])
    low = np.full(array.shape[1], np.inf)
    high = np.full(array.shape[1], -np.inf)
    shift = np.asarray(array[rows[0] if rows is not None else 0], dtype=np.float64)
    for start in range(0, n_rows, CHUNK_ROWS):
        if rows is None:
            chunk = np.asarray(array[start : start + CHUNK_ROWS], dtype=np.float64)
        else:
            chunk = read_rows(array, np.sort(rows[start : start + CHUNK_ROWS]))
        centred = chunk - shift  # shifted sums keep the variance accurate for large offsets
        total += centred.sum(axis=0)
        total_sq += (centred * centred).sum(axis=0)
        low = np.minimum(low, chunk.min(axis=0))
        high = np.maximum(high, chunk.max(axis=0))
        release_pages(array)
    mean_centred = total / n_rows
    variance = np.maximum(total_sq / n_rows - mean_centred**2, 0.0)
    return ColumnStats(mean=shift + mean_centred, std=np.sqrt(variance), min=low, max=high)


def bad_rows(array: np.ndarray) -> np.ndarray:
    flat = array.reshape(array.shape[0], -1)
    bad = []
    for start in range(0, flat.shape[0], CHUNK_ROWS):
        chunk = np.asarray(flat[start : start + CHUNK_ROWS], dtype=np.float64)
        rows = np.nonzero(~np.all(np.isfinite(chunk), axis=1))[0]
        bad.append(rows + start)
        release_pages(array)
    return np.concatenate(bad)


def row_list(rows: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    return shown + (f", … ({len(rows)} rows in all)" if len(rows) > limit else "")


def validate_samples(samples: Samples) -> None:
    """Check that samples can be fitted; raise :class:`DataError` naming the problem.

    Checks: equal lengths; at least :data:`MIN_SAMPLES` and more samples than inputs;
    no NaN/inf (listing the first offending rows, 0-based); magnitudes below 1e30; no
    constant input or output column (its spread would be a division by zero in the
    normalisation, and a constant input carries no information).
    """
    X, y, where = samples.X, samples.y, samples.origin
    n = X.shape[0]
    if y.shape[0] != n:
        raise DataError(f"{where}: {n} input rows but {y.shape[0]} output rows")
    if samples.gradients is not None and samples.gradients.shape[0] != n:
        raise DataError(f"{where}: {n} input rows but {samples.gradients.shape[0]} gradient rows")
    minimum = max(MIN_SAMPLES, X.shape[1] + 2)
    if n < minimum:
        raise DataError(f"{where}: {n} samples is too few to fit a surrogate in {X.shape[1]} dimensions; need at least {minimum}")
    arrays = {"inputs": X, "outputs": y}
    if samples.gradients is not None:
        arrays["gradients"] = samples.gradients
    for what, array in arrays.items():
        rows = bad_rows(array)
        if rows.size:
            raise DataError(f"{where}: {what} contain NaN or inf in row(s) {row_list(rows)} (0-based)")
    for what, array, names in (("input", X, samples.input_names), ("output", y, samples.output_names)):
        stats = column_stats(array)
        for j, name in enumerate(names):
            if max(abs(stats.min[j]), abs(stats.max[j])) > _MAX_MAGNITUDE:
                raise DataError(
                    f"{where}: {what} column {name!r} reaches magnitude "
                    f"{max(abs(stats.min[j]), abs(stats.max[j])):.3g}, beyond what a network can fit "
                    f"(limit {_MAX_MAGNITUDE:g}); rescale it"
                )
            if stats.max[j] == stats.min[j]:
                raise DataError(
                    f"{where}: {what} column {name!r} is constant ({stats.min[j]:g}); "
                    + ("it carries no information — drop it" if what == "input" else "there is nothing to fit")
                )
