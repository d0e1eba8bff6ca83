"""Accuracy metrics of a surrogate, as defined in the derivative-accuracy protocol.

Over test points drawn uniformly (``numpy.random.default_rng(2)``) in the central 80 % of
the function's box:

* gradient: relative error ‖ĝ − g‖ / ‖g‖, median and mean, skipping points with ‖g‖ < 1e-3;
* Hessian: relative Frobenius error ‖Ĥ − H‖_F / ‖H‖_F, median and mean;
* mixed partials: ‖Ĥ_off − H_off‖ / ‖H‖_F over the off-diagonal entries (relative to the whole
  Hessian, because true mixed partials may vanish);
* Laplacian: absolute error, median;
* Jacobian (vector outputs): relative Frobenius error, median and mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from surrogates.fitting.functions import TestFunction

GRADIENT_FLOOR = 1e-3
TEST_POINTS = 500
TEST_SEED = 2


def protocol_test_points(
    lower: np.ndarray, upper: np.ndarray, n: int = TEST_POINTS, seed: int = TEST_SEED
) -> np.ndarray:
    """``n`` points uniform in the central 80 % of the box, from ``default_rng(seed)``."""
    lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    centre, half = (lower + upper) / 2, 0.4 * (upper - lower)
    return np.random.default_rng(seed).uniform(centre - half, centre + half, size=(n, lower.size))


def _summary(errors: np.ndarray) -> dict[str, float]:
    return {"median": float(np.median(errors)), "mean": float(np.mean(errors))}


def relative_errors(estimate: np.ndarray, truth: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Per-point ‖estimate − truth‖ / ‖truth‖ over all trailing axes; points with ‖truth‖ ≤ floor dropped."""
    n = truth.shape[0]
    difference = np.linalg.norm((estimate - truth).reshape(n, -1), axis=1)
    size = np.linalg.norm(truth.reshape(n, -1), axis=1)
    keep = size > floor
    return difference[keep] / size[keep]


def hessian_errors(estimate: np.ndarray, truth: np.ndarray) -> dict[str, dict[str, float]]:
    """Relative Frobenius and mixed-partial errors of Hessians (..., d, d), per point."""
    n, d = truth.shape[0], truth.shape[-1]
    off_diagonal = ~np.eye(d, dtype=bool)
    size = np.linalg.norm(truth.reshape(n, -1), axis=1)
    keep = size > 0
    mixed = np.linalg.norm((estimate - truth)[..., off_diagonal].reshape(n, -1), axis=1)
    return {
        "hessian": _summary(relative_errors(estimate, truth, floor=0.0)),
        "mixed_partials": _summary(mixed[keep] / size[keep]),
    }


def derivative_errors(surrogate: Any, function: TestFunction, X: np.ndarray) -> dict[str, Any]:
    """Protocol errors of ``surrogate``'s derivatives against ``function``'s exact ones at ``X``.

    Args:
        surrogate: Anything with the :class:`~surrogates.surrogate.Surrogate` query methods.
        function: The analytic function the surrogate was fitted to.
        X: (N, d) test points.

    Returns:
        A dict of metric name → {"median", "mean"} (Laplacian: absolute error), plus the
        value RMSE on the test points and the number of points used for the gradient.
    """
    X = np.asarray(X, dtype=np.float64)
    value = np.asarray(function.value(X))
    report: dict[str, Any] = {
        "test_points": int(X.shape[0]),
        "value_rmse": float(np.sqrt(np.mean((surrogate.predict(X) - value) ** 2))),
    }
    if function.is_scalar:
        gradient = np.asarray(function.gradient(X))
        errors = relative_errors(surrogate.gradient(X), gradient, floor=GRADIENT_FLOOR)
        report["gradient"] = _summary(errors)
        report["gradient_points"] = int(errors.size)
        report.update(hessian_errors(surrogate.hessian(X), np.asarray(function.hessian(X))))
        laplacian_error = np.abs(surrogate.laplacian(X) - np.asarray(function.laplacian(X)))
        report["laplacian_abs"] = _summary(laplacian_error)
    else:
        report["jacobian"] = _summary(relative_errors(surrogate.jacobian(X), np.asarray(function.jacobian(X))))
        report.update(hessian_errors(surrogate.hessian(X), np.asarray(function.hessian(X))))
    return report
