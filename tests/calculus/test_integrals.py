"""Regions and randomised-QMC integrals against closed forms; the standard error's coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import surrogates
from surrogates import calculus
from surrogates.calculus.integrals import _owen_sobol, sample_region
from surrogates.errors import InputError


def r_squared(X):
    return (X**2).sum(1)


def polar(U):
    return torch.stack((U[:, 0] * U[:, 1].cos(), U[:, 0] * U[:, 1].sin()), dim=1)


def spherical(U):
    r, theta, phi = U.unbind(1)
    return torch.stack((r * theta.sin() * phi.cos(), r * theta.sin() * phi.sin(), r * theta.cos()), dim=1)


DISK_R2 = 8 * math.pi  # ∬_{x²+y² ≤ 4} (x² + y²) = ∫₀^{2π} ∫₀² r³ dr dθ


def disk_regions():
    return {
        "ball": calculus.Ball([0, 0], 2.0),
        "polar": calculus.Mapped(calculus.Box([0, 0], [2, 2 * math.pi]), polar),
        "indicator": calculus.Indicator(lambda X: (X**2).sum(1) <= 4, calculus.Box([-2, -2], [2, 2])),
    }


def _within(result, truth, sigmas=4.0):
    assert abs(result.value - truth) <= sigmas * result.stderr, (result, truth)
    assert result.stderr < 1e-2 * abs(truth)  # an error bar that says something


# ---------------------------------------------------------------- closed forms


@pytest.mark.parametrize("name", ["ball", "polar", "indicator"])
def test_disk_integral_of_r_squared_is_8_pi(name):
    result = calculus.integrate(r_squared, disk_regions()[name], points=2**14, seed=1)
    _within(result, DISK_R2)
    assert result.points == 2**14 and result.replicates == 16 and result.ensemble_std is None


def test_triple_integrals_over_the_unit_ball():
    # ∭ (1 + x + z²) over the unit ball = 4π/3 + 0 + 4π/15; also through spherical coordinates
    f = lambda X: 1 + X[:, 0] + X[:, 2] ** 2  # noqa: E731
    truth = 4 * math.pi / 3 + 4 * math.pi / 15
    _within(calculus.integrate(f, calculus.Ball([0, 0, 0], 1.0), seed=2), truth)
    mapped = calculus.Mapped(calculus.Box([0, 0, 0], [1, math.pi, 2 * math.pi]), spherical)
    _within(calculus.integrate(f, mapped, seed=3), truth)
    # a shifted ball in 5-D: ∫ ‖x − c‖² = d/(d + 2) · R² · volume
    ball5 = calculus.Ball([1, -1, 0, 2, 0.5], 0.8)
    shifted = lambda X: ((X - torch.tensor([1, -1, 0, 2, 0.5]).to(X)) ** 2).sum(1)  # noqa: E731
    assert ball5.volume == pytest.approx(8 * math.pi**2 / 15 * 0.8**5, rel=1e-14)
    _within(calculus.integrate(shifted, ball5, seed=4), 5 / 7 * 0.8**2 * ball5.volume)


def test_simplex_integrals_and_volume():
    triangle = calculus.Simplex([[0, 0], [1, 0], [0, 1]])
    assert triangle.volume == pytest.approx(0.5)
    _within(calculus.integrate(lambda X: X[:, 0] * X[:, 1], triangle, seed=5), 1 / 24)
    tetra = calculus.Simplex(np.array([[0, 0, 0], [2, 0, 0], [0, 3, 0], [0, 0, 1]]))
    assert tetra.volume == pytest.approx(1.0)  # |det diag(2, 3, 1)| / 3!
    # the centroid is the mean of the vertices: ∫ x = volume · centroid
    result = calculus.integrate(lambda X: X, tetra, seed=6)
    np.testing.assert_allclose(result.value, [0.5, 0.75, 0.25], atol=4 * result.stderr.max())
    assert result.value.shape == result.stderr.shape == (3,)


def test_box_integrates_vector_outputs_per_component():
    box = calculus.Box([0, 1], [2, 4])
    result = calculus.integrate(lambda X: torch.stack((X[:, 0], X[:, 0] * X[:, 1] ** 2, torch.ones(len(X))), 1), box)
    truth = np.array([2 * 3, 2 * (64 - 1) / 3, 6])  # ∫x = 2·3, ∫xy² = 2·21, ∫1 = volume
    assert np.all(np.abs(result.value - truth) <= 4 * result.stderr + 1e-12)
    assert result.stderr[2] == pytest.approx(0, abs=1e-12)  # a constant has no sampling error


def test_region_points_are_uniform_where_the_region_says():
    for region, centroid, size in ((calculus.Ball([1, 2], 0.5), [1, 2], 0.5),
                                   (calculus.Simplex([[0, 0], [3, 0], [0, 3]]), [1, 1], 3.0),
                                   (calculus.Ball([0, 0, 0, 1], 2.0), [0, 0, 0, 1], 2.0)):
        sample = sample_region(region, points=2**12, seed=0)
        X = sample.points.reshape(-1, region.dim)
        np.testing.assert_allclose(X.mean(0).numpy(), centroid, atol=3e-3 * size)
        if isinstance(region, calculus.Ball):
            radii = torch.linalg.vector_norm(X - torch.as_tensor(region.center), dim=1) / region.radius
            assert float(radii.max()) <= 1 + 1e-12
            # P(‖x − c‖ ≤ sR) = s^d for a uniform point
            assert float((radii <= 0.5).double().mean()) == pytest.approx(0.5**region.dim, abs=0.01)
        assert torch.all(sample.weights == region.volume)


# -------------------------------------------------------------- standard errors


def test_stderr_covers_the_truth_95_percent_of_the_time_over_seeds():
    # 4 integrands × 100 seeds, 256 points each: with 16 replicates the ±2σ interval should hold
    # the truth with probability P(|t₁₅| ≤ 2) ≈ 0.936
    cases = [
        (r_squared, disk_regions()["ball"], DISK_R2),
        (r_squared, disk_regions()["indicator"], DISK_R2),
        (lambda X: X[:, 0] * X[:, 1], calculus.Simplex([[0, 0], [1, 0], [0, 1]]), 1 / 24),
        (lambda X: torch.cos(X.sum(1)), calculus.Box([0] * 6, [1] * 6), (((np.exp(1j) - 1) / 1j) ** 6).real),
    ]
    covered = [
        abs(r.value - truth) <= 2 * r.stderr
        for f, region, truth in cases
        for r in (calculus.integrate(f, region, points=256, seed=seed) for seed in range(100))
    ]
    assert 0.90 <= np.mean(covered) <= 0.99, np.mean(covered)


def test_qmc_beats_plain_monte_carlo_by_far_on_a_smooth_integrand():
    f = lambda X: torch.exp(-(X**2).sum(1))  # noqa: E731
    box = calculus.Box([-1, -1], [1, 1])
    qmc = np.median([calculus.integrate(f, box, points=4096, seed=s).stderr for s in range(5)])
    mc = np.median([calculus.integrate(f, box, points=4096, seed=s, sampler="random").stderr for s in range(5)])
    assert mc > 30 * qmc  # plain MC would need > 900× the points for the same error


def test_owen_scrambled_sobol_points_are_nets_and_differ_by_seed():
    n = 2**8
    U = _owen_sobol(n, 3, torch.Generator().manual_seed(0))
    for a in range(9):  # every 2^-a × 2^-(8-a) box of dims 0, 1 holds exactly one point: a (0, 8, 2)-net
        cells = (U[:, 0] * 2**a).long() * 2 ** (8 - a) + (U[:, 1] * 2 ** (8 - a)).long()
        assert torch.unique(cells).numel() == n
    assert float(U.min()) >= 0 and float(U.max()) < 1
    assert not torch.equal(U, _owen_sobol(n, 3, torch.Generator().manual_seed(1)))


def test_results_repeat_for_a_seed_and_points_round_up_per_replicate():
    region = calculus.Ball([0, 0], 1.0)
    first, again = (calculus.integrate(r_squared, region, points=1000, seed=7) for _ in range(2))
    assert first == again and first.points == 16 * 64  # ⌈1000/16⌉ = 63 → 64 per replicate
    other = calculus.integrate(r_squared, region, points=1000, seed=8)
    assert other.value != first.value
    assert calculus.integrate(r_squared, region, points=3, replicates=2).points == 4


def test_package_root_exports_the_regions():
    assert surrogates.Box is calculus.Box and surrogates.Ball is calculus.Ball and surrogates.Mapped is calculus.Mapped
    assert {"Box", "Ball", "Simplex", "Indicator", "Mapped"} <= set(surrogates.__all__)


# -------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: calculus.Box([0, 1], [1, 1]), r"Box region: every upper bound must exceed its lower bound \(zero or negative width on axes \[1\]\)"),
        (lambda: calculus.Box([0, 0], [1, -1]), r"Box region: .*negative width on axes \[1\]"),
        (lambda: calculus.Box([0, 0], [1, 1, 1]), r"one length d ≥ 1, got shapes \(2,\) and \(3,\)"),
        (lambda: calculus.Box([0, float("nan")], [1, 1]), "Box region: lower and upper must be finite"),
        (lambda: calculus.Ball([0, 0], 0.0), "Ball has zero volume: radius 0"),
        (lambda: calculus.Ball([0, 0], -1.0), "Ball radius must be positive"),
        (lambda: calculus.Simplex([[0, 0], [1, 1], [2, 2]]), "Simplex has zero volume: .* affinely dependent"),
        (lambda: calculus.Simplex([[0, 0], [1e6, 1e-3], [2e6, 2e-3 + 1e-21]]), "affinely dependent"),
        (lambda: calculus.Simplex([[0, 0], [1, 0]]), r"shape \(d \+ 1, d\).*got \(2, 2\)"),
        (lambda: calculus.Mapped(calculus.Box([0, 0], [1, 1]), lambda U: U[:, :1]),
         r"\(n, 2\) to points \(n, 2\) \(a square map.*returned \(1, 1\)"),
        (lambda: calculus.Indicator("x > 0", calculus.Box([0], [1])), "inside must be a callable"),
    ],
)
def test_bad_and_degenerate_regions_are_refused(make, message):
    with pytest.raises(InputError, match=message):
        make()


def test_a_units_rescaled_simplex_is_not_flat():
    # the same triangle in other units (x in metres, y in micrometres) keeps its volume up to the scale
    triangle = calculus.Simplex([[0, 0], [1e3, 0], [0, 1e-6]])
    assert triangle.volume == pytest.approx(0.5e-3)


def test_regions_of_zero_volume_found_by_sampling_are_refused():
    box = calculus.Box([0, 0], [1, 1])
    with pytest.raises(InputError, match="zero volume as far as 16384 sample points show"):
        calculus.integrate(r_squared, calculus.Indicator(lambda X: X[:, 0] > 2, box))
    collapse = calculus.Mapped(box, lambda U: torch.stack((U[:, 0] + U[:, 1], U[:, 0] + U[:, 1]), 1))
    with pytest.raises(InputError, match="zero volume"):
        calculus.integrate(r_squared, collapse)
    with pytest.raises(InputError, match=r"boolean mask of shape \(1024,\).*got torch.float64"):
        calculus.integrate(r_squared, calculus.Indicator(lambda X: X[:, 0] * 1.0, box), points=1024)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(points=0), "points must be a positive integer, got 0"),
        (dict(points=-5), "points must be a positive integer, got -5"),
        (dict(points=2.5), "points must be a positive integer, got 2.5"),
        (dict(replicates=1), "replicates must be at least 2"),
        (dict(sampler="halton"), "sampler must be one of"),
        (dict(seed=-1), "seed must be a non-negative integer"),
    ],
)
def test_bad_integration_settings_are_refused(options, message):
    with pytest.raises(InputError, match=message):
        calculus.integrate(r_squared, calculus.Box([0, 0], [1, 1]), **options)


def test_a_region_must_be_a_region():
    with pytest.raises(InputError, match="region must be a Box, Ball, Simplex, Indicator or Mapped region, got tuple"):
        calculus.integrate(r_squared, ([0, 0], [1, 1]))
