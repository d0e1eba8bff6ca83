"""Derivative accuracy of `surrogates` against a Gaussian process and PyDelt, per the protocol.

Implements ``shared/protocol.md`` (development suite):

* functions quad2, quartic, sincos, vec2 (2-D, N = 2000) and mixed10 (10-D, N = 20000);
* noise 0 and 1 % (std = 0.01 · std of f over the samples), inputs uniform from
  ``numpy.random.default_rng(1)``, noise drawn after them from the same generator —
  drawn ONCE per (function, noise) with :class:`surrogates.fitting.sources.FunctionSource` and handed,
  identical, to every method;
* 500 test points uniform in the central 80 % of the box (``default_rng(2)``), metrics from
  :mod:`surrogates.fitting.metrics` (gradient, Hessian, mixed partials, Laplacian, Jacobian);
* fit and query time (wall clock, and process CPU time which is robust to other jobs on a
  shared machine when one thread is used), with the thread count;
* critical points of quartic: each found point's distance to the nearest exact one
  ((0,0) saddle, (±1,±1) minima), its kind, and spurious points.

Methods:

* ``surrogates`` — the library's default configuration: ``compose_config("train",
  ["data=<function>"])`` with the data source swapped for the shared arrays. The default
  holds out ``data.val_fraction`` of the N samples for validation; the table says how many
  samples it trained on (``train/val``).
* presets — ``--preset name=override,override,...`` (Hydra overrides on top of the default),
  each a method called ``name``.
* ``--seeds 0,1,2`` fits every surrogates method once per seed (initialisation and
  mini-batch order; the samples and the split stay the same) and adds a table of the mean
  and range over seeds: on noisy 2-D data single fits differ by up to 40 % between seeds,
  more than most configurations differ from each other.
* ``gp`` — scikit-learn GaussianProcessRegressor, kernel C·RBF(ARD) + White, normalised
  targets, hyperparameters by marginal likelihood; gradient and Hessian of the posterior mean
  in closed form (see :class:`GPModel`). Fitted on at most ``--gp-max-samples`` samples
  (the first ones, which are a uniform subsample since the inputs are i.i.d.).
* ``pydelt`` — PyDelt's ``MultivariateDerivatives`` with its ``SplineInterpolator``: one 1-D
  spline per (output, input) pair. Its Hessian has no mixed partials (they are zero by
  design), so its mixed-partial error is the true mixed partials' size.

Usage::

    python scripts/bench_accuracy.py                                 # everything (long: ~1 h+)
    python scripts/bench_accuracy.py --functions quartic --noise 0,0.01 --methods surrogates,gp
    python scripts/bench_accuracy.py --preset wide="model.width=256" --methods wide,gp
    python scripts/bench_accuracy.py --functions quartic --noise 0.01 --seeds 0,1,2 --methods surrogates
    python scripts/bench_accuracy.py --quick                         # smoke run, not the protocol
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from surrogates.fitting.metrics import derivative_errors, protocol_test_points
from surrogates.fitting.samples import Samples
from surrogates.fitting.sources import ArraySource, FunctionSource

#: Protocol table: function → number of training samples.
PROTOCOL_N = {"quad2": 2000, "quartic": 2000, "sincos": 2000, "mixed10": 20000, "vec2": 2000}
PROTOCOL_NOISE = (0.0, 0.01)
DATA_SEED = 1
#: Quick mode (a smoke test, NOT the protocol): fewer samples, tiny fits.
QUICK_N = 200
QUICK_SURROGATE_OVERRIDES = ["debug=fast"]
#: Exact critical points of quartic.
QUARTIC_CRITICAL = [(np.array([0.0, 0.0]), "saddle"), (np.array([1.0, 1.0]), "minimum"), (np.array([-1.0, -1.0]), "minimum")]
#: A found point farther than this from every exact one is spurious.
CRITICAL_MATCH_RADIUS = 0.1


# --------------------------------------------------------------------------- fitted models


class GPModel:
    """Posterior mean of a fitted scikit-learn GP with kernel C·RBF(ℓ) + White, and its derivatives.

    With normalised targets, the posterior mean at x is

        m(x) = ȳ + s_y · Σ_i α_i k(x, x_i),   k(x, x') = c · exp(−½ Σ_j (x_j − x'_j)² / ℓ_j²)

    (the white-noise kernel adds nothing off the training points). With r_i = x − x_i and
    u_i = r_i / ℓ² (elementwise),

        ∂k/∂x = −k u_i,     ∂²k/∂x∂xᵀ = k (u_i u_iᵀ − diag(1/ℓ²)),

    so ∇m = −s_y Σ_i α_i k_i u_i and ∇²m = s_y [Σ_i α_i k_i u_i u_iᵀ − (Σ_i α_i k_i) diag(1/ℓ²)].
    Evaluated in chunks of query points so (points × samples × d) stays small.
    """

    def __init__(self, gpr: Any, scalar_output: bool):
        kernel = gpr.kernel_
        self.c = float(kernel.k1.k1.constant_value)
        self.length = np.atleast_1d(np.asarray(kernel.k1.k2.length_scale, dtype=np.float64))
        self.noise_level = float(kernel.k2.noise_level)
        self.X = np.asarray(gpr.X_train_, dtype=np.float64)
        alpha = np.asarray(gpr.alpha_, dtype=np.float64)
        self.alpha = alpha[:, None] if alpha.ndim == 1 else alpha  # (n, m)
        m = self.alpha.shape[1]
        self.y_mean = np.broadcast_to(np.asarray(gpr._y_train_mean, dtype=np.float64), (m,)).copy()
        self.y_std = np.broadcast_to(np.asarray(gpr._y_train_std, dtype=np.float64), (m,)).copy()
        self.scalar_output = scalar_output
        self.d = self.X.shape[1]
        self.chunk = max(1, int(2e7 // (self.X.shape[0] * max(self.d, 1))))

    def describe(self) -> dict[str, Any]:
        return {"constant": self.c, "length_scale": self.length.tolist(), "noise_level": self.noise_level}

    def _chunks(self, X: np.ndarray):
        for start in range(0, X.shape[0], self.chunk):
            x = X[start : start + self.chunk]
            r = x[:, None, :] - self.X[None, :, :]  # (P, n, d)
            k = self.c * np.exp(-0.5 * np.sum((r / self.length) ** 2, axis=-1))  # (P, n)
            yield r / self.length**2, k

    def _all(self, X: np.ndarray, order: int) -> list[np.ndarray]:
        X = np.asarray(X, dtype=np.float64)
        values, grads, hessians = [], [], []
        inv_l2 = np.diag(1.0 / self.length**2)
        for u, k in self._chunks(X):
            w = k[:, :, None] * self.alpha[None, :, :]  # (P, n, m)
            values.append(w.sum(axis=1) * self.y_std + self.y_mean)
            if order >= 1:
                grads.append(-np.einsum("pnm,pnd->pmd", w, u) * self.y_std[:, None])
            if order >= 2:
                outer = np.einsum("pnm,pnd,pne->pmde", w, u, u, optimize=True)
                h = outer - w.sum(axis=1)[:, :, None, None] * inv_l2
                hessians.append(h * self.y_std[:, None, None])
        out = [np.concatenate(values)]
        if order >= 1:
            out.append(np.concatenate(grads))
        if order >= 2:
            out.append(np.concatenate(hessians))
        return out

    def predict(self, X):
        value = self._all(X, 0)[0]
        return value[:, 0] if self.scalar_output else value

    def jacobian(self, X):
        return self._all(X, 1)[1]

    def gradient(self, X):
        return self.jacobian(X)[:, 0]

    def hessian(self, X):
        h = self._all(X, 2)[2]
        return h[:, 0] if self.scalar_output else h

    def laplacian(self, X):
        h = self.hessian(X)
        return np.trace(h, axis1=-2, axis2=-1)

    def torch_function(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The posterior mean as a torch callable (N, d) → (N,) (scalar output), for autograd."""
        Xt = torch.as_tensor(self.X)
        length = torch.as_tensor(self.length)
        alpha = torch.as_tensor(self.alpha[:, 0])
        c, mean, std = self.c, float(self.y_mean[0]), float(self.y_std[0])

        def f(x: torch.Tensor) -> torch.Tensor:
            r = (x[:, None, :] - Xt[None].to(x.dtype)) / length.to(x.dtype)
            k = c * torch.exp(-0.5 * (r**2).sum(-1))
            return k @ alpha.to(x.dtype) * std + mean

        return f


