"""Property tests (hypothesis) of the derivative API on random package MLPs and analytic functions.

tests/calculus/test_calculus.py checks closed forms, and these identities on a few fixed functions; here
hypothesis draws the function (MLP architecture, activation, input/output sizes, seed, or one
of the analytic test functions), the points, the chunk size and the batch composition:

* Hessians are symmetric; the Laplacian is their trace;
* the directional derivative is the Jacobian applied to the unit direction;
* the Jacobian of the gradient (autograd through a differentiable gradient) is the Hessian
  (for MLPs an independent check of the layer-wise Hessian kernel);
* Hessian-vector products are H·v;
* nothing depends on the chunk size or on which other points share the batch.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from surrogates import calculus
from surrogates.fitting.functions import FUNCTIONS, get_function
from surrogates.model import MLP

ACTIVATIONS = ["tanh", "silu", "softplus", "gelu"]
SCALAR_FUNCTIONS = [name for name in FUNCTIONS if get_function(name).is_scalar]
TOL = dict(rtol=1e-9, atol=1e-10)
SETTINGS = settings(max_examples=10, deadline=None, derandomize=True)


@st.composite
def mlps(draw, scalar: bool | None = None):
    d = draw(st.integers(1, 5))
    m = 1 if scalar else draw(st.integers(1, 3)) if scalar is None else draw(st.integers(2, 3))
    torch.manual_seed(draw(st.integers(0, 2**16)))
    net = MLP(d, m, width=draw(st.integers(2, 12)), depth=draw(st.integers(1, 3)),
              activation=draw(st.sampled_from(ACTIVATIONS)), dtype="float64")
    # non-trivial normalisation: derivatives must carry the units through it
    net.set_normalisation(torch.randn(d, dtype=torch.float64), torch.rand(d, dtype=torch.float64) + 0.5,
                          torch.randn(m, dtype=torch.float64), torch.rand(m, dtype=torch.float64) + 0.5)
    return net


@st.composite
def analytic(draw):
    name = draw(st.sampled_from(SCALAR_FUNCTIONS))
    try:
        return get_function(name, dim=draw(st.integers(2, 4)))
    except Exception:  # fixed-dimension functions take no dim
        return get_function(name)


def _dim(f) -> int:
    return f.in_dim if isinstance(f, MLP) else f.dim


def _points(f, n: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    if isinstance(f, MLP):
        return torch.from_numpy(rng.normal(size=(n, f.in_dim)))
    return torch.from_numpy(rng.uniform(f.lower, f.upper, size=(n, f.dim)))


functions = st.one_of(mlps(), analytic())
scalar_functions = st.one_of(mlps(scalar=True), analytic())
seeds = st.integers(0, 2**16)
sizes = st.integers(1, 12)


@SETTINGS
@given(f=functions, n=sizes, seed=seeds)
def test_hessian_is_symmetric_and_laplacian_is_its_trace(f, n, seed):
    X = _points(f, n, seed)
    H = calculus.hessian(f, X)
    torch.testing.assert_close(H, H.transpose(-1, -2), rtol=0, atol=1e-11 * max(1.0, float(H.abs().max())))
    torch.testing.assert_close(calculus.laplacian(f, X), H.diagonal(dim1=-2, dim2=-1).sum(-1), **TOL)


@SETTINGS
@given(f=functions, n=sizes, seed=seeds, per_point=st.booleans())
def test_directional_derivative_is_jacobian_times_unit_direction(f, n, seed, per_point):
    X = _points(f, n, seed)
    generator = torch.Generator().manual_seed(seed)
    v = torch.randn(n if per_point else 1, _dim(f), generator=generator, dtype=torch.float64) * 3.0
    u = v / v.norm(dim=-1, keepdim=True)
    expected = torch.einsum("nmd,nd->nm", calculus.jacobian(f, X), u.expand(n, -1))
    got = calculus.directional_derivative(f, X, v if per_point else v[0])
    torch.testing.assert_close(got.reshape(n, -1), expected, **TOL)


@SETTINGS
@given(f=scalar_functions, n=sizes, seed=seeds)
def test_jacobian_of_the_gradient_is_the_hessian(f, n, seed):
    def differentiable_gradient(Z: torch.Tensor) -> torch.Tensor:
        return torch.autograd.grad(f(Z).sum(), Z, create_graph=True)[0]

    X = _points(f, n, seed)
    d = _dim(f)
    # an MLP's single output column keeps its axis in hessian(): (N, 1, d, d)
    H = calculus.hessian(f, X).reshape(n, d, d)
    torch.testing.assert_close(calculus.jacobian(differentiable_gradient, X), H, **TOL)
    torch.testing.assert_close(calculus.gradient(f, X), differentiable_gradient(X.clone().requires_grad_()).detach(), **TOL)


@SETTINGS
@given(f=functions, n=sizes, seed=seeds)
def test_hvp_is_hessian_times_vector(f, n, seed):
    X = _points(f, n, seed)
    V = torch.from_numpy(np.random.default_rng(seed + 1).normal(size=X.shape))
    H = calculus.hessian(f, X)
    expected = torch.einsum("n...ij,nj->n...i", H, V)
    torch.testing.assert_close(calculus.hvp(f, X, V), expected, **TOL)


@SETTINGS
@given(f=functions, n=st.integers(1, 25), chunk=st.integers(1, 9), seed=seeds)
def test_results_do_not_depend_on_chunk_size(f, n, chunk, seed):
    X = _points(f, n, seed)
    for quantity in (calculus.value, calculus.gradient if _scalar(f) else calculus.jacobian,
                     calculus.jacobian, calculus.hessian, calculus.laplacian):
        torch.testing.assert_close(quantity(f, X, chunk_size=chunk), quantity(f, X), rtol=1e-12, atol=1e-13)


def _scalar(f) -> bool:
    return (f.out_dim if isinstance(f, MLP) else (1 if f.is_scalar else 2)) == 1


@SETTINGS
@given(f=functions, n=st.integers(2, 20), seed=seeds, data=st.data())
def test_results_do_not_depend_on_the_other_points_in_the_batch(f, n, seed, data):
    X = _points(f, n, seed)
    order = torch.tensor(data.draw(st.permutations(range(n))))
    subset = torch.tensor(sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=n))))
    for quantity in (calculus.value, calculus.jacobian, calculus.hessian, calculus.laplacian):
        full = quantity(f, X)
        torch.testing.assert_close(quantity(f, X[order]), full[order], rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(quantity(f, X[subset]), full[subset], rtol=1e-12, atol=1e-13)
