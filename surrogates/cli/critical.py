"""``surrogates-critical``: critical points of a fitted surrogate, as configured in ``configs/critical.yaml``.

Writes ``critical_points.json``, ``critical_points.csv`` and figures into the run folder,
reports a table of the points and the folder (console and the run's ``critical.log``).
With ``basins.enabled`` it also maps the minima's basins of attraction
(:func:`surrogates.critical.flow.basins`): ``basins.json``, ``basins.png`` for two inputs,
and a one-line summary.
Without ``checkpoint`` it first fits the default surrogate (the ``train`` config with ``train_overrides``) into ``<run folder>/train``.
With ``refine.function`` (the black box) each in-domain point is zoomed in on
(:func:`surrogates.fitting.active.refine_critical_points`); the JSON then has a ``refined`` list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

import surrogates.config  # noqa: F401  (registers critical_schema, which configs/critical.yaml names)
from surrogates.cli.common import load_or_train, reported_errors, set_threads
from surrogates.console import report
from surrogates.critical.flow import basins
from surrogates.critical.plots import plot_basins_2d, write_figures
from surrogates.critical.refine import refine_critical_points
from surrogates.critical.report import CriticalPointReport
from surrogates.critical.search import find_critical_points
from surrogates.errors import InputError
from surrogates.fitting.functions import FUNCTIONS, get_function
from surrogates.fitting.train import SURROGATE_FILE
from surrogates.io import output_folder, write_json, write_with

JSON_FILE = "critical_points.json"
CSV_FILE = "critical_points.csv"
BASINS_FILE = "basins.json"
BASINS_FIGURE = "basins.png"


def black_box(spec: str, dim: int) -> Callable:
    """A registered test function's name, or a dotted import path, as a numpy callable."""
    if spec in FUNCTIONS:
        return get_function(spec, dim=dim).value
    from hydra.utils import get_method

    return get_method(spec)


def run(cfg: DictConfig, output_dir: str | Path) -> dict[str, Any]:
    """Find, classify and export the critical points of the configured surrogate.

    Args:
        cfg: A composed ``critical`` config.
        output_dir: Folder for the JSON, CSV and figures (created if missing).

    Returns:
        The JSON document written (the report's dict plus ``checkpoint`` and ``files``).

    Raises:
        InputError: The surrogate is not scalar.
    """
    output_dir = output_folder(output_dir)
    overrides = OmegaConf.to_container(cfg.train_overrides, resolve=True)
    surrogate = load_or_train(cfg.checkpoint, output_dir, overrides)
    checkpoint = str(cfg.checkpoint or output_dir / "train" / SURROGATE_FILE)
    if surrogate.out_dim != 1:
        raise InputError(f"critical points need a scalar surrogate; {checkpoint} has {surrogate.out_dim} outputs")
    settings = OmegaConf.to_container(cfg.search, resolve=True)
    points: CriticalPointReport = find_critical_points(surrogate.model, surrogate.lower, surrogate.upper, **settings)
    files = {"json": output_dir / JSON_FILE, "csv": output_dir / CSV_FILE}
    points.write_csv(files["csv"])
    if cfg.figures:
        files.update(write_figures(surrogate, points, output_dir))
    report(points.table())
    if cfg.basins.enabled:
        drained = basins(
            surrogate.model, surrogate.lower, surrogate.upper, minima=points, points=cfg.basins.points,
            seed=cfg.basins.seed, replicates=cfg.basins.replicates, match_tol=cfg.basins.match_tol,
            chunk_size=cfg.search.chunk_size,
        )
        files["basins"] = drained.write_json(output_dir / BASINS_FILE)
        if cfg.figures and surrogate.in_dim == 2:
            figure = plot_basins_2d(surrogate, drained, resolution=cfg.basins.resolution).figure
            files["basins_figure"] = write_with(output_dir / BASINS_FIGURE, lambda tmp: figure.savefig(tmp, dpi=120))
        report(drained.summary())
    document = {
        "checkpoint": checkpoint,
        "input_names": surrogate.input_names,
        **points.to_dict(),
        "files": {name: str(path) for name, path in files.items()},
    }
    if cfg.refine.function:
        zooms = refine_critical_points(
            black_box(cfg.refine.function, surrogate.in_dim), points.in_domain(), surrogate.lower, surrogate.upper,
            radius=cfg.refine.radius, samples=cfg.refine.samples, starts=cfg.refine.starts,
            overrides=OmegaConf.to_container(cfg.refine.train_overrides, resolve=True), seed=cfg.search.seed,
        )
        document["refined"] = [
            {"start": z.start.tolist(), "lower": z.lower.tolist(), "upper": z.upper.tolist(),
             "point": None if z.point is None else z.point.to_dict()}
            for z in zooms
        ]
    write_json(files["json"], document)
    report(f"outputs in {output_dir}")
    return document


@hydra.main(version_base="1.3", config_path="pkg://surrogates.configs", config_name="critical")
def main(cfg: DictConfig) -> None:
    with reported_errors():
        set_threads(cfg.threads)
        run(cfg, output_dir=HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    main()