class PyDeltModel:
    """PyDelt's per-axis spline derivatives behind the Surrogate query interface.

    PyDelt fits one 1-D spline of each output against each input separately, so its Hessian
    is diagonal: mixed partials are zero by construction.
    """

    def __init__(self, mv: Any, scalar_output: bool, m: int, d: int):
        self.mv, self.scalar_output, self.m, self.d = mv, scalar_output, m, d

    def _batch(self, result: np.ndarray, shape: tuple[int, ...], n: int) -> np.ndarray:
        return np.asarray(result, dtype=np.float64).reshape((n, *shape))

    def predict(self, X):
        # The fitted 1-D splines describe marginal trends, not f; PyDelt has no multivariate value.
        X = np.asarray(X)
        values = np.stack(
            [np.mean([self.mv.interpolators[o][j].predict(X[:, j]) for j in range(self.d)], axis=0) for o in range(self.m)],
            axis=1,
        )
        return values[:, 0] if self.scalar_output else values

    def jacobian(self, X):
        return self._batch(self.mv.jacobian()(X), (self.m, self.d), len(X))

    def gradient(self, X):
        return self._batch(self.mv.gradient()(X), (self.d,), len(X))

    def hessian(self, X):
        n = len(X)
        if self.scalar_output:
            return self._batch(self.mv.hessian()(X), (self.d, self.d), n)
        # PyDelt's hessian() is scalar-only; build each output's diagonal from its splines.
        H = np.zeros((n, self.m, self.d, self.d))
        for o in range(self.m):
            for j in range(self.d):
                H[:, o, j, j] = self.mv.interpolators[o][j].differentiate(order=2)(X[:, j])
        return H

    def laplacian(self, X):
        return np.trace(self.hessian(X), axis1=-2, axis2=-1)


