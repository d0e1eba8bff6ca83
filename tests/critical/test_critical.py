"""Critical points: search, classification and export against analytic truth.

Fast tests run the search on the analytic test functions themselves (exact to rounding)
and on tiny networks; tests marked ``slow`` fit surrogates per ``shared/protocol.md``
and check the done-criteria of issue 4 on the *learned* functions.
"""

from __future__ import annotations

import copy

import csv
import itertools
import json
import math

import numpy as np
import pytest
import torch
from conftest import FAST
from hypothesis import given, settings
from hypothesis import strategies as st

import surrogates
from surrogates.critical.plots import write_figures
from surrogates.critical.report import CriticalPointReport
from surrogates.critical.search import find_critical_points
from surrogates.fitting.functions import get_function
from surrogates.fitting.train import SURROGATE_FILE, train
from surrogates.model import MLP

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _search(function, **kwargs) -> CriticalPointReport:
    return find_critical_points(function.value, function.lower, function.upper, **kwargs)


def _nearest(points: np.ndarray, x: np.ndarray) -> tuple[int, float]:
    distances = np.linalg.norm(points - x, axis=1)
    return int(distances.argmin()), float(distances.min())


def _exact_kind(hessian: np.ndarray) -> str:
    eigenvalues = np.linalg.eigvalsh(hessian)
    if np.any(np.abs(eigenvalues) < 1e-12):
        return "degenerate"
    return "minimum" if eigenvalues.min() > 0 else "maximum" if eigenvalues.max() < 0 else "saddle"


def sincos_truth() -> list[tuple[np.ndarray, str, bool]]:
    """All critical points of sin x cos y in the closed box [-π, π]², from its exact derivatives.

    ∇f = (cos x cos y, −sin x sin y) vanishes only where x and y are multiples of π/2
    (cos x cos y = 0 needs one cosine to vanish, and then the other factor's sine must):
    screen that lattice with the exact gradient and classify with the exact Hessian.
    Returns (x, kind, interior) triples.
    """
    function = get_function("sincos")
    lattice = np.array(list(itertools.product(np.arange(-2, 3) * math.pi / 2, repeat=2)))
    critical = lattice[np.linalg.norm(function.gradient(lattice), axis=1) < 1e-12]
    return [
        (x, _exact_kind(function.hessian(x)), bool(np.all(np.abs(x) < math.pi - 1e-9))) for x in critical
    ]


# ------------------------------------------------------------------ analytic functions


def test_quartic_exact_two_minima_and_a_saddle():
    report = _search(get_function("quartic"))
    assert report.not_converged == 0 and len(report) == 3
    found = {(round(float(p.x[0])), round(float(p.x[1]))): p for p in report}
    assert set(found) == {(0, 0), (1, 1), (-1, -1)}
    for key, expected_eigenvalues, kind, index in (
        ((0, 0), [-4.0, 4.0], "saddle", 1),
        ((1, 1), [8.0, 16.0], "minimum", 0),
        ((-1, -1), [8.0, 16.0], "minimum", 0),
    ):
        p = found[key]
        assert (p.kind, p.index, p.in_domain) == (kind, index, True)
        np.testing.assert_allclose(p.x, key, atol=1e-10)
        np.testing.assert_allclose(p.eigenvalues, expected_eigenvalues, rtol=1e-10)
        assert p.scaled_gradient_norm <= report.gradient_tolerance


def test_sincos_exact_every_interior_point_and_none_spurious():
    function = get_function("sincos")
    report = _search(function)
    truth = sincos_truth()
    interior = [(x, kind) for x, kind, inside in truth if inside]
    # the truth derived here agrees with the function's own list of interior points
    listed = function.critical_points()
    assert len(interior) == len(listed) == 4
    for x, kind in listed:
        match, distance = _nearest(np.array([t[0] for t in interior]), x)
        assert distance < 1e-12 and interior[match][1] == kind
    found = np.array([p.x for p in report])
    for x, kind, inside in truth:
        if inside:  # every interior point found, classified as the exact Hessian says
            match, distance = _nearest(found, x)
            assert distance < 1e-9, x
            assert report[match].kind == kind
    for p in report:  # nothing spurious: every point found is a true one (boundary ones included)
        match, distance = _nearest(np.array([t[0] for t in truth]), p.x)
        assert distance < 1e-9 and truth[match][1] == p.kind and p.in_domain


