"""Batched exact derivatives of any torch callable f: (N, d) → (N,) or (N, m).

Every function here differentiates *per point*: it relies on f treating the rows of
X independently (no BatchNorm or anything else that mixes samples), which is what
makes the batch-sum trick exact — the gradient of Σ_n f(x_n) with respect to X is
every per-point gradient at once, in one reverse sweep, with no Python loop over
points.

Shapes, for N points, input dimension d and an f returning (N,) ("scalar") or
(N, m) ("vector", including m = 1):

==========================  ==============  ====================
function                    scalar f        vector f
==========================  ==============  ====================
``value``                   (N,)            (N, m)
``gradient``                (N, d)          (N, d) if m = 1, else ValueError
``jacobian``                (N, 1, d)       (N, m, d)
``hessian``                 (N, d, d)       (N, m, d, d)
``laplacian``               (N,)            (N, m)
``directional_derivative``  (N,)            (N, m)
``hvp``                     (N, d)          (N, m, d)
==========================  ==============  ====================

A single point X of shape (d,) gives the same shapes without the leading N.

Common keyword arguments:

* ``chunk_size``: points processed at once; bounds memory, does not change results
  (beyond floating-point rounding). ``None`` picks a size from the shape.
* ``dtype``: compute in this dtype (e.g. ``torch.float64`` for eigenvalues near zero
  or critical-point refinement). X is cast, and an ``nn.Module`` f is differentiated
  through a copy cast to it. ``None`` keeps X's dtype — except that X is cast to an
  ``nn.Module`` f's own parameter dtype, so float32 points work on a float64 model.

Method choice (measured, see :data:`HESSIAN_METHODS`): second derivatives of the
package's :class:`~surrogates.model.MLP` use the exact layer-wise scheme of
:mod:`surrogates.calculus.layerwise`; every other callable uses the fastest generic
autograd route. Derivatives are refused under ``torch.inference_mode``, where
autograd records nothing and ``torch.func`` transforms can silently return zeros.
All results are detached.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import jacrev, jvp, vmap

from surrogates.calculus.layerwise import (
    LayerwiseMLP,
    Workspace,
    check_second_derivatives,
    layerwise_hessian,
    layerwise_jacobian,
    layerwise_laplacian,
    supports_layerwise,
)
from surrogates.errors import InputError
from surrogates.inference_mode import require_autograd
from surrogates.model import resolve_dtype

__all__ = [
    "HESSIAN_METHODS",
    "TaylorModel",
    "value",
    "gradient",
    "jacobian",
    "hessian",
    "laplacian",
    "directional_derivative",
    "hvp",
    "taylor",
]

Function = Callable[[Tensor], Tensor]

#: Ways to compute Hessians (and Laplacians), for ``method=``:
#:
#: * ``"auto"``: ``"layerwise"`` for a package MLP, else ``"batch-sum"``.
#: * ``"layerwise"``: the exact layer-wise scheme, package MLPs only.
#: * ``"batch-sum"``: g = ∇ Σ_n f(x_n) with a differentiable graph, then the d rows
#:   of every Hessian as d reverse sweeps of Σ_n g_n, vectorised with
#:   ``is_grads_batched`` (what ``torch.autograd.functional.jacobian(...,
#:   vectorize=True)`` does on the batch-sum gradient).
#: * ``"vmap-rev-rev"``: ``vmap(jacrev(jacrev(f)))`` over single points.
#:
#: Generic routes measured by ``scripts/bench_derivatives.py`` (tanh MLP 4×128 as an
#: opaque callable, N = 4096, 1 thread, median process-CPU seconds of 5 rounds, on a
#: shared 2-core AMD EPYC VM under load; "c" is the chunk size):
#:
#: ======== ===  ============  =============  ===============  ===============
#: dtype     d   batch-sum     batch-sum      vmap-rev-rev     vmap-rev-rev
#:               c256          c1024          c256             c1024
#: ======== ===  ============  =============  ===============  ===============
#: float32    2  0.095         0.078          0.155            0.123
#: float32   10  0.279         0.293          0.334            0.370
#: float32   50  1.197         1.419          1.224            1.533
#: float64    2  0.170         0.173          0.262            0.232
#: float64   10  0.586         0.608          0.695            0.762
#: float64   50  3.079         4.901          3.219            5.797
#: ======== ===  ============  =============  ===============  ===============
#:
#: ``vmap(jacfwd(jacrev))``, ``vmap(hessian)`` and forward-over-reverse on the
#: batch-sum gradient were 5–30 % slower than batch-sum in a separate sweep. With 2
#: threads on the same (oversubscribed) VM every route ran 10–20× slower in wall
#: time, so no ordering could be read off; re-measure with ``--threads 2`` on a
#: quiet machine before specialising. batch-sum is the generic route for every
#: shape, in chunks of ~8 MB estimated working set (float32: 1024 points at d = 2,
#: 512 at d = 10, 128 at d = 50). The layer-wise scheme took 0.053 / 0.137 / 0.706 s
#: (float32) and 0.117 / 0.299 / 1.76 s (float64)
#: in the same run.
HESSIAN_METHODS = ("auto", "layerwise", "batch-sum", "vmap-rev-rev")

#: Working-set target per chunk for the second-derivative kernels, in bytes. Chunk
#: sweeps (32 … 1024 points, d = 2/10/50, float32) put the fastest chunk where the
#: estimated working set is ~4–8 MB; unchunked d = 50 Hessians allocate >100 MB of
#: temporaries and spend much of their time in page faults.
_CHUNK_BYTES = 2**23
_MIN_CHUNK, _MAX_CHUNK = 32, 4096
#: Batched autograd got slower beyond ~1000 points per chunk at every d measured.
_GENERIC_MAX_CHUNK = 1024
#: First-order quantities keep only a few activations per point alive.
_FIRST_ORDER_CHUNK = 4096


# --------------------------------------------------------------------------- input


def _module_dtype(f: object) -> torch.dtype | None:
    if isinstance(f, nn.Module):
        for tensor in (*f.parameters(), *f.buffers()):
            if tensor.is_floating_point():
                return tensor.dtype
    return None


def _prepare(
    f: Function, X: object, dtype: torch.dtype | str | None, *, differentiate: bool = True
) -> tuple[Function, Tensor, bool, torch.dtype]:
    """Validate X, apply the dtype policy, and return (f, X as (N, d), single, dtype)."""
    if not callable(f):
        raise TypeError(f"f must be a callable mapping (N, d) → (N,) or (N, m), got {type(f).__name__}")
    if not isinstance(X, Tensor):
        raise TypeError(f"X must be a torch.Tensor of shape (N, d) or (d,), got {type(X).__name__}")
    if X.ndim not in (1, 2) or X.shape[0] == 0:
        raise InputError(f"X must have shape (N, d) or (d,) with at least one point, got {tuple(X.shape)}")
    if X.is_complex():
        raise TypeError(f"X must be real, got {X.dtype}")
    if differentiate:
        require_autograd("surrogates.calculus", X)
    single = X.ndim == 1
    X = X.detach().unsqueeze(0) if single else X.detach()
    if dtype is not None:
        target = resolve_dtype(dtype)
        if isinstance(f, nn.Module) and _module_dtype(f) not in (None, target):
            f = copy.deepcopy(f).to(target)
    else:
        target = _module_dtype(f) or (X.dtype if X.is_floating_point() else torch.get_default_dtype())
    if supports_layerwise(f) and X.shape[1] != f.in_dim:
        raise InputError(
            f"X has {X.shape[1]} coordinates per point (shape {tuple(X.shape)}) "
            f"but the MLP expects d = {f.in_dim}"
        )
    return f, X.to(target), single, target


def _checked_output(y: Tensor, n: int) -> Tensor:
    if not isinstance(y, Tensor) or y.ndim not in (1, 2) or y.shape[0] != n:
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise InputError(f"f must map (N, d) to (N,) or (N, m); for N = {n} it returned {shape}")
    return y


def _chunk_size(chunk_size: int | None, default: int) -> int:
    if chunk_size is None:
        return default
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise InputError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    return chunk_size


def _second_order_chunk(floats_per_point: int, dtype: torch.dtype, largest: int = _MAX_CHUNK) -> int:
    """Largest power of two of points whose working set fits :data:`_CHUNK_BYTES`."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    points = max(1, _CHUNK_BYTES // (floats_per_point * itemsize))
    return max(_MIN_CHUNK, min(largest, 1 << (points.bit_length() - 1)))


