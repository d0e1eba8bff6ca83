"""Output-space curvatures: the middle matrix :math:`M` of parameter curvatures :math:`J^\\top M J`.

The GGN and both Fishers of :math:`L(\\theta) = \\frac1N\\sum_i \\ell_i(f_\\theta(x_i))` share one form,

.. math:: C = \\frac1N \\sum_i J_i^\\top M_i J_i, \\qquad J_i = \\partial f_\\theta(x_i)/\\partial\\theta,

and differ only in the per-sample output-space matrix :math:`M_i`:

* :class:`LossHessian` (GGN): :math:`M_i = \\nabla^2_{f}\\ell_i`, for any loss, by double backward;
* :class:`EmpiricalFisher`: :math:`M_i = r_i r_i^\\top` with :math:`r_i = \\nabla_f \\ell_i` at the
  observed target, so :math:`C = \\frac1N\\sum_i g_i g_i^\\top` with :math:`g_i = \\nabla_\\theta\\ell_i`;
* :class:`PredictiveFisher` (true Fisher): :math:`M_i = E_{\\hat y\\sim p(\\cdot|f_i)}
  [\\nabla_f\\ell_i(\\hat y)\\nabla_f\\ell_i(\\hat y)^\\top]` over the model's own predictive
  distribution, in closed form (no sampling).

Here :math:`\\ell_i` is sample :math:`i`'s share of the loss *as the user's reduction defines it*:
the batch loss weighted as in :class:`~surrogates.landscape.operator.LossCurvatureOperator`
(:math:`n_b\\,\\bar\\ell_b` for ``"mean"``, :math:`\\ell_b` for ``"sum"``) equals
:math:`\\sum_{i\\in b}\\ell_i`. For ``nn.MSELoss()`` (mean over all entries) that is
:math:`\\ell_i = \\frac1D\\lVert f_i - y_i\\rVert^2` with :math:`D` outputs per sample; for
``nn.CrossEntropyLoss()`` it is the sample's cross-entropy.

Every class works on the whole batch at once. :class:`LossHessian` needs nothing more (it
differentiates the batch loss, whatever it is). The two Fishers and KFAC's factors are
per-sample quantities: they assume the loss is a sum of per-sample terms and output row ``i``
depends on input ``i`` only (no BatchNorm in train mode), so that row ``i`` of :math:`\\nabla_f`
of the batch loss is :math:`\\nabla_{f_i}\\ell_i`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import InputError


def _per_sample_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(n,)`` inner products of the rows of two ``(n, ...)`` tensors, shaped to broadcast back."""
    dots = (a * b).reshape(a.shape[0], -1).sum(1)
    return dots.view(-1, *([1] * (a.ndim - 1)))


