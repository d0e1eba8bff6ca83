"""surrogates.calculus determinants, divergence and curl against closed forms, and their refusals."""

from __future__ import annotations

import math

import pytest
import torch

from surrogates import calculus
from surrogates.calculus import vector
from surrogates.errors import InputError
from surrogates.model import MLP

TOL = dict(rtol=1e-12, atol=1e-12)


def _points(n: int, d: int, seed: int = 0, low: float = -2.0, high: float = 2.0) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def polar(U: torch.Tensor) -> torch.Tensor:
    r, theta = U[:, 0], U[:, 1]
    return torch.stack((r * theta.cos(), r * theta.sin()), dim=1)


def spherical(U: torch.Tensor) -> torch.Tensor:
    r, theta, phi = U[:, 0], U[:, 1], U[:, 2]
    return torch.stack((r * theta.sin() * phi.cos(), r * theta.sin() * phi.sin(), r * theta.cos()), dim=1)


def squares(U: torch.Tensor) -> torch.Tensor:
    """(u² − v², 2uv): z ↦ z², whose Jacobian determinant is |2z|² = 4(u² + v²)."""
    u, v = U[:, 0], U[:, 1]
    return torch.stack((u**2 - v**2, 2 * u * v), dim=1)


def rotation(theta: float):
    c, s = math.cos(theta), math.sin(theta)
    R = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    return lambda X: X @ R.T


def swirl(X):  # (−y, x, 0)
    return torch.stack((-X[:, 1], X[:, 0], torch.zeros_like(X[:, 0])), dim=1)


def squares3(X):  # (x², y², z²)
    return X**2


def gradient_of_xyz(X):  # (yz, xz, xy) = ∇(xyz)
    x, y, z = X.unbind(1)
    return torch.stack((y * z, x * z, x * y), dim=1)


# ------------------------------------------------------------- determinants


def test_determinant_of_polar_coordinates_is_r():
    U = torch.stack((_points(50, 1, 1, 0.1, 3.0)[:, 0], _points(50, 1, 2, 0.0, 2 * math.pi)[:, 0]), dim=1)
    torch.testing.assert_close(calculus.jacobian_determinant(polar, U), U[:, 0], **TOL)
    torch.testing.assert_close(calculus.log_abs_det_jacobian(polar, U), U[:, 0].log(), **TOL)


def test_determinant_of_spherical_coordinates_is_r2_sin_theta():
    U = torch.stack((_points(40, 1, 3, 0.1, 2.0)[:, 0], _points(40, 1, 4, 0.1, 3.0)[:, 0],
                     _points(40, 1, 5, 0.0, 6.0)[:, 0]), dim=1)
    torch.testing.assert_close(calculus.jacobian_determinant(spherical, U), U[:, 0] ** 2 * U[:, 1].sin(), **TOL)


@pytest.mark.parametrize("theta", [0.0, 0.7, -2.5])
def test_determinant_of_a_rotation_is_one(theta):
    X = _points(30, 2, 6)
    torch.testing.assert_close(calculus.jacobian_determinant(rotation(theta), X), torch.ones(30, dtype=torch.float64), **TOL)
    torch.testing.assert_close(calculus.log_abs_det_jacobian(rotation(theta), X), torch.zeros(30, dtype=torch.float64), **TOL)


def test_determinant_of_z_squared_is_four_r_squared_and_log_det_matches():
    X = _points(60, 2, 7)
    expected = 4 * (X**2).sum(1)
    torch.testing.assert_close(calculus.jacobian_determinant(squares, X), expected, **TOL)
    torch.testing.assert_close(calculus.log_abs_det_jacobian(squares, X), expected.log(), **TOL)


