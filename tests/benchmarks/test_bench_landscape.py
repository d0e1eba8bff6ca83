"""Smoke test of scripts/bench_landscape.py's GGN/Fisher/KFAC section on two tiny nets, checked through its JSON."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch
from conftest import load_script
from landscape_helpers import one_thread  # noqa: F401 (autouse fixture)

from surrogates.landscape import Example, teacher_classification


def _tiny_cnn():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    X = torch.randn(24, 1, 6, 6, generator=g)
    Y = torch.randint(0, 3, (24,), generator=g)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, stride=2, padding=1), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(18, 3)
    )
    return Example(model, torch.nn.CrossEntropyLoss(), X, Y, {"recipe": "untrained tiny CNN"})


@pytest.mark.slow  # ~10-30 s: eigsh on every operator of both libraries, float64 references
def test_curvature_section_reports_agreement_products_and_seconds(tmp_path, capsys):
    bench = load_script("bench_landscape")
    mlp = teacher_classification(n_samples=64, d_in=5, hidden=(8,), n_classes=3, steps=20)
    args = types.SimpleNamespace(reps=1, out=str(tmp_path / "b.json"))
    result = bench.curvature_benchmark(args, {"threads": 1}, [("mlp", mlp), ("cnn", _tiny_cnn())])
    bench.write_curvature(args, result)
    saved = json.loads((tmp_path / "b_curvature.json").read_text())
    assert (tmp_path / "b_curvature.txt").read_text().splitlines()[0].startswith("net")
    assert "KFAC/GGN top-5" in capsys.readouterr().out
    for net in ("mlp", "cnn"):
        for kind in bench.CURVATURES:
            row = saved["rows"][f"{net}/{kind}"]
            assert row["rel_error"] < 1e-4, (net, kind)  # float32 run vs float64 reference
            assert (row["products"] == 0) == (kind == "kfac") and row["wall_s"] > 0 and row["product_s"] > 0
            if "curvlinops" in row and "wall_s" in row["curvlinops"]:
                assert row["float64_relative_difference"] < 1e-10, (net, kind)
                assert row["curvlinops"]["products"] > 0
        ggn, kfac = np.array(saved["rows"][f"{net}/ggn"]["reference"]), np.array(saved["rows"][f"{net}/kfac"]["reference"])
        np.testing.assert_allclose(saved["rows"][f"{net}/kfac_over_ggn"], kfac / ggn)
        assert saved["rows"][f"{net}/hessian_product_s"] > 0
