"""Shared fixtures: compose the package's Hydra configs the way the entry points do."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest
import torch

# Test problems are tiny: one thread is as fast, and immune to a busy machine's contention.
torch.set_num_threads(1)

# A fit of about a second: enough to exercise every stage, not to be accurate.
FAST = [
    "debug=fast",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture
def compose_config():
    """compose_config(name, overrides) → DictConfig, as the CLI would see it."""

    from surrogates.config import compose_config

    return compose_config


def load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` (the benchmarks are scripts, not a package) as module ``name``."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_command(name: str, args: Sequence[str]) -> int:
    """``surrogates-<name> *args`` in this process, through the console script's entry point (Hydra's
    real ``main``: its argument parsing, composition and error report); the exit code, 0 when it returns."""
    main = importlib.import_module(f"surrogates.cli.{name}").main
    argv = sys.argv
    sys.argv = [f"surrogates-{name}", *args]
    try:
        main()
    except SystemExit as exited:
        return 0 if exited.code is None else exited.code
    finally:
        sys.argv = argv
    return 0
