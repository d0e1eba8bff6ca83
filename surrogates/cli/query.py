"""``surrogates-query``: derivatives of a fitted surrogate at points from a file or a grid."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from surrogates.cli.common import load_or_train, reported_errors, set_threads
from surrogates.console import show_progress_bar
from surrogates.fitting.files import read_points
from surrogates.fitting.predict import grid_points, query
from surrogates.io import write_json, write_with
from surrogates.surrogate import ExtrapolationWarning, check_extrapolation_mode


def _csv_columns(surrogate, X: np.ndarray, results: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """Per-point columns for the CSV: inputs, then every quantity, flattened row-major.

    Hessians get all d×d entries (both mixed partials, equal up to rounding), named
    ``d2{output}/d{x_i}/d{x_j}`` in the order of the .npz array ``hessian[n, (o,) i, j]``.
    """
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
        elif quantity == "hessian":
            names += [f"d2{o}/d{xi}/d{xj}" for o in outputs for xi in inputs for xj in inputs]
        else:
            raise ValueError(f"no CSV columns defined for quantity {quantity!r}")
        columns.append(array.reshape(len(X), -1))
    if sum(c.shape[1] for c in columns) != len(names):
        raise RuntimeError(f"{len(names)} CSV column names for {sum(c.shape[1] for c in columns)} columns")
    return names, np.concatenate(columns, axis=1)


def _write_csv(path: Path, names: list[str], table: np.ndarray) -> None:
    """A CSV with every number in its shortest form that reads back to the same float64
    (Python's ``repr``: at most 17 significant digits, ``0.1`` not ``1.000000000000000056e-01``)."""
    with open(path, "w", newline="") as f:
        f.write(",".join(names) + "\n")
        for row in np.asarray(table, dtype=np.float64).tolist():
            f.write(",".join(map(repr, row)) + "\n")


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
    extrapolation = cfg.get("extrapolation", "warn")
    if isinstance(extrapolation, float) and np.isnan(extrapolation):
        extrapolation = "nan"  # the command line's extrapolation=nan arrives as the float NaN
    extrapolation = check_extrapolation_mode(extrapolation)
    trainer = instantiate(cfg.trainer, enable_progress_bar=show_progress_bar(cfg.trainer.get("enable_progress_bar")))
    with warnings.catch_warnings():
        # "warn": the summary carries the message and main prints it on stderr, as one line
        warnings.simplefilter("ignore", ExtrapolationWarning)
        results = query(surrogate, X, list(cfg.quantities), trainer=trainer, batch_size=cfg.batch_size,
                        extrapolation=extrapolation)
    inside = surrogate.in_domain(X)
    summary = {
        "surrogate": repr(surrogate),
        "points": int(len(X)),
        "outside_training_domain": int((~inside).sum()),
        "extrapolation": extrapolation,
        "extrapolation_message": surrogate.extrapolation_message(X),
        "quantities": {q: list(a.shape) for q, a in results.items()},
        "files": {},
        "writer": trainer.is_global_zero,
    }
    if not trainer.is_global_zero:
        return summary  # DDP: every process holds the whole result; only global rank 0 writes it

    files = {"npz": output_dir / "query.npz", "csv": output_dir / "query.csv"}
    write_with(files["npz"], lambda p: np.savez(p, X=X, in_domain=inside, **results))
    names, table = _csv_columns(surrogate, X, results)
    write_with(files["csv"], lambda p: _write_csv(p, names, table))
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
        done = "NaN in the results" if summary["extrapolation"] == "nan" else "extrapolated"
        print(f" ({summary['outside_training_domain']} outside the training domain: {done})", end="")
    print()
    if summary["extrapolation_message"] and summary["extrapolation"] == "warn":
        print(f"warning: {summary['extrapolation_message']} (extrapolation=nan gives NaN there, "
              "extrapolation=error refuses)", file=sys.stderr)
    for quantity, shape in summary["quantities"].items():
        print(f"  {quantity:<20} {tuple(shape)}")
    for kind, path in summary["files"].items():
        print(f"  {kind:<20} {path}")


if __name__ == "__main__":
    main()
