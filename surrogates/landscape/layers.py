"""Per-layer curvature: extreme eigenvalues and trace of each diagonal block of the loss Hessian.

Split the parameters into blocks :math:`\\theta = (\\theta_1, \\dots, \\theta_B)` (by default one
block per module that owns parameters: a layer's weight and bias). The diagonal block

.. math:: H_{bb} = \\nabla^2_{\\theta_b} L

is the Hessian of the loss as a function of block :math:`b` alone, the others held fixed. For each
block we report :math:`\\lambda_{\\max}(H_{bb})`, :math:`\\lambda_{\\min}(H_{bb})` and
:math:`\\operatorname{tr} H_{bb}`.

*What is shared, and what cannot be.* A product of the full Hessian with a block-structured
vector :math:`z = (z_1, \\dots, z_B)` gives :math:`(Hz)_b = H_{bb} z_b + \\sum_{c \\ne b} H_{bc} z_c`,
so it is **not** :math:`H_{bb} z_b`: eigenvalues of a block need products of that block alone
(:class:`~surrogates.landscape.operator.HessianOperator` with ``params=`` the block, whose
gradient graph only records the part of the network downstream of the block, so a late
layer's products are cheaper than full ones). The *quadratic form* is another matter: for
independent zero-mean probes in the different blocks,

.. math:: \\mathbb E\\big[z_b^\\top (Hz)_b\\big] = \\operatorname{tr} H_{bb}
          + \\sum_{c \\ne b} \\mathbb E\\big[z_b^\\top H_{bc} z_c\\big] = \\operatorname{tr} H_{bb},

so one full product per probe estimates the traces of all blocks at once (and their sum, the
full trace). The variance carries the cross blocks,
:math:`\\operatorname{Var} = 2(\\lVert H_{bb}\\rVert_F^2 - \\sum_i (H_{bb})_{ii}^2) + \\sum_{c\\ne b}\\lVert H_{bc}\\rVert_F^2`
for Rademacher probes, and is reported as a standard error.

*Reusing each block's Lanczos run.* The Lanczos run for block :math:`b` leaves an orthonormal
Krylov basis :math:`Q_b` with :math:`Q_b^\\top H_{bb} Q_b = T_b`. With
:math:`P_b = I - Q_b Q_b^\\top` and projected probes :math:`u_b = P_b z_b`,

.. math:: \\operatorname{tr} H_{bb} = \\operatorname{tr} T_b + \\operatorname{tr}(P_b H_{bb} P_b)
          \\approx \\operatorname{tr} T_b + \\frac1s \\sum_{p=1}^s u_{p,b}^\\top (H u_p)_b ,

the same unbiasedness argument applying to :math:`u = (u_1, \\dots, u_B)`: the dominant
directions of every block, found by its Lanczos run at no extra cost, leave the variance (of
the diagonal and of the cross terms). A block that Lanczos spans completely has an exact trace.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from surrogates.errors import InputError

from ._util import make_generator, with_progress
from .krylov import orthogonalize
from .lanczos import lanczos
from .operator import HessianOperator
from .parametrized import select_parameters
from .trace import probes


@dataclass
class LayerSpectrum:
    """Curvature of one diagonal block :math:`H_{bb}`.

    Attributes:
        name: Block label (the owning module's name by default).
        kind: The owning module's class name (``""`` for custom blocks).
        params: Parameter names in the block.
        size: Number of scalars :math:`n_b`.
        lambda_max: Largest eigenvalue of :math:`H_{bb}`.
        lambda_min: Smallest eigenvalue of :math:`H_{bb}`.
        lambda_max_error: Error bound of ``lambda_max`` (:math:`\\min(r, r^2/\\mathrm{gap})`).
        lambda_min_error: Error bound of ``lambda_min``.
        converged: Both Ritz pairs met the residual tolerance.
        trace: Estimate of :math:`\\operatorname{tr} H_{bb}`.
        trace_stderr: Its standard error (0 when the Krylov basis spans the block).
        krylov_dim: Dimension of the block's Krylov basis (= its Lanczos products).
    """

    name: str
    kind: str
    params: list[str]
    size: int
    lambda_max: float
    lambda_min: float
    lambda_max_error: float
    lambda_min_error: float
    converged: bool
    trace: float
    trace_stderr: float
    krylov_dim: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "params": list(self.params), "size": self.size,
            "lambda_max": self.lambda_max, "lambda_min": self.lambda_min,
            "lambda_max_error": self.lambda_max_error, "lambda_min_error": self.lambda_min_error,
            "converged": self.converged, "trace": self.trace, "trace_stderr": self.trace_stderr,
            "krylov_dim": self.krylov_dim,
        }


@dataclass
class LayerSpectra:
    """Per-block curvature of a loss Hessian (:func:`layer_spectra`).

    Attributes:
        layers: One :class:`LayerSpectrum` per block, in parameter order.
        trace: :math:`\\sum_b \\operatorname{tr} H_{bb}`, the trace of the Hessian over all blocks.
        trace_stderr: Its standard error (from the per-probe sums, so correlations count).
        trace_probes: Shared full-Hessian probes spent (0 when every block's trace is exact).
        block_products: Products of the block operators (Lanczos), all blocks together.
        full_products: Products of the full operator (the shared probes).
    """

    layers: list[LayerSpectrum]
    trace: float
    trace_stderr: float
    trace_probes: int
    block_products: int
    full_products: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_products(self) -> int:
        """All Hessian-vector products (block and full)."""
        return self.block_products + self.full_products

    def rows(self) -> list[dict[str, Any]]:
        """One dict per block (see :meth:`LayerSpectrum.to_dict`)."""
        return [layer.to_dict() for layer in self.layers]

    def table(self) -> str:
        """A fixed-width text table: one line per block and a total line."""
        head = f"{'layer':<14}{'kind':<12}{'size':>9}{'lambda_max':>13}{'lambda_min':>13}{'trace':>12}{'± stderr':>10}  conv"
        lines = [head, "-" * len(head)]
        for r in self.layers:
            lines.append(
                f"{r.name[:13]:<14}{r.kind[:11]:<12}{r.size:>9d}{r.lambda_max:>13.5g}{r.lambda_min:>13.5g}"
                f"{r.trace:>12.5g}{r.trace_stderr:>10.2g}  {'yes' if r.converged else 'NO'}"
            )
        total = sum(r.size for r in self.layers)
        lines.append(f"{'all blocks':<26}{total:>9d}{'':>26}{self.trace:>12.5g}{self.trace_stderr:>10.2g}")
        lines.append(
            f"products: {self.block_products} block (Lanczos) + {self.full_products} full (shared trace probes)"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": self.rows(),
            "trace": self.trace,
            "trace_stderr": self.trace_stderr,
            "trace_probes": self.trace_probes,
            "block_products": self.block_products,
            "full_products": self.full_products,
            "num_products": self.num_products,
            **self.info,
        }


def parameter_blocks(
    model: nn.Module,
    blocks: Mapping[str, str | Sequence[str]] | Sequence[str] | None = None,
    params: str | Sequence[str] | None = None,
) -> list[tuple[str, str, list[str]]]:
    """Partition the studied parameters into labelled blocks.

    Args:
        model: The network.
        blocks: ``None``: one block per module that directly owns studied parameters (a
            layer's weight and bias together), labelled by the module's name. A sequence of
            names/globs: one block per entry, labelled by it. A mapping ``{label: names/globs}``:
            one block per label.
        params: With ``blocks=None``, the studied parameters (names/globs as for
            :class:`HessianOperator`); ``None``: every parameter with ``requires_grad``.

    Returns:
        ``(label, module kind, parameter names)`` per block, ordered by first parameter.

    Raises:
        InputError: A pattern matches nothing, a parameter falls in two blocks, or a block is empty.
    """
    order = {n: i for i, (n, _) in enumerate(model.named_parameters())}
    if blocks is None:
        owners = dict(model.named_modules())
        grouped: dict[str, list[str]] = {}
        try:
            studied = select_parameters(model, params)
        except ValueError as err:
            raise InputError(str(err)) from err
        for name in studied:
            grouped.setdefault(name.rpartition(".")[0], []).append(name)
        out = [(owner or name_list[0], type(owners[owner]).__name__ if owner in owners else "", name_list)
               for owner, name_list in grouped.items()]
    else:
        items = blocks.items() if isinstance(blocks, Mapping) else ((str(p), p) for p in blocks)
        out = []
        for label, patterns in items:
            try:
                names = select_parameters(model, patterns)
            except ValueError as err:
                raise InputError(f"block {label!r}: {err}") from err
            out.append((str(label), "", names))
        seen: dict[str, str] = {}
        for label, _, names in out:
            for n in names:
                if n in seen:
                    raise InputError(f"parameter {n!r} is in two blocks, {seen[n]!r} and {label!r}; blocks must not overlap")
                seen[n] = label
    if not out:
        raise InputError("no parameter blocks to study")
    return sorted(out, key=lambda b: order[b[2][0]])


@dataclass
class _Block:
    """One block's Lanczos run: its coordinates in the full vector, Krylov basis and extreme Ritz pairs."""

    label: str
    kind: str
    names: list[str]
    index: torch.Tensor
    basis: torch.Tensor
    krylov_trace: float  # tr T_b = tr(Q_b^T H_bb Q_b)
    extremes: tuple[float, float]
    errors: tuple[float, float]
    converged: bool

    @property
    def spanned(self) -> bool:
        """The Krylov basis is the whole block: its trace is exactly ``krylov_trace``."""
        return self.basis.shape[1] >= len(self.index)


def _block_lanczos(op: HessianOperator, max_iter: int, tol: float | None, seed: int) -> dict[str, Any]:
    """Lanczos from both ends on one block operator (a 1x1 block is its single entry)."""
    if op.n == 1:
        h = float((op @ torch.ones(1, dtype=torch.float64))[0])
        return {"basis": torch.ones(1, 1, dtype=torch.float64), "krylov_trace": h, "extremes": (h, h),
                "errors": (0.0, 0.0), "converged": True}
    res = lanczos(op, 1, "BE", max_iter=max(2, min(max_iter, op.n)), tol=tol, seed=seed, keep_basis=True,
                  return_eigenvectors=False, warn=False)
    return {"basis": res.basis, "krylov_trace": float(np.sum(res.all_ritz_values)),
            "extremes": tuple(float(v) for v in res.eigenvalues), "errors": tuple(float(v) for v in res.error_bounds),
            "converged": res.all_converged}


def layer_spectra(
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    data: Any,
    *,
    blocks: Mapping[str, str | Sequence[str]] | Sequence[str] | None = None,
    params: str | Sequence[str] | None = None,
    max_iter: int = 100,
    tol: float | None = None,
    trace_probes: int = 32,
    seed: int | None = 0,
    dtype: torch.dtype | None = None,
    batch_size: int | None = None,
    reduction: str | None = None,
    cache_graphs: bool | str = "auto",
    mode: str = "eval",
    progress: bool | None = False,
) -> LayerSpectra:
    """:math:`\\lambda_{\\max}`, :math:`\\lambda_{\\min}` and trace of every diagonal block :math:`H_{bb}` in one call.

    Per block, one Lanczos run from both ends (``which="BE"``, at most ``max_iter`` products of
    the block operator, stopping when both ends converge). Then ``trace_probes`` products of
    the full Hessian with Rademacher probes, each projected per block onto the complement of
    that block's Krylov basis, estimate every block's trace at once (see the module docstring);
    a block whose Krylov basis spans it has an exact trace, and when every block does, no probe
    is spent.

    Args:
        model: The network (left untouched, as by :class:`HessianOperator`).
        loss_fn: ``loss_fn(outputs, targets) -> scalar``.
        data: Anything :class:`HessianOperator` accepts.
        blocks: How to cut the parameters (:func:`parameter_blocks`); default one block per layer.
        params: With ``blocks=None``, which parameters the layers' blocks are made of (default:
            every parameter with ``requires_grad``).
        max_iter: Lanczos products per block, at most.
        tol: Relative residual tolerance of the Lanczos runs (default matched to the dtype).
        trace_probes: Shared full-Hessian probes for the traces (at least 2, for a standard error).
        seed: Seed of the Lanczos start vectors (block ``b`` uses ``seed + b``) and of the probes.
        dtype, batch_size, reduction, cache_graphs, mode: As for :class:`HessianOperator`.
        progress: tqdm bar over blocks and probes (``None``: only on a TTY).

    Returns:
        A :class:`LayerSpectra` (``.table()``, ``.rows()``, ``.to_dict()``).

    Raises:
        InputError: ``max_iter < 2`` or ``trace_probes < 2``, or bad ``blocks``.
    """
    if not isinstance(max_iter, int) or max_iter < 2:
        raise InputError(f"max_iter must be an int >= 2 (Lanczos from both ends), got {max_iter!r}")
    if not isinstance(trace_probes, int) or trace_probes < 2:
        raise InputError(f"trace_probes must be an int >= 2 (a standard error needs two probes), got {trace_probes!r}")
    seed = 0 if seed is None else seed
    parts = parameter_blocks(model, blocks, params)
    settings = {"dtype": dtype, "batch_size": batch_size, "reduction": reduction, "cache_graphs": cache_graphs, "mode": mode}
    full = HessianOperator(model, loss_fn, data, params=[n for _, _, names in parts for n in names], **settings)
    offsets = dict(zip(full.param_names, np.cumsum([0, *full.fmodel.sizes[:-1]]).tolist()))
    sizes = dict(zip(full.param_names, full.fmodel.sizes))

    found: list[_Block] = []
    block_products = 0
    for b, (label, kind, names) in enumerate(with_progress(parts, enabled=progress, total=len(parts), desc="layer Lanczos")):
        # one block of everything is the full operator: share its gradient graph
        op = full if names == full.param_names else HessianOperator(model, loss_fn, data, params=names, **settings)
        run = _block_lanczos(op, max_iter, tol, seed + b)
        block_products += op.num_products
        index = torch.cat([torch.arange(offsets[n], offsets[n] + sizes[n]) for n in names])
        found.append(_Block(label, kind, names, index, **run))
        del op  # a block operator's gradient graph

    full.reset_counter()
    gen = make_generator(seed + len(parts))
    samples = np.zeros((trace_probes, len(parts)))
    count = 0 if all(block.spanned for block in found) else trace_probes
    for p in with_progress(range(count), enabled=progress, total=count, desc="layer trace probes"):
        z = probes(full.n, 1, gen)[:, 0].to(full.device)
        u = torch.zeros_like(z)
        for block in found:
            u[block.index] = orthogonalize(z[block.index], block.basis.to(z.device))
        w = (full @ u).to(torch.float64)
        for b, block in enumerate(found):
            samples[p, b] = float(u[block.index] @ w[block.index])

    layers = [
        LayerSpectrum(
            name=block.label, kind=block.kind, params=list(block.names), size=len(block.index),
            lambda_max=block.extremes[0], lambda_min=block.extremes[1],
            lambda_max_error=block.errors[0], lambda_min_error=block.errors[1], converged=block.converged,
            trace=block.krylov_trace + (0.0 if block.spanned else float(samples[:, b].mean())),
            trace_stderr=0.0 if block.spanned else _stderr(samples[:, b]), krylov_dim=int(block.basis.shape[1]),
        )
        for b, block in enumerate(found)
    ]
    stochastic = np.array([not block.spanned for block in found])
    return LayerSpectra(
        layers=layers,
        trace=float(sum(layer.trace for layer in layers)),
        trace_stderr=_stderr(samples[:, stochastic].sum(axis=1)) if stochastic.any() else 0.0,
        trace_probes=count,
        block_products=block_products,
        full_products=full.num_products,
        info={"max_iter": max_iter, "seed": seed, "num_params": full.n, "num_samples": full.num_samples},
    )


def _stderr(samples: np.ndarray) -> float:
    return float(np.std(samples, ddof=1) / math.sqrt(len(samples)))
