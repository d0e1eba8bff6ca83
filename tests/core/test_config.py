"""Every config group composes, every object in it instantiates from its _target_, and a value
of the wrong type is refused at composition (the schemas in surrogates/config.py), naming its key."""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import pytest
from conftest import run_command
from hydra.utils import instantiate
from omegaconf import OmegaConf

from surrogates import config
from surrogates.fitting.datamodule import SurrogateDataModule
from surrogates.fitting.module import SurrogateModule

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def test_default_train_config_composes(compose_config):
    cfg = compose_config("train")
    assert cfg.data.source.function == "quartic"
    assert cfg.trainer.inference_mode is False  # derivatives need autograd in every loop
    assert OmegaConf.select(cfg, "model._target_") == "surrogates.fitting.module.SurrogateModule"


@pytest.mark.parametrize("option", _options("data"))
def test_every_data_option_composes(compose_config, option):
    cfg = compose_config("train", [f"data={option}"])
    assert cfg.data._target_ == "surrogates.fitting.datamodule.SurrogateDataModule"


@pytest.mark.parametrize("option", ["quad2", "quartic", "sincos", "vec2", "cubic", "mixed10", "rosenbrock"])
def test_function_data_options_instantiate(compose_config, option):
    dm = instantiate(compose_config("train", [f"data={option}"]).data)
    assert isinstance(dm, SurrogateDataModule)
    assert dm.source.function.name == option


@pytest.mark.parametrize("option", _options("trainer"))
def test_every_trainer_option_instantiates(compose_config, option, tmp_path):
    cfg = compose_config("train", [f"trainer={option}", f"paths.output_dir={tmp_path}"])
    if option == "gpu":
        assert cfg.trainer.accelerator == "gpu"  # no GPU here: composing is all we can check
        return
    if option == "ddp":
        cfg.trainer.accelerator = "cpu"
    trainer = instantiate(cfg.trainer, logger=False)
    assert isinstance(trainer, L.Trainer)
    assert trainer.max_epochs == cfg.trainer.max_epochs


@pytest.mark.parametrize("group", ["callbacks", "logger"])
def test_callbacks_and_loggers_instantiate(compose_config, group, tmp_path):
    for option in _options(group):
        if option == "tensorboard":
            pytest.importorskip("tensorboard")
        cfg = compose_config("train", [f"{group}={option}", f"paths.output_dir={tmp_path}"])
        for node in cfg[group].values():
            assert instantiate(node) is not None


def test_model_instantiates_with_data_dimensions(compose_config):
    cfg = compose_config("train", ["model.width=16", "model.activation=silu"])
    module = instantiate(cfg.model, in_dim=3, out_dim=2)
    assert isinstance(module, SurrogateModule)
    assert module.net.width == 16 and module.net.activation.name == "silu"
    # only primitives are saved, so a checkpoint loads without Hydra
    assert all(isinstance(v, (int, float, str, bool)) for v in module.hparams.values())


def test_module_defaults_are_the_default_model_config(compose_config):
    """SurrogateModule(...) built in Python must be the model that surrogates-train builds.

    The defaults live in configs/model/mlp.yaml and in the constructor's signature; when the
    default model changed (3x64 to 2x96) both had to change together.
    """
    import inspect

    model = OmegaConf.to_container(compose_config("train").model)
    model.pop("_target_")
    signature = inspect.signature(SurrogateModule.__init__).parameters
    defaults = {name: p.default for name, p in signature.items() if p.default is not inspect.Parameter.empty}
    assert model == defaults


@pytest.mark.parametrize("option", _options("model"))
def test_every_model_option_instantiates(compose_config, option):
    cfg = compose_config("train", [f"model={option}"])
    module = instantiate(cfg.model, in_dim=2, out_dim=1)
    assert module.net.depth == cfg.model.depth and module.net.width == cfg.model.width


@pytest.mark.parametrize("option", _options("experiment") + _options("debug"))
def test_experiment_and_debug_configs_compose(compose_config, option):
    group = "experiment" if (CONFIGS / "experiment" / f"{option}.yaml").exists() else "debug"
    cfg = compose_config("train", [f"{group}={option}"])
    assert cfg.trainer.max_epochs > 0


def test_command_line_style_overrides(compose_config):
    cfg = compose_config("train", ["data=mixed10", "model.width=256", "trainer.max_epochs=50"])
    assert (cfg.data.source.function, cfg.model.width, cfg.trainer.max_epochs) == ("mixed10", 256, 50)


def test_unknown_keys_and_options_are_rejected(compose_config):
    from hydra.errors import ConfigCompositionException, MissingConfigException

    with pytest.raises(ConfigCompositionException, match="model.widht"):
        compose_config("train", ["model.widht=3"])
    with pytest.raises(MissingConfigException, match="quartc"):
        compose_config("train", ["data=quartc"])


