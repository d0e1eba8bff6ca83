"""Atomic writes: a write that fails or is killed halfway never damages the file it replaces."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import surrogates.surrogate as surrogate_module
from surrogates.io import write_json, write_with
from surrogates.model import MLP
from surrogates.surrogate import Surrogate


def _surrogate(seed: int) -> Surrogate:
    torch.manual_seed(seed)
    return Surrogate(MLP(2, 1, width=8, depth=2), ["a", "b"], ["f"], True, lower=[0, 0], upper=[1, 1])


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.startswith("."))


def test_a_surrogate_write_that_fails_halfway_leaves_the_previous_file(tmp_path, monkeypatch):
    path = _surrogate(0).save(tmp_path / "surrogate.safetensors")
    good = path.read_bytes()

    def crashing_save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:  # half a file, then the writer dies
            handle.write(b"\x00" * 100)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(surrogate_module, "save_file", crashing_save_file)
    with pytest.raises(OSError, match="simulated"):
        _surrogate(1).save(path)
    assert path.read_bytes() == good
    assert _leftovers(tmp_path) == []
    X = np.random.default_rng(0).uniform(size=(5, 2))
    np.testing.assert_array_equal(Surrogate.load(path).predict(X), _surrogate(0).predict(X))


def test_json_and_other_writers_that_fail_leave_the_previous_file(tmp_path):
    write_json(tmp_path / "summary.json", {"good": 1})
    with pytest.raises(TypeError):
        write_json(tmp_path / "summary.json", {"bad": object()})  # not JSON-serialisable, mid-write
    assert (tmp_path / "summary.json").read_text() == '{\n  "good": 1\n}\n'

    write_with(tmp_path / "query.npz", lambda p: np.savez(p, X=np.ones(3)))

    def failing(p: Path) -> None:
        p.write_bytes(b"PK partial")
        raise RuntimeError("plot failed (simulated)")

    with pytest.raises(RuntimeError, match="simulated"):
        write_with(tmp_path / "query.npz", failing)
    np.testing.assert_array_equal(np.load(tmp_path / "query.npz")["X"], np.ones(3))
    assert _leftovers(tmp_path) == []


KILLED_WRITER = """
import sys, time
from pathlib import Path
from surrogates.io import write_with

def slow(p):
    with open(p, "wb") as handle:
        handle.write(b"half a surrogate")
        handle.flush()
        print("writing", flush=True)
        time.sleep(60)

write_with(Path(sys.argv[1]), slow)
"""


def test_a_writer_killed_mid_write_leaves_the_previous_file(tmp_path):
    """SIGKILL runs no cleanup: the previous file survives; only a hidden temp file may remain."""
    path = _surrogate(0).save(tmp_path / "surrogate.safetensors")
    good = path.read_bytes()
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert path.read_bytes() == good
    assert all(name.startswith(".surrogate.safetensors.") for name in _leftovers(tmp_path))


# ------------------------------------------------------------------ permissions of the results


@pytest.fixture
def umask():
    """umask(mask): set the process umask for the test, restored afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_results_get_the_mode_a_plain_open_gives(tmp_path, umask, mask, expected):
    """0666 & ~umask like any file the user writes, not mkstemp's private 0600."""
    umask(mask)
    written = [
        write_json(tmp_path / "summary.json", {"good": 1}),
        _surrogate(0).save(tmp_path / "surrogate.safetensors"),
        write_with(tmp_path / "critical_points.csv", lambda p: p.write_text("kind\n")),
        write_with(tmp_path / "query.npz", lambda p: np.savez(p, X=np.ones(3))),
    ]
    with open(tmp_path / "plain.txt", "w") as handle:
        handle.write("for comparison")
    assert _mode(tmp_path / "plain.txt") == expected
    assert {path.name: _mode(path) for path in written} == {path.name: expected for path in written}
    write_json(tmp_path / "summary.json", {"good": 2})  # replacing a file: the same mode
    assert _mode(tmp_path / "summary.json") == expected
    assert _leftovers(tmp_path) == []


def test_a_training_run_writes_its_results_with_the_umask_mode(compose_config, tmp_path, umask):
    from conftest import FAST

    from surrogates.fitting.train import SUMMARY_FILE, SURROGATE_FILE, train

    umask(0o022)
    train(compose_config("train", [*FAST, "logger=none"]), output_dir=tmp_path / "run")
    for name in (SUMMARY_FILE, SURROGATE_FILE, "config.yaml"):
        assert _mode(tmp_path / "run" / name) == 0o644, name


def test_an_output_folder_below_a_file_is_an_output_error(tmp_path):
    from surrogates.io import OutputError, output_folder

    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(OutputError, match=r"output folder .*data\.csv/x cannot be created: .*data\.csv is a file, not a folder"):
        write_json(tmp_path / "data.csv" / "x" / "summary.json", {"good": 1})
    with pytest.raises(OutputError, match=r"output folder .*data\.csv cannot be created: it is a file, not a folder"):
        output_folder(tmp_path / "data.csv")
    assert output_folder(tmp_path / "new" / "run").is_dir()
    assert (tmp_path / "data.csv").read_text() == "a,b\n"
