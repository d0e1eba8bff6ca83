"""surrogates-landscape: run(cfg) composed with Hydra, inputs from files, and clear input errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from conftest import run_command
from hydra import compose, initialize_config_module
from landscape_helpers import one_thread, reference_hessian  # noqa: F401
from torch import nn

from surrogates.cli.landscape import run
from surrogates.errors import InputError
from surrogates.landscape.loading import (
    apply_state_dict,
    load_archive,
    load_arrays,
    load_state_dict,
)

SMALL = [
    "example.n_samples=128",
    "example.steps=60",
    "spectrum.k=2",
    "trace.num_products=12",
    "trace.num_probes=4",
    "density.num_probes=3",
    "density.num_steps=6",
    "layers.enabled=true",
    "layers.max_iter=250",
    "layers.trace_probes=30",
    "slices.points_1d=5",
    "slices.points_2d=3",
    "slices.path_points=3",
    "figures=true",
]


def compose_cfg(overrides):
    with initialize_config_module(config_module="surrogates.configs", version_base="1.3"):
        return compose("landscape", overrides=overrides)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("landscape_default")
    torch.set_num_threads(1)
    summary = run(compose_cfg(SMALL), output_dir=out)
    return out, summary


def test_default_run_writes_json_and_figures_with_correct_numbers(default_run):
    out, summary = default_run
    data = json.loads((out / "landscape.json").read_text())
    for name in ("density.png", "eigenvalues.png", "slice_1d.png", "slice_2d.png", "layers.png"):
        assert (out / name).stat().st_size > 5000, name
    assert data["figures"] == ["density.png", "eigenvalues.png", "slice_1d.png", "slice_2d.png", "layers.png"]
    # independent check: dense float64 Hessian of the saved example weights
    from surrogates.landscape.example import tanh_mlp

    model = tanh_mlp([8, 24, 24, 4])
    apply_state_dict(model, load_state_dict(out / "example_model.pt"))
    X, Y = load_arrays(out / "example_data.npz")
    H = reference_hessian(model, nn.CrossEntropyLoss(), X, Y).numpy()
    ev = np.linalg.eigvalsh(H)
    assert data["num_params"] == len(ev) == 916
    assert data["spectrum"]["top"][0] == pytest.approx(ev[-1], rel=1e-6)
    assert data["spectrum"]["bottom"][0] == pytest.approx(ev[0], abs=1e-6 * ev[-1])
    assert data["exact"] is None  # 916 parameters: the dense reference is opt-in above 300 (exact.max_params)
    # the default trace: the spectrum's Krylov basis exactly, one product per probe in its complement
    assert data["trace"]["method"] == "Krylov-deflated Hutchinson" and data["trace"]["num_probes"] == 4
    assert data["trace"]["krylov_dim"] == data["spectrum"]["iterations"]
    assert abs(data["trace"]["value"] - ev.sum()) < 5 * data["trace"]["stderr"] + 1e-6
    assert abs(data["density"]["implied_trace"] - ev.sum()) < 5 * data["density"]["implied_trace_stderr"] + 1e-6
    cp = data["critical_point"]  # the verdict the dense spectrum implies, with the run's tolerances
    negative = ev[0] < -cp["negative_rtol"] * np.abs(ev).max()
    threshold = cp["gradient_tol"] * np.abs(ev).max() * cp["parameter_norm"]
    assert cp["gradient_threshold"] == pytest.approx(threshold, rel=1e-6)
    expected = "not critical" if cp["gradient_norm"] > threshold else ("saddle" if negative else "minimum")
    assert cp["kind"] == expected, cp
    assert data["critical_point"]["gradient_tol"] == 1e-3
    assert data["hvp_counts"]["trace"] == 4 and data["hvp_counts"]["density"] == 18
    # per layer: the diagonal blocks of the dense Hessian (Lanczos may span the small blocks)
    edges = np.cumsum([0, 8 * 24 + 24, 24 * 24 + 24, 24 * 4 + 4])
    layers = data["layers"]["layers"]
    assert [r["name"] for r in layers] == ["0", "2", "4"] and [r["size"] for r in layers] == list(np.diff(edges))
    for r, a, b in zip(layers, edges[:-1], edges[1:]):
        block = np.linalg.eigvalsh(H[a:b, a:b])
        assert r["converged"]
        assert r["lambda_max"] == pytest.approx(block[-1], rel=1e-5)
        assert r["lambda_min"] == pytest.approx(block[0], abs=1e-5 * block[-1])
        assert abs(r["trace"] - block.sum()) <= 5 * r["trace_stderr"] + 1e-5 * block.sum()
    assert data["hvp_counts"]["layers"] == data["layers"]["num_products"]
    s1 = data["slices"]["random_1d"]
    assert s1["axes"][0][2] == 0.0 and s1["loss"][2] == pytest.approx(data["loss"], rel=1e-6)
    # every slice reuses the evaluation at the weights; the 1-D random slice the 2-D slice's middle row
    evaluations = {name: v["num_evaluations"] for name, v in data["slices"].items()}
    assert evaluations == {"random_1d": 5 - 3, "random_2d": 3 * 3 - 1, "eigenvector_1d": 5 - 1}
    np.testing.assert_array_equal(np.asarray(data["slices"]["random_2d"]["loss"])[:, 1], np.asarray(s1["loss"])[::2])
    assert np.asarray(data["slices"]["random_2d"]["loss"]).shape == (3, 3)
    assert summary["loss"] == data["loss"]


def test_target_model_with_state_dict_and_array_data(default_run, tmp_path):
    out, _ = default_run
    other = tmp_path / "other.pt"
    state = load_state_dict(out / "example_model.pt")
    torch.save({k: v + 0.01 for k, v in state.items()}, other)
    cfg = compose_cfg(
        SMALL
        + [
            "+network.model={_target_:surrogates.landscape.example.tanh_mlp,sizes:[8,24,24,4]}",
            f"network.state_dict={out / 'example_model.pt'}",
            f"network.compare_state_dict={other}",
            f"data.source={out / 'example_data.npz'}",
            "data.batch_size=50",
            "hessian.dtype=float64",
            "hessian.params=[2.*]",
            "trace.method=hutchpp",
            "layers.enabled=false",
            "exact.max_params=1000",  # opt in to the dense reference (600 parameters)
        ]
    )
    summary = run(cfg, output_dir=tmp_path / "run")
    assert summary["network"]["kind"] == "model"
    assert summary["params"] == ["2.weight", "2.bias"] and summary["num_params"] == 600
    assert summary["trace"]["method"] == "hutch++" and summary["hvp_counts"]["trace"] == 12
    ev = np.asarray(summary["exact"]["eigenvalues"])
    assert abs(summary["trace"]["value"] - ev.sum()) < 5 * summary["trace"]["stderr"] + 1e-9
    assert summary["layers"] is None and "layers.png" not in summary["figures"]
    assert summary["dtype"] == "float64"
    assert (tmp_path / "run" / "path.png").exists()
    path = summary["slices"]["path"]
    assert path["axes"][0].count(0.0) == 1 and path["axes"][0].count(1.0) == 1


def test_archive_input(default_run, tmp_path):
    out, _ = default_run
    from surrogates.landscape.example import tanh_mlp

    model = tanh_mlp([8, 24, 24, 4])
    apply_state_dict(model, load_state_dict(out / "example_model.pt"))
    X, _ = load_arrays(out / "example_data.npz")
    torch.export.save(torch.export.export(model, (X,)), tmp_path / "m.pt2")
    assert isinstance(load_archive(tmp_path / "m.pt2"), nn.Module)
    cfg = compose_cfg(SMALL + [f"network.archive={tmp_path / 'm.pt2'}", f"data.source={out / 'example_data.npz'}", "figures=false",
                               "exact.max_params=10", "trace.method=density"])
    summary = run(cfg, output_dir=tmp_path / "run")
    assert summary["network"]["kind"] == "archive" and summary["num_params"] == 916
    assert summary["trace"]["value"] == summary["density"]["implied_trace"] and summary["hvp_counts"]["trace"] == 0


def test_bad_inputs_give_clear_errors(default_run, tmp_path):
    out, _ = default_run
    model_override = "network.model={_target_:surrogates.landscape.example.tanh_mlp,sizes:[8,24,24,4]}"
    with pytest.raises(FileNotFoundError, match=r"state dict file not found: .*missing\.pt"):
        run(compose_cfg(SMALL + [model_override, f"network.state_dict={tmp_path / 'missing.pt'}"]), output_dir=tmp_path / "a")
    wrong = tmp_path / "wrong.pt"
    torch.save({"0.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(ValueError, match=r"does not fit the model Sequential: missing keys \['0.bias'.*shape mismatches \['0.weight: file \(3, 3\) vs model \(24, 8\)'\]"):
        run(compose_cfg(SMALL + [model_override, f"network.state_dict={wrong}"]), output_dir=tmp_path / "b")
    np.savez(tmp_path / "bad.npz", x=np.zeros((10, 5), dtype=np.float32), y=np.zeros(10, dtype=np.int64))
    with pytest.raises(ValueError, match=r"model failed on batch 0 with inputs of shape \(10, 5\)"):
        run(compose_cfg(SMALL + [model_override, f"network.state_dict={out / 'example_model.pt'}", f"data.source={tmp_path / 'bad.npz'}"]), output_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="data.source is required"):
        run(compose_cfg(SMALL + [model_override]), output_dir=tmp_path / "d")
    with pytest.raises(InputError, match=r"hessian.dtype must be one of \['float32', 'float64'\], got 'float16'"):
        run(compose_cfg(SMALL + ["hessian.dtype=float16"]), output_dir=tmp_path / "dtype")
    with pytest.raises(ValueError, match=r"\(reduction='none'\) is not a scalar loss"):
        run(compose_cfg(SMALL + ["+loss.reduction=none"]), output_dir=tmp_path / "e")
    pickled = tmp_path / "evil.pt"
    torch.save({"w": nn.Linear(2, 2)}, pickled)  # a module object: refused by weights_only
    with pytest.raises(ValueError, match="cannot read .*evil.pt as a weights-only torch checkpoint"):
        load_state_dict(pickled)


MODEL = "network.model={_target_:surrogates.landscape.example.tanh_mlp,sizes:[8,24,24,4]}"


@pytest.mark.parametrize(
    "args, expected",
    [
        ([MODEL, "network.state_dict={tmp}/missing.pt"], r"error: state dict file not found: .*missing\.pt"),
        ([MODEL], r"error: data\.source is required when a network is given"),
        (["trace.method=bogus"], r"error: trace\.method must be deflated, density or hutchpp, got 'bogus'"),
        (["threads=0"], r"error: threads must be a positive integer or null, got 0"),
    ],
    ids=["missing state dict", "no data", "bad trace method", "bad threads"],
)
def test_user_errors_are_one_line_and_exit_2(args, expected, tmp_path, capsys):
    """The same report as the other three commands (cli.common.reported_errors): no traceback."""
    code = run_command("landscape", [*(a.replace("{tmp}", str(tmp_path)) for a in args), f"hydra.run.dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    message = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err, err
    assert len(message) == 1 and re.match(expected, message[0]), err


@pytest.mark.slow
def test_surrogate_input(tmp_path):
    import surrogates

    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (64, 2))
    y = np.sin(X[:, 0]) + X[:, 1] ** 2
    surrogates.fit(X, y, overrides=["trainer.max_epochs=3", "model.polish_epochs=1"]).save(tmp_path / "s.safetensors")
    np.savez(tmp_path / "d.npz", x=X, y=y[:, None])
    cfg = compose_cfg(
        SMALL
        + [
            f"network.surrogate={tmp_path / 's.safetensors'}",
            f"data.source={tmp_path / 'd.npz'}",
            "loss={_target_:torch.nn.MSELoss}",
            "exact.max_params=10",
        ]
    )
    summary = run(cfg, output_dir=tmp_path / "run")
    assert summary["network"]["kind"] == "surrogate" and summary["num_params"] > 100
    # the top eigenvalue against a dense float64 Hessian of the same surrogate network and data
    model = surrogates.load(tmp_path / "s.safetensors").model.double()
    H = reference_hessian(model, nn.MSELoss(), torch.tensor(X), torch.tensor(y[:, None])).numpy()
    assert summary["spectrum"]["top"][0] == pytest.approx(np.linalg.eigvalsh(H)[-1], rel=1e-4)
