"""Gradient flows and basins of attraction (surrogates.critical.flow) against closed forms.

Analytic callables first: the double well (x² − 1)² + y², whose flow has a closed-form
path and whose basins split at x = 0; the quartic x⁴ + y⁴ − 4xy + 1, whose basins are
exchanged by the symmetry (x, y) → (−x, −y), so each is exactly half the box; a bowl; a box
the flow leaves. Then a fitted surrogate of the quartic, the figure, the command line and
bad input.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import surrogates
from surrogates.critical.flow import STOPS, basins, gradient_flow
from surrogates.critical.plots import plot_basins_2d
from surrogates.critical.search import find_critical_points
from surrogates.errors import InputError
from surrogates.fitting.functions import get_function
from surrogates.io import write_with
from surrogates.model import MLP
from surrogates.surrogate import Surrogate

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WELL_LOWER, WELL_UPPER = np.array([-2.0, -1.0]), np.array([2.0, 1.0])


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def double_well(X):
    return (X[:, 0] ** 2 - 1) ** 2 + X[:, 1] ** 2


def quartic(X):
    return get_function("quartic").value(X)


@pytest.fixture(scope="module")
def quartic_minima():
    return find_critical_points(quartic, [-2, -2], [2, 2], starts=64)


def _within(estimate: float, truth: float, stderr: float, slack: float = 1e-12) -> bool:
    return abs(estimate - truth) <= 3 * stderr + slack


# ------------------------------------------------------------------ the flow


@pytest.mark.parametrize("step_tol", [1e-4, 1e-6])
def test_double_well_paths_follow_the_closed_form_flow(step_tol):
    """In unit coordinates the flow is dx/dt = −D²∇f, D = diag(4, 2): with k = 16 and s = x²,
    ds/dt = 8k s(1 − s) (logistic) and y = y₀ e^{−8t}, so along the path
    x² = 1 / (1 + (1/x₀² − 1) (y/y₀)^{k}) — checked at every recorded point, to the sum of
    the local error tolerances of the steps taken (unit coordinates)."""
    starts = np.array([[0.3, 0.9], [-1.8, -0.7], [1.5, 0.4], [-0.2, 0.05]])
    flow = gradient_flow(double_well, starts, WELL_LOWER, WELL_UPPER, step_tol=step_tol)
    assert list(flow.reasons) == ["critical"] * 4
    np.testing.assert_allclose(np.abs(flow.ends), [[1, 0]] * 4, atol=1e-6)
    k = 16.0
    for (x0, y0), path, steps in zip(starts, flow.paths, flow.steps):
        assert path.shape == (steps + 1, 2)
        np.testing.assert_allclose(path[0], [x0, y0], rtol=0, atol=1e-15)
        ratio = path[:, 1] / y0
        tracked = ratio > 1e-3  # where y still resolves the time along the path
        exact = np.sign(x0) * np.sqrt(1 / (1 + (1 / x0**2 - 1) * ratio[tracked] ** k))
        assert np.abs(path[tracked, 0] - exact).max() / 4 <= steps * step_tol
        assert np.all(np.sign(path[:, 0]) == np.sign(x0))  # never crosses the separatrix x = 0
        values = double_well(torch.as_tensor(path)).numpy()
        assert np.all(np.diff(values) <= 1e-12)  # descent


def test_quadratic_paths_are_exact_and_stiffness_costs_no_steps():
    """f = ½(x² + 10⁶ y²): the exponential integrator is exact on a quadratic, so the path obeys
    (y/y₀) = (x/x₀)^{10⁶} (equal widths) to rounding, and the stiff direction takes no tiny steps."""

    def stiff(X):
        return 0.5 * (X[:, 0] ** 2 + 1e6 * X[:, 1] ** 2)

    flow = gradient_flow(stiff, [[0.8, 0.5], [-0.6, -0.9]], [-1, -1], [1, 1])
    assert list(flow.reasons) == ["critical", "critical"]
    np.testing.assert_allclose(flow.ends, 0, atol=1e-9)
    assert flow.steps.max() < 40  # an explicit Runge–Kutta method needs ~10⁶ here
    for path, (x0, y0) in zip(flow.paths, [(0.8, 0.5), (-0.6, -0.9)]):
        ratio = path[1:, 0] / x0
        np.testing.assert_allclose(path[1:, 1] / y0, ratio**1e6, atol=1e-12)


def test_every_path_stops_for_a_reason_and_leaving_ends_on_the_boundary():
    def tilted(X):  # no critical point in the box: every flow leaves through x = 1
        return -X[:, 0] + 0.1 * X[:, 1] ** 2

    flow = gradient_flow(tilted, np.random.default_rng(0).uniform(-1, 1, (20, 2)), [-1, -1], [1, 1])
    assert set(flow.reasons) == {"left_domain"}
    np.testing.assert_allclose(flow.ends[:, 0], 1.0, atol=1e-12)
    assert all(np.array_equal(path[-1], end) for path, end in zip(flow.paths, flow.ends))
    assert flow.counts() == {"critical": 0, "left_domain": 20, "max_steps": 0}

    capped = gradient_flow(double_well, [[0.3, 0.9]], WELL_LOWER, WELL_UPPER, max_steps=3)
    assert list(capped.reasons) == ["max_steps"] and capped.steps[0] <= 3
    assert set(STOPS) == {"critical", "left_domain", "max_steps"}


def test_ascent_on_minus_f_retraces_the_descent_of_f():
    starts = np.array([[0.4, 0.6], [-1.2, -0.3], [0.1, -0.8]])
    down = gradient_flow(quartic, starts, [-2, -2], [2, 2])
    up = gradient_flow(lambda X: -quartic(X), starts, [-2, -2], [2, 2], ascent=True)
    assert list(up.reasons) == list(down.reasons) == ["critical"] * 3 and up.ascent
    np.testing.assert_allclose(up.ends, down.ends, atol=1e-10)
    for a, b in zip(up.paths, down.paths):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-10)
    np.testing.assert_allclose(np.abs(up.ends), 1.0, atol=1e-6)


def test_torch_in_torch_out_and_a_single_start():
    flow = gradient_flow(quartic, torch.tensor([0.5, 0.2], dtype=torch.float32), [-2, -2], [2, 2])
    assert isinstance(flow.ends, torch.Tensor) and flow.ends.shape == (1, 2) and flow.ends.dtype == torch.float32
    assert isinstance(flow.paths[0], torch.Tensor) and flow.paths[0].dtype == torch.float32
    np.testing.assert_allclose(flow.ends.numpy(), [[1, 1]], atol=1e-6)


# ------------------------------------------------------------------ basins on analytic functions


def test_double_well_drains_half_the_box_into_each_minimum():
    report = basins(double_well, WELL_LOWER, WELL_UPPER)
    assert len(report) == 2 and report.points == 4096 and report.replicates == 8
    for basin in report:
        assert basin.point.kind == "minimum" and abs(abs(basin.point.x[0]) - 1) < 1e-9
        assert _within(basin.fraction, 0.5, basin.stderr)
    assert report.outside_fraction == 0 and report.unassigned_fraction == 0
    # by symmetry exactly the starts with x > 0 drain to (1, 0)
    right = next(k for k, b in enumerate(report) if b.point.x[0] > 0)
    np.testing.assert_array_equal(report.labels == right, report.samples[:, 0] > 0)


def test_quartic_basins_are_half_each_within_their_standard_error():
    """The basins' boundary is the saddle's curved stable manifold; the point symmetry
    (x, y) → (−x, −y) exchanges the basins, so each holds exactly half of [−2, 2]²."""
    function = get_function("quartic")
    report = basins(function.value, function.lower, function.upper)
    assert len(report) == 2
    assert abs(report[0].fraction + report[1].fraction - 1) < 1e-12
    for basin in report:
        assert 0 < basin.stderr < 0.01
        assert _within(basin.fraction, 0.5, basin.stderr, slack=0)
    assert {tuple(np.round(b.point.x)) for b in report} == {(1.0, 1.0), (-1.0, -1.0)}
    assert len(report.critical_points) == 3  # the saddle is kept for the figure
    assert report.to_dict()["stops"] == {"critical": report.points, "left_domain": 0, "max_steps": 0}


def test_quartic_standard_errors_cover_the_exact_half(quartic_minima):
    """Over 24 seeds, about 91 % of the ±2 stderr intervals should hold the exact 0.5 (the
    t-distribution's coverage with R − 1 = 7 degrees of freedom); a stderr half the true one
    would cover ~65 %, and the test asks for at least 75 % (18 of 24)."""
    function = get_function("quartic")
    hits = []
    for seed in range(24):
        report = basins(function.value, function.lower, function.upper, minima=quartic_minima, points=256, seed=seed)
        basin = report[0]
        hits.append(abs(basin.fraction - 0.5) <= 2 * basin.stderr)
    assert sum(hits) >= 18, hits


def test_a_single_bowl_drains_everything():
    report = basins(lambda X: ((X - torch.tensor([0.3, -0.2], dtype=X.dtype)) ** 2).sum(-1), [-1, -1], [1, 1], points=512)
    (basin,) = report.basins
    assert basin.fraction == 1.0 and basin.stderr == 0.0 and basin.count == 512
    assert report.outside_fraction == 0 and report.unassigned_fraction == 0


def test_outside_fraction_is_the_share_beyond_the_separatrix():
    """On [−0.5, 2] × [−1, 1] the double well's left minimum (−1, 0) lies outside the box: flows
    from x < 0 head for it and leave, so 0.5 / 2.5 = 20 % leaves, 80 % drains to (1, 0)."""
    report = basins(double_well, [-0.5, -1], [2, 1])
    (basin,) = report.basins
    assert _within(basin.fraction, 0.8, basin.stderr) and _within(report.outside_fraction, 0.2, report.outside_stderr)
    assert basin.stderr > 0 and report.unassigned_fraction == 0
    leaving = report.labels == -1
    np.testing.assert_array_equal(leaving, report.samples[:, 0] < 0)
    np.testing.assert_allclose(report.ends[leaving, 0], -0.5, atol=1e-12)  # ended on the left face


def test_flows_ending_at_a_saddle_or_unlisted_minimum_are_unassigned():
    saddle_start = np.array([[0.0, 0.7]])  # on the separatrix x = 0: the flow runs into the saddle (0, 0)
    flow = gradient_flow(double_well, saddle_start, WELL_LOWER, WELL_UPPER)
    assert list(flow.reasons) == ["critical"]
    np.testing.assert_allclose(flow.ends, [[0.0, 0.0]], atol=1e-6)
    report = find_critical_points(double_well, WELL_LOWER, WELL_UPPER, starts=64)
    right_only = [p for p in report if p.kind != "minimum" or p.x[0] > 0]
    drained = basins(double_well, WELL_LOWER, WELL_UPPER, minima=right_only, points=1024)
    assert len(drained) == 1 and _within(drained[0].fraction, 0.5, drained[0].stderr)
    assert _within(drained.unassigned_fraction, 0.5, drained.unassigned_stderr)


def test_a_grid_gives_exact_cells_and_no_standard_error():
    report = basins(double_well, WELL_LOWER, WELL_UPPER, grid=20)
    assert report.points == 400 and report.grid == 20 and report.replicates == 0
    for basin in report:
        assert basin.fraction == 0.5 and math.isnan(basin.stderr)  # 10 of 20 columns each side of x = 0
    assert math.isnan(report.outside_stderr)


@pytest.mark.parametrize("factors", [(1000.0, 1.0), (1e-3, 250.0)])
def test_units_of_the_inputs_change_no_fraction(factors):
    """x_i → c_i x_i (metres → millimetres): the same basins, label by label, and the same paths."""
    function = get_function("quartic")
    c = np.asarray(factors)
    scale = torch.as_tensor(c)
    reference = basins(function.value, function.lower, function.upper, points=1024)
    other = basins(lambda X: function.value(X / scale), function.lower * c, function.upper * c, points=1024)
    width = function.upper - function.lower

    def by_minimum(report, factor):  # basin labels named by their minimum (the search's order may differ)
        names = [tuple(np.round((b.point.x / factor - function.lower) / width, 6)) for b in report]
        return [names[label] for label in report.labels], dict(zip(names, (b.fraction for b in report)))

    (labels, fractions), (other_labels, other_fractions) = by_minimum(reference, 1.0), by_minimum(other, c)
    assert other_labels == labels and other_fractions == fractions
    starts = np.array([[0.4, -0.3], [-1.5, 1.9]])
    a = gradient_flow(function.value, starts, function.lower, function.upper)
    b = gradient_flow(lambda X: function.value(X / scale), starts * c, function.lower * c, function.upper * c)
    for p, q in zip(a.paths, b.paths):
        assert p.shape == q.shape
        np.testing.assert_allclose(q / c, p, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------ a fitted surrogate

#: A fit of a few CPU seconds that still places the quartic's separatrix well: debug=fast's
#: 30 epochs of a 2×32 network, with enough L-BFGS polish (0.3 % off the exact halves).
QUICK_FIT = ["debug=fast", "model.polish_epochs=3", "model.polish_iterations=50", "trainer.enable_progress_bar=false",
             "logger=none"]


def _quartic_surrogate(overrides: list[str]) -> Surrogate:
    function = get_function("quartic")
    X = np.random.default_rng(1).uniform(function.lower, function.upper, (2000, 2))  # protocol: 2000 samples
    return surrogates.fit(X, function.value(X), overrides=overrides)


def _check_quartic_surrogate(s: Surrogate, record_property, points: int) -> None:
    report = s.basins(points=points)
    record_property("basins_seconds", round(report.seconds, 3))
    print(f"\n{report.summary()}")
    assert len(report) == 2, report.summary()
    for basin in report:
        record_property(f"fraction_error_{np.round(basin.point.x).tolist()}", basin.fraction - 0.5)
        assert abs(basin.fraction - 0.5) <= 0.02, report.summary()
        assert np.linalg.norm(np.abs(basin.point.x) - 1) < 0.05
    assert report.outside_fraction == 0 and report.unassigned_fraction < 0.01


def test_quartic_surrogate_drains_half_the_box_into_each_minimum(record_property):
    _check_quartic_surrogate(_quartic_surrogate(QUICK_FIT), record_property, points=1024)


@pytest.mark.slow
def test_quartic_surrogate_default_fit_within_2_percent(record_property):
    _check_quartic_surrogate(_quartic_surrogate(["trainer.enable_progress_bar=false", "logger=none"]), record_property,
                             points=4096)


def test_surrogate_methods_numpy_in_numpy_out():
    torch.manual_seed(0)
    s = Surrogate(MLP(2, 1, width=8, depth=2, activation="tanh"), ["a", "b"], ["y"], True, lower=[0, 0], upper=[1, 2])
    flow = s.gradient_flow(np.array([[0.5, 1.0], [0.2, 0.2]]))
    assert isinstance(flow.ends, np.ndarray) and flow.ends.shape == (2, 2)
    assert all(r in STOPS for r in flow.reasons)
    assert flow.paths[0].shape[1] == 2
    np.testing.assert_allclose(flow.paths[0][0], [0.5, 1.0], rtol=0, atol=1e-15)
    report = s.basins(points=64, seed=1)
    assert report.points == 64 and report.settings["seed"] == 1
    total = sum(b.fraction for b in report) + report.outside_fraction + report.unassigned_fraction
    assert total == pytest.approx(1.0)
    vector = Surrogate(MLP(2, 2, width=8, depth=2), ["a", "b"], ["y0", "y1"], False, lower=[0, 0], upper=[1, 1])
    with pytest.raises(InputError, match="scalar surrogate"):
        vector.gradient_flow([0.5, 0.5])
    with pytest.raises(InputError, match="scalar surrogate"):
        vector.basins()


# ------------------------------------------------------------------ figure, JSON, command line


def test_basins_figure_and_json(tmp_path):
    report = basins(quartic, [-2, -2], [2, 2], points=256)
    ax = plot_basins_2d(quartic, report, resolution=24, flows=4)
    path = write_with(tmp_path / "basins.png", lambda tmp: ax.figure.savefig(tmp, dpi=60))
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert any("saddle" in text for text in legend) and sum("%" in text for text in legend) == 3
    document = json.loads(report.write_json(tmp_path / "basins.json").read_text())
    assert [b["fraction"] for b in document["basins"]] == [b.fraction for b in report]
    assert document["basins"][0]["point"]["kind"] == "minimum" and document["points"] == 256
    with pytest.raises(ValueError, match="2-D"):
        plot_basins_2d(lambda X: (X**2).sum(-1), basins(lambda X: (X**2).sum(-1), [-1] * 3, [1] * 3, points=16))


def test_cli_writes_basins_json_figure_and_summary(compose_config, tmp_path, capsys):
    from surrogates.cli.critical import BASINS_FIGURE, BASINS_FILE, run

    torch.manual_seed(0)
    s = Surrogate(MLP(2, 1, width=8, depth=2, activation="tanh"), ["a", "b"], ["y"], True, lower=[-1, -1], upper=[1, 1])
    checkpoint = s.save(tmp_path / "s.safetensors")
    cfg = compose_config("critical", [f"checkpoint={checkpoint}", "search.starts=32", "basins.enabled=true",
                                      "basins.points=128", "basins.resolution=16"])
    document = run(cfg, tmp_path / "run")
    on_disk = json.loads((tmp_path / "run" / BASINS_FILE).read_text())
    assert on_disk["points"] == 128 and document["files"]["basins"] == str(tmp_path / "run" / BASINS_FILE)
    minima = [p for p in document["points"] if p["kind"] == "minimum" and p["in_domain"]]
    assert [b["point"]["x"] for b in on_disk["basins"]] == [p["x"] for p in minima]
    assert (tmp_path / "run" / BASINS_FIGURE).read_bytes()[:8] == PNG_SIGNATURE
    assert "basins of" in capsys.readouterr().out

    cfg = compose_config("critical", [f"checkpoint={checkpoint}", "search.starts=16"])
    run(cfg, tmp_path / "off")
    assert not (tmp_path / "off" / BASINS_FILE).exists()  # off by default


# ------------------------------------------------------------------ bad input


def test_bad_input_raises_input_errors():
    box = ([-1, -1], [1, 1])
    with pytest.raises(InputError, match=r"x0 must have shape \(N, 2\)"):
        gradient_flow(quartic, np.zeros((3, 3)), *box)
    with pytest.raises(InputError, match=r"x0 must have shape"):
        gradient_flow(quartic, np.zeros((2, 2, 2)), *box)
    with pytest.raises(InputError, match="x0 must lie inside the box"):
        gradient_flow(quartic, [[0.0, 0.0], [3.0, 0.0]], *box)
    with pytest.raises(InputError, match="non-finite"):
        gradient_flow(quartic, [[np.nan, 0.0]], *box)
    with pytest.raises(InputError, match="scalar f"):
        gradient_flow(lambda X: X, [[0.0, 0.0]], *box)
    with pytest.raises(InputError, match="scalar f"):
        basins(lambda X: X, *box)
    for points in (0, -5, 2.5, True):
        with pytest.raises(InputError, match="points must be a positive integer"):
            basins(quartic, *box, points=points)
    with pytest.raises(InputError, match="replicates must be a positive integer"):
        basins(quartic, *box, replicates=0)
    with pytest.raises(InputError, match="grid must be a positive integer"):
        basins(quartic, *box, grid=0)
    with pytest.raises(InputError, match="step_tol must be a positive number"):
        gradient_flow(quartic, [[0.0, 0.0]], *box, step_tol=-1)
    with pytest.raises(InputError, match="one length d ≥ 1"):
        basins(quartic, [0, 0], [1])
    with pytest.raises(InputError, match="minima must be CriticalPoints"):
        basins(quartic, *box, minima=[np.zeros(2)])
