"""Figures of a function of two inputs: its contours, gradient field and curvature.

Each function takes a surrogate (or any callable with the same query methods, or a plain
torch callable (N, 2) → (N,)), draws into a matplotlib ``Axes`` (a new figure if none is
given) and returns the ``Axes``. Nothing is shown or saved here; callers save with
:func:`surrogates.io.write_with`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from surrogates import calculus
from surrogates.errors import InputError


class _Queries:
    """Value, gradient and Hessian of a scalar function of two inputs, on numpy (N, 2) points."""

    def __init__(self, f: Any):
        if hasattr(f, "hessian") and hasattr(f, "predict"):  # a Surrogate: its own (fast) queries
            if f.in_dim != 2 or f.out_dim != 1:
                raise InputError(f"plots need a scalar function of 2 inputs, got {f!r}")
            self.value, self.gradient = f.predict, f.gradient
            self.hessian = lambda X: f.hessian(X).reshape(-1, 2, 2)
        else:
            self.value = lambda X: calculus.value(f, torch.as_tensor(X)).numpy().reshape(-1)
            self.gradient = lambda X: calculus.gradient(f, torch.as_tensor(X)).numpy()
            self.hessian = lambda X: calculus.hessian(f, torch.as_tensor(X)).numpy().reshape(-1, 2, 2)


def _grid(lower: Sequence[float], upper: Sequence[float], resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    if lower.shape != (2,) or upper.shape != (2,):
        raise InputError(f"plots need a 2-D box, got lower {lower.shape} upper {upper.shape}")
    if resolution < 2:
        raise InputError(f"resolution must be at least 2, got {resolution}")
    gx, gy = np.meshgrid(np.linspace(lower[0], upper[0], resolution), np.linspace(lower[1], upper[1], resolution))
    return gx, gy, np.stack([gx.ravel(), gy.ravel()], axis=1)


def _labels(ax: Axes, f: Any) -> None:
    names = getattr(f, "input_names", None) or ["x0", "x1"]
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_aspect("auto")


def plot_contour(
    f: Any,
    lower: Sequence[float],
    upper: Sequence[float],
    ax: Axes | None = None,
    resolution: int = 120,
    gradient_field: bool = True,
    arrows: int = 20,
) -> Axes:
    """Filled contours of f over the box, with its (normalised) gradient field as arrows.

    Args:
        f: A scalar surrogate of two inputs, or a torch callable (N, 2) → (N,).
        lower: (2,) lower corner of the box to draw.
        upper: (2,) upper corner.
        ax: Axes to draw into (default: a new figure).
        resolution: Grid points per axis for the contours.
        gradient_field: Draw ∇f as arrows of unit length (direction only; colour = |∇f|).
        arrows: Arrows per axis.
    """
    queries = _Queries(f)
    ax = ax if ax is not None else Figure(figsize=(6.4, 5.2)).subplots()
    gx, gy, points = _grid(lower, upper, resolution)
    values = queries.value(points).reshape(gx.shape)
    filled = ax.contourf(gx, gy, values, levels=30, cmap="viridis")
    ax.contour(gx, gy, values, levels=15, colors="k", linewidths=0.4, alpha=0.5)
    ax.figure.colorbar(filled, ax=ax, label=(getattr(f, "output_names", None) or ["f"])[0])
    if gradient_field:
        ax_, ay_, coarse = _grid(lower, upper, arrows)
        g = queries.gradient(coarse)
        size = np.linalg.norm(g, axis=1)
        unit = g / np.where(size > 0, size, 1.0)[:, None]
        ax.quiver(ax_.ravel(), ay_.ravel(), unit[:, 0], unit[:, 1], size, cmap="Greys", width=0.003, pivot="mid")
    _labels(ax, f)
    ax.set_title("contours and gradient directions")
    return ax


def plot_hessian_eigenvalues(
    f: Any,
    lower: Sequence[float],
    upper: Sequence[float],
    resolution: int = 80,
) -> Figure:
    """Maps of the two Hessian eigenvalues λ₁ ≤ λ₂ over the box, with the zero level drawn.

    The sign pattern tells the local shape: both positive = convex (bowl), both negative =
    concave (cap), mixed = saddle-shaped; the black λ = 0 lines separate these regions.
    """
    gx, gy, points = _grid(lower, upper, resolution)
    eigenvalues = np.linalg.eigvalsh(_Queries(f).hessian(points))
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    axes = fig.subplots(1, 2)
    bound = float(np.max(np.abs(eigenvalues))) or 1.0
    for k, (ax, title) in enumerate(zip(axes, ("smallest eigenvalue λ₁", "largest eigenvalue λ₂"))):
        field = eigenvalues[:, k].reshape(gx.shape)
        image = ax.contourf(gx, gy, field, levels=30, cmap="RdBu_r", vmin=-bound, vmax=bound)
        if field.min() < 0 < field.max():
            ax.contour(gx, gy, field, levels=[0.0], colors="k", linewidths=1.2)
        fig.colorbar(image, ax=ax)
        _labels(ax, f)
        ax.set_title(title)
    fig.suptitle("Hessian eigenvalues (λ = 0 in black)")
    return fig
