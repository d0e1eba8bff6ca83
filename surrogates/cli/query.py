"""``surrogates-query``: derivatives of a fitted surrogate at points from a file or a grid, and
its integrals over a region (the ``integrate`` section, :mod:`surrogates.cli.integrals`)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import surrogates.config  # noqa: F401  (registers query_schema, which configs/query.yaml names)
from surrogates.cli.common import box_corner, load_or_train, reported_errors, set_threads
from surrogates.cli.integrals import (
    format_integral,
    integral_summary,
    region_from_config,
)
from surrogates.console import report, show_progress_bar, warn
from surrogates.errors import InputError
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
        elif quantity in ("jacobian_determinant", "log_abs_det_jacobian", "divergence"):
            names.append(quantity)
        elif quantity == "curl" and len(inputs) == 3:  # component i: ∂_j f_k − ∂_k f_j, (i, j, k) cyclic
            names += [f"d{outputs[(i + 2) % 3]}/d{inputs[(i + 1) % 3]}-d{outputs[(i + 1) % 3]}/d{inputs[(i + 2) % 3]}"
                      for i in range(3)]
        elif quantity == "curl":  # entry [i, j] = ∂_i f_j − ∂_j f_i
            names += [f"d{oj}/d{xi}-d{oi}/d{xj}" for xi, oi in zip(inputs, outputs) for xj, oj in zip(inputs, outputs)]
        else:
            raise InputError(f"no CSV columns defined for quantity {quantity!r}")
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
    """Load (or train) the surrogate, query it, integrate it, write query.npz / query.csv /
    integrals.json / figures, report what was written (rank 0 of a multi-process run only) and
    return a summary."""
    output_dir = Path(output_dir)
    surrogate = load_or_train(cfg.checkpoint, output_dir, OmegaConf.to_container(cfg.train_overrides, resolve=True))
    region = region_from_config(cfg.integrate, surrogate)  # a bad region fails before any work
    quantities = list(cfg.quantities)
    if not quantities and region is None:
        raise InputError("nothing to compute: quantities=[] and no integrate.region")
    extrapolation = check_extrapolation_mode(cfg.extrapolation)
    integral = None if region is None else integral_summary(surrogate, region, cfg.integrate, extrapolation)
    summary = {
        "surrogate": repr(surrogate),
        "points": 0,
        "outside_training_domain": 0,
        "extrapolation": extrapolation,
        "extrapolation_message": None,
        "quantities": {},
        "integral": integral,
        "files": {},
        "writer": True,
    }
    files: dict[str, Path] = {}
    if quantities:
        if cfg.points is not None:
            X = read_points(cfg.points, surrogate.input_names, cfg.points_key)
        else:
            lower = box_corner(cfg.grid.lower, surrogate.lower, "grid.lower")
            upper = box_corner(cfg.grid.upper, surrogate.upper, "grid.upper")
            counts = OmegaConf.to_object(cfg.grid.counts) if OmegaConf.is_list(cfg.grid.counts) else cfg.grid.counts
            X = grid_points(lower, upper, counts)
        trainer = instantiate(cfg.trainer, enable_progress_bar=show_progress_bar(cfg.trainer.get("enable_progress_bar")))
        with warnings.catch_warnings():
            # "warn": the summary carries the message and main prints it on stderr, as one line
            warnings.simplefilter("ignore", ExtrapolationWarning)
            results = query(surrogate, X, quantities, trainer=trainer, batch_size=cfg.batch_size,
                            extrapolation=extrapolation)
        inside = surrogate.in_domain(X)
        summary.update(
            points=int(len(X)),
            outside_training_domain=int((~inside).sum()),
            extrapolation_message=surrogate.extrapolation_message(X),
            quantities={q: list(a.shape) for q, a in results.items()},
            writer=trainer.is_global_zero,
        )
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
    if integral is not None:
        files["integrals"] = write_json(output_dir / "integrals.json", integral)
    summary["files"] = {k: str(v) for k, v in files.items()}
    write_json(output_dir / "query.json", {k: v for k, v in summary.items() if k != "writer"})
    _report_summary(summary)
    return summary


def _report_summary(summary: dict[str, Any]) -> None:
    """What was queried and where it went (:func:`~surrogates.console.report`: console and the
    run's ``query.log``); extrapolated points as a warning (stderr and the log)."""
    headline = f"{summary['surrogate']}: {summary['points']} points"
    if summary["outside_training_domain"]:
        done = "NaN in the results" if summary["extrapolation"] == "nan" else "extrapolated"
        headline += f" ({summary['outside_training_domain']} outside the training domain: {done})"
    if summary["extrapolation_message"] and summary["extrapolation"] == "warn":
        warn(f"{summary['extrapolation_message']} (extrapolation=nan gives NaN there, extrapolation=error refuses)")
    lines = [headline] if summary["quantities"] else [summary["surrogate"]]
    integral = summary["integral"]
    if integral is not None:
        lines.append(f"  {format_integral(integral)}")
        if integral["extrapolation_message"] and integral["extrapolation"] == "warn":
            warn(f"{integral['extrapolation_message']} (extrapolation=nan gives a NaN integral, extrapolation=error refuses)")
    lines += [f"  {quantity:<20} {tuple(shape)}" for quantity, shape in summary["quantities"].items()]
    lines += [f"  {kind:<20} {path}" for kind, path in summary["files"].items()]
    report("\n".join(lines))


@hydra.main(version_base="1.3", config_path="pkg://surrogates.configs", config_name="query")
def main(cfg: DictConfig) -> None:
    with reported_errors():
        set_threads(cfg.threads)
        run(cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    main()