def test_cubic_exact_origin_is_degenerate():
    report = _search(get_function("cubic"))
    assert len(report) == 1
    (origin,) = report.points
    assert origin.kind == "degenerate" and origin.in_domain
    assert np.linalg.norm(origin.x) < 1e-4
    assert np.abs(origin.eigenvalues).max() <= report.degenerate_tolerance


def test_convex_sines_10d_minimum_and_its_exact_eigenvalues():
    function = get_function("convex_sines")
    report = _search(function, starts=128)
    assert len(report) == 1 and report.not_converged == 0
    (minimum,) = report.points
    (truth, _), = function.critical_points()
    assert minimum.kind == "minimum" and minimum.index == 0 and minimum.in_domain
    np.testing.assert_allclose(minimum.x, truth, atol=1e-10)
    np.testing.assert_allclose(minimum.eigenvalues, np.linalg.eigvalsh(function.hessian(truth)), rtol=1e-10)


def test_maxima_and_saddles_of_every_index_in_4d():
    """Σ sin xᵢ has 2⁴ critical points of every index: the search must not only minimise."""
    report = _search(get_function("sum_of_sines", dim=4))
    assert len(report) == 16
    indices = sorted(p.index for p in report)
    assert indices == sorted(sum(signs) for signs in itertools.product((0, 1), repeat=4))
    for p in report:
        np.testing.assert_allclose(np.abs(p.x), math.pi / 2, atol=1e-10)
        assert p.index == int((p.x > 0).sum())  # H = diag(−sin xᵢ)


def test_point_just_outside_the_box_is_flagged_and_far_ones_dropped():
    near = torch.tensor([1.03, 0.0], dtype=torch.float64)

    def bowl(X):
        return ((X - near) ** 2).sum(-1)

    report = find_critical_points(bowl, [-1.0, -1.0], [1.0, 1.0], starts=32, box_margin=0.05)
    (p,) = report.points
    assert not p.in_domain and p.kind == "minimum"
    np.testing.assert_allclose(p.x, near.numpy(), atol=1e-12)
    assert report.counts()["outside"] == 1 and report.in_domain() == []

    far = torch.tensor([3.0, 0.0], dtype=torch.float64)
    report = find_critical_points(lambda X: ((X - far) ** 2).sum(-1), [-1.0, -1.0], [1.0, 1.0], starts=32)
    assert len(report) == 0 and report.not_converged == 32


def test_float32_network_is_refined_in_float64():
    torch.manual_seed(0)
    net = MLP(2, 1, width=16, depth=2, activation="tanh", dtype="float32")
    report = find_critical_points(net, [-3.0, -3.0], [3.0, 3.0], starts=64)
    assert next(net.parameters()).dtype == torch.float32  # the caller's network is untouched
    # the same search on a float64 copy made here finds the same points
    reference = find_critical_points(copy.deepcopy(net).double(), [-3.0, -3.0], [3.0, 3.0], starts=64)
    assert len(report) == len(reference) >= 1
    for p, q in zip(report, reference):
        assert p.x.dtype == np.float64 and p.kind == q.kind
        np.testing.assert_allclose(p.x, q.x, atol=1e-9)
        x = torch.tensor(p.x, requires_grad=True)  # ∇f there, by plain autograd on the float64 copy
        (gradient,) = torch.autograd.grad(copy.deepcopy(net).double()(x[None]).sum(), x)
        assert float(gradient.norm() * 6.0) <= report.gradient_tolerance  # box width 6 on each axis


# ------------------------------------------------------------------ units of the inputs

#: A user's four inputs: pressure [bar], temperature [K], flow [kg/s], angle [degrees].
UNITS_LOWER = np.array([1.0, 300.0, 0.0, -30.0])
UNITS_UPPER = np.array([5.0, 400.0, 2.0, 30.0])
UNITS_CENTRE = np.array([3.2, 340.0, 1.1, 5.0])
#: Curvature per input in data units: small along the wide temperature and angle ranges.
UNITS_CURVATURE = np.array([1.95, 0.002, 4.05, 0.004])


