"""Analytic test functions with exact, closed-form derivatives.

These functions are the data sources for fitting surrogates and the oracles for
every derivative test and benchmark in the project (see ``shared/protocol.md``).
Each one provides its value, gradient (or Jacobian), Hessian and Laplacian from
hand-derived closed-form formulas written in torch -- *not* autograd -- so that
they can serve as an independent reference for the autograd machinery they are
used to check.

All evaluation methods are batched and accept either

* a torch tensor of shape ``(N, d)`` (any floating dtype, any device): the
  result is a torch tensor of the same dtype and device (integer tensors are
  promoted to the default floating dtype); if the input requires grad, the
  result stays differentiable;
* anything numpy can convert (``numpy.ndarray``, nested lists): the result is a
  ``numpy.ndarray`` of ``float64``.

A single point of shape ``(d,)`` gives unbatched outputs (the leading ``N``
dimension is dropped).

Output shapes, for ``N`` points, input dimension ``d`` and ``m`` outputs:

=============  ====================  =======================
method         scalar (``m == 1``)   vector (``m > 1``)
=============  ====================  =======================
``value``      ``(N,)``              ``(N, m)``
``gradient``   ``(N, d)``            ValueError
``jacobian``   ``(N, 1, d)``         ``(N, m, d)``
``hessian``    ``(N, d, d)``         ``(N, m, d, d)``
``laplacian``  ``(N,)``              ``(N, m)``
=============  ====================  =======================

Functions are created by name through :func:`get_function` (registry
:data:`FUNCTIONS`)::

    f = get_function("quartic")
    f.gradient(np.zeros((5, 2)))          # numpy (5, 2)
    g = get_function("rosenbrock", dim=5)
    g.hessian(torch.rand(8, 5))           # torch (8, 5, 5)
"""

from __future__ import annotations

import inspect
import itertools
import math
import operator
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from surrogates.errors import InputError

__all__ = [
    "TestFunction",
    "Quad2",
    "Quartic",
    "SinCos",
    "Mixed10",
    "Vec2",
    "Cubic",
    "Rosenbrock",
    "Quadratic",
    "SumOfSines",
    "ConvexSines",
    "FUNCTIONS",
    "get_function",
    "mixed10_matrix",
]

#: Allowed critical-point classifications.
KINDS = ("minimum", "maximum", "saddle", "degenerate")


