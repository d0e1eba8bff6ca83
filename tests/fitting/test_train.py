"""End-to-end fits: every data source kind, the files a run writes, the surrogate file format."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import warnings

import lightning as L
import numpy as np
import pytest
import torch
from conftest import FAST

import surrogates
from surrogates.fitting.functions import get_function
from surrogates.fitting.train import SUMMARY_FILE, SURROGATE_FILE, train
from surrogates.surrogate import CheckpointError, Surrogate


def _train(compose_config, tmp_path, overrides):
    return train(compose_config("train", [*FAST, *overrides]), output_dir=tmp_path)


def test_function_source_run_writes_surrogate_summary_and_config(compose_config, tmp_path):
    result = _train(compose_config, tmp_path, ["data=quartic"])
    for name in (SURROGATE_FILE, SUMMARY_FILE, "config.yaml", "checkpoints/last.ckpt"):
        assert (tmp_path / name).is_file(), name
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert summary["samples"] == {"train": 1800, "validation": 200}
    derivatives = summary["derivatives"]
    assert derivatives["test_points"] == 500
    loaded = surrogates.load(tmp_path / SURROGATE_FILE)
    # the summary's derivative errors, recomputed here from the saved surrogate and the closed
    # forms by hand (protocol: 500 points in the central 80 % of the box, default_rng(2))
    function = get_function("quartic")
    centre, half = (function.lower + function.upper) / 2, 0.4 * (function.upper - function.lower)
    P = np.random.default_rng(2).uniform(centre - half, centre + half, (500, 2))
    g, g_hat = function.gradient(P), loaded.gradient(P)
    kept = np.linalg.norm(g, axis=1) > 1e-3
    gradient_error = np.linalg.norm(g_hat - g, axis=1)[kept] / np.linalg.norm(g, axis=1)[kept]
    H, H_hat = function.hessian(P), loaded.hessian(P)
    hessian_error = np.linalg.norm(H_hat - H, axis=(1, 2)) / np.linalg.norm(H, axis=(1, 2))
    laplacian_error = np.abs(loaded.laplacian(P) - np.trace(H, axis1=1, axis2=2))
    np.testing.assert_allclose(derivatives["gradient"]["median"], np.median(gradient_error), rtol=1e-9)
    np.testing.assert_allclose(derivatives["hessian"]["median"], np.median(hessian_error), rtol=1e-9)
    np.testing.assert_allclose(derivatives["laplacian_abs"]["median"], np.median(laplacian_error), rtol=1e-9)
    assert derivatives["mixed_partials"]["median"] <= derivatives["hessian"]["median"]
    assert 0.5 < summary["validation"]["r2"]["y0"] <= 1.0
    X = np.random.default_rng(0).uniform(-2, 2, (64, 2))
    np.testing.assert_array_equal(loaded.predict(X), result.surrogate.predict(X))


def test_vector_function_reports_jacobian_error(compose_config, tmp_path):
    result = _train(compose_config, tmp_path, ["data=vec2"])
    summary = result.summary
    function = get_function("vec2")
    centre, half = (function.lower + function.upper) / 2, 0.4 * (function.upper - function.lower)
    P = np.random.default_rng(2).uniform(centre - half, centre + half, (500, 2))
    J, J_hat = function.jacobian(P), result.surrogate.jacobian(P)
    error = np.linalg.norm(J_hat - J, axis=(1, 2)) / np.linalg.norm(J, axis=(1, 2))
    np.testing.assert_allclose(summary["derivatives"]["jacobian"]["median"], np.median(error), rtol=1e-9)
    assert set(summary["validation"]["r2"]) == {"y0", "y1"}


def black_box(X):
    return np.sin(X[:, 0]) * X[:, 1]


def test_callable_source_run(compose_config, tmp_path):
    result = _train(
        compose_config,
        tmp_path,
        ["data=callable", "data.source.function=test_train.black_box", "data.source.lower=[0,0]", "data.source.upper=[3,1]"],
    )
    assert result.summary["data"].startswith("callable")
    np.testing.assert_array_equal(result.surrogate.lower, [0, 0])


@pytest.fixture
def linear_samples():
    rng = np.random.default_rng(0)
    X = rng.uniform([0.0, 0.0], [1.0, 1000.0], size=(400, 2))
    return X, 3.0 * X[:, 0] - 0.002 * X[:, 1] + 500.0


@pytest.mark.parametrize("kind", ["npz", "npy", "csv"])
def test_file_sources_run(compose_config, tmp_path, linear_samples, kind):
    X, y = linear_samples
    if kind == "npz":
        np.savez(tmp_path / "d.npz", X=X, y=y)
        overrides = ["data=npz", f"data.source.path={tmp_path / 'd.npz'}"]
    elif kind == "npy":
        np.save(tmp_path / "X.npy", X)
        np.save(tmp_path / "y.npy", y)
        overrides = ["data=npy", f"data.source.inputs={tmp_path / 'X.npy'}", f"data.source.outputs={tmp_path / 'y.npy'}"]
    else:
        rows = "\n".join(f"{a},{b},{c}" for (a, b), c in zip(X, y))
        (tmp_path / "d.csv").write_text("temperature,pressure,yield\n" + rows + "\n")
        overrides = ["data=csv", f"data.source.path={tmp_path / 'd.csv'}", "data.source.outputs=[yield]"]
    result = _train(compose_config, tmp_path / "run", overrides)
    assert result.summary["validation"]["r2"]
    if kind == "csv":
        assert result.surrogate.input_names == ["temperature", "pressure"]
    # the domain of trust is the box of the data
    np.testing.assert_allclose(result.surrogate.lower, X.min(0))
    np.testing.assert_allclose(result.surrogate.upper, X.max(0))


def test_fit_api_gives_derivatives_in_data_units(linear_samples):
    """Inputs differ in scale by 1000×: normalisation layers must carry the units through autograd."""
    X, y = linear_samples
    s = surrogates.fit(X, y, overrides=[*FAST, "trainer.max_epochs=200", "model.polish_epochs=20"])
    assert s.scalar_output and s.predict(X[:5]).shape == (5,)
    inner = np.random.default_rng(1).uniform([0.2, 200.0], [0.8, 800.0], size=(50, 2))
    np.testing.assert_allclose(s.gradient(inner), np.tile([3.0, -0.002], (50, 1)), rtol=2e-2)
    np.testing.assert_allclose(s.predict(inner), 3.0 * inner[:, 0] - 0.002 * inner[:, 1] + 500.0, rtol=1e-3)


def test_fit_api_with_gradients_and_vector_outputs(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (200, 2))
    y = np.stack([X[:, 0] * X[:, 1], X[:, 0] + X[:, 1]], axis=1)
    G = np.stack([np.stack([X[:, 1], X[:, 0]], 1), np.ones((200, 2))], axis=1)
    s = surrogates.fit(X, y, gradients=G, overrides=[*FAST, "model.gradient_weight=1.0"], output_names=["product", "sum"], output_dir=tmp_path)
    assert s.output_names == ["product", "sum"] and s.predict(X).shape == (200, 2)
    assert (tmp_path / SURROGATE_FILE).is_file()


def test_fit_and_query_keep_lightning_internal_deprecations_out_of_the_output(linear_samples):
    """Lightning's torch-pytree deprecation notice fired in every fit and query of a user's run."""
    from surrogates.console import PYTREE_DEPRECATION
    from surrogates.fitting.predict import query

    X, y = linear_samples
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitted = surrogates.fit(X, y, overrides=[*FAST, "trainer.enable_progress_bar=false"])
        trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, inference_mode=False,
                            enable_progress_bar=False, enable_model_summary=False)
        query(fitted, X[:8], ["gradient"], trainer=trainer)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if re.match(PYTREE_DEPRECATION, m)], messages


def test_fit_rejects_bad_arrays_before_training():
    from surrogates.errors import DataError

    with pytest.raises(DataError, match="NaN or inf in row"):
        surrogates.fit(np.c_[np.arange(20.0), [np.nan] + [1.0] * 19], np.arange(20.0), overrides=FAST)


# ---------------------------------------------------------------------- the surrogate file


@pytest.fixture(scope="module")
def small_surrogate(tmp_path_factory):
    from surrogates.model import MLP

    torch.manual_seed(0)
    model = MLP(3, 1, width=8, depth=2)
    model.set_normalisation(torch.tensor([1.0, 2, 3]), torch.tensor([0.5, 2, 4]), torch.tensor([10.0]), torch.tensor([3.0]))
    return Surrogate(model, ["a", "b", "c"], ["f"], True, lower=[0, 0, 0], upper=[2, 4, 6], info={"note": "test"})


def test_save_load_round_trip_is_exact(small_surrogate, tmp_path):
    path = small_surrogate.save(tmp_path / "s.safetensors")
    loaded = surrogates.load(path)
    X = torch.rand(32, 3, dtype=torch.float64) * 2
    assert torch.equal(loaded.predict(X), small_surrogate.predict(X))
    assert loaded.input_names == ["a", "b", "c"] and loaded.info == {"note": "test"}
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))


def test_load_refuses_what_is_not_a_surrogate(small_surrogate, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        surrogates.load(tmp_path / "missing.safetensors")
    good = small_surrogate.save(tmp_path / "s.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="not a readable surrogate file"):
        surrogates.load(tmp_path / "cut.safetensors")
    (tmp_path / "text.safetensors").write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable surrogate file"):
        surrogates.load(tmp_path / "text.safetensors")
    # the top-level keys Lightning writes (trainer/connectors/checkpoint_connector.py dump_checkpoint)
    torch.save({"epoch": 3, "global_step": 3, "pytorch-lightning_version": L.__version__, "state_dict": {},
                "loops": {}, "callbacks": {}, "optimizer_states": [], "lr_schedulers": []}, tmp_path / "lightning.ckpt")
    with pytest.raises(CheckpointError, match="Lightning training checkpoint"):
        surrogates.load(tmp_path / "lightning.ckpt")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a surrogate"):
        surrogates.load(tmp_path / "other.safetensors")


def test_load_refuses_weights_that_do_not_fit_the_declared_model(small_surrogate, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = small_surrogate.save(tmp_path / "s.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    tensors = load_file(str(path))
    tensors["members.0.hidden.0.weight"] = torch.zeros(8, 5, dtype=torch.float64)
    save_file(tensors, str(tmp_path / "wrong.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="size mismatch"):
        surrogates.load(tmp_path / "wrong.safetensors")


def test_loading_never_unpickles(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"payload": Exploit()}, tmp_path / "evil.safetensors")
    with pytest.raises(CheckpointError):
        surrogates.load(tmp_path / "evil.safetensors")
    assert not marker.exists()


def test_query_points_of_the_wrong_dimension(small_surrogate):
    with pytest.raises(ValueError, match=r"shape \(N, 3\) or \(3,\) .* got \(4, 2\)"):
        small_surrogate.predict(np.zeros((4, 2)))
    assert small_surrogate.predict(np.ones(3)).shape == ()
    with pytest.warns(surrogates.ExtrapolationWarning, match="1 of 2 query points lie outside"):
        small_surrogate.predict(np.array([[1.0, 1, 1], [9.0, 1, 1]]))
    np.testing.assert_array_equal(small_surrogate.in_domain(np.array([[1.0, 1, 1], [9.0, 1, 1]])), [True, False])


# ---------------------------------------------------------------------- the command line


def _cli(args, cwd):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "surrogates.cli.train", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600
    )


def test_cli_multirun_gives_each_run_its_own_folder(tmp_path):
    done = _cli(["-m", *FAST, "model.width=8,16", f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    widths = sorted(surrogates.load(tmp_path / "sweep" / str(i) / SURROGATE_FILE).model.width for i in (0, 1))
    assert widths == [8, 16]


def test_cli_bad_override_fails_cleanly(tmp_path):
    done = _cli(["model.widht=3"], cwd=tmp_path)
    assert done.returncode != 0
    assert "model.widht" in done.stderr and "Traceback" not in done.stderr


def test_cli_bad_data_gives_one_line_error_and_exit_2(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,y\n1,2,3\n1,oops,3\n")
    done = _cli(["data=csv", f"data.source.path={tmp_path / 'd.csv'}", "data.source.outputs=[y]", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"error: data file {tmp_path / 'd.csv'}, line 3, column 'b': 'oops' is not a number"
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run" / SURROGATE_FILE).exists()


# ---------------------------------------------------------------------- determinism and resuming


def test_same_seed_gives_identical_surrogates(compose_config, tmp_path):
    X = np.random.default_rng(5).uniform(-2, 2, (40, 2))
    runs = [_train(compose_config, tmp_path / str(i), ["trainer.max_epochs=12", "model.polish_epochs=2"]) for i in range(2)]
    np.testing.assert_array_equal(runs[0].surrogate.predict(X), runs[1].surrogate.predict(X))
    np.testing.assert_array_equal(runs[0].surrogate.hessian(X), runs[1].surrogate.hessian(X))


def test_interrupted_run_resumes_to_the_same_result(compose_config, tmp_path):
    # 30 epochs: Adam until 25, L-BFGS for the last 5; checkpoints every 10 epochs (validation).
    common = ["trainer.max_epochs=30", "model.polish_epochs=5"]
    straight = _train(compose_config, tmp_path / "straight", common)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _train(compose_config, tmp_path / "crashed", [*common, "+callbacks.crash._target_=crash_callback.CrashAt", "+callbacks.crash.epoch=15"])
    last = tmp_path / "crashed" / "checkpoints" / "last.ckpt"
    assert last.is_file() and not (tmp_path / "crashed" / SURROGATE_FILE).exists()
    resumed = _train(compose_config, tmp_path / "resumed", [*common, f"ckpt_path={last}"])
    assert resumed.summary["epochs"] == straight.summary["epochs"] == 30
    X = np.random.default_rng(6).uniform(-2, 2, (40, 2))
    np.testing.assert_allclose(resumed.surrogate.predict(X), straight.surrogate.predict(X), rtol=1e-9, atol=1e-12)
    assert resumed.summary["validation"]["rmse"] == pytest.approx(straight.summary["validation"]["rmse"], rel=1e-9)


class BatchSizes(L.Callback):
    """Records the training batch sizes of every epoch in a class-level log (Hydra builds the instance)."""

    seen: dict[int, list[int]] = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        BatchSizes.seen.setdefault(trainer.current_epoch, []).append(int(batch["x"].shape[0]))


@pytest.mark.parametrize("resumed", [False, True])
def test_polish_epochs_see_the_whole_training_set_in_one_batch(compose_config, tmp_path, resumed):
    """Adam runs in mini-batches; L-BFGS must see all rows at once, also in a run resumed before the polish."""
    common = ["data.batch_size=500", "+callbacks.sizes._target_=test_train.BatchSizes"]  # 1800 rows: 4 batches
    BatchSizes.seen = {}
    if resumed:
        with pytest.raises(RuntimeError, match="simulated crash"):
            _train(compose_config, tmp_path, [*common, "+callbacks.crash._target_=crash_callback.CrashAt", "+callbacks.crash.epoch=28"])
        BatchSizes.seen = {}
        _train(compose_config, tmp_path / "resumed", [*common, f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}"])
        assert min(BatchSizes.seen) == 20  # resumed from the checkpoint after epoch 19, in the Adam phase
    else:
        _train(compose_config, tmp_path, common)
        for epoch in range(28):  # debug=fast: 30 epochs, the last 2 are L-BFGS
            assert BatchSizes.seen[epoch] == [500, 500, 500, 300], epoch
    for epoch in (28, 29):
        if epoch in BatchSizes.seen:
            assert BatchSizes.seen[epoch] == [1800], epoch


def test_polish_selection_keeps_the_lowest_and_counts_only_significantly_worse_epochs():
    from surrogates.fitting.selection import PolishSelection

    rng = torch.Generator().manual_seed(0)
    lowest = 1.0 + 0.1 * torch.randn(400, generator=rng, dtype=torch.float64)
    jitter = torch.randn(400, generator=rng, dtype=torch.float64)
    jitter = (jitter - jitter.mean()) / jitter.std()  # mean 0, std 1: paired standard error 1/20
    weights = torch.zeros(3)
    selection = PolishSelection()
    assert selection.offer(lowest + 0.5, epoch=20, state={"w": weights}) == 0
    weights += 1  # kept states are copies, not the live tensors
    assert selection.offer(lowest, epoch=21, state={"w": weights}) == 0  # new lowest: kept
    assert selection.epoch == 21 and float(selection.reference.mean()) == pytest.approx(float(lowest.mean()))
    assert selection.offer(lowest + 0.01 * jitter + 5 * 0.01 / 20, epoch=22, state={"w": weights * 2}) == 1  # 5 s.e. worse
    assert selection.offer(lowest + 0.01, epoch=23, state={"w": weights * 3}) == 2  # a uniform shift: no spread, worse
    # higher on average, but by 0.1 paired standard errors: not seen to be worse, the count restarts
    assert selection.offer(lowest + 0.01 * jitter + 0.1 * 0.01 / 20, epoch=24, state={"w": weights * 4}) == 0
    assert selection.offer(lowest + 0.01, epoch=25, state={"w": weights * 5}) == 1
    assert selection.epoch == 21  # the lowest stays kept throughout
    torch.testing.assert_close(selection.state["w"], torch.ones(3))
    restored = PolishSelection.from_dict(selection.as_dict())
    assert (restored.epoch, restored.stale) == (21, 1)
    torch.testing.assert_close(restored.reference, selection.reference)
    assert selection.offer(lowest - 0.001, epoch=26, state={"w": weights * 6}) == 0
    assert selection.epoch == 26


class PolishLosses(L.Callback):
    """Records the per-epoch polish validation loss and the validation rows (class-level log)."""

    losses: dict[int, float] = {}
    val_rows = None

    def on_train_start(self, trainer, module):
        PolishLosses.val_rows = trainer.datamodule.val_rows

    def on_train_epoch_end(self, trainer, module):
        if "polish/val_loss" in trainer.callback_metrics:
            PolishLosses.losses[trainer.current_epoch] = float(trainer.callback_metrics["polish/val_loss"])


# quartic, 200 samples with 10 % noise, 2x64, 20 polish epochs of 10 L-BFGS iterations: overfits within the polish
NOISY_POLISH = ["data.source.noise=0.1", "data.source.n_samples=200", "model.width=64", "trainer.max_epochs=40",
                "model.polish_epochs=20", "+callbacks.losses._target_=test_train.PolishLosses"]


def test_polish_keeps_the_lowest_validation_state_and_stops_when_worse(compose_config, tmp_path):
    PolishLosses.losses = {}
    result = _train(compose_config, tmp_path, [*NOISY_POLISH, "model.polish_patience=3"])
    losses = PolishLosses.losses
    kept, last = result.summary["polish_kept_epoch"], max(losses)
    assert sorted(losses) == list(range(20, last + 1))
    assert kept == min(losses, key=losses.get)
    assert last < 39, "this noisy fit overfits within the polish and should stop early"
    assert all(losses[epoch] > losses[kept] for epoch in range(kept + 1, last + 1))
    # the surrogate holds the kept state, not the last one
    net = result.surrogate.model
    samples = surrogates.fitting.sources.FunctionSource("quartic", n_samples=200, noise=0.1).load()
    rows = PolishLosses.val_rows
    with torch.no_grad():
        prediction = net(torch.as_tensor(samples.X[rows], dtype=torch.float64))
        error = (prediction - torch.as_tensor(samples.y[rows])) / net.output_scaling.scale
    assert float(torch.mean(error**2)) == pytest.approx(losses[kept], rel=1e-10)
    assert losses[last] != pytest.approx(losses[kept], rel=1e-6)


def test_polish_patience_and_tolerance_zero_run_every_polish_epoch_and_keep_the_last(compose_config, tmp_path):
    PolishLosses.losses = {}
    result = _train(compose_config, tmp_path, [*NOISY_POLISH, "model.polish_patience=0", "model.polish_tolerance=0"])
    assert PolishLosses.losses == {} and "polish_kept_epoch" not in result.summary
    assert result.summary["epochs"] == 40


def test_run_resumed_mid_polish_keeps_the_same_state(compose_config, tmp_path):
    """The selection is in the checkpoint: a run resumed after epoch 29 still judges against epochs 20-29."""
    # tolerance 0: this noisy polish would converge before the crash
    common = [*NOISY_POLISH, "model.polish_patience=3", "model.polish_tolerance=0"]
    PolishLosses.losses = {}
    straight = _train(compose_config, tmp_path / "straight", common)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _train(compose_config, tmp_path / "crashed", [*common, "+callbacks.crash._target_=crash_callback.CrashAt", "+callbacks.crash.epoch=31"])
    last = tmp_path / "crashed" / "checkpoints" / "last.ckpt"
    resumed = _train(compose_config, tmp_path / "resumed", [*common, f"ckpt_path={last}"])
    assert resumed.summary["polish_kept_epoch"] == straight.summary["polish_kept_epoch"]
    assert resumed.summary["epochs"] == straight.summary["epochs"]
    X = np.random.default_rng(6).uniform(-2, 2, (40, 2))
    np.testing.assert_allclose(resumed.surrogate.predict(X), straight.surrogate.predict(X), rtol=1e-9, atol=1e-12)


# exact quartic, 400 samples, 2x32: converges within a few polish epochs of 20 iterations
CONVERGING = ["data.source.n_samples=400", "model.width=32", "trainer.max_epochs=60", "model.polish_epochs=20",
              "model.polish_iterations=20", "model.polish_tolerance=0.1"]


def test_polish_stops_at_the_first_test_that_finds_the_window_gain_below_the_tolerance(compose_config, tmp_path):
    from surrogates.fitting.selection import PolishSelection

    result = _train(compose_config, tmp_path, CONVERGING)
    spent = result.summary["time"]
    assert spent["adam_epochs"] == 40
    assert spent["polish_stop"] == "converged"
    assert 2 <= spent["polish_epochs"] < 20
    assert spent["polish_evaluations"] >= spent["polish_iterations"] > 20
    assert result.summary["epochs"] == 40 + spent["polish_epochs"]
    trajectory = result.summary["polish_trajectory"]
    # tested after every 5 iterations (20 per epoch, 4 tests), from the polish's start
    assert [entry[0] for entry in trajectory] == list(range(0, spent["polish_iterations"] + 1, 5))
    assert PolishSelection(trajectory=trajectory).converged(tolerance=0.1, window=20)
    assert not any(PolishSelection(trajectory=trajectory[:k]).converged(tolerance=0.1, window=20)
                   for k in range(1, len(trajectory)))
    # the same fit without the tolerance runs every polish epoch
    full = _train(compose_config, tmp_path / "full", [*CONVERGING, "model.polish_tolerance=0", "model.polish_patience=0"])
    assert full.summary["time"]["polish_epochs"] == 20 and full.summary["time"]["polish_stop"] == "max_epochs"


def test_polish_stop_does_not_depend_on_the_units_of_inputs_or_outputs(compose_config, tmp_path):
    """Kelvin or millikelvin: the objective is taken on standardised data, so the same epochs run.

    Powers of two rescale exactly in floating point, so the standardised data are bit-identical
    and any difference would come from a units-dependent rule (with factors of 1000, rounding in
    the last bit of the inputs already changes an optimiser's path a little)."""
    rng = np.random.default_rng(3)
    X = rng.uniform(-2, 2, (400, 2))
    y = X[:, 0] ** 4 + X[:, 1] ** 4 - 4 * X[:, 0] * X[:, 1] + 1
    overrides = [*FAST, *CONVERGING[1:]]
    base = surrogates.fit(X, y, overrides=overrides).info["summary"]["time"]
    scaled = surrogates.fit(X * [2.0**10, 2.0**-10], y * 2.0**17, overrides=overrides).info["summary"]["time"]
    assert base["polish_stop"] == scaled["polish_stop"] == "converged"
    assert base["polish_epochs"] == scaled["polish_epochs"]
    assert base["polish_evaluations"] == scaled["polish_evaluations"]
    assert base["polish_iterations"] == scaled["polish_iterations"]


def test_polish_convergence_is_the_gain_over_a_sliding_window_of_iterations():
    from surrogates.fitting.selection import PolishSelection

    selection = PolishSelection()
    assert not selection.converged(tolerance=0.1, window=100)  # nothing reported yet
    selection.record(0, -1.0)
    for iterations, objective in ((25, -1.5), (50, -1.6), (75, -1.65)):
        selection.record(iterations, objective)
        assert not selection.converged(tolerance=0.1, window=100)  # less than a window so far
    selection.record(100, -1.68)
    assert not selection.converged(tolerance=0.1, window=100)  # 0.68 gained since iteration 0
    selection.record(125, -1.69)
    assert not selection.converged(tolerance=0.1, window=100)  # 0.19 since iteration 25
    selection.record(150, -1.695)
    assert selection.converged(tolerance=0.1, window=100)  # 0.095 since iteration 50
    # a report further back than one window (uneven chunks under a time budget): pro rata
    # (the limit is 0.1 · 150 / 100 = 0.15 over 150 iterations)
    assert PolishSelection(trajectory=[[0, -1.0], [150, -1.14]]).converged(tolerance=0.1, window=100)
    assert not PolishSelection(trajectory=[[0, -1.0], [150, -1.16]]).converged(tolerance=0.1, window=100)
    restored = PolishSelection.from_dict(selection.as_dict())
    assert restored.trajectory == selection.trajectory and restored.iterations == 150


def test_max_epochs_that_leave_no_adam_epoch_is_a_clear_error(compose_config, tmp_path):
    with pytest.raises(ValueError, match=r"trainer.max_epochs=20 leaves no Adam epochs .* model.polish_epochs=20"):
        _train(compose_config, tmp_path, ["trainer.max_epochs=20", "model.polish_epochs=20"])


def test_time_budget_bounds_the_whole_fit_and_still_polishes(tmp_path):
    """An Adam phase that would run for minutes hands over to the polish at half the budget."""
    rng = np.random.default_rng(4)
    X = rng.uniform(-2, 2, (400, 2))
    y = np.sin(X[:, 0]) * X[:, 1]
    budget = 3.0
    overrides = [*FAST, "model.width=32", "trainer.max_epochs=100000", "model.polish_tolerance=0", "model.polish_patience=0"]
    s = surrogates.fit(X, y, overrides=overrides, time_budget=budget, output_dir=tmp_path)
    summary = s.info["summary"]
    spent = summary["time"]
    assert spent["adam_epochs"] < 100000 - 2
    assert spent["polish_epochs"] >= 1 and spent["polish_stop"] == "time"
    # generous: one L-BFGS iteration of this net takes milliseconds; the point is that 100000 Adam epochs did not run
    assert summary["fit_seconds"] < budget + 3.0
    assert summary["validation"]["r2"]["y0"] > 0.99


@pytest.mark.parametrize("value, seconds", [(90, 90.0), ("00:01:00:30", 3630.0), ({"minutes": 2}, 120.0)])
def test_time_budget_accepts_seconds_lightning_strings_and_timedelta_fields(value, seconds):
    from surrogates.fitting.train import time_budget_seconds

    assert time_budget_seconds(value) == seconds


@pytest.mark.parametrize("value", ["5 minutes", "1:2", -3, {"fortnights": 1}])
def test_bad_time_budget_names_the_key(value):
    from surrogates.fitting.train import time_budget_seconds

    with pytest.raises(ValueError, match="trainer.max_time"):
        time_budget_seconds(value)


# ---------------------------------------------------------------------- what a fit shows the user

LIGHTNING_CHATTER = ("GPU available", "TPU available", "Tip", "litlogger", "litmodels", "it/s", "Epoch ")


def _tiny_samples():
    X = np.random.default_rng(0).uniform(-1, 1, (64, 2))
    return X, np.sum(X**2, axis=1)


def test_fit_is_quiet_by_default_and_logs_one_summary_line(capfd, caplog):
    X, y = _tiny_samples()
    with caplog.at_level(logging.INFO, logger="surrogates.fitting.fit"):
        surrogates.fit(X, y, overrides=["debug=fast", "logger=none"])
    out, err = capfd.readouterr()
    for text in LIGHTNING_CHATTER:
        assert text not in out + err, text
    lines = [r.getMessage() for r in caplog.records if r.name == "surrogates.fitting.fit"]
    assert len(lines) == 1 and "fitted to" in lines[0] and "\n" not in lines[0]
    # the user's logging configuration is as it was: Lightning's logger has no filter left behind
    assert not logging.getLogger("lightning.pytorch.utilities.rank_zero").filters


def test_fit_progress_true_shows_lightnings_bar(capfd):
    X, y = _tiny_samples()
    surrogates.fit(X, y, overrides=["debug=fast", "logger=none"], progress=True)
    out, err = capfd.readouterr()
    assert "Epoch 29" in out + err and "it/s" in out + err
    assert "GPU available" not in out + err and "Tip" not in out + err


def test_cli_single_piped_run_prints_summary_and_folder_and_train_log_holds_them(tmp_path):
    """In Hydra's default run folder (outputs/train/<date>/<time>), with no warning on the way; the
    default config (trainer.enable_progress_bar=null: a bar only on a terminal) draws no bar into a pipe."""
    done = _cli(["debug=fast"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "derivative error vs exact" in done.stdout
    assert "Warning" not in done.stderr, done.stderr[-2000:]
    (run,) = (tmp_path / "outputs" / "train").glob("*/*")
    assert f"outputs in {run.relative_to(tmp_path)}" in done.stdout or f"outputs in {run}" in done.stdout
    assert (run / SURROGATE_FILE).is_file()
    output = done.stdout + done.stderr
    for text in LIGHTNING_CHATTER:
        assert text not in output, text
    assert len(output) < 3000, output[-2000:]
    assert done.stdout.count("fitted to") == 1  # once on the console
    log = (run / "train.log").read_text()
    assert "fitted to function quartic" in log
    assert f"outputs in {run.relative_to(tmp_path)}" in log or f"outputs in {run}" in log


def test_cli_explicit_progress_bar_wins_over_the_pipe(tmp_path):
    done = _cli(["debug=fast", "logger=none", "trainer.enable_progress_bar=true", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "it/s" in done.stdout + done.stderr


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _fit_with_stderr(monkeypatch, stderr, after_seconds, **kwargs) -> str:
    from surrogates.fitting import progress

    monkeypatch.setattr(progress, "SHOW_AFTER_SECONDS", after_seconds)
    monkeypatch.setattr(sys, "stderr", stderr)
    surrogates.fit(*_tiny_samples(), overrides=["debug=fast", "logger=none"], **kwargs)
    monkeypatch.undo()
    return stderr.getvalue()


def test_quiet_fit_shows_one_compact_bar_on_a_terminal_once_it_has_run_long(monkeypatch):
    shown = _fit_with_stderr(monkeypatch, _Terminal(), after_seconds=0.0)
    assert re.search(r"fit: +\d+%\|.*\| \d+/30 \[.*epoch/s\]", shown), shown  # one bar of epochs (debug=fast: 30)
    assert "\n" not in shown.rstrip("\n").replace("\r", ""), shown  # one line, redrawn in place
    for text in LIGHTNING_CHATTER:  # not Lightning's bars
        assert text not in shown, text
    # a fit that ends before the bar's time shows nothing, nor does one whose stderr is a pipe or a file
    assert "fit:" not in _fit_with_stderr(monkeypatch, _Terminal(), after_seconds=1e9)
    assert "fit:" not in _fit_with_stderr(monkeypatch, io.StringIO(), after_seconds=0.0)
    assert "fit:" not in _fit_with_stderr(monkeypatch, _Terminal(), after_seconds=0.0, progress=False)


def test_quiet_fit_shows_its_bar_in_a_notebook(monkeypatch):
    """A Jupyter kernel's stderr is no terminal, yet someone watches the cell."""
    import types

    kernel = types.SimpleNamespace(kernel=object())
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: kernel))
    shown = _fit_with_stderr(monkeypatch, io.StringIO(), after_seconds=0.0)
    assert re.search(r"fit: +\d+%\|.*\| \d+/30 \[", shown), shown