def _map_chunks(kernel: Callable[..., Tensor], tensors: tuple[Tensor, ...], chunk_size: int) -> Tensor:
    """kernel applied to consecutive row blocks of ``tensors``, written into one result.

    Preallocating the result (rather than ``torch.cat`` of the pieces) keeps the peak
    at one result plus one chunk's temporaries.
    """
    n = tensors[0].shape[0]
    with torch.enable_grad():
        if n <= chunk_size:
            return kernel(*tensors).detach()
        first = kernel(*(t[:chunk_size] for t in tensors)).detach()
        out = first.new_empty((n, *first.shape[1:]))
        out[:chunk_size] = first
        for start in range(chunk_size, n, chunk_size):
            block = kernel(*(t[start : start + chunk_size] for t in tensors))
            out[start : start + chunk_size] = block.detach()
    return out


def _finish(result: Tensor, single: bool) -> Tensor:
    return result[0] if single else result


# ------------------------------------------------------------------ generic kernels


def _outputs_with_graph(f: Function, X: Tensor) -> tuple[Tensor, Tensor]:
    """(X requiring grad, f(X) as (n, m)) — vector view of f, with the graph kept."""
    X = X.detach().requires_grad_(True)
    y = _checked_output(f(X), X.shape[0])
    return X, (y[:, None] if y.ndim == 1 else y)