class TestFunction:
    """Base class of the analytic test functions.

    Subclasses set ``name``, ``dim``, ``out_dim``, ``lower`` and ``upper`` and
    implement the private closed-form kernels ``_value``, ``_gradient`` (scalar)
    or ``_jacobian`` (vector), ``_hessian`` and ``_laplacian``, each operating on
    a validated torch tensor of shape ``(N, d)``. The public methods take care of
    input conversion, validation and output shapes.

    Attributes:
        name: Registry name of the function.
        dim: Input dimension ``d``.
        out_dim: Number of outputs ``m`` (1 for scalar functions).
        lower: ``(d,)`` float64 lower corner of the function's box.
        upper: ``(d,)`` float64 upper corner of the function's box.
    """

    __test__ = False  # not a pytest test class despite the name

    name: str = ""
    out_dim: int = 1

    def __init__(self, dim: int, lower: Any, upper: Any) -> None:
        """Store the input dimension and the box.

        Args:
            dim: Input dimension ``d``.
            lower: Lower box corner, scalar or ``(d,)``.
            upper: Upper box corner, scalar or ``(d,)``.
        """
        self.dim = int(dim)
        self.lower = np.broadcast_to(np.asarray(lower, dtype=np.float64), (self.dim,)).copy()
        self.upper = np.broadcast_to(np.asarray(upper, dtype=np.float64), (self.dim,)).copy()
        self._const_cache: dict[tuple, torch.Tensor] = {}

    # ------------------------------------------------------------------ info
    @property
    def is_scalar(self) -> bool:
        """True when the function has a single output and ``value`` returns ``(N,)``."""
        return self.out_dim == 1

    @property
    def params(self) -> dict[str, Any]:
        """Constructor parameters that rebuild this function via :func:`get_function`."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------ public API
    def __call__(self, X: Any) -> Any:
        """Evaluate the function; same as :meth:`value`."""
        return self.value(X)

    def value(self, X: Any) -> Any:
        """Function value: ``(N,)`` for scalar functions, ``(N, m)`` for vector ones.

        Args:
            X: Points, ``(N, d)`` or a single point ``(d,)``; torch or numpy.

        Returns:
            Values in the same array type as ``X`` (numpy output is float64).
        """
        T, single, to_numpy = self._prepare(X)
        return self._finish(self._value(T), single, to_numpy)

    def gradient(self, X: Any) -> Any:
        """Gradient ``(N, d)`` of a scalar function.

        Args:
            X: Points, ``(N, d)`` or ``(d,)``.

        Returns:
            The gradient at each point.

        Raises:
            InputError: If the function is vector-valued (use :meth:`jacobian`).
        """
        if not self.is_scalar:
            raise InputError(
                f"{self.name} is vector-valued (out_dim={self.out_dim}); gradient is only "
                "defined for scalar functions, use jacobian() instead"
            )
        T, single, to_numpy = self._prepare(X)
        return self._finish(self._gradient(T), single, to_numpy)

    def jacobian(self, X: Any) -> Any:
        """Jacobian ``(N, m, d)``; ``(N, 1, d)`` for scalar functions.

        Args:
            X: Points, ``(N, d)`` or ``(d,)``.

        Returns:
            ``J[n, i, j] = d f_i / d x_j`` at each point.
        """
        T, single, to_numpy = self._prepare(X)
        if self.is_scalar:
            J = self._gradient(T).unsqueeze(1)
        else:
            J = self._jacobian(T)
        return self._finish(J, single, to_numpy)

    def hessian(self, X: Any) -> Any:
        """Hessian: ``(N, d, d)`` for scalar functions, ``(N, m, d, d)`` for vector ones.

        Args:
            X: Points, ``(N, d)`` or ``(d,)``.

        Returns:
            All second partial derivatives (symmetric in the last two axes).
        """
        T, single, to_numpy = self._prepare(X)
        return self._finish(self._hessian(T), single, to_numpy)

    def laplacian(self, X: Any) -> Any:
        """Laplacian (trace of the Hessian): ``(N,)`` scalar, ``(N, m)`` vector.

        Args:
            X: Points, ``(N, d)`` or ``(d,)``.

        Returns:
            The Laplacian, computed from its own closed form (not from the Hessian).
        """
        T, single, to_numpy = self._prepare(X)
        return self._finish(self._laplacian(T), single, to_numpy)

    def critical_points(self) -> list[tuple[np.ndarray, str]]:
        """Exact critical points strictly inside the box, with their kind.

        Returns:
            A list of ``(x, kind)`` with ``x`` a float64 ``(d,)`` array and
            ``kind`` one of ``"minimum"``, ``"maximum"``, ``"saddle"``,
            ``"degenerate"``.

        Raises:
            NotImplementedError: When the critical points are not known in closed
                form (or the function is vector-valued).
        """
        raise NotImplementedError(f"critical points of {self.name} are not known in closed form")

    # -------------------------------------------------------------- kernels
    def _value(self, X: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _gradient(self, X: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _jacobian(self, X: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _hessian(self, X: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _laplacian(self, X: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -------------------------------------------------------------- helpers
    def _prepare(self, X: Any) -> tuple[torch.Tensor, bool, bool]:
        """Validate ``X`` and return ``(tensor (N, d), was_single_point, return_numpy)``."""
        if isinstance(X, torch.Tensor):
            to_numpy = False
            if X.is_complex() or X.dtype == torch.bool:
                raise TypeError(f"{self.name}: X must be real floating point, got dtype {X.dtype}")
            T = X if X.is_floating_point() else X.to(torch.get_default_dtype())
        else:
            to_numpy = True
            try:
                arr = np.asarray(X)
            except Exception as exc:  # ragged lists and the like
                raise TypeError(f"{self.name}: cannot convert X to an array: {exc}") from exc
            if arr.dtype.kind not in "iuf":
                raise TypeError(f"{self.name}: X must be a real numeric array, got dtype {arr.dtype}")
            T = torch.from_numpy(arr.astype(np.float64, order="C", copy=False))
        d = self.dim
        if T.ndim == 1 and T.shape[0] == d:
            return T.unsqueeze(0), True, to_numpy
        if T.ndim == 2 and T.shape[1] == d:
            return T, False, to_numpy
        raise InputError(
            f"{self.name}: expected X of shape (N, {d}) or ({d},), got shape {tuple(T.shape)}"
        )

    @staticmethod
    def _finish(out: torch.Tensor, single: bool, to_numpy: bool) -> Any:
        if single:
            out = out[0]
        if to_numpy:
            return out.detach().cpu().numpy()
        return out

    def _const(self, key: str, array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        """``array`` as a tensor with the dtype and device of ``like`` (cached)."""
        ck = (key, like.dtype, like.device)
        t = self._const_cache.get(ck)
        if t is None:
            t = torch.as_tensor(array, dtype=like.dtype, device=like.device)
            self._const_cache[ck] = t
        return t

    @staticmethod
    def _batch_const(M: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """A constant matrix repeated over the batch (a fresh, writable tensor)."""
        return M.expand(X.shape[0], *M.shape).clone()


def _check_dim(dim: Any, minimum: int = 1) -> int:
    if isinstance(dim, bool):
        raise TypeError(f"dim must be an integer, got {dim!r}")
    try:
        d = operator.index(dim)
    except TypeError:
        raise TypeError(f"dim must be an integer, got {dim!r}") from None
    if d < minimum:
        raise InputError(f"dim must be >= {minimum}, got {d}")
    return d


def _spd_matrix(rng: np.random.Generator, d: int) -> np.ndarray:
    """``Q = I + 0.5 B B^T / d`` with ``B`` standard normal: symmetric, eigenvalues >= 1."""
    B = rng.standard_normal((d, d))
    Q = np.eye(d) + 0.5 * (B @ B.T) / d
    return 0.5 * (Q + Q.T)  # exact symmetry regardless of the BLAS used


# ====================================================================== 2-D


class Quad2(TestFunction):
    """f(x, y) = x² + 2y² on [-2, 2]²."""

    name = "quad2"

    def __init__(self) -> None:
        super().__init__(2, -2.0, 2.0)
        self._H = np.diag([2.0, 4.0])

    def _value(self, X):
        return X[:, 0] ** 2 + 2 * X[:, 1] ** 2

    def _gradient(self, X):
        return torch.stack([2 * X[:, 0], 4 * X[:, 1]], dim=1)

    def _hessian(self, X):
        return self._batch_const(self._const("H", self._H, X), X)

    def _laplacian(self, X):
        return X.new_full((X.shape[0],), 6.0)

    def critical_points(self):
        return [(np.zeros(2), "minimum")]


class Quartic(TestFunction):
    """f(x, y) = x⁴ + y⁴ − 4xy + 1 on [-2, 2]²."""

    name = "quartic"

    def __init__(self) -> None:
        super().__init__(2, -2.0, 2.0)

    def _value(self, X):
        x, y = X[:, 0], X[:, 1]
        return x**4 + y**4 - 4 * x * y + 1

    def _gradient(self, X):
        x, y = X[:, 0], X[:, 1]
        return torch.stack([4 * x**3 - 4 * y, 4 * y**3 - 4 * x], dim=1)

    def _hessian(self, X):
        x, y = X[:, 0], X[:, 1]
        off = torch.full_like(x, -4.0)
        return torch.stack(
            [torch.stack([12 * x**2, off], dim=1), torch.stack([off, 12 * y**2], dim=1)], dim=1
        )

    def _laplacian(self, X):
        return 12 * (X[:, 0] ** 2 + X[:, 1] ** 2)

    def critical_points(self):
        # grad = 0  <=>  y = x³ and x = y³  =>  x⁹ = x  =>  x ∈ {0, ±1}.
        # H(0,0) = [[0,-4],[-4,0]] (eig ±4); H(±1,±1) = [[12,-4],[-4,12]] (eig 8, 16).
        return [
            (np.array([0.0, 0.0]), "saddle"),
            (np.array([1.0, 1.0]), "minimum"),
            (np.array([-1.0, -1.0]), "minimum"),
        ]


class SinCos(TestFunction):
    """f(x, y) = sin(x)·cos(y) on [-π, π]²."""

    name = "sincos"

    def __init__(self) -> None:
        super().__init__(2, -math.pi, math.pi)

    def _value(self, X):
        return torch.sin(X[:, 0]) * torch.cos(X[:, 1])

    def _gradient(self, X):
        sx, cx = torch.sin(X[:, 0]), torch.cos(X[:, 0])
        sy, cy = torch.sin(X[:, 1]), torch.cos(X[:, 1])
        return torch.stack([cx * cy, -sx * sy], dim=1)

    def _hessian(self, X):
        sx, cx = torch.sin(X[:, 0]), torch.cos(X[:, 0])
        sy, cy = torch.sin(X[:, 1]), torch.cos(X[:, 1])
        d = -sx * cy
        off = -cx * sy
        return torch.stack([torch.stack([d, off], dim=1), torch.stack([off, d], dim=1)], dim=1)

    def _laplacian(self, X):
        return -2 * torch.sin(X[:, 0]) * torch.cos(X[:, 1])

    def critical_points(self):
        # grad = (cos x cos y, -sin x sin y) = 0.
        #  cos x = 0 -> x = ±π/2, sin x ≠ 0 -> sin y = 0 -> y ∈ {0, ±π}; interior: y = 0.
        #  cos y = 0 -> y = ±π/2, sin y ≠ 0 -> sin x = 0 -> x ∈ {0, ±π}; interior: x = 0.
        # H = [[-sin x cos y, -cos x sin y], [-cos x sin y, -sin x cos y]]:
        #  (π/2, 0): -I (maximum); (-π/2, 0): +I (minimum);
        #  (0, ±π/2): [[0, ∓1], [∓1, 0]], eigenvalues ±1 (saddles).
        # The 4 points on the boundary ((±π/2, ±π), (±π, ±π/2)) are excluded.
        h = math.pi / 2
        return [
            (np.array([h, 0.0]), "maximum"),
            (np.array([-h, 0.0]), "minimum"),
            (np.array([0.0, h]), "saddle"),
            (np.array([0.0, -h]), "saddle"),
        ]


def mixed10_matrix() -> np.ndarray:
    """The protocol's ``A = (M + Mᵀ)/4`` with ``M = default_rng(0).standard_normal((10, 10))``."""
    M = np.random.default_rng(0).standard_normal((10, 10))
    return (M + M.T) / 4


