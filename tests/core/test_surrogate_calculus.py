"""Surrogate.jacobian_determinant / log_abs_det_jacobian / divergence / curl / integrate: numpy and
torch in and out, ensembles, the training domain, and fitted surrogates against closed forms."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
import torch

import surrogates
from surrogates import calculus
from surrogates.errors import ExtrapolationError, ExtrapolationWarning, InputError
from surrogates.model import MLP
from surrogates.surrogate import Surrogate

FAST = ["debug=fast", "trainer.enable_progress_bar=false", "logger=none"]


def _members(d: int, m: int, k: int, seed: int = 0) -> list[MLP]:
    torch.manual_seed(seed)
    return [MLP(d, m, width=12, depth=2, activation="tanh") for _ in range(k)]


@pytest.fixture(scope="module")
def field2():
    """A 3-member ensemble R² → R² on the box [0, 1] × [0, 20] (inputs of different units)."""
    members = _members(2, 2, 3)
    for member in members:
        member.set_normalisation(torch.tensor([0.5, 10.0]), torch.tensor([0.3, 4.0]), torch.zeros(2), torch.tensor([1.0, 3.0]))
    return Surrogate(members, ["u", "v"], ["p", "q"], False, lower=[0, 0], upper=[1, 20])


@pytest.fixture(scope="module")
def field3():
    return Surrogate(_members(3, 3, 1, seed=1), ["x", "y", "z"], ["a", "b", "c"], False, lower=[-1] * 3, upper=[1] * 3)


@pytest.fixture(scope="module")
def scalar2():
    return Surrogate(_members(2, 1, 2, seed=2), ["u", "v"], ["f"], True, lower=[0, 0], upper=[1, 20])


def _inside_points(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform([0, 0], [1, 20], size=(n, 2))


# ------------------------------------------------------------ pointwise quantities


def test_quantities_of_the_ensemble_mean_with_member_std(field2):
    X = _inside_points(17)
    J = field2.jacobian(X)  # the ensemble-mean Jacobian
    np.testing.assert_allclose(field2.jacobian_determinant(X), np.linalg.det(J), rtol=1e-12)
    np.testing.assert_allclose(field2.log_abs_det_jacobian(X), np.log(np.abs(np.linalg.det(J))), rtol=1e-12)
    np.testing.assert_allclose(field2.divergence(X), np.trace(J, axis1=1, axis2=2), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(field2.curl(X), J.transpose(0, 2, 1) - J, rtol=1e-12, atol=1e-15)
    # a determinant is not linear: the mean surrogate's is not the mean of the members', but its std is theirs
    member_dets = np.stack([np.linalg.det(calculus.jacobian(m, torch.from_numpy(X)).numpy()) for m in field2.members])
    assert not np.allclose(member_dets.mean(0), np.linalg.det(J), rtol=1e-6)
    _, std = field2.jacobian_determinant(X, return_std=True)
    np.testing.assert_allclose(std, member_dets.std(0, ddof=1), rtol=1e-10)
    member_divs = np.stack([np.trace(calculus.jacobian(m, torch.from_numpy(X)).numpy(), axis1=1, axis2=2) for m in field2.members])
    np.testing.assert_allclose(field2.divergence(X, return_std=True)[1], member_divs.std(0, ddof=1), rtol=1e-10)


def test_numpy_torch_and_single_points(field2, field3):
    X = _inside_points(5)
    for name in ("jacobian_determinant", "log_abs_det_jacobian", "divergence", "curl"):
        method = getattr(field2, name)
        as_numpy, as_torch, single = method(X), method(torch.from_numpy(X).float()), method(X[0])
        assert isinstance(as_numpy, np.ndarray) and isinstance(as_torch, torch.Tensor) and as_torch.dtype == torch.float32
        np.testing.assert_allclose(as_torch.numpy(), as_numpy, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(single, as_numpy[0], rtol=1e-12)
        assert single.shape == as_numpy.shape[1:]
    assert field2.curl(X).shape == (5, 2, 2) and field3.curl(np.zeros((4, 3))).shape == (4, 3)
    J = field3.jacobian(np.full(3, 0.2))
    np.testing.assert_allclose(field3.curl(np.full(3, 0.2)), [J[2, 1] - J[1, 2], J[0, 2] - J[2, 0], J[1, 0] - J[0, 1]], rtol=1e-12)


def test_non_square_surrogates_are_refused(scalar2):
    for name in ("jacobian_determinant", "log_abs_det_jacobian", "divergence", "curl"):
        with pytest.raises(InputError, match=rf"{name} needs a square map .* maps 2 inputs \['u', 'v'\] to 1 output \['f'\]"):
            getattr(scalar2, name)(_inside_points(3))


def test_pointwise_extrapolation_as_for_every_query(field2):
    X = np.array([[0.5, 10.0], [3.4, 10.0]])
    with pytest.warns(ExtrapolationWarning, match=r"1 of 2 query points lie outside the training box") as record:
        field2.divergence(X)
    assert record[0].filename == __file__
    with pytest.raises(ExtrapolationError):
        field2.jacobian_determinant(X, extrapolation="error")
    for name in ("jacobian_determinant", "log_abs_det_jacobian", "divergence", "curl"):
        result = getattr(field2, name)(X, extrapolation="nan")
        assert np.isnan(result[1]).all() and np.isfinite(result[0]).all(), name


# --------------------------------------------------------------------- integrals


def test_ensemble_integral_is_the_members_mean_with_their_spread_apart(field2):
    box = surrogates.Box([0.1, 2.0], [0.9, 18.0])
    result = field2.integrate(box, points=2048, seed=3)
    members = [calculus.integrate(m, box, points=2048, seed=3) for m in field2.members]
    np.testing.assert_allclose(result.value, np.mean([r.value for r in members], axis=0), rtol=1e-12)
    np.testing.assert_allclose(result.ensemble_std, np.std([r.value for r in members], axis=0, ddof=1), rtol=1e-10)
    assert result.value.shape == result.stderr.shape == result.ensemble_std.shape == (2,)
    assert np.all(result.stderr > 0) and np.all(result.stderr < 1e-3 * result.ensemble_std)
    # the same points for every member: the mean's replicates are the mean surrogate's own integrals
    mean_model = calculus.integrate(field2.model, box, points=2048, seed=3)
    np.testing.assert_allclose(result.value, mean_model.value, rtol=1e-12)
    np.testing.assert_allclose(result.stderr, mean_model.stderr, rtol=1e-8)


def test_scalar_surrogate_integral_is_a_float(scalar2):
    result = scalar2.integrate(surrogates.Simplex([[0, 0], [1, 0], [0, 20]]), points=1024)
    assert isinstance(result.value, float) and isinstance(result.stderr, float) and isinstance(result.ensemble_std, float)


def test_a_region_outside_the_training_domain_warns_at_the_callers_line(scalar2):
    ball = surrogates.Ball([0.9, 10.0], 0.5)  # sticks out past u = 1
    with pytest.warns(ExtrapolationWarning, match=re.escape("sample points of Ball(center=[0.9, 10.0], radius=0.5) lie outside")) as record:
        scalar2.integrate(ball, points=1024)
    assert len(record) == 1 and record[0].filename == __file__
    with pytest.raises(ExtrapolationError, match="sample points of Ball"):
        scalar2.integrate(ball, points=1024, extrapolation="error")
    assert math.isnan(scalar2.integrate(ball, points=1024, extrapolation="nan").value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # inside: silent
        scalar2.integrate(surrogates.Ball([0.5, 10.0], 0.4), points=1024)
        # an indicator's points outside its mask are never evaluated, so they do not count
        inside_half = surrogates.Indicator(lambda X: X[:, 0] <= 1.0, surrogates.Box([0, 0], [2, 20]))
        scalar2.integrate(inside_half, points=1024)


def test_integrate_refuses_a_region_of_another_dimension(scalar2):
    with pytest.raises(InputError, match=r"region of R\^3, but this surrogate has 2 inputs \['u', 'v'\]"):
        scalar2.integrate(surrogates.Ball([0, 0, 0], 1.0))
    with pytest.raises(InputError, match="points must be a positive integer"):
        scalar2.integrate(surrogates.Box([0, 0], [1, 1]), points=0)
    with pytest.raises(InputError, match="region must be a Box"):
        scalar2.integrate([[0, 0], [1, 1]])


# --------------------------------------------------------------- fitted surrogates


def _sample(lower, upper, n=2000):
    return np.random.default_rng(1).uniform(lower, upper, size=(n, len(lower)))


def _central(lower, upper, n=500):
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    pad = 0.1 * (upper - lower)
    return np.random.default_rng(2).uniform(lower + pad, upper - pad, size=(n, len(lower)))


def test_fitted_z_squared_map_determinant_divergence_curl_and_integral_within_one_percent():
    lower, upper = [0.5, -1.0], [2.0, 1.0]
    X = _sample(lower, upper)
    s = surrogates.fit(X, np.c_[X[:, 0] ** 2 - X[:, 1] ** 2, 2 * X[:, 0] * X[:, 1]], overrides=FAST, lower=lower, upper=upper)
    T = _central(lower, upper)
    u, v = T[:, 0], T[:, 1]
    det = 4 * (u**2 + v**2)
    assert np.max(np.abs(s.jacobian_determinant(T) - det) / det) < 0.01
    assert np.max(np.abs(s.log_abs_det_jacobian(T) - np.log(det))) < 0.01
    assert np.max(np.abs(s.divergence(T) - 4 * u) / (4 * u)) < 0.01
    curl = s.curl(T)  # ∂_u f₂ − ∂_v f₁ = 2v + 2v
    assert np.max(np.abs(curl[:, 0, 1] - 4 * v)) < 0.01 * np.max(np.abs(4 * v))
    # ∬ over [0.6, 1.8] × [0, 0.9] of (u² − v², 2uv)
    a, b, c, e = 0.6, 1.8, 0.0, 0.9
    truth = np.array([(b**3 - a**3) / 3 * (e - c) - (b - a) * (e**3 - c**3) / 3, (b**2 - a**2) * (e**2 - c**2) / 2])
    result = s.integrate(surrogates.Box([a, c], [b, e]))
    assert np.all(np.abs(result.value - truth) < 0.01 * np.abs(truth))


def test_fitted_disk_integral_of_r_squared_is_8_pi_within_one_percent_three_ways():
    X = _sample([-2, -2], [2, 2])
    s = surrogates.fit(X, (X**2).sum(1), overrides=FAST, lower=[-2, -2], upper=[2, 2])
    regions = [
        surrogates.Ball([0, 0], 2.0),
        surrogates.Mapped(surrogates.Box([0, 0], [2, 2 * math.pi]), lambda U: torch.stack((U[:, 0] * U[:, 1].cos(), U[:, 0] * U[:, 1].sin()), 1)),
        surrogates.Indicator(lambda P: (P**2).sum(1) <= 4, surrogates.Box([-2, -2], [2, 2])),
    ]
    for region in regions:
        result = s.integrate(region, points=2**15)
        assert abs(result.value - 8 * math.pi) < 0.01 * 8 * math.pi, region


def test_fitted_3d_field_divergence_curl_and_ball_integral_within_one_percent():
    X = _sample([-1, -1, -1], [1, 1, 1])
    x, y, z = X.T
    s = surrogates.fit(X, np.c_[-y + x**2, x + y**2, z**2], overrides=FAST, lower=[-1] * 3, upper=[1] * 3)
    T = _central([-1] * 3, [1] * 3)
    assert np.max(np.abs(s.divergence(T) - 2 * T.sum(1))) < 0.01 * 6
    assert np.max(np.abs(s.curl(T) - [0, 0, 2])) < 0.01 * 2
    result = s.integrate(surrogates.Ball([0, 0, 0], 1.0))  # each component integrates to 4π/15
    assert np.all(np.abs(result.value - 4 * math.pi / 15) < 0.01 * 4 * math.pi / 15)
