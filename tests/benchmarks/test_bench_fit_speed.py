"""Smoke test of scripts/bench_fit_speed.py: one tiny quartic case, checked through its JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import load_script

TINY = "trainer.max_epochs=30,model.width=16,model.polish_epochs=2,model.polish_iterations=5"




@pytest.fixture(scope="module")
def bench():
    return load_script("bench_fit_speed")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def test_tiny_quartic_run_reports_times_errors_and_target(bench, tmp_path, capsys):
    pytest.importorskip("sklearn")
    from surrogates.fitting.functions import get_function
    from surrogates.fitting.metrics import protocol_test_points
    from surrogates.surrogate import Surrogate

    out, saved = tmp_path / "speed.json", tmp_path / "surrogates"
    code = bench.main(["--cases", "quartic", "--noise", "0", "--repeats", "2", "--overrides", TINY,
                       "--gp-max-samples", "150", "--save-surrogates", str(saved), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "threads: torch=1 blas=1" in printed and "cores" in printed
    result = json.loads(out.read_text())
    assert result["threads"]["one_thread"]["torch"] == 1 and result["machine"]["cpu_count"] >= 1
    (case,) = result["cases"]
    assert (case["case"], case["noise"], case["threads"], case["n_samples"]) == ("quartic", 0.0, 1, 2000)
    rows = {row["method"]: row for row in case["rows"]}
    assert set(rows) == {"surrogates", "gp"}
    for method, row in rows.items():
        assert "error" not in row, [f.get("traceback") for f in row["fits"]]
        assert len(row["fits"]) == 2 and row["failed_fits"] == 0
        for key in ("fit_seconds", "fit_cpu_seconds", "gradient_median", "hessian_median"):
            assert _finite(row[key]) and row[key] > 0, (method, key, row[key])
        assert row["fit_seconds"] == pytest.approx(np.median([f["fit_seconds"] for f in row["fits"]]))
        assert f"quartic        0   1 {method:<10}" in printed  # a table line per method
    assert rows["gp"]["train_samples"] == 150
    assert rows["surrogates"]["train_samples"] + rows["surrogates"]["val_samples"] == 2000
    # the overrides reached the default config, and the training summary's time breakdown was kept
    fit = rows["surrogates"]["fits"][0]
    assert fit["info"]["model"]["width"] == 16 and fit["info"]["max_epochs"] == 30
    assert fit["time_breakdown"]["epochs"] == 30
    assert "where the surrogate fits' time went" in printed
    # ratio and target follow from the rows
    assert case["time_ratio"] == pytest.approx(rows["surrogates"]["fit_seconds"] / rows["gp"]["fit_seconds"])
    expected = (rows["surrogates"]["fit_seconds"] <= rows["gp"]["fit_seconds"]
                and all(rows["surrogates"][k] <= rows["gp"][k] for k in ("gradient_median", "hessian_median")))
    assert case["target"] is expected and (case["target_failures"] == []) is expected

    # Independent check of the surrogate's errors: the saved network, the exact quartic, the protocol's points.
    surrogate = Surrogate.load(fit["surrogate_file"])
    quartic = get_function("quartic")
    X = protocol_test_points(quartic.lower, quartic.upper)
    g, H = np.asarray(quartic.gradient(X)), np.asarray(quartic.hessian(X))
    g_hat, H_hat = np.asarray(surrogate.gradient(X)), np.asarray(surrogate.hessian(X))
    keep = np.linalg.norm(g, axis=1) >= 1e-3
    grad = np.median(np.linalg.norm(g_hat - g, axis=1)[keep] / np.linalg.norm(g, axis=1)[keep])
    hess = np.median(np.linalg.norm((H_hat - H).reshape(len(X), -1), axis=1) / np.linalg.norm(H.reshape(len(X), -1), axis=1))
    assert fit["metrics"]["gradient"]["median"] == pytest.approx(grad, rel=1e-6)
    assert fit["metrics"]["hessian"]["median"] == pytest.approx(hess, rel=1e-6)
    assert 0 < grad < 1 and 0 < hess < 1.5


def test_no_gp_skips_the_comparison(bench, tmp_path, capsys):
    out = tmp_path / "speed.json"
    assert bench.main(["--cases", "quartic", "--noise", "0.01", "--no-gp", "--overrides", TINY, "--out", str(out)]) == 0
    (case,) = json.loads(out.read_text())["cases"]
    assert [row["method"] for row in case["rows"]] == ["surrogates"]
    assert case["target"] is None and case["time_ratio"] is None
    assert "n/a (no GP)" in capsys.readouterr().out


def test_default_noise_levels_and_thread_runs_follow_the_cases(bench):
    args = bench.parse_args(["--cases", "mixed10,rosenbrock", "--threads", "4"])
    assert args.noise_list is None and bench.CASES["mixed10"]["noise"] == (0.01,)
    assert bench.CASES["mixed10"]["multithread"] and not bench.CASES["rosenbrock"]["multithread"]
    assert bench.parse_args(["--overrides", "model=fast,trainer.max_epochs=[1,2]"]).overrides == [
        "model=fast", "trainer.max_epochs=[1,2]"]


@pytest.mark.parametrize("argv", [["--cases", "quad9"], ["--noise", "x"], ["--repeats", "0"]])
def test_bad_arguments_are_refused(bench, argv):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
