"""The bad-input catalogue of issue 7, from the command line.

Each case runs ``surrogates-train`` or ``surrogates-query`` (in-process, through the same
Hydra entry point) into a folder that already holds a good run's files, and checks: non-zero
exit, a short message naming the problem and the place, no traceback, and the good files
byte-identical afterwards (nothing written or overwritten). ``python tests/cli/test_bad_input.py``
prints the case → message table.

The Python-level versions of many cases live in tests/fitting/test_data.py and tests/fitting/test_train.py.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_command

from surrogates.cli import query as query_cli
from surrogates.cli import train as train_cli
from surrogates.errors import InputError
from surrogates.model import MLP
from surrogates.surrogate import Surrogate

GOOD_FILES = ("surrogate.safetensors", "summary.json", "config.yaml", "query.npz", "query.csv")


def _good_surrogate(d: int = 2, width: int = 8) -> Surrogate:
    torch.manual_seed(0)
    return Surrogate(MLP(d, 1, width=width, depth=2), [f"x{i}" for i in range(d)], ["y0"], True,
                     lower=[0.0] * d, upper=[1.0] * d)


def _rows(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(seed).uniform(size=(n, 2))
    return X, X[:, 0] + 2 * X[:, 1] ** 2


def _csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def _npy(folder: Path, X, y, name="d") -> list[str]:
    np.save(folder / f"{name}_X.npy", X)
    np.save(folder / f"{name}_y.npy", y)
    return ["data=npy", f"data.source.inputs={folder / f'{name}_X.npy'}", f"data.source.outputs={folder / f'{name}_y.npy'}"]


def _npz(folder: Path, name="d", **arrays) -> list[str]:
    np.savez(folder / f"{name}.npz", **arrays)
    return ["data=npz", f"data.source.path={folder / f'{name}.npz'}"]


# ------------------------------------------------------------------------- the cases
# Each builder gets the scratch folder and returns (command, arguments, expected message regex).


def nan_outputs(t):
    X, y = _rows()
    y[[3, 17]] = np.nan
    return "train", _npz(t, X=X, y=y), r"outputs contain NaN or inf in row\(s\) 3, 17 \(0-based\)"


def inf_inputs_csv(t):
    X, y = _rows()
    lines = [f"{a},{b},{c}" for (a, b), c in zip(X, y)]
    lines[5] = "inf,0.5,1.0"
    # data row 5 is file line 7 (the header is line 1), as the text errors count
    return "train", ["data=csv", f"data.source.path={_csv(t / 'd.csv', 'a,b,y', lines)}", "data.source.outputs=[y]"], \
        r"inputs contain NaN or inf in line\(s\) 7$"


def nan_outputs_csv_after_a_blank_line(t):
    X, y = _rows()
    lines = [f"{a},{b},{c}" for (a, b), c in zip(X, y)]
    lines[1] = ""  # a blank line is skipped, yet still counts as a line of the file
    lines[4] = "0.1,0.2,nan"
    return "train", ["data=csv", f"data.source.path={_csv(t / 'd.csv', 'a,b,y', lines)}", "data.source.outputs=[y]"], \
        r"d\.csv: outputs contain NaN or inf in line\(s\) 6$"


def csv_semicolon_separated(t):
    X, y = _rows()
    path = _csv(t / "d.csv", "a;b;y", [f"{a};{b};{c}" for (a, b), c in zip(X, y)])
    return "train", ["data=csv", f"data.source.path={path}", "data.source.outputs=[y]"], \
        r"d\.csv: the header is a single column 'a;b;y'; the file looks separated by semicolons, .*separated by commas"


def csv_tab_separated(t):
    X, y = _rows()
    path = _csv(t / "d.csv", "a\tb\ty", [f"{a}\t{b}\t{c}" for (a, b), c in zip(X, y)])
    return "train", ["data=csv", f"data.source.path={path}", "data.source.outputs=[y]"], \
        r"the file looks separated by tabs"


def length_mismatch_x_y(t):
    X, y = _rows()
    return "train", _npy(t, X, y[:-3]), r"40 input rows but 37 output rows"


def length_mismatch_gradients(t):
    X, y = _rows()
    return "train", _npz(t, X=X, y=y, gradients=np.ones((30, 2))), r"40 input rows but 30 gradient rows"


def one_d_inputs(t):
    X, y = _rows()
    return "train", _npy(t, X[:, 0], y), r"inputs X must be 2-D .*got shape \(40,\); for one input dimension"


def two_d_outputs_3d(t):
    X, y = _rows()
    return "train", _npy(t, X, np.zeros((40, 2, 2))), r"outputs y must be \(N,\) or \(N, m\), got shape \(40, 2, 2\)"


def empty_file(t):
    (t / "empty.csv").write_text("")
    return "train", ["data=csv", f"data.source.path={t / 'empty.csv'}", "data.source.outputs=[y]"], r"empty\.csv is empty"


def truncated_npy(t):
    X, y = _rows(4000)
    args = _npy(t, X, y)
    cut = (t / "d_X.npy").read_bytes()
    (t / "d_X.npy").write_bytes(cut[: len(cut) // 3])
    return "train", args, r"d_X\.npy is not a readable \.npy array \(truncated or corrupt\?\)"


def csv_misspelled_output(t):
    X, y = _rows()
    path = _csv(t / "d.csv", "a,b,enrgy", [f"{a},{b},{c}" for (a, b), c in zip(X, y)])
    return "train", ["data=csv", f"data.source.path={path}", "data.source.outputs=[energy]"], \
        r"has no column\(s\) \['energy'\]; its columns are \['a', 'b', 'enrgy'\]"


def csv_missing_input_column(t):
    X, y = _rows()
    path = _csv(t / "d.csv", "a,b,y", [f"{a},{b},{c}" for (a, b), c in zip(X, y)])
    return "train", ["data=csv", f"data.source.path={path}", "data.source.outputs=[y]", "data.source.inputs=[a,c]"], \
        r"has no column\(s\) \['c'\]"


def csv_non_numeric_output(t):
    X, y = _rows()
    lines = [f"{a},{b},{c}" for (a, b), c in zip(X, y)]
    lines[2] = "0.1,0.2,n/a"
    path = _csv(t / "d.csv", "a,b,y", lines)
    return "train", ["data=csv", f"data.source.path={path}", "data.source.outputs=[y]"], \
        r"line 4, column 'y': 'n/a' is not a number"


def csv_duplicate_column_names(t):
    X, y = _rows()
    path = _csv(t / "d.csv", "a,a,y", [f"{a},{b},{c}" for (a, b), c in zip(X, y)])
    return "train", ["data=csv", f"data.source.path={path}", "data.source.outputs=[y]"], \
        r"d\.csv: the header names column\(s\) \['a'\] more than once"


def constant_input(t):
    X, y = _rows()
    X[:, 1] = 3.0
    return "train", _npz(t, X=X, y=y), r"input column 'x1' is constant \(3\)"


def constant_output(t):
    X, _ = _rows()
    return "train", _npz(t, X=X, y=np.full(40, 2.5)), r"output column 'y0' is constant \(2\.5\)"


def huge_magnitudes(t):
    X, y = _rows()
    return "train", _npz(t, X=X, y=y * 1e30), r"output column 'y0' reaches magnitude .*limit 1e\+30\); rescale it"


def unknown_config_key(t):
    return "train", ["trainer.max_epoch=3"], r"Could not override 'trainer\.max_epoch'"


def unknown_group_option(t):
    return "train", ["data=quartik"], r"Could not find 'data/quartik'"


def wrong_type_model_width(t):
    return "train", ["model.width=abc"], r"'abc' of type 'str' could not be converted to Integer[\s\S]*full_key: model\.width"


def negative_polish_patience(t):
    return "train", ["model.polish_patience=-1"], r"polish_patience must be non-negative, got -1"


def resume_checkpoint_missing(t):
    return "train", [f"ckpt_path={t / 'nothere.ckpt'}"], r"ckpt_path\) .*nothere\.ckpt does not exist"


def resume_checkpoint_is_a_folder(t):
    (t / "old" / "checkpoints").mkdir(parents=True)
    (t / "old" / "checkpoints" / "last.ckpt").write_bytes(b"x")
    return "train", [f"ckpt_path={t / 'old'}"], \
        r"ckpt_path\) .*old is a folder; give a Lightning checkpoint file, e\.g\. ckpt_path=.*old/checkpoints/last\.ckpt"


def query_checkpoint_missing(t):
    return "query", [f"checkpoint={t / 'missing.safetensors'}"], r"surrogate file .*missing\.safetensors does not exist"


def query_checkpoint_truncated(t):
    good = _good_surrogate().save(t / "s.safetensors").read_bytes()
    (t / "cut.safetensors").write_bytes(good[: len(good) // 2])
    return "query", [f"checkpoint={t / 'cut.safetensors'}"], r"cut\.safetensors is not a readable surrogate file"


def query_checkpoint_not_a_checkpoint(t):
    (t / "notes.safetensors").write_text("these are my notes, not a model")
    return "query", [f"checkpoint={t / 'notes.safetensors'}"], r"notes\.safetensors is not a readable surrogate file"


def query_checkpoint_other_model_shape(t):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = _good_surrogate().save(t / "s.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    tensors = load_file(str(path))
    tensors["members.0.hidden.0.weight"] = torch.zeros(16, 2, dtype=torch.float64)  # a width-16 layer
    save_file(tensors, str(t / "other.safetensors"), metadata=meta)
    return "query", [f"checkpoint={t / 'other.safetensors'}"], r"size mismatch"


def query_checkpoint_is_a_folder_without_a_surrogate(t):
    (t / "notes").mkdir()
    return "query", [f"checkpoint={t / 'notes'}"], \
        r"notes is a folder, not a surrogate file, and holds no surrogate\.safetensors"


def query_checkpoint_is_an_unfinished_runs_folder(t):
    (t / "old" / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": {}}, t / "old" / "checkpoints" / "last.ckpt")
    return "query", [f"checkpoint={t / 'old'}"], \
        r"old is a training run's folder without surrogate\.safetensors: the run did not finish .*ckpt_path=.*last\.ckpt"


def query_checkpoint_is_a_state_dict(t):
    torch.save(MLP(2, 1, width=4, depth=1).state_dict(), t / "net.pt")
    return "query", [f"checkpoint={t / 'net.pt'}"], \
        r"net\.pt is a torch\.save file \(a PyTorch state dict or other pickled object\), not a surrogate file: " \
        r"give the surrogate\.safetensors .* network\.state_dict=.*net\.pt$"


def query_points_wrong_dimension(t):
    _good_surrogate().save(t / "s.safetensors")
    np.save(t / "p.npy", np.zeros((5, 3)))
    return "query", [f"checkpoint={t / 's.safetensors'}", f"points={t / 'p.npy'}"], \
        r"points must have shape \(N, 2\) for inputs \['x0', 'x1'\], got \(5, 3\)"


def query_points_nan(t):
    _good_surrogate().save(t / "s.safetensors")
    P = np.zeros((6, 2))
    P[4, 1] = np.nan
    np.save(t / "p.npy", P)
    return "query", [f"checkpoint={t / 's.safetensors'}", f"points={t / 'p.npy'}"], r"NaN or inf in row\(s\) 4 \(0-based\)"


def query_points_nan_csv(t):
    _good_surrogate().save(t / "s.safetensors")
    _csv(t / "p.csv", "x0,x1", ["0.1,0.2", "0.3,0.4", "0.5,nan"])
    return "query", [f"checkpoint={t / 's.safetensors'}", f"points={t / 'p.csv'}"], r"p\.csv: NaN or inf in line\(s\) 4$"


HYDRA_COMPOSITION = (unknown_config_key, unknown_group_option, wrong_type_model_width)
# torch's state-dict error text ends its first line with a colon and lists the mismatches below
TWO_LINES = (query_checkpoint_other_model_shape,)
CASES = [nan_outputs, inf_inputs_csv, nan_outputs_csv_after_a_blank_line, length_mismatch_x_y, length_mismatch_gradients,
         one_d_inputs, two_d_outputs_3d, empty_file, truncated_npy, csv_misspelled_output, csv_missing_input_column,
         csv_non_numeric_output, csv_duplicate_column_names, csv_semicolon_separated, csv_tab_separated,
         constant_input, constant_output, huge_magnitudes, unknown_config_key, unknown_group_option,
         wrong_type_model_width, negative_polish_patience, resume_checkpoint_missing, resume_checkpoint_is_a_folder,
         query_checkpoint_missing, query_checkpoint_truncated, query_checkpoint_not_a_checkpoint,
         query_checkpoint_is_a_folder_without_a_surrogate, query_checkpoint_is_an_unfinished_runs_folder,
         query_checkpoint_is_a_state_dict, query_checkpoint_other_model_shape, query_points_wrong_dimension,
         query_points_nan, query_points_nan_csv]


def run_cli(command: str, args: list[str], run_dir: Path, capsys) -> tuple[int, str]:
    extra = "plot=false" if command == "query" else "debug=fast"
    code = run_command(command, [*args, f"hydra.run.dir={run_dir}", "trainer.enable_progress_bar=false", extra])
    return code, capsys.readouterr().err


def _plant_good_run(run_dir: Path) -> dict[str, bytes]:
    """A previous good run's files in the folder the failed run points at."""
    run_dir.mkdir(parents=True, exist_ok=True)
    _good_surrogate().save(run_dir / "surrogate.safetensors")
    for name in GOOD_FILES[1:]:
        (run_dir / name).write_bytes(f"previous good {name}\n".encode())
    return {name: (run_dir / name).read_bytes() for name in GOOD_FILES}


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_gives_one_clear_error_and_writes_nothing(case, tmp_path, capsys):
    command, args, expected = case(tmp_path)
    run_dir = tmp_path / "run"
    before = _plant_good_run(run_dir)
    code, err = run_cli(command, args, run_dir, capsys)
    assert code not in (0, None), err
    assert "Traceback" not in err, err
    message = [line for line in err.strip().splitlines() if line.strip()]
    if case in HYDRA_COMPOSITION:
        # Hydra's own report of a bad override or group option (before our code runs): a few
        # lines, or the list of available options
        assert len(message) <= 20, err
    elif case in TWO_LINES:
        assert len(message) == 2 and message[0].startswith("error: "), err
    else:
        assert len(message) == 1 and message[0].startswith("error: "), err
    assert re.search(expected, err), err
    for name, content in before.items():
        assert (run_dir / name).read_bytes() == content, f"{name} was overwritten"
    assert not list(run_dir.glob(".*.tmp")) and not (run_dir / "checkpoints").exists()


