"""surrogates-query and the Lightning predict path."""

from __future__ import annotations

import csv
import json
import re
import sys
import warnings

import lightning as L
import numpy as np
import pytest
import torch
from conftest import run_command

import surrogates
from surrogates.cli.query import run
from surrogates.errors import DataError, InputError
from surrogates.fitting.predict import grid_points, query
from surrogates.model import MLP
from surrogates.surrogate import ExtrapolationError, ExtrapolationWarning, Surrogate


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
        query(vector_surrogate, X, ["vorticity"], trainer=_trainer())
    with pytest.raises(InputError, match=r"\['curl'\] need a square map .* 3 inputs to 2 output"):
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
    with pytest.raises(InputError, match=r"grid counts must be whole numbers .* got 'abc'"):
        grid_points([0, 0], [1, 1], "abc")  # grid.counts=abc: the schema cannot type a number-or-list


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
    assert header == "u,v,f,df/du,df/dv,d2f/du/du,d2f/du/dv,d2f/dv/du,d2f/dv/dv"
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


def test_cli_grid_corner_may_be_one_number_for_every_input(compose_config, surrogate, tmp_path):
    surrogate.save(tmp_path / "s.safetensors")
    cfg = compose_config("query", [f"checkpoint={tmp_path / 's.safetensors'}", "grid.counts=3", "grid.lower=0.5",
                                   "plot=false", "trainer.enable_progress_bar=false"])
    run(cfg, tmp_path / "grid")
    X = np.load(tmp_path / "grid" / "query.npz")["X"]
    # lower 0.5 on both inputs, upper the training box's (u ≤ 1, v ≤ 20)
    np.testing.assert_array_equal(np.unique(X[:, 0]), [0.5, 0.75, 1.0])
    np.testing.assert_array_equal(np.unique(X[:, 1]), [0.5, 10.25, 20.0])
    cfg = compose_config("query", [f"checkpoint={tmp_path / 's.safetensors'}", "grid.upper=[1,a]", "plot=false"])
    with pytest.raises(InputError, match=r"grid.upper must be a number or a list with one number per input, got \[1, 'a'\]"):
        run(cfg, tmp_path / "bad")
    assert not (tmp_path / "bad" / "query.npz").exists()


# ---------------------------------------------------------------- extrapolation= and the CSV

# the scalar surrogate's box is u in [0, 1], v in [0, 20]: u = 3.4 is 2.4 box widths beyond it
X_FAR = np.array([[0.5, 10.0], [3.4, 10.0], [0.2, 5.0], [0.5, -2.0], [1.0, 20.0]])
FAR_MESSAGE = r"2 of 5 query points lie outside the training box, up to 2\.4 box widths beyond it \(input 'u' = 3\.4"


def _scalar_methods(s):
    v = np.array([1.0, 2.0])
    return {
        "predict": lambda X, **kw: s.predict(X, **kw),
        "gradient": lambda X, **kw: s.gradient(X, **kw),
        "jacobian": lambda X, **kw: s.jacobian(X, **kw),
        "hessian": lambda X, **kw: s.hessian(X, **kw),
        "laplacian": lambda X, **kw: s.laplacian(X, **kw),
        "directional_derivative": lambda X, **kw: s.directional_derivative(X, v, **kw),
        "hvp": lambda X, **kw: s.hvp(X, v, **kw),
    }


def test_extrapolation_warning_says_how_many_and_how_far_at_the_callers_line(surrogate):
    with pytest.warns(ExtrapolationWarning) as record:
        surrogate.predict(X_FAR)
    assert len(record) == 1 and record[0].filename == __file__
    assert re.search(FAR_MESSAGE, str(record[0].message))
    for name in ("gradient", "jacobian", "hessian", "laplacian", "directional_derivative", "hvp"):
        with pytest.warns(ExtrapolationWarning, match=FAR_MESSAGE) as record:
            getattr(surrogate, name)(X_FAR, **({"v": [1.0, 0.0]} if name == "directional_derivative" else {})
                                     | ({"V": [1.0, 0.0]} if name == "hvp" else {}))
        assert record[0].filename == __file__, name
    with pytest.warns(ExtrapolationWarning, match=FAR_MESSAGE) as record:  # the batched path: once, here too
        query(surrogate, X_FAR, ["value", "hessian"], trainer=_trainer(), batch_size=2)
    assert len([w for w in record if issubclass(w.category, ExtrapolationWarning)]) == 1
    assert record[0].filename == __file__


