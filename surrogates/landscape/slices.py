"""1-D and 2-D loss slices through the weights, and the linear path between two checkpoints.

A slice evaluates :math:`L(\\theta^* + \\alpha d_1 + \\beta d_2)` on a grid of :math:`(\\alpha, \\beta)`.
Directions:

* **filter-normalised Gaussian** (Li, Xu, Taylor, Studer, Goldstein 2018): :math:`d \\sim \\mathcal N(0, I)`
  rescaled filter by filter (each slice along a weight tensor's first dimension) to the norm of
  the matching filter of :math:`\\theta^*`, so the picture does not depend on the arbitrary
  scale of each layer; 1-D tensors (biases, norm layers) get zero, as in the paper;
* **Hessian eigenvectors** (unit norm) from :func:`~surrogates.landscape.lanczos.lanczos`;
* the **interpolation** :math:`\\theta(t) = (1-t)\\theta_A + t\\theta_B`.

Grids are built from integers so the origin (and for paths, ``t = 0`` and ``t = 1``) is hit
exactly, and symmetric grids are exactly symmetric. Parameters are passed through
``functional_call``; the model is never modified.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ._util import make_generator, with_progress
from .operator import HessianOperator


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose arg-max equals the integer target (a batch mean)."""
    return (outputs.argmax(dim=-1) == targets).to(torch.float64).mean()


def symmetric_grid(num_points: int, span: float) -> np.ndarray:
    """``num_points`` (odd) values from ``-span`` to ``span`` containing 0.0 exactly, exactly symmetric.

    Raises:
        InputError: ``num_points`` even or < 3, or ``span`` not positive.
    """
    if not isinstance(num_points, int) or num_points < 3 or num_points % 2 == 0:
        raise InputError(f"num_points must be an odd int >= 3 so the grid contains the origin, got {num_points!r}")
    if not span > 0:
        raise InputError(f"span must be positive, got {span!r}")
    half = num_points // 2
    k = np.arange(-half, half + 1, dtype=np.float64)
    return k * (float(span) / half)


def path_grid(num_points: int, extend: float = 0.0) -> np.ndarray:
    """Grid of ``t`` for an interpolation path: ``num_points`` points in [0, 1] (0 and 1 exact),
    continued with the same step by about ``extend`` on both sides."""
    if not isinstance(num_points, int) or num_points < 2:
        raise InputError(f"num_points must be an int >= 2, got {num_points!r}")
    if extend < 0:
        raise InputError(f"extend must be >= 0, got {extend}")
    m = num_points - 1
    e = int(round(extend * m))
    return np.arange(-e, m + e + 1, dtype=np.float64) / m


def filter_normalized_direction(
    op: HessianOperator, *, seed: int | None = 0, bias: str = "zero"
) -> torch.Tensor:
    """A random Gaussian direction, filter-normalised like the operator's parameters (Li et al. 2018).

    For a weight tensor :math:`W` with filters :math:`W_i` (slices along dimension 0) the
    direction's filters are :math:`d_i \\leftarrow d_i\\,\\lVert W_i\\rVert / \\lVert d_i\\rVert`.

    Args:
        op: The operator whose selected parameters define the space.
        seed: Seed of the Gaussian draw.
        bias: ``"zero"`` (Li et al.'s default: no movement of 1-D parameters) or ``"normalize"``
            (a 1-D tensor is one filter).

    Returns:
        A flat float64 direction of length ``op.n``.
    """
    if bias not in ("zero", "normalize"):
        raise InputError(f"bias must be 'zero' or 'normalize', got {bias!r}")
    gen = make_generator(seed)
    parts = []
    for w in op.fmodel.base_values():
        w = w.detach().to("cpu", torch.float64)
        d = torch.randn(w.shape, generator=gen, dtype=torch.float64)
        if w.ndim <= 1:
            if bias == "zero":
                d.zero_()
            else:
                d *= torch.linalg.vector_norm(w) / torch.linalg.vector_norm(d).clamp_min(1e-300)
        else:
            wn = torch.linalg.vector_norm(w.reshape(w.shape[0], -1), dim=1)
            dn = torch.linalg.vector_norm(d.reshape(d.shape[0], -1), dim=1).clamp_min(1e-300)
            d *= (wn / dn).reshape(-1, *([1] * (w.ndim - 1)))
        parts.append(d.reshape(-1))
    return torch.cat(parts)


