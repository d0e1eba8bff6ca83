"""Every config group composes, and every object in it instantiates from its _target_."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from surrogates.fitting.datamodule import SurrogateDataModule
from surrogates.fitting.module import SurrogateModule

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


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
