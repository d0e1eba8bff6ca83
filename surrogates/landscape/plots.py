"""Figures of a landscape analysis (matplotlib ``Figure`` objects; no global pyplot state).

Save with ``surrogates.io.write_with(path, lambda p: fig.savefig(p, dpi=...))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from .density import SpectralDensity
from .layers import LayerSpectra
from .slices import Slice


def plot_density(density: SpectralDensity, exact: np.ndarray | None = None, sigma: float | None = None) -> Figure:
    """Broadened SLQ density on a log scale, with the exact eigenvalue histogram when given."""
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    lo, hi = density.support()
    if exact is not None and len(exact):
        lo, hi = min(lo, float(np.min(exact))), max(hi, float(np.max(exact)))
    pad = 0.05 * max(hi - lo, 1e-12)
    grid = np.linspace(lo - pad, hi + pad, 800)
    rho = density.evaluate(grid, sigma)
    ax.semilogy(grid, np.maximum(rho, 1e-12), label=f"SLQ ({len(density.nodes)} probes)")
    if exact is not None and len(exact):
        ax.hist(exact, bins=80, density=True, alpha=0.35, label="exact eigenvalues", color="gray")
    ax.set_ylim(bottom=max(1e-8, float(np.max(rho)) * 1e-8))
    ax.set_xlabel("eigenvalue $\\lambda$")
    ax.set_ylabel("density $\\rho(\\lambda)$")
    ax.set_title(f"Hessian spectral density (implied trace {density.trace:.4g} ± {density.trace_stderr:.2g})")
    ax.legend()
    return fig


def plot_eigenvalues(top: np.ndarray, bottom: np.ndarray, exact: np.ndarray | None = None) -> Figure:
    """Bars of the top-k and bottom-k eigenvalues (exact values as markers when given)."""
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    labels = [f"$\\lambda_{{{i + 1}}}$" for i in range(len(top))] + [f"$\\lambda_{{n-{i}}}$" if i else "$\\lambda_n$" for i in range(len(bottom))]
    vals = np.concatenate([np.asarray(top), np.asarray(bottom)])
    colors = ["tab:blue"] * len(top) + ["tab:red"] * len(bottom)
    x = np.arange(len(vals))
    ax.bar(x, vals, color=colors)
    if exact is not None and len(exact):
        ex = np.sort(exact)
        ref = np.concatenate([ex[::-1][: len(top)], ex[: len(bottom)]])
        ax.plot(x, ref, "k_", markersize=18, label="exact")
        ax.legend()
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, labels)
    ax.set_ylabel("eigenvalue")
    ax.set_yscale("symlog", linthresh=max(1e-6, float(np.max(np.abs(vals))) * 1e-4) if len(vals) else 1e-6)
    ax.set_title("Extreme Hessian eigenvalues (Lanczos)")
    return fig


def plot_slices_1d(slices: Sequence[Slice], labels: Sequence[str]) -> Figure:
    """Loss (left axis) and, if present, accuracy (right axis) along 1-D slices."""
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax2 = None
    for s, lab in zip(slices, labels):
        (line,) = ax.plot(s.axes[0], s.values["loss"], label=f"{lab}: loss")
        if "accuracy" in s.values:
            ax2 = ax2 or ax.twinx()
            ax2.plot(s.axes[0], s.values["accuracy"], ls="--", color=line.get_color(), label=f"{lab}: accuracy")
    ax.axvline(0, color="gray", lw=0.6)
    ax.set_xlabel("step along direction ($\\alpha$)")
    ax.set_ylabel("loss")
    if ax2 is not None:
        ax2.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize="small")
    ax.set_title("1-D loss slices through the weights")
    return fig


def plot_slice_2d(s: Slice, levels: int = 30) -> Figure:
    """Contours of a 2-D slice, origin marked."""
    fig = Figure(figsize=(5.6, 4.8), layout="constrained")
    ax = fig.add_subplot()
    a, b = s.axes
    L = s.values["loss"]
    cs = ax.contourf(a, b, L.T, levels=levels, cmap="viridis")
    ax.contour(a, b, L.T, levels=levels, colors="k", linewidths=0.3)
    fig.colorbar(cs, ax=ax, label="loss")
    ax.plot([0], [0], "r*", markersize=12, label="weights")
    ax.set_xlabel("direction 1 ($\\alpha$)")
    ax.set_ylabel("direction 2 ($\\beta$)")
    ax.set_title(f"2-D loss slice ({s.kind} directions)")
    ax.legend(loc="upper right")
    return fig


def plot_path(s: Slice) -> Figure:
    """Loss along the linear path between two checkpoints (t = 0 and t = 1 marked)."""
    fig = plot_slices_1d([s], ["path"])
    ax = fig.axes[0]
    for t in (0.0, 1.0):
        ax.axvline(t, color="red", lw=0.8, ls=":")
    ax.set_xlabel("t  (0 = weights, 1 = second checkpoint)")
    ax.set_title("Loss along the linear interpolation")
    return fig


def plot_layers(spectra: LayerSpectra) -> Figure:
    """Bars per layer: lambda_max, lambda_min and trace of each diagonal Hessian block (trace with ±2 stderr)."""
    fig = Figure(figsize=(max(6.4, 1.1 * len(spectra.layers) + 2.5), 4.2), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(spectra.layers))
    width = 0.27
    rows = spectra.layers
    ax.bar(x - width, [r.lambda_max for r in rows], width, color="tab:blue", label="$\\lambda_{max}(H_{bb})$")
    ax.bar(x, [r.lambda_min for r in rows], width, color="tab:red", label="$\\lambda_{min}(H_{bb})$")
    ax.bar(x + width, [r.trace for r in rows], width, yerr=[2 * r.trace_stderr for r in rows], color="tab:green",
           capsize=3, label="tr $H_{bb}$ (±2 s.e.)")
    for i in (i for i, r in enumerate(rows) if not r.converged):
        ax.annotate("not converged", (x[i], 0), ha="center", va="bottom", fontsize="x-small", rotation=90)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, [f"{r.name}\n{r.kind}\n{r.size} params" for r in rows], fontsize="small")
    peak = max([abs(v) for r in rows for v in (r.lambda_max, r.lambda_min, r.trace)] + [1e-12])
    ax.set_yscale("symlog", linthresh=peak * 1e-4)
    ax.set_ylabel("curvature")
    ax.set_title("Per-layer Hessian blocks")
    ax.legend(fontsize="small")
    return fig