@dataclass
class Slice:
    """Loss (and metrics) on a 1-D or 2-D grid.

    Attributes:
        axes: The grid coordinates, one array per direction.
        values: ``{"loss": array, metric: array}``; shape ``(len(a),)`` or ``(len(a), len(b))``.
        kind: ``"random"``, ``"eigenvector"``, ``"path"`` or ``"custom"``.
        origin_index: Index of the origin (or ``t=0``) on each axis.
        num_evaluations: Full-data loss evaluations done (points taken from ``known`` excluded).
    """

    axes: list[np.ndarray]
    values: dict[str, np.ndarray]
    kind: str
    origin_index: tuple[int, ...]
    num_evaluations: int
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "axes": [a.tolist() for a in self.axes],
            "origin_index": list(self.origin_index),
            "num_evaluations": self.num_evaluations,
            **{k: v.tolist() for k, v in self.values.items()},
            **self.info,
        }


def slice_row(s: Slice) -> dict[tuple[float], dict[str, float]]:
    """The line of a 2-D slice through its origin along the first direction, as ``known`` points of a 1-D slice."""
    if len(s.axes) != 2:
        raise InputError(f"slice_row needs a 2-D slice, got {len(s.axes)}-D")
    j = s.origin_index[1]
    return {(float(a),): {k: float(v[i, j]) for k, v in s.values.items()} for i, a in enumerate(s.axes[0])}


