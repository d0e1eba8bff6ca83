"""scripts/bench_active.py: the report's arithmetic and one tiny end-to-end run."""

from __future__ import annotations

import json

import pytest
from conftest import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_active")


def test_uniform_equivalent_sample_count_is_log_log_interpolated(bench):
    uniform = [{"samples": 100, "e": 0.1}, {"samples": 400, "e": 0.025}, {"samples": 1600, "e": 0.02}]
    # halfway in log error between 100 and 400 samples → halfway in log samples: 200
    assert bench.uniform_samples_for(0.05, uniform, "e") == pytest.approx(200.0)
    assert bench.uniform_samples_for(0.2, uniform, "e") == 100.0  # already reached at the smallest size
    assert bench.uniform_samples_for(0.01, uniform, "e") is None  # never reached


def test_tiny_run_writes_both_arms(bench, tmp_path, capsys):
    out = tmp_path / "active.json"
    bench.main(["--function", "quad2", "--initial", "40", "--batch", "20", "--rounds", "1", "--uniform-extra", "80",
                "--ensemble", "2", "--jobs", "1", "--noise", "0.01", "--overrides", "debug=fast", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert sorted((r["arm"], r["samples"]) for r in rows) == [
        ("active", 40), ("active", 60), ("uniform", 40), ("uniform", 60), ("uniform", 80)]
    assert all(0 < r["box_hessian_rms"] < 10 for r in rows)
    assert "uniform samples needed for the error of each active round" in capsys.readouterr().out
