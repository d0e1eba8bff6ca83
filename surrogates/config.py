"""The package's Hydra configs: their schemas, and :func:`compose_config` outside a command.

The YAML files ship inside the package (``surrogates.configs``, from the top-level
``configs/`` folder), so composition works from an installed wheel as from a checkout.

The YAML files hold the values; the dataclasses below hold the *types*, registered in Hydra's
ConfigStore and named first in the YAML's defaults lists (``train_schema``, ``model/mlp_schema``).
A value of the wrong type (``model.width=abc``) is then refused once, at composition, with the
key it belongs to — whether the config comes from a command line, a preset or a Python
``overrides`` list — instead of by hand checks in the code that consumes it. Ranges (positive,
non-negative) stay with that code, which is also called from Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.initialize import get_gh_backup, restore_gh_from_backup
from omegaconf import MISSING


@dataclass
class ModelSchema:
    """Types of ``configs/model/*.yaml`` (the arguments of ``SurrogateModule``)."""

    _target_: str = MISSING
    width: int = MISSING
    depth: int = MISSING
    activation: str = MISSING
    dtype: str = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING
    schedule: str = MISSING
    final_lr_fraction: float = MISSING
    polish_epochs: int = MISSING
    polish_iterations: int = MISSING
    polish_tolerance: float = MISSING
    polish_patience: int = MISSING
    polish_objective: str = MISSING
    prior_weight: float = MISSING
    gradient_weight: float = MISSING


@dataclass
class EnsembleSchema:
    size: int = MISSING
    bootstrap: bool = MISSING


@dataclass
class ActiveSchema:
    rounds: int = MISSING
    batch: int = MISSING
    candidates_per_pick: int = MISSING


@dataclass
class TrainSchema:
    """Types of ``configs/train.yaml``; the groups without a schema (data sources, Lightning's
    trainer, callbacks, loggers) are checked by the classes their ``_target_`` names."""

    seed: int = MISSING
    threads: Optional[int] = MISSING
    ckpt_path: Optional[str] = MISSING
    paths: Any = MISSING
    ensemble: EnsembleSchema = field(default_factory=EnsembleSchema)
    active: ActiveSchema = field(default_factory=ActiveSchema)
    model: ModelSchema = field(default_factory=ModelSchema)
    data: Any = MISSING
    trainer: Any = MISSING
    callbacks: Any = MISSING
    logger: Any = MISSING


def register_schemas() -> None:
    """Put the schemas in Hydra's ConfigStore (idempotent; done on importing this module)."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainSchema)
    store.store(group="model", name="mlp_schema", node=ModelSchema)


register_schemas()


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
