"""Tests for the analytic test functions: closed forms vs autograd, shapes, critical points."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import jacrev, vmap

from surrogates.fitting.functions import FUNCTIONS, TestFunction, get_function

N_DIM_FAMILIES = ("rosenbrock", "quadratic", "sum_of_sines", "convex_sines", "bump")

# Every registered function; the N-dimensional families at two dimensions.
CASES = [
    pytest.param((name, dim), id=f"{name}-{dim}" if dim else name)
    for name in FUNCTIONS
    for dim in ((2, 5) if name in N_DIM_FAMILIES else (None,))
]
SCALAR_CASES = [c for c in CASES if c.values[0][0] != "vec2"]


def make(case) -> TestFunction:
    name, dim = case
    return get_function(name, dim=dim)


def random_points(f: TestFunction, n: int = 16, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    X = rng.uniform(f.lower, f.upper, size=(n, f.dim))
    return torch.as_tensor(X, dtype=dtype)


def assert_close(actual, expected, rel=1e-10):
    actual = torch.as_tensor(actual, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    assert actual.shape == expected.shape
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * scale)


def classify(eigenvalues: np.ndarray, tol: float = 1e-8) -> str:
    scale = max(1.0, float(np.abs(eigenvalues).max()))
    pos, neg = eigenvalues > tol * scale, eigenvalues < -tol * scale
    if pos.all():
        return "minimum"
    if neg.all():
        return "maximum"
    if pos.any() and neg.any():
        return "saddle"
    return "degenerate"


# ------------------------------------------------------------------ metadata


@pytest.mark.parametrize("case", CASES)
def test_metadata(case):
    f = make(case)
    assert f.name == case[0]
    if case[1] is not None:
        assert f.dim == case[1]
    assert isinstance(f.lower, np.ndarray) and f.lower.dtype == np.float64
    assert f.lower.shape == f.upper.shape == (f.dim,)
    assert np.all(f.lower < f.upper)
    assert f.is_scalar == (f.out_dim == 1)
    assert f.__doc__ and f.__doc__.strip()
    # params rebuild an identical function
    g = get_function(f.name, **f.params)
    X = random_points(f, 4)
    assert_close(g.value(X), f.value(X), rel=0)


def test_not_collected_by_pytest():
    assert TestFunction.__test__ is False


# --------------------------------------------------- closed forms vs autograd


@pytest.mark.parametrize("case", CASES)
def test_derivatives_match_autograd(case):
    f = make(case)
    X = random_points(f, 16)

    def single(x):  # (d,) -> () or (m,)
        return f.value(x)

    J_auto = vmap(jacrev(single))(X)  # (N, d) or (N, m, d)
    H_auto = vmap(jacrev(jacrev(single)))(X)  # (N, d, d) or (N, m, d, d)
    if f.is_scalar:
        assert_close(f.gradient(X), J_auto)
        assert_close(f.jacobian(X), J_auto.unsqueeze(1))
    else:
        assert_close(f.jacobian(X), J_auto)
    assert_close(f.hessian(X), H_auto)


@pytest.mark.parametrize("case", CASES)
def test_laplacian_is_hessian_trace_and_hessian_symmetric(case):
    f = make(case)
    X = random_points(f, 32, seed=1)
    H = f.hessian(X)
    assert torch.equal(H, H.transpose(-1, -2))
    assert_close(f.laplacian(X), H.diagonal(dim1=-2, dim2=-1).sum(-1), rel=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_shapes_dtypes_and_array_types(case):
    f = make(case)
    d, m = f.dim, f.out_dim
    lead = () if f.is_scalar else (m,)
    shapes = {
        "value": lead,
        "jacobian": (m, d),
        "hessian": lead + (d, d),
        "laplacian": lead,
    }
    if f.is_scalar:
        shapes["gradient"] = (d,)
    X64 = random_points(f, 7)
    for dtype in (torch.float64, torch.float32):
        X = X64.to(dtype)
        for method, shape in shapes.items():
            out = getattr(f, method)(X)
            assert isinstance(out, torch.Tensor)
            assert out.dtype == dtype and out.device == X.device
            assert out.shape == (7,) + shape, method
            single = getattr(f, method)(X[3])
            assert single.shape == shape, method
            # a lone row may take a different BLAS path: agree to rounding, not bitwise
            assert_close(single, out[3], rel=1e-12 if dtype == torch.float64 else 1e-5)
    Xnp = X64.numpy()
    for method, shape in shapes.items():
        out = getattr(f, method)(Xnp)
        assert isinstance(out, np.ndarray) and out.dtype == np.float64
        assert out.shape == (7,) + shape
        assert_close(out, getattr(f, method)(X64), rel=0)
        single = getattr(f, method)(Xnp[3])
        assert isinstance(single, np.ndarray) and single.shape == shape
        listed = getattr(f, method)(Xnp.tolist())
        assert isinstance(listed, np.ndarray) and listed.shape == (7,) + shape
    # __call__ is value; float32 agrees with float64 to float32 precision
    assert_close(f(X64), f.value(X64), rel=0)
    assert_close(f.value(X64.float()), f.value(X64), rel=1e-5)
    # empty batch
    assert f.value(np.zeros((0, d))).shape == (0,) + lead


def test_integer_input_is_promoted():
    f = get_function("quad2")
    out = f.value(torch.tensor([[1, 1]]))
    assert out.dtype == torch.get_default_dtype()
    assert float(out[0]) == 3.0
    assert f.value(np.array([1, 1])) == 3.0


def test_output_is_differentiable_when_input_requires_grad():
    f = get_function("rosenbrock", dim=3)
    X = random_points(f, 5).requires_grad_(True)
    (g,) = torch.autograd.grad(f.value(X).sum(), X)
    assert_close(g, f.gradient(X.detach()))


def test_constant_hessian_is_writable_copy():
    f = get_function("quadratic", dim=3)
    H = f.hessian(np.zeros((2, 3)))
    H[0] = 0.0
    assert np.all(f.hessian(np.zeros((2, 3)))[0] == f.Q)


# ------------------------------------------------------------ definitions


def test_mixed10_matches_protocol():
    # Rebuilt from shared/protocol.md: ½ xᵀAx + Σ sin(xᵢ), A = (M+Mᵀ)/4,
    # M = numpy.random.default_rng(0).standard_normal((10,10)), box [-1,1]¹⁰.
    M = np.random.default_rng(0).standard_normal((10, 10))
    A = (M + M.T) / 4
    f = get_function("mixed10")
    assert f.dim == 10 and f.is_scalar
    np.testing.assert_array_equal(f.lower, -np.ones(10))
    np.testing.assert_array_equal(f.upper, np.ones(10))
    X = np.random.default_rng(5).uniform(-1, 1, (50, 10))
    expected = np.array([0.5 * x @ A @ x + np.sin(x).sum() for x in X])
    np.testing.assert_allclose(f.value(X), expected, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(f.gradient(X), X @ A + np.cos(X), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize(
    "name, formula, lo, hi",
    [
        ("quad2", lambda x, y: x**2 + 2 * y**2, -2, 2),
        ("quartic", lambda x, y: x**4 + y**4 - 4 * x * y + 1, -2, 2),
        ("sincos", lambda x, y: np.sin(x) * np.cos(y), -math.pi, math.pi),
        ("cubic", lambda x, y: x**3 - 3 * x * y**2 + y**3, -2, 2),
        ("vec2", lambda x, y: np.stack([x + y, x * y], axis=-1), -2, 2),
    ],
)
def test_two_d_definitions(name, formula, lo, hi):
    f = get_function(name)
    np.testing.assert_array_equal(f.lower, [lo, lo])
    np.testing.assert_array_equal(f.upper, [hi, hi])
    X = np.random.default_rng(3).uniform(lo, hi, (40, 2))
    np.testing.assert_allclose(f.value(X), formula(X[:, 0], X[:, 1]), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("dim", [2, 3, 6])
def test_nd_definitions(dim):
    X = np.random.default_rng(4).uniform(-1, 1, (20, dim))
    rosen = sum(100 * (X[:, i + 1] - X[:, i] ** 2) ** 2 + (1 - X[:, i]) ** 2 for i in range(dim - 1))
    np.testing.assert_allclose(get_function("rosenbrock", dim=dim).value(X), rosen, rtol=1e-13)
    np.testing.assert_allclose(get_function("sum_of_sines", dim=dim).value(X), np.sin(X).sum(1))
    q = get_function("quadratic", dim=dim)
    np.testing.assert_allclose(
        q.value(X), 0.5 * np.einsum("ni,ij,nj->n", X, q.Q, X) + X @ q.b, rtol=1e-13, atol=1e-13
    )
    c = get_function("convex_sines", dim=dim)
    np.testing.assert_allclose(
        c.value(X),
        0.5 * np.einsum("ni,ij,nj->n", X, c.Q, X) + X @ c.b + 0.1 * np.sin(3 * X).sum(1),
        rtol=1e-13,
        atol=1e-13,
    )


@pytest.mark.parametrize("dim", [1, 2, 10, 30])
def test_quadratic_is_spd_with_interior_minimum(dim):
    f = get_function("quadratic", dim=dim)
    np.testing.assert_array_equal(f.Q, f.Q.T)
    assert np.linalg.eigvalsh(f.Q).min() >= 1.0 - 1e-12
    x_star = -np.linalg.solve(f.Q, f.b)
    assert np.abs(x_star).max() == pytest.approx(0.5)
    ((x, kind),) = f.critical_points()
    np.testing.assert_allclose(x, x_star, atol=1e-14)
    assert kind == "minimum"
    # different seeds give different functions
    assert not np.allclose(get_function("quadratic", dim=dim, seed=1).b, f.b)


@pytest.mark.parametrize("dim", [2, 5, 10, 40])
def test_convex_sines_strictly_convex_with_unique_interior_minimum(dim):
    f = get_function("convex_sines", dim=dim)
    # proof ingredients: λ_min(Q) > 0.9 >= max |d²/dx² 0.1 sin(3x)|
    assert np.linalg.eigvalsh(f.Q).min() > 0.9 + 0.05
    X = random_points(f, 64, seed=7)
    assert float(torch.linalg.eigvalsh(f.hessian(X)).min()) >= 0.1 - 1e-12
    ((x, kind),) = f.critical_points()
    assert kind == "minimum"
    assert np.abs(f.gradient(x)).max() < 1e-12
    np.testing.assert_allclose(x, f.target, atol=1e-12)  # the planted minimiser
    assert np.all(np.abs(x) < 0.6)
    # Newton-free check: it is the lowest value among nearby and random points
    assert f.value(x) < f.value(X.numpy()).min()


# ---------------------------------------------------------- critical points

CRIT_CASES = [
    pytest.param(("quad2", None), id="quad2"),
    pytest.param(("quartic", None), id="quartic"),
    pytest.param(("sincos", None), id="sincos"),
    pytest.param(("cubic", None), id="cubic"),
    pytest.param(("rosenbrock", 2), id="rosenbrock-2"),
    pytest.param(("rosenbrock", 3), id="rosenbrock-3"),
    pytest.param(("quadratic", 2), id="quadratic-2"),
    pytest.param(("quadratic", 10), id="quadratic-10"),
    pytest.param(("sum_of_sines", 2), id="sum_of_sines-2"),
    pytest.param(("sum_of_sines", 5), id="sum_of_sines-5"),
    pytest.param(("convex_sines", 2), id="convex_sines-2"),
    pytest.param(("convex_sines", 10), id="convex_sines-10"),
]


@pytest.mark.parametrize("case", CRIT_CASES)
def test_critical_points_are_zeros_inside_box_and_correctly_classified(case):
    f = make(case)
    points = f.critical_points()
    assert points
    for x, kind in points:
        assert isinstance(x, np.ndarray) and x.shape == (f.dim,) and x.dtype == np.float64
        assert np.all(x > f.lower) and np.all(x < f.upper)
        assert np.abs(f.gradient(x)).max() < 1e-10
        assert kind == classify(np.linalg.eigvalsh(f.hessian(x)))
    xs = np.array([x for x, _ in points])
    dists = np.linalg.norm(xs[:, None] - xs[None], axis=-1) + np.eye(len(xs))
    assert dists.min() > 1e-6  # all distinct


def newton_multistart(f: TestFunction, starts: np.ndarray, iters: int = 100) -> np.ndarray:
    """Critical points strictly inside the box reached by (pseudo-inverse) Newton."""
    X = torch.as_tensor(starts, dtype=torch.float64)
    for _ in range(iters):
        step = torch.linalg.lstsq(f.hessian(X), f.gradient(X).unsqueeze(-1)).solution.squeeze(-1)
        X = X - step
        X = torch.where(torch.isfinite(X), X, torch.full_like(X, 1e6))
    X = X.numpy()
    ok = np.abs(f.gradient(X)).max(axis=1) < 1e-9
    inside = np.all(X > f.lower + 1e-9, axis=1) & np.all(X < f.upper - 1e-9, axis=1)
    return X[ok & inside]


@pytest.mark.parametrize(
    "name, dim, expected_count, k",
    [
        ("quad2", None, 1, 25),
        ("quartic", None, 3, 25),
        ("sincos", None, 4, 25),
        ("cubic", None, 1, 25),
        ("rosenbrock", 2, 1, 25),
        ("rosenbrock", 3, 1, 9),
        ("sum_of_sines", 3, 8, 9),
    ],
)
def test_critical_points_complete_by_multistart_newton(name, dim, expected_count, k):
    f = get_function(name, dim=dim)
    listed = np.array([x for x, _ in f.critical_points()])
    assert len(listed) == expected_count
    g = np.linspace(0.02, 0.98, k)
    grid = np.stack(np.meshgrid(*[g] * f.dim), -1).reshape(-1, f.dim)
    starts = grid * (f.upper - f.lower) + f.lower
    found = newton_multistart(f, starts)
    assert len(found) > len(starts) // 4
    # every point found is a listed one, and every listed one is found
    d = np.linalg.norm(found[:, None] - listed[None], axis=-1)
    assert d.min(axis=1).max() < 1e-6
    assert set(d.argmin(axis=1)) == set(range(len(listed)))


def test_sincos_critical_points_by_sign_change_grid():
    # Independent count: zeros of grad = (cos x cos y, -sin x sin y) appear as grid cells in
    # which both components change sign; a grid offset from the critical points sees each once.
    f = get_function("sincos")
    n = 401
    g = np.linspace(-math.pi, math.pi, n)[1:-1] + 1e-3  # open box, shifted off the zero lines
    XX, YY = np.meshgrid(g, g, indexing="ij")
    G = f.gradient(np.stack([XX, YY], -1).reshape(-1, 2)).reshape(len(g), len(g), 2)
    s = np.sign(G)
    cells = []
    for i in range(len(g) - 1):
        for j in range(len(g) - 1):
            block = s[i : i + 2, j : j + 2]
            if all(len(set(block[..., k].ravel())) > 1 for k in range(2)):
                cells.append((g[i], g[j]))
    assert len(cells) == 4
    listed = np.array([x for x, _ in f.critical_points()])
    for cx, cy in cells:
        assert np.min(np.linalg.norm(listed - [cx, cy], axis=1)) < 0.05


def test_sincos_kinds():
    kinds = sorted(k for _, k in get_function("sincos").critical_points())
    assert kinds == ["maximum", "minimum", "saddle", "saddle"]


def test_cubic_origin_is_degenerate():
    f = get_function("cubic")
    assert f.critical_points()[0][1] == "degenerate"
    np.testing.assert_array_equal(f.hessian(np.zeros(2)), np.zeros((2, 2)))


def test_sum_of_sines_critical_points_count_and_kinds():
    f = get_function("sum_of_sines", dim=4)
    pts = f.critical_points()
    assert len(pts) == 16
    kinds = [k for _, k in pts]
    assert kinds.count("minimum") == 1 and kinds.count("maximum") == 1
    assert kinds.count("saddle") == 14


@pytest.mark.parametrize("case", [("mixed10", None), ("vec2", None), ("rosenbrock", 4)])
def test_critical_points_not_available(case):
    with pytest.raises(NotImplementedError):
        make(case).critical_points()


def test_sum_of_sines_enumeration_limit():
    with pytest.raises(NotImplementedError, match="2\\^20"):
        get_function("sum_of_sines", dim=20).critical_points()


# ---------------------------------------------------------------- bad input


def test_unknown_name_lists_available():
    with pytest.raises(ValueError, match="unknown test function 'nope'.*quartic"):
        get_function("nope")


def test_name_must_be_string():
    with pytest.raises(TypeError, match="string"):
        get_function(3)


def test_dim_for_fixed_dimension_function():
    assert get_function("mixed10", dim=10).dim == 10
    assert get_function("quartic", dim=2).dim == 2
    with pytest.raises(ValueError, match="fixed dimension 10, got dim=5"):
        get_function("mixed10", dim=5)
    with pytest.raises(ValueError, match="fixed dimension 2"):
        get_function("quad2", dim=3)


def test_bad_dims_and_params():
    with pytest.raises(ValueError, match="dim must be >= 2"):
        get_function("rosenbrock", dim=1)
    with pytest.raises(ValueError, match="dim must be >= 1"):
        get_function("quadratic", dim=0)
    with pytest.raises(TypeError, match="integer"):
        get_function("quadratic", dim=2.5)
    with pytest.raises(ValueError, match="does not accept parameter.*'bogus'"):
        get_function("quadratic", dim=3, bogus=1)
    with pytest.raises(ValueError, match="does not accept parameter.*'seed'"):
        get_function("quartic", seed=1)
    assert get_function("rosenbrock").dim == 2
    assert get_function("quadratic").dim == 10
    assert get_function("sum_of_sines").dim == 10
    assert get_function("convex_sines").dim == 10


@pytest.mark.parametrize("method", ["value", "gradient", "jacobian", "hessian", "laplacian"])
def test_wrong_input_shape(method):
    f = get_function("quartic")
    with pytest.raises(ValueError, match=r"expected X of shape \(N, 2\) or \(2,\), got shape \(4, 3\)"):
        getattr(f, method)(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"got shape \(3,\)"):
        getattr(f, method)(torch.zeros(3))
    with pytest.raises(ValueError, match=r"got shape \(2, 2, 2\)"):
        getattr(f, method)(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match=r"got shape \(\)"):
        getattr(f, method)(1.0)


def test_bad_dtypes():
    f = get_function("quad2")
    with pytest.raises(TypeError, match="dtype"):
        f.value(np.zeros((2, 2), dtype=complex))
    with pytest.raises(TypeError, match="dtype"):
        f.value(torch.zeros(2, 2, dtype=torch.complex64))
    with pytest.raises(TypeError, match="dtype"):
        f.value(np.array([["a", "b"]]))


def test_gradient_of_vector_function_raises():
    f = get_function("vec2")
    with pytest.raises(ValueError, match="vector-valued.*jacobian"):
        f.gradient(np.zeros((3, 2)))
