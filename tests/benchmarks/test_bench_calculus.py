"""Smoke test of scripts/bench_calculus.py: the quick run, checked through its JSON and table."""

from __future__ import annotations

import json
import math

import pytest

from conftest import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_calculus")


def test_quick_run_reports_costs_sweeps_and_the_qmc_target(bench, tmp_path, capsys):
    out = tmp_path / "calculus.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["machine"]["threads"] == 1 and result["machine"]["clock"] == "process CPU time"
    table = out.with_suffix(".txt").read_text()
    assert "Part 1" in table and "Part 2" in table and table.strip().splitlines()[-1] in printed

    rows = result["vector"]
    assert {(r["d"], r["f"]) for r in rows} == {(d, f) for d in (2, 3) for f in ("package MLP", "opaque callable")}
    for row in rows:
        for name, ratio in row["over_jacobian"].items():
            assert ratio == pytest.approx(row["seconds"][name] / row["seconds"]["jacobian"])
            assert 0 < ratio < 100, (row, name)

    integrals = {r["integrand"]: r for r in result["integrals"]}
    assert set(integrals) == {"oscillatory-2d", "gaussian-disk", "oscillatory-6d"}
    for r in integrals.values():
        counts = [e["points"] for e in r["sweep"]]
        assert counts == [2**k for k in range(6, 12)]
        for sampler, needed in r["needed"].items():
            n, extrapolated = bench.points_needed(counts, [e[sampler]["stderr_median"] for e in r["sweep"]], r["target_stderr"])
            assert needed == {"points": n, "extrapolated": extrapolated}
        assert r["mc_over_qmc"] == pytest.approx(r["needed"]["random"]["points"] / r["needed"]["sobol"]["points"])
        assert r["target_met"] is (r["mc_over_qmc"] >= 10)
        assert all(0 <= c <= 1 for c in r["coverage_2sigma"].values())
        # plain MC's stderr falls like N^(-1/2): 32× the points, ~1/5.7 the error (loose: 3 seeds)
        mc = [e["random"]["stderr_median"] for e in r["sweep"]]
        assert 2.5 < mc[0] / mc[-1] < 15
    # even the quick sweep shows QMC far ahead on the smooth 2-D integrand
    assert integrals["oscillatory-2d"]["mc_over_qmc"] > 10
    assert result["all_targets_met"] is all(r["target_met"] for r in result["integrals"])
    assert {row["route"] for row in result["throughput"]} == {"sobol", "random", "forward only"}
    assert all(math.isfinite(row["points_per_second"]) and row["points_per_second"] > 0 for row in result["throughput"])


def test_points_needed_interpolates_and_extrapolates_monte_carlo(bench):
    counts, stderrs = [100, 400, 1600], [1.0, 0.5, 0.25]  # the MC law, stderr ∝ N^(-1/2)
    assert bench.points_needed(counts, stderrs, 0.5) == (pytest.approx(400), False)
    n, extrapolated = bench.points_needed(counts, stderrs, 0.7071067811865476)
    assert n == pytest.approx(200) and not extrapolated
    assert bench.points_needed(counts, stderrs, 0.125) == (pytest.approx(6400), True)
    assert bench.points_needed(counts, stderrs, 2.0) == (100.0, False)


@pytest.mark.parametrize("argv", [["--dims", "2,x"], ["--reps", "0"], ["--target", "-1"]])
def test_bad_arguments_are_refused(bench, argv):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
