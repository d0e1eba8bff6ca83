"""Kronecker-factored approximate curvature (KFAC) of the GGN or Fisher, per Linear/Conv2d layer.

For a layer :math:`z = W a` (bias folded in as a last column of :math:`W` and a constant 1 in
:math:`a`), sample :math:`i`'s gradient is :math:`\\sum_t g_{it} a_{it}^\\top` over the layer's
weight-sharing positions :math:`t` (one for a plain ``Linear`` on ``(N, d)`` inputs; the output
pixels of a ``Conv2d``, whose :math:`a_{it}` are the unfolded input patches). The exact
curvature block :math:`\\frac1N\\sum_i J_i^\\top M_i J_i` (:mod:`.outputs`) is approximated by

.. math:: C_W \\approx B \\otimes A, \\qquad
          A = \\frac{1}{NT}\\sum_{i,t} a_{it} a_{it}^\\top, \\qquad
          B = \\frac1N\\sum_{i,t}\\sum_k c_{ik}\\, g_{itk} g_{itk}^\\top,

where :math:`M_i = \\sum_k c_{ik} d_{ik} d_{ik}^\\top` and :math:`g_{itk}` is :math:`d_{ik}` back-propagated
to the layer's output at position :math:`t` (the "expand" approximation of Eschenhagen et
al., 2023, for weight sharing). ``kind="ggn"`` (and ``"true"``) take :math:`M_i` exactly, i.e.
one backward pass per output dimension; ``kind="empirical"`` takes the observed gradient, one
backward pass. With :math:`T = 1`, :math:`A` and :math:`B` are exact whenever :math:`M_i` does not
depend on :math:`i` and the layer is the whole network — a single ``Linear`` layer with MSE —
so there KFAC equals the GGN.

Across layers the approximation is block diagonal. Everything then follows from the factors'
eigendecompositions :math:`A = Q_A\\Lambda_A Q_A^\\top`, :math:`B = Q_B\\Lambda_B Q_B^\\top`:
the eigenvalues are :math:`\\{\\lambda_{B,j}\\lambda_{A,k}\\}`, products are
:math:`\\mathrm{vec}(B V A)`, and damped inverse products are exact,
:math:`(B\\otimes A+\\delta I)^{-1}\\mathrm{vec}V = \\mathrm{vec}\\big(Q_B[(Q_B^\\top V Q_A)\\oslash
(\\lambda_B\\lambda_A^\\top+\\delta)]Q_A^\\top\\big)`.

Parameters are stored row-major (``weight[o, j]`` at ``o * d_in + j``), so the block of a
layer's ``[W, b]`` in the flat vector is ``kron(B, A)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..inference_mode import require_autograd
from ._util import module_mode
from .data import batch_size_of
from .lanczos import EigenResult, lanczos
from .operator import LossCurvatureOperator, SymmetricOperator
from .outputs import output_curvature


@dataclass
class KroneckerBlock:
    """One layer's factors ``B (d_out, d_out)`` and ``A (d_in', d_in')`` and where its parameters sit.

    Attributes:
        layer: The module's name in the model.
        weight: Selected weight parameter's name, or ``None``.
        bias: Selected bias parameter's name, or ``None`` (``A``'s last row/column is the bias's).
        A: Input factor; ``B``: output-gradient factor.
        eig_A, eig_B: ``(eigenvalues, eigenvectors)`` of each factor.
        positions: Weight-sharing positions per sample, ``T``.
    """

    layer: str
    module: nn.Module = field(repr=False)
    weight: str | None
    bias: str | None
    A: torch.Tensor | None = field(default=None, repr=False)
    B: torch.Tensor | None = field(default=None, repr=False)
    eig_A: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)
    eig_B: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)
    positions: int = 1

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's inputs as ``(n, T, d_in')`` rows :math:`a_{it}` (patches for a conv, 1 for a bias)."""
        n = x.shape[0]
        if self.weight is None:
            a = x.new_ones(n, self._positions_of(x), 0)
        elif isinstance(self.module, nn.Conv2d):
            m = self.module
            a = F.unfold(x, m.kernel_size, dilation=m.dilation, padding=_conv_padding(m), stride=m.stride)
            a = a.transpose(1, 2)
        else:
            a = x.reshape(n, -1, x.shape[-1])
        if self.bias is not None:
            a = torch.cat([a, a.new_ones(*a.shape[:2], 1)], dim=2)
        return a

    def _positions_of(self, x: torch.Tensor) -> int:
        if isinstance(self.module, nn.Conv2d):
            m = self.module
            pad = _conv_padding(m)
            sizes = [
                (x.shape[-2 + d] + 2 * pad[d] - m.dilation[d] * (m.kernel_size[d] - 1) - 1) // m.stride[d] + 1
                for d in range(2)
            ]
            return sizes[0] * sizes[1]
        return x[..., 0].numel() // x.shape[0]

    def output_grads(self, g: torch.Tensor) -> torch.Tensor:
        """Gradients w.r.t. the layer's output as ``(n, T, d_out)`` rows :math:`g_{it}`."""
        n = g.shape[0]
        if isinstance(self.module, nn.Conv2d):
            return g.reshape(n, g.shape[1], -1).transpose(1, 2)
        return g.reshape(n, -1, g.shape[-1])


