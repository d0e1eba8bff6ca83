"""``surrogates-critical``: critical points of a fitted surrogate, as configured in ``configs/critical.yaml``.

Writes ``critical_points.json``, ``critical_points.csv`` and figures into the run folder,
prints a table of the points and the folder. Without ``checkpoint`` it first fits the
default surrogate (the ``train`` config with ``train_overrides``) into ``<run folder>/train``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from surrogates.cli.common import reported_errors, set_threads
from surrogates.critical import CriticalPointReport, find_critical_points
from surrogates.critical_plots import write_figures
from surrogates.io import write_json
from surrogates.training import SURROGATE_FILE, load_or_train

JSON_FILE = "critical_points.json"
CSV_FILE = "critical_points.csv"


def run(cfg: DictConfig, output_dir: str | Path) -> dict[str, Any]:
    """Find, classify and export the critical points of the configured surrogate.

    Args:
        cfg: A composed ``critical`` config.
        output_dir: Folder for the JSON, CSV and figures (created if missing).

    Returns:
        The JSON document written (the report's dict plus ``checkpoint`` and ``files``).

    Raises:
        ValueError: The surrogate is not scalar.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    overrides = OmegaConf.to_container(cfg.train_overrides, resolve=True)
    surrogate = load_or_train(cfg.checkpoint, output_dir, overrides)
    checkpoint = str(cfg.checkpoint or output_dir / "train" / SURROGATE_FILE)
    if surrogate.out_dim != 1:
        raise ValueError(f"critical points need a scalar surrogate; {checkpoint} has {surrogate.out_dim} outputs")
    settings = OmegaConf.to_container(cfg.search, resolve=True)
    report: CriticalPointReport = find_critical_points(surrogate.model, surrogate.lower, surrogate.upper, **settings)
    files = {"json": output_dir / JSON_FILE, "csv": output_dir / CSV_FILE}
    report.write_csv(files["csv"])
    if cfg.figures:
        files.update(write_figures(surrogate, report, output_dir))
    document = {
        "checkpoint": checkpoint,
        "input_names": surrogate.input_names,
        **report.to_dict(),
        "files": {name: str(path) for name, path in files.items()},
    }
    write_json(files["json"], document)
    print(report.table())
    print(f"outputs in {output_dir}")
    return document


@hydra.main(version_base="1.3", config_path="pkg://surrogates.configs", config_name="critical")
def main(cfg: DictConfig) -> None:
    with reported_errors():
        set_threads(cfg.threads)
        run(cfg, output_dir=HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    main()
