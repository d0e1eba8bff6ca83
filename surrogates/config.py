"""The package's Hydra configs: their schemas, and :func:`compose_config` outside a command.

The YAML files ship inside the package (``surrogates.configs``, from the top-level
``configs/`` folder), so composition works from an installed wheel as from a checkout.

The YAML files hold the values; the dataclasses below hold the *types*, registered in Hydra's
ConfigStore and named first in the YAML's defaults lists (``train_schema``, ``model/mlp_schema``,
``query_schema``, ``critical_schema``, ``landscape_schema``). A value of the wrong type
(``model.width=abc``, ``spectrum.k=abc``) is then refused once, at composition, with the key it
belongs to — whether the config comes from a command line, a preset or a Python ``overrides``
list — instead of by hand checks in the code that consumes it. Ranges (positive, odd,
non-negative) stay with that code, which is also called from Python.

``Any`` marks what a schema cannot type: ``_target_`` mappings (checked by the class they name)
and unions with a container in them (``grid.counts``: a number or a list). The schemas are
registered on importing this module, so every command module imports it before it composes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, List, Optional, Union

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


@dataclass
class GridSchema:
    counts: Any = MISSING  # one number, or a list with one per input
    lower: Any = MISSING   # null, one number for every input, or a list with one per input
    upper: Any = MISSING


@dataclass
class IntegrateSchema:
    region: Optional[str] = MISSING
    lower: Any = MISSING   # box corners as grid.lower / grid.upper
    upper: Any = MISSING
    center: Optional[List[float]] = MISSING
    radius: Optional[float] = MISSING
    # rows untyped: OmegaConf 2.3 refuses ints merged into List[List[float]] (omegaconf#1054), and
    # [[0,0],[1,0],[0,1]] is how a simplex is written
    vertices: Optional[List[Any]] = MISSING
    points: int = MISSING
    replicates: int = MISSING
    seed: int = MISSING
    sampler: str = MISSING


@dataclass
class QuerySchema:
    """Types of ``configs/query.yaml``; Lightning's ``trainer`` is checked by the class its
    ``_target_`` names."""

    checkpoint: Optional[str] = MISSING
    train_overrides: List[str] = MISSING
    points: Optional[str] = MISSING
    points_key: str = MISSING
    grid: GridSchema = field(default_factory=GridSchema)
    quantities: List[str] = MISSING
    integrate: IntegrateSchema = field(default_factory=IntegrateSchema)
    extrapolation: str = MISSING  # a str field also turns the command line's extrapolation=nan (a float) into "nan"
    threads: Optional[int] = MISSING
    batch_size: int = MISSING
    plot: bool = MISSING
    trainer: Any = MISSING


@dataclass
class SearchSchema:
    starts: int = MISSING
    seed: int = MISSING
    max_iterations: int = MISSING
    gradient_tol: float = MISSING
    dedup_tol: float = MISSING
    degenerate_rtol: float = MISSING
    degenerate_merge_tol: float = MISSING
    box_margin: float = MISSING
    chunk_size: Optional[int] = MISSING


@dataclass
class RefineSchema:
    function: Optional[str] = MISSING
    samples: int = MISSING
    radius: float = MISSING
    starts: int = MISSING
    train_overrides: List[str] = MISSING


@dataclass
class BasinsSchema:
    enabled: bool = MISSING
    points: int = MISSING
    replicates: int = MISSING
    seed: int = MISSING
    match_tol: float = MISSING
    resolution: int = MISSING


@dataclass
class CriticalSchema:
    """Types of ``configs/critical.yaml``."""

    checkpoint: Optional[str] = MISSING
    train_overrides: List[str] = MISSING
    threads: Optional[int] = MISSING
    search: SearchSchema = field(default_factory=SearchSchema)
    refine: RefineSchema = field(default_factory=RefineSchema)
    basins: BasinsSchema = field(default_factory=BasinsSchema)
    figures: bool = MISSING


@dataclass
class NetworkSchema:
    model: Any = MISSING  # a _target_ mapping (any importable nn.Module) or null
    state_dict: Optional[str] = MISSING
    state_dict_key: Optional[str] = MISSING
    state_dict_prefix: Optional[str] = MISSING
    archive: Optional[str] = MISSING
    surrogate: Optional[str] = MISSING
    compare_state_dict: Optional[str] = MISSING


@dataclass
class ExampleSchema:
    n_samples: int = MISSING
    steps: int = MISSING


@dataclass
class LandscapeDataSchema:
    source: Any = MISSING  # a _target_ mapping, a .npz/.npy path or null
    targets: Optional[str] = MISSING
    inputs_key: str = MISSING
    targets_key: str = MISSING
    batch_size: Optional[int] = MISSING


@dataclass
class HessianSchema:
    params: Any = MISSING  # null, one name or glob, or a list of them
    dtype: Optional[str] = MISSING
    cache_graphs: Union[bool, str] = MISSING  # true | false | auto
    mode: str = MISSING


@dataclass
class SpectrumSchema:
    k: int = MISSING
    max_iter: int = MISSING
    tol: Optional[float] = MISSING
    refine: bool = MISSING


@dataclass
class TraceSchema:
    method: str = MISSING
    num_probes: int = MISSING
    num_products: int = MISSING


@dataclass
class DensitySchema:
    num_probes: int = MISSING
    num_steps: int = MISSING
    deflate: bool = MISSING


@dataclass
class LayersSchema:
    enabled: bool = MISSING
    max_iter: int = MISSING
    trace_probes: int = MISSING


@dataclass
class ExactSchema:
    max_params: int = MISSING


@dataclass
class CriticalVerdictSchema:
    gradient_tol: float = MISSING
    negative_rtol: float = MISSING


@dataclass
class SlicesSchema:
    points_1d: int = MISSING
    points_2d: int = MISSING
    span: float = MISSING
    eigen_span: Optional[float] = MISSING
    path_points: int = MISSING
    path_extend: float = MISSING


@dataclass
class LandscapeSchema:
    """Types of ``configs/landscape.yaml``; the ``loss`` and a ``network.model`` or ``data.source``
    mapping are checked by the classes their ``_target_`` names."""

    seed: int = MISSING
    threads: Optional[int] = MISSING
    progress: Optional[bool] = MISSING
    figures: bool = MISSING
    network: NetworkSchema = field(default_factory=NetworkSchema)
    example: ExampleSchema = field(default_factory=ExampleSchema)
    data: LandscapeDataSchema = field(default_factory=LandscapeDataSchema)
    loss: Any = MISSING
    hessian: HessianSchema = field(default_factory=HessianSchema)
    spectrum: SpectrumSchema = field(default_factory=SpectrumSchema)
    trace: TraceSchema = field(default_factory=TraceSchema)
    density: DensitySchema = field(default_factory=DensitySchema)
    layers: LayersSchema = field(default_factory=LayersSchema)
    exact: ExactSchema = field(default_factory=ExactSchema)
    critical: CriticalVerdictSchema = field(default_factory=CriticalVerdictSchema)
    slices: SlicesSchema = field(default_factory=SlicesSchema)


def register_schemas() -> None:
    """Put the schemas in Hydra's ConfigStore (idempotent; done on importing this module)."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainSchema)
    store.store(group="model", name="mlp_schema", node=ModelSchema)
    store.store(name="query_schema", node=QuerySchema)
    store.store(name="critical_schema", node=CriticalSchema)
    store.store(name="landscape_schema", node=LandscapeSchema)


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
