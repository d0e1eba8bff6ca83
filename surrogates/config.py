"""The package's Hydra configs, composed outside a command: :func:`compose_config`.

The YAML files ship inside the package (``surrogates.configs``, from the top-level
``configs/`` folder), so composition works from an installed wheel as from a checkout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.initialize import get_gh_backup, restore_gh_from_backup


def compose_config(config_name: str, overrides: Sequence[str] = ()) -> Any:
    """Compose one of the package's Hydra configs (``train``, ``query``, …) with overrides.

    Works inside a running Hydra app too (``surrogates-query`` composing the default ``train``
    config): the app's global Hydra state is set aside and restored afterwards.
    """
    running_app = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="surrogates.configs", version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides))
    finally:
        restore_gh_from_backup(running_app)