# --------------------------------------------------------------------------- methods


@dataclass
class Fitted:
    model: Any
    train_samples: int
    val_samples: int
    note: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    torch_function: Callable[[torch.Tensor], torch.Tensor] | None = None


def fit_surrogates(samples: Samples, function: str, overrides: list[str], gradients: np.ndarray | None = None) -> Fitted:
    """Fit with the library's config for ``data=<function>`` (+ overrides), on the given arrays."""
    from omegaconf import OmegaConf

    from surrogates.config import compose_config
    from surrogates.fitting.train import train

    base = [f"data={function}"] if function in PROTOCOL_N else ["data=arrays"]
    cfg = compose_config("train", [*base, "trainer.enable_progress_bar=false", *overrides])
    OmegaConf.update(cfg, "data.source", None, force_add=True)
    X, y = samples.X, samples.y[:, 0] if samples.scalar_output else samples.y
    source = ArraySource(X, y, gradients)
    with tempfile.TemporaryDirectory(prefix="bench-accuracy-") as scratch, _quiet():
        result = train(cfg, output_dir=scratch, source=source)
    summary = result.summary
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    model_cfg.pop("_target_", None)
    return Fitted(
        model=result.surrogate,
        train_samples=summary["samples"]["train"],
        val_samples=summary["samples"]["validation"],
        note=f"{summary['model']}, {summary['epochs']} epochs",
        info={
            "model": model_cfg,
            "max_epochs": int(cfg.trainer.max_epochs),
            "batch_size": cfg.data.get("batch_size"),
            "val_fraction": float(cfg.data.val_fraction),
            "overrides": overrides,
            "library_fit_seconds": summary["fit_seconds"],
            "validation": summary.get("validation"),
            "ensemble_size": int(getattr(result.surrogate, "ensemble_size", 1)),
        },
        torch_function=result.surrogate.model,
    )


