"""Figures of critical points: 2-D contour maps, eigenvalue spectra, eigenvector slices.

* d = 2: :func:`plot_critical_points_2d` — the function's contours and gradient field
  (:func:`surrogates.plots.plot_contour`) with every critical point marked by its kind.
* d = 2: :func:`plot_basins_2d` — the basins of attraction of the minima (each cell
  coloured by the minimum its descent flow reaches), a few flow paths, the critical points.
* d > 2: :func:`plot_eigenvalue_spectra` — the Hessian eigenvalues of each point on a
  symmetric-log axis, with the band |λ| ≤ τ inside which an eigenvalue counts as zero;
  :func:`plot_eigenvector_slices` — f on the plane x* + a·v_min + b·v_max through each
  point, spanned by the eigenvectors of its smallest and largest eigenvalue (the
  directions of least and most curvature; a saddle shows as a saddle in this plane),
  clipped to the training box (:func:`box_segment`).

Figures are built with matplotlib's constrained layout and two-line titles, so no title,
label or legend is cut off at the figure's edge.

:func:`write_figures` picks the figures for the dimension and writes PNGs atomically.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from surrogates import calculus
from surrogates.critical.flow import BasinReport, basins, gradient_flow
from surrogates.critical.report import CriticalPointReport
from surrogates.errors import InputError
from surrogates.io import write_with
from surrogates.surrogate import Surrogate

__all__ = [
    "MARKERS",
    "box_segment",
    "plot_basins_2d",
    "plot_critical_points_2d",
    "plot_eigenvalue_spectra",
    "plot_eigenvector_slices",
    "write_figures",
]

#: (marker, colour) per kind.
MARKERS = {
    "minimum": ("o", "tab:blue"),
    "maximum": ("^", "tab:red"),
    "saddle": ("X", "tab:orange"),
    "degenerate": ("s", "tab:purple"),
}


def _wrapped(text: str, inches: float, points: float = 10.0) -> str:
    """``text`` broken into lines that fit ``inches`` of width at a font of ``points`` (an
    average glyph is about 0.6 em wide), so a title never runs past the figure's edge."""
    return textwrap.fill(text, width=max(20, int(inches * 72 / (0.6 * points))))


def _torch_callable(f: Any):
    """The torch callable behind a Surrogate, or f itself."""
    return f.model if isinstance(f, Surrogate) else f


def plot_critical_points_2d(
    f: Any, report: CriticalPointReport, ax: Axes | None = None, resolution: int = 120
) -> Axes:
    """Contours and gradient field of a 2-D f over the report's box, critical points marked by kind.

    Points outside the box (extrapolation) are drawn hollow. A new figure uses matplotlib's
    constrained layout, so the title and the legend below the axes stay inside it.

    Args:
        f: A scalar surrogate of two inputs, or a torch callable (N, 2) → (N,).
        report: Result of :func:`surrogates.critical.find_critical_points` for f.
        ax: Axes to draw into (default: a new figure).
        resolution: Grid points per axis of the contours.

    Raises:
        InputError: The report is not of a 2-D function.
    """
    from surrogates.plots import plot_contour

    if len(report.lower) != 2:
        raise InputError(f"plot_critical_points_2d needs a 2-D function, the report has d = {len(report.lower)}")
    if ax is None:
        ax = Figure(figsize=(6.4, 5.8), layout="constrained").subplots()
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
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=4, fontsize="small", frameon=False)
    title = f"critical points ({len(report.points)}); degenerate when |λ̃| ≤ {report.degenerate_tolerance:.2g} (λ̃: eigenvalues of DHD)"
    ax.set_title(_wrapped(title, ax.get_position().width * ax.figure.get_figwidth()), fontsize=10)
    return ax


#: Share of a point's column on the spectrum plot over which its eigenvalues are spread.
_STRIP_WIDTH = 0.7


