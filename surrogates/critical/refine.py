"""Zoom in on critical points of a black box: :func:`refine_critical_points`.

A global surrogate must be accurate everywhere; near one critical point a surrogate fitted to
samples in a small box around it is far more accurate in its curvature. This module samples
that box, fits a local surrogate (:func:`surrogates.fit`) and searches it again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from surrogates.critical.report import CriticalPoint, CriticalPointReport
from surrogates.critical.search import find_critical_points
from surrogates.errors import DataError, InputError
from surrogates.fitting.fit import fit
from surrogates.fitting.sampling import sample_box
from surrogates.fitting.sources import evaluate_callable
from surrogates.surrogate import Surrogate


@dataclass
class LocalRefinement:
    """A critical point re-found on a surrogate fitted only to samples around it.

    Attributes:
        start: (d,) the point zoomed in on (e.g. a critical point of a global surrogate).
        lower: (d,) lower corner of the local box.
        upper: (d,) upper corner.
        surrogate: The local surrogate.
        report: Critical points of the local surrogate in the local box.
        point: The in-box critical point nearest ``start`` (None if the local search found none:
            the start was not near a critical point of the function).
    """

    start: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    surrogate: Surrogate
    report: CriticalPointReport
    point: CriticalPoint | None


def refine_critical_points(
    function: Callable[[np.ndarray], Any],
    points: Sequence[CriticalPoint | np.ndarray],
    lower: Sequence[float],
    upper: Sequence[float],
    radius: float = 0.075,
    samples: int = 2000,
    overrides: Sequence[str] = (),
    starts: int = 64,
    seed: int = 0,
    log: Callable[[str], None] | None = print,
) -> list[LocalRefinement]:
    """Zoom in on critical points of a black box: sample around each, refit, search again.

    A global surrogate must be accurate everywhere; near one point a surrogate fitted to
    samples in a small box is far more accurate in its curvature (10-D ``convex_sines``, 2000
    samples each: every eigenvalue of the minimum within 2 % of exact from the local fit, some
    eigenvalue more than 5 % off from the global one; asserted by the slow test
    ``test_convex_10d_minimum_zoomed_in_has_eigenvalues_within_2_percent``). For each point p, ``samples`` Sobol points fill the box
    p ± radius·(upper − lower), clipped to [lower, upper]; the local fit's critical points in
    that box are found by :func:`~surrogates.critical.find_critical_points`.

    Args:
        function: The black box: (N, d) float64 numpy inputs → (N,) outputs.
        points: Where to zoom in: :class:`CriticalPoint` objects or (d,) arrays.
        lower: (d,) lower corner of the domain.
        upper: (d,) upper corner.
        radius: Half-width of the local box as a fraction of the domain's width per axis.
        samples: Black-box evaluations per point.
        overrides: Hydra overrides for the local fits (as :func:`surrogates.fit`), applied after
            the ``model=accurate`` preset those fits start from.
        starts: Sobol starts of each local search.
        seed: Seeds the local designs, fits and searches.
        log: Called with one line per point (None: silent).

    Returns:
        One :class:`LocalRefinement` per point, in order.
    """
    lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    if not 0 < radius <= 0.5:
        raise InputError(f"refine_critical_points: radius must be in (0, 0.5] (a fraction of the domain's width), got {radius}")
    if int(samples) != samples or samples < 2:
        raise InputError(f"refine_critical_points: samples must be an integer >= 2, got {samples!r}")
    refinements = []
    for number, point in enumerate(points):
        start = np.asarray(point.x if isinstance(point, CriticalPoint) else point, dtype=np.float64)
        if start.shape != lower.shape:
            raise InputError(f"point {number} has shape {start.shape}; the domain is {lower.shape[0]}-dimensional")
        half = radius * (upper - lower)
        local_lower, local_upper = np.maximum(start - half, lower), np.minimum(start + half, upper)
        X = sample_box(samples, local_lower, local_upper, "sobol", np.random.default_rng([seed, number]))
        y = evaluate_callable(function, X)
        if y.ndim == 2 and y.shape[1] != 1:
            raise DataError(f"critical points need a scalar function; the black box returned {y.shape[1]} outputs per point")
        # model=accurate: a zoom-in exists for the curvature's last digits, and its local fit sees
        # exact black-box values, where the default's polish stops early (tolerance 0.2 left one
        # eigenvalue of 10-D convex_sines 2.05 % off; 0.01 gets it within 2 %)
        surrogate = fit(X, y.reshape(len(X)), overrides=["model=accurate", f"seed={seed}", *overrides],
                        lower=local_lower, upper=local_upper)
        report = find_critical_points(surrogate.model, local_lower, local_upper, starts=starts, seed=seed)
        inside = report.in_domain()
        nearest = min(inside, key=lambda p: float(np.linalg.norm(p.x - start)), default=None)
        refinements.append(LocalRefinement(start, local_lower, local_upper, surrogate, report, nearest))
        if log is not None:
            found = (f"{nearest.kind} at distance {np.linalg.norm(nearest.x - start):.3g} from the start, "
                     f"eigenvalues {np.array2string(nearest.eigenvalues, precision=4)}" if nearest else "no critical point in the box")
            log(f"refined point {number + 1}/{len(points)} with {samples} local samples: {found}")
    return refinements
