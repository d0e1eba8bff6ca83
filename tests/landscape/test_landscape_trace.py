"""Trace standard errors: the closed-form variance estimate, and coverage of +-2 sigma over many seeds.

Coverage is the fraction of seeds whose interval ``estimate +- 2 stderr`` contains the exact
trace; for a calibrated standard error it is about 0.954. With the sample-spread standard error
the package used before, Hutchinson with 10 probes on the outlier matrix below covered only
0.86 of 2000 seeds, outside the band these tests allow.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import load_script
from surrogates.errors import InputError
from surrogates.landscape.density import spectral_density
from surrogates.landscape.lanczos import lanczos
from surrogates.landscape.operator import DenseSymmetricOperator
from surrogates.landscape.trace import QuadraticFormVariance, hutchinson, hutchpp, probes

SEEDS = 200
# binomial(200, 0.954): 0.91..0.99 holds with probability > 0.99
BAND = (0.91, 0.99)


def outlier_matrix(n=50, seed=0):
    """Loss-Hessian-like: three large outliers over a small bulk (dominates Hutchinson's variance)."""
    g = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(g.standard_normal((n, n)))
    eigs = np.concatenate([[30.0, 10.0, 5.0], g.normal(0.0, 0.3, n - 3)])
    H = (Q * eigs) @ Q.T
    return 0.5 * (H + H.T)


def coverage(estimate, trace, seeds=SEEDS):
    hits = 0
    for seed in range(seeds):
        value, stderr = estimate(seed)
        hits += abs(value - trace) <= 2 * stderr
    return hits / seeds


@pytest.mark.parametrize(
    "name",
    ["hutchinson 10", "hutchinson 10 gaussian", "hutch++ 30", "density 8x6", "density 8x6 deflated"],
)
def test_two_sigma_intervals_cover_the_exact_trace(name):
    H = outlier_matrix()
    op, trace = DenseSymmetricOperator(torch.as_tensor(H)), float(np.trace(H))
    runs = {
        "hutchinson 10": lambda s: (lambda r: (r.value, r.stderr))(hutchinson(op, 10, seed=s)),
        "hutchinson 10 gaussian": lambda s: (lambda r: (r.value, r.stderr))(hutchinson(op, 10, seed=s, distribution="gaussian")),
        "hutch++ 30": lambda s: (lambda r: (r.value, r.stderr))(hutchpp(op, 30, seed=s)),
        "density 8x6": lambda s: (lambda d: (d.trace, d.trace_stderr))(spectral_density(op, 8, 6, seed=s)),
        "density 8x6 deflated": lambda s: (lambda d: (d.trace, d.trace_stderr))(
            spectral_density(op, 8, 6, seed=s, deflate=lanczos(op, 2, "LA", max_iter=6, keep_basis=True, seed=10**6 + s, warn=False))
        ),
    }
    got = coverage(runs[name], trace)
    assert BAND[0] <= got <= BAND[1], f"{name}: +-2 stderr covered the trace in {got:.3f} of {SEEDS} seeds"


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_quadratic_form_variance_is_unbiased_and_exact_for_diagonals(distribution):
    """Mean over 3000 five-probe estimates vs 2(|B|_F^2 - sum B_kk^2) (Rademacher) or 2|B|_F^2 (Gaussian)."""
    H = outlier_matrix(n=20, seed=4)
    B = torch.as_tensor(H)
    exact = 2 * (np.sum(H**2) - (np.sum(np.diag(H) ** 2) if distribution == "rademacher" else 0.0))
    gen = torch.Generator().manual_seed(0)
    estimates = []
    for _ in range(3000):
        acc = QuadraticFormVariance(20, distribution)
        Z = probes(20, 5, gen, distribution)
        for i in range(5):
            acc.add(Z[:, i], B @ Z[:, i])
        estimates.append(acc.variance())
    estimates = np.asarray(estimates)
    assert abs(estimates.mean() - exact) < 4 * estimates.std() / np.sqrt(len(estimates))
    # a diagonal matrix has z^T D z = tr D for every Rademacher probe: variance exactly 0
    D = torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64))
    acc = QuadraticFormVariance(5, "rademacher")
    Z = probes(5, 3, gen, "rademacher")
    for i in range(3):
        acc.add(Z[:, i], D @ Z[:, i])
    assert acc.variance() == pytest.approx(0.0, abs=1e-12)
    single = QuadraticFormVariance(5, distribution)
    single.add(Z[:, 0], D @ Z[:, 0])
    assert single.variance() == float("inf")


def test_hutchpp_stderr_is_larger_than_hutchinsons_on_a_flat_spectrum_and_right_to_be():
    """Same 60 products: on a flat spectrum the 20-vector sketch removes a tenth of the variance and
    Hutch++ has a third of the probes, so its error is about 1.6x Hutchinson's."""
    g = np.random.default_rng(1)
    Q, _ = np.linalg.qr(g.standard_normal((200, 200)))
    H = (Q * g.uniform(-1.0, 1.0, 200)) @ Q.T
    op = DenseSymmetricOperator(torch.as_tensor(0.5 * (H + H.T)))
    plain = [hutchinson(op, 60, seed=s) for s in range(100)]
    sketched = [hutchpp(op, 60, seed=s) for s in range(100)]
    sd_plain, sd_sketched = np.std([r.value for r in plain]), np.std([r.value for r in sketched])
    se_plain, se_sketched = np.mean([r.stderr for r in plain]), np.mean([r.stderr for r in sketched])
    assert sd_sketched > 1.3 * sd_plain  # the truth: Hutch++ is worse here
    assert se_sketched > 1.3 * se_plain  # and its standard error says so
    for se, sd in ((se_plain, sd_plain), (se_sketched, sd_sketched)):
        assert 0.8 < se / sd < 1.25
    with pytest.raises(InputError, match="distribution"):
        hutchinson(op, 3, distribution="uniform")


@pytest.mark.slow
def test_calibration_on_a_small_network(tmp_path):
    """The calibration benchmark on its 123-parameter MLP (float32 operator, exact dense trace), 120 seeds."""
    bench = load_script("bench_trace_calibration")
    out = bench.main(["--networks", "mlp-123", "--seeds", "120", "--out", str(tmp_path / "cal")])
    rows = out["networks"]["mlp-123"]["estimators"]
    assert set(rows) == set(bench.estimators())
    for name, row in rows.items():
        # binomial(120, 0.954): 0.89..1.0 holds with probability > 0.998
        assert 0.89 <= row["coverage"] <= 1.0, (name, row["coverage"])
        assert 0.7 < row["stderr_over_spread"] < 1.4, (name, row["stderr_over_spread"])
    assert (tmp_path / "cal.txt").read_text().startswith("network")
