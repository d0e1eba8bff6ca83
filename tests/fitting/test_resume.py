"""Resuming an interrupted ``surrogates-train`` run (issue 16, item 13), from the command line.

``ckpt_path=<run>/checkpoints/last.ckpt`` goes on in ``<run>`` — the folder of the run that
wrote the checkpoint — not in a new dated folder, and nothing the interrupted run wrote is
lost: the files the resumed fit replaces are kept in ``<run>/before_resume1/``, Hydra's record
of the new invocation goes to ``.hydra/resume1/``, and ``train.log`` continues.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_command

from surrogates.surrogate import Surrogate

COMMON = ["debug=fast", "trainer.enable_progress_bar=false"]


def _main(args: list[str]) -> int:
    """``surrogates-train *args`` in this process (Hydra's real entry point); its exit code."""
    return run_command("train", args)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _runs(tmp_path: Path) -> list[Path]:
    return sorted(p for p in (tmp_path / "outputs").glob("*/*/*") if p.is_dir())


def test_resume_goes_on_in_the_interrupted_runs_folder_and_loses_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # Hydra's default run folder: outputs/<job name>/<date>/<time>
    crashed = _main([*COMMON, "+callbacks.crash._target_=crash_callback.CrashAt", "+callbacks.crash.epoch=15"])
    assert crashed != 0
    [run] = _runs(tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file() and not (run / "surrogate.safetensors").exists()
    before = _files(run)
    assert {"config.yaml", "train.log", ".hydra/overrides.yaml", "logs/version_0/metrics.csv"} <= set(before)
    capsys.readouterr()

    assert _main([*COMMON, f"ckpt_path={last}"]) == 0
    out = capsys.readouterr().out
    assert _runs(tmp_path) == [run], "the resumed run wrote into a new folder"
    surrogate = Surrogate.load(run / "surrogate.safetensors")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 30 and surrogate.info["summary"]["epochs"] == 30
    assert summary["resumed"] == {"checkpoint": str(last), "folder": str(run), "earlier_files": str(run / "before_resume1")}
    assert f"resumed from {last} in its run folder {run}" in out and f"outputs in {run}" in out

    # nothing of the interrupted run is lost: each file is where it was, or (when the resumed
    # fit rewrites it) kept under before_resume1/, and the log continues the earlier one
    after = _files(run)
    for name, content in before.items():
        if name.endswith(".log"):
            assert after[name].startswith(content) and len(after[name]) > len(content), name
        elif name == "config.yaml" or name.startswith("checkpoints/"):
            assert after[f"before_resume1/{name}"] == content, name
        else:
            assert after[name] == content, name
    assert "ckpt_path" in after[".hydra/resume1/overrides.yaml"].decode()
    assert "fitted to function quartic" in after["train.log"].decode()


def test_a_checkpoint_outside_a_run_folder_or_an_explicit_folder_writes_where_told(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    first = tmp_path / "first"
    assert _main([*COMMON, f"hydra.run.dir={first}"]) == 0
    elsewhere = tmp_path / "elsewhere"
    before = _files(first)
    assert _main([*COMMON, f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}", "trainer.max_epochs=40",
                  f"hydra.run.dir={elsewhere}"]) == 0
    assert _files(first) == before  # the explicit folder wins; the first run is untouched
    assert Surrogate.load(elsewhere / "surrogate.safetensors").info["summary"]["epochs"] == 40
    assert "resumed" not in json.loads((elsewhere / "summary.json").read_text())
    capsys.readouterr()


@pytest.mark.parametrize("given", ["folder", "surrogate"])
def test_resume_from_a_folder_or_a_surrogate_file_says_what_to_give(tmp_path, monkeypatch, capsys, given):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    assert _main([*COMMON, "logger=none", f"hydra.run.dir={run}"]) == 0
    before = _files(run)
    capsys.readouterr()
    path = run if given == "folder" else run / "surrogate.safetensors"
    assert _main([*COMMON, f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'again'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    expected = "is a folder; give a Lightning checkpoint file" if given == "folder" else "is a surrogate file"
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert str(run / "checkpoints" / "last.ckpt") in err[0]
    assert _files(run) == before
    np.testing.assert_array_equal(Surrogate.load(run).predict(np.zeros((1, 2))),
                                  Surrogate.load(run / "surrogate.safetensors").predict(np.zeros((1, 2))))
