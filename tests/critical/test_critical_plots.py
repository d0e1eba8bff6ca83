"""Critical-point figures (issue 16, item 11): slices stay in the training box, every text fits
in its figure, and each eigenvalue of the spectrum plot is a mark of its own.

Each figure is drawn with a real renderer (Agg) and read back through the public matplotlib
objects: axis limits, the filled contours' vertices, the markers' display positions, and the
bounding box of everything drawn.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from surrogates.critical.plots import (
    plot_critical_points_2d,
    plot_eigenvalue_spectra,
    plot_eigenvector_slices,
)
from surrogates.critical.search import find_critical_points
from surrogates.fitting.functions import get_function

# The simulator box: pressure [1, 5], temperature [300, 400], flow [0, 2], angle [-30, 30].
LOWER = np.array([1.0, 300.0, 0.0, -30.0])
UPPER = np.array([5.0, 400.0, 2.0, 30.0])
CENTRE = np.array([3.0, 350.0, 1.2, 5.0])


def _units_quadratic() -> tuple[callable, np.ndarray]:
    """f(x) = ½ (x − c)ᵀ H (x − c) with H's eigenvectors mixing the inputs (data units), and H."""
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))[0]
    scale = np.diag(1.0 / (UPPER - LOWER))  # curvature of order one in unit coordinates
    hessian = scale @ rotation @ np.diag([0.5, 1.0, 3.0, 8.0]) @ rotation.T @ scale
    H, c = torch.as_tensor(hessian), torch.as_tensor(CENTRE)

    def f(X):
        Z = X - c
        return 0.5 * torch.einsum("ni,ij,nj->n", Z, H, Z)

    return f, hessian


def _drawn(figure: Figure):
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return canvas.get_renderer()


def _inside(points: np.ndarray, lower: np.ndarray, upper: np.ndarray, rtol: float = 1e-6) -> np.ndarray:
    slack = rtol * (upper - lower)
    return np.all((points >= lower - slack) & (points <= upper + slack), axis=-1)


def test_eigenvector_slices_show_only_the_chord_inside_the_training_box():
    f, hessian = _units_quadratic()
    report = find_critical_points(f, LOWER, UPPER, starts=16)
    assert len(report) == 1 and report[0].kind == "minimum"
    np.testing.assert_allclose(report[0].x, CENTRE, rtol=1e-8)
    figure = plot_eigenvector_slices(f, report)
    _drawn(figure)
    panels = [ax for ax in figure.axes if ax.get_xlabel().startswith("along v_min")]
    assert len(panels) == 1
    ax, point = panels[0], report[0]
    v_min, v_max = point.eigenvectors[:, 0], point.eigenvectors[:, -1]
    # v_min, v_max: the eigenvectors of the smallest and largest eigenvalue of H (data units)
    exact = np.linalg.eigh(hessian)
    assert abs(abs(v_min @ exact.eigenvectors[:, 0]) - 1) < 1e-6 and abs(abs(v_max @ exact.eigenvectors[:, -1]) - 1) < 1e-6
    for limits, v in ((ax.get_xlim(), v_min), (ax.get_ylim(), v_max)):
        ends = point.x + np.outer(limits, v)
        assert _inside(ends, LOWER, UPPER).all(), ends  # the slice stays in the box ...
        on_face = np.min(np.minimum(np.abs(ends - LOWER), np.abs(ends - UPPER)) / (UPPER - LOWER), axis=1)
        assert np.all(on_face < 1e-6), ends  # ... and reaches its faces: the whole chord, not less
    # every vertex of the filled contours is a point of the plane inside the box
    filled = [c for c in ax.collections if hasattr(c, "get_paths") and not isinstance(c, PathCollection)]
    vertices = np.concatenate([path.vertices for c in filled for path in c.get_paths() if len(path.vertices)])
    assert len(vertices) > 100
    plane = point.x + vertices[:, :1] * v_min + vertices[:, 1:] * v_max
    assert _inside(plane, LOWER, UPPER, rtol=1e-3).all()


def _text_fits(figure: Figure) -> None:
    renderer = _drawn(figure)
    drawn = figure.get_tightbbox(renderer)  # inches, everything drawn: titles, labels, legends, colour bars
    width, height = figure.get_size_inches()
    tolerance = 1.0 / figure.dpi
    assert drawn.x0 >= -tolerance and drawn.y0 >= -tolerance, (drawn, width, height)
    assert drawn.x1 <= width + tolerance and drawn.y1 <= height + tolerance, (drawn, width, height)


def test_no_title_label_or_legend_runs_past_the_figure():
    quartic = get_function("quartic")
    _text_fits(plot_critical_points_2d(quartic.value, find_critical_points(quartic.value, quartic.lower, quartic.upper, starts=32)).figure)
    f, _ = _units_quadratic()
    units = find_critical_points(f, LOWER, UPPER, starts=16)
    _text_fits(plot_eigenvalue_spectra(units).figure)
    _text_fits(plot_eigenvector_slices(f, units))
    convex = get_function("convex_sines")  # 10-D
    ten = find_critical_points(convex.value, convex.lower, convex.upper, starts=16)
    _text_fits(plot_eigenvalue_spectra(ten).figure)
    _text_fits(plot_eigenvector_slices(convex.value, ten))


@pytest.mark.parametrize("eigenvalues", [[0.002, 0.004, 1.95, 4.05], [-3.0, 1e-4, 2e-4, 3e-4, 5.0]])
def test_every_eigenvalue_is_a_separate_mark_on_the_spectrum(eigenvalues):
    """The issue's spectrum 0.002, 0.004, 1.95, 4.05: the two small ones were one bar."""
    curvature = torch.tensor(eigenvalues, dtype=torch.float64)
    d = len(eigenvalues)
    report = find_critical_points(lambda X: 0.5 * (curvature * X**2).sum(-1), [-1.0] * d, [1.0] * d, starts=8)
    assert len(report) == 1
    np.testing.assert_allclose(report[0].eigenvalues, np.sort(eigenvalues), rtol=1e-8, atol=1e-12)
    ax = plot_eigenvalue_spectra(report)
    _drawn(ax.figure)
    marks = [c for c in ax.collections if isinstance(c, PathCollection)]
    data = np.concatenate([c.get_offsets() for c in marks])
    assert len(data) == d
    np.testing.assert_allclose(np.sort(data[:, 1]), np.sort(report[0].scaled_eigenvalues), rtol=1e-12)
    pixels = ax.transData.transform(data)
    diameter = max(np.sqrt(c.get_sizes()).max() for c in marks) * ax.figure.dpi / 72
    for i, j in itertools.combinations(range(d), 2):
        assert np.linalg.norm(pixels[i] - pixels[j]) > diameter, (data[i], data[j])  # no two marks overlap