def _units_bowl(X):
    centre, curvature = (torch.as_tensor(a, dtype=X.dtype) for a in (UNITS_CENTRE, UNITS_CURVATURE))
    return 0.5 * ((X - centre) ** 2 * curvature).sum(-1)


def test_minimum_with_inputs_of_very_different_ranges_is_a_minimum():
    """Eigenvalues 0.002 … 4.05 in data units are a clear minimum: over the box each direction
    changes f by a comparable amount (D H D = diag(31.2, 20, 16.2, 14.4)). A tolerance relative
    to ‖H‖₂ in data units called it degenerate."""
    report = find_critical_points(_units_bowl, UNITS_LOWER, UNITS_UPPER, starts=32)
    (p,) = report.points
    assert (p.kind, p.index, p.in_domain) == ("minimum", 0, True), report.table()
    np.testing.assert_allclose(p.x, UNITS_CENTRE, rtol=1e-10)
    np.testing.assert_allclose(p.eigenvalues, np.sort(UNITS_CURVATURE), rtol=1e-10)  # data units, as before
    widths = UNITS_UPPER - UNITS_LOWER
    np.testing.assert_allclose(p.scaled_eigenvalues, np.sort(UNITS_CURVATURE * widths**2), rtol=1e-10)
    assert p.scaled_gradient_norm <= report.gradient_tolerance
    assert p.to_dict()["scaled_eigenvalues"] == pytest.approx(p.scaled_eigenvalues.tolist())


def test_fitted_surrogate_of_mixed_unit_inputs_reports_the_minimum():
    """The user's case through the public API: surrogates.fit then Surrogate.critical_points()."""
    X = np.random.default_rng(0).uniform(UNITS_LOWER, UNITS_UPPER, (600, 4))
    y = _units_bowl(torch.from_numpy(X)).numpy()
    s = surrogates.fit(X, y, input_names=["pressure", "temperature", "flow", "angle"], lower=UNITS_LOWER,
                       upper=UNITS_UPPER, overrides=[*FAST, "logger=none"])
    report = s.critical_points(starts=64)
    # the same report as the free function on the surrogate's network over its training box
    direct = find_critical_points(s.model, s.lower, s.upper, starts=64)
    assert type(report) is CriticalPointReport and len(report) == len(direct)
    for p, q in zip(report, direct):
        assert p.kind == q.kind and np.array_equal(p.x, q.x) and np.array_equal(p.eigenvalues, q.eigenvalues)
    points = report.in_domain()
    assert [(p.kind, p.index) for p in points] == [("minimum", 0)], points
    np.testing.assert_allclose(points[0].x, UNITS_CENTRE, rtol=0.02)
    np.testing.assert_allclose(points[0].eigenvalues, np.sort(UNITS_CURVATURE), rtol=0.1)


UNIT_FACTORS = st.sampled_from([1e-3, 1e-2, 0.1, 1.0, 10.0, 1e2, 1e3])


@settings(max_examples=12, deadline=None, derandomize=True)
@given(name=st.sampled_from(["quartic", "sincos", "cubic", "sum_of_sines"]), factors=st.lists(UNIT_FACTORS, min_size=3, max_size=3))
def test_kinds_and_indices_do_not_depend_on_the_inputs_units(name, factors):
    """Measuring input i in other units (x_i → c_i x_i: kelvin ↔ millikelvin) changes no kind or index."""
    function = get_function(name, dim=3) if name == "sum_of_sines" else get_function(name)
    d = function.dim
    c = np.asarray(factors[:d])
    scale = torch.as_tensor(c)

    def rescaled(X):
        return function.value(X / scale)

    reference = find_critical_points(function.value, function.lower, function.upper, starts=64)
    other = find_critical_points(rescaled, function.lower * c, function.upper * c, starts=64)
    tables = f"{reference.table()}\n{other.table()}"
    assert sorted((p.kind, p.index, p.in_domain) for p in other) == sorted((p.kind, p.index, p.in_domain) for p in reference), tables
    width = function.upper - function.lower
    found = np.array([q.x / c for q in other]).reshape(-1, d)
    for p in reference:  # the same point (in the reference units), of the same kind and index
        match, distance = _nearest(found / width, p.x / width)
        q = other[match]
        assert distance < (1e-3 if p.kind == "degenerate" else 1e-6) and (q.kind, q.index) == (p.kind, p.index), tables
        if p.kind != "degenerate":
            np.testing.assert_allclose(q.scaled_eigenvalues, p.scaled_eigenvalues, rtol=1e-6)


