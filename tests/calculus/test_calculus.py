"""surrogates.calculus against closed-form derivatives, its identities and its refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from surrogates import calculus
from surrogates.fitting.functions import FUNCTIONS, get_function
from surrogates.model import MLP

SCALAR_NAMES = [name for name in FUNCTIONS if get_function(name).is_scalar]
VECTOR_NAMES = [name for name in FUNCTIONS if not get_function(name).is_scalar]
TOL = dict(rtol=1e-10, atol=1e-10)


def points_in_box(fn, n: int = 9, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.uniform(fn.lower, fn.upper, size=(n, fn.dim)))


def small_mlp(d: int = 3, m: int = 1, activation: str = "tanh") -> MLP:
    torch.manual_seed(1)
    return MLP(d, m, width=12, depth=2, activation=activation, dtype="float64")


# ------------------------------------------------------------- analytic truth


@pytest.mark.parametrize("name", SCALAR_NAMES)
def test_scalar_quantities_match_closed_forms(name):
    fn = get_function(name)
    X = points_in_box(fn)
    torch.testing.assert_close(calculus.value(fn, X), fn.value(X), **TOL)
    torch.testing.assert_close(calculus.gradient(fn, X), fn.gradient(X), **TOL)
    torch.testing.assert_close(calculus.jacobian(fn, X), fn.jacobian(X), **TOL)
    for method in ("batch-sum", "vmap-rev-rev"):
        torch.testing.assert_close(calculus.hessian(fn, X, method=method), fn.hessian(X), **TOL)
    torch.testing.assert_close(calculus.laplacian(fn, X), fn.laplacian(X), **TOL)


@pytest.mark.parametrize("name", VECTOR_NAMES)
def test_vector_quantities_match_closed_forms(name):
    fn = get_function(name)
    X = points_in_box(fn)
    torch.testing.assert_close(calculus.value(fn, X), fn.value(X), **TOL)
    torch.testing.assert_close(calculus.jacobian(fn, X), fn.jacobian(X), **TOL)
    torch.testing.assert_close(calculus.hessian(fn, X), fn.hessian(X), **TOL)
    torch.testing.assert_close(calculus.laplacian(fn, X), fn.laplacian(X), **TOL)
    with pytest.raises(ValueError, match="scalar f"):
        calculus.gradient(fn, X)


@pytest.mark.parametrize("name", ["rosenbrock", "vec2", "sincos"])
def test_directional_derivative_and_hvp_match_closed_forms(name):
    fn = get_function(name)
    X = points_in_box(fn)
    V = torch.from_numpy(np.random.default_rng(3).normal(size=X.shape))
    unit = V / V.norm(dim=1, keepdim=True)
    J, H = fn.jacobian(X), fn.hessian(X)
    directional = calculus.directional_derivative(fn, X, V)
    products = calculus.hvp(fn, X, V)
    if fn.is_scalar:
        torch.testing.assert_close(directional, (J[:, 0] * unit).sum(-1), **TOL)
        torch.testing.assert_close(products, torch.einsum("nij,nj->ni", H, V), **TOL)
    else:
        torch.testing.assert_close(directional, torch.einsum("nkd,nd->nk", J, unit), **TOL)
        torch.testing.assert_close(products, torch.einsum("nkij,nj->nki", H, V), **TOL)


def test_shared_direction_is_normalised_and_broadcast():
    fn = get_function("quartic")
    X = points_in_box(fn)
    v = torch.tensor([3.0, 4.0], dtype=torch.float64)
    expected = fn.gradient(X) @ (v / 5.0)
    torch.testing.assert_close(calculus.directional_derivative(fn, X, v), expected, **TOL)
    torch.testing.assert_close(calculus.hvp(fn, X, v), fn.hessian(X) @ v, **TOL)


# ------------------------------------------------------------------ identities


@pytest.mark.parametrize("f", [get_function("rosenbrock", dim=4), small_mlp(4, 3)], ids=["analytic", "mlp"])
def test_hessian_is_symmetric_and_its_trace_is_the_laplacian(f):
    X = torch.randn(11, 4, dtype=torch.float64)
    H = calculus.hessian(f, X)
    torch.testing.assert_close(H, H.transpose(-1, -2), rtol=0, atol=1e-12)
    torch.testing.assert_close(calculus.laplacian(f, X), H.diagonal(dim1=-2, dim2=-1).sum(-1), **TOL)


@pytest.mark.parametrize(
    "f", [get_function("sincos"), get_function("rosenbrock"), get_function("cubic"), small_mlp(3, 2)],
    ids=["sincos", "rosenbrock", "cubic", "vector-mlp"],
)
def test_taylor_model_error_shrinks_like_h_cubed(f):
    d = f.in_dim if isinstance(f, MLP) else f.dim
    centre = torch.linspace(-0.3, 0.4, d, dtype=torch.float64)
    model = calculus.taylor(f, centre)
    torch.testing.assert_close(model(centre), calculus.value(f, centre), **TOL)
    direction = torch.linspace(1.0, 2.0, d, dtype=torch.float64)
    errors = []
    for h in (0.02, 0.01):
        x = (centre + h * direction)[None]
        errors.append((model(x) - calculus.value(f, x)).abs().max().item())
    assert 6.0 < errors[0] / errors[1] < 10.0


def test_taylor_model_shapes_and_batched_evaluation():
    mlp = small_mlp(3, 2)
    model = calculus.taylor(mlp, torch.zeros(1, 3, dtype=torch.float64))
    assert model.value.shape == (2,) and model.gradient.shape == (2, 3) and model.hessian.shape == (2, 3, 3)
    X = 1e-3 * torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(model(X), calculus.value(mlp, X), rtol=0, atol=1e-7)
    assert model(X[0]).shape == (2,)
    scalar = calculus.taylor(get_function("quad2"), torch.zeros(2, dtype=torch.float64))
    assert scalar.value.shape == () and scalar.gradient.shape == (2,)
    assert scalar(torch.zeros(4, 2)).shape == (4,)


# ------------------------------------------------------------------ shapes


def test_single_point_gives_unbatched_shapes():
    fn, vec = get_function("rosenbrock", dim=3), get_function("vec2")
    x, y = torch.zeros(3, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    assert calculus.value(fn, x).shape == ()
    assert calculus.gradient(fn, x).shape == (3,)
    assert calculus.hessian(fn, x).shape == (3, 3)
    assert calculus.laplacian(vec, y).shape == (2,)
    assert calculus.hessian(vec, y).shape == (2, 2, 2)
    assert calculus.hvp(vec, y, y + 1).shape == (2, 2)
    assert calculus.directional_derivative(fn, x, x + 1).shape == ()


def test_single_column_output_counts_as_scalar_for_gradient_and_as_vector_otherwise():
    mlp = small_mlp(3, 1)
    X = torch.randn(4, 3, dtype=torch.float64)
    assert calculus.gradient(mlp, X).shape == (4, 3)
    assert calculus.jacobian(mlp, X).shape == (4, 1, 3)
    assert calculus.hessian(mlp, X).shape == (4, 1, 3, 3)
    assert calculus.laplacian(mlp, X).shape == (4, 1)


# ------------------------------------------------------------- dtype & modes


def test_float64_on_request_casts_points_and_a_copy_of_the_module():
    torch.manual_seed(0)
    mlp = MLP(3, 1, width=8, depth=2, dtype="float32")
    X = torch.randn(6, 3)
    H = calculus.hessian(mlp, X, dtype=torch.float64, method="batch-sum")
    assert H.dtype == torch.float64 and mlp.dtype == torch.float32
    torch.testing.assert_close(H.float(), calculus.hessian(mlp, X, method="batch-sum"), rtol=1e-4, atol=1e-5)


def test_points_are_cast_to_the_module_dtype():
    mlp = small_mlp()
    assert calculus.gradient(mlp, torch.randn(5, 3, dtype=torch.float32)).dtype == torch.float64


def test_works_under_no_grad_and_returns_detached_results():
    fn = get_function("quartic")
    X = points_in_box(fn).requires_grad_(True)
    with torch.no_grad():
        H = calculus.hessian(fn, X)
        g = calculus.gradient(fn, X)
    assert not H.requires_grad and not g.requires_grad
    torch.testing.assert_close(H, fn.hessian(X.detach()), **TOL)


@pytest.mark.parametrize("quantity", ["gradient", "jacobian", "hessian", "laplacian"])
def test_refuses_inference_mode(quantity):
    fn = get_function("quad2")
    X = points_in_box(fn)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode.*silently return zeros"):
        getattr(calculus, quantity)(fn, X)
    with torch.inference_mode():
        frozen = X.clone()
    with pytest.raises(RuntimeError, match="inference tensor"):
        getattr(calculus, quantity)(fn, frozen)


def test_value_is_allowed_in_inference_mode():
    fn = get_function("quad2")
    with torch.inference_mode():
        X = points_in_box(fn)
        torch.testing.assert_close(calculus.value(fn, X), fn.value(X))


# ------------------------------------------------------------------- errors


def test_wrong_inputs_give_clear_errors():
    fn = get_function("quad2")
    X = points_in_box(fn)
    with pytest.raises(ValueError, match=r"\(N, d\) or \(d,\) with at least one point, got \(2, 3, 2\)"):
        calculus.gradient(fn, torch.zeros(2, 3, 2))
    with pytest.raises(ValueError, match=r"at least one point, got \(0, 2\)"):
        calculus.hessian(fn, torch.zeros(0, 2))
    with pytest.raises(TypeError, match="torch.Tensor"):
        calculus.hessian(fn, X.numpy())
    with pytest.raises(ValueError, match=r"shape \(2,\) or \(9, 2\).*got \(3,\)"):
        calculus.hvp(fn, X, torch.ones(3))
    with pytest.raises(ValueError, match="zero vector"):
        calculus.directional_derivative(fn, X, torch.zeros(2))
    with pytest.raises(ValueError, match="chunk_size"):
        calculus.gradient(fn, X, chunk_size=0)
    with pytest.raises(ValueError, match="method"):
        calculus.hessian(fn, X, method="finite-differences")
    with pytest.raises(ValueError, match="layerwise.*MLP"):
        calculus.hessian(fn, X, method="layerwise")
    with pytest.raises(ValueError, match=r"returned \(9, 2, 1\)"):
        calculus.value(lambda Z: Z[..., None], X)
    with pytest.raises(ValueError, match=r"one point.*got \(2, 2\)"):
        calculus.taylor(fn, X[:2])


def test_mlp_input_dimension_mismatch_names_the_shapes():
    with pytest.raises(ValueError, match=r"shape \(4, 5\).*d = 3"):
        calculus.hessian(small_mlp(3), torch.zeros(4, 5, dtype=torch.float64))


# --------------------------------------------------------------- properties


@settings(max_examples=8, deadline=None)
@given(chunk=st.integers(1, 20), n=st.integers(1, 25))
def test_results_do_not_depend_on_chunk_size(chunk, n):
    fn = get_function("rosenbrock", dim=3)
    X = torch.linspace(-1, 1, 3 * n, dtype=torch.float64).reshape(n, 3)
    torch.testing.assert_close(calculus.hessian(fn, X, chunk_size=chunk), fn.hessian(X), **TOL)
    torch.testing.assert_close(calculus.gradient(fn, X, chunk_size=chunk), fn.gradient(X), **TOL)
    torch.testing.assert_close(calculus.hvp(fn, X, X, chunk_size=chunk), calculus.hvp(fn, X, X), **TOL)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(2, 30))
def test_each_point_is_independent_of_the_rest_of_the_batch(seed, n):
    mlp = small_mlp(3, 2)
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    order = torch.randperm(n, generator=generator)
    subset = order[: max(1, n // 3)]
    for quantity in (calculus.hessian, calculus.laplacian, calculus.jacobian):
        full = quantity(mlp, X)
        torch.testing.assert_close(quantity(mlp, X[order]), full[order], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(quantity(mlp, X[subset]), full[subset], rtol=1e-12, atol=1e-12)