def test_duplicate_csv_column_names_stop_the_run_before_it_writes(compose_config, tmp_path):
    """A header ``pressure,pressure,flow,angle,yield`` used to train on the first column twice."""
    from surrogates.errors import DataError

    rng = np.random.default_rng(0)
    rows = [",".join(f"{v:.6f}" for v in row) for row in rng.uniform(size=(40, 5))]
    path = _csv(tmp_path / "runs.csv", "pressure,pressure,flow,angle,yield", rows)
    cfg = compose_config("train", ["data=csv", f"data.source.path={path}", "data.source.outputs=[yield]",
                                   "debug=fast", "trainer.enable_progress_bar=false", "logger=none"])
    out = tmp_path / "run"
    with pytest.raises(DataError, match=r"runs\.csv: the header names column\(s\) \['pressure'\] more than once"):
        train_cli.run(cfg, output_dir=str(out))
    assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))


# ------------------------------------------------------------------------- the run folder

QUICK = ["debug=fast", "trainer.enable_progress_bar=false", "logger=none"]


def _files(folder: Path) -> dict[str, bytes]:
    """Every file a training run wrote (Hydra's own .hydra/ record aside)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".hydra" not in p.parts and not p.name.endswith(".log")}


def test_a_second_training_into_a_finished_runs_folder_is_refused(compose_config, tmp_path, capsys):
    run_dir = tmp_path / "run"
    train_cli.run(compose_config("train", QUICK), output_dir=str(run_dir))
    before = _files(run_dir)
    assert {"surrogate.safetensors", "summary.json", "config.yaml", "checkpoints/last.ckpt"} <= set(before)
    capsys.readouterr()  # the first run's output (and logging's complaints about streams earlier cases closed)
    code, err = run_cli("train", ["logger=none", "seed=1"], run_dir, capsys)
    assert code == 2 and "Traceback" not in err, err
    message = [line for line in err.strip().splitlines() if line.strip()]
    assert len(message) == 1 and re.search(r"error: output folder .*run already holds another run's surrogate", message[0]), err
    assert _files(run_dir) == before


def test_fit_into_a_folder_holding_a_surrogate_is_refused(tmp_path):
    import surrogates
    from surrogates.io import OutputError

    X, y = _rows(60)
    first = surrogates.fit(X, y, output_dir=tmp_path, overrides=QUICK)
    before = _files(tmp_path)
    with pytest.raises(OutputError, match=r"already holds another run's surrogate"):
        surrogates.fit(X, 2 * y, output_dir=tmp_path, overrides=[*QUICK, "ensemble.size=2"])
    assert _files(tmp_path) == before
    np.testing.assert_array_equal(Surrogate.load(tmp_path / "surrogate.safetensors").predict(X), first.predict(X))


def test_resuming_a_run_writes_into_its_own_folder_and_ensembles_use_member_folders(compose_config, tmp_path):
    run_dir = tmp_path / "run"
    train_cli.run(compose_config("train", QUICK), output_dir=str(run_dir))
    last = run_dir / "checkpoints" / "last.ckpt"
    summary = train_cli.run(compose_config("train", [*QUICK, f"ckpt_path={last}", "trainer.max_epochs=40"]),
                            output_dir=str(run_dir))
    assert summary["epochs"] == 40
    assert Surrogate.load(run_dir / "surrogate.safetensors").info["summary"]["epochs"] == 40

    ensemble_dir = tmp_path / "ensemble"
    train_cli.run(compose_config("train", [*QUICK, "ensemble.size=2"]), output_dir=str(ensemble_dir))
    assert Surrogate.load(ensemble_dir / "surrogate.safetensors").ensemble_size == 2
    assert (ensemble_dir / "member1" / "checkpoints" / "last.ckpt").is_file()


def test_a_lightning_checkpoint_given_as_the_surrogate_names_its_run_and_a_run_folder_is_accepted(
        compose_config, tmp_path, capsys):
    """A real checkpoint of an interrupted run, then of the same run finished: the message says
    what the file is and which surrogate file exists (or that none does yet)."""
    run_dir, last = tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.ckpt"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_cli.run(compose_config("train", [*QUICK, "+callbacks.crash._target_=crash_callback.CrashAt",
                                               "+callbacks.crash.epoch=15"]), output_dir=str(run_dir))
    capsys.readouterr()
    code, err = run_cli("query", [f"checkpoint={last}"], tmp_path / "q1", capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert re.search(rf"error: {re.escape(str(last))} is a Lightning training checkpoint, not a surrogate file: it resumes "
                     rf"a fit \(surrogates-train ckpt_path=.*\)\. Its run folder {re.escape(str(run_dir))} holds no "
                     r"surrogate\.safetensors yet", err), err
    assert "next to it" not in err

    train_cli.run(compose_config("train", [*QUICK, f"ckpt_path={last}"]), output_dir=str(run_dir))
    capsys.readouterr()
    code, err = run_cli("query", [f"checkpoint={last}"], tmp_path / "q2", capsys)
    assert code == 2 and f"The surrogate its run wrote is {run_dir / 'surrogate.safetensors'}" in err, err

    # the run folder itself is accepted: its surrogate.safetensors is loaded
    query_cli.run(compose_config("query", [f"checkpoint={run_dir}", "plot=false", "grid.counts=3",
                                           "trainer.enable_progress_bar=false"]), tmp_path / "q3")
    expected = Surrogate.load(run_dir / "surrogate.safetensors").predict(np.load(tmp_path / "q3" / "query.npz")["X"])
    np.testing.assert_array_equal(np.load(tmp_path / "q3" / "query.npz")["value"], expected)


@pytest.mark.parametrize("command", ["train", "query"])
def test_an_output_folder_below_a_file_is_a_one_line_error(tmp_path, capsys, command):
    """hydra.run.dir=data.csv/x: Hydra creates the folder first, so this is checked before it does."""
    data = _csv(tmp_path / "data.csv", "a,b,y", [f"{a},{b},{c}" for (a, b), c in zip(*_rows())])
    before = data.read_bytes()
    code, err = run_cli(command, [], data / "x", capsys)
    assert code == 2 and "Traceback" not in err, err
    message = [line for line in err.strip().splitlines() if line.strip()]
    assert message == [f"error: output folder {data / 'x'} cannot be created: {data} is a file, not a folder"], err
    assert data.read_bytes() == before


def test_an_output_folder_below_a_file_through_run_and_fit(compose_config, tmp_path):
    """Without Hydra's run folder (tests, scripts, surrogates.fit): the same error from the code that writes."""
    import surrogates
    from surrogates.cli import critical as critical_cli
    from surrogates.io import OutputError

    data = _csv(tmp_path / "data.csv", "a,b,y", [f"{a},{b},{c}" for (a, b), c in zip(*_rows())])
    pattern = rf"output folder {re.escape(str(data / 'x'))} cannot be created: {re.escape(str(data))} is a file"
    with pytest.raises(OutputError, match=pattern):
        train_cli.run(compose_config("train", QUICK), output_dir=str(data / "x"))
    with pytest.raises(OutputError, match=pattern):
        surrogates.fit(*_rows(), output_dir=data / "x", overrides=QUICK)
    _good_surrogate().save(tmp_path / "s.safetensors")
    for cli, name in ((query_cli, "query"), (critical_cli, "critical")):
        cfg = compose_config(name, [f"checkpoint={tmp_path / 's.safetensors'}", "figures=false" if name == "critical" else "plot=false",
                                    *(["search.starts=8"] if name == "critical" else ["grid.counts=3"])])
        with pytest.raises(OutputError, match=pattern):
            cli.run(cfg, data / "x")