def fit_gp(samples: Samples, max_samples: int, restarts: int) -> Fitted:
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    n = samples.n_samples
    used = min(n, max_samples)
    X, y = np.asarray(samples.X[:used]), np.asarray(samples.y[:used])
    width = X.max(axis=0) - X.min(axis=0)
    kernel = ConstantKernel(1.0, (1e-4, 1e4)) * RBF(length_scale=0.5 * width, length_scale_bounds=(1e-3, 1e4)) + WhiteKernel(
        1e-4, (1e-12, 1.0)
    )
    gpr = GaussianProcessRegressor(kernel=kernel, normalize_y=True, n_restarts_optimizer=restarts, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at a bound (e.g. noise → 1e-12 for exact data)
        gpr.fit(X, y[:, 0] if samples.scalar_output else y)
    model = GPModel(gpr, samples.scalar_output)
    note = f"ARD RBF + white, {used} samples" + (f" (subsample of {n}: first {used})" if used < n else "")
    return Fitted(
        model=model,
        train_samples=used,
        val_samples=0,
        note=note,
        info={"kernel": str(gpr.kernel_), **model.describe(), "restarts": restarts, "subsampled": used < n},
        torch_function=model.torch_function() if samples.scalar_output else None,
    )


def fit_pydelt(samples: Samples, smoothing: float) -> Fitted:
    """PyDelt's multivariate spline, smoothing s = ``smoothing`` · n · var(y) per output.

    PyDelt's own automatic smoothing interpolates the scattered 1-D marginals and gives errors
    of 10⁵ % here; s = n · var(y) (factor 1) is the best of a scan (10⁻³ … 1) on quartic and
    reproduces the issue's "best tuned" figures (68 % / 38 %), so it is the default.
    """
    with _quiet():
        from pydelt.interpolation import SplineInterpolator
        from pydelt.multivariate import MultivariateDerivatives

    X = np.asarray(samples.X)
    Y = np.asarray(samples.y)
    n, m = Y.shape
    per_output = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for o in range(m):  # one fit per output, so each gets its own smoothing level
            mv = MultivariateDerivatives(SplineInterpolator, smoothing=smoothing * n * float(Y[:, o].var()))
            per_output.append(mv.fit(X, Y[:, o]))
    combined = per_output[0]
    if m > 1:
        combined.interpolators = [mv.interpolators[0] for mv in per_output]
        combined.n_outputs = m
    return Fitted(
        model=PyDeltModel(combined, samples.scalar_output, m, samples.in_dim),
        train_samples=n,
        val_samples=0,
        note=f"per-axis 1-D splines (mixed partials = 0 by design), s = {smoothing:g}·n·var(y)",
        info={"smoothing_factor": smoothing},
    )


@contextlib.contextmanager
def _quiet():
    """Silence Lightning's and PyDelt's chatter on stdout/stderr (errors still raise)."""
    import logging

    levels = {}
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logger = logging.getLogger(name)
        levels[name] = logger.level
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


# --------------------------------------------------------------------------- protocol pieces


def draw_samples(function: str, noise: float, n: int) -> Samples:
    """The protocol's training samples for (function, noise): inputs, then noise, from default_rng(1)."""
    return FunctionSource(function, n_samples=n, noise=noise, seed=DATA_SEED).load()


def quartic_critical_points(f: Callable[[torch.Tensor], torch.Tensor], lower, upper) -> dict[str, Any]:
    """Critical points of a fitted quartic model against the exact ones (protocol section)."""
    from surrogates.critical.search import find_critical_points

    report = find_critical_points(f, lower, upper)
    found, matched = [], set()
    for point in report.points:
        distances = [float(np.linalg.norm(point.x - exact)) for exact, _ in QUARTIC_CRITICAL]
        nearest = int(np.argmin(distances))
        spurious = distances[nearest] > CRITICAL_MATCH_RADIUS
        if not spurious:
            matched.add(nearest)
        found.append(
            {
                "x": np.asarray(point.x).tolist(),
                "kind": point.kind,
                "nearest_exact": QUARTIC_CRITICAL[nearest][0].tolist(),
                "distance": distances[nearest],
                "kind_correct": (not spurious) and point.kind == QUARTIC_CRITICAL[nearest][1],
                "spurious": spurious,
            }
        )
    return {
        "points": found,
        "missed": [QUARTIC_CRITICAL[i][0].tolist() for i in range(len(QUARTIC_CRITICAL)) if i not in matched],
        "spurious": sum(p["spurious"] for p in found),
        "max_distance": max((p["distance"] for p in found if not p["spurious"]), default=None),
        "all_kinds_correct": all(p["kind_correct"] for p in found if not p["spurious"]) and len(matched) == 3,
    }


def ensemble_calibration(surrogate: Any, function: Any, X: np.ndarray) -> dict[str, Any]:
    """How well an ensemble's spread predicts its error, per derivative entry.

    For every test point and every gradient (Jacobian) entry and Hessian entry: is the error of
    the ensemble mean within 2 (and 1) std of the members? For a calibrated Gaussian spread
    about 95 % (68 %) of entries are. The std is the members' (ddof=1); a member-to-truth error
    has variance σ²(1 + 1/K) when members scatter independently about the truth, hence the
    ``_inflated`` figures with 2·std·√(1 + 1/K). Also the median of |error| / std (0.67 when
    calibrated). Hessian entries that are exactly constant across members (std 0) are skipped.
    """
    K = surrogate.ensemble_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first, first_std = surrogate.jacobian(X, return_std=True)
        hess, hess_std = surrogate.hessian(X, return_std=True)
    first_true = np.asarray(function.jacobian(X))
    hess_true = np.asarray(function.hessian(X))
    first_true = first_true.reshape(first.shape)
    hess_true = hess_true.reshape(hess.shape)
    out: dict[str, Any] = {"members": K}
    for name, est, std, truth in (("first_derivatives", first, first_std, first_true), ("hessian", hess, hess_std, hess_true)):
        err, std = np.abs(est - truth).ravel(), np.asarray(std).ravel()
        keep = std > 0
        err, std = err[keep], std[keep]
        out[name] = {
            "within_1std": float(np.mean(err <= std)),
            "within_2std": float(np.mean(err <= 2 * std)),
            "within_2std_inflated": float(np.mean(err <= 2 * std * math.sqrt(1 + 1 / K))),
            "median_error_over_std": float(np.median(err / std)),
            # the factor the std would need for 95 % coverage at ±1 "std" (1.96 when Gaussian-calibrated)
            "error_over_std_q95": float(np.quantile(err / std, 0.95)) if err.size else None,
            "entries": int(err.size),
            # reliability curve: fraction of entries with |error| <= k std, k in COVERAGE_MULTIPLES
            "coverage": [float(np.mean(err <= k * std)) for k in COVERAGE_MULTIPLES],
        }
    return out


#: Multiples k of the ensemble std at which the reliability curve is evaluated.
COVERAGE_MULTIPLES = np.linspace(0.0, 4.0, 33)


def plot_calibration(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Reliability curves of every ensemble row: the fraction of derivative entries whose error
    lies within k ensemble std, against k, next to what a Gaussian spread would give (erf(k/√2))."""
    rows = [r for r in rows if r.get("calibration") and "error" not in r["calibration"]]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gaussian = [math.erf(k / math.sqrt(2)) for k in COVERAGE_MULTIPLES]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, name, title in zip(axes, ("first_derivatives", "hessian"), ("gradient / Jacobian entries", "Hessian entries")):
        axis.plot(COVERAGE_MULTIPLES, gaussian, "k--", label="calibrated (Gaussian)")
        for row in rows:
            label = f"{row['function']} noise {row['noise']:g} {row['method']} (K={row['calibration']['members']})"
            axis.plot(COVERAGE_MULTIPLES, row["calibration"][name]["coverage"], label=label)
        axis.axvline(2.0, color="grey", linewidth=0.5)
        axis.set(title=title, xlabel="k (multiples of the ensemble std)", xlim=(0, 4), ylim=(0, 1))
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of test entries with |error| ≤ k·std")
    axes[1].legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def evaluate(fitted: Fitted, samples: Samples, test_points: np.ndarray) -> tuple[dict[str, Any], float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = derivative_errors(fitted.model, samples.function, test_points)
    return metrics, time.perf_counter() - wall, time.process_time() - cpu


def run_case(
    method: str, spec: dict[str, Any], function: str, noise: float, samples: Samples, args, seed: int | None = None
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "function": function,
        "noise": noise,
        "method": method,
        "n_samples": samples.n_samples,
    }
    if seed is not None:
        row["seed"] = seed
    test_points = protocol_test_points(samples.function.lower, samples.function.upper)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        if spec["kind"] == "surrogates":
            seeded = [] if seed is None else [f"seed={seed}"]
            fitted = fit_surrogates(samples, function, [*spec["overrides"], *seeded])
        elif spec["kind"] == "gp":
            fitted = fit_gp(samples, args.gp_max_samples, args.gp_restarts)
        else:
            fitted = fit_pydelt(samples, args.pydelt_smoothing)
    except Exception as err:  # one failing method must not sink the table
        row["error"] = f"{type(err).__name__}: {err}"
        row["traceback"] = traceback.format_exc()
        return row
    row["fit_seconds"] = time.perf_counter() - wall
    row["fit_cpu_seconds"] = time.process_time() - cpu
    row.update(train_samples=fitted.train_samples, val_samples=fitted.val_samples, note=fitted.note, info=fitted.info)
    try:
        row["metrics"], row["query_seconds"], row["query_cpu_seconds"] = evaluate(fitted, samples, test_points)
    except Exception as err:
        row["error"] = f"metrics: {type(err).__name__}: {err}"
        row["traceback"] = traceback.format_exc()
        return row
    if getattr(fitted.model, "ensemble_size", 1) > 1:
        try:
            row["calibration"] = ensemble_calibration(fitted.model, samples.function, test_points)
        except Exception as err:
            row["calibration"] = {"error": f"{type(err).__name__}: {err}"}
    if function == "quartic" and fitted.torch_function is not None and not args.no_critical:
        try:
            with _quiet():
                row["critical_points"] = quartic_critical_points(
                    fitted.torch_function, samples.function.lower, samples.function.upper
                )
        except Exception as err:
            row["critical_points"] = {"error": f"{type(err).__name__}: {err}"}
    return row


# --------------------------------------------------------------------------- output


def _pct(metrics: dict[str, Any], name: str, stat: str = "median") -> str:
    if name not in metrics:
        return "n/a"
    return f"{100 * metrics[name][stat]:.4g}"


def _label(row: dict[str, Any]) -> str:
    return row["method"] if "seed" not in row else f"{row['method']} s{row['seed']}"


def _first_derivative(metrics: dict[str, Any]) -> float:
    return metrics["gradient"]["median"] if "gradient" in metrics else metrics["jacobian"]["median"]


def over_seeds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean, min and max over seeds of each seeded method's median errors, per case."""
    groups: dict[tuple[str, float, str], list[dict[str, Any]]] = {}
    for row in rows:
        if "seed" in row and "metrics" in row:
            groups.setdefault((row["function"], row["noise"], row["method"]), []).append(row)
    summary = []
    for (function, noise, method), group in groups.items():
        entry: dict[str, Any] = {"function": function, "noise": noise, "method": method,
                                 "seeds": [row["seed"] for row in group]}
        for name, values in (("first_derivative", [_first_derivative(r["metrics"]) for r in group]),
                             ("hessian", [r["metrics"]["hessian"]["median"] for r in group])):
            entry[name] = {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values))}
        summary.append(entry)
    return summary


