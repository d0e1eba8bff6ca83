"""The empirical and the true Fisher information of a loss as matrix-free operators.

Both have the form :math:`F = \\frac1N\\sum_i J_i^\\top M_i J_i` of :mod:`.ggn`, so they share its
products (never forming :math:`J`); only the output-space matrix differs (:mod:`.outputs`):

* ``kind="empirical"``: :math:`F = \\frac1N\\sum_i g_i g_i^\\top`, :math:`g_i = \\nabla_\\theta\\ell_i` the
  per-sample gradients at the observed targets (:math:`M_i = r_i r_i^\\top`, so no per-sample
  gradient is ever stored);
* ``kind="true"``: :math:`F = \\frac1N\\sum_i E_{\\hat y\\sim p(\\cdot|f_i)}[\\nabla_\\theta\\ell_i(\\hat y)
  \\nabla_\\theta\\ell_i(\\hat y)^\\top]`, the expectation over the model's own predictive
  distribution taken *exactly* through its closed form (softmax: :math:`\\operatorname{diag}p - pp^\\top`;
  Gaussian: :math:`2cI`; Bernoulli: :math:`s(1-s)`), not by Monte Carlo sampling, so it is
  deterministic and needs no seed. For these likelihoods it equals the GGN.

The normalisation follows the loss's reduction: :math:`\\ell_i` is sample :math:`i`'s term of the
loss as the user's ``loss_fn`` reduces it, and :math:`L = \\frac1N\\sum_i\\ell_i` (e.g.
``nn.MSELoss()`` averages over the :math:`D` outputs too, so :math:`\\ell_i = \\frac1D\\lVert f_i -
y_i\\rVert^2` and the empirical Fisher scales as :math:`1/D^2`; a sum-reduced loss has
:math:`\\ell_i = \\lVert f_i - y_i\\rVert^2`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from .ggn import OutputCurvatureOperator
from .outputs import output_curvature


class FisherOperator(OutputCurvatureOperator):
    """The empirical (``kind="empirical"``) or true (``kind="true"``) Fisher of a mean loss.

    Same interface and guarantees as :class:`~surrogates.landscape.HessianOperator` (``@``,
    ``to_scipy()``, :attr:`num_products`, parameter subsets, model untouched).

    Args:
        model, loss_fn, data: As for :class:`~surrogates.landscape.operator.LossCurvatureOperator`.
        kind: ``"empirical"`` (any loss that is a sum of per-sample terms) or ``"true"``
            (``nn.CrossEntropyLoss``, ``nn.MSELoss`` or ``nn.BCEWithLogitsLoss``).
        params, dtype, batch_size, reduction, cache_graphs, cache_limit, mode, progress: As for
            :class:`~surrogates.landscape.operator.LossCurvatureOperator`.

    Raises:
        InputError: ``kind`` is neither, or ``kind="true"`` with a loss whose predictive
            distribution is not known.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[..., torch.Tensor],
        data: Any,
        *,
        kind: str = "empirical",
        params: str | Sequence[str] | None = None,
        dtype: torch.dtype | None = None,
        batch_size: int | None = None,
        reduction: str | None = None,
        cache_graphs: bool | str = "auto",
        cache_limit: int = 10_000,
        mode: str = "eval",
        progress: bool | None = False,
    ):
        if kind not in ("empirical", "true"):
            raise InputError(f"FisherOperator kind must be 'empirical' or 'true'; got kind={kind!r}")
        super().__init__(
            model, loss_fn, data, params=params, dtype=dtype, batch_size=batch_size, reduction=reduction,
            cache_graphs=cache_graphs, cache_limit=cache_limit, mode=mode, progress=progress,
        )
        self.kind = kind
        self.curvature = output_curvature(kind, loss_fn, self.reduction)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", kind={self.kind!r})"