def plot_eigenvalue_spectra(report: CriticalPointReport, ax: Axes | None = None) -> Axes:
    """Scaled Hessian eigenvalues of every critical point (x: point number, y: λ̃ on a symlog axis).

    λ̃ are the eigenvalues of D H D, D = diag(box widths) — the Hessian in the box's unit
    coordinates, which the classification uses (same signs as H's). The grey band is |λ̃| ≤ τ
    (the degeneracy tolerance); marker colour says the sign. A point's d eigenvalues are drawn
    as a strip: λ̃_j (ascending) at x = point number + offset_j, offsets evenly spread over
    ``_STRIP_WIDTH`` of its column, so close values (two near zero) stay d separate marks.
    """
    if ax is None:
        ax = Figure(figsize=(max(6.0, 0.5 * len(report.points) + 3), 4.8), layout="constrained").subplots()
    tau = report.degenerate_tolerance
    ax.axhspan(-tau, tau, color="0.85", label=f"|λ̃| ≤ τ = {tau:.2g} (counts as 0)")
    ax.axhline(0.0, color="0.4", linewidth=0.6)
    for number, p in enumerate(report.points):
        lam = np.asarray(p.scaled_eigenvalues if p.scaled_eigenvalues is not None else p.eigenvalues)
        offsets = (np.arange(lam.size) + 0.5) / lam.size * _STRIP_WIDTH - _STRIP_WIDTH / 2
        colours = np.where(lam > tau, "tab:blue", np.where(lam < -tau, "tab:red", "tab:purple"))
        ax.scatter(number + offsets, lam, c=list(colours), marker="o", s=max(6.0, min(36.0, 400.0 / lam.size)),
                   edgecolors="black", linewidths=0.4, zorder=3)
    ax.set_yscale("symlog", linthresh=max(tau, np.finfo(float).tiny))
    ax.set_xlim(-0.5, len(report.points) - 0.5)
    ax.set_xticks(range(len(report.points)))
    ax.set_xticklabels(
        [f"{n}\n{p.kind[:3]} {p.index}{'' if p.in_domain else '*'}" for n, p in enumerate(report.points)], fontsize="small"
    )
    ax.set_xlabel("critical point: number, kind, index (* = outside the domain)")
    ax.set_ylabel("scaled Hessian eigenvalue λ̃ (of DHD)")
    title = "Hessian spectrum at each critical point, λ̃ ascending left to right: blue > 0, red < 0, purple ≈ 0"
    ax.set_title(_wrapped(title, ax.get_position().width * ax.figure.get_figwidth()), fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), fontsize="small", frameon=False)
    return ax