if __name__ == "__main__":  # the case → message table for the closing note
    import tempfile

    class _Capture:
        def readouterr(self):
            class R:
                err = sys.stderr.getvalue()
            return R

    import io

    rows = []
    for case in CASES:
        with tempfile.TemporaryDirectory() as scratch:
            command, args, _ = case(Path(scratch))
            real, sys.stderr = sys.stderr, io.StringIO()
            try:
                code, err = run_cli(command, args, Path(scratch) / "run", _Capture())
            finally:
                sys.stderr = real
            text = " ⏎ ".join(line.strip() for line in err.strip().splitlines() if line.strip())
            rows.append(f"| {case.__name__} | {command} | {code} | {text.replace(scratch, '…')} |")
    print("| case | command | exit | message |\n|---|---|---|---|\n" + "\n".join(rows))


def test_a_bug_keeps_its_traceback_and_a_users_mistake_is_one_line(capsys):
    """A ValueError from numpy/torch code is a bug, not a user error: the commands re-raise it."""
    from surrogates.cli.common import reported_errors

    with pytest.raises(ValueError, match="a bug in array code"):
        with reported_errors():
            raise ValueError("a bug in array code")
    with pytest.raises(SystemExit) as exited:
        with reported_errors():
            raise InputError("model.width must be positive, got -3")
    assert exited.value.code == 2
    assert capsys.readouterr().err == "error: model.width must be positive, got -3\n"
