"""Figures of critical points: 2-D contour maps, eigenvalue spectra, eigenvector slices.

* d = 2: :func:`plot_critical_points_2d` — the function's contours and gradient field
  (:func:`surrogates.plots.plot_contour`) with every critical point marked by its kind.
* d > 2: :func:`plot_eigenvalue_spectra` — the Hessian eigenvalues of each point on a
  symmetric-log axis, with the band |λ| ≤ τ inside which an eigenvalue counts as zero;
  :func:`plot_eigenvector_slices` — f on the plane x* + a·v_min + b·v_max through each
  point, spanned by the eigenvectors of its smallest and largest eigenvalue (the
  directions of least and most curvature; a saddle shows as a saddle in this plane).

:func:`write_figures` picks the figures for the dimension and writes PNGs atomically.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from surrogates import calculus
from surrogates.critical.report import CriticalPointReport
from surrogates.errors import InputError
from surrogates.io import write_with
from surrogates.surrogate import Surrogate

__all__ = ["MARKERS", "plot_critical_points_2d", "plot_eigenvalue_spectra", "plot_eigenvector_slices", "write_figures"]

#: (marker, colour) per kind.
MARKERS = {
    "minimum": ("o", "tab:blue"),
    "maximum": ("^", "tab:red"),
    "saddle": ("X", "tab:orange"),
    "degenerate": ("s", "tab:purple"),
}


def _torch_callable(f: Any):
    """The torch callable behind a Surrogate, or f itself."""
    return f.model if isinstance(f, Surrogate) else f


def plot_critical_points_2d(
    f: Any, report: CriticalPointReport, ax: Axes | None = None, resolution: int = 120
) -> Axes:
    """Contours and gradient field of a 2-D f over the report's box, critical points marked by kind.

    Points outside the box (extrapolation) are drawn hollow.

    Args:
        f: A scalar surrogate of two inputs, or a torch callable (N, 2) → (N,).
        report: Result of :func:`surrogates.critical.find_critical_points` for f.
        ax: Axes to draw into (default: a new figure).
        resolution: Grid points per axis of the contours.

    Raises:
        ValueError: The report is not of a 2-D function.
    """
    from surrogates.plots import plot_contour

    if len(report.lower) != 2:
        raise InputError(f"plot_critical_points_2d needs a 2-D function, the report has d = {len(report.lower)}")
    ax = plot_contour(f, report.lower, report.upper, ax=ax, resolution=resolution, gradient_field=True)
    for kind, (marker, colour) in MARKERS.items():
        for inside in (True, False):
            chosen = [p for p in report.points if p.kind == kind and p.in_domain == inside]
            if not chosen:
                continue
            xy = np.array([p.x for p in chosen])
            label = f"{kind} ({len(chosen)})" + ("" if inside else " outside domain")
            ax.scatter(
                xy[:, 0], xy[:, 1], marker=marker, s=90, label=label, zorder=5, linewidths=1.5, clip_on=False,
                facecolors=colour if inside else "none", edgecolors="white" if inside else colour,
            )
    ax.set_xlim(report.lower[0], report.upper[0])
    ax.set_ylim(report.lower[1], report.upper[1])
    if report.points:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4, fontsize="small", frameon=False)
        ax.figure.subplots_adjust(bottom=0.2)
    ax.set_title(f"critical points ({len(report.points)}); degenerate when |λ̃| ≤ {report.degenerate_tolerance:.2g} (λ̃ of DHD)")
    return ax


def plot_eigenvalue_spectra(report: CriticalPointReport, ax: Axes | None = None) -> Axes:
    """Scaled Hessian eigenvalues of every critical point (x: point number, y: λ̃ on a symlog axis).

    λ̃ are the eigenvalues of D H D, D = diag(box widths) — the Hessian in the box's unit
    coordinates, which the classification uses (same signs as H's). The grey band is |λ̃| ≤ τ
    (the degeneracy tolerance); marker colour says the sign.
    """
    ax = ax if ax is not None else Figure(figsize=(max(6.0, 0.5 * len(report.points) + 3), 4.5)).subplots()
    tau = report.degenerate_tolerance
    ax.axhspan(-tau, tau, color="0.85", label=f"|λ| ≤ τ = {tau:.2g}")
    ax.axhline(0.0, color="0.4", linewidth=0.6)
    for number, p in enumerate(report.points):
        lam = p.scaled_eigenvalues if p.scaled_eigenvalues is not None else p.eigenvalues
        colours = np.where(lam > tau, "tab:blue", np.where(lam < -tau, "tab:red", "tab:purple"))
        ax.scatter(np.full(lam.shape, number), lam, c=list(colours), marker="_", s=300, linewidths=2)
    ax.set_yscale("symlog", linthresh=max(tau, np.finfo(float).tiny))
    ax.set_xticks(range(len(report.points)))
    ax.set_xticklabels(
        [f"{n}\n{p.kind[:3]} {p.index}{'' if p.in_domain else '*'}" for n, p in enumerate(report.points)], fontsize="small"
    )
    ax.set_xlabel("critical point: number, kind, index (* = outside the domain)")
    ax.set_ylabel("scaled Hessian eigenvalue λ̃ (of DHD)")
    ax.set_title("Hessian spectrum at each critical point (blue > 0, red < 0, purple ≈ 0)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), fontsize="small", frameon=False)
    return ax


def plot_eigenvector_slices(
    f: Any, report: CriticalPointReport, max_points: int = 9, radius: float = 0.25, resolution: int = 61
) -> Figure:
    """f on the plane through each critical point spanned by its extreme-eigenvalue eigenvectors.

    Panel k shows f(x*_k + a·v_min + b·v_max) for a, b ∈ [−r, r], with r = ``radius`` ·
    (box diagonal / √d), i.e. a fraction of the box's typical side.

    Args:
        f: A scalar surrogate or a torch callable (N, d) → (N,), d ≥ 2.
        report: Result of :func:`surrogates.critical.find_critical_points` for f.
        max_points: Panels at most (the first points of the report).
        radius: Half-width of each slice as a fraction of the typical box side.
        resolution: Grid points per axis.

    Raises:
        ValueError: d < 2 or no points to show.
    """
    d = len(report.lower)
    if d < 2:
        raise InputError(f"eigenvector slices need d ≥ 2, the report has d = {d}")
    points = report.points[:max_points]
    if not points:
        raise InputError("the report has no critical points to slice through")
    fn = _torch_callable(f)
    half = radius * float(np.linalg.norm(report.upper - report.lower)) / math.sqrt(d)
    grid = torch.linspace(-half, half, resolution, dtype=torch.float64)
    a, b = torch.meshgrid(grid, grid, indexing="xy")
    columns = math.ceil(math.sqrt(len(points)))
    rows = math.ceil(len(points) / columns)
    figure = Figure(figsize=(3.6 * columns, 3.3 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax, (number, p) in zip(axes.flat, enumerate(points)):
        vectors = torch.as_tensor(p.eigenvectors, dtype=torch.float64)
        centre = torch.as_tensor(p.x, dtype=torch.float64)
        plane = centre + a.reshape(-1, 1) * vectors[:, 0] + b.reshape(-1, 1) * vectors[:, -1]
        values: Tensor = calculus.value(fn, plane, dtype=torch.float64)
        values = values.reshape(resolution, resolution).numpy()
        filled = ax.contourf(a.numpy(), b.numpy(), values, levels=25, cmap="viridis")
        ax.contour(a.numpy(), b.numpy(), values, levels=12, colors="k", linewidths=0.4, alpha=0.5)
        marker, colour = MARKERS[p.kind]
        ax.scatter([0.0], [0.0], marker=marker, c=colour, edgecolors="white", s=80, zorder=5)
        figure.colorbar(filled, ax=ax)
        ax.set_xlabel(f"v_min (λ={p.eigenvalues[0]:.3g})", fontsize="small")
        ax.set_ylabel(f"v_max (λ={p.eigenvalues[-1]:.3g})", fontsize="small")
        ax.set_title(f"#{number} {p.kind}{'' if p.in_domain else ' (outside)'}", fontsize="small")
    for ax in list(axes.flat)[len(points):]:
        ax.set_visible(False)
    figure.suptitle("f through each critical point along its extreme eigenvectors")
    figure.tight_layout()
    return figure


def _save(figure: Figure, path: Path) -> Path:
    return write_with(path, lambda tmp: figure.savefig(tmp, dpi=120))


def write_figures(f: Any, report: CriticalPointReport, output_dir: str | Path) -> dict[str, Path]:
    """Write the figures suited to the dimension into ``output_dir``.

    d = 2: ``critical_points.png``. Otherwise ``eigenvalues.png`` and, for d ≥ 2 with at
    least one point, ``slices.png``.

    Returns:
        Figure name → path.
    """
    output_dir = Path(output_dir)
    d = len(report.lower)
    written: dict[str, Path] = {}
    if d == 2:
        ax = plot_critical_points_2d(f, report)
        written["critical_points"] = _save(ax.figure, output_dir / "critical_points.png")
        return written
    ax = plot_eigenvalue_spectra(report)
    ax.figure.tight_layout()
    written["eigenvalues"] = _save(ax.figure, output_dir / "eigenvalues.png")
    if d >= 2 and report.points:
        written["slices"] = _save(plot_eigenvector_slices(f, report), output_dir / "slices.png")
    return written
