"""``_target_``s in the user's working directory (issue 16, item 7), through the installed
console scripts: a model class, a callback, a simulator in a module next to the data are
found without ``PYTHONPATH=.``, as ``python -m`` would find them.

The commands run as subprocesses in a scratch folder, with PYTHONPATH naming only this
checkout (so the package under test is imported, and the scratch folder is not on the path).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _command(name: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    script = BIN / name
    if not script.is_file():
        pytest.skip(f"console script {name} is not installed next to {sys.executable}")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_landscape_finds_a_model_class_in_the_working_directory(tmp_path):
    (tmp_path / "digitnet.py").write_text(textwrap.dedent("""\
        import torch

        class Net(torch.nn.Module):
            def __init__(self, hidden=6):
                super().__init__()
                self.a, self.b = torch.nn.Linear(4, hidden), torch.nn.Linear(hidden, 3)

            def forward(self, x):
                return self.b(torch.tanh(self.a(x)))
        """))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "digits.npz", x=rng.normal(size=(48, 4)).astype(np.float32), y=rng.integers(0, 3, 48))
    done = _command("surrogates-landscape", [
        "network.model={_target_:digitnet.Net,hidden:5}", "data.source=digits.npz", "figures=false", "threads=1",
        "spectrum.k=2", "trace.num_products=9", "density.num_probes=2", "density.num_steps=4",
        "slices.points_1d=5", "slices.points_2d=3", "hydra.run.dir=run",
    ], tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Error locating target" not in done.stderr
    assert "params: 43" in done.stdout  # 4·5 + 5 + 5·3 + 3: the local class, built with hidden=5
    assert (tmp_path / "run" / "landscape.json").is_file()


def test_train_finds_a_simulator_and_a_callback_in_the_working_directory(tmp_path):
    (tmp_path / "simulator.py").write_text(textwrap.dedent("""\
        import numpy as np

        def run(X):
            return np.sin(X[:, 0]) + X[:, 1] ** 2
        """))
    (tmp_path / "mycallbacks.py").write_text(textwrap.dedent("""\
        from pathlib import Path

        import lightning as L

        class Mark(L.Callback):
            def on_fit_end(self, trainer, module):
                Path("marked.txt").write_text(str(trainer.current_epoch))
        """))
    done = _command("surrogates-train", [
        "data=callable", "data.source.function=simulator.run", "data.source.lower=[0,0]", "data.source.upper=[1,1]",
        "data.source.n_samples=200", "+callbacks.mark._target_=mycallbacks.Mark", "debug=fast", "logger=none",
        "hydra.run.dir=run",
    ], tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "fitted to callable run" in done.stdout
    assert (tmp_path / "marked.txt").read_text() == "30"
    assert (tmp_path / "run" / "surrogate.safetensors").is_file()
