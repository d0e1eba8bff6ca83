"""Derivative queries streamed through Lightning's predict loop.

:func:`query` evaluates any of :data:`QUANTITIES` of a surrogate at many points, batch by
batch, with ``Trainer.predict`` — so a large query set streams with a progress bar, and a
config with devices/strategy spreads it over accelerators. The predict loop must run with
``inference_mode=False``: under inference mode autograd is off and derivative transforms
could return silent zeros, so such a trainer is refused.

Under a multi-process strategy (DDP) ``Trainer.predict`` hands each process only its share of
the batches and returns only that share. Every batch therefore carries its row numbers, whole
batches (the same batches one process would see) are dealt out to the processes, and the
shares are gathered and put back in row order — the result is the single-process result,
in every process.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler

from surrogates.console import lightning_internals_quiet, show_progress_bar
from surrogates.errors import InputError
from surrogates.surrogate import ExtrapolationWarning, Surrogate


def _hessian_eigenvalues(s: Surrogate, X: Tensor) -> Tensor:
    return torch.linalg.eigvalsh(s.hessian(X))


QUANTITIES: dict[str, Callable[[Surrogate, Tensor], Tensor]] = {
    "value": Surrogate.predict,
    "gradient": Surrogate.gradient,
    "jacobian": Surrogate.jacobian,
    "hessian": Surrogate.hessian,
    "laplacian": Surrogate.laplacian,
    "hessian_eigenvalues": _hessian_eigenvalues,
    "jacobian_determinant": Surrogate.jacobian_determinant,
    "log_abs_det_jacobian": Surrogate.log_abs_det_jacobian,
    "divergence": Surrogate.divergence,
    "curl": Surrogate.curl,
}

#: Quantities of square maps only (as many outputs as inputs).
SQUARE_ONLY = ("jacobian_determinant", "log_abs_det_jacobian", "divergence", "curl")


def check_quantities(surrogate: Surrogate, quantities: Sequence[str]) -> list[str]:
    """Validate requested quantity names against :data:`QUANTITIES` and the surrogate's outputs."""
    quantities = list(quantities)
    unknown = [q for q in quantities if q not in QUANTITIES]
    if unknown or not quantities:
        raise InputError(f"unknown quantities {unknown or quantities}; choose from {list(QUANTITIES)}")
    if surrogate.out_dim != 1:
        scalar_only = [q for q in quantities if q in ("gradient", "hessian_eigenvalues")]
        if scalar_only:
            raise InputError(f"{scalar_only} need a scalar surrogate; this one has {surrogate.out_dim} outputs (use jacobian)")
    square_only = [q for q in quantities if q in SQUARE_ONLY]
    if square_only and surrogate.in_dim != surrogate.out_dim:
        raise InputError(
            f"{square_only} need a square map (as many outputs as inputs); this surrogate maps "
            f"{surrogate.in_dim} inputs to {surrogate.out_dim} output(s)"
        )
    return quantities


class DerivativeQuery(L.LightningModule):
    """Predict step = the requested quantities of a surrogate at a batch of points."""

    def __init__(self, surrogate: Surrogate, quantities: Sequence[str]):
        super().__init__()
        self.surrogate = surrogate
        self.model = surrogate.model  # registered, so Lightning moves it to the device
        self.quantities = check_quantities(surrogate, quantities)

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        points, rows = batch
        with warnings.catch_warnings():
            # extrapolation is counted once for the whole query by the caller
            warnings.simplefilter("ignore", ExtrapolationWarning)
            results = {q: QUANTITIES[q](self.surrogate, points).cpu() for q in self.quantities}
        results["rows"] = rows
        return results


class _PointBatches(Dataset):
    """Whole batches of query points by row numbers, with the row numbers (to reassemble shards)."""

    def __init__(self, X: Tensor):
        self.X = X

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, rows: list[int]) -> tuple[Tensor, Tensor]:
        rows = torch.as_tensor(rows, dtype=torch.long)
        return self.X[rows], rows