def test_log_det_stays_finite_where_the_determinant_underflows_and_is_signless():
    X = _points(5, 3, 8)
    tiny = lambda P: 1e-200 * P  # det = 1e-600: zero in float64  # noqa: E731
    assert torch.all(calculus.jacobian_determinant(tiny, X) == 0)
    torch.testing.assert_close(calculus.log_abs_det_jacobian(tiny, X), torch.full((5,), 3 * math.log(1e-200), dtype=torch.float64))
    flip = lambda P: torch.stack((P[:, 1], P[:, 0]), 1)  # a reflection: det = −1, log |det| = 0  # noqa: E731
    torch.testing.assert_close(calculus.jacobian_determinant(flip, X[:, :2]), -torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(calculus.log_abs_det_jacobian(flip, X[:, :2]), torch.zeros(5, dtype=torch.float64))


def test_single_point_and_function_of_one_variable():
    x = torch.tensor([1.5, 0.5], dtype=torch.float64)
    assert calculus.jacobian_determinant(polar, x).shape == ()
    assert float(calculus.jacobian_determinant(polar, x)) == pytest.approx(1.5, rel=1e-14)
    assert calculus.curl(squares, x).shape == (2, 2)
    # f: R → R, scalar output: det J = ∇·f = f′
    t = _points(7, 1, 9)
    torch.testing.assert_close(calculus.jacobian_determinant(lambda P: P[:, 0] ** 3, t), 3 * t[:, 0] ** 2, **TOL)
    torch.testing.assert_close(calculus.divergence(lambda P: P[:, 0] ** 3, t), 3 * t[:, 0] ** 2, **TOL)


# ------------------------------------------------------------ divergence and curl


@pytest.mark.parametrize(
    "field, divergence, curl",
    [
        (swirl, lambda X: torch.zeros(len(X)), lambda X: torch.tensor([0.0, 0.0, 2.0]).expand(len(X), 3)),
        (squares3, lambda X: 2 * X.sum(1), lambda X: torch.zeros(len(X), 3)),
        (gradient_of_xyz, lambda X: torch.zeros(len(X)), lambda X: torch.zeros(len(X), 3)),
    ],
    ids=["(-y,x,0)", "(x2,y2,z2)", "(yz,xz,xy)"],
)
def test_divergence_and_curl_of_the_worked_fields(field, divergence, curl):
    X = _points(40, 3, 10)
    for method in calculus.DIVERGENCE_METHODS:
        torch.testing.assert_close(calculus.divergence(field, X, method=method), divergence(X).double(), **TOL)
    torch.testing.assert_close(calculus.curl(field, X), curl(X).double(), **TOL)


def test_curl_in_other_dimensions_is_the_antisymmetric_part_of_the_jacobian():
    X = _points(20, 2, 11)
    C = calculus.curl(lambda P: torch.stack((-P[:, 1], P[:, 0]), 1), X)  # plane rotation: scalar curl 2
    torch.testing.assert_close(C, torch.tensor([[0.0, 2.0], [-2.0, 0.0]], dtype=torch.float64).expand(20, 2, 2), **TOL)
    torch.manual_seed(0)
    A = torch.randn(4, 4, dtype=torch.float64)
    X4 = _points(6, 4, 12)
    quadratic = lambda P: (P @ A.T) * P  # f_i = x_i (A x)_i  # noqa: E731
    J = torch.diag_embed((X4 @ A.T)) + X4[:, :, None] * A[None]  # ∂f_i/∂x_j = δ_ij (Ax)_i + x_i A_ij
    torch.testing.assert_close(calculus.curl(quadratic, X4), J.transpose(1, 2) - J, **TOL)
    torch.testing.assert_close(calculus.divergence(quadratic, X4), J.diagonal(dim1=1, dim2=2).sum(1), **TOL)


def test_mlp_layerwise_and_opaque_routes_agree():
    torch.manual_seed(2)
    model = MLP(3, 3, width=16, depth=2, activation="tanh")
    X = _points(33, 3, 13)
    opaque = lambda P: model(P)  # noqa: E731
    J = calculus.jacobian(opaque, X)
    for f in (model, opaque):
        torch.testing.assert_close(calculus.jacobian_determinant(f, X), torch.linalg.det(J), **TOL)
        torch.testing.assert_close(calculus.log_abs_det_jacobian(f, X), torch.linalg.slogdet(J).logabsdet, **TOL)
        torch.testing.assert_close(calculus.divergence(f, X, method="forward"), J.diagonal(dim1=1, dim2=2).sum(1), **TOL)
        torch.testing.assert_close(calculus.curl(f, X), vector.curl_from_jacobian(J), **TOL)
    # chunks do not change results; float32 points on a float64 model are cast
    torch.testing.assert_close(calculus.divergence(model, X, chunk_size=5, method="forward"), calculus.divergence(model, X), **TOL)
    assert calculus.curl(model, X.float()).dtype == torch.float64


# -------------------------------------------------------------------- refusals


def test_non_square_maps_are_refused_naming_the_shapes():
    X = _points(4, 3, 14)
    to_2 = lambda P: P[:, :2] ** 2  # noqa: E731
    for function in (calculus.jacobian_determinant, calculus.log_abs_det_jacobian, calculus.divergence, calculus.curl):
        with pytest.raises(InputError, match=r"square map .* \(N, 3\) to outputs of shape \(N, 2\) \(its Jacobian is \(N, 2, 3\)\)"):
            function(to_2, X)
    with pytest.raises(InputError, match=r"square map .* \(N, 2\) to outputs of shape \(N, 1\)"):
        calculus.curl(lambda P: (P**2).sum(1), X[:, :2])  # a scalar field has no curl
    with pytest.raises(InputError, match=r"square map .* \(N, 3\) to outputs of shape \(N, 2\)"):
        calculus.divergence(to_2, X, method="forward")
    with pytest.raises(InputError, match="method must be one of"):
        calculus.divergence(squares, X[:, :2], method="trace")
    with pytest.raises(InputError, match=r"square Jacobian .* got a Jacobian of shape \(4, 2, 3\)"):
        vector.determinant_from_jacobian(torch.zeros(4, 2, 3))
