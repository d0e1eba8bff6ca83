"""``surrogates-train``: fit a surrogate as configured in ``configs/train.yaml``."""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from surrogates.cli.common import reported_errors, set_threads
from surrogates.training import format_summary, train


def run(cfg: DictConfig, output_dir: str) -> dict:
    """Train, print a short summary and the output folder, return the summary."""
    result = train(cfg, output_dir=output_dir)
    if rank_zero_only.rank == 0:  # under DDP every process gets here; one report is enough
        print(format_summary(result.summary))
        print(f"outputs in {result.output_dir}")
    return result.summary


@hydra.main(version_base="1.3", config_path="pkg://surrogates.configs", config_name="train")
def main(cfg: DictConfig) -> None:
    with reported_errors():
        set_threads(cfg.threads)
        run(cfg, output_dir=HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    main()
