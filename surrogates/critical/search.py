"""The search for critical points of a smooth scalar function: find, refine, deduplicate.

A critical point of f: R^d → R is a zero of its gradient, ∇f(x*) = 0. Minima, maxima
and saddles are all critical points, so the search does not minimise f: it solves the
nonlinear system g(x) = ∇f(x) = 0, whose Jacobian is the (symmetric) Hessian H(x).

**Units.** Every tolerance is judged in the box's unit coordinates u = (x − lower) / w,
w = upper − lower, not in the data's units: with D = diag(w) the gradient there is
g̃ = D ∇f and the Hessian H̃ = D H D. An input's unit is then irrelevant (pressure in bar
or pascal, temperature in kelvin or millikelvin: the same points, kinds and indices),
whereas in data units a tolerance relative to ‖H‖₂ is dominated by the input with the
narrowest range, and a clear minimum whose other inputs span hundreds of units would
look flat along them. H̃ and H have the same inertia (Sylvester), so the signs that
decide the kind are the data's; only "≈ 0" is measured in the scaled coordinates.
Reported eigenvalues and gradient norms are in data units, with the scaled ones
alongside (``scaled_eigenvalues``, ``scaled_gradient_norm``).

**Search.** Many starts — a scrambled Sobol sequence over the box — are refined at
once (one batched gradient / Hessian evaluation per iteration for all active starts)
by Levenberg–Marquardt on g̃ = 0 in float64. With H̃ = V Λ Vᵀ (``torch.linalg.eigh``),
the step (in u) minimising ‖g̃ + H̃ δ‖² + μ‖δ‖² is

    δ = −V diag(λ_i / (λ_i² + μ)) Vᵀ g̃,   and x moves by D δ,

which is the Newton step −H⁻¹g for μ → 0 (quadratic convergence at a non-degenerate
zero, whatever the signs of the λ_i) and a short step along −H̃g̃ = −∇_u(½‖g̃‖²) for large μ.
μ is adapted per start: divided by 10 when a step lowers ‖g̃‖, multiplied by 10 (and
the step retried) when it does not. Iterates are clamped to the box widened by
``box_margin`` of its width on each side, so a start can reach a critical point on or
just beyond the box's boundary but never wander far into extrapolation.

**Convergence.** A start has converged when ‖g̃‖ = ‖D∇f‖ ≤ ``gradient_tol`` · G, with G
the median ‖D∇f‖ over the starts (the function's own gradient scale); the others are
dropped and counted.

**Deduplication.** Converged points closer than ``dedup_tol`` · √d in unit coordinates
(√d = the unit box's diagonal; for a cube this is ``dedup_tol`` · the box's diagonal)
are one point; the member with the smallest ‖g̃‖ represents it.

The points are classified by :mod:`surrogates.critical.classify` and reported as
:class:`~surrogates.critical.report.CriticalPointReport`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from surrogates import calculus
from surrogates.critical.classify import (
    KIND_ORDER,
    classify,
    greedy_groups,
    merge_degenerate,
    scaled_hessian,
)
from surrogates.critical.report import CriticalPoint, CriticalPointReport
from surrogates.domain import check_box
from surrogates.errors import InputError

__all__ = ["find_critical_points"]

#: Points outside the box by less than this fraction of its width count as inside (rounding).
_DOMAIN_ROUNDING = 1e-9
#: Initial μ of a start, relative to its λ_max² (nearly a Newton step).
_INITIAL_DAMPING = 1e-6
#: μ beyond this times the start's initial λ_max² means no step lowers ‖g‖ any more: give up.
_MAX_DAMPING = 1e6


# --------------------------------------------------------------------------- helpers


def _box(lower: Any, upper: Any) -> tuple[Tensor, Tensor]:
    """Validated float64 (d,) corners as tensors."""
    lo, hi = check_box(lower, upper, "critical-point search box")
    return torch.from_numpy(lo), torch.from_numpy(hi)


def _float64(f: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """f evaluated in float64: a float64 copy of an nn.Module (once, not per call)."""
    if isinstance(f, nn.Module):
        floating = [t for t in (*f.parameters(), *f.buffers()) if t.is_floating_point()]
        if any(t.dtype != torch.float64 for t in floating):
            return copy.deepcopy(f).to(torch.float64)
    return f


def _values(f: Callable[[Tensor], Tensor], X: Tensor, chunk_size: int | None) -> Tensor:
    """f at the rows of X as (n,); ValueError unless f is scalar ((n,) or (n, 1))."""
    values = calculus.value(f, X, chunk_size=chunk_size)
    if values.ndim == 2:
        if values.shape[1] != 1:
            raise InputError(f"critical points need a scalar f, but f returns {values.shape[1]} outputs per point")
        values = values[:, 0]
    return values


def _gradient_and_hessian(f: Callable[[Tensor], Tensor], X: Tensor, chunk_size: int | None) -> tuple[Tensor, Tensor]:
    """(∇f (n, d), H (n, d, d)) for scalar f."""
    hessian = calculus.hessian(f, X, chunk_size=chunk_size)
    return calculus.gradient(f, X, chunk_size=chunk_size), hessian.reshape(X.shape[0], X.shape[1], X.shape[1])


def _positive_scale(norms: Tensor) -> float:
    """Median of the positive entries (a scale that a few zeros cannot collapse); 1 if none."""
    positive = norms[norms > 0]
    return float(positive.median()) if positive.numel() else 1.0




def _levenberg_marquardt(
    f: Callable[[Tensor], Tensor],
    X: Tensor,
    low: Tensor,
    high: Tensor,
    width: Tensor,
    gradient_tolerance: float,
    max_iterations: int,
    chunk_size: int | None,
    gradient: Tensor,
    hessian: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """Batched LM on ∇f = 0 from the rows of X (with ∇f, H already evaluated there), stepping
    in the unit coordinates of the box of widths ``width`` (g̃ = D∇f, H̃ = DHD, x moves by Dδ).

    Returns:
        (X, ∇f, H in data units, converged mask, iterations run).
    """
    eigenvalues, eigenvectors = torch.linalg.eigh(scaled_hessian(hessian, width))
    curvature = eigenvalues.abs().amax(-1).square().clamp_min(torch.finfo(X.dtype).tiny)
    damping, damping_limit = _INITIAL_DAMPING * curvature, _MAX_DAMPING * curvature
    norms = (gradient * width).norm(dim=-1)
    active = norms > gradient_tolerance
    iterations = 0
    while active.any() and iterations < max_iterations:
        iterations += 1
        rows = torch.nonzero(active).flatten()
        lam, vec, g = eigenvalues[rows], eigenvectors[rows], gradient[rows] * width
        coefficients = lam / (lam.square() + damping[rows, None]) * (vec.transpose(-1, -2) @ g[..., None])[..., 0]
        step = (vec @ coefficients[..., None])[..., 0] * width
        trial = torch.minimum(torch.maximum(X[rows] - step, low), high)
        trial_gradient = calculus.gradient(f, trial, chunk_size=chunk_size)
        better = (trial_gradient * width).norm(dim=-1) < norms[rows]
        accepted, rejected = rows[better], rows[~better]
        damping[rejected] *= 10.0
        damping[accepted] = damping[accepted] / 10.0
        if accepted.numel():
            X[accepted] = trial[better]
            gradient[accepted], hessian[accepted] = _gradient_and_hessian(f, trial[better], chunk_size)
            eigenvalues[accepted], eigenvectors[accepted] = torch.linalg.eigh(scaled_hessian(hessian[accepted], width))
            norms[accepted] = (gradient[accepted] * width).norm(dim=-1)
        active = (norms > gradient_tolerance) & (damping < damping_limit)
    return X, gradient, hessian, norms <= gradient_tolerance, iterations


# --------------------------------------------------------------------------- the search


def find_critical_points(
    f: Callable[[Tensor], Tensor],
    lower: Sequence[float] | np.ndarray | Tensor,
    upper: Sequence[float] | np.ndarray | Tensor,
    *,
    starts: int = 512,
    seed: int = 0,
    max_iterations: int = 100,
    gradient_tol: float = 1e-9,
    dedup_tol: float = 1e-3,
    degenerate_rtol: float = 0.05,
    degenerate_merge_tol: float = 0.05,
    box_margin: float = 0.05,
    chunk_size: int | None = None,
) -> CriticalPointReport:
    """All critical points ∇f = 0 of a smooth scalar f reachable from Sobol starts in a box.

    The method and every tolerance are described in the module docstring.

    Args:
        f: Smooth torch callable (N, d) → (N,) or (N, 1) treating rows independently,
            e.g. a surrogate's ``model``, or an analytic function. nn.Modules are
            evaluated through a float64 copy; plain callables receive float64 points.
        lower: (d,) lower corner of the domain (a surrogate's training box).
        upper: (d,) upper corner.
        starts: Number of scrambled Sobol starting points in the box.
        seed: Seed of the Sobol scrambling.
        max_iterations: Levenberg–Marquardt iterations at most.
        gradient_tol: Converged when ‖D∇f‖ ≤ gradient_tol · (median ‖D∇f‖ over the starts),
            D = diag(upper − lower).
        dedup_tol: Points within dedup_tol · √d of each other in the box's unit
            coordinates (x − lower) / (upper − lower) are the same point.
        degenerate_rtol: A scaled eigenvalue (of D H D) with |λ̃| ≤ degenerate_rtol ·
            (median ‖D H D‖₂ over the starts) counts as zero (the point is degenerate).
        degenerate_merge_tol: Degenerate points within degenerate_merge_tol · √d of each
            other (unit coordinates) are merged into one.
        box_margin: Iterates stay in the box widened by this fraction of its width per side.
        chunk_size: Points per derivative chunk (memory bound; see :mod:`surrogates.calculus`).

    Returns:
        A :class:`CriticalPointReport`; its ``points`` are :class:`CriticalPoint` objects.

    Raises:
        InputError: Invalid box or settings, or f is not scalar.
    """
    low_box, high_box = _box(lower, upper)
    for name, number in (("starts", starts), ("max_iterations", max_iterations)):
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise InputError(f"{name} must be a positive integer, got {number!r}")
    for name, number in (
        ("gradient_tol", gradient_tol),
        ("dedup_tol", dedup_tol),
        ("degenerate_rtol", degenerate_rtol),
        ("degenerate_merge_tol", degenerate_merge_tol),
    ):
        if not (isinstance(number, (int, float)) and math.isfinite(number) and number > 0):
            raise InputError(f"{name} must be a positive number, got {number!r}")
    if not (isinstance(box_margin, (int, float)) and 0 <= box_margin < 1):
        raise InputError(f"box_margin must be in [0, 1), got {box_margin!r}")
    settings = {
        "starts": starts,
        "seed": seed,
        "max_iterations": max_iterations,
        "gradient_tol": gradient_tol,
        "dedup_tol": dedup_tol,
        "degenerate_rtol": degenerate_rtol,
        "degenerate_merge_tol": degenerate_merge_tol,
        "box_margin": box_margin,
    }

    started = time.perf_counter()
    f = _float64(f)
    d = low_box.numel()
    width = high_box - low_box
    low, high = low_box - box_margin * width, high_box + box_margin * width
    sobol = torch.quasirandom.SobolEngine(dimension=d, scramble=True, seed=seed)
    X = low_box + width * sobol.draw(starts, dtype=torch.float64)

    _values(f, X[:1], chunk_size)  # is f scalar?
    gradient, hessian = _gradient_and_hessian(f, X, chunk_size)
    # scales and tolerances in the box's unit coordinates: independent of the inputs' units
    gradient_scale = _positive_scale((gradient * width).norm(dim=-1))
    hessian_scale = _positive_scale(torch.linalg.matrix_norm(scaled_hessian(hessian, width), ord=2))
    gradient_tolerance = gradient_tol * gradient_scale
    degenerate_tolerance = degenerate_rtol * hessian_scale
    unit_diagonal = math.sqrt(d)

    X, gradient, hessian, converged, iterations = _levenberg_marquardt(
        f, X, low, high, width, gradient_tolerance, max_iterations, chunk_size, gradient, hessian
    )
    X, gradient, hessian = X[converged], gradient[converged], hessian[converged]
    n_converged = int(converged.sum())

    points: list[CriticalPoint] = []
    if n_converged:
        scaled_norms = (gradient * width).norm(dim=-1)
        unit = (X - low_box) / width
        unique = [group[0] for group in greedy_groups(unit, torch.argsort(scaled_norms), dedup_tol * unit_diagonal)]
        X, unit, gradient, hessian = X[unique], unit[unique], gradient[unique], hessian[unique]
        norms, scaled_norms = gradient.norm(dim=-1), scaled_norms[unique]
        eigenvalues, eigenvectors = torch.linalg.eigh(hessian)
        scaled_eigenvalues = torch.linalg.eigvalsh(scaled_hessian(hessian, width))
        classified = [classify(lam, degenerate_tolerance) for lam in scaled_eigenvalues]
        keep, merged = merge_degenerate(unit, scaled_eigenvalues, classified, degenerate_merge_tol * unit_diagonal)
        values = _values(f, X, chunk_size)
        tolerance = _DOMAIN_ROUNDING * width
        inside = torch.all((X >= low_box - tolerance) & (X <= high_box + tolerance), dim=-1)
        for row, count in zip(keep, merged):
            magnitudes = eigenvalues[row].abs()
            smallest = float(magnitudes.min())
            kind, index = classified[row]
            points.append(
                CriticalPoint(
                    x=X[row].numpy().copy(),
                    value=float(values[row]),
                    gradient_norm=float(norms[row]),
                    eigenvalues=eigenvalues[row].numpy().copy(),
                    kind=kind,
                    index=index,
                    in_domain=bool(inside[row]),
                    condition_number=float(magnitudes.max()) / smallest if smallest > 0 else math.inf,
                    eigenvectors=eigenvectors[row].numpy().copy(),
                    merged=count,
                    scaled_eigenvalues=scaled_eigenvalues[row].numpy().copy(),
                    scaled_gradient_norm=float(scaled_norms[row]),
                )
            )
        points.sort(key=lambda p: (KIND_ORDER[p.kind], p.index, p.value))

    return CriticalPointReport(
        points=points,
        lower=low_box.numpy(),
        upper=high_box.numpy(),
        starts=starts,
        converged=n_converged,
        not_converged=starts - n_converged,
        iterations=iterations,
        gradient_tolerance=gradient_tolerance,
        gradient_scale=gradient_scale,
        hessian_scale=hessian_scale,
        degenerate_tolerance=degenerate_tolerance,
        dedup_distance=dedup_tol * unit_diagonal,
        degenerate_merge_distance=degenerate_merge_tol * unit_diagonal,
        seconds=time.perf_counter() - started,
        settings=settings,
    )
