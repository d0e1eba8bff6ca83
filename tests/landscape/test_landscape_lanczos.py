"""Lanczos stopping rules (SA, BE) and extreme-eigenvalue brackets against dense float64 eigendecompositions.

Every operator here is larger than the iterations Lanczos takes, so the stopping rule (and not
exhaustion of the space) ends each run.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from surrogates.errors import InputError
from surrogates.landscape.krylov import LanczosRecurrence, extreme_eigenvalue_bounds
from surrogates.landscape.lanczos import lanczos
from surrogates.landscape.operator import DenseSymmetricOperator


def operator_with(eigs, seed=0):
    """A dense operator with (about) these eigenvalues, and its exact float64 spectrum (eigvalsh of the matrix)."""
    eigs = np.asarray(eigs, dtype=np.float64)
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(eigs), len(eigs))))
    H = 0.5 * ((Q * eigs) @ Q.T + ((Q * eigs) @ Q.T).T)
    return DenseSymmetricOperator(torch.as_tensor(H)), np.linalg.eigvalsh(H)


def bulk_edge(n=300, seed=1):
    """A loss-Hessian-like spectrum: a few large outliers, a bulk near zero with a slightly negative edge."""
    g = np.random.default_rng(seed)
    bulk = -0.02 + 0.2 * g.uniform(0, 1, n - 4) ** 3
    return np.concatenate([[40.0, 25.0, 11.0, 7.0], bulk])


def true_residuals(op, res):
    H = op.matrix.numpy()
    V = res.eigenvectors.numpy()
    return np.linalg.norm(H @ V - V * res.eigenvalues, axis=0)


def nearest_eigenvalue_distance(values, exact):
    return np.abs(np.asarray(values)[:, None] - exact[None, :]).min(1)


@pytest.mark.parametrize("which", ["SA", "BE"])
def test_stops_at_the_first_step_that_meets_the_tolerance(which):
    """Converged at m steps, and NOT converged (with a warning) when given m - 1: the rule fires exactly when it should."""
    eigs = np.concatenate([[9.0, 6.0], np.linspace(-1.0, 3.0, 296), [-4.0, -2.5]])
    op, exact = operator_with(eigs)
    tol = 1e-9
    res = lanczos(op, 2, which, tol=tol, max_iter=250)
    assert res.all_converged and res.iterations < 250 < op.n
    # the reported residuals are the true ones, and each Ritz value is within its residual of the eigenvalue
    s = exact[-1] - exact[0]
    np.testing.assert_allclose(true_residuals(op, res), res.residuals, rtol=0, atol=1e-12 * s)
    expected = exact[:2] if which == "SA" else np.concatenate([exact[::-1][:2], exact[:2]])
    assert np.all(np.abs(res.eigenvalues - expected) <= res.residuals + 1e-12 * s)
    assert np.all(res.residuals <= tol * res.scale)
    assert res.scale == pytest.approx(s, rel=1e-12)  # the Ritz spread has converged to the true spread
    with pytest.warns(RuntimeWarning, match=rf"NOT converged after {res.iterations - 1} products"):
        short = lanczos(op, 2, which, tol=tol, max_iter=res.iterations - 1)
    assert not short.all_converged
    assert np.any(short.residuals > tol * short.scale)
    if which == "BE":  # the top end converges long before the bottom: BE waited for both ends
        assert short.converged[:2].all() and not short.converged[2:].all()
        top_only = lanczos(op, 2, "LA", tol=tol, max_iter=250)
        assert top_only.iterations < res.iterations


def test_not_converged_at_a_dense_bulk_edge_is_reported_and_true():
    """A budget too small for the bottom of a dense bulk: flagged, and the eigenvalue really is off by more than tol."""
    eigs = bulk_edge()
    op, exact = operator_with(eigs)
    tol = 1e-6
    with pytest.warns(RuntimeWarning, match="NOT converged after 40 products"):
        res = lanczos(op, 1, "SA", tol=tol, max_iter=40)
    assert not res.all_converged and res.iterations == 40 < op.n
    assert res.eigenvalues[0] - exact[0] > tol * res.scale  # the claim "not converged" is right
    assert res.eigenvalues[0] >= exact[0]  # interlacing: a Ritz value never lies below the smallest eigenvalue
    # the residual guarantee holds whether converged or not
    assert nearest_eigenvalue_distance(res.eigenvalues, exact)[0] <= res.residuals[0] * (1 + 1e-10)
    assert "lambda_min in [" in res.message()
    full = lanczos(op, 1, "SA", tol=tol, max_iter=280)
    assert full.all_converged and full.iterations < 280
    assert abs(full.eigenvalues[0] - exact[0]) <= tol * full.scale


def test_tolerance_is_relative_to_the_spread_so_a_shift_changes_nothing():
    """H and H + 1000 I have the same Krylov spaces; the verdicts and step counts must agree too."""
    eigs = bulk_edge()
    (op, _), (shifted, _) = operator_with(eigs), operator_with(eigs + 1000.0)
    a = lanczos(op, 1, "SA", tol=1e-6, max_iter=280)
    b = lanczos(shifted, 1, "SA", tol=1e-6, max_iter=280)
    assert a.iterations == b.iterations and a.all_converged and b.all_converged
    assert b.eigenvalues[0] - 1000.0 == pytest.approx(a.eigenvalues[0], abs=1e-9)
    assert b.scale == pytest.approx(a.scale, rel=1e-9)


def test_brackets_contain_the_extreme_eigenvalues_for_nearly_every_start():
    """lambda_min in [lower_bound, theta_min] with probability >= 0.99: count misses over 100 random starts."""
    eigs = bulk_edge(n=120, seed=3)
    op, exact = operator_with(eigs, seed=2)
    misses_low = misses_high = 0
    widths = []
    for seed in range(100):
        res = lanczos(op, 1, "BE", max_iter=30, seed=seed, warn=False)
        theta_min, theta_max = res.all_ritz_values[0], res.all_ritz_values[-1]
        assert theta_min >= exact[0] - 1e-12 and theta_max <= exact[-1] + 1e-12  # interlacing, always
        misses_low += not res.lower_bound <= exact[0]
        misses_high += not exact[-1] <= res.upper_bound
        widths.append(theta_min - res.lower_bound)
    # with 0.99 coverage, 5 or more misses in 100 have probability < 0.004; the bound is conservative
    assert misses_low <= 4 and misses_high <= 4
    # not vacuous: the bracket is narrower than the spectrum's spread by orders of magnitude ...
    assert np.median(widths) < 0.05 * (exact[-1] - exact[0])
    # ... and at an isolated end it is as tight as the arithmetic
    top = lanczos(op, 1, "LA", max_iter=30, warn=False)
    assert top.upper_bound - top.eigenvalues[0] < 1e-9 * top.scale


def test_brackets_need_a_random_start_and_exact_blocks_are_exact():
    eigs = bulk_edge(n=60)
    op, exact = operator_with(eigs)
    given = lanczos(op, 1, "SA", v0=torch.ones(op.n, dtype=torch.float64), max_iter=20, warn=False)
    assert given.lower_bound is None and given.confidence is None
    full = lanczos(op, 1, "SA", max_iter=op.n)  # the whole space: exact, and so is the bracket
    assert full.lower_bound == pytest.approx(exact[0], abs=1e-10)
    low_rank, _ = operator_with([5.0, 3.0, -2.0] + [0.0] * 37)
    res = lanczos(low_rank, 6, "SA", max_iter=40)  # breakdowns: restarted blocks
    assert res.restarts >= 1
    assert res.lower_bound == pytest.approx(-2.0, abs=1e-10) and res.upper_bound == pytest.approx(5.0, abs=1e-10)
    with pytest.raises(InputError, match="confidence"):
        lanczos(op, 1, "SA", confidence=1.0)


def test_bound_formula_on_a_diagonal_two_level_operator():
    """Closed form: for H = diag(a, b) from q = (c, s), one step gives alpha = a c^2 + b s^2 and
    sum_j pi_j(t)^2 = 1 + (t - alpha)^2 / beta^2 with beta^2 = c^2 s^2 (a - b)^2."""
    from scipy.special import betaincinv

    a, b, c = -1.0, 3.0, 0.6
    s = np.sqrt(1 - c**2)
    op = DenseSymmetricOperator(torch.tensor([[a, 0.0], [0.0, b]], dtype=torch.float64))
    rec = LanczosRecurrence(op, 1, torch.tensor([c, s], dtype=torch.float64))
    rec.step()
    alpha, beta = a * c**2 + b * s**2, c * s * (b - a)
    np.testing.assert_allclose([rec.alpha[0], rec.beta[0]], [alpha, beta], rtol=1e-14)
    lower, upper = extreme_eigenvalue_bounds(rec.alpha, rec.beta, dimension=2, confidence=0.9)
    gamma2 = betaincinv(0.5, 0.5, 0.1)
    d = beta * np.sqrt(1 / gamma2 - 1)  # 1 + d^2 / beta^2 = 1 / gamma^2
    np.testing.assert_allclose([lower, upper], [alpha - d, alpha + d], rtol=1e-10)


@pytest.mark.slow
def test_bottom_benchmark_runs_and_reports_before_and_after(tmp_path):
    """scripts/bench_lanczos_bottom.py on the 85k-parameter MLP with a small budget (the reference given)."""
    from conftest import load_script

    bench = load_script("bench_lanczos_bottom")
    out = bench.main(["--seeds", "0", "--max-iter", "25", "--reference", "-0.00123457", "--out", str(tmp_path / "b")])
    before, after = out["runs"]["before"][0], out["runs"]["after tol=1e-05"][0]
    assert before["products"] == after["products"] == 25  # neither can converge in 25 products
    assert before["eigenvalue"] == pytest.approx(after["eigenvalue"], rel=1e-6)  # same start, same Krylov space
    assert after["lower_bound"] < -0.00123457 < after["eigenvalue"]
    assert (tmp_path / "b.txt").exists() and (tmp_path / "b.json").exists()
