"""Smoke test of scripts/bench_accuracy.py: its quick mode on one tiny case, checked through its JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_accuracy")


def test_quick_run_writes_every_requested_row(bench, tmp_path, capsys):
    pytest.importorskip("sklearn")
    methods = ["surrogates", "tiny", "ens2", "gp"]
    try:
        import pydelt  # noqa: F401

        methods.append("pydelt")
    except ImportError:
        pass
    out = tmp_path / "results.json"
    code = bench.main(
        [
            "--quick",
            "--functions", "quad2",
            "--noise", "0",
            "--methods", ",".join(methods),
            "--preset", "tiny=model.width=16,model.depth=1",
            "--preset", "ens2=ensemble.size=2,model.width=16",
            "--out", str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "threads torch=1" in printed
    result = json.loads(out.read_text())
    assert result["quick"] is True and result["threads"]["torch"] == 1
    rows = {(r["function"], r["noise"], r["method"]): r for r in result["rows"]}
    assert set(rows) == {("quad2", 0.0, m) for m in methods}
    for method in methods:
        row = rows[("quad2", 0.0, method)]
        assert "error" not in row, row.get("traceback")
        assert row["n_samples"] == bench.QUICK_N
        for key in ("gradient", "hessian", "mixed_partials", "laplacian_abs"):
            assert np.isfinite(row["metrics"][key]["median"])
        assert row["fit_seconds"] > 0 and row["query_seconds"] > 0
        assert f"quad2    {0:>5g} {method:<14}" in printed  # a table line per row
    # The surrogate holds out its validation split; the table says so.
    assert rows[("quad2", 0.0, "surrogates")]["train_samples"] + rows[("quad2", 0.0, "surrogates")]["val_samples"] == bench.QUICK_N
    assert rows[("quad2", 0.0, "surrogates")]["val_samples"] > 0
    assert rows[("quad2", 0.0, "tiny")]["info"]["model"]["width"] == 16
    calibration = rows[("quad2", 0.0, "ens2")]["calibration"]
    assert calibration["members"] == 2
    for part in ("first_derivatives", "hessian"):
        assert 0.0 <= calibration[part]["within_2std"] <= 1.0 and calibration[part]["entries"] > 0
    assert "calibration" not in rows[("quad2", 0.0, "surrogates")]
    # A GP fits a quadratic almost exactly: its analytic posterior-mean derivatives must show it.
    gp = rows[("quad2", 0.0, "gp")]["metrics"]
    assert gp["gradient"]["median"] < 1e-3
    assert gp["hessian"]["median"] < 1e-2
    if "pydelt" in methods:
        # Per-axis splines: no mixed partials, but quad2 has none either.
        assert rows[("quad2", 0.0, "pydelt")]["metrics"]["mixed_partials"]["median"] == 0.0


def test_gp_derivatives_match_finite_differences(bench):
    pytest.importorskip("sklearn")
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    samples = bench.draw_samples("vec2", 0.01, 120)
    model = bench.fit_gp(samples, max_samples=100, restarts=0).model
    assert model.X.shape[0] == 100  # subsampled
    # A well-conditioned fixed kernel, so finite differences of the mean are accurate.
    kernel = ConstantKernel(2.0) * RBF([0.8, 1.3]) + WhiteKernel(1e-2)
    gpr = GaussianProcessRegressor(kernel, normalize_y=True, optimizer=None).fit(samples.X, samples.y)
    model = bench.GPModel(gpr, scalar_output=False)
    X = np.random.default_rng(0).uniform(-1.5, 1.5, (5, 2))
    np.testing.assert_allclose(model.predict(X), gpr.predict(X), rtol=1e-10, atol=1e-10)
    eps = 1e-5
    jac = model.jacobian(X)
    hess = model.hessian(X)
    for j in range(2):
        step = eps * np.eye(2)[j]
        fd_jac = (model.predict(X + step) - model.predict(X - step)) / (2 * eps)
        np.testing.assert_allclose(jac[:, :, j], fd_jac, rtol=1e-6, atol=1e-7)
        fd_hess = (model.jacobian(X + step) - model.jacobian(X - step)) / (2 * eps)
        np.testing.assert_allclose(hess[..., j], fd_hess, rtol=1e-6, atol=1e-7)


def test_preset_overrides_split_outside_brackets(bench):
    assert bench._split_overrides("a=1, b=[1,2],c='x,y'") == ["a=1", "b=[1,2]", "c='x,y'"]


def test_protocol_samples_are_drawn_once_per_case(bench):
    a, b = bench.draw_samples("quartic", 0.01, 50), bench.draw_samples("quartic", 0.01, 50)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    rng = np.random.default_rng(1)
    np.testing.assert_array_equal(a.X, rng.uniform(-2, 2, size=(50, 2)))


def test_seeds_fit_each_surrogates_method_once_per_seed_and_summarise(bench, tmp_path, capsys):
    out = tmp_path / "results.json"
    code = bench.main(["--quick", "--functions", "quad2", "--noise", "0", "--methods", "tiny",
                       "--preset", "tiny=model.width=8,model.depth=1", "--seeds", "3,4", "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [row["seed"] for row in rows] == [3, 4]
    assert all("error" not in row for row in rows), [row.get("traceback") for row in rows]
    gradients = [row["metrics"]["gradient"]["median"] for row in rows]
    assert gradients[0] != gradients[1]  # different initialisations give different fits
    (summary,) = result["over_seeds"]
    assert (summary["method"], summary["seeds"]) == ("tiny", [3, 4])
    assert summary["first_derivative"]["mean"] == pytest.approx(np.mean(gradients))
    assert summary["first_derivative"]["min"] == min(gradients) and summary["first_derivative"]["max"] == max(gradients)
    printed = capsys.readouterr().out
    assert "tiny s3" in printed and "tiny s4" in printed and "over seeds [3, 4]" in printed


@pytest.mark.parametrize("seeds", ["0,x", "1,1", ","])
def test_bad_seed_lists_are_refused(bench, seeds):
    with pytest.raises(SystemExit, match="--seeds"):
        bench.main(["--quick", "--functions", "quad2", "--methods", "surrogates", "--seeds", seeds])
