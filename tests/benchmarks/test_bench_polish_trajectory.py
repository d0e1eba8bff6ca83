"""scripts/bench_polish_trajectory.py: a short run on a held-out function, end to end."""

from __future__ import annotations

import json
import math

from conftest import load_script


def test_short_heldout_run_reports_the_trajectory_and_where_each_tolerance_stops(tmp_path, capsys):
    bench = load_script("bench_polish_trajectory")
    checks_per_epoch = bench.fitting_module.CHECKS_PER_EPOCH
    out = tmp_path / "trajectory.json"
    assert bench.main(["--heldout", "2026", "--functions", "1", "--noise", "0.01", "--iterations", "50",
                       "--out", str(out)]) == 0
    assert bench.fitting_module.CHECKS_PER_EPOCH == checks_per_epoch  # the default fit's calls, restored
    (result,) = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert result["case"] in printed and "val rms" in printed and result["noise"] == 0.01
    reports = result["reports"]
    assert [r["iterations"] for r in reports] == [0, 25, 50]
    assert [r["polish_seconds"] for r in reports] == sorted(r["polish_seconds"] for r in reports)
    for report in reports[1:]:
        assert math.isfinite(report["nats"]) and 0 < report["gradient"] < 0.2 and 0 < report["hessian"] < 0.5
        # 1 % noise is 0.01 of the output's std: the validation error cannot fall below it
        assert 0.007 < report["validation_rms"] < 0.03, report["validation_rms"]
    # and after 50 iterations the evidence has found it (from Adam's error, above it)
    assert reports[1]["noise_std"] > reports[2]["noise_std"]
    assert 0.007 < reports[2]["noise_std"] < 0.013, [r["noise_std"] for r in reports[1:]]
    # 50 iterations are less than one 100-iteration window: no tolerance can stop the polish
    assert all(stop["iterations"] == 50 for stop in result["stops"].values())