def format_over_seeds(summary: list[dict[str, Any]]) -> str:
    header = (f"{'function':<8} {'noise':>5} {'method':<14} {'seeds':>5} "
              f"{'grad/jac med% mean [min, max]':>30} {'hess med% mean [min, max]':>30}")
    lines = [header, "-" * len(header)]
    for entry in summary:
        cells = [
            f"{100 * entry[name]['mean']:.4g} [{100 * entry[name]['min']:.4g}, {100 * entry[name]['max']:.4g}]"
            for name in ("first_derivative", "hessian")
        ]
        lines.append(f"{entry['function']:<8} {entry['noise']:>5g} {entry['method']:<14} {len(entry['seeds']):>5} "
                     f"{cells[0]:>30} {cells[1]:>30}")
    return "\n".join(lines)


def format_table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'function':<8} {'noise':>5} {'method':<14} {'train/val':>11} "
        f"{'grad med%':>9} {'grad mean%':>10} {'hess med%':>9} {'hess mean%':>10} {'mixed med%':>10} "
        f"{'lap abs med':>11} {'jac med%':>8} {'fit s':>7} {'fit cpu s':>9} {'query s':>7}  critical points, ensemble calibration"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        head = f"{row['function']:<8} {row['noise']:>5g} {_label(row):<14} "
        if "metrics" not in row:
            lines.append(head + f"ERROR {row.get('error', '?')}")
            continue
        m = row["metrics"]
        lap = f"{m['laplacian_abs']['median']:.3g}" if "laplacian_abs" in m else "n/a"
        crit = ""
        if "critical_points" in row:
            c = row["critical_points"]
            if "error" in c:
                crit = f"error: {c['error'][:40]}"
            else:
                kinds = ",".join(p["kind"][:3] for p in c["points"] if not p["spurious"])
                crit = f"{len(c['points']) - c['spurious']}/3 [{kinds}] max dist {c['max_distance'] if c['max_distance'] is None else format(c['max_distance'], '.2g')}, spurious {c['spurious']}"
        calibration = row.get("calibration")
        if calibration and "error" not in calibration:
            crit += (
                f"  [K={calibration['members']}: within 2 std grad {calibration['first_derivatives']['within_2std']:.0%}"
                f" hess {calibration['hessian']['within_2std']:.0%}]"
            )
        lines.append(
            head
            + f"{row['train_samples']:>5}/{row['val_samples']:<5} "
            f"{_pct(m, 'gradient'):>9} {_pct(m, 'gradient', 'mean'):>10} {_pct(m, 'hessian'):>9} "
            f"{_pct(m, 'hessian', 'mean'):>10} {_pct(m, 'mixed_partials'):>10} {lap:>11} {_pct(m, 'jacobian'):>8} "
            f"{row['fit_seconds']:>7.1f} {row['fit_cpu_seconds']:>9.1f} {row['query_seconds']:>7.2f}  {crit}"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    for name in ("sklearn", "pydelt"):
        try:
            with _quiet():
                module = __import__(name)
            info[name] = getattr(module, "__version__", "?")
        except ImportError:
            info[name] = None
    return info


# --------------------------------------------------------------------------- command line


def _split_overrides(text: str) -> list[str]:
    """Split ``a=1,b=[1,2],c=x`` on commas outside brackets/quotes."""
    parts, depth, quote, current = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--functions", default=",".join(PROTOCOL_N), help="comma list (default: all protocol functions)")
    parser.add_argument("--noise", default="0,0.01", help="comma list of noise fractions (default: 0,0.01)")
    parser.add_argument(
        "--methods",
        default=None,
        help="comma list among surrogates, gp, pydelt and preset names (default: surrogates, every preset, gp, pydelt)",
    )
    parser.add_argument(
        "--preset",
        action="append",
        default=[],
        metavar="NAME=OVERRIDE,OVERRIDE",
        help="a named surrogates configuration: Hydra overrides on top of the default (repeatable)",
    )
    parser.add_argument(
        "--seeds",
        default=None,
        help="comma list of training seeds: every surrogates method is fitted once per seed and a table of "
        "mean and range over seeds follows (default: the config's seed, one fit)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default 1)")
    parser.add_argument("--gp-max-samples", type=int, default=3000, help="GP fits at most this many samples (default 3000)")
    parser.add_argument("--gp-restarts", type=int, default=0, help="extra random restarts of the GP's hyperparameter search")
    parser.add_argument(
        "--pydelt-smoothing", type=float, default=1.0, help="spline smoothing s as a multiple of n·var(y) (default 1)"
    )
    parser.add_argument("--no-critical", action="store_true", help="skip the quartic critical-point search")
    parser.add_argument("--quick", action="store_true", help=f"smoke test: {QUICK_N} samples, tiny fits (not the protocol)")
    parser.add_argument("--out", default="results.json", help="JSON output path (default results.json)")
    return parser.parse_args(argv)


def build_methods(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    extra = QUICK_SURROGATE_OVERRIDES if args.quick else []
    specs: dict[str, dict[str, Any]] = {"surrogates": {"kind": "surrogates", "overrides": list(extra)}}
    for preset in args.preset:
        name, sep, overrides = preset.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name) or name in ("surrogates", "gp", "pydelt"):
            raise SystemExit(f"--preset must look like NAME=override,override (a new name), got {preset!r}")
        specs[name] = {"kind": "surrogates", "overrides": [*_split_overrides(overrides), *extra]}
    specs["gp"] = {"kind": "gp"}
    specs["pydelt"] = {"kind": "pydelt"}
    if args.methods is None:
        wanted = list(specs)
    else:
        wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in specs]
        if unknown:
            raise SystemExit(f"unknown method(s) {unknown}; known: {list(specs)}")
    return {name: specs[name] for name in wanted}


