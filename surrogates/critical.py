"""Critical points of a smooth scalar function: find, refine, deduplicate, classify.

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

**Classification.** With the eigenvalues λ̃_1 ≤ … ≤ λ̃_d of H̃(x*) = D H(x*) D and the
tolerance

    τ = ``degenerate_rtol`` · S,   S = median over the starts of ‖H̃(x)‖₂ = max_i |λ̃_i(x)|,

a point is *degenerate* if some |λ̃_i| ≤ τ, else a *minimum* (all λ_i > 0), a *maximum*
(all λ_i < 0) or a *saddle* of index #{λ_i < 0}. Measuring τ against the Hessian's
typical size over the whole box (rather than at the point) is what makes the test
meaningful for a learned function: the surrogate of a function with a degenerate
critical point (e.g. x³ − 3xy² + y³ at the origin, where H = 0) has a small but
nonzero Hessian there, and fitting noise can split the point into a few nearby
critical points with small eigenvalues. Relative to S those eigenvalues are zero
within the surrogate's accuracy, so they are reported degenerate, and degenerate
points closer than ``degenerate_merge_tol`` · √d to each other (unit coordinates) are
merged into the one of smallest ‖H̃‖₂ (its ``merged`` count says how many were combined).

The condition number is max|λ| / min|λ| of H in data units (inf when an eigenvalue is
exactly 0). A
point outside the box [lower, upper] (beyond a rounding allowance of 1e-9 · width) is
flagged ``in_domain = False``: for a surrogate it is extrapolation.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from surrogates import calculus
from surrogates.io import write_json, write_with

__all__ = ["KINDS", "CriticalPoint", "CriticalPointReport", "find_critical_points"]

#: Classification labels, as in :mod:`surrogates.functions`.
KINDS = ("minimum", "maximum", "saddle", "degenerate")

#: Points outside the box by less than this fraction of its width count as inside (rounding).
_DOMAIN_ROUNDING = 1e-9
#: Initial μ of a start, relative to its λ_max² (nearly a Newton step).
_INITIAL_DAMPING = 1e-6
#: μ beyond this times the start's initial λ_max² means no step lowers ‖g‖ any more: give up.
_MAX_DAMPING = 1e6


@dataclass
class CriticalPoint:
    """One critical point x* (∇f(x*) = 0) and its classification.

    Attributes:
        x: (d,) location.
        value: f(x*).
        gradient_norm: ‖∇f(x*)‖ reached by the refinement, in data units.
        eigenvalues: (d,) eigenvalues of the Hessian at x*, ascending, in data units.
        kind: ``"minimum"``, ``"maximum"``, ``"saddle"`` or ``"degenerate"``, decided on
            :attr:`scaled_eigenvalues` (so it does not depend on the inputs' units).
        index: Number of negative eigenvalues; for a degenerate point, the number of
            scaled eigenvalues below −τ (clearly negative).
        in_domain: Whether x* lies in the box the search was given (the training
            domain of a surrogate); ``False`` means extrapolation.
        condition_number: max|λ| / min|λ| of the Hessian (inf if singular).
        eigenvectors: (d, d) orthonormal eigenvectors as columns, in the order of
            ``eigenvalues``.
        merged: How many converged, deduplicated points this one stands for (> 1 only
            for degenerate points merged with nearby degenerate ones).
        scaled_eigenvalues: (d,) ascending eigenvalues of D H D, D = diag(upper − lower):
            the Hessian in the box's unit coordinates, which the classification uses.
        scaled_gradient_norm: ‖D ∇f(x*)‖, what the convergence test uses.
    """

    x: np.ndarray
    value: float
    gradient_norm: float
    eigenvalues: np.ndarray
    kind: str
    index: int
    in_domain: bool
    condition_number: float
    eigenvectors: np.ndarray = field(repr=False)
    merged: int = 1
    scaled_eigenvalues: np.ndarray | None = None
    scaled_gradient_norm: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (arrays as lists)."""
        out = asdict(self)
        for key in ("x", "eigenvalues", "eigenvectors", "scaled_eigenvalues"):
            if out[key] is None:
                continue
            out[key] = np.asarray(out[key]).tolist()
        return out


@dataclass
class CriticalPointReport:
    """Result of :func:`find_critical_points`: the points and how they were obtained.

    Iterating over the report, ``len(report)`` and ``report[i]`` act on :attr:`points`.

    Attributes:
        points: The critical points, sorted by kind (minima, saddles by index, maxima,
            degenerate), then by value.
        lower: (d,) lower corner of the box searched (the domain).
        upper: (d,) upper corner.
        starts: Number of Sobol starts.
        converged: Starts that reached ‖∇f‖ ≤ gradient tolerance.
        not_converged: Starts dropped because they did not.
        iterations: Levenberg–Marquardt iterations run (the slowest start's count).
        gradient_tolerance: Absolute ‖D∇f‖ threshold used (``gradient_tol`` · G), to compare
            with a point's ``scaled_gradient_norm``.
        gradient_scale: G, the median ‖D∇f‖ over the starts.
        hessian_scale: S, the median ‖D H D‖₂ over the starts.
        degenerate_tolerance: τ = ``degenerate_rtol`` · S: scaled eigenvalues with |λ̃| ≤ τ
            count as zero.
        dedup_distance: Points closer than this in unit coordinates are one point
            (``dedup_tol`` · √d).
        degenerate_merge_distance: Degenerate points closer than this (unit coordinates) are merged.
        seconds: Wall time of the search.
        settings: The keyword settings the search ran with.
    """

    points: list[CriticalPoint]
    lower: np.ndarray
    upper: np.ndarray
    starts: int
    converged: int
    not_converged: int
    iterations: int
    gradient_tolerance: float
    gradient_scale: float
    hessian_scale: float
    degenerate_tolerance: float
    dedup_distance: float
    degenerate_merge_distance: float
    seconds: float
    settings: dict[str, Any]

    def __len__(self) -> int:
        return len(self.points)

    def __iter__(self) -> Iterator[CriticalPoint]:
        return iter(self.points)

    def __getitem__(self, item: int) -> CriticalPoint:
        return self.points[item]

    def in_domain(self) -> list[CriticalPoint]:
        """The points inside the box (for a surrogate: supported by data)."""
        return [p for p in self.points if p.in_domain]

    def counts(self) -> dict[str, int]:
        """Number of in-domain points of each kind, plus ``outside`` for the rest."""
        counts = {kind: 0 for kind in KINDS}
        for p in self.in_domain():
            counts[p.kind] += 1
        counts["outside"] = len(self.points) - len(self.in_domain())
        return counts

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the search's facts, then ``points`` (one dict each)."""
        return {
            "dimension": int(len(self.lower)),
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
            "starts": self.starts,
            "converged": self.converged,
            "not_converged": self.not_converged,
            "iterations": self.iterations,
            "gradient_tolerance": self.gradient_tolerance,
            "gradient_scale": self.gradient_scale,
            "hessian_scale": self.hessian_scale,
            "degenerate_tolerance": self.degenerate_tolerance,
            "dedup_distance": self.dedup_distance,
            "degenerate_merge_distance": self.degenerate_merge_distance,
            "seconds": self.seconds,
            "settings": dict(self.settings),
            "counts": self.counts(),
            "points": [p.to_dict() for p in self.points],
        }

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (atomically)."""
        return write_json(path, self.to_dict())

    def csv_text(self) -> str:
        """One row per point: kind, index, in_domain, value, ‖∇f‖, condition number,
        merged, then x_0 … x_{d−1}, lambda_0 … lambda_{d−1} (ascending, data units) and
        scaled_lambda_0 … scaled_lambda_{d−1} (of D H D, which decide the kind)."""
        d = len(self.lower)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(
            ["kind", "index", "in_domain", "value", "gradient_norm", "condition_number", "merged"]
            + [f"x_{i}" for i in range(d)]
            + [f"lambda_{i}" for i in range(d)]
            + [f"scaled_lambda_{i}" for i in range(d)]
        )
        for p in self.points:
            writer.writerow(
                [p.kind, p.index, p.in_domain, repr(p.value), repr(p.gradient_norm), repr(p.condition_number), p.merged]
                + [repr(float(v)) for v in p.x]
                + [repr(float(v)) for v in p.eigenvalues]
                + [repr(float(v)) for v in (p.scaled_eigenvalues if p.scaled_eigenvalues is not None else [math.nan] * d)]
            )
        return buffer.getvalue()

    def write_csv(self, path: str | Path) -> Path:
        """Write :meth:`csv_text` (atomically)."""
        text = self.csv_text()
        return write_with(path, lambda tmp: tmp.write_text(text))

    def table(self, max_coordinates: int = 4) -> str:
        """A readable fixed-width table of the points and a line about the search."""
        d = len(self.lower)
        shown = min(d, max_coordinates)

        def coordinates(x: np.ndarray) -> str:
            text = ", ".join(f"{v:+.4f}" for v in x[:shown])
            return f"({text}{', …' if d > shown else ''})"

        rows = [
            f"{'#':>3}  {'kind':<10} {'index':>5}  {'domain':<7} {'value':>11}  {'|grad|':>8}  "
            f"{'min|λ|':>9} {'max|λ|':>9} {'cond':>9}  x"
        ]
        for number, p in enumerate(self.points):
            magnitudes = np.abs(p.eigenvalues)
            kind = p.kind + (f"×{p.merged}" if p.merged > 1 else "")
            rows.append(
                f"{number:>3}  {kind:<10} {p.index:>5}  {'inside' if p.in_domain else 'OUTSIDE':<7} "
                f"{p.value:>11.4g}  {p.gradient_norm:>8.1e}  {magnitudes.min():>9.3g} {magnitudes.max():>9.3g} "
                f"{p.condition_number:>9.3g}  {coordinates(p.x)}"
            )
        rows.append(
            f"{len(self.points)} critical points from {self.starts} starts ({self.converged} converged, "
            f"{self.not_converged} dropped) in {self.seconds:.2f} s; degenerate when a scaled eigenvalue |λ̃| ≤ "
            f"{self.degenerate_tolerance:.3g} (= {self.settings['degenerate_rtol']:g} × median ‖DHD‖₂ {self.hessian_scale:.3g}, "
            "D = diag(box widths); λ columns in data units); "
            "OUTSIDE = beyond the domain box (extrapolation)"
        )
        return "\n".join(rows)


# --------------------------------------------------------------------------- helpers


def _box(lower: Any, upper: Any) -> tuple[Tensor, Tensor]:
    """Validated float64 (d,) corners."""
    try:
        lo = torch.as_tensor(np.asarray(lower, dtype=np.float64)).reshape(-1)
        hi = torch.as_tensor(np.asarray(upper, dtype=np.float64)).reshape(-1)
    except (TypeError, ValueError) as err:
        raise ValueError(f"lower and upper must be numeric (d,) arrays: {err}") from None
    if lo.shape != hi.shape or lo.numel() == 0:
        raise ValueError(f"lower and upper must have the same length d ≥ 1, got {tuple(lo.shape)} and {tuple(hi.shape)}")
    if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise ValueError("lower and upper must be finite")
    if not (hi > lo).all():
        raise ValueError(f"every upper bound must exceed its lower bound, got lower={lo.tolist()} upper={hi.tolist()}")
    return lo, hi


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
            raise ValueError(f"critical points need a scalar f, but f returns {values.shape[1]} outputs per point")
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


def _greedy_groups(X: Tensor, order: Tensor, radius: float) -> list[list[int]]:
    """Partition rows of X: take the next row in ``order`` not yet grouped as a representative,
    group with it every ungrouped row within ``radius``. Returns groups, representative first."""
    distances = torch.cdist(X, X)
    free = torch.ones(X.shape[0], dtype=torch.bool)
    groups = []
    for row in order.tolist():
        if not free[row]:
            continue
        members = torch.nonzero(free & (distances[row] <= radius)).flatten().tolist()
        members.remove(row)
        groups.append([row, *members])
        free[[row, *members]] = False
    return groups


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
    eigenvalues, eigenvectors = torch.linalg.eigh(_scaled_hessian(hessian, width))
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
            eigenvalues[accepted], eigenvectors[accepted] = torch.linalg.eigh(_scaled_hessian(hessian[accepted], width))
            norms[accepted] = (gradient[accepted] * width).norm(dim=-1)
        active = (norms > gradient_tolerance) & (damping < damping_limit)
    return X, gradient, hessian, norms <= gradient_tolerance, iterations


def _scaled_hessian(hessian: Tensor, width: Tensor) -> Tensor:
    """D H D with D = diag(width): the Hessian (…, d, d) in the box's unit coordinates."""
    return hessian * (width[:, None] * width[None, :])


def _classify(eigenvalues: Tensor, tolerance: float) -> tuple[str, int]:
    """Kind and index from ascending scaled eigenvalues (see the module docstring)."""
    if bool((eigenvalues.abs() <= tolerance).any()):
        return "degenerate", int((eigenvalues < -tolerance).sum())
    index = int((eigenvalues < 0).sum())
    if index == 0:
        return "minimum", 0
    if index == eigenvalues.numel():
        return "maximum", index
    return "saddle", index


_KIND_ORDER = {kind: rank for rank, kind in enumerate(("minimum", "saddle", "maximum", "degenerate"))}


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
        ValueError: Invalid box or settings, or f is not scalar.
    """
    low_box, high_box = _box(lower, upper)
    for name, number in (("starts", starts), ("max_iterations", max_iterations)):
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ValueError(f"{name} must be a positive integer, got {number!r}")
    for name, number in (
        ("gradient_tol", gradient_tol),
        ("dedup_tol", dedup_tol),
        ("degenerate_rtol", degenerate_rtol),
        ("degenerate_merge_tol", degenerate_merge_tol),
    ):
        if not (isinstance(number, (int, float)) and math.isfinite(number) and number > 0):
            raise ValueError(f"{name} must be a positive number, got {number!r}")
    if not (isinstance(box_margin, (int, float)) and 0 <= box_margin < 1):
        raise ValueError(f"box_margin must be in [0, 1), got {box_margin!r}")
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
    hessian_scale = _positive_scale(torch.linalg.matrix_norm(_scaled_hessian(hessian, width), ord=2))
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
        unique = [group[0] for group in _greedy_groups(unit, torch.argsort(scaled_norms), dedup_tol * unit_diagonal)]
        X, unit, gradient, hessian = X[unique], unit[unique], gradient[unique], hessian[unique]
        norms, scaled_norms = gradient.norm(dim=-1), scaled_norms[unique]
        eigenvalues, eigenvectors = torch.linalg.eigh(hessian)
        scaled_eigenvalues = torch.linalg.eigvalsh(_scaled_hessian(hessian, width))
        classified = [_classify(lam, degenerate_tolerance) for lam in scaled_eigenvalues]
        keep, merged = _merge_degenerate(unit, scaled_eigenvalues, classified, degenerate_merge_tol * unit_diagonal)
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
        points.sort(key=lambda p: (_KIND_ORDER[p.kind], p.index, p.value))

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


def _merge_degenerate(
    X: Tensor, eigenvalues: Tensor, classified: list[tuple[str, int]], radius: float
) -> tuple[list[int], list[int]]:
    """Rows to keep and how many points each stands for, merging degenerate points (rows of X, in
    unit coordinates) within ``radius`` of each other into the one with the smallest ‖H̃‖₂ of the
    scaled ``eigenvalues`` (nearest to the flat centre)."""
    degenerate = [row for row, (kind, _) in enumerate(classified) if kind == "degenerate"]
    keep = [row for row, (kind, _) in enumerate(classified) if kind != "degenerate"]
    merged = [1] * len(keep)
    if degenerate:
        rows = torch.tensor(degenerate)
        spectral = eigenvalues[rows].abs().amax(-1)
        for group in _greedy_groups(X[rows], torch.argsort(spectral), radius):
            keep.append(degenerate[group[0]])
            merged.append(len(group))
    return keep, merged