def box_segment(x: np.ndarray, v: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[float, float]:
    """[t_lo, t_hi]: the t with x + t·v in the box [lower, upper] — the chord of the line through
    x along v (t_lo ≤ 0 ≤ t_hi). For x outside the box, the box is first widened to reach x."""
    x, v = np.asarray(x, dtype=np.float64), np.asarray(v, dtype=np.float64)
    lower, upper = np.minimum(lower, x), np.maximum(upper, x)
    moving = np.abs(v) > 1e-12 * np.max(np.abs(v))
    ends = np.stack([(lower[moving] - x[moving]) / v[moving], (upper[moving] - x[moving]) / v[moving]])
    return float(np.max(np.min(ends, axis=0))), float(np.min(np.max(ends, axis=0)))


def plot_eigenvector_slices(f: Any, report: CriticalPointReport, max_points: int = 9, resolution: int = 61) -> Figure:
    """f on the plane through each critical point spanned by its extreme-eigenvalue eigenvectors,
    within the training box.

    Panel k shows f(x*_k + a·v_min + b·v_max), v_min and v_max the unit eigenvectors (data
    units) of the smallest and largest Hessian eigenvalue, for a over the chord of the line
    x*_k + a·v_min inside the box (:func:`box_segment`) and b likewise along v_max. Points of
    that rectangle that leave the box are left blank, so the colours and the colour bar show
    the surrogate where it has data, not its extrapolation. (For a point outside the box the
    box is widened just enough to hold it.)

    Args:
        f: A scalar surrogate or a torch callable (N, d) → (N,), d ≥ 2.
        report: Result of :func:`surrogates.critical.find_critical_points` for f.
        max_points: Panels at most (the first points of the report).
        resolution: Grid points per axis.

    Raises:
        InputError: d < 2 or no points to show.
    """
    d = len(report.lower)
    if d < 2:
        raise InputError(f"eigenvector slices need d ≥ 2, the report has d = {d}")
    points = report.points[:max_points]
    if not points:
        raise InputError("the report has no critical points to slice through")
    fn = _torch_callable(f)
    lower, upper = np.asarray(report.lower, dtype=np.float64), np.asarray(report.upper, dtype=np.float64)
    columns = math.ceil(math.sqrt(len(points)))
    rows = math.ceil(len(points) / columns)
    figure = Figure(figsize=(3.8 * columns, 3.5 * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax, (number, p) in zip(axes.flat, enumerate(points)):
        vectors = np.asarray(p.eigenvectors, dtype=np.float64)
        (a_lo, a_hi), (b_lo, b_hi) = (box_segment(p.x, vectors[:, j], lower, upper) for j in (0, -1))
        a, b = np.meshgrid(np.linspace(a_lo, a_hi, resolution), np.linspace(b_lo, b_hi, resolution), indexing="xy")
        plane = p.x + a.reshape(-1, 1) * vectors[:, 0] + b.reshape(-1, 1) * vectors[:, -1]
        values: Tensor = calculus.value(fn, torch.as_tensor(plane), dtype=torch.float64)
        slack = 1e-9 * (np.maximum(upper, p.x) - np.minimum(lower, p.x))
        inside = np.all((plane >= np.minimum(lower, p.x) - slack) & (plane <= np.maximum(upper, p.x) + slack), axis=1)
        shown = np.ma.masked_array(values.numpy().reshape(a.shape), mask=~inside.reshape(a.shape))
        filled = ax.contourf(a, b, shown, levels=25, cmap="viridis")
        ax.contour(a, b, shown, levels=12, colors="k", linewidths=0.4, alpha=0.5)
        marker, colour = MARKERS[p.kind]
        ax.scatter([0.0], [0.0], marker=marker, c=colour, edgecolors="white", s=80, zorder=5, clip_on=False)
        figure.colorbar(filled, ax=ax)
        ax.set_xlim(a_lo, a_hi)
        ax.set_ylim(b_lo, b_hi)
        ax.set_xlabel(f"along v_min (λ={p.eigenvalues[0]:.3g})", fontsize="small")
        ax.set_ylabel(f"along v_max (λ={p.eigenvalues[-1]:.3g})", fontsize="small")
        ax.set_title(f"#{number} {p.kind}{'' if p.in_domain else ' (outside)'}", fontsize="small")
    for ax in list(axes.flat)[len(points):]:
        ax.set_visible(False)
    figure.suptitle(_wrapped("f through each critical point along its extreme eigenvectors, within the training box "
                             "(blank where the plane leaves it)", figure.get_figwidth() - 0.3), fontsize=10)
    return figure


def plot_basins_2d(
    f: Any, report: BasinReport, ax: Axes | None = None, resolution: int = 80, flows: int = 12, seed: int = 0
) -> Axes:
    """Basins of attraction of a 2-D f: every cell of a grid coloured by the minimum its
    descent flow reaches, a few flow paths, and the critical points marked by kind.

    The colours come from the flows of the grid's cell centres (``report`` itself when it was
    computed on a grid, else a ``resolution``² grid with the report's minima and settings);
    the legend's shares are the report's (Sobol estimates ± standard error). Flows leaving
    the box are light grey, unassigned ones dark grey.

    Args:
        f: A scalar surrogate of two inputs, or a torch callable (N, 2) → (N,).
        report: Result of :func:`surrogates.critical.flow.basins` for f.
        ax: Axes to draw into (default: a new figure).
        resolution: Grid cells per axis when the report is not on a grid.
        flows: Descent paths drawn, from scrambled Sobol starts.
        seed: Seed of those starts.

    Raises:
        InputError: The report is not of a 2-D function.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    if len(report.lower) != 2:
        raise InputError(f"plot_basins_2d needs a 2-D function, the report has d = {len(report.lower)}")
    fn = _torch_callable(f)
    lower, upper = report.lower, report.upper
    on_grid = report
    if report.grid is None:
        settings = {key: report.settings[key] for key in ("match_tol", "gradient_tol", "step_tol", "max_step", "max_steps")}
        on_grid = basins(fn, lower, upper, minima=report.critical_points, grid=resolution, **settings)
    cells = on_grid.grid
    colours = ["0.25", "0.85"] + [f"C{k % 10}" for k in range(len(report))]  # unassigned, outside, basins
    ax = ax if ax is not None else Figure(figsize=(6.8, 5.6)).subplots()
    extent = (lower[0], upper[0], lower[1], upper[1])
    ax.imshow(
        (on_grid.labels + 2).reshape(cells, cells), origin="lower", extent=extent, aspect="auto", interpolation="nearest",
        cmap=ListedColormap(colours), vmin=-0.5, vmax=len(colours) - 0.5, alpha=0.8,
    )
    gx, gy = np.meshgrid(np.linspace(lower[0], upper[0], 60), np.linspace(lower[1], upper[1], 60))
    values = calculus.value(fn, torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], 1)), dtype=torch.float64)
    ax.contour(gx, gy, values.reshape(gx.shape).numpy(), levels=15, colors="k", linewidths=0.4, alpha=0.5)
    if flows > 0:
        starts = lower + (upper - lower) * torch.quasirandom.SobolEngine(2, scramble=True, seed=seed).draw(flows).double().numpy()
        for path in gradient_flow(fn, starts, lower, upper, gradient_tol=report.settings["gradient_tol"]).paths:
            ax.plot(path[:, 0], path[:, 1], color="white", linewidth=1.2, zorder=3)
            ax.plot(path[:1, 0], path[:1, 1], "o", color="white", markersize=3, zorder=3)
    for kind, (marker, colour) in MARKERS.items():
        chosen = np.array([p.x for p in report.critical_points if p.kind == kind]).reshape(-1, 2)
        if len(chosen):
            ax.scatter(chosen[:, 0], chosen[:, 1], marker=marker, s=90, zorder=5, linewidths=1.5, clip_on=False,
                       facecolors=colour, edgecolors="white", label=f"{kind} ({len(chosen)})")

    def share(fraction: float, stderr: float) -> str:
        return f"{100 * fraction:.1f}" + ("" if math.isnan(stderr) else f" ± {100 * stderr:.1f}") + " %"

    handles = [
        Patch(color=colours[k + 2], label=f"({b.point.x[0]:.3g}, {b.point.x[1]:.3g}): {share(b.fraction, b.stderr)}")
        for k, b in enumerate(report)
    ]
    handles.append(Patch(color=colours[1], label=f"leaves the box: {share(report.outside_fraction, report.outside_stderr)}"))
    if report.unassigned_fraction > 0:
        handles.append(Patch(color=colours[0], label=f"unassigned: {share(report.unassigned_fraction, report.unassigned_stderr)}"))
    markers, _ = ax.get_legend_handles_labels()
    ax.legend(handles=[*handles, *markers], loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2,
              fontsize="small", frameon=False)
    ax.figure.subplots_adjust(bottom=0.28)
    ax.set_xlim(lower[0], upper[0])
    ax.set_ylim(lower[1], upper[1])
    names = getattr(f, "input_names", None) or ["x0", "x1"]
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title(f"basins of attraction of {len(report)} minima (descent in unit coordinates; white: flows)", fontsize="medium")
    return ax


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
    written["eigenvalues"] = _save(ax.figure, output_dir / "eigenvalues.png")
    if d >= 2 and report.points:
        written["slices"] = _save(plot_eigenvector_slices(f, report), output_dir / "slices.png")
    return written
