"""surrogates-query and the Lightning predict path."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import torch

from surrogates.cli.query import run
from surrogates.data import DataError
from surrogates.model import MLP
from surrogates.query import grid_points, query
from surrogates.surrogate import Surrogate


@pytest.fixture(scope="module")
def surrogate():
    torch.manual_seed(0)
    model = MLP(2, 1, width=16, depth=2, activation="silu")
    model.set_normalisation(torch.tensor([0.5, 10.0]), torch.tensor([0.3, 4.0]), torch.tensor([1.0]), torch.tensor([2.0]))
    return Surrogate(model, ["u", "v"], ["f"], True, lower=[0, 0], upper=[1, 20])


@pytest.fixture(scope="module")
def vector_surrogate():
    torch.manual_seed(1)
    return Surrogate(MLP(3, 2, width=8, depth=2), ["a", "b", "c"], ["p", "q"], False, lower=[0] * 3, upper=[1] * 3)


def _trainer():
    return L.Trainer(accelerator="cpu", devices=1, logger=False, inference_mode=False, enable_progress_bar=False, enable_model_summary=False)


def test_predict_path_equals_direct_queries_with_uneven_batches(surrogate):
    X = np.random.default_rng(0).uniform([0, 0], [1, 20], size=(103, 2))
    results = query(surrogate, X, ["value", "gradient", "hessian", "laplacian", "hessian_eigenvalues"], trainer=_trainer(), batch_size=16)
    np.testing.assert_allclose(results["value"], surrogate.predict(X), rtol=1e-12)
    np.testing.assert_allclose(results["gradient"], surrogate.gradient(X), rtol=1e-12)
    np.testing.assert_allclose(results["hessian"], surrogate.hessian(X), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(results["laplacian"], np.trace(surrogate.hessian(X), axis1=1, axis2=2), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(results["hessian_eigenvalues"], np.linalg.eigvalsh(surrogate.hessian(X)), rtol=1e-9, atol=1e-14)
    assert np.abs(results["gradient"]).max() > 0  # not the silent zeros of inference mode


def test_vector_surrogate_jacobian_and_scalar_only_quantities(vector_surrogate):
    X = np.random.default_rng(1).uniform(size=(20, 3))
    results = query(vector_surrogate, X, ["value", "jacobian", "hessian"], trainer=_trainer(), batch_size=7)
    assert results["value"].shape == (20, 2) and results["jacobian"].shape == (20, 2, 3)
    assert results["hessian"].shape == (20, 2, 3, 3)
    with pytest.raises(ValueError, match=r"\['gradient'\] need a scalar surrogate"):
        query(vector_surrogate, X, ["gradient"], trainer=_trainer())
    with pytest.raises(ValueError, match="unknown quantities"):
        query(vector_surrogate, X, ["curl"], trainer=_trainer())


def test_inference_mode_trainer_is_refused(surrogate):
    trainer = L.Trainer(accelerator="cpu", logger=False, inference_mode=True, enable_progress_bar=False)
    with pytest.raises(ValueError, match="inference_mode=False"):
        query(surrogate, np.zeros((4, 2)), ["gradient"], trainer=trainer)


def test_grid_points():
    X = grid_points([0, -1], [1, 1], [3, 5])
    assert X.shape == (15, 2)
    assert {tuple(p) for p in X} >= {(0.0, -1.0), (1.0, 1.0), (0.5, 0.0)}
    with pytest.raises(ValueError, match="is 100,000,000 points"):
        grid_points([0] * 4, [1] * 4, 100)


def test_cli_with_checkpoint_and_points_file(compose_config, surrogate, tmp_path):
    surrogate.save(tmp_path / "s.safetensors")
    X = np.random.default_rng(2).uniform([0, 0], [1, 20], size=(30, 2))
    (tmp_path / "points.csv").write_text("v,u\n" + "\n".join(f"{b},{a}" for a, b in X) + "\n")
    cfg = compose_config("query", [f"checkpoint={tmp_path / 's.safetensors'}", f"points={tmp_path / 'points.csv'}",
                                   "quantities=[value,gradient,hessian]", "trainer.enable_progress_bar=false"])
    summary = run(cfg, tmp_path / "out")
    saved = np.load(tmp_path / "out" / "query.npz")
    np.testing.assert_allclose(saved["X"], X)  # columns matched by name, not position
    np.testing.assert_allclose(saved["gradient"], surrogate.gradient(X), rtol=1e-12)
    header = (tmp_path / "out" / "query.csv").read_text().splitlines()[0]
    assert header == "u,v,f,df/du,df/dv"
    assert summary["quantities"]["hessian"] == [30, 2, 2]
    assert json.loads((tmp_path / "out" / "query.json").read_text())["points"] == 30
    assert (tmp_path / "out" / "contour.png").stat().st_size > 10_000


def test_cli_grid_counts_extrapolation_and_bad_points(compose_config, surrogate, tmp_path):
    surrogate.save(tmp_path / "s.safetensors")
    cfg = compose_config("query", [f"checkpoint={tmp_path / 's.safetensors'}", "grid.counts=[4,3]", "grid.upper=[2,20]",
                                   "plot=false", "trainer.enable_progress_bar=false"])
    summary = run(cfg, tmp_path / "grid")
    assert summary["points"] == 12 and summary["outside_training_domain"] == 6
    np.save(tmp_path / "bad.npy", np.zeros((5, 3)))
    cfg = compose_config("query", [f"checkpoint={tmp_path / 's.safetensors'}", f"points={tmp_path / 'bad.npy'}"])
    with pytest.raises(DataError, match=r"must have shape \(N, 2\) for inputs \['u', 'v'\], got \(5, 3\)"):
        run(cfg, tmp_path / "bad")
    assert not (tmp_path / "bad" / "query.npz").exists()