def _basis_grads(y: Tensor, n: int) -> Tensor:
    """The m unit cotangents e_k broadcast over the batch, (m, n, m)."""
    m = y.shape[1]
    return torch.eye(m, dtype=y.dtype, device=y.device)[:, None, :].expand(m, n, m)


def _autograd_jacobian(f: Function, X: Tensor, create_graph: bool = False) -> tuple[Tensor, Tensor]:
    """(X, J) with J (n, m, d) from m batch-summed reverse sweeps vectorised by vmap."""
    X, y = _outputs_with_graph(f, X)
    if y.shape[1] == 1:
        (grad,) = torch.autograd.grad(y.sum(), X, create_graph=create_graph)
        return X, grad[:, None, :]
    (grads,) = torch.autograd.grad(
        y, X, _basis_grads(y, X.shape[0]), create_graph=create_graph, is_grads_batched=True
    )
    return X, grads.transpose(0, 1)


def _batch_sum_hessian(f: Function, X: Tensor) -> Tensor:
    """(n, m, d, d): reverse sweeps of the batch-summed Jacobian, vectorised over (m, d)."""
    X, jac = _autograd_jacobian(f, X, create_graph=True)
    n, m, d = jac.shape
    summed = jac.sum(0)  # (m, d): entry (k, i) differentiates to every point's H_k[i, :]
    basis = torch.eye(m * d, dtype=X.dtype, device=X.device).reshape(m * d, m, d)
    (rows,) = torch.autograd.grad(summed, X, basis, is_grads_batched=True)
    return rows.reshape(m, d, n, d).permute(2, 0, 1, 3)


def _vmap_rev_rev_hessian(f: Function, X: Tensor) -> Tensor:
    """(n, m, d, d) from ``vmap(jacrev(jacrev(f)))`` over single points."""

    def at_point(x: Tensor) -> Tensor:
        y = f(x[None])
        return y.reshape(-1)

    return vmap(jacrev(jacrev(at_point)))(X)


_GENERIC_HESSIANS = {"batch-sum": _batch_sum_hessian, "vmap-rev-rev": _vmap_rev_rev_hessian}


# ------------------------------------------------------------------------- helpers


def _output_width(f: Function, X: Tensor) -> tuple[bool, int]:
    """(scalar, m): whether f returns (N,) and how many outputs, from one point."""
    with torch.no_grad():
        y = _checked_output(f(X[:1]), 1)
    return y.ndim == 1, (1 if y.ndim == 1 else y.shape[1])


def _uses_layerwise(f: Function, method: str) -> bool:
    """Resolve ``method`` for second derivatives, validating it and the network."""
    if method not in HESSIAN_METHODS:
        raise InputError(f"method must be one of {HESSIAN_METHODS}, got {method!r}")
    check_second_derivatives(f)
    if method == "layerwise" and not supports_layerwise(f):
        raise InputError(f"method='layerwise' needs a surrogates.model.MLP, got {type(f).__name__}")
    return method == "layerwise" or (method == "auto" and supports_layerwise(f))


def _generic_hessian_kernel(f: Function, method: str) -> Callable[[Tensor], Tensor]:
    return functools.partial(_GENERIC_HESSIANS["batch-sum" if method == "auto" else method], f)