# ---------------------------------------------------------------------- schemas: types at composition

SCHEMAS = {"train": config.TrainSchema, "query": config.QuerySchema, "critical": config.CriticalSchema,
           "landscape": config.LandscapeSchema}


def test_every_command_has_a_schema():
    assert sorted(SCHEMAS) == _options(".")


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_command_config_composes_typed_by_its_schema(compose_config, name):
    cfg = compose_config(name)
    assert OmegaConf.get_type(cfg) is SCHEMAS[name]
    assert OmegaConf.missing_keys(cfg) == set()  # the YAML gives every field of the schema a value


#: (config, override, the key the error must name): ints, floats, bools, list elements, a union
WRONG_TYPES = [
    ("train", "model.width=abc", "model.width"),
    ("query", "batch_size=abc", "batch_size"),
    ("query", "integrate.center=[0,abc]", "integrate.center[1]"),
    ("query", "plot=maybe", "plot"),
    ("query", "integrate.radius=wide", "integrate.radius"),
    ("critical", "search.starts=abc", "search.starts"),
    ("critical", "search.gradient_tol=tiny", "search.gradient_tol"),
    ("critical", "basins.enabled=maybe", "basins.enabled"),
    ("critical", "threads=1.5", "threads"),
    ("landscape", "spectrum.k=abc", "spectrum.k"),
    ("landscape", "seed=1.5", "seed"),
    ("landscape", "slices.span=wide", "slices.span"),
    ("landscape", "hessian.cache_graphs=3", "hessian.cache_graphs"),
    ("landscape", "density.deflate=maybe", "density.deflate"),
]
WRONG_IDS = [override for _, override, _ in WRONG_TYPES]


@pytest.mark.parametrize("name, override, key", WRONG_TYPES, ids=WRONG_IDS)
def test_a_wrong_typed_value_is_refused_at_composition_naming_its_key(compose_config, name, override, key):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as refused:
        compose_config(name, [override])
    assert f"full_key: {key}\n" in f"{refused.value.__cause__}\n", refused.value.__cause__
    assert override in str(refused.value)


@pytest.mark.parametrize("name, override, key", WRONG_TYPES, ids=WRONG_IDS)
def test_the_command_refuses_a_wrong_typed_value_before_it_runs(name, override, key, tmp_path, capsys):
    """Through the console script's entry point: Hydra's report of the override, no traceback, no run folder."""
    code = run_command(name, [override, f"hydra.run.dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err, err
    assert f"Error merging override {override}" in err and re.search(rf"full_key: {re.escape(key)}$", err, re.M), err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "name, override, key, value",
    [
        ("query", "grid.counts=[100,50]", "grid.counts", [100, 50]),  # a number or a list
        ("query", "grid.counts=7", "grid.counts", 7),
        ("query", "grid.lower=[-1,0]", "grid.lower", [-1.0, 0.0]),
        ("query", "grid.lower=0.5", "grid.lower", 0.5),  # one number for every input
        ("query", "integrate.vertices=[[0,0],[1,0],[0,1]]", "integrate.vertices", [[0, 0], [1, 0], [0, 1]]),
        ("query", "extrapolation=nan", "extrapolation", "nan"),  # the command line's nan is a float
        ("query", "train_overrides=['data=sincos']", "train_overrides", ["data=sincos"]),
        ("critical", "search.chunk_size=256", "search.chunk_size", 256),
        ("critical", "refine.function=convex_sines", "refine.function", "convex_sines"),
        ("landscape", "hessian.cache_graphs=false", "hessian.cache_graphs", False),
        ("landscape", "hessian.params=[layers.0.*]", "hessian.params", ["layers.0.*"]),
        ("landscape", "hessian.params=layers.0.weight", "hessian.params", "layers.0.weight"),
        ("landscape", "network.model={_target_:torch.nn.Linear,in_features:2,out_features:1}", "network.model",
         {"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 1}),
        ("landscape", "data.source=data.npz", "data.source", "data.npz"),
        ("landscape", "loss={_target_:torch.nn.MSELoss}", "loss", {"_target_": "torch.nn.MSELoss"}),
        ("landscape", "slices.eigen_span=2", "slices.eigen_span", 2.0),
        ("landscape", "progress=true", "progress", True),
        ("landscape", "network.state_dict_prefix=null", "network.state_dict_prefix", None),  # as "" (no prefix)
    ],
)
def test_the_documented_forms_of_a_value_compose(compose_config, name, override, key, value):
    """What the YAML comments promise (a number or a list, a mapping or a path, ints for floats) passes."""
    got = OmegaConf.select(compose_config(name, [override]), key)
    got = OmegaConf.to_container(got) if OmegaConf.is_config(got) else got
    assert got == value and type(got) is type(value)
