"""``surrogates-query``: derivatives of a fitted surrogate at points from a file or a grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from surrogates.cli.common import reported_errors, set_threads
from surrogates.data import read_points
from surrogates.io import write_json, write_with
from surrogates.query import grid_points, query
from surrogates.training import load_or_train


def _csv_columns(surrogate, X: np.ndarray, results: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """Per-point columns for the CSV: inputs, then every quantity that is a scalar or vector per point."""
    names, columns = list(surrogate.input_names), [X]
    outputs, inputs = surrogate.output_names, surrogate.input_names
    for quantity, array in results.items():
        if quantity == "value":
            names += outputs
        elif quantity == "laplacian":
            names += [f"laplacian_{o}" for o in outputs]
        elif quantity == "gradient":
            names += [f"d{outputs[0]}/d{x}" for x in inputs]
        elif quantity == "jacobian":
            names += [f"d{o}/d{x}" for o in outputs for x in inputs]
        elif quantity == "hessian_eigenvalues":
            names += [f"hessian_eigenvalue_{k}" for k in range(array.shape[-1])]
        else:
            continue  # matrices per point (Hessians) live in the .npz only
        columns.append(array.reshape(len(X), -1))
    return names, np.concatenate(columns, axis=1)


def run(cfg: DictConfig, output_dir: str | Path) -> dict[str, Any]:
    """Load (or train) the surrogate, query it, write query.npz / query.csv / figures, return a summary."""
    output_dir = Path(output_dir)
    surrogate = load_or_train(cfg.checkpoint, output_dir, OmegaConf.to_container(cfg.train_overrides, resolve=True))
    if cfg.points is not None:
        X = read_points(cfg.points, surrogate.input_names, cfg.points_key)
    else:
        lower = surrogate.lower if cfg.grid.lower is None else np.asarray(cfg.grid.lower, dtype=np.float64)
        upper = surrogate.upper if cfg.grid.upper is None else np.asarray(cfg.grid.upper, dtype=np.float64)
        counts = OmegaConf.to_object(cfg.grid.counts) if OmegaConf.is_list(cfg.grid.counts) else cfg.grid.counts
        X = grid_points(lower, upper, counts)
    trainer = instantiate(cfg.trainer)
    results = query(surrogate, X, list(cfg.quantities), trainer=trainer, batch_size=cfg.batch_size)
    inside = surrogate.in_domain(X)
    summary = {
        "surrogate": repr(surrogate),
        "points": int(len(X)),
        "outside_training_domain": int((~inside).sum()),
        "quantities": {q: list(a.shape) for q, a in results.items()},
        "files": {},
        "writer": trainer.is_global_zero,
    }
    if not trainer.is_global_zero:
        return summary  # DDP: every process holds the whole result; only global rank 0 writes it

    files = {"npz": output_dir / "query.npz", "csv": output_dir / "query.csv"}
    write_with(files["npz"], lambda p: np.savez(p, X=X, in_domain=inside, **results))
    names, table = _csv_columns(surrogate, X, results)
    write_with(files["csv"], lambda p: np.savetxt(p, table, delimiter=",", header=",".join(names), comments=""))
    if cfg.plot and surrogate.in_dim == 2 and surrogate.out_dim == 1:
        from surrogates.plots import plot_contour, plot_hessian_eigenvalues

        lower, upper = X.min(axis=0), X.max(axis=0)
        if np.all(upper > lower):
            ax = plot_contour(surrogate, lower, upper)
            files["contour"] = write_with(output_dir / "contour.png", lambda p: ax.figure.savefig(p, dpi=120))
            fig = plot_hessian_eigenvalues(surrogate, lower, upper)
            files["hessian_eigenvalues"] = write_with(output_dir / "hessian_eigenvalues.png", lambda p: fig.savefig(p, dpi=120))
    summary["files"] = {k: str(v) for k, v in files.items()}
    write_json(output_dir / "query.json", {k: v for k, v in summary.items() if k != "writer"})
    return summary


@hydra.main(version_base="1.3", config_path="pkg://surrogates.configs", config_name="query")
def main(cfg: DictConfig) -> None:
    with reported_errors():
        set_threads(cfg.threads)
        summary = run(cfg, HydraConfig.get().runtime.output_dir)
    if not summary["writer"]:
        return
    print(f"{summary['surrogate']}: {summary['points']} points", end="")
    if summary["outside_training_domain"]:
        print(f" ({summary['outside_training_domain']} outside the training domain: extrapolated)", end="")
    print()
    for quantity, shape in summary["quantities"].items():
        print(f"  {quantity:<20} {tuple(shape)}")
    for kind, path in summary["files"].items():
        print(f"  {kind:<20} {path}")


if __name__ == "__main__":
    main()
