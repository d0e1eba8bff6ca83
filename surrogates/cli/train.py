"""``surrogates-train``: fit a surrogate as configured in ``configs/train.yaml``."""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

import surrogates.config  # noqa: F401  (registers train_schema, which configs/train.yaml names)
from surrogates.cli.common import format_summary, reported_errors, set_threads
from surrogates.console import report
from surrogates.fitting.active import active_train
from surrogates.fitting.train import train


def run(cfg: DictConfig, output_dir: str) -> dict:
    """Train (actively sampling when ``active.rounds`` > 0), report a short summary and the
    output folder (:func:`surrogates.console.report`: console and the run's ``train.log``),
    return the summary."""
    if cfg.active.rounds > 0:
        summary = active_train(
            cfg, instantiate(cfg.data.source), output_dir, rounds=cfg.active.rounds, batch=cfg.active.batch,
            candidates_per_pick=cfg.active.candidates_per_pick, log=rank_zero_only(report),
        ).summary
    else:
        summary = train(cfg, output_dir=output_dir).summary
    if rank_zero_only.rank == 0:  # under DDP every process gets here; one report is enough
        report(format_summary(summary))
        report(f"outputs in {output_dir}")
    return summary


@hydra.main(version_base="1.3", config_path="pkg://surrogates.configs", config_name="train")
def main(cfg: DictConfig) -> None:
    with reported_errors():
        set_threads(cfg.threads)
        run(cfg, output_dir=HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    main()
