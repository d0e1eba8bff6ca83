"""Training and the derivative query under Lightning's DDP strategy (2 CPU processes, gloo).

Lightning starts the second process by re-running the command, so this file is also the worker
script: ``python tests/fitting/test_ddp.py <out> single|ddp`` trains, validates and queries, and every
process records what it computed (weights, metrics, query results, which files it wrote) in
``<out>/rank<r>.npz`` / ``.json``. The tests compare the two processes with each other and with
a single-process run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
TRAIN = ["debug=fast", "trainer.enable_progress_bar=false", "logger=none", "trainer.max_epochs=40",
         "model.polish_epochs=3", "trainer.check_val_every_n_epoch=20"]
DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
QUANTITIES = ["value", "gradient", "hessian", "laplacian", "hessian_eigenvalues"]


def _query_surrogate():
    import torch

    from surrogates.model import MLP
    from surrogates.surrogate import Surrogate

    torch.manual_seed(0)
    model = MLP(2, 1, width=16, depth=2, activation="silu")
    model.set_normalisation(torch.tensor([0.5, 10.0]), torch.tensor([0.3, 4.0]), torch.tensor([1.0]), torch.tensor([2.0]))
    return Surrogate(model, ["u", "v"], ["f"], True, lower=[0, 0], upper=[1, 20])


def _query_points():
    return np.random.default_rng(0).uniform([0, 0], [1, 20], size=(101, 2))


def _worker(out: Path, mode: str) -> None:
    """Train (full batch: Adam then L-BFGS), validate in mini-batches, query; record per process."""
    import torch
    from hydra.utils import instantiate

    import surrogates.fitting.train as training
    from surrogates.config import compose_config
    from surrogates.fitting.predict import query
    from surrogates.surrogate import Surrogate

    torch.set_num_threads(1)
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    writes: list[str] = []
    save, write_json = Surrogate.save, training.write_json
    Surrogate.save = lambda self, path: (writes.append(Path(path).name), save(self, path))[1]
    training.write_json = lambda path, obj: (writes.append(Path(path).name), write_json(path, obj))[1]

    devices = DDP if mode == "ddp" else []
    cfg = compose_config("train", [*TRAIN, *devices])
    result = training.train(cfg, output_dir=out / "run")
    net = result.surrogate.model

    # validation metrics (torchmetrics) in mini-batches, 4 batches of the 200 validation rows
    cfg = compose_config("train", [*TRAIN, *devices, "data.batch_size=50"])
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    module = instantiate(cfg.model, in_dim=2, out_dim=1)
    module.net.load_state_dict(net.state_dict())
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_model_summary=False)
    metrics = {k: float(v) for k, v in trainer.validate(module, datamodule=datamodule, verbose=False)[0].items()}

    trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_model_summary=False)
    results = query(_query_surrogate(), _query_points(), QUANTITIES, trainer=trainer, batch_size=16)

    X = np.random.default_rng(6).uniform(-2, 2, (64, 2))
    np.savez(
        out / f"rank{rank}.npz",
        predictions=result.surrogate.predict(X),
        **{f"weight.{k}": v.numpy() for k, v in net.state_dict().items()},
        **{f"query.{k}": v for k, v in results.items()},
    )
    (out / f"rank{rank}.json").write_text(
        json.dumps({"writes": writes, "metrics": metrics, "processes": result.summary["processes"]})
    )


def _start_worker(out: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    env.pop("LOCAL_RANK", None)
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(out), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=out)


def _finish_worker(worker: subprocess.Popen) -> None:
    _, stderr = worker.communicate(timeout=600)
    assert worker.returncode == 0, stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {mode: tmp_path_factory.mktemp(mode) for mode in ("single", "ddp")}
    # independent runs: start both, so their start-up (imports) overlaps
    workers = [_start_worker(folder, mode) for mode, folder in out.items()]
    for worker in workers:
        _finish_worker(worker)
    return {
        mode: [(dict(np.load(folder / f"rank{r}.npz")), json.loads((folder / f"rank{r}.json").read_text()))
               for r in range(2 if mode == "ddp" else 1)]
        for mode, folder in out.items()
    } | {"folders": out}


def _weights(arrays):
    return {k: v for k, v in arrays.items() if k.startswith("weight.")}


def test_ddp_processes_end_with_identical_weights(runs):
    (w0, info0), (w1, info1) = runs["ddp"]
    assert info0["processes"] == info1["processes"] == 2
    for name, value in _weights(w0).items():
        np.testing.assert_array_equal(value, w1[name], err_msg=name)


def test_ddp_training_matches_a_single_process(runs):
    """Full-batch Adam + L-BFGS on two shards of the rows = the same on all rows in one process.

    Without the all-reduce (or with unweighted shards, or with a per-process L-BFGS loss) the
    processes would fit different halves of the data and this would be off by far more.
    Agreement is to rounding, amplified by L-BFGS: the evidence polish sums ΦᵀΦ shard by shard,
    in another order than one process does (measured: hidden weights within 2.3e-5 relative).
    The output layer is that sum's ill-conditioned solve on near-exact data (entries ~100 that
    cancel), so it is checked through the predictions it makes.
    """
    single, _ = runs["single"][0]
    ddp, _ = runs["ddp"][0]
    hidden = {name: value for name, value in _weights(single).items() if not name.startswith("weight.head")}
    assert hidden
    for name, value in hidden.items():
        np.testing.assert_allclose(ddp[name], value, rtol=1e-4, atol=1e-7, err_msg=name)
    np.testing.assert_allclose(ddp["predictions"], single["predictions"], rtol=1e-5, atol=1e-7)


def test_ddp_validation_metrics_are_reduced_over_processes(runs):
    _, single = runs["single"][0]
    (_, rank0), (_, rank1) = runs["ddp"]
    for name in ("val/loss", "val/rmse", "val/r2"):
        assert rank0["metrics"][name] == pytest.approx(single["metrics"][name], rel=1e-4), name
        assert rank1["metrics"][name] == rank0["metrics"][name], name


def test_ddp_only_rank_zero_writes(runs):
    (_, rank0), (_, rank1) = runs["ddp"]
    assert sorted(rank0["writes"]) == ["summary.json", "surrogate.safetensors"]
    assert rank1["writes"] == []
    run = runs["folders"]["ddp"] / "run"
    assert {p.name for p in run.iterdir()} >= {"surrogate.safetensors", "summary.json", "config.yaml", "checkpoints"}
    assert not [p for p in run.rglob("*.tmp")]


def test_ddp_query_gathers_every_point_in_order_exactly(runs):
    single, _ = runs["single"][0]
    for ddp, _ in runs["ddp"]:  # every process gets the whole result
        for q in QUANTITIES:
            np.testing.assert_array_equal(ddp[f"query.{q}"], single[f"query.{q}"], err_msg=q)
    assert single["query.value"].shape == (101,) and single["query.hessian"].shape == (101, 2, 2)


def test_ddp_query_from_the_command_line(tmp_path):
    """Through Hydra: Lightning relaunches the command for rank 1; one set of files, one report."""
    from surrogates.fitting.predict import query

    surrogate = _query_surrogate()
    surrogate.save(tmp_path / "s.safetensors")
    X = _query_points()
    np.save(tmp_path / "points.npy", X)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "surrogates.cli.query", f"checkpoint={tmp_path / 's.safetensors'}",
         f"points={tmp_path / 'points.npy'}", "quantities=[value,gradient,hessian]", "batch_size=16", "plot=false",
         "trainer.strategy=ddp", "trainer.devices=2", "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / 'q'}"],
        capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("101 points") == 1, done.stdout
    saved = np.load(tmp_path / "q" / "query.npz")
    expected = query(surrogate, X, ["value", "gradient", "hessian"], batch_size=16)
    for q, value in expected.items():
        np.testing.assert_array_equal(saved[q], value, err_msg=q)
    assert not list((tmp_path / "q").glob(".*.tmp"))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    _worker(Path(sys.argv[1]), sys.argv[2])