def test_extrapolation_error_names_the_same_facts(surrogate):
    assert surrogates.ExtrapolationError is ExtrapolationError and issubclass(ExtrapolationError, ValueError)
    for name, method in _scalar_methods(surrogate).items():
        with pytest.raises(ExtrapolationError, match=FAR_MESSAGE):
            method(X_FAR, extrapolation="error")
        method(X_FAR[[0, 2, 4]], extrapolation="error")  # all inside: no error
    with pytest.raises(ExtrapolationError, match=FAR_MESSAGE):
        query(surrogate, X_FAR, ["value"], trainer=_trainer(), extrapolation="error")
    with pytest.raises(ValueError, match=r"extrapolation must be one of \['warn', 'error', 'nan'\]"):
        surrogate.predict(X_FAR, extrapolation="clip")


@pytest.mark.parametrize("as_torch", [False, True])
def test_extrapolation_nan_gives_nan_rows_and_the_usual_values_inside(surrogate, vector_surrogate, as_torch):
    inside = np.array([True, False, True, False, True])
    convert = torch.from_numpy if as_torch else np.asarray
    for s, X in ((surrogate, X_FAR), (vector_surrogate, np.array([[0.5] * 3, [1.5, 0.5, 0.5], [0.1, 0.2, 0.3], [0.5, 0.5, -4], [1.0] * 3]))):
        methods = _scalar_methods(surrogate) if s is surrogate else {
            "predict": lambda X, **kw: vector_surrogate.predict(X, **kw),
            "jacobian": lambda X, **kw: vector_surrogate.jacobian(X, **kw),
            "hessian": lambda X, **kw: vector_surrogate.hessian(X, **kw),
            "laplacian": lambda X, **kw: vector_surrogate.laplacian(X, **kw),
            "hvp": lambda X, **kw: vector_surrogate.hvp(X, np.ones(3), **kw),
        }
        for name, method in methods.items():
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # "nan" does not warn
                result = np.asarray(method(convert(X), extrapolation="nan"))
                expected = np.asarray(method(convert(X[inside])))
            assert np.isnan(result[~inside]).all(), name
            np.testing.assert_allclose(result[inside], expected, rtol=1e-12, atol=1e-14, err_msg=name)
    results = query(surrogate, X_FAR, ["value", "gradient", "hessian"], trainer=_trainer(), extrapolation="nan")
    for q, array in results.items():
        assert np.isnan(array[~inside]).all() and np.isfinite(array[inside]).all(), q


