"""Shared fixtures: compose the package's Hydra configs the way the entry points do."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_module

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

    def _compose(config_name: str, overrides: list[str] = ()):
        with initialize_config_module(config_module="surrogates.configs", version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides))

    return _compose