def _generic_chunk(d: int, m: int, dtype: torch.dtype) -> int:
    # m·d vectorised reverse sweeps each carry a few width-sized (~128) temporaries.
    return _second_order_chunk(256 * m * d + m * d * d, dtype, _GENERIC_MAX_CHUNK)


# ---------------------------------------------------------------------- public API


def value(
    f: Function, X: Tensor, *, chunk_size: int | None = None, dtype: torch.dtype | None = None
) -> Tensor:
    """f at every point, without a graph: (N,) or (N, m).

    Allowed under ``torch.inference_mode`` (nothing is differentiated).

    Args:
        f: Callable mapping (N, d) → (N,) or (N, m).
        X: Points (N, d) or one point (d,).
        chunk_size: Points per evaluation; ``None`` for 4096.
        dtype: Computation dtype (see module docstring).
    """
    f, X, single, _ = _prepare(f, X, dtype, differentiate=False)

    def kernel(chunk: Tensor) -> Tensor:
        with torch.no_grad():
            return _checked_output(f(chunk), chunk.shape[0])

    return _finish(_map_chunks(kernel, (X,), _chunk_size(chunk_size, _FIRST_ORDER_CHUNK)), single)


def gradient(
    f: Function, X: Tensor, *, chunk_size: int | None = None, dtype: torch.dtype | None = None
) -> Tensor:
    """∇f at every point, (N, d), for scalar f.

    One reverse sweep of Σ_n f(x_n) gives all per-point gradients. This is also the
    route for the package MLP: a hand-written backward sweep does the same matrix
    products, and autograd's saved activations make σ′ free.

    Args:
        f: Callable mapping (N, d) → (N,) or (N, 1).
        X: Points (N, d) or one point (d,).
        chunk_size: Points per reverse sweep; ``None`` for 4096.
        dtype: Computation dtype (see module docstring).

    Raises:
        InputError: f has more than one output (use :func:`jacobian`).
    """
    f, X, single, _ = _prepare(f, X, dtype)

    def kernel(chunk: Tensor) -> Tensor:
        chunk, y = _outputs_with_graph(f, chunk)
        if y.shape[1] != 1:
            raise InputError(
                f"gradient needs a scalar f, but f returns {y.shape[1]} outputs per point; use jacobian"
            )
        return torch.autograd.grad(y.sum(), chunk)[0]

    return _finish(_map_chunks(kernel, (X,), _chunk_size(chunk_size, _FIRST_ORDER_CHUNK)), single)


def jacobian(
    f: Function, X: Tensor, *, chunk_size: int | None = None, dtype: torch.dtype | None = None
) -> Tensor:
    """∂f_k/∂x_i at every point, (N, m, d) — (N, 1, d) for scalar f.

    Package MLP: exact layer-wise products, forward mode when d < m, otherwise one
    backward sweep batched over the m outputs. Other callables: m batch-summed
    reverse sweeps vectorised with ``is_grads_batched``.

    Args:
        f: Callable mapping (N, d) → (N,) or (N, m).
        X: Points (N, d) or one point (d,).
        chunk_size: Points per chunk; ``None`` for 4096.
        dtype: Computation dtype (see module docstring).
    """
    f, X, single, target = _prepare(f, X, dtype)
    if supports_layerwise(f):
        kernel = functools.partial(layerwise_jacobian, LayerwiseMLP.from_module(f, target))
    else:
        kernel = lambda chunk: _autograd_jacobian(f, chunk)[1]  # noqa: E731
    return _finish(_map_chunks(kernel, (X,), _chunk_size(chunk_size, _FIRST_ORDER_CHUNK)), single)


