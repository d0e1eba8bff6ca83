"""CurvatureMonitor: logged curvature equals a dense float64 reference, and training is bit-identical."""

from __future__ import annotations

import copy
import csv

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from landscape_helpers import (  # noqa: F401
    assert_unchanged,
    one_thread,
    reference_hessian,
    snapshot,
)
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from surrogates.errors import InputError
from surrogates.landscape import CurvatureMonitor


class Classifier(L.LightningModule):
    """A small float64 MLP with dropout (training draws random numbers) trained by Adam."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Dropout(0.3), nn.Linear(6, 3)).double()

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        loss = nn.functional.cross_entropy(self(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.05)


def batch_loss(module, batch):
    return nn.functional.cross_entropy(module(batch[0]), batch[1])


def data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g, dtype=torch.float64)
    return X, (X[:, 0] + X[:, 1] > 0).long() + (X[:, 2] > 1).long()


class Snapshots(L.Callback):
    """Copies of the weights at each epoch end (what the monitor measured)."""

    def __init__(self):
        self.weights = {}

    def on_train_epoch_end(self, trainer, pl_module):
        self.weights[trainer.current_epoch] = copy.deepcopy(pl_module.state_dict())


class DrawsRandomNumbers(L.Callback):
    """A careless callback: one draw from the global generator per epoch."""

    def on_train_epoch_end(self, trainer, pl_module):
        torch.rand(1)


def train(tmp_path, callbacks, epochs=4):
    L.seed_everything(0, verbose=False)
    module = Classifier()
    X, Y = data()
    loader = DataLoader(TensorDataset(X, Y), batch_size=16, shuffle=True)
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=CSVLogger(tmp_path, name="logs"), callbacks=callbacks,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
    )
    trainer.fit(module, loader)
    return module, trainer


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    torch.set_num_threads(1)
    X, Y = data(seed=1)
    plain, _ = train(tmp_path_factory.mktemp("plain"), [])
    # mode="train": the monitor's own forward passes draw dropout masks from the global generator
    monitor = CurvatureMonitor((X[:40], Y[:40]), batch_loss, every_n_epochs=2, max_products=30, trace_probes=6, mode="train")
    monitored, trainer = train(tmp_path_factory.mktemp("monitored"), [monitor])
    careless, _ = train(tmp_path_factory.mktemp("careless"), [DrawsRandomNumbers()])
    return plain, monitored, careless, monitor, trainer


def test_training_is_bit_identical_with_the_monitor(runs):
    plain, monitored, careless, monitor, _ = runs
    assert [h["epoch"] for h in monitor.history] == [1.0, 3.0]
    for (name, a), b in zip(plain.named_parameters(), monitored.parameters()):
        assert torch.equal(a, b), name
    # the comparison can fail: one stray random draw per epoch changes the weights
    assert any(not torch.equal(a, b) for a, b in zip(plain.parameters(), careless.parameters()))


def test_metrics_reach_the_logger_and_cost_is_bounded(runs):
    *_, monitor, trainer = runs
    with open(f"{trainer.logger.log_dir}/metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("curvature/lambda_max")]
    assert [int(r["epoch"]) for r in rows] == [1, 3]
    for row, h in zip(rows, monitor.history):
        for key in ("lambda_max", "lambda_min", "trace", "trace_stderr", "converged", "products"):
            assert float(row[f"curvature/{key}"]) == pytest.approx(h[key], rel=1e-6)
        assert h["products"] <= 30


def test_logged_curvature_matches_dense_hessian_at_each_epoch(tmp_path):
    X, Y = data(seed=1)
    eval_X, eval_Y = X[:40], Y[:40]
    snaps = Snapshots()
    loader = DataLoader(TensorDataset(eval_X, eval_Y), batch_size=15)  # uneven batches: 15, 15, 10
    monitor = CurvatureMonitor(loader, batch_loss, every_n_epochs=1, max_products=60, trace_probes=8)
    train(tmp_path, [snaps, monitor], epochs=2)
    for h in monitor.history:
        model = Classifier()
        model.load_state_dict(snaps.weights[int(h["epoch"])])
        ev = np.linalg.eigvalsh(reference_hessian(model.net, nn.CrossEntropyLoss(), eval_X, eval_Y).numpy())
        assert h["converged"] == 1.0
        assert h["lambda_max"] == pytest.approx(ev[-1], rel=1e-8)
        assert h["lambda_min"] == pytest.approx(ev[0], abs=1e-8 * ev[-1])
        assert abs(h["trace"] - ev.sum()) <= 5 * h["trace_stderr"] + 1e-9 * ev.sum()


def test_measure_leaves_module_and_random_state_alone():
    torch.manual_seed(3)
    module = Classifier().train()
    module.net[0].weight.grad = torch.ones_like(module.net[0].weight)
    snap = snapshot(module)
    X, Y = data()
    monitor = CurvatureMonitor([(X[:20], Y[:20]), (X[20:], Y[20:])], batch_loss, max_products=20, trace_probes=4, mode="train")
    state = torch.get_rng_state()
    values = monitor.measure(module)
    assert torch.equal(torch.get_rng_state(), state)
    assert_unchanged(module, snap)
    assert values["products"] <= 20 and values["lambda_max"] >= values["lambda_min"]


def test_bad_settings_are_input_errors():
    X, Y = data()
    with pytest.raises(InputError, match=r"max_products must be an int >= trace_probes \+ 2 = 22"):
        CurvatureMonitor((X, Y), batch_loss, max_products=21, trace_probes=20)
    with pytest.raises(InputError, match="every_n_epochs must be a positive int"):
        CurvatureMonitor((X, Y), batch_loss, every_n_epochs=0)
    with pytest.raises(InputError, match="loss_fn must be callable"):
        CurvatureMonitor((X, Y), "cross_entropy")
    with pytest.raises(InputError, match="evaluation batch 0 holds no tensor"):
        CurvatureMonitor(("a", "b"), batch_loss)
