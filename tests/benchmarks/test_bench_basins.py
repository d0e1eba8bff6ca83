"""scripts/bench_basins.py: one tiny end-to-end run writes every arm."""

from __future__ import annotations

import json

from conftest import load_script


def test_tiny_run_writes_times_errors_and_the_tolerance_study(tmp_path, capsys):
    bench = load_script("bench_basins")
    out = tmp_path / "basins.json"
    bench.main(["--points", "64", "--repeats", "1", "--tolerance-points", "32", "--overrides", "debug=fast",
                "--out", str(out)])
    document = json.loads(out.read_text())
    assert [(r["function"], r["points"]) for r in document["rows"]] == [("surrogate", 64), ("exact", 64)]
    exact = document["rows"][1]
    assert exact["minima"] == 2 and abs(sum(exact["fractions"]) - 1) < 1e-12
    assert all(abs(e) <= 3 * s + 1e-12 for e, s in zip(exact["errors"], exact["stderrs"]))
    assert {r["case"] for r in document["tolerance_study"]} == {"surrogate", "exact", "waves"}
    assert out.with_suffix(".txt").read_text().startswith("bench_basins:")
    assert "labels differing" in capsys.readouterr().out
