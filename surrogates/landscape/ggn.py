"""The generalised Gauss-Newton matrix of a loss as a matrix-free operator.

.. math:: G = \\frac1N\\sum_i J_i^\\top \\big(\\nabla^2_{f}\\ell_i\\big) J_i ,
          \\qquad J_i = \\frac{\\partial f_\\theta(x_i)}{\\partial\\theta},

the Hessian with the second-order term of the network dropped
(:math:`H = G + \\frac1N\\sum_i\\sum_k \\partial_{f_k}\\ell_i\\,\\nabla^2_\\theta f_{ik}`); positive
semi-definite for a convex loss. Products never form :math:`J`: with the batch outputs :math:`f`
and a dummy output-space vector :math:`u`, the graph of :math:`J^\\top u` (one backward with
``create_graph=True``) is linear in :math:`u`, so differentiating it w.r.t. :math:`u` along
:math:`v` gives :math:`Jv` (the double-vjp trick); the middle matrix acts in output space
(:mod:`.outputs`), and one more backward gives :math:`J^\\top(MJv)`. Both graphs do not depend
on :math:`v`: with ``cache_graphs`` they are built once and each product costs two backward
sweeps of the network; on the 85k-parameter MLP of ``scripts/bench_landscape.py`` one product
took less time than one Hessian-vector product of the same run (whose double backward through
the gradient graph is the costlier sweep).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from ..errors import InputError
from ..inference_mode import require_autograd
from ._util import module_mode
from .data import batch_size_of
from .operator import LossCurvatureOperator
from .outputs import LossHessian, OutputCurvature


class OutputCurvatureOperator(LossCurvatureOperator):
    """Curvatures of the form :math:`C = \\frac1N\\sum_i J_i^\\top M_i J_i` (GGN, Fisher).

    Subclasses choose the output-space matrices :math:`M_i` by setting :attr:`curvature` (an
    :class:`~surrogates.landscape.outputs.OutputCurvature`) before the first product. Constructor
    arguments are those of :class:`~surrogates.landscape.operator.LossCurvatureOperator`; the
    model must return one tensor whose first dimension is the batch.
    """

    curvature: OutputCurvature

    # ------------------------------------------------------------------ per-batch graphs
    def _batch_state(self, x: Any, y: Any, index: int, with_gradient: bool) -> dict[str, Any]:
        """Outputs, the graph of J^T u and the middle matrix's state for one batch."""
        leaves = self.fmodel.leaves()
        n_b = batch_size_of(x)
        out = self._forward(leaves, x, index)
        if not isinstance(out, torch.Tensor) or out.ndim == 0 or out.shape[0] != n_b:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise InputError(
                f"{type(self).__name__} needs the model to return one tensor with the batch as dimension 0 "
                f"(batch {index} has {n_b} samples); got {shape}"
            )
        loss = self._loss_of(out, y, index) * self._weight(n_b)
        state: dict[str, Any] = {"leaves": leaves, "out": out, "n": n_b, "loss": float(loss.detach())}
        if with_gradient:
            state["grads"] = self._grad_outputs(torch.autograd.grad(loss, leaves, retain_graph=True, allow_unused=True), leaves)
        state["middle"] = self.curvature.prepare(out, loss, y)
        u = torch.zeros_like(out, requires_grad=True)
        jtu = torch.autograd.grad(out, leaves, u, create_graph=True, allow_unused=True)
        state["u"] = u
        state["jtu"] = [(j, g) for j, g in enumerate(jtu) if g is not None and g.requires_grad]
        return state

    def _apply_state(self, state: dict[str, Any], V: torch.Tensor) -> torch.Tensor:
        """Sum over the batch of J_i^T M_i J_i applied to each column of V (not yet divided by N)."""
        leaves, out, u, jtu = state["leaves"], state["out"], state["u"], state["jtu"]
        cols = []
        for k in range(V.shape[1]):
            parts = self.fmodel.unflatten(V[:, k])
            if jtu:
                (jv,) = torch.autograd.grad(
                    [g for _, g in jtu], u, [parts[j] for j, _ in jtu], retain_graph=True, allow_unused=True
                )
            else:
                jv = None
            if jv is None:  # the outputs do not depend on the selected parameters
                cols.append(torch.zeros(self.n, dtype=self.dtype, device=self.device))
                continue
            mjv = self.curvature.apply(state["middle"], jv)
            back = torch.autograd.grad(out, leaves, mjv, retain_graph=True, allow_unused=True)
            cols.append(self.fmodel.flatten(self._grad_outputs(back, leaves)))
        return torch.stack(cols, dim=1)

    # ------------------------------------------------------------------ graph cache
    def _build_cache(self) -> dict[str, Any]:
        start = time.perf_counter()
        states, N, loss_sum = [], 0, 0.0
        grads: list[torch.Tensor] | None = None
        with module_mode(self.fmodel.module, self.mode):
            for i, (x, y) in enumerate(self._batches(f"{self.curvature.name} graphs")):
                st = self._batch_state(x, y, i, with_gradient=True)
                g = [t.detach() for t in st.pop("grads")]
                grads = g if grads is None else [a + b for a, b in zip(grads, g)]
                loss_sum += st["loss"]
                N += st["n"]
                states.append(st)
        self.num_samples = N
        self.num_gradients += 1
        self.timings["graph_build_s"] += time.perf_counter() - start
        return {"states": states, "grads": [g / N for g in grads], "loss": loss_sum / N}  # type: ignore[union-attr]

    # ------------------------------------------------------------------ products
    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        require_autograd(f"{type(self).__name__} @ v")
        with torch.enable_grad():
            cache = self._cached()
            if cache is not None:
                return sum(self._apply_state(st, V) for st in cache["states"]) / self.num_samples
            acc = torch.zeros(self.n, V.shape[1], dtype=self.dtype, device=self.device)
            N = 0
            with module_mode(self.fmodel.module, self.mode):
                for i, (x, y) in enumerate(self._batches(f"{self.curvature.name} product")):
                    st = self._batch_state(x, y, i, with_gradient=False)
                    acc += self._apply_state(st, V)
                    N += st["n"]
            self.num_samples = N
            return acc / N

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self._matmat(v[:, None])[:, 0]


class GGNOperator(OutputCurvatureOperator):
    """The generalised Gauss-Newton matrix :math:`G = \\frac1N\\sum_i J_i^\\top \\nabla^2_f\\ell_i\\, J_i`.

    Same constructor arguments, interface (``@`` on vectors and matrices, ``to_scipy()``,
    :attr:`num_products`, parameter subsets, ``loss_and_gradient``, ``evaluate``) and guarantee
    that the model is left untouched as :class:`~surrogates.landscape.HessianOperator`; the
    normalisation :math:`\\ell_i` follows the loss's reduction (see :mod:`.outputs`). Any
    scalar loss of the outputs works (the loss Hessian comes from double backward); for
    cross-entropy, MSE and logistic losses it equals the true Fisher.

    Args:
        model, loss_fn, data, params, dtype, batch_size, reduction, cache_graphs, cache_limit,
        mode, progress: As for :class:`~surrogates.landscape.operator.LossCurvatureOperator`.
    """

    curvature = LossHessian()