class Mixed10(TestFunction):
    """f(x) = ½ xᵀAx + Σ sin(xᵢ), A = (M+Mᵀ)/4, M = default_rng(0).standard_normal((10,10)), on [-1, 1]¹⁰."""

    name = "mixed10"

    def __init__(self) -> None:
        super().__init__(10, -1.0, 1.0)
        self.A = mixed10_matrix()
        self._trA = float(np.trace(self.A))

    def _value(self, X):
        A = self._const("A", self.A, X)
        return 0.5 * ((X @ A) * X).sum(-1) + torch.sin(X).sum(-1)

    def _gradient(self, X):
        A = self._const("A", self.A, X)
        return X @ A + torch.cos(X)

    def _hessian(self, X):
        A = self._const("A", self.A, X)
        return A - torch.diag_embed(torch.sin(X))

    def _laplacian(self, X):
        return self._trA - torch.sin(X).sum(-1)


class Vec2(TestFunction):
    """f(x, y) = (x + y, x·y) on [-2, 2]² (vector output, m = 2)."""

    name = "vec2"
    out_dim = 2

    def __init__(self) -> None:
        super().__init__(2, -2.0, 2.0)
        self._H = np.array([[[0.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]])

    def _value(self, X):
        x, y = X[:, 0], X[:, 1]
        return torch.stack([x + y, x * y], dim=1)

    def _jacobian(self, X):
        x, y = X[:, 0], X[:, 1]
        one = torch.ones_like(x)
        return torch.stack([torch.stack([one, one], dim=1), torch.stack([y, x], dim=1)], dim=1)

    def _hessian(self, X):
        return self._batch_const(self._const("H", self._H, X), X)

    def _laplacian(self, X):
        return X.new_zeros((X.shape[0], 2))

    def critical_points(self):
        raise NotImplementedError(
            "vec2 is vector-valued; critical points are defined for scalar functions only"
        )


class Cubic(TestFunction):
    """f(x, y) = x³ − 3xy² + y³ on [-2, 2]² (degenerate critical point at the origin)."""

    name = "cubic"

    def __init__(self) -> None:
        super().__init__(2, -2.0, 2.0)

    def _value(self, X):
        x, y = X[:, 0], X[:, 1]
        return x**3 - 3 * x * y**2 + y**3

    def _gradient(self, X):
        x, y = X[:, 0], X[:, 1]
        return torch.stack([3 * x**2 - 3 * y**2, -6 * x * y + 3 * y**2], dim=1)

    def _hessian(self, X):
        x, y = X[:, 0], X[:, 1]
        off = -6 * y
        return torch.stack(
            [torch.stack([6 * x, off], dim=1), torch.stack([off, 6 * y - 6 * x], dim=1)], dim=1
        )

    def _laplacian(self, X):
        return 6 * X[:, 1]

    def critical_points(self):
        # grad = 0 <=> x² = y² and y(y - 2x) = 0: y = 0 -> x = 0; y = 2x -> x² = 4x² -> x = 0.
        # The Hessian vanishes at the origin.
        return [(np.array([0.0, 0.0]), "degenerate")]


# ============================================================ N-dimensional


class Rosenbrock(TestFunction):
    """f(x) = Σ_{i<d} 100(x_{i+1} − x_i²)² + (1 − x_i)² on [-2, 2]^d; minimum at all-ones."""

    name = "rosenbrock"

    def __init__(self, dim: int = 2) -> None:
        super().__init__(_check_dim(dim, minimum=2), -2.0, 2.0)

    @property
    def params(self):
        return {"dim": self.dim}

    def _value(self, X):
        x, xn = X[:, :-1], X[:, 1:]
        return (100 * (xn - x**2) ** 2 + (1 - x) ** 2).sum(-1)

    def _gradient(self, X):
        x, xn = X[:, :-1], X[:, 1:]
        r = xn - x**2
        return F.pad(-400 * x * r - 2 * (1 - x), (0, 1)) + F.pad(200 * r, (1, 0))

    def _hessian(self, X):
        x, xn = X[:, :-1], X[:, 1:]
        diag = F.pad(1200 * x**2 - 400 * xn + 2, (0, 1)) + F.pad(torch.full_like(x, 200.0), (1, 0))
        off = -400 * x
        return (
            torch.diag_embed(diag)
            + torch.diag_embed(off, offset=1)
            + torch.diag_embed(off, offset=-1)
        )

    def _laplacian(self, X):
        x, xn = X[:, :-1], X[:, 1:]
        return (1200 * x**2 - 400 * xn + 202).sum(-1)

    def critical_points(self):
        # d = 2: g₂ = 200(y - x²) = 0 and then g₁ = -2(1 - x) = 0, so (1, 1) only.
        # d = 3: with u = x₂ - x₁² and x₃ = x₂², g₂ = 0 gives u = (1 - x₂)/100 and g₁ = 0 gives
        #   (1 - x₁)(200 x₁² + 200 x₁ + 101) = 0; the quadratic has no real root, so x = (1,1,1).
        # d >= 4 has further stationary points (e.g. a local minimum near (-1, 1, ..., 1))
        # that are not known in closed form.
        if self.dim > 3:
            raise NotImplementedError(
                f"rosenbrock with dim={self.dim} > 3 has stationary points besides the all-ones "
                "minimum that are not known in closed form"
            )
        return [(np.ones(self.dim), "minimum")]


class Quadratic(TestFunction):
    """f(x) = ½ xᵀQx + bᵀx, Q = I + 0.5·BBᵀ/d (SPD), on [-1, 1]^d; minimum −Q⁻¹b with |·|∞ = 0.5.

    ``B`` (d×d) and then ``b₀`` (d,) are standard normal draws from
    ``numpy.random.default_rng(seed)``; ``b = b₀ · 0.5 / ‖Q⁻¹b₀‖∞`` so that the
    unique minimum has max-norm 0.5.
    """

    name = "quadratic"

    def __init__(self, dim: int = 10, seed: int = 0) -> None:
        super().__init__(_check_dim(dim), -1.0, 1.0)
        self.seed = seed
        rng = np.random.default_rng(seed)
        self.Q = _spd_matrix(rng, self.dim)
        b0 = rng.standard_normal(self.dim)
        z = np.linalg.solve(self.Q, b0)
        self.b = b0 * (0.5 / np.max(np.abs(z)))
        self.minimizer = -np.linalg.solve(self.Q, self.b)
        self._trQ = float(np.trace(self.Q))

    @property
    def params(self):
        return {"dim": self.dim, "seed": self.seed}

    def _value(self, X):
        Q, b = self._const("Q", self.Q, X), self._const("b", self.b, X)
        return 0.5 * ((X @ Q) * X).sum(-1) + X @ b

    def _gradient(self, X):
        Q, b = self._const("Q", self.Q, X), self._const("b", self.b, X)
        return X @ Q + b

    def _hessian(self, X):
        return self._batch_const(self._const("Q", self.Q, X), X)

    def _laplacian(self, X):
        return X.new_full((X.shape[0],), self._trQ)

    def critical_points(self):
        return [(self.minimizer.copy(), "minimum")]


class SumOfSines(TestFunction):
    """f(x) = Σ sin(xᵢ) on [-π, π]^d."""

    name = "sum_of_sines"
    #: Largest dimension for which the 2^d critical points are enumerated.
    max_enumerated_dim = 14

    def __init__(self, dim: int = 10) -> None:
        super().__init__(_check_dim(dim), -math.pi, math.pi)

    @property
    def params(self):
        return {"dim": self.dim}

    def _value(self, X):
        return torch.sin(X).sum(-1)

    def _gradient(self, X):
        return torch.cos(X)

    def _hessian(self, X):
        return torch.diag_embed(-torch.sin(X))

    def _laplacian(self, X):
        return -torch.sin(X).sum(-1)

    def critical_points(self):
        # cos xᵢ = 0 in (-π, π) <=> xᵢ = ±π/2; H = diag(-sin xᵢ) = diag(∓1).
        # All +π/2: maximum; all -π/2: minimum; otherwise saddle. 2^d points.
        if self.dim > self.max_enumerated_dim:
            raise NotImplementedError(
                f"sum_of_sines with dim={self.dim} has 2^{self.dim} critical points; "
                f"enumeration is limited to dim <= {self.max_enumerated_dim}"
            )
        h = math.pi / 2
        out = []
        for signs in itertools.product((-1.0, 1.0), repeat=self.dim):
            s = np.array(signs)
            if (s > 0).all():
                kind = "maximum"
            elif (s < 0).all():
                kind = "minimum"
            else:
                kind = "saddle"
            out.append((h * s, kind))
        return out


class Bump(TestFunction):
    """f(x) = exp(−‖x − c‖² / (2s²)), c = (0.3, …, 0.3), s = 0.15, on [-1, 1]^d.

    All its curvature sits in one small region, the case where sampling by the surrogate's
    uncertainty (:mod:`surrogates.fitting.active`) should beat a uniform design.
    """

    name = "bump"
    center = 0.3
    spread = 0.15

    def __init__(self, dim: int = 2) -> None:
        super().__init__(_check_dim(dim), -1.0, 1.0)

    @property
    def params(self):
        return {"dim": self.dim}

    def _scaled_offset(self, X):
        return (X - self.center) / self.spread**2

    def _value(self, X):
        return torch.exp(-((X - self.center) ** 2).sum(-1) / (2 * self.spread**2))

    def _gradient(self, X):
        return -self._scaled_offset(X) * self._value(X)[..., None]

    def _hessian(self, X):
        u = self._scaled_offset(X)
        identity = torch.eye(self.dim, dtype=X.dtype, device=X.device) / self.spread**2
        return self._value(X)[..., None, None] * (u[..., :, None] * u[..., None, :] - identity)

    def _laplacian(self, X):
        return self._value(X) * ((self._scaled_offset(X) ** 2).sum(-1) - self.dim / self.spread**2)

    def critical_points(self):
        return [(np.full(self.dim, self.center), "maximum")]


class ConvexSines(TestFunction):
    """f(x) = ½ xᵀQx + bᵀx + 0.1·Σ sin(3xᵢ), Q = I + 0.5·BBᵀ/d, on [-1, 1]^d; strictly convex.

    Convexity: ∇²f = Q − 0.9·diag(sin 3xᵢ) and λ_min(Q) ≥ 1 > 0.9 ≥ |0.9 sin 3xᵢ|,
    so ∇²f ⪰ 0.1·I everywhere (on all of R^d): the minimum is unique.
    ``B`` (d×d) and then a target point ``x* ~ U(-0.5, 0.5)^d`` are drawn from
    ``numpy.random.default_rng(seed)``; ``b = −(Qx* + 0.3 cos 3x*)`` puts the unique
    minimum at ``x*`` (up to rounding), well inside the box.
    :meth:`critical_points` locates it to float64 precision by damped Newton from 0.
    """

    name = "convex_sines"
    amplitude = 0.1
    frequency = 3.0

    def __init__(self, dim: int = 10, seed: int = 0) -> None:
        super().__init__(_check_dim(dim), -1.0, 1.0)
        self.seed = seed
        rng = np.random.default_rng(seed)
        self.Q = _spd_matrix(rng, self.dim)
        self.target = rng.uniform(-0.5, 0.5, self.dim)
        a, w = self.amplitude, self.frequency
        self.b = -(self.Q @ self.target + a * w * np.cos(w * self.target))
        self._trQ = float(np.trace(self.Q))
        self._minimum: np.ndarray | None = None

    @property
    def params(self):
        return {"dim": self.dim, "seed": self.seed}

    def _value(self, X):
        Q, b = self._const("Q", self.Q, X), self._const("b", self.b, X)
        return (
            0.5 * ((X @ Q) * X).sum(-1)
            + X @ b
            + self.amplitude * torch.sin(self.frequency * X).sum(-1)
        )

    def _gradient(self, X):
        Q, b = self._const("Q", self.Q, X), self._const("b", self.b, X)
        return X @ Q + b + self.amplitude * self.frequency * torch.cos(self.frequency * X)

    def _hessian(self, X):
        Q = self._const("Q", self.Q, X)
        c = self.amplitude * self.frequency**2
        return Q - torch.diag_embed(c * torch.sin(self.frequency * X))

    def _laplacian(self, X):
        c = self.amplitude * self.frequency**2
        return self._trQ - c * torch.sin(self.frequency * X).sum(-1)

    def _newton_minimum(self) -> np.ndarray:
        """Damped Newton from 0 in float64; exact to rounding (strongly convex problem)."""
        x = torch.zeros(1, self.dim, dtype=torch.float64)
        for _ in range(100):
            g = self._gradient(x)
            gnorm = float(g.abs().max())
            if gnorm < 1e-15:
                break
            step = torch.linalg.solve(self._hessian(x), g.unsqueeze(-1)).squeeze(-1)
            t, f0, slope = 1.0, float(self._value(x)), float((g * step).sum())
            if gnorm > 1e-6:  # Armijo backtracking far from the solution
                while t > 1e-8 and float(self._value(x - t * step)) > f0 - 1e-4 * t * slope:
                    t *= 0.5
            x_new = x - t * step
            if float(self._gradient(x_new).abs().max()) >= gnorm and gnorm < 1e-12:
                break  # rounding floor reached
            x = x_new
        gnorm = float(self._gradient(x).abs().max())
        if not gnorm < 1e-11:
            raise RuntimeError(f"convex_sines: Newton did not converge (|grad|_inf = {gnorm:.3e})")
        return x[0].numpy().copy()

    def critical_points(self):
        if self._minimum is None:
            self._minimum = self._newton_minimum()
        return [(self._minimum.copy(), "minimum")]


# ================================================================= registry

#: Registry: function name -> factory (the class). N-dimensional families take ``dim``.
FUNCTIONS: dict[str, Callable[..., TestFunction]] = {
    "quad2": Quad2,
    "quartic": Quartic,
    "sincos": SinCos,
    "mixed10": Mixed10,
    "vec2": Vec2,
    "cubic": Cubic,
    "rosenbrock": Rosenbrock,
    "quadratic": Quadratic,
    "sum_of_sines": SumOfSines,
    "convex_sines": ConvexSines,
    "bump": Bump,
}

_FIXED_DIMS = {"quad2": 2, "quartic": 2, "sincos": 2, "mixed10": 10, "vec2": 2, "cubic": 2}


def get_function(name: str, dim: int | None = None, **params: Any) -> TestFunction:
    """Build a registered test function by name.

    Args:
        name: One of :data:`FUNCTIONS`.
        dim: Input dimension, for the N-dimensional families (``rosenbrock``,
            ``quadratic``, ``sum_of_sines``, ``convex_sines``); ``None`` uses the
            family's default. For fixed-dimension functions it may only repeat
            their own dimension.
        **params: Further constructor parameters (e.g. ``seed``).

    Returns:
        The function object.

    Raises:
        InputError: Unknown name, a ``dim`` that a fixed-dimension function does not
            have, or a parameter the function does not accept.
        TypeError: ``name`` is not a string.
    """
    if not isinstance(name, str):
        raise TypeError(f"function name must be a string, got {type(name).__name__}")
    factory = FUNCTIONS.get(name)
    if factory is None:
        raise InputError(f"unknown test function {name!r}; available: {', '.join(sorted(FUNCTIONS))}")
    accepted = [p for p in inspect.signature(factory).parameters if p != "dim"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InputError(
            f"test function {name!r} does not accept parameter(s) {unknown}; "
            f"accepted: {accepted or 'none'}" + ("" if name in _FIXED_DIMS else " and dim")
        )
    if name in _FIXED_DIMS:
        if dim is not None and _check_dim(dim) != _FIXED_DIMS[name]:
            raise InputError(
                f"test function {name!r} has fixed dimension {_FIXED_DIMS[name]}, got dim={dim}"
            )
        return factory(**params)
    if dim is not None:
        params["dim"] = dim
    return factory(**params)