def set_threads(threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    limits = {"torch": torch.get_num_threads()}
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)
        limits["blas"] = threads
    except ImportError:
        limits["blas"] = os.environ.get("OMP_NUM_THREADS", "unlimited (threadpoolctl missing)")
    return limits


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads = set_threads(args.threads)
    functions = [f.strip() for f in args.functions.split(",") if f.strip()]
    unknown = [f for f in functions if f not in PROTOCOL_N]
    if unknown:
        raise SystemExit(f"unknown function(s) {unknown}; the protocol has {list(PROTOCOL_N)}")
    noises = [float(v) for v in args.noise.split(",") if v.strip()]
    try:
        seeds = None if args.seeds is None else [int(v) for v in args.seeds.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"--seeds must be a comma list of integers, got {args.seeds!r}") from None
    if seeds is not None and (not seeds or len(set(seeds)) != len(seeds)):
        raise SystemExit(f"--seeds must list distinct integers, got {args.seeds!r}")
    methods = build_methods(args)
    if "pydelt" in methods and args.methods is None:
        try:
            with _quiet():
                import pydelt  # noqa: F401
        except ImportError:
            print("pydelt not installed: skipping it (pip install pydelt)")
            methods.pop("pydelt")
    if "gp" in methods and args.methods is None:
        try:
            import sklearn  # noqa: F401
        except ImportError:
            print("scikit-learn not installed: skipping the GP (pip install scikit-learn)")
            methods.pop("gp")

    print(f"bench_accuracy: threads torch={threads['torch']} blas={threads['blas']}, {os.cpu_count()} cores, {platform.platform()}")
    if args.quick:
        print(f"QUICK MODE: {QUICK_N} samples per case and tiny fits — a smoke test, not the protocol")
    for name, spec in methods.items():
        if spec["kind"] == "surrogates":
            print(f"  method {name}: surrogates default config for data=<function> + {spec['overrides'] or 'no overrides'}")
    out = Path(args.out)
    result: dict[str, Any] = {
        "protocol": "shared/protocol.md",
        "quick": args.quick,
        "threads": threads,
        "machine": machine(),
        "args": vars(args),
        "methods": methods,
        "rows": [],
    }
    for function in functions:
        for noise in noises:
            n = QUICK_N if args.quick else PROTOCOL_N[function]
            samples = draw_samples(function, noise, n)
            for name, spec in methods.items():
                for seed in seeds if seeds is not None and spec["kind"] == "surrogates" else [None]:
                    row = run_case(name, spec, function, noise, samples, args, seed)
                    result["rows"].append(row)
                    status = (
                        f"grad {_pct(row['metrics'], 'gradient')}% jac {_pct(row['metrics'], 'jacobian')}% "
                        f"hess {_pct(row['metrics'], 'hessian')}%, fit {row['fit_seconds']:.1f}s"
                        if "metrics" in row
                        else f"ERROR {row['error']}"
                    )
                    print(f"  {function} noise={noise:g} {_label(row)}: {status}", flush=True)
                    out.write_text(json.dumps(result, indent=1, default=_json_default))
    print()
    print(format_table(result["rows"]))
    if seeds is not None:
        result["over_seeds"] = over_seeds(result["rows"])
        print(f"\nover seeds {seeds} (median errors of each fit; mean and range over the fits):")
        print(format_over_seeds(result["over_seeds"]))
    print("\nerrors in % (median/mean over 500 test points); train/val = samples fitted / held out; "
          "fit cpu s = process CPU time; query s = all derivative queries on the test points")
    out.write_text(json.dumps(result, indent=1, default=_json_default))
    print(f"wrote {out}")
    figure = plot_calibration(result["rows"], out.with_name(out.stem + "_calibration.png"))
    if figure:
        print(f"wrote {figure} (ensemble reliability curves)")
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