def test_arguments_are_checked():
    f = get_function("quartic").value
    with pytest.raises(surrogates.InputError, match="one length d ≥ 1"):
        find_critical_points(f, [0.0, 0.0], [1.0])
    with pytest.raises(surrogates.InputError, match="must exceed"):
        find_critical_points(f, [0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="starts must be a positive integer"):
        find_critical_points(f, [0.0, 0.0], [1.0, 1.0], starts=0)
    with pytest.raises(ValueError, match="degenerate_rtol must be a positive number"):
        find_critical_points(f, [0.0, 0.0], [1.0, 1.0], degenerate_rtol=-1.0)
    with pytest.raises(ValueError, match="scalar f"):
        find_critical_points(lambda X: torch.stack([X[:, 0], X[:, 1]], 1), [0.0, 0.0], [1.0, 1.0])


def test_json_and_csv_export(tmp_path):
    report = _search(get_function("quartic"), starts=64)
    document = json.loads(report.write_json(tmp_path / "points.json").read_text())
    assert document["counts"] == {"minimum": 2, "maximum": 0, "saddle": 1, "degenerate": 0, "outside": 0}
    assert document["degenerate_tolerance"] == pytest.approx(report.degenerate_tolerance)
    saddle = next(p for p in document["points"] if p["kind"] == "saddle")
    assert set(saddle) >= {"x", "value", "gradient_norm", "eigenvalues", "kind", "index", "in_domain", "condition_number"}
    np.testing.assert_allclose(saddle["eigenvalues"], [-4, 4], rtol=1e-10)
    with open(report.write_csv(tmp_path / "points.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["kind"] for row in rows] == [p.kind for p in report]
    np.testing.assert_allclose([float(rows[0]["x_0"]), float(rows[0]["lambda_1"])], [report[0].x[0], report[0].eigenvalues[1]])
    assert not list(tmp_path.glob("*.tmp"))


def test_figures_2d_and_10d(tmp_path):
    quartic = get_function("quartic")
    written = write_figures(quartic.value, _search(quartic, starts=32), tmp_path / "2d")
    assert set(written) == {"critical_points"}
    convex = get_function("convex_sines")
    written = write_figures(convex.value, _search(convex, starts=16), tmp_path / "10d")
    assert set(written) == {"eigenvalues", "slices"}
    for path in [*tmp_path.glob("2d/*.png"), *tmp_path.glob("10d/*.png")]:
        assert path.read_bytes()[:8] == PNG_SIGNATURE


# ------------------------------------------------------------------ the command line


def test_cli_run_trains_without_checkpoint_then_reads_one(compose_config, tmp_path, capsys):
    from surrogates.cli.critical import CSV_FILE, JSON_FILE, run

    fast_train = [*FAST, "logger=none"]
    listed = ",".join(f"'{override}'" for override in fast_train)
    cfg = compose_config("critical", [f"train_overrides=[{listed}]", "search.starts=64"])
    document = run(cfg, tmp_path / "fresh")
    checkpoint = tmp_path / "fresh" / "train" / SURROGATE_FILE
    assert checkpoint.is_file() and document["checkpoint"] == str(checkpoint)

    cfg = compose_config("critical", [f"checkpoint={checkpoint}", "search.starts=64", "search.seed=3"])
    document = run(cfg, tmp_path / "run")
    on_disk = json.loads((tmp_path / "run" / JSON_FILE).read_text())
    assert on_disk == json.loads(json.dumps(document))
    assert on_disk["starts"] == 64 and on_disk["settings"]["seed"] == 3
    assert on_disk["converged"] + on_disk["not_converged"] == 64
    assert on_disk["input_names"] == ["x0", "x1"] and on_disk["lower"] == [-2.0, -2.0]
    assert len(on_disk["points"]) == sum(on_disk["counts"].values())
    for p in on_disk["points"]:
        assert p["kind"] in ("minimum", "maximum", "saddle", "degenerate") and len(p["eigenvalues"]) == 2
    assert (tmp_path / "run" / CSV_FILE).is_file()
    assert (tmp_path / "run" / "critical_points.png").read_bytes()[:8] == PNG_SIGNATURE
    assert f"outputs in {tmp_path / 'run'}" in capsys.readouterr().out


def test_cli_refines_each_point_on_the_black_box(compose_config, tmp_path):
    from surrogates.cli.critical import run

    listed = ",".join(f"'{o}'" for o in [*FAST, "logger=none", "data=quad2"])
    local = ",".join(f"'{o}'" for o in ["logger=none", "trainer.enable_progress_bar=false", "trainer.max_epochs=130"])
    cfg = compose_config("critical", [
        f"train_overrides=[{listed}]", "search.starts=32", "figures=false",
        "refine.function=quad2", "refine.samples=300", "refine.starts=16", f"refine.train_overrides=[{local}]",
    ])
    document = run(cfg, tmp_path)
    inside = [p for p in document["points"] if p["in_domain"]]
    assert inside and len(document["refined"]) == len(inside)
    for start, zoom in zip(inside, document["refined"]):
        assert zoom["start"] == start["x"]
        assert all(lo >= -2 and hi <= 2 for lo, hi in zip(zoom["lower"], zoom["upper"]))
    minima = [z["point"] for z in document["refined"] if z["point"] and z["point"]["kind"] == "minimum"]
    assert minima, document["refined"]
    # quad2 = x² + 2y²: the local fit gets the exact curvature even when the quick global fit does not
    np.testing.assert_allclose(minima[0]["eigenvalues"], [2.0, 4.0], rtol=0.02)
    assert np.linalg.norm(minima[0]["x"]) < 0.01
    assert json.loads((tmp_path / "critical_points.json").read_text())["refined"] == json.loads(json.dumps(document["refined"]))


# ------------------------------------------------------------------ fitted surrogates (slow)

#: Fit budget for the slow tests: the package defaults (3000 epochs, L-BFGS polish), no logs.
FIT = ["trainer.enable_progress_bar=false", "logger=none"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """fitted(name, overrides) → Surrogate, fitted once per module."""
    cache = {}

    def _fit(name: str, overrides: list[str]):
        if name not in cache:
            cfg = surrogates.config.compose_config("train", [*FIT, *overrides])
            cache[name] = train(cfg, output_dir=tmp_path_factory.mktemp(name)).surrogate
        return cache[name]

    return _fit


def _surrogate_search(surrogate, record_property, **kwargs) -> CriticalPointReport:
    report = find_critical_points(surrogate.model, surrogate.lower, surrogate.upper, **kwargs)
    record_property("search_seconds", round(report.seconds, 3))
    print(f"\n{report.table()}")
    return report


@pytest.mark.slow
@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_quartic_surrogate_three_points_within_0p02(fitted, record_property, noise):
    s = fitted(f"quartic-{noise}", ["data=quartic", f"data.source.noise={noise}"])
    report = _surrogate_search(s, record_property)
    inside = report.in_domain()
    assert len(inside) == 3, report.table()
    truth = get_function("quartic").critical_points()
    for p in inside:
        match, distance = _nearest(np.array([x for x, _ in truth]), p.x)
        record_property(f"distance_{truth[match][1]}_{match}", distance)
        assert distance < 0.02 and p.kind == truth[match][1]
    assert sorted(_nearest(np.array([p.x for p in inside]), x)[0] for x, _ in truth) == [0, 1, 2]


@pytest.mark.slow
def test_sincos_surrogate_interior_points(fitted, record_property):
    s = fitted("sincos", ["data=sincos"])
    report = _surrogate_search(s, record_property)
    truth = sincos_truth()
    found = np.array([p.x for p in report.in_domain()])
    for x, kind, interior in truth:
        if interior:
            match, distance = _nearest(found, x)
            record_property(f"distance_{kind}_{x.round(3).tolist()}", distance)
            assert distance < 0.02 and report.in_domain()[match].kind == kind
    all_truth = np.array([x for x, _, _ in truth])
    for p in report.in_domain():  # the rest are the true boundary points, pulled slightly by the fit
        match, distance = _nearest(all_truth, p.x)
        assert distance < 0.1 and p.kind == truth[match][1], p


@pytest.mark.slow
def test_cubic_surrogate_origin_is_degenerate(fitted, record_property):
    s = fitted("cubic", ["data=cubic"])
    report = _surrogate_search(s, record_property)
    near_origin = [p for p in report.in_domain() if np.linalg.norm(p.x) < 0.25]
    assert near_origin and all(p.kind == "degenerate" for p in near_origin), report.table()
    largest = max(float(np.abs(p.eigenvalues).max()) for p in near_origin)
    record_property("max_abs_eigenvalue_over_tolerance", largest / report.degenerate_tolerance)
    assert not [p for p in report.in_domain() if p.kind in ("minimum", "maximum")]


@pytest.mark.slow
def test_convex_10d_minimum_zoomed_in_has_eigenvalues_within_2_percent(record_property, tmp_path):
    """10-D convex_sines (unique minimum) as a black box: a global fit to 2000 samples finds the
    minimum, a local fit to 2000 samples around it gets the curvature.

    One global surrogate in 10-D places the minimum well but some eigenvalue more than 5 % off
    (measured ~13 % for the smallest, 0.256); the local fit is what makes 2 % reachable.
    """
    from surrogates.critical.refine import refine_critical_points

    function = get_function("convex_sines")
    X = np.random.default_rng(1).uniform(function.lower, function.upper, (2000, function.dim))
    s = surrogates.fit(X, function.value(X), output_dir=tmp_path, overrides=FIT)
    report = _surrogate_search(s, record_property, starts=256)
    inside = report.in_domain()
    assert len(inside) == 1 and inside[0].kind == "minimum", report.table()
    (truth, _), = function.critical_points()
    exact = np.linalg.eigvalsh(function.hessian(truth))
    global_errors = np.abs(inside[0].eigenvalues - exact) / np.abs(exact)
    record_property("global_distance", float(np.linalg.norm(inside[0].x - truth)))
    record_property("global_max_relative_eigenvalue_error", float(global_errors.max()))
    assert global_errors.max() > 0.05  # the README's case for zooming in: one global fit is not enough

    (zoom,) = refine_critical_points(function.value, inside, function.lower, function.upper, overrides=FIT)
    assert zoom.point is not None and zoom.point.kind == "minimum", zoom.report.table()
    assert len(zoom.report.in_domain()) == 1
    errors = np.abs(zoom.point.eigenvalues - exact) / np.abs(exact)
    record_property("distance", float(np.linalg.norm(zoom.point.x - truth)))
    record_property("max_relative_eigenvalue_error", float(errors.max()))
    assert np.linalg.norm(zoom.point.x - truth) < 0.01
    assert errors.max() < 0.02


def test_cli_piped_is_short_and_critical_log_holds_the_report(tmp_path):
    import os
    import subprocess
    import sys

    listed = ",".join(f"'{o}'" for o in ["debug=fast", "logger=none"])  # no progress-bar setting: the pipe decides
    done = subprocess.run(
        [sys.executable, "-m", "surrogates.cli.critical", f"train_overrides=[{listed}]", "search.starts=16",
         "figures=false", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    output = done.stdout + done.stderr
    for text in ("GPU available", "TPU available", "Tip", "it/s"):
        assert text not in output, text
    assert done.stdout.count("fitted to") == 1 and done.stdout.count("outputs in") == 1
    log = (tmp_path / "run" / "critical.log").read_text()
    assert "fitted to function quartic" in log and f"outputs in {tmp_path / 'run'}" in log
