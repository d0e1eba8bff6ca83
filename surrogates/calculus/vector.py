"""Determinants, divergence and curl of square maps f: (N, d) → (N, d) — torch only.

With the Jacobian J(x)_{ki} = ∂f_k/∂x_i of a map whose input and output dimensions agree
(d = m):

* ``jacobian_determinant``  det J(x), (N,) — the local volume factor of the map;
* ``log_abs_det_jacobian``  log |det J(x)|, (N,), from ``torch.linalg.slogdet`` (an LU
  factorisation), which stays finite where det J under- or overflows, as the change of
  variables of normalising flows needs;
* ``divergence``            ∇·f = Σ_i ∂f_i/∂x_i = tr J(x), (N,);
* ``curl``                  for d = 3, (∂₂f₃ − ∂₃f₂, ∂₃f₁ − ∂₁f₃, ∂₁f₂ − ∂₂f₁), (N, 3); for
  any other d the antisymmetric matrix C_{ij} = ∂_i f_j − ∂_j f_i = (Jᵀ − J)_{ij},
  (N, d, d) (for d = 2, C_{01} is the scalar curl ∂₁f₂ − ∂₂f₁ of the plane).

A single point (d,) gives the same shapes without the leading N. A scalar f (N,) counts
as m = 1, so a function of one variable is a square map with det J = ∇·f = f′.

Every quantity here needs all d² entries of J except the divergence, which needs its
diagonal; but a diagonal entry ∂f_i/∂x_i costs one sweep per input (or output) like a
whole column (or row) of J, so the divergence takes the same d sweeps as the Jacobian.
The package MLP's layer-wise Jacobian is the fastest way to all of them;
``scripts/bench_calculus.py`` measures the routes (see :data:`DIVERGENCE_METHODS`).

The ``*_from_jacobian`` functions apply the same formulas to a Jacobian (…, d, d) already
in hand (an ensemble's mean Jacobian, say).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import jvp

from surrogates.calculus.derivatives import (
    _FIRST_ORDER_CHUNK,
    Function,
    _chunk_size,
    _finish,
    _map_chunks,
    _output_width,
    _prepare,
    jacobian,
)
from surrogates.errors import InputError

__all__ = [
    "DIVERGENCE_METHODS",
    "jacobian_determinant",
    "log_abs_det_jacobian",
    "divergence",
    "curl",
    "determinant_from_jacobian",
    "log_abs_det_from_jacobian",
    "divergence_from_jacobian",
    "curl_from_jacobian",
]

#: Ways to compute the divergence, for ``method=``:
#:
#: * ``"auto"``: ``"jacobian"`` — the trace of :func:`~surrogates.calculus.jacobian`
#:   (layer-wise for a package MLP, batched reverse sweeps for other callables).
#: * ``"jacobian"``: as above.
#: * ``"forward"``: d forward-mode (jvp) sweeps, one per input axis e_i, each keeping only
#:   the i-th output of J e_i: memory O(N·d) instead of the Jacobian's O(N·d²).
#:
#: ``scripts/bench_calculus.py`` times both against the Jacobian (tanh MLP 4×128 R^d → R^d,
#: float64, N = 4096, 1 thread, median process-CPU seconds of 7 interleaved rounds on a
#: shared 2-core VM): the trace took 0.95–1.15× the Jacobian's time at d = 2, 3, 10, 30, for
#: the package MLP and as an opaque callable (the same sweeps; the difference is noise), the
#: forward route 2.1–4.5×. A diagonal entry costs a sweep like a whole row or column, so
#: nothing exact is cheaper than the Jacobian; ``"auto"`` takes the trace, and ``"forward"``
#: remains for very large d, where a chunk's Jacobian would not fit in memory.
#: Determinants, log-determinants and curls measured 0.85–1.10× the Jacobian in the same run.
DIVERGENCE_METHODS = ("auto", "jacobian", "forward")


def _square_jacobian(J: Tensor, quantity: str) -> Tensor:
    """J (…, m, d) checked to be square, for ``quantity``."""
    if J.ndim < 2 or J.shape[-1] != J.shape[-2]:
        raise InputError(
            f"{quantity} needs a square Jacobian (…, d, d) — a map from R^d to R^d — "
            f"got a Jacobian of shape {tuple(J.shape)}"
        )
    return J


def _check_square_map(f: Function, X: Tensor, quantity: str) -> None:
    """Refuse a map whose output width m differs from its input dimension d, before any sweep."""
    _, m = _output_width(f, X)
    d = X.shape[1]
    if m != d:
        raise InputError(
            f"{quantity} needs a square map f: R^d → R^d, but f maps points of shape (N, {d}) "
            f"to outputs of shape (N, {m}) (its Jacobian is (N, {m}, {d}))"
        )


def determinant_from_jacobian(J: Tensor) -> Tensor:
    """det J for Jacobians J (…, d, d): shape (…)."""
    return torch.linalg.det(_square_jacobian(J, "jacobian_determinant"))


def log_abs_det_from_jacobian(J: Tensor) -> Tensor:
    """log |det J| for Jacobians J (…, d, d), via ``slogdet``: shape (…); −inf where singular."""
    return torch.linalg.slogdet(_square_jacobian(J, "log_abs_det_jacobian")).logabsdet


def divergence_from_jacobian(J: Tensor) -> Tensor:
    """tr J = Σ_i J_ii for Jacobians J (…, d, d): shape (…)."""
    return _square_jacobian(J, "divergence").diagonal(dim1=-2, dim2=-1).sum(-1)


def curl_from_jacobian(J: Tensor) -> Tensor:
    """Curl from Jacobians J (…, d, d), J_{ki} = ∂f_k/∂x_i.

    Returns:
        (…, 3) for d = 3: (J₂₁ − J₁₂, J₀₂ − J₂₀, J₁₀ − J₀₁) (0-based); otherwise the
        antisymmetric (…, d, d) matrix C = Jᵀ − J, C_{ij} = ∂_i f_j − ∂_j f_i.
    """
    J = _square_jacobian(J, "curl")
    if J.shape[-1] == 3:
        return torch.stack(
            (J[..., 2, 1] - J[..., 1, 2], J[..., 0, 2] - J[..., 2, 0], J[..., 1, 0] - J[..., 0, 1]), dim=-1
        )
    return J.transpose(-1, -2) - J


def _square_jacobian_of(f: Function, X: Tensor, quantity: str, chunk_size, dtype) -> tuple[Tensor, bool]:
    """(J (N, d, d), single) of a square map, refusing a non-square one first."""
    f, X, single, _ = _prepare(f, X, dtype)
    _check_square_map(f, X, quantity)
    return jacobian(f, X, chunk_size=chunk_size), single


def jacobian_determinant(
    f: Function, X: Tensor, *, chunk_size: int | None = None, dtype: torch.dtype | None = None
) -> Tensor:
    """det J(x) of a square map at every point, (N,).

    Args:
        f: Callable mapping (N, d) → (N, d) (or (N,) for d = 1).
        X: Points (N, d) or one point (d,).
        chunk_size: Points per Jacobian chunk; ``None`` for 4096.
        dtype: Computation dtype (see :mod:`surrogates.calculus.derivatives`).

    Raises:
        InputError: f's output width differs from its input dimension (the message names both).
    """
    J, single = _square_jacobian_of(f, X, "jacobian_determinant", chunk_size, dtype)
    return _finish(determinant_from_jacobian(J), single)


def log_abs_det_jacobian(
    f: Function, X: Tensor, *, chunk_size: int | None = None, dtype: torch.dtype | None = None
) -> Tensor:
    """log |det J(x)| of a square map at every point, (N,), via ``torch.linalg.slogdet``.

    Finite where det J itself would under- or overflow (a product of d factors); −inf where
    J is exactly singular.

    Args:
        f: Callable mapping (N, d) → (N, d) (or (N,) for d = 1).
        X: Points (N, d) or one point (d,).
        chunk_size: Points per Jacobian chunk; ``None`` for 4096.
        dtype: Computation dtype (see :mod:`surrogates.calculus.derivatives`).

    Raises:
        InputError: f's output width differs from its input dimension.
    """
    J, single = _square_jacobian_of(f, X, "log_abs_det_jacobian", chunk_size, dtype)
    return _finish(log_abs_det_from_jacobian(J), single)


def _forward_divergence(f: Function, chunk: Tensor) -> Tensor:
    """Σ_i (J e_i)_i from d jvp sweeps, keeping one output entry per sweep."""
    n, d = chunk.shape
    total = chunk.new_zeros(n)
    for i in range(d):
        tangent = torch.zeros_like(chunk)
        tangent[:, i] = 1
        column = jvp(f, (chunk,), (tangent,))[1]
        total = total + (column if column.ndim == 1 else column[:, i])
    return total


def divergence(
    f: Function,
    X: Tensor,
    *,
    chunk_size: int | None = None,
    dtype: torch.dtype | None = None,
    method: str = "auto",
) -> Tensor:
    """∇·f = Σ_i ∂f_i/∂x_i = tr J(x) at every point, (N,).

    Args:
        f: Callable mapping (N, d) → (N, d) (or (N,) for d = 1).
        X: Points (N, d) or one point (d,).
        chunk_size: Points per chunk; ``None`` for 4096.
        dtype: Computation dtype (see :mod:`surrogates.calculus.derivatives`).
        method: One of :data:`DIVERGENCE_METHODS`.

    Raises:
        InputError: f's output width differs from its input dimension, or ``method`` is unknown.
    """
    if method not in DIVERGENCE_METHODS:
        raise InputError(f"method must be one of {DIVERGENCE_METHODS}, got {method!r}")
    if method in ("auto", "jacobian"):
        J, single = _square_jacobian_of(f, X, "divergence", chunk_size, dtype)
        return _finish(divergence_from_jacobian(J), single)
    f, X, single, _ = _prepare(f, X, dtype)
    _check_square_map(f, X, "divergence")
    kernel = lambda chunk: _forward_divergence(f, chunk)  # noqa: E731
    return _finish(_map_chunks(kernel, (X,), _chunk_size(chunk_size, _FIRST_ORDER_CHUNK)), single)


def curl(
    f: Function, X: Tensor, *, chunk_size: int | None = None, dtype: torch.dtype | None = None
) -> Tensor:
    """Curl of a vector field f: R^d → R^d at every point.

    Args:
        f: Callable mapping (N, d) → (N, d).
        X: Points (N, d) or one point (d,).
        chunk_size: Points per Jacobian chunk; ``None`` for 4096.
        dtype: Computation dtype (see :mod:`surrogates.calculus.derivatives`).

    Returns:
        (N, 3) for d = 3: (∂₂f₃ − ∂₃f₂, ∂₃f₁ − ∂₁f₃, ∂₁f₂ − ∂₂f₁); for any other d the
        antisymmetric part (N, d, d) with entry [i, j] = ∂_i f_j − ∂_j f_i.

    Raises:
        InputError: f's output width differs from its input dimension.
    """
    J, single = _square_jacobian_of(f, X, "curl", chunk_size, dtype)
    return _finish(curl_from_jacobian(J), single)
