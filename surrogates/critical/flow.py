"""Gradient flows of a smooth scalar function in a box, and the basins of attraction of its minima.

**The flow.** Steepest descent in the box's unit coordinates u = (x − lower) / w, D = diag(w):

    du/dt = −∇_u f = −D ∇f(x),   i.e.   dx/dt = −D² ∇f(x)

(``ascent=True`` flips the sign). Steepest descent depends on the metric: the plain
dx/dt = −∇f would bend the paths, and so move the boundaries between basins, when an input
is measured in other units (x_i → c x_i scales the i-th velocity by 1/c² rather than 1/c).
In unit coordinates the flow is the same whatever the inputs' units. Its fixed points are
f's critical points in any metric; only the paths between them depend on it.

**Integrator: exponential Rosenbrock–Euler with an embedded error estimate.** With
F(u) = ∓D∇f (the velocity) and its Jacobian J = ∓D H D = V diag(μ) Vᵀ (symmetric, so
``torch.linalg.eigh`` gives the φ-functions exactly), a step of length h is

    u⁺ = u + h φ₁(hJ) F(u),   φ₁(z) = (eᶻ − 1) / z,

the linearised flow integrated exactly. It is exact when f is quadratic, whatever the
curvatures, so a stiff flow (curvatures of very different sizes in unit coordinates) costs
nothing: an explicit Runge–Kutta method would need h μ_max ≲ 3 for stability and
O(κ log(1/tol)) steps to settle into a minimum of condition number κ, while here the stiff
modes are integrated exactly and, near a minimum (h → ∞, all μ < 0), the step becomes
Newton's step −H̃⁻¹g̃ and the end of the path converges quadratically. On a general f it
is second order (Hochbruck, Ostermann & Schweitzer, SIAM J. Numer. Anal. 47, 2009); its
local error is estimated by the difference to their embedded third-order method exprb32,

    e = 2h φ₃(hJ) (F(u⁺) − F(u) − J (u⁺ − u)),   φ₃(z) = (eᶻ − 1 − z − z²/2) / z³,

which needs no evaluation beyond F(u⁺). A step is accepted when ‖e‖ ≤ ``step_tol`` and
‖u⁺ − u‖ ≤ ``max_step`` (both in unit coordinates: fractions of the box), and h is scaled by
0.9 (step_tol / ‖e‖)^{1/3} clipped to [0.2, 5]. The path is the accepted points, at most
``max_step`` apart, each step within about ``step_tol`` of the true flow; the errors add up
along a path (on the double well (x² − 1)² + y², whose flow has a closed form, four paths
deviated from it by at most 2.5e-3, 6.1e-4, 1.4e-4 and 3.2e-5 of the box for step_tol =
1e-3, 1e-4, 1e-5 and 1e-6, in 14–19, 20–26, 33–43 and 60–83 steps). So it
is the flow's path and not only its end: a normalised or trust-region descent step would
reach the same minima, but not along the flow, and near a separatrix it can cross it.

**Stops.** Each path stops at the first of

* ``"critical"``: ‖D∇f‖ ≤ ``gradient_tol`` · G, G the median ‖D∇f‖ over 256 scrambled
  Sobol points of the box (seed 0) — the function's own gradient scale, so the test is
  relative and unit-free and does not depend on which starts were given;
* ``"left_domain"``: an accepted step ends outside the box; the path ends where that step's
  chord crosses the boundary;
* ``"max_steps"``: still moving after ``max_steps`` iterations (one attempted step each).

**Basins.** :func:`basins` starts a descent flow at every point of a sample of the box and
assigns it to the minimum its flow reaches: a flow that stops ``"critical"`` within
``match_tol`` · √d (unit coordinates; √d is the unit box's diagonal) of a minimum belongs to
the nearest one; one that leaves the box counts as *outside*; the rest — flows ending at a
saddle, a maximum, a degenerate point or a minimum not in the list, and flows that ran out
of steps — are *unassigned*. The fraction of the box's volume draining to a minimum is
estimated by randomised quasi-Monte Carlo: ``replicates`` independently scrambled Sobol
point sets (Owen scrambling; seeds from ``numpy.random.SeedSequence(seed)``) of
n = ⌈points / replicates⌉ points each give R estimates p̂_r of every fraction, each unbiased;
the report gives their mean and its standard error std(p̂_r) / √R (ddof = 1), the textbook
RQMC error estimate (an interval ±2 stderr holds the truth about 91 % of the time with the
default R = 8, the t-distribution's coverage with 7 degrees of freedom). The points of one
Sobol set are not independent, which is why the error comes from the spread over
replicates and not from the binomial formula. On a regular grid (``grid=r``: the r^d cell
centres, the midpoint rule) nothing is random, and the standard errors are NaN.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from surrogates import calculus
from surrogates.critical.report import CriticalPoint, CriticalPointReport
from surrogates.critical.search import _box, _float64, find_critical_points
from surrogates.errors import InputError
from surrogates.io import write_json

__all__ = ["STOPS", "GradientFlow", "Basin", "BasinReport", "gradient_flow", "basins"]

#: Why a path stopped, in the order of :attr:`GradientFlow.reasons`' codes.
STOPS = ("critical", "left_domain", "max_steps")
_CRITICAL, _LEFT, _MAX_STEPS = range(3)

#: Sobol points of the box whose median ‖D∇f‖ is the gradient scale G.
_PROBE_POINTS = 256
#: Step-size control: safety factor, smallest and largest change of h per step.
_SAFETY, _SHRINK, _GROW = 0.9, 0.2, 5.0
#: First step of a path, in unit coordinates (h then adapts).
_INITIAL_STEP = 1e-3
#: hμ is capped here before exponentiating: such a step along an unstable direction grows by
#: e³⁰ and is rejected by max_step anyway; the cap only keeps the arithmetic finite.
_MAX_EXPONENT = 30.0
#: |z| below this: φ-functions from their Taylor series (the closed forms cancel).
_SERIES_BELOW = 0.5
#: Points outside the box by less than this (unit coordinates) count as inside (rounding).
_ROUNDING = 1e-12


# --------------------------------------------------------------------------- results


@dataclass
class GradientFlow:
    """Paths of a gradient flow (:func:`gradient_flow`), one per starting point.

    Arrays are numpy for numpy (or list) starting points and torch tensors (of the starting
    points' dtype) for a torch input.

    Attributes:
        paths: One (k_i, d) array per start, in data units: the start, then every accepted
            step (the last row is ``ends[i]``). Empty list when ``keep_paths=False``.
        ends: (N, d) where each path stopped.
        reasons: (N,) why each stopped, one of :data:`STOPS` (``"critical"``,
            ``"left_domain"``, ``"max_steps"``), as a numpy array of str.
        steps: (N,) accepted steps of each path.
        scaled_gradient_norms: (N,) ‖D∇f‖ at the end points (for ``"left_domain"``, at the
            last point inside the box).
        gradient_tolerance: The ‖D∇f‖ threshold of ``"critical"`` (``gradient_tol`` · G).
        gradient_scale: G, the median ‖D∇f‖ over Sobol points of the box.
        ascent: Whether the flow climbed (+D²∇f) rather than descended.
        lower: (d,) lower corner of the box.
        upper: (d,) upper corner.
        iterations: Integrator iterations run (the slowest path's count, rejections included).
        seconds: Wall time.
    """

    paths: list[Any]
    ends: Any
    reasons: np.ndarray
    steps: np.ndarray
    scaled_gradient_norms: np.ndarray
    gradient_tolerance: float
    gradient_scale: float
    ascent: bool
    lower: np.ndarray
    upper: np.ndarray
    iterations: int
    seconds: float

    def __len__(self) -> int:
        return len(self.reasons)

    def counts(self) -> dict[str, int]:
        """Number of paths per stop reason."""
        return {reason: int((self.reasons == reason).sum()) for reason in STOPS}


@dataclass
class Basin:
    """The basin of attraction of one minimum.

    Attributes:
        point: The minimum (a :class:`CriticalPoint` of kind ``"minimum"``).
        fraction: Fraction of the box's volume whose descent flow ends at it.
        stderr: Standard error of ``fraction`` over the scrambled Sobol replicates (NaN on a
            grid or with a single replicate).
        count: Sample points assigned to it.
    """

    point: CriticalPoint
    fraction: float
    stderr: float
    count: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"point": self.point.to_dict(), "fraction": self.fraction, "stderr": self.stderr, "count": self.count}


@dataclass
class BasinReport:
    """Result of :func:`basins`: one :class:`Basin` per minimum, and where the rest drains.

    Iterating over the report, ``len(report)`` and ``report[i]`` act on :attr:`basins`.

    Attributes:
        basins: One entry per minimum, in the order of the minima given (or found).
        outside_fraction: Fraction of the box whose flow leaves the box.
        outside_stderr: Its standard error (NaN on a grid or with one replicate).
        unassigned_fraction: Fraction whose flow ends elsewhere: at a saddle, maximum,
            degenerate point or unlisted minimum, or not within ``max_steps``.
        unassigned_stderr: Its standard error.
        critical_points: Every critical point given or found (the minima and the rest).
        samples: (n, d) flow starts, data units.
        labels: (n,) basin index of each start (into :attr:`basins`), −1 = left the box,
            −2 = unassigned.
        ends: (n, d) where each flow stopped.
        reasons: (n,) why each flow stopped (:data:`STOPS`).
        lower: (d,) lower corner of the box.
        upper: (d,) upper corner.
        replicates: Number of independent scrambled Sobol sets (0 for a grid).
        grid: Cells per axis of a grid sample, or None for Sobol.
        match_distance: A flow's end within this distance (unit coordinates) of a minimum
            belongs to it (``match_tol`` · √d).
        gradient_tolerance: ‖D∇f‖ threshold at which a flow stopped as ``"critical"``.
        seconds: Wall time, the critical-point search included.
        settings: The keyword settings used.
    """

    basins: list[Basin]
    outside_fraction: float
    outside_stderr: float
    unassigned_fraction: float
    unassigned_stderr: float
    critical_points: list[CriticalPoint]
    samples: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    ends: np.ndarray = field(repr=False)
    reasons: np.ndarray = field(repr=False)
    lower: np.ndarray = field(repr=False)
    upper: np.ndarray = field(repr=False)
    replicates: int = 0
    grid: int | None = None
    match_distance: float = 0.0
    gradient_tolerance: float = 0.0
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.basins)

    def __iter__(self):
        return iter(self.basins)

    def __getitem__(self, item: int) -> Basin:
        return self.basins[item]

    @property
    def points(self) -> int:
        """Number of flows integrated (sample points)."""
        return len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the per-sample arrays are left out)."""
        return {
            "dimension": int(len(self.lower)),
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
            "points": self.points,
            "replicates": self.replicates,
            "grid": self.grid,
            "basins": [b.to_dict() for b in self.basins],
            "outside_fraction": self.outside_fraction,
            "outside_stderr": self.outside_stderr,
            "unassigned_fraction": self.unassigned_fraction,
            "unassigned_stderr": self.unassigned_stderr,
            "stops": {reason: int((self.reasons == reason).sum()) for reason in STOPS},
            "match_distance": self.match_distance,
            "gradient_tolerance": self.gradient_tolerance,
            "seconds": self.seconds,
            "settings": dict(self.settings),
        }

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (atomically)."""
        return write_json(path, self.to_dict())

    def summary(self) -> str:
        """One line: each minimum's share of the box ± stderr, the outside and unassigned shares."""

        def share(fraction: float, stderr: float) -> str:
            return f"{100 * fraction:.1f} %" + ("" if math.isnan(stderr) else f" ± {100 * stderr:.1f}")

        def where(p: CriticalPoint) -> str:
            return "(" + ", ".join(f"{v:+.3g}" for v in p.x[:4]) + (", …" if len(p.x) > 4 else "") + ")"

        drains = "; ".join(f"{where(b.point)} {share(b.fraction, b.stderr)}" for b in self.basins) or "no minima"
        sample = f"{self.grid}^{len(self.lower)} grid" if self.grid else f"{self.replicates} Sobol replicates"
        return (
            f"basins of {len(self.basins)} minima: {drains}; leaves the box {share(self.outside_fraction, self.outside_stderr)}, "
            f"unassigned {share(self.unassigned_fraction, self.unassigned_stderr)} "
            f"({self.points} descent flows, {sample}, {self.seconds:.2f} s)"
        )


# --------------------------------------------------------------------------- checks


def _checked_box(lower: Any, upper: Any) -> tuple[Tensor, Tensor]:
    try:
        return _box(lower, upper)
    except ValueError as err:
        raise InputError(str(err)) from None


def _positive_int(name: str, number: Any) -> int:
    if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or number < 1:
        raise InputError(f"{name} must be a positive integer, got {number!r}")
    return int(number)


def _positive_float(name: str, number: Any) -> float:
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number) or number <= 0:
        raise InputError(f"{name} must be a positive number, got {number!r}")
    return float(number)


def _check_scalar(f: Callable[[Tensor], Tensor], X: Tensor, chunk_size: int | None) -> None:
    values = calculus.value(f, X[:1], chunk_size=chunk_size)
    if values.ndim == 2 and values.shape[1] != 1:
        raise InputError(f"gradient flows need a scalar f, but f returns {values.shape[1]} outputs per point")


def _starts(x0: Any, d: int) -> tuple[Tensor, bool, torch.dtype]:
    """x0 as float64 (N, d), whether it was numpy, and its dtype for the results."""
    as_numpy = not isinstance(x0, Tensor)
    try:
        X = torch.as_tensor(np.asarray(x0, dtype=np.float64)) if as_numpy else x0.detach().cpu()
    except (TypeError, ValueError) as err:
        raise InputError(f"x0 must be a numeric (N, {d}) or ({d},) array: {err}") from None
    dtype = X.dtype if X.is_floating_point() else torch.float64
    X = X.to(torch.float64)
    X = X[None] if X.ndim == 1 else X
    if X.ndim != 2 or X.shape[1] != d or X.shape[0] == 0:
        raise InputError(f"x0 must have shape (N, {d}) or ({d},) with N ≥ 1 for a {d}-D box, got {tuple(np.shape(x0))}")
    if not torch.isfinite(X).all():
        raise InputError("x0 has non-finite coordinates")
    return X, as_numpy, dtype


# --------------------------------------------------------------------------- the integrator


def _phi(z: Tensor) -> tuple[Tensor, Tensor]:
    """φ₁(z) = (eᶻ − 1)/z and φ₃(z) = (eᶻ − 1 − z − z²/2)/z³ elementwise (φ_k(0) = 1/k!)."""
    z = z.clamp(max=_MAX_EXPONENT)
    small = z.abs() < _SERIES_BELOW
    safe = torch.where(small, torch.ones_like(z), z)
    em1 = torch.expm1(safe)
    phi1 = em1 / safe
    phi3 = (em1 - safe - 0.5 * safe.square()) / safe**3
    # φ_k(z) = Σ_j z^j / (j + k)!; 12 terms reach rounding for |z| < 0.5
    series1, series3 = torch.zeros_like(z), torch.zeros_like(z)
    power = torch.ones_like(z)
    for j in range(12):
        series1 = series1 + power / math.factorial(j + 1)
        series3 = series3 + power / math.factorial(j + 3)
        power = power * z
    return torch.where(small, series1, phi1), torch.where(small, series3, phi3)


def _crossing(inside: Tensor, outside: Tensor) -> Tensor:
    """Where the chord from ``inside`` to ``outside`` (rows, unit coordinates) leaves [0, 1]^d."""
    step = outside - inside
    # fraction of the step at which each coordinate reaches its face (1 where it stays inside)
    to_face = torch.where(outside > 1, (1 - inside) / step, torch.where(outside < 0, -inside / step, torch.ones_like(step)))
    fraction = to_face.clamp(0, 1).amin(dim=-1, keepdim=True)
    return (inside + fraction * step).clamp(0, 1)


def _scaled_eigen(
    f: Callable[[Tensor], Tensor], U: Tensor, low: Tensor, width: Tensor, chunk_size: int | None
) -> tuple[Tensor, Tensor]:
    """Eigenvalues and eigenvectors of D H D (the Hessian in unit coordinates) at unit points U."""
    hessian = calculus.hessian(f, low + width * U, chunk_size=chunk_size).reshape(U.shape[0], U.shape[1], U.shape[1])
    return torch.linalg.eigh(hessian * (width[:, None] * width))


def _integrate(
    f: Callable[[Tensor], Tensor],
    U: Tensor,
    low: Tensor,
    width: Tensor,
    sign: float,
    gradient_tolerance: float,
    step_tol: float,
    max_step: float,
    max_steps: int,
    chunk_size: int | None,
    keep_paths: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, list[Tensor], int]:
    """Batched exponential Rosenbrock–Euler flow du/dt = F(u) = −sign · D∇f from the rows of U.

    Returns:
        (end points U, reason codes, accepted steps, ‖D∇f‖ at the ends, per-path (k_i, d)
        unit-coordinate paths if ``keep_paths``, iterations run).
    """
    n, d = U.shape
    U = U.clone()
    gradient = calculus.gradient(f, low + width * U, chunk_size=chunk_size) * width
    norms = gradient.norm(dim=-1)
    reasons = torch.full((n,), _MAX_STEPS, dtype=torch.long)
    reasons[norms <= gradient_tolerance] = _CRITICAL
    active = reasons == _MAX_STEPS
    steps = torch.zeros(n, dtype=torch.long)
    h = _INITIAL_STEP / norms.clamp_min(torch.finfo(U.dtype).tiny)
    eigenvalues, eigenvectors = torch.zeros(n, d, dtype=U.dtype), torch.zeros(n, d, d, dtype=U.dtype)
    rows = torch.nonzero(active).flatten()
    if rows.numel():
        eigenvalues[rows], eigenvectors[rows] = _scaled_eigen(f, U[rows], low, width, chunk_size)
    visited = [(torch.arange(n), U.clone())] if keep_paths else []

    iterations = 0
    while active.any() and iterations < max_steps:
        iterations += 1
        rows = torch.nonzero(active).flatten()
        vectors, mu = eigenvectors[rows], -sign * eigenvalues[rows]  # J = −sign · D H D = V diag(μ) Vᵀ
        velocity, hr = -sign * gradient[rows], h[rows, None]

        def along(weights: Tensor, vector: Tensor) -> Tensor:  # V diag(weights) Vᵀ vector
            return (vectors @ (weights * (vectors.transpose(-1, -2) @ vector[..., None])[..., 0])[..., None])[..., 0]

        phi1, phi3 = _phi(hr * mu)
        step = along(hr * phi1, velocity)
        trial = U[rows] + step
        trial_gradient = calculus.gradient(f, low + width * trial, chunk_size=chunk_size) * width
        remainder = -sign * trial_gradient - velocity - along(mu, step)
        error = along(2 * hr * phi3, remainder).norm(dim=-1)
        length = step.norm(dim=-1)

        ok = torch.isfinite(error) & torch.isfinite(length) & (error <= step_tol) & (length <= max_step)
        factor = (_SAFETY * (step_tol / error) ** (1 / 3)).nan_to_num(_SHRINK, posinf=_GROW).clamp(_SHRINK, _GROW)
        factor = torch.where(length > max_step, torch.minimum(factor, _SAFETY * max_step / length), factor)
        h[rows] = h[rows] * factor

        accepted, trial, trial_gradient = rows[ok], trial[ok], trial_gradient[ok]
        if accepted.numel():
            leaving = ((trial < -_ROUNDING) | (trial > 1 + _ROUNDING)).any(dim=-1)
            trial[leaving] = _crossing(U[accepted[leaving]], trial[leaving])
            U[accepted], steps[accepted] = trial, steps[accepted] + 1
            reasons[accepted[leaving]] = _LEFT
            inside = accepted[~leaving]
            gradient[inside] = trial_gradient[~leaving]
            norms[inside] = trial_gradient[~leaving].norm(dim=-1)
            reasons[inside[norms[inside] <= gradient_tolerance]] = _CRITICAL
            if keep_paths:
                visited.append((accepted, trial.clone()))
            moving = inside[reasons[inside] == _MAX_STEPS]
            if moving.numel():
                eigenvalues[moving], eigenvectors[moving] = _scaled_eigen(f, U[moving], low, width, chunk_size)
        active = reasons == _MAX_STEPS  # a rejected step leaves its path moving, with a shorter h

    paths: list[Tensor] = []
    if keep_paths:
        owners = torch.cat([owner for owner, _ in visited])
        positions = torch.cat([position for _, position in visited])
        order = torch.sort(owners, stable=True).indices
        paths = list(torch.split(positions[order], torch.bincount(owners, minlength=n).tolist()))
    return U, reasons, steps, norms, paths, iterations


def _gradient_scale(f: Callable[[Tensor], Tensor], low: Tensor, width: Tensor, chunk_size: int | None) -> float:
    """G: median ‖D∇f‖ over Sobol points of the box (a few zeros cannot collapse it; 1 if all vanish)."""
    probe = torch.quasirandom.SobolEngine(low.numel(), scramble=True, seed=0).draw(_PROBE_POINTS, dtype=torch.float64)
    norms = (calculus.gradient(f, low + width * probe, chunk_size=chunk_size) * width).norm(dim=-1)
    positive = norms[norms > 0]
    return float(positive.median()) if positive.numel() else 1.0


def _flow_settings(gradient_tol: float, step_tol: float, max_step: float, max_steps: int) -> dict[str, Any]:
    return {
        "gradient_tol": _positive_float("gradient_tol", gradient_tol),
        "step_tol": _positive_float("step_tol", step_tol),
        "max_step": _positive_float("max_step", max_step),
        "max_steps": _positive_int("max_steps", max_steps),
    }


# --------------------------------------------------------------------------- public functions


def gradient_flow(
    f: Callable[[Tensor], Tensor],
    x0: Any,
    lower: Sequence[float] | np.ndarray | Tensor,
    upper: Sequence[float] | np.ndarray | Tensor,
    ascent: bool = False,
    *,
    gradient_tol: float = 1e-10,
    step_tol: float = 1e-4,
    max_step: float = 0.05,
    max_steps: int = 1000,
    keep_paths: bool = True,
    chunk_size: int | None = None,
) -> GradientFlow:
    """Steepest-descent (or ascent) paths of f from every start, in the box's unit coordinates.

    Integrates du/dt = ∓∇_u f, u = (x − lower)/(upper − lower) — dx/dt = ∓D²∇f with
    D = diag(upper − lower) — for all starts at once, by the exponential Rosenbrock–Euler
    method with error control, until a critical point, the box's boundary or ``max_steps``
    (method, error control and stops: module docstring).

    Args:
        f: Smooth torch callable (N, d) → (N,) or (N, 1) treating rows independently, e.g. a
            surrogate's ``model``. nn.Modules are evaluated through a float64 copy; plain
            callables receive float64 points.
        x0: Starting points (N, d) or one point (d,), inside the box; numpy (or a list) or torch.
        lower: (d,) lower corner of the domain.
        upper: (d,) upper corner.
        ascent: Climb (du/dt = +∇_u f) instead of descending.
        gradient_tol: A path stops at a critical point when ‖D∇f‖ ≤ gradient_tol · G, G the
            median ‖D∇f‖ over 256 Sobol points of the box.
        step_tol: Largest estimated local error of a step, in unit coordinates.
        max_step: Largest step, in unit coordinates.
        max_steps: Integrator iterations at most (each one attempted step of every moving path).
        keep_paths: Record every path (False: only ends, for many starts).
        chunk_size: Points per derivative chunk (memory bound; see :mod:`surrogates.calculus`).

    Returns:
        A :class:`GradientFlow`: ``paths`` (data units), ``ends``, ``reasons``, ``steps``, ….
        numpy starts give numpy arrays, torch starts tensors of their dtype.

    Raises:
        InputError: A bad box, x0 of the wrong shape, non-finite or outside the box, a bad
            setting, or a non-scalar f.
    """
    started = time.perf_counter()
    low, high = _checked_box(lower, upper)
    d = low.numel()
    settings = _flow_settings(gradient_tol, step_tol, max_step, max_steps)
    X, as_numpy, dtype = _starts(x0, d)
    width = high - low
    U = (X - low) / width
    outside = ((U < -_ROUNDING) | (U > 1 + _ROUNDING)).any(dim=-1)
    if outside.any():
        row = int(torch.nonzero(outside)[0])
        raise InputError(
            f"x0 must lie inside the box lower={low.tolist()} upper={high.tolist()}: {int(outside.sum())} of "
            f"{len(U)} starts do not, e.g. row {row} = {X[row].tolist()}"
        )
    f = _float64(f)
    _check_scalar(f, X, chunk_size)
    scale = _gradient_scale(f, low, width, chunk_size)
    tolerance = settings["gradient_tol"] * scale
    ends, reasons, steps, norms, paths, iterations = _integrate(
        f, U.clamp(0, 1), low, width, -1.0 if ascent else 1.0, tolerance, settings["step_tol"], settings["max_step"],
        settings["max_steps"], chunk_size, keep_paths,
    )

    def restore(unit: Tensor) -> Any:
        data = (low + width * unit).to(dtype)
        return data.numpy() if as_numpy else data

    return GradientFlow(
        paths=[restore(path) for path in paths],
        ends=restore(ends),
        reasons=np.array(STOPS)[reasons.numpy()],
        steps=steps.numpy(),
        scaled_gradient_norms=norms.numpy(),
        gradient_tolerance=tolerance,
        gradient_scale=scale,
        ascent=bool(ascent),
        lower=low.numpy(),
        upper=high.numpy(),
        iterations=iterations,
        seconds=time.perf_counter() - started,
    )


def _minima(
    f: Callable[[Tensor], Tensor],
    lower: Tensor,
    upper: Tensor,
    minima: CriticalPointReport | Sequence[CriticalPoint] | None,
    search: dict[str, Any],
    chunk_size: int | None,
) -> tuple[list[CriticalPoint], list[CriticalPoint]]:
    """(every critical point, the minima among them): found in the box, or as given."""
    if minima is None:
        points = find_critical_points(f, lower, upper, chunk_size=chunk_size, **search).points
    else:
        points = list(minima.points if isinstance(minima, CriticalPointReport) else minima)
        wrong = [p for p in points if not isinstance(p, CriticalPoint) or np.shape(p.x) != (lower.numel(),)]
        if wrong:
            raise InputError(f"minima must be CriticalPoints of a {lower.numel()}-D function (or a report), got {wrong[0]!r}")
    # a flow stops where it leaves the box, so a point outside it drains nothing
    points = [p for p in points if p.in_domain]
    return points, [p for p in points if p.kind == "minimum"]


def _samples(d: int, points: int, seed: int, replicates: int, grid: int | None) -> tuple[Tensor, Tensor]:
    """Unit-coordinate starts (n, d) and each one's replicate (n,)."""
    if grid is not None:
        centres = (torch.arange(grid, dtype=torch.float64) + 0.5) / grid
        mesh = torch.meshgrid(*[centres] * d, indexing="xy")
        return torch.stack([axis.reshape(-1) for axis in mesh], dim=1), torch.zeros(grid**d, dtype=torch.long)
    per = math.ceil(points / replicates)
    seeds = np.random.SeedSequence(seed).generate_state(replicates)
    sets = [
        torch.quasirandom.SobolEngine(d, scramble=True, seed=int(s)).draw(per, dtype=torch.float64) for s in seeds
    ]
    return torch.cat(sets), torch.arange(replicates).repeat_interleave(per)


def _fraction(hit: Tensor, replicate: Tensor, replicates: int) -> tuple[float, float]:
    """Mean of the indicator and its standard error over replicates (NaN for fewer than 2)."""
    per = torch.zeros(max(replicates, 1), dtype=torch.float64).index_add_(0, replicate, hit.to(torch.float64))
    per = per / torch.bincount(replicate, minlength=max(replicates, 1)).to(torch.float64)
    stderr = float(per.std() / math.sqrt(replicates)) if replicates > 1 else math.nan
    return float(per.mean()), stderr


def basins(
    f: Callable[[Tensor], Tensor],
    lower: Sequence[float] | np.ndarray | Tensor,
    upper: Sequence[float] | np.ndarray | Tensor,
    minima: CriticalPointReport | Sequence[CriticalPoint] | None = None,
    *,
    points: int = 4096,
    seed: int = 0,
    replicates: int = 8,
    grid: int | None = None,
    match_tol: float = 0.01,
    gradient_tol: float = 1e-10,
    step_tol: float = 1e-3,
    max_step: float = 0.25,
    max_steps: int = 1000,
    search: dict[str, Any] | None = None,
    chunk_size: int | None = None,
) -> BasinReport:
    """The fraction of the box's volume that the descent flow carries to each minimum of f.

    Every start of a sample of the box follows :func:`gradient_flow` (descent, paths not
    kept); flows ending at a critical point within ``match_tol`` · √d (unit coordinates) of
    a minimum are assigned to the nearest minimum. Fractions are means over
    ``replicates`` scrambled Sobol sets, with the standard error of that mean (module
    docstring).

    Args:
        f: Smooth scalar torch callable (N, d) → (N,) or (N, 1), e.g. a surrogate's ``model``.
        lower: (d,) lower corner of the domain.
        upper: (d,) upper corner.
        minima: Critical points (a :class:`CriticalPointReport` or a list of
            :class:`CriticalPoint`); those of kind ``"minimum"`` get a basin. None: the
            in-domain points of :func:`find_critical_points` (settings: ``search``).
        points: Flows in all: ``replicates`` Sobol sets of ⌈points / replicates⌉ each
            (powers of two keep Sobol's balance). Ignored with ``grid``.
        seed: Seed of the Sobol scramblings.
        replicates: Independently scrambled Sobol sets (≥ 2 for a standard error).
        grid: Instead of Sobol points, the centres of a grid of ``grid`` cells per axis
            (grid^d flows; standard errors NaN).
        match_tol: A flow's end within match_tol · √d of a minimum (unit coordinates) belongs to it.
        gradient_tol: See :func:`gradient_flow`.
        step_tol: See :func:`gradient_flow`. Looser than there by default: only where a flow
            ends matters, not its path: of 4096 Sobol starts, the labels at step_tol = 1e-3,
            max_step = 0.25 differed from those at 1e-7, 0.01 in 0 (quartic x⁴ + y⁴ − 4xy + 1),
            0 (its fitted surrogate) and 1 (a cosine landscape of four basins, half its box
            draining out), at 56 % of the CPU time of 1e-4, 0.05 on the surrogate
            (scripts/bench_basins.py).
        max_step: See :func:`gradient_flow`.
        max_steps: See :func:`gradient_flow`.
        search: Keyword settings of :func:`find_critical_points` when ``minima`` is None.
        chunk_size: Points per derivative chunk.

    Returns:
        A :class:`BasinReport`: per minimum ``.point``, ``.fraction``, ``.stderr``; and
        ``.outside_fraction``, ``.unassigned_fraction`` with their standard errors.

    Raises:
        InputError: A bad box or setting (``points``, ``replicates``, ``grid`` …), bad
            ``minima``, or a non-scalar f.
    """
    started = time.perf_counter()
    low, high = _checked_box(lower, upper)
    d = low.numel()
    flow_settings = _flow_settings(gradient_tol, step_tol, max_step, max_steps)
    points = _positive_int("points", points)
    replicates = _positive_int("replicates", replicates)
    if grid is not None:
        grid = _positive_int("grid", grid)
        if grid**d > 2**22:
            raise InputError(f"grid={grid} in {d}-D means {grid**d} flows; use a Sobol sample (grid=None) instead")
    match_tol = _positive_float("match_tol", match_tol)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    f = _float64(f)
    _check_scalar(f, low[None], chunk_size)
    found, minima_points = _minima(f, low, high, minima, dict(search or {}), chunk_size)

    width = high - low
    U, replicate = _samples(d, points, int(seed), replicates, grid)
    sets = 1 if grid is not None else replicates
    tolerance = flow_settings["gradient_tol"] * _gradient_scale(f, low, width, chunk_size)
    ends, reasons, _, _, _, _ = _integrate(
        f, U, low, width, 1.0, tolerance, flow_settings["step_tol"], flow_settings["max_step"],
        flow_settings["max_steps"], chunk_size, keep_paths=False,
    )

    match_distance = match_tol * math.sqrt(d)
    labels = torch.full((len(U),), -2, dtype=torch.long)
    labels[reasons == _LEFT] = -1
    if minima_points:
        centres = (torch.as_tensor(np.array([p.x for p in minima_points]), dtype=torch.float64) - low) / width
        distances = torch.cdist(ends, centres)
        nearest, which = distances.min(dim=1)
        matched = (reasons == _CRITICAL) & (nearest <= match_distance)
        labels[matched] = which[matched]

    entries = []
    for k, p in enumerate(minima_points):
        fraction, stderr = _fraction(labels == k, replicate, sets)
        entries.append(Basin(point=p, fraction=fraction, stderr=stderr, count=int((labels == k).sum())))
    outside, outside_stderr = _fraction(labels == -1, replicate, sets)
    unassigned, unassigned_stderr = _fraction(labels == -2, replicate, sets)
    return BasinReport(
        basins=entries,
        outside_fraction=outside,
        outside_stderr=outside_stderr,
        unassigned_fraction=unassigned,
        unassigned_stderr=unassigned_stderr,
        critical_points=found,
        samples=(low + width * U).numpy(),
        labels=labels.numpy(),
        ends=(low + width * ends).numpy(),
        reasons=np.array(STOPS)[reasons.numpy()],
        lower=low.numpy(),
        upper=high.numpy(),
        replicates=0 if grid is not None else replicates,
        grid=grid,
        match_distance=match_distance,
        gradient_tolerance=tolerance,
        seconds=time.perf_counter() - started,
        settings={"points": points, "seed": int(seed), "replicates": replicates, "grid": grid, "match_tol": match_tol,
                  **flow_settings, "search": dict(search or {})},
    )