class OutputCurvature:
    """Per-sample output-space matrices :math:`M_i`, applied to a batch of output-space vectors.

    :meth:`prepare` looks at one batch (its outputs ``out`` with their graph, its weighted loss
    :math:`\\sum_{i\\in b}\\ell_i` and its targets) and returns a state; :meth:`apply` multiplies
    every :math:`M_i` with row ``i`` of ``w`` (shaped like ``out``); :meth:`factors` writes
    :math:`M_i = \\sum_k c_{ik}\\, d_{ik} d_{ik}^\\top` (used by KFAC).
    """

    #: Name used in messages and reprs.
    name = "output curvature"

    def prepare(self, out: torch.Tensor, loss: torch.Tensor, y: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def apply(self, state: Any, w: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def factors(self, state: Any, out: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(c_k, d_k)]`` with :math:`M_i = \\sum_k c_{ik} d_{ik} d_{ik}^\\top`, ``c_k`` of shape ``(n,)``.

        The default builds each :math:`M_i` densely from :meth:`apply` on the ``D`` unit
        vectors (``D`` = outputs per sample) and takes its eigendecomposition, so ``D``
        directions come back, with signed coefficients (a non-convex loss has indefinite
        :math:`M_i`).
        """
        n = out.shape[0]
        D = out[0].numel()
        cols = []
        for c in range(D):
            e = torch.zeros(n, D, dtype=out.dtype, device=out.device)
            e[:, c] = 1.0
            cols.append(self.apply(state, e.view_as(out)).detach().reshape(n, D))
        M = torch.stack(cols, dim=2)
        evals, evecs = torch.linalg.eigh(0.5 * (M + M.transpose(1, 2)))
        return [(evals[:, k], evecs[:, :, k].reshape(out.shape)) for k in range(D)]


class LossHessian(OutputCurvature):
    """:math:`M_i = \\nabla^2_{f_i}\\ell_i`, the generalised Gauss-Newton's middle matrix, for any loss.

    ``prepare`` builds :math:`\\nabla_f` of the batch loss with ``create_graph=True``; each
    ``apply`` is one backward through that small graph (the loss only, not the network).
    """

    name = "loss Hessian"

    def prepare(self, out: torch.Tensor, loss: torch.Tensor, y: Any) -> Any:
        (g,) = torch.autograd.grad(loss, out, create_graph=True)
        return g, out

    def apply(self, state: Any, w: torch.Tensor) -> torch.Tensor:
        g, out = state
        if not g.requires_grad:  # the loss is linear in the outputs: zero curvature
            return torch.zeros_like(w)
        (hw,) = torch.autograd.grad(g, out, w, retain_graph=True, allow_unused=True)
        return torch.zeros_like(w) if hw is None else hw


class EmpiricalFisher(OutputCurvature):
    """:math:`M_i = r_i r_i^\\top`, :math:`r_i = \\nabla_{f_i}\\ell_i(f_i, y_i)` at the observed targets."""

    name = "empirical Fisher"

    def prepare(self, out: torch.Tensor, loss: torch.Tensor, y: Any) -> Any:
        (r,) = torch.autograd.grad(loss, out, retain_graph=True)
        return r.detach()

    def apply(self, state: Any, w: torch.Tensor) -> torch.Tensor:
        return state * _per_sample_dot(state, w)

    def factors(self, state: Any, out: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(torch.ones(out.shape[0], dtype=out.dtype, device=out.device), state)]


class PredictiveFisher(OutputCurvature):
    """The true Fisher's middle matrix, in closed form, for losses that are negative log-likelihoods.

    Write :math:`\\ell_i = c\\,\\mathrm{NLL}(f_i; y_i)` with :math:`c` the reduction's weight of one
    loss term (1 for ``"sum"``; for ``"mean"``, the batch size over the number of terms the mean
    divides by). Then :math:`M_i = c\\,E_{\\hat y\\sim p(\\cdot|f_i)}[\\nabla_f\\mathrm{NLL}\\,
    \\nabla_f\\mathrm{NLL}^\\top]`, exactly:

    * ``nn.CrossEntropyLoss`` (categorical over dim 1, :math:`p = \\mathrm{softmax}(f)`):
      :math:`M_i = c\\,(\\operatorname{diag} p - p p^\\top)` per position; positions whose target
      is ``ignore_index`` get zero, and the mean divides by the positions that are not ignored;
    * ``nn.MSELoss`` (:math:`\\lVert f - y\\rVert^2 = 2\\cdot\\tfrac12\\lVert f-y\\rVert^2`, the NLL of
      a unit-variance Gaussian up to the factor 2): :math:`M_i = 2c\\,I`;
    * ``nn.BCEWithLogitsLoss`` (Bernoulli, :math:`s = \\sigma(f)`): :math:`M_i = c\\,\\operatorname{diag}(s(1-s))`.

    These likelihoods are exponential families in their natural parameters, so the true
    Fisher *equals* the GGN (:class:`LossHessian`) for them; the two are computed independently
    (closed form here, double backward there).

    Args:
        loss_fn: One of the losses above (class weights, ``pos_weight`` and label smoothing are
            refused: they are not log-likelihoods of the model's predictive distribution).
        reduction: ``"mean"`` or ``"sum"``.

    Raises:
        InputError: Another loss, or one of the refused options.
    """

    name = "true Fisher"
    SUPPORTED = (nn.CrossEntropyLoss, nn.MSELoss, nn.BCEWithLogitsLoss)

    def __init__(self, loss_fn: Any, reduction: str):
        if not isinstance(loss_fn, self.SUPPORTED):
            raise InputError(
                "the true Fisher needs the model's predictive distribution, known here for "
                "nn.CrossEntropyLoss, nn.MSELoss and nn.BCEWithLogitsLoss; got loss_fn="
                f"{type(loss_fn).__name__}. Use kind='empirical', or GGNOperator (which equals the true "
                "Fisher for those three losses)"
            )
        if getattr(loss_fn, "weight", None) is not None:
            raise InputError(f"the true Fisher is not defined for {type(loss_fn).__name__} with class weights (weight=...)")
        if getattr(loss_fn, "pos_weight", None) is not None:
            raise InputError("the true Fisher is not defined for BCEWithLogitsLoss with pos_weight=...")
        if getattr(loss_fn, "label_smoothing", 0.0):
            raise InputError(
                f"the true Fisher is not defined for CrossEntropyLoss with label_smoothing={loss_fn.label_smoothing}"
            )
        self.loss_fn = loss_fn
        self.reduction = reduction

    def prepare(self, out: torch.Tensor, loss: torch.Tensor, y: Any) -> Any:
        f = out.detach()
        n = f.shape[0]
        if isinstance(self.loss_fn, nn.CrossEntropyLoss):
            if f.ndim < 2:
                raise InputError(f"CrossEntropyLoss needs outputs of shape (N, C, ...), got {tuple(f.shape)}")
            p = torch.softmax(f, dim=1)
            mask = torch.ones_like(p[:, :1])
            if isinstance(y, torch.Tensor) and not y.is_floating_point():
                mask = (y != self.loss_fn.ignore_index).to(f.dtype).unsqueeze(1)
            terms = float(mask.sum())
            c = 1.0 if self.reduction == "sum" else n / max(terms, 1.0)
            return "categorical", p, c * mask
        c = 1.0 if self.reduction == "sum" else n / f.numel()
        if isinstance(self.loss_fn, nn.MSELoss):
            return "gaussian", None, 2.0 * c
        s = torch.sigmoid(f)
        return "bernoulli", c * s * (1 - s), None

    def apply(self, state: Any, w: torch.Tensor) -> torch.Tensor:
        family, a, b = state
        if family == "categorical":
            pw = a * w
            return b * (pw - a * pw.sum(1, keepdim=True))
        if family == "gaussian":
            return b * w
        return a * w


KINDS = ("ggn", "empirical", "true")


def output_curvature(kind: str, loss_fn: Any, reduction: str) -> OutputCurvature:
    """The middle matrix for ``kind``: ``"ggn"`` (loss Hessian), ``"empirical"`` or ``"true"`` Fisher.

    Raises:
        InputError: Unknown ``kind``, or ``"true"`` for a loss without a known likelihood.
    """
    if kind == "ggn":
        return LossHessian()
    if kind == "empirical":
        return EmpiricalFisher()
    if kind == "true":
        return PredictiveFisher(loss_fn, reduction)
    raise InputError(f"kind must be one of {', '.join(map(repr, KINDS))}; got kind={kind!r}")