def _check_direction(op: HessianOperator, d: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(d, torch.Tensor):
        d = torch.as_tensor(np.asarray(d))
    if d.shape != (op.n,):
        raise InputError(f"{name} must have shape ({op.n},) like the selected parameters, got {tuple(d.shape)}")
    return d.to(torch.float64)


def loss_slice(
    op: HessianOperator,
    directions: Sequence[torch.Tensor],
    axes: Sequence[np.ndarray],
    *,
    origin: torch.Tensor | None = None,
    metrics: Mapping[str, Callable[..., Any]] | None = None,
    kind: str = "custom",
    known: Mapping[tuple[float, ...], Mapping[str, float]] | None = None,
    progress: bool | None = None,
) -> Slice:
    """Evaluate :math:`L(\\theta_0 + \\sum_j a_j d_j)` on the tensor grid of ``axes``.

    Args:
        op: Defines model, loss, data, parameter subset, dtype and mode.
        directions: One or two flat directions of length ``op.n``.
        axes: One coordinate array per direction.
        origin: :math:`\\theta_0` (default: the model's current parameters).
        metrics: Extra functions ``fn(outputs, targets)`` to average (e.g. :func:`accuracy`).
        kind: Label stored in the result.
        known: Values already evaluated at the same origin and directions, keyed by grid
            coordinates (e.g. the origin, or the row of a 2-D slice through it); those points
            are copied, not evaluated again.
        progress: tqdm bar over grid points (``None``: only on a TTY).
    """
    if len(directions) not in (1, 2) or len(directions) != len(axes):
        raise InputError(f"need 1 or 2 directions with one axis each, got {len(directions)} directions and {len(axes)} axes")
    dirs = [_check_direction(op, d, f"direction {i}") for i, d in enumerate(directions)]
    axes = [np.asarray(a, dtype=np.float64) for a in axes]
    theta0 = op.parameters_vector().to(torch.float64) if origin is None else _check_direction(op, origin, "origin")
    shape = tuple(len(a) for a in axes)
    values: dict[str, np.ndarray] = {}
    points = list(np.ndindex(*shape))
    evaluated = 0
    for idx in with_progress(points, enabled=progress, total=len(points), desc=f"{len(shape)}-D slice"):
        coords = tuple(float(a[i]) for a, i in zip(axes, idx))
        out = (known or {}).get(coords)
        if out is None:
            theta = theta0.clone()
            for d, a in zip(dirs, coords):
                if a != 0.0:
                    theta = theta + a * d
            out = op.evaluate(theta, dict(metrics) if metrics else None)
            evaluated += 1
        for k, v in out.items():
            values.setdefault(k, np.full(shape, np.nan))[idx] = v
    origin_index = tuple(int(np.argmin(np.abs(a))) for a in axes)
    return Slice(axes, values, kind, origin_index, evaluated)


def random_slice(
    op: HessianOperator,
    num_points: int = 21,
    span: float = 1.0,
    *,
    dims: int = 1,
    seed: int | None = 0,
    bias: str = "zero",
    metrics: Mapping[str, Callable[..., Any]] | None = None,
    known: Mapping[tuple[float, ...], Mapping[str, float]] | None = None,
    progress: bool | None = None,
) -> Slice:
    """1-D or 2-D slice along filter-normalised Gaussian directions (seeds ``seed``, ``seed + 1``).

    The 1-D slice with seed ``s`` runs along the first direction of the 2-D slice with seed
    ``s``: pass :func:`slice_row` of the 2-D slice as ``known`` to reuse its points.
    """
    if dims not in (1, 2):
        raise InputError(f"dims must be 1 or 2, got {dims!r}")
    grid = symmetric_grid(num_points, span)
    dirs = [filter_normalized_direction(op, seed=(0 if seed is None else seed) + j, bias=bias) for j in range(dims)]
    out = loss_slice(op, dirs, [grid] * dims, metrics=metrics, kind="random", known=known, progress=progress)
    out.info.update({"seed": seed, "bias": bias, "span": span, "normalization": "filter"})
    return out


def eigenvector_slice(
    op: HessianOperator,
    eigenvectors: torch.Tensor,
    num_points: int = 21,
    span: float = 1.0,
    *,
    metrics: Mapping[str, Callable[..., Any]] | None = None,
    known: Mapping[tuple[float, ...], Mapping[str, float]] | None = None,
    progress: bool | None = None,
) -> Slice:
    """Slice along one or two unit Hessian eigenvectors (columns of ``eigenvectors``).

    ``span`` is in parameter-space distance (the vectors have unit norm).
    """
    V = eigenvectors if eigenvectors.ndim == 2 else eigenvectors[:, None]
    if V.shape[1] not in (1, 2):
        raise InputError(f"give 1 or 2 eigenvectors as columns, got shape {tuple(eigenvectors.shape)}")
    grid = symmetric_grid(num_points, span)
    dirs = [V[:, j] for j in range(V.shape[1])]
    out = loss_slice(op, dirs, [grid] * len(dirs), metrics=metrics, kind="eigenvector", known=known, progress=progress)
    out.info.update({"span": span})
    return out


def state_vector(op: HessianOperator, state: Mapping[str, torch.Tensor], source: str = "state dict") -> torch.Tensor:
    """Flatten the operator's selected parameters out of a state dict (checks keys and shapes)."""
    if not isinstance(state, Mapping):
        raise TypeError(f"{source} must be a mapping of parameter names to tensors, got {type(state).__name__}")
    missing = [n for n in op.fmodel.names if n not in state]
    if missing:
        raise InputError(f"{source} lacks parameters {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    parts = []
    for name, shape in zip(op.fmodel.names, op.fmodel.shapes):
        t = state[name]
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise InputError(f"{source}: parameter {name!r} has shape {got}, the model expects {shape}")
        parts.append(t.detach().to("cpu", torch.float64).reshape(-1))
    return torch.cat(parts)


def interpolation_path(
    op: HessianOperator,
    state_a: Mapping[str, torch.Tensor] | None,
    state_b: Mapping[str, torch.Tensor],
    num_points: int = 21,
    *,
    extend: float = 0.25,
    metrics: Mapping[str, Callable[..., Any]] | None = None,
    progress: bool | None = None,
) -> Slice:
    """Loss along :math:`\\theta(t) = (1-t)\\,\\theta_A + t\\,\\theta_B`; ``t = 0`` and ``t = 1`` are grid points.

    Args:
        op: Operator (its model provides unselected parameters and buffers).
        state_a: State dict of A (``None``: the model's current weights).
        state_b: State dict of B.
        num_points: Points in [0, 1].
        extend: Continue the path by this fraction beyond both ends.
    """
    a = op.parameters_vector().to(torch.float64) if state_a is None else state_vector(op, state_a, "checkpoint A")
    b = state_vector(op, state_b, "checkpoint B")
    t = path_grid(num_points, extend)
    out = loss_slice(op, [b - a], [t], origin=a, metrics=metrics, kind="path", progress=progress)
    out.info.update({"distance": float(torch.linalg.vector_norm(b - a)), "extend": extend})
    return out