def hessian(
    f: Function,
    X: Tensor,
    *,
    chunk_size: int | None = None,
    dtype: torch.dtype | None = None,
    method: str = "auto",
) -> Tensor:
    """All second partials ∂²f/∂x_i∂x_j at every point.

    Args:
        f: Callable mapping (N, d) → (N,) or (N, m).
        X: Points (N, d) or one point (d,).
        chunk_size: Points per chunk; ``None`` sizes chunks to a few-MB working set.
        dtype: Computation dtype (see module docstring).
        method: One of :data:`HESSIAN_METHODS`.

    Returns:
        (N, d, d) for scalar f, (N, m, d, d) for f returning (N, m), m = 1 included.

    Raises:
        InputError: f is a network with a piecewise-linear (ReLU-type) activation.
    """
    f, X, single, target = _prepare(f, X, dtype)
    scalar, m = _output_width(f, X)
    d = X.shape[1]
    if _uses_layerwise(f, method):
        net = LayerwiseMLP.from_module(f, target)
        kernel = functools.partial(layerwise_hessian, net, workspace=Workspace())
        # Jᵀ, its σ′-scaled copy, the product, m curvature-scaled copies, the result.
        default = _second_order_chunk(f.width * d * (m + 3) + m * d * d, target)
    else:
        kernel = _generic_hessian_kernel(f, method)
        default = _generic_chunk(d, m, target)
    result = _map_chunks(kernel, (X,), _chunk_size(chunk_size, default))
    return _finish(result[:, 0] if scalar else result, single)


def laplacian(
    f: Function,
    X: Tensor,
    *,
    chunk_size: int | None = None,
    dtype: torch.dtype | None = None,
    method: str = "auto",
) -> Tensor:
    """Δf = Σ_i ∂²f/∂x_i² at every point: (N,) or (N, m).

    Package MLP (``method="auto"`` or ``"layerwise"``): forward Laplacian
    propagation, no Hessian formed. Otherwise the trace of the generic Hessian
    route (the diagonal alone costs the same d reverse sweeps).

    Args:
        f: Callable mapping (N, d) → (N,) or (N, m).
        X: Points (N, d) or one point (d,).
        chunk_size: Points per chunk; ``None`` sizes chunks to a few-MB working set.
        dtype: Computation dtype (see module docstring).
        method: One of :data:`HESSIAN_METHODS`.

    Raises:
        InputError: f is a network with a piecewise-linear (ReLU-type) activation.
    """
    f, X, single, target = _prepare(f, X, dtype)
    scalar, m = _output_width(f, X)
    d = X.shape[1]
    if _uses_layerwise(f, method):
        net = LayerwiseMLP.from_module(f, target)
        kernel = functools.partial(layerwise_laplacian, net, workspace=Workspace())
        # Jᵀ, its σ′-scaled copy, the product and the squares, per point.
        default = _second_order_chunk(4 * f.width * d, target)
    else:
        hessian_kernel = _generic_hessian_kernel(f, method)
        kernel = lambda chunk: hessian_kernel(chunk).diagonal(dim1=-2, dim2=-1).sum(-1)  # noqa: E731
        default = _generic_chunk(d, m, target)
    result = _map_chunks(kernel, (X,), _chunk_size(chunk_size, default))
    return _finish(result[:, 0] if scalar else result, single)


