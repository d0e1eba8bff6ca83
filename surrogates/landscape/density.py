"""Spectral density by (deflated) stochastic Lanczos quadrature.

For a unit probe :math:`u` and :math:`m` Lanczos steps from it, with
:math:`T_m = S\\,\\mathrm{diag}(\\theta)\\,S^\\top`, Gauss quadrature gives

.. math:: u^\\top g(H) u \\approx \\sum_{i=1}^m \\tau_i^2\\, g(\\theta_i), \\qquad \\tau_i = S_{1i},

exactly for polynomials :math:`g` of degree :math:`\\le 2m-1`. Averaging over probes uniform on the
sphere estimates the density of states :math:`\\rho(\\lambda) = \\frac1n\\sum_j \\delta(\\lambda-\\lambda_j)`
(Lin, Saad, Yang 2016; Ghorbani, Krishnan, Xiao 2019).

*Deflation.* Loss Hessians have a handful of large outliers. Given orthonormal (Ritz) vectors
:math:`Q` (``k`` columns) with Rayleigh quotients :math:`\\theta^Q`, we put a point mass of
:math:`1/n` at each :math:`\\theta^Q_i` and run the probes in the complement
(:math:`u \\perp Q`) for the remaining mass :math:`(n-k)/n`. Since
:math:`\\operatorname{tr} H = \\operatorname{tr}(Q^\\top H Q) + \\operatorname{tr}(P H P)` exactly
(:math:`P = I - QQ^\\top`), the density's implied trace, with raw probes :math:`z_p`, unit probes
:math:`u_p = Pz_p/\\lVert Pz_p\\rVert` and weights :math:`c_p = \\lVert Pz_p\\rVert^2`,

.. math:: n\\!\\int\\!\\lambda\\,\\rho(\\lambda)\\,d\\lambda
          = \\sum_i \\theta^Q_i + (n-k)\\,\\frac{\\sum_p c_p\\, u_p^\\top H u_p}{\\sum_p c_p}

is a trace estimate whose variance no longer carries the outliers (the bulk part is the ratio
estimator of :func:`spectral_density`).

*Standard error.* With :math:`y_p = z_p^\\top PHP z_p = c_p\\, u_p^\\top H u_p` the bulk
trace is :math:`(n-k)\\,\\bar y/\\bar c`; to first order its error is
:math:`\\frac{n-k}{\\bar c}\\cdot\\frac1P\\sum_p z_p^\\top B z_p` with :math:`B = PHP - rP`,
:math:`r = \\bar y / \\bar c`. Its variance uses the closed form of
:class:`~surrogates.landscape.trace.QuadraticFormVariance` on :math:`B`, fed with
:math:`PHPz_p = \\lVert P z_p\\rVert(\\alpha_1 q_1 + \\beta_1 q_2)` (the first Lanczos product,
rebuilt from the basis without another product) and :math:`Pz_p`. The deflated part is exact
given :math:`Q`, and, as for Hutch++, the randomness of :math:`Q` adds no variance; a rounding
allowance :math:`\\varepsilon\\sqrt n\\sum_i|\\theta^Q_i|` for it is added in quadrature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal

from ..errors import InputError
from ._util import make_generator, with_progress
from .krylov import LanczosRecurrence, orthogonalize
from .lanczos import EigenResult
from .operator import SymmetricOperator
from .trace import QuadraticFormVariance, probes


@dataclass
class SpectralDensity:
    """A spectral density as a mixture of point masses (nodes and weights).

    Attributes:
        n: Operator size.
        nodes: Per probe, the Ritz values :math:`\\theta_{p,i}`.
        weights: Per probe, :math:`\\tau_{p,i}^2` (each sums to 1).
        deflated: Rayleigh quotients of the deflation basis, carried as point masses (weight
            ``1/n`` each).
        trace: Implied trace :math:`n\\int\\lambda\\rho`.
        trace_stderr: Its standard error over probes.
        num_products: Products used by the probes (not counting the deflation eigenpairs).
        probe_weights: :math:`c_p / \\sum c`, the probes' weights.
    """

    n: int
    nodes: list[np.ndarray]
    weights: list[np.ndarray]
    deflated: np.ndarray = field(default_factory=lambda: np.zeros(0))
    trace: float = float("nan")
    trace_stderr: float = float("nan")
    num_products: int = 0
    probe_weights: np.ndarray | None = None

    def point_masses(self) -> tuple[np.ndarray, np.ndarray]:
        """All nodes and their probability weights (summing to 1)."""
        k = len(self.deflated)
        P = len(self.nodes)
        c = np.full(P, 1.0 / P) if self.probe_weights is None else self.probe_weights
        bulk = (self.n - k) / self.n
        nodes = np.concatenate([self.deflated] + list(self.nodes))
        weights = np.concatenate([np.full(k, 1.0 / self.n)] + [w * bulk * cp for w, cp in zip(self.weights, c)])
        return nodes, weights

    def support(self) -> tuple[float, float]:
        nodes, _ = self.point_masses()
        return float(nodes.min()), float(nodes.max())

    def evaluate(self, grid: np.ndarray, sigma: float | None = None) -> np.ndarray:
        """Gaussian-broadened density :math:`\\sum_j w_j\\,\\mathcal N(\\lambda; \\theta_j, \\sigma^2)` on ``grid``.

        Args:
            grid: Points :math:`\\lambda` to evaluate at.
            sigma: Broadening; default 1 % of the support's width.
        """
        nodes, weights = self.point_masses()
        lo, hi = nodes.min(), nodes.max()
        if sigma is None:
            sigma = 0.01 * max(hi - lo, 1e-12)
        if sigma <= 0:
            raise InputError(f"sigma must be positive, got {sigma}")
        g = np.asarray(grid, dtype=np.float64)[:, None]
        return (weights * np.exp(-0.5 * ((g - nodes) / sigma) ** 2)).sum(1) / (sigma * np.sqrt(2 * np.pi))

    def moment(self, power: int) -> float:
        """:math:`\\int \\lambda^p \\rho(\\lambda)\\,d\\lambda` (exact for the quadrature rule)."""
        nodes, weights = self.point_masses()
        return float(np.sum(weights * nodes**power))

    def to_dict(self) -> dict[str, Any]:
        nodes, weights = self.point_masses()
        lo, hi = self.support()
        grid = np.linspace(lo, hi, 201) if hi > lo else np.array([lo])
        return {
            "n": self.n,
            "num_probes": len(self.nodes),
            "num_products": self.num_products,
            "implied_trace": self.trace,
            "implied_trace_stderr": self.trace_stderr,
            "deflated_eigenvalues": self.deflated.tolist(),
            "nodes": nodes.tolist(),
            "weights": weights.tolist(),
            "grid": grid.tolist(),
            "density": self.evaluate(grid).tolist() if hi > lo else [1.0],
        }


def spectral_density(
    op: SymmetricOperator,
    num_probes: int = 32,
    num_steps: int = 12,
    *,
    seed: int | None = 0,
    deflate: EigenResult | tuple[np.ndarray, torch.Tensor] | None = None,
    distribution: str = "rademacher",
    progress: bool | None = None,
) -> SpectralDensity:
    """Stochastic Lanczos quadrature, optionally deflated by a known subspace.

    Probes :math:`z_p` (Rademacher by default: the lowest-variance Hutchinson probes) are
    projected onto the complement of the deflation basis, :math:`z_p \\leftarrow P z_p`, and
    weighted by :math:`c_p = \\lVert P z_p\\rVert^2` (constant ``= n`` without deflation), so that

    .. math:: \\rho_{\\text{bulk}} = \\frac{\\sum_p c_p \\sum_i \\tau_{p,i}^2 \\delta_{\\theta_{p,i}}}{\\sum_p c_p},
              \\qquad \\operatorname{tr}(PHP) \\approx (n-k)\\,\\frac{\\sum_p c_p\\,u_p^\\top H u_p}{\\sum_p c_p}.

    Args:
        op: Symmetric operator.
        num_probes: Random probes; the implied trace's standard error falls as ``1/sqrt``. Loss
            Hessians spread their trace over a wide bulk (a probe's relative spread is a few %
            on the benchmark MLP), so probes buy more trace accuracy than steps do.
        num_steps: Lanczos steps per probe (= products per probe); sets the resolution.
        seed: Seed of the probes.
        deflate: What to carry exactly: an :class:`EigenResult` (with ``keep_basis=True`` its
            whole Krylov basis and all Ritz values are used, which costs no products and
            removes every direction Lanczos has already explored; otherwise its Ritz
            vectors), or ``(values, vectors)`` with orthonormal columns and their Rayleigh
            quotients.
        distribution: ``"rademacher"`` or ``"gaussian"`` probes.
        progress: tqdm bar over probes (``None``: only on a TTY).

    Returns:
        A :class:`SpectralDensity` whose ``trace`` is the implied trace with its standard error.
    """
    if not isinstance(num_probes, int) or num_probes < 1:
        raise InputError(f"num_probes must be a positive int, got {num_probes!r}")
    if not isinstance(num_steps, int) or num_steps < 1:
        raise InputError(f"num_steps must be a positive int, got {num_steps!r}")
    n = op.shape[0]
    Qd = None
    deflated = np.zeros(0)
    if deflate is not None:
        if isinstance(deflate, EigenResult):
            if deflate.basis is not None:
                deflated, Qd = deflate.all_ritz_values, deflate.basis
            elif deflate.eigenvectors is not None:
                deflated, Qd = deflate.eigenvalues, deflate.eigenvectors
            else:
                raise InputError("deflate needs an EigenResult with eigenvectors or keep_basis=True")
        else:
            deflated, Qd = np.asarray(deflate[0], dtype=np.float64), deflate[1]
        Qd = Qd.to(op.device, torch.float64).T.contiguous().T  # column-major: fast projections
        if Qd.ndim != 2 or Qd.shape[0] != n or Qd.shape[1] != len(deflated):
            raise InputError(f"deflation vectors must have shape ({n}, {len(deflated)}), got {tuple(Qd.shape)}")
        if Qd.shape[1] >= n:
            raise InputError("cannot deflate the whole space")
    k = len(deflated)
    gen = make_generator(seed)
    start = op.num_products
    nodes, weights, quad, norms = [], [], [], []
    spread = QuadraticFormVariance(n, distribution)
    for _ in with_progress(range(num_probes), enabled=progress, total=num_probes, desc="SLQ probes"):
        z = probes(n, 1, gen, distribution)[:, 0].to(op.device)
        Pz = orthogonalize(z, Qd) if Qd is not None else z
        rec = LanczosRecurrence(op, num_steps, Pz, deflate=Qd)
        while rec.step():
            pass
        alpha, beta, m = rec.alpha, rec.beta, rec.m
        if m > 1:
            theta, S = eigh_tridiagonal(alpha, beta[: m - 1])
        else:
            theta, S = alpha.copy(), np.ones((1, 1))
        tau2 = S[0, :] ** 2
        nodes.append(theta)
        weights.append(tau2 / tau2.sum())
        quad.append(alpha[0])  # u^T H u: the first Lanczos coefficient
        c = float(Pz @ Pz)
        norms.append(c)
        # P H P z = |Pz| (alpha_1 q_1 + beta_1 q_2): the first product, rebuilt from the basis
        Az = alpha[0] * rec.basis[:, 0] + (beta[0] * rec.basis[:, 1] if m > 1 else 0.0)
        spread.add(z, np.sqrt(c) * Az, Pz)
    c = np.asarray(norms)
    y = c * np.asarray(quad)  # z^T P H P z
    ratio = float(np.sum(y) / np.sum(c))
    trace = float(np.sum(deflated) + (n - k) * ratio)
    rounding = float(torch.finfo(op.dtype).eps) * np.sqrt(n) * float(np.sum(np.abs(deflated)))
    stderr = float(np.hypot((n - k) / np.mean(c) * np.sqrt(spread.variance(ratio) / len(c)), rounding))
    return SpectralDensity(
        n, nodes, weights, np.asarray(deflated, dtype=np.float64), trace, stderr, op.num_products - start, c / c.sum()
    )
