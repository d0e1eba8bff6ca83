"""Smoke test of scripts/bench_landscape_cli.py: a barely trained CNN, shrunken runs, checked through its files."""

from __future__ import annotations

import json

import pytest
from conftest import load_script

# keys both the baseline tree and this one know, so each CLI run takes seconds
QUICK = ["spectrum.k=1", "spectrum.max_iter=8", "spectrum.refine=false", "trace.num_products=6", "density.num_probes=2", "density.num_steps=2",
         "slices.points_1d=5", "slices.points_2d=3", "figures=false"]


@pytest.mark.slow
def test_bench_runs_before_and_after_and_writes_its_table(tmp_path):
    pytest.importorskip("sklearn")
    bench = load_script("bench_landscape_cli")
    out = tmp_path / "bench"
    result = bench.main(["--reps", "2", "--work", str(tmp_path / "work"), "--out", str(out), "--train-steps", "2",
                         "--old-slice-grids", "5", "3", "--overrides", *QUICK])
    assert set(result["medians"]) == {"before", "before + allocator", "after", "after, old slice grids", "after + layers"}
    assert result["runs"]["after + layers"][0]["hvp_counts"]["layers"] > 0
    for name, runs in result["runs"].items():
        assert len(runs) == 2 and all(r["cpu_s"] > 0 for r in runs), name
        assert all(r["hvp_counts"]["spectrum"] <= 8 for r in runs)
    assert result["runs"]["before"][0]["trace"]["method"] == "hutch++"
    assert result["runs"]["after"][0]["trace"]["method"] == "Krylov-deflated Hutchinson"
    # same seed, same grids and directions: the slices agree to float32 rounding
    for check in [c["slices_rel_diff_max"] for c in result["checks"]] + result["slices_old_grids"]:
        assert max(check.values()) < 1e-5
    text = (tmp_path / "bench.txt").read_text()
    assert "speed-up (cpu)" in text and "after vs before" in text
    assert json.loads((tmp_path / "bench.json").read_text())["reps"] == 2
