"""Designs in a box: uniform, scrambled Sobol, Latin hypercube, grid (:func:`sample_box`)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from surrogates.domain import check_box
from surrogates.errors import DataError

SAMPLERS = ("uniform", "sobol", "lhs", "grid")


def sample_box(
    n: int, lower: Sequence[float], upper: Sequence[float], sampler: str, rng: np.random.Generator
) -> np.ndarray:
    """Draw ``n`` points in the box [lower, upper] ⊂ R^d.

    Args:
        n: Number of points (for ``grid``, rounded down to k^d with k = ⌊n^{1/d}⌋ ≥ 2).
        lower: (d,) lower corner.
        upper: (d,) upper corner.
        sampler: ``uniform`` (i.i.d.), ``sobol`` (scrambled Sobol sequence), ``lhs`` (Latin
            hypercube: one point per stratum in every coordinate), ``grid`` (regular).
        rng: Random generator; for ``uniform`` the draw is ``rng.uniform(lower, upper, (n, d))``
            so seeds reproduce the accuracy protocol exactly.

    Returns:
        (n, d) float64 array.
    """
    lower, upper = check_box(lower, upper, "sampling box", error=DataError)
    if n < 1:
        raise DataError(f"number of samples must be positive, got {n}")
    d = lower.size
    if sampler == "uniform":
        return rng.uniform(lower, upper, size=(n, d))
    if sampler == "sobol":
        seed = int(rng.integers(2**31 - 1))
        unit = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed).draw(n, dtype=torch.float64)
        unit = unit.numpy()
    elif sampler == "lhs":
        strata = np.stack([rng.permutation(n) for _ in range(d)], axis=1)
        unit = (strata + rng.uniform(size=(n, d))) / n
    elif sampler == "grid":
        per_axis = int(math.floor(n ** (1.0 / d) + 1e-9))
        if per_axis < 2:
            raise DataError(f"a grid in {d} dimensions needs at least 2**{d} = {2**d} samples, got {n}")
        axes = [np.linspace(0.0, 1.0, per_axis)] * d
        unit = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, d)
    else:
        raise DataError(f"unknown sampler {sampler!r}; choose one of {list(SAMPLERS)}")
    return lower + unit * (upper - lower)