def _conv_padding(m: nn.Conv2d) -> tuple[int, int]:
    if isinstance(m.padding, str):
        if m.padding == "valid":
            return (0, 0)
        total = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size)]
        if any(t % 2 for t in total):
            raise InputError(
                f"KFACOperator: Conv2d with padding='same' and an even kernel extent {m.kernel_size} pads "
                "asymmetrically, which is not supported; use explicit integer padding"
            )
        return (total[0] // 2, total[1] // 2)
    return tuple(m.padding)  # type: ignore[return-value]


class KFACOperator(LossCurvatureOperator):
    """KFAC approximation of the GGN (``kind="ggn"``) or Fisher (``"empirical"``, ``"true"``).

    Block diagonal over the selected ``nn.Linear`` / ``nn.Conv2d`` layers, each block
    ``kron(B, A)`` (see the module docstring). The factors come from one pass over the data at
    the first use (:meth:`factors`); afterwards products, eigenvalues and damped inverses cost
    no network evaluation. ``@`` (vectors and matrices, numpy or torch), ``to_scipy()`` and
    :attr:`num_products` behave as for every operator here, so Lanczos, Hutchinson and the
    spectral density work on it too; the model is left untouched (hooks are removed).

    Args:
        model, loss_fn, data, params, dtype, batch_size, reduction, mode, progress: As for
            :class:`~surrogates.landscape.operator.LossCurvatureOperator`. Every selected
            parameter must be the weight or bias of an ``nn.Linear`` or ``nn.Conv2d``
            (``groups=1``, zero padding) that runs once per forward pass.
        kind: Which curvature's output matrices to factor: ``"ggn"`` (loss Hessian, one backward
            per output dimension), ``"true"`` (predictive Fisher, the same for cross-entropy,
            MSE and logistic losses) or ``"empirical"`` (observed gradients, one backward).

    Raises:
        InputError: A selected parameter outside the supported layers, a TorchScript model, or
            a bad ``kind``.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[..., torch.Tensor],
        data: Any,
        *,
        kind: str = "ggn",
        params: str | Sequence[str] | None = None,
        dtype: torch.dtype | None = None,
        batch_size: int | None = None,
        reduction: str | None = None,
        mode: str = "eval",
        progress: bool | None = False,
    ):
        super().__init__(
            model, loss_fn, data, params=params, dtype=dtype, batch_size=batch_size, reduction=reduction,
            cache_graphs=False, mode=mode, progress=progress,
        )
        self.kind = kind
        self.curvature = output_curvature(kind, loss_fn, self.reduction)
        if self.fmodel.is_script:
            raise InputError(
                "KFACOperator records layer inputs with forward hooks, which TorchScript modules do not "
                "support; pass the original nn.Module"
            )
        self.blocks = self._find_blocks()
        self._offsets = dict(zip(self.fmodel.names, np.cumsum([0, *self.fmodel.sizes[:-1]]).tolist()))
        self.timings["factors_s"] = 0.0
        self._ready = False

    def _find_blocks(self) -> list[KroneckerBlock]:
        selected = set(self.fmodel.names)
        blocks, covered = [], set()
        for name, m in self.fmodel.module.named_modules():
            if not isinstance(m, (nn.Linear, nn.Conv2d)):
                continue
            prefix = f"{name}." if name else ""
            w = f"{prefix}weight" if f"{prefix}weight" in selected else None
            b = f"{prefix}bias" if f"{prefix}bias" in selected else None
            if w is None and b is None:
                continue
            if isinstance(m, nn.Conv2d):
                if m.groups != 1 or m.padding_mode != "zeros":
                    raise InputError(
                        f"KFACOperator supports Conv2d with groups=1 and padding_mode='zeros'; layer {name!r} has "
                        f"groups={m.groups}, padding_mode={m.padding_mode!r}"
                    )
                _conv_padding(m)
            blocks.append(KroneckerBlock(name, m, w, b))
            covered.update(p for p in (w, b) if p is not None)
        missing = [n for n in self.fmodel.names if n not in covered]
        if missing:
            raise InputError(
                f"KFACOperator factors the weights and biases of nn.Linear and nn.Conv2d layers only; the selected "
                f"parameters {missing[:8]} belong to other modules. Restrict params=[...] to those layers"
            )
        return blocks

    # ------------------------------------------------------------------ factors
    def factors(self) -> list[KroneckerBlock]:
        """The layers' Kronecker factors and their eigendecompositions (computed on first use)."""
        if not self._ready:
            self._compute_factors()
        return self.blocks

    def _compute_factors(self) -> None:
        require_autograd("KFACOperator")
        start = time.perf_counter()
        seen: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

        def hook(module, args, output):
            seen.setdefault(id(module), []).append((args[0].detach(), output))

        handles = [blk.module.register_forward_hook(hook) for blk in self.blocks]
        sums_A = [None] * len(self.blocks)
        sums_B = [None] * len(self.blocks)
        N = 0
        try:
            with torch.enable_grad(), module_mode(self.fmodel.module, self.mode):
                for i, (x, y) in enumerate(self._batches("KFAC factors")):
                    seen.clear()
                    n_b = batch_size_of(x)
                    leaves = self.fmodel.leaves()
                    out = self._forward(leaves, x, i)
                    loss = self._loss_of(out, y, i) * self._weight(n_b)
                    calls = [seen.get(id(blk.module), []) for blk in self.blocks]
                    for blk, c in zip(self.blocks, calls):
                        if len(c) != 1:
                            raise InputError(
                                f"KFACOperator needs layer {blk.layer!r} to run exactly once per forward pass; it ran "
                                f"{len(c)} times on batch {i}"
                            )
                    zs = [c[0][1] for c in calls]
                    for j, (blk, c) in enumerate(zip(self.blocks, calls)):
                        a = blk.inputs(c[0][0])
                        blk.positions = a.shape[1]
                        s = torch.einsum("nti,ntj->ij", a, a)
                        sums_A[j] = s if sums_A[j] is None else sums_A[j] + s
                    for coef, direction in self.curvature.factors(self.curvature.prepare(out, loss, y), out):
                        gs = torch.autograd.grad(out, zs, direction, retain_graph=True, allow_unused=True)
                        for j, (blk, g) in enumerate(zip(self.blocks, gs)):
                            if g is None:
                                continue
                            g = blk.output_grads(g.detach())
                            s = torch.einsum("n,nti,ntj->ij", coef, g, g)
                            sums_B[j] = s if sums_B[j] is None else sums_B[j] + s
                    N += n_b
        finally:
            for h in handles:
                h.remove()
        self.num_samples = N
        for blk, sa, sb in zip(self.blocks, sums_A, sums_B):
            blk.A = sa / (N * blk.positions)
            d_out = blk.module.weight.shape[0]
            blk.B = sb / N if sb is not None else torch.zeros(d_out, d_out, dtype=self.dtype, device=self.device)
            blk.eig_A = torch.linalg.eigh(0.5 * (blk.A + blk.A.T))
            blk.eig_B = torch.linalg.eigh(0.5 * (blk.B + blk.B.T))
        self._ready = True
        self.timings["factors_s"] += time.perf_counter() - start

    # ------------------------------------------------------------------ block layout
    def _gather(self, blk: KroneckerBlock, V: torch.Tensor) -> torch.Tensor:
        """The block's columns of V as ``(d_out, d_in', m)`` matrices ``[W | b]``."""
        parts = []
        d_out = blk.module.weight.shape[0]
        for name in (blk.weight, blk.bias):
            if name is None:
                continue
            off, size = self._offsets[name], int(np.prod(self._shape(name)))
            parts.append(V[off : off + size].reshape(d_out, -1, V.shape[1]))
        return torch.cat(parts, dim=1)

    def _scatter(self, blk: KroneckerBlock, Y: torch.Tensor, out: torch.Tensor) -> None:
        col = 0
        for name in (blk.weight, blk.bias):
            if name is None:
                continue
            off, size = self._offsets[name], int(np.prod(self._shape(name)))
            width = size // Y.shape[0]
            out[off : off + size] = Y[:, col : col + width].reshape(size, Y.shape[2])
            col += width

    def _shape(self, name: str) -> tuple[int, ...]:
        return self.fmodel.shapes[self.fmodel.names.index(name)]

    def _map_blocks(self, V: torch.Tensor, fn: Callable[[KroneckerBlock, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        out = torch.zeros_like(V)
        for blk in self.factors():
            self._scatter(blk, fn(blk, self._gather(blk, V)), out)
        return out

    # ------------------------------------------------------------------ products
    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self._map_blocks(V, lambda blk, W: torch.einsum("ab,bjm,jk->akm", blk.B, W, blk.A))

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self._matmat(v[:, None])[:, 0]

    def eigenvalues(self, k: int | None = None) -> np.ndarray:
        """Eigenvalues from the factors, :math:`\\{\\lambda_{B,j}\\lambda_{A,k}\\}` over all layers, descending.

        Args:
            k: Return only the ``k`` largest (``None``: all ``n``).
        """
        if k is not None and (not isinstance(k, int) or not 1 <= k <= self.n):
            raise InputError(f"k must be an int in [1, {self.n}] or None; got k={k!r}")
        vals = [torch.outer(b.eig_B[0], b.eig_A[0]).reshape(-1) for b in self.factors()]
        allv = np.sort(torch.cat(vals).detach().to("cpu", torch.float64).numpy())[::-1]
        return allv.copy() if k is None else allv[:k].copy()

    def inverse(self, damping: float) -> "KFACInverseOperator":
        """The exact inverse of the damped approximation, :math:`(K + \\delta I)^{-1}`, as an operator.

        Args:
            damping: :math:`\\delta > 0`; every eigenvalue :math:`\\lambda + \\delta` must be positive.

        Raises:
            InputError: ``damping`` not positive, or not enough to make ``K + δI`` positive definite.
        """
        return KFACInverseOperator(self, damping)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", kind={self.kind!r}, layers={len(self.blocks)})"


class KFACInverseOperator(SymmetricOperator):
    """:math:`(K + \\delta I)^{-1}` of a :class:`KFACOperator` ``K``, block by block from the factors' eigenpairs.

    Args:
        kfac: The approximation.
        damping: :math:`\\delta`.
    """

    def __init__(self, kfac: KFACOperator, damping: float):
        super().__init__()
        if not isinstance(damping, (int, float)) or not np.isfinite(damping) or damping <= 0:
            raise InputError(f"damping must be a positive finite number; got damping={damping!r}")
        smallest = float(kfac.eigenvalues()[-1])
        if smallest + damping <= 0:
            raise InputError(
                f"damping={damping:g} does not make the KFAC approximation positive definite: its smallest "
                f"eigenvalue is {smallest:.3g}; use damping > {-smallest:.3g}"
            )
        self.kfac, self.damping = kfac, float(damping)
        self.n, self.dtype, self.device = kfac.n, kfac.dtype, kfac.device

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        def solve(blk: KroneckerBlock, W: torch.Tensor) -> torch.Tensor:
            (la, qa), (lb, qb) = blk.eig_A, blk.eig_B
            Wt = torch.einsum("ba,bjm,jk->akm", qb, W, qa)
            Wt = Wt / (torch.outer(lb, la)[:, :, None] + self.damping)
            return torch.einsum("ab,bjm,kj->akm", qb, Wt, qa)

        return self.kfac._map_blocks(V, solve)

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self._matmat(v[:, None])[:, 0]


# ---------------------------------------------------------------------------- comparison
@dataclass
class EigenvalueComparison:
    """KFAC's top eigenvalues next to the exact curvature's.

    Attributes:
        approx: KFAC's ``k`` largest eigenvalues (from its factors), descending.
        exact: The exact operator's ``k`` largest (Lanczos), descending.
        ratio: ``approx / exact`` element-wise.
        exact_result: The full Lanczos result (residuals, convergence, products).
    """

    approx: np.ndarray
    exact: np.ndarray
    ratio: np.ndarray
    exact_result: EigenResult


def compare_top_eigenvalues(kfac: KFACOperator, exact: SymmetricOperator, k: int = 5, **lanczos_kwargs) -> EigenvalueComparison:
    """Compare KFAC's ``k`` largest eigenvalues with those of the exact GGN/Fisher it approximates.

    Args:
        kfac: The approximation.
        exact: The exact operator on the same parameters (e.g. :class:`~surrogates.landscape.GGNOperator`).
        k: How many eigenvalues.
        **lanczos_kwargs: Passed to :func:`~surrogates.landscape.lanczos` for ``exact``.

    Raises:
        InputError: The operators have different sizes or parameter selections.
    """
    if exact.shape != kfac.shape:
        raise InputError(f"the exact operator has shape {exact.shape} but the KFAC operator {kfac.shape}")
    names = getattr(exact, "param_names", None)
    if names is not None and list(names) != kfac.param_names:
        raise InputError(f"the operators study different parameters: {list(names)} vs {kfac.param_names}")
    res = lanczos(exact, k, "LA", **lanczos_kwargs)
    approx = kfac.eigenvalues(k)
    return EigenvalueComparison(approx=approx, exact=res.eigenvalues, ratio=approx / res.eigenvalues, exact_result=res)