def test_cli_extrapolation_modes(compose_config, surrogate, tmp_path, capsys):
    surrogate.save(tmp_path / "s.safetensors")
    np.save(tmp_path / "far.npy", X_FAR)
    base = [f"checkpoint={tmp_path / 's.safetensors'}", f"points={tmp_path / 'far.npy'}", "plot=false",
            "trainer.enable_progress_bar=false", "quantities=[value,hessian]"]
    assert compose_config("query", base).extrapolation == "warn"
    summary = run(compose_config("query", base), tmp_path / "warn")
    assert re.search(FAR_MESSAGE, summary["extrapolation_message"])
    assert np.isfinite(np.load(tmp_path / "warn" / "query.npz")["value"]).all()

    run(compose_config("query", [*base, "extrapolation=nan"]), tmp_path / "nan")
    saved = np.load(tmp_path / "nan" / "query.npz")
    assert np.isnan(saved["value"][~saved["in_domain"]]).all() and np.isnan(saved["hessian"][1]).all()
    np.testing.assert_allclose(saved["value"][[0, 2, 4]], surrogate.predict(X_FAR[[0, 2, 4]]), rtol=1e-12)
    rows = list(csv.DictReader((tmp_path / "nan" / "query.csv").open()))
    assert rows[1]["f"] == "nan" and rows[1]["d2f/du/dv"] == "nan" and float(rows[0]["f"]) == saved["value"][0]

    with pytest.raises(ExtrapolationError, match=FAR_MESSAGE):
        run(compose_config("query", [*base, "extrapolation=error"]), tmp_path / "error")
    assert not (tmp_path / "error" / "query.npz").exists()

    code = run_command("query", [*base, "extrapolation=error", f"hydra.run.dir={tmp_path / 'cli'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert [line for line in err if line.startswith("error:")] == [err[-1]] and re.search(FAR_MESSAGE, err[-1])


def test_cli_csv_hessian_columns_and_shortest_round_trip_numbers(compose_config, vector_surrogate, tmp_path):
    vector_surrogate.save(tmp_path / "v.safetensors")
    X = np.random.default_rng(3).uniform(size=(9, 3))
    np.save(tmp_path / "points.npy", X)
    cfg = compose_config("query", [f"checkpoint={tmp_path / 'v.safetensors'}", f"points={tmp_path / 'points.npy'}",
                                   "quantities=[value,jacobian,hessian]", "plot=false", "trainer.enable_progress_bar=false"])
    run(cfg, tmp_path / "out")
    saved = np.load(tmp_path / "out" / "query.npz")
    lines = (tmp_path / "out" / "query.csv").read_text().splitlines()
    header = lines[0].split(",")
    hessian_names = [f"d2{o}/d{i}/d{j}" for o in "pq" for i in "abc" for j in "abc"]
    assert header == ["a", "b", "c", "p", "q", *[f"d{o}/d{x}" for o in "pq" for x in "abc"], *hessian_names]
    rows = list(csv.DictReader(lines))
    assert len(rows) == 9
    for n, row in enumerate(rows):
        assert float(row["d2q/da/dc"]) == saved["hessian"][n, 1, 0, 2]  # exact, not just close
        assert float(row["d2p/db/db"]) == saved["hessian"][n, 0, 1, 1]
        np.testing.assert_array_equal([float(row[h]) for h in hessian_names], saved["hessian"][n].reshape(-1))
        assert float(row["b"]) == X[n, 1]
    for line in lines[1:]:
        for text in line.split(","):
            mantissa = re.sub(r"e.*$", "", text.lstrip("-")).replace(".", "").lstrip("0")
            assert len(mantissa.rstrip("0") or "0") <= 17, text
            assert text == repr(float(text)), text  # the shortest text that reads back to the same float


def test_python_query_builds_its_trainer_without_lightnings_banners(surrogate, capfd):
    X = np.random.default_rng(4).uniform([0, 0], [1, 20], (50, 2))
    results = query(surrogate, X, ["value", "gradient"])  # no trainer: query builds one
    out, err = capfd.readouterr()
    for text in ("GPU available", "TPU available", "💡 Tip", "litlogger", "Predicting"):
        assert text not in out + err, text
    np.testing.assert_array_equal(results["value"], surrogate.predict(X))


def test_cli_piped_query_log_holds_the_summary_and_the_warning(surrogate, tmp_path):
    import os
    import subprocess

    surrogate.save(tmp_path / "s.safetensors")
    np.save(tmp_path / "far.npy", X_FAR)
    done = subprocess.run(
        [sys.executable, "-m", "surrogates.cli.query", f"checkpoint={tmp_path / 's.safetensors'}",
         f"points={tmp_path / 'far.npy'}", "plot=false", "quantities=[value,hessian]", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for text in ("GPU available", "Tip", "Predicting", "it/s"):  # no banner, no progress bar in a pipe
        assert text not in done.stdout + done.stderr, text
    headline = f"{X_FAR.shape[0]} points"
    assert done.stdout.count(headline) == 1 and str(tmp_path / "run" / "query.csv") in done.stdout
    warning = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and re.search(FAR_MESSAGE, warning[0]), done.stderr
    log = (tmp_path / "run" / "query.log").read_text()
    assert headline in log and "hessian" in log and str(tmp_path / "run" / "query.npz") in log
    assert re.search(r"\[WARNING\] - " + FAR_MESSAGE, log), log