def _per_point_vectors(v: object, X: Tensor, name: str) -> Tensor:
    """v as (N, d) rows matching X, broadcast from a shared (d,) vector."""
    if not isinstance(v, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (d,) or (N, d), got {type(v).__name__}")
    n, d = X.shape
    if tuple(v.shape) not in ((d,), (n, d)):
        raise InputError(
            f"{name} must have shape ({d},) or ({n}, {d}) to match X {tuple(X.shape)}, got {tuple(v.shape)}"
        )
    return v.detach().to(X.dtype).expand(n, d)


def directional_derivative(
    f: Function,
    X: Tensor,
    v: Tensor,
    *,
    chunk_size: int | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """D_u f = J u with u = v/‖v‖, at every point: (N,) or (N, m).

    One forward-mode (jvp) sweep for all points and outputs.

    Args:
        f: Callable mapping (N, d) → (N,) or (N, m).
        X: Points (N, d) or one point (d,).
        v: Direction (d,) shared by all points, or one per point (N, d); normalised.
        chunk_size: Points per chunk; ``None`` for 4096.
        dtype: Computation dtype (see module docstring).

    Raises:
        InputError: v has the wrong shape or is a zero vector.
    """
    f, X, single, _ = _prepare(f, X, dtype)
    V = _per_point_vectors(v, X, "v")
    norms = torch.linalg.vector_norm(V, dim=1, keepdim=True)
    if bool((norms == 0).any()):
        raise InputError("v contains a zero vector, which has no direction")

    def kernel(points: Tensor, directions: Tensor) -> Tensor:
        return _checked_output(jvp(f, (points,), (directions,))[1], points.shape[0])

    result = _map_chunks(kernel, (X, V / norms), _chunk_size(chunk_size, _FIRST_ORDER_CHUNK))
    return _finish(result, single)


def hvp(
    f: Function,
    X: Tensor,
    V: Tensor,
    *,
    chunk_size: int | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Hessian-vector products ∇²f(x_n) v_n without forming any Hessian.

    Reverse-over-reverse on the batch sum: Σ_n J(x_n) v_n differentiated once more
    gives every H_n v_n, at the cost of about two gradients per output.

    Args:
        f: Callable mapping (N, d) → (N,) or (N, m).
        X: Points (N, d) or one point (d,).
        V: Vectors (N, d), or one (d,) for all points; used as given (not normalised).
        chunk_size: Points per chunk; ``None`` for 4096.
        dtype: Computation dtype (see module docstring).

    Returns:
        (N, d) for scalar f, (N, m, d) for f returning (N, m).

    Raises:
        InputError: V has the wrong shape, or f has a piecewise-linear activation.
    """
    f, X, single, _ = _prepare(f, X, dtype)
    check_second_derivatives(f)
    scalar, _ = _output_width(f, X)

    def kernel(points: Tensor, vectors: Tensor) -> Tensor:
        points, jac = _autograd_jacobian(f, points, create_graph=True)
        projected = (jac * vectors[:, None, :]).sum((0, 2))  # (m,): Σ_n J_n v_n
        basis = torch.eye(projected.shape[0], dtype=points.dtype, device=points.device)
        (products,) = torch.autograd.grad(projected, points, basis, is_grads_batched=True)
        return products.transpose(0, 1)

    vectors = _per_point_vectors(V, X, "V")
    result = _map_chunks(kernel, (X, vectors), _chunk_size(chunk_size, _FIRST_ORDER_CHUNK))
    return _finish(result[:, 0] if scalar else result, single)


@dataclass(frozen=True)
class TaylorModel:
    """Second-order Taylor model of f about a centre x₀ (per output k):

        T_k(x) = f_k(x₀) + ∇f_k(x₀)·(x − x₀) + ½ (x − x₀)ᵀ ∇²f_k(x₀) (x − x₀).

    Attributes:
        center: x₀, (d,).
        value: f(x₀), () for scalar f or (m,).
        gradient: ∇f(x₀), (d,) for scalar f, or the Jacobian (m, d).
        hessian: ∇²f(x₀), (d, d) or (m, d, d).
    """

    center: Tensor
    value: Tensor
    gradient: Tensor
    hessian: Tensor

    def __call__(self, X: Tensor) -> Tensor:
        """The model at points (N, d) → (N,) or (N, m); at one point (d,) → () or (m,)."""
        d = self.center.shape[0]
        if not isinstance(X, Tensor):
            raise TypeError(f"X must be a torch.Tensor of shape (N, {d}) or ({d},), got {type(X).__name__}")
        if X.ndim not in (1, 2) or X.shape[-1] != d:
            raise InputError(f"X must have shape (N, {d}) or ({d},), got {tuple(X.shape)}")
        step = X.to(self.center.dtype) - self.center
        if self.hessian.ndim == 2:
            curvature = ((step @ self.hessian) * step).sum(-1)
            return self.value + step @ self.gradient + 0.5 * curvature
        curvature = torch.einsum("...i,kij,...j->...k", step, self.hessian, step)
        return self.value + step @ self.gradient.T + 0.5 * curvature


def taylor(f: Function, x0: Tensor, *, dtype: torch.dtype | None = None) -> TaylorModel:
    """The second-order Taylor model of f at x₀.

    Args:
        f: Callable mapping (N, d) → (N,) or (N, m).
        x0: The centre, (d,) or (1, d).
        dtype: Computation dtype (see module docstring).

    Raises:
        InputError: x0 is not a single point, or f has a piecewise-linear activation.
    """
    if isinstance(x0, Tensor) and x0.ndim == 2 and x0.shape[0] == 1:
        x0 = x0[0]
    if isinstance(x0, Tensor) and x0.ndim != 1:
        raise InputError(f"x0 must be one point, (d,) or (1, d), got {tuple(x0.shape)}")
    f, X, _, _ = _prepare(f, x0, dtype)
    center = X[0]
    scalar, _ = _output_width(f, X)
    jac = jacobian(f, center)
    return TaylorModel(
        center=center,
        value=value(f, center),
        gradient=jac[0] if scalar else jac,
        hessian=hessian(f, center),
    )
