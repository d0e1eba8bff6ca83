"""Critical points found by a search, and their exports: :class:`CriticalPoint`,
:class:`CriticalPointReport` (table, JSON, CSV)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from surrogates.io import write_json, write_with

#: Classification labels, as in :mod:`surrogates.fitting.functions`.
KINDS = ("minimum", "maximum", "saddle", "degenerate")


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