def _assemble(shards: list[list[dict[str, Tensor]]], quantities: Sequence[str], n: int) -> dict[str, np.ndarray]:
    """Put the batches of every process back in row order; each row exactly once."""
    batches = [b for shard in shards for b in shard]
    rows = torch.cat([b["rows"] for b in batches]) if batches else torch.zeros(0, dtype=torch.long)
    order = torch.argsort(rows)
    if not torch.equal(rows[order], torch.arange(n)):
        raise RuntimeError(f"the predict loop returned {len(rows)} rows for {n} points (missing or repeated rows)")
    return {q: torch.cat([b[q] for b in batches])[order].numpy() for q in quantities}


def grid_points(lower: Sequence[float], upper: Sequence[float], counts: int | Sequence[int], limit: int = 5_000_000) -> np.ndarray:
    """A regular grid over a box, (∏ counts, d), including both corners."""
    lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    d = lower.size
    listed = [counts] * d if np.isscalar(counts) else list(counts)
    if not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in listed):
        raise InputError(f"grid counts must be whole numbers (one, or one per input), got {counts!r}")
    counts = [int(c) for c in listed]
    if len(counts) != d or upper.shape != lower.shape:
        raise InputError(f"grid needs {d} counts and bounds for {d} inputs, got counts {counts}, upper {upper.tolist()}")
    if min(counts) < 1 or not np.all(upper >= lower):
        raise InputError(f"grid counts must be positive and upper ≥ lower, got {counts}, {lower.tolist()}..{upper.tolist()}")
    total = int(np.prod(counts, dtype=np.float64))
    if total > limit:
        raise InputError(f"a grid of {counts} is {total:,} points (limit {limit:,}); lower the counts or pass a points file")
    axes = [np.linspace(lo, hi, c) for lo, hi, c in zip(lower, upper, counts)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, d)


def query(
    surrogate: Surrogate,
    X: np.ndarray,
    quantities: Sequence[str],
    trainer: L.Trainer | None = None,
    batch_size: int = 4096,
    extrapolation: str = "warn",
) -> dict[str, np.ndarray]:
    """Evaluate ``quantities`` of ``surrogate`` at points ``X`` (N, d) with ``Trainer.predict``.

    Args:
        surrogate: The fitted surrogate.
        X: (N, d) query points in data units.
        quantities: Names from :data:`QUANTITIES`.
        trainer: A Lightning trainer with ``inference_mode=False`` (default: CPU, one device,
            built without Lightning's banners and tips, a progress bar only when stdout is a
            terminal).
        batch_size: Points per predict batch (bounds memory).
        extrapolation: Points outside the training box: ``"warn"`` (one
            :class:`~surrogates.surrogate.ExtrapolationWarning` for the whole query, at the
            caller's line), ``"error"`` (raise :class:`~surrogates.surrogate.ExtrapolationError`
            before anything is evaluated) or ``"nan"`` (their rows are NaN in every quantity).

    Returns:
        Quantity name → numpy array with N rows (shapes as the Surrogate methods return them).
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != surrogate.in_dim:
        raise InputError(f"query points must have shape (N, {surrogate.in_dim}), got {X.shape}")
    if batch_size < 1:
        raise InputError(f"batch_size must be positive, got {batch_size}")
    module = DerivativeQuery(surrogate, quantities)
    inside = surrogate.check_domain(X, extrapolation)  # once for all points, not per batch
    if trainer is None:
        with lightning_internals_quiet():  # building a trainer logs Lightning's GPU/TPU banners and tips
            trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, inference_mode=False, enable_model_summary=False,
                                enable_progress_bar=show_progress_bar(None))
    if trainer.predict_loop.inference_mode:
        raise InputError(
            "the trainer runs predict under torch.inference_mode, where autograd is disabled and "
            "derivatives would be silently wrong; create it with Trainer(inference_mode=False)"
        )
    # Whole batches are the unit Lightning's distributed sampler deals out, so each point is
    # evaluated in the same batch as in a single process (identical results, bit for bit).
    dataset = _PointBatches(torch.from_numpy(X))
    loader = DataLoader(
        dataset, sampler=BatchSampler(SequentialSampler(dataset), batch_size, drop_last=False), batch_size=None
    )
    with lightning_internals_quiet():
        batches = trainer.predict(module, loader, return_predictions=True) or []
    shards = [batches]
    if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        # the process group outlives predict; every process receives every share
        shards = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(shards, batches)
    results = _assemble(shards, module.quantities, len(X))
    if extrapolation == "nan":
        for array in results.values():
            array[~inside] = np.nan
    return results
