"""The layer-wise MLP kernels against the generic autograd routes (the oracle)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from surrogates import calculus
from surrogates.activations import ACTIVATIONS
from surrogates.calculus.layerwise import check_second_derivatives
from surrogates.model import MLP

SMOOTH = [name for name, act in ACTIVATIONS.items() if act.smooth]
TOLERANCE = {torch.float64: dict(rtol=1e-10, atol=1e-11), torch.float32: dict(rtol=2e-4, atol=2e-5)}


def random_mlp(d: int, m: int, activation: str, dtype: str, seed: int = 0) -> MLP:
    """A random MLP whose normalisation is far from the identity, so it is exercised."""
    torch.manual_seed(seed)
    mlp = MLP(d, m, width=16, depth=3, activation=activation, dtype=dtype)
    mlp.set_normalisation(
        x_shift=torch.randn(d),
        x_scale=0.3 + 2 * torch.rand(d),
        y_shift=torch.randn(m),
        y_scale=0.3 + 3 * torch.rand(m),
    )
    return mlp


def autograd_oracle(mlp: MLP):
    """The same network as an opaque callable, so calculus takes its generic routes."""
    return lambda X: mlp(X)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("m", [1, 3])
@pytest.mark.parametrize("activation", SMOOTH)
def test_layerwise_matches_autograd(activation, m, dtype):
    mlp = random_mlp(4, m, activation, dtype)
    X = 1.5 * torch.randn(23, 4, dtype=mlp.dtype)
    oracle = autograd_oracle(mlp)
    tol = TOLERANCE[mlp.dtype]
    torch.testing.assert_close(calculus.hessian(mlp, X), calculus.hessian(oracle, X), **tol)
    torch.testing.assert_close(calculus.laplacian(mlp, X), calculus.laplacian(oracle, X), **tol)
    torch.testing.assert_close(calculus.jacobian(mlp, X), calculus.jacobian(oracle, X), **tol)


@pytest.mark.parametrize(("d", "m"), [(2, 5), (5, 2), (3, 3)])
def test_forward_and_reverse_jacobian_modes_agree_with_autograd(d, m):
    mlp = random_mlp(d, m, "silu", "float64")
    X = torch.randn(10, d, dtype=torch.float64)
    torch.testing.assert_close(calculus.jacobian(mlp, X), calculus.jacobian(autograd_oracle(mlp), X))


def test_layerwise_matches_vmap_route_and_is_symmetric():
    mlp = random_mlp(6, 2, "gelu", "float64")
    X = torch.randn(9, 6, dtype=torch.float64)
    H = calculus.hessian(mlp, X, method="layerwise")
    torch.testing.assert_close(H, calculus.hessian(mlp, X, method="vmap-rev-rev"))
    torch.testing.assert_close(H, H.transpose(-1, -2), rtol=0, atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 7, 10, 64])
def test_chunking_does_not_change_results(chunk):
    mlp = random_mlp(5, 3, "tanh", "float64")
    X = torch.randn(37, 5, dtype=torch.float64)
    for quantity in (calculus.hessian, calculus.laplacian, calculus.jacobian):
        chunked = quantity(mlp, X, chunk_size=chunk)
        torch.testing.assert_close(chunked, quantity(mlp, X), rtol=1e-12, atol=1e-12)


def test_inputs_wider_than_the_hidden_layers():
    mlp = random_mlp(20, 2, "tanh", "float64")  # d = 20 > width 16: no outer-product shortcut
    X = torch.randn(6, 20, dtype=torch.float64)
    torch.testing.assert_close(calculus.hessian(mlp, X), calculus.hessian(autograd_oracle(mlp), X))


def test_single_point_matches_the_batch():
    mlp = random_mlp(3, 1, "softplus", "float64")
    X = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(calculus.hessian(mlp, X[2]), calculus.hessian(mlp, X)[2])
    torch.testing.assert_close(calculus.laplacian(mlp, X[2]), calculus.laplacian(mlp, X)[2])


def test_float64_on_request_for_a_float32_model():
    mlp32 = random_mlp(4, 2, "tanh", "float32")
    mlp64 = random_mlp(4, 2, "tanh", "float64")
    mlp64.load_state_dict({k: v.double() for k, v in mlp32.state_dict().items()})
    X = torch.randn(8, 4, dtype=torch.float64)
    H = calculus.hessian(mlp32, X, dtype=torch.float64)
    assert H.dtype == torch.float64
    torch.testing.assert_close(H, calculus.hessian(mlp64, X), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(calculus.laplacian(mlp32, X, dtype="float64"), calculus.laplacian(mlp64, X))


@pytest.mark.parametrize("quantity", ["hessian", "laplacian", "taylor"])
def test_relu_second_derivatives_are_refused(quantity):
    mlp = random_mlp(3, 1, "relu", "float64")
    X = torch.randn(4, 3, dtype=torch.float64)
    message = "zero second derivative almost everywhere.*tanh, silu, softplus or gelu"
    with pytest.raises(ValueError, match=message):
        getattr(calculus, quantity)(mlp, X[0] if quantity == "taylor" else X)
    with pytest.raises(ValueError, match="relu"):
        calculus.hvp(mlp, X, X)
    assert calculus.gradient(mlp, X).shape == (4, 3)


def test_subclass_with_another_forward_takes_the_autograd_route():
    class Squared(MLP):
        def forward(self, x):
            return super().forward(x) ** 2

    torch.manual_seed(0)
    squared = Squared(3, 1, width=8, depth=2, dtype="float64")
    X = torch.randn(5, 3, dtype=torch.float64)
    expected = calculus.hessian(lambda Z: squared(Z), X)
    torch.testing.assert_close(calculus.hessian(squared, X), expected)
    torch.testing.assert_close(calculus.jacobian(squared, X), calculus.jacobian(lambda Z: squared(Z), X))


def test_relu_modules_inside_other_networks_are_refused():
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    with pytest.raises(ValueError, match="ReLU"):
        check_second_derivatives(net)
    check_second_derivatives(nn.Sequential(nn.Linear(2, 4), nn.Tanh()))
