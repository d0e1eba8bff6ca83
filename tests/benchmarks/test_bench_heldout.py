"""scripts/bench_heldout.py: its reference derivatives against finite differences, and a quick run end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import load_script

from surrogates.fitting.functions import FUNCTIONS


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_heldout")


def _central_differences(f, x: np.ndarray, width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient (step 1e-5 of each input's width) and Hessian (step 1e-3) of ``f`` at ``x`` from values alone."""
    d = x.size

    def value(p: np.ndarray) -> float:
        return float(f.value(p))

    h1, h2 = 1e-5 * width, 1e-3 * width
    g = np.array([(value(x + h1[j] * e) - value(x - h1[j] * e)) / (2 * h1[j]) for j, e in enumerate(np.eye(d))])
    H = np.empty((d, d))
    for i, ei in enumerate(np.eye(d)):
        H[i, i] = (value(x + h2[i] * ei) - 2 * value(x) + value(x - h2[i] * ei)) / h2[i] ** 2
        for j in range(i):
            a, b = h2[i] * ei, h2[j] * np.eye(d)[j]
            H[i, j] = H[j, i] = (value(x + a + b) - value(x + a - b) - value(x - a + b) + value(x - a - b)) / (
                4 * h2[i] * h2[j])
    return g, H


@pytest.mark.parametrize("kind", ["polynomial", "sines", "bumps", "valley"])
def test_reference_derivatives_match_finite_differences_of_the_value(bench, kind):
    rng = np.random.default_rng(11)
    for index in range(3):  # three instances of the kind, four random points each
        f, _, _ = bench.draw_function(rng, index, kind)
        assert f.kind == kind and f.name not in FUNCTIONS
        width = f.upper - f.lower
        X = rng.uniform(f.lower + 0.1 * width, f.upper - 0.1 * width, size=(4, f.dim))
        G, H = np.asarray(f.gradient(X)), np.asarray(f.hessian(X))
        assert G.shape == (4, f.dim) and H.shape == (4, f.dim, f.dim) and H.dtype == np.float64
        np.testing.assert_allclose(np.asarray(f.laplacian(X)), np.trace(H, axis1=1, axis2=2), rtol=1e-12, atol=0)
        for x, g, h in zip(X, G, H):
            g_fd, h_fd = _central_differences(f, x, width)
            assert np.linalg.norm(g - g_fd) <= 1e-6 * np.linalg.norm(g), (f.describe(), g, g_fd)
            assert np.linalg.norm(h - h_fd) <= 1e-4 * np.linalg.norm(h), (f.describe(), h, h_fd)


def test_family_is_reproducible_covers_every_kind_and_has_the_stated_ranges(bench):
    family = bench.draw_family(8, 2026)
    again = bench.draw_family(3, 2026)  # function i does not depend on how many are drawn
    for (f, n, seed), (f2, n2, seed2) in zip(family, again):
        assert (f.name, n, seed) == (f2.name, n2, seed2)
        X = np.random.default_rng(0).uniform(f.lower, f.upper, size=(5, f.dim))
        np.testing.assert_array_equal(f.value(X), f2.value(X))
    assert sorted(f.kind for f, _, _ in family[:4]) == sorted(bench.KINDS)
    assert sorted(f.kind for f, _, _ in family[4:]) == sorted(bench.KINDS)
    for f, n, _ in family:
        width = f.upper - f.lower
        assert 2 <= f.dim <= 6 and n in (2000, 3000) and len(f.name) <= 10
        assert np.all((-10 <= f.lower) & (f.lower <= 10)) and np.all((0.1 <= width) & (width <= 100))
        # the drawn std of f is what the scale gives, over samples of the box
        X = np.random.default_rng(1).uniform(f.lower, f.upper, size=(4000, f.dim))
        assert np.std(f.value(X)) == pytest.approx(f.output_std, rel=0.1)
    other, _, other_seed = bench.draw_family(1, 7)[0]
    assert other_seed != family[0][2] and other.describe() != family[0][0].describe()


def test_samples_follow_the_protocol_sampling(bench):
    f, _, seed = bench.draw_family(1, 2026)[0]
    exact, noisy = bench.draw_samples(f, 300, 0.0, seed), bench.draw_samples(f, 300, 0.01, seed)
    np.testing.assert_array_equal(exact.X, noisy.X)  # the same inputs; noise drawn after them
    assert exact.function is f and np.all((exact.X >= f.lower) & (exact.X <= f.upper))
    np.testing.assert_allclose(exact.y[:, 0], f.value(exact.X), rtol=1e-13)
    assert np.std(noisy.y - exact.y) == pytest.approx(0.01 * np.std(exact.y), rel=0.15)


def test_quick_run_writes_the_table_summary_and_json(bench, tmp_path, capsys):
    pytest.importorskip("sklearn")
    out = tmp_path / "heldout.json"
    assert bench.main(["--quick", "--functions", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["quick"] is True and result["seed"] == bench.DEFAULT_SEED
    assert result["threads"]["one_thread"]["torch"] == 1 and "debug=fast" in result["args"]["overrides"]
    (function,) = result["functions"]
    name = function["case"]
    assert function["n_samples"] == 200 and name in printed and function["description"] in printed
    assert [(c["case"], c["noise"]) for c in result["cases"]] == [(name, 0.0), (name, 0.01)]
    for case in result["cases"]:
        rows = {row["method"]: row for row in case["rows"]}
        assert set(rows) == {"surrogates", "gp"}
        for method, row in rows.items():
            assert "error" not in row, [f.get("traceback") for f in row["fits"]]
            for key in ("fit_seconds", "fit_cpu_seconds", "gradient_median", "hessian_median"):
                assert math.isfinite(row[key]) and row[key] > 0, (method, key)
            assert f"{name:<10} {case['noise']:>5g}   1 {method:<10}" in printed
        assert rows["surrogates"]["train_samples"] + rows["surrogates"]["val_samples"] == 200
        assert rows["gp"]["train_samples"] == 200
        assert case["time_ratio"] == pytest.approx(rows["surrogates"]["fit_seconds"] / rows["gp"]["fit_seconds"])
        expected = all(rows["surrogates"][k] <= rows["gp"][k] for k in ("fit_seconds", "gradient_median", "hessian_median"))
        assert case["target"] is expected
    summary = result["summary"]
    assert summary["compared"] == 2 and summary["targets_met"] == sum(c["target"] for c in result["cases"])
    ratios = [c["rows"][0]["gradient_median"] / c["rows"][1]["gradient_median"] for c in result["cases"]]
    assert summary["median_gradient_error_ratio"] == pytest.approx(np.median(ratios))
    assert f"targets met on {summary['targets_met']} of 2 cases" in printed


@pytest.mark.parametrize("argv", [["--functions", "0"], ["--noise", "x"], ["--noise", "-0.1"], ["--repeats", "0"]])
def test_bad_arguments_are_refused(bench, argv):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
