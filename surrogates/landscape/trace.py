"""Stochastic trace estimators with standard errors: Hutchinson and Hutch++.

Hutchinson (1989): for random probes :math:`z` with :math:`\\mathbb E[z z^\\top] = I`,

.. math:: \\operatorname{tr}(H) = \\mathbb E[z^\\top H z] \\approx \\frac1s \\sum_{i=1}^s z_i^\\top H z_i,

with standard error :math:`\\hat\\sigma/\\sqrt s` from the sample spread. Rademacher probes have
variance :math:`2(\\lVert H\\rVert_F^2 - \\sum_i H_{ii}^2)`, never more than Gaussian ones.

Hutch++ (Meyer, Musco, Musco, Woodruff 2021) spends a third of the products on a sketch
:math:`Q = \\operatorname{orth}(H S)` of the dominant subspace, whose trace
:math:`\\operatorname{tr}(Q^\\top H Q)` is computed exactly, and Hutchinson on the deflated rest
:math:`(I - QQ^\\top) H (I - QQ^\\top)`. Loss Hessians have a few large outlier eigenvalues,
which dominate Hutchinson's variance and are removed by the sketch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._util import make_generator, progress
from .operator import SymmetricOperator


@dataclass
class TraceEstimate:
    """A trace estimate.

    Attributes:
        value: The estimate of :math:`\\operatorname{tr}(H)`.
        stderr: Its standard error (0 for exactly computed parts).
        num_products: Operator products used.
        method: ``"hutchinson"`` or ``"hutch++"``.
        samples: The per-probe quadratic forms of the stochastic part.
    """

    value: float
    stderr: float
    num_products: int
    method: str
    samples: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "value": self.value,
            "stderr": self.stderr,
            "num_products": self.num_products,
            "num_probes": int(len(self.samples)),
        }


def probes(n: int, count: int, gen: torch.Generator, distribution: str = "rademacher") -> torch.Tensor:
    """``count`` random probe vectors as columns of an ``(n, count)`` float64 tensor.

    Args:
        n: Length.
        count: Number of probes.
        gen: Seeded generator.
        distribution: ``"rademacher"`` (entries +-1) or ``"gaussian"``.
    """
    if distribution == "rademacher":
        return torch.randint(0, 2, (n, count), generator=gen).to(torch.float64) * 2 - 1
    if distribution == "gaussian":
        return torch.randn(n, count, generator=gen, dtype=torch.float64)
    raise ValueError(f"distribution must be 'rademacher' or 'gaussian', got {distribution!r}")


def _stderr(samples: np.ndarray) -> float:
    return float(np.std(samples, ddof=1) / np.sqrt(len(samples))) if len(samples) > 1 else float("inf")


def hutchinson(
    op: SymmetricOperator,
    num_samples: int = 100,
    *,
    seed: int | None = 0,
    distribution: str = "rademacher",
    progress_bar: bool | None = None,
) -> TraceEstimate:
    """Hutchinson's estimator :math:`\\frac1s\\sum_i z_i^\\top H z_i`.

    Args:
        op: Symmetric operator.
        num_samples: Number of probes ``s`` (= products).
        seed: Seed of the probes.
        distribution: ``"rademacher"`` or ``"gaussian"``.
        progress_bar: tqdm bar over probes (``None``: only on a TTY).
    """
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    n = op.shape[0]
    gen = make_generator(seed)
    Z = probes(n, num_samples, gen, distribution).to(op.device)
    start = op.num_products
    vals = np.empty(num_samples)
    for i in progress(range(num_samples), enabled=progress_bar, total=num_samples, desc="Hutchinson"):
        z = Z[:, i]
        vals[i] = float(z @ (op @ z))
    return TraceEstimate(float(vals.mean()), _stderr(vals), op.num_products - start, "hutchinson", vals)


def hutchpp(
    op: SymmetricOperator,
    num_products: int = 60,
    *,
    seed: int | None = 0,
    distribution: str = "rademacher",
    progress_bar: bool | None = None,
) -> TraceEstimate:
    """Hutch++: exact trace on a sketched dominant subspace plus Hutchinson on the rest.

    With ``m = num_products`` split as ``s = m // 3`` sketch vectors, ``s`` products for
    :math:`Q^\\top H Q` and ``m - 2s`` Hutchinson probes:

    .. math:: \\operatorname{tr}(H) \\approx \\operatorname{tr}(Q^\\top H Q)
              + \\frac{1}{g}\\sum_{i=1}^{g} z_i^\\top (I-QQ^\\top) H (I-QQ^\\top) z_i .

    The standard error is that of the Hutchinson part (the sketch part is exact).

    Args:
        op: Symmetric operator.
        num_products: Total products ``m`` (at least 3).
        seed: Seed of sketch and probes.
        distribution: Probe distribution.
        progress_bar: tqdm bar (``None``: only on a TTY).
    """
    if not isinstance(num_products, int) or num_products < 3:
        raise ValueError(f"num_products must be an int >= 3, got {num_products!r}")
    n = op.shape[0]
    gen = make_generator(seed)
    s = num_products // 3
    g = num_products - 2 * s
    start = op.num_products
    S = probes(n, s, gen, distribution).to(op.device)
    Y = torch.stack([op @ S[:, i] for i in progress(range(s), enabled=progress_bar, total=s, desc="Hutch++ sketch")], 1)
    Q, _ = torch.linalg.qr(Y)
    HQ = torch.stack([op @ Q[:, i] for i in range(Q.shape[1])], 1)
    exact_part = float(torch.einsum("ij,ij->", Q, HQ))
    G = probes(n, g, gen, distribution).to(op.device)
    G = G - Q @ (Q.T @ G)
    vals = np.empty(g)
    for i in progress(range(g), enabled=progress_bar, total=g, desc="Hutch++ probes"):
        z = G[:, i]
        w = op @ z
        vals[i] = float(z @ (w - Q @ (Q.T @ w)))
    return TraceEstimate(exact_part + float(vals.mean()), _stderr(vals), op.num_products - start, "hutch++", vals)
