"""The Lanczos recurrence (the package's one Lanczos step loop) and what its coefficients prove.

From a unit start vector :math:`q_1`, each step spends one product and extends an orthonormal
basis :math:`Q_m = [q_1, \\dots, q_m]` of the Krylov space :math:`\\mathcal K_m(H, q_1)`:

.. math:: \\beta_j q_{j+1} = H q_j - \\alpha_j q_j - \\beta_{j-1} q_{j-1}, \\qquad
          H Q_m = Q_m T_m + \\beta_m q_{m+1} e_m^\\top ,

with :math:`T_m` the tridiagonal matrix of the :math:`\\alpha_j` (diagonal) and :math:`\\beta_j`
(off-diagonal). In floating point the three-term recurrence loses orthogonality as Ritz values
converge, so every new vector is re-orthogonalised against the whole basis, in float64 whatever
the operator's dtype, by classical Gram-Schmidt with the DGKS criterion (a second pass only when
the first removed more than :math:`1-1/\\sqrt2` of the norm; "twice is enough"). The basis then
stays orthogonal to working precision and no spurious copies of converged eigenvalues appear.

:class:`LanczosRecurrence` is used by :func:`~surrogates.landscape.lanczos.lanczos` (extreme
eigenpairs) and by stochastic Lanczos quadrature (:mod:`~surrogates.landscape.density`).
:func:`extreme_eigenvalue_bounds` turns the coefficients into probabilistic bounds on the
extreme eigenvalues (see there for the math).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .operator import SymmetricOperator

#: DGKS threshold: re-orthogonalise again when a pass keeps less than this fraction of the norm
_DGKS = 1.0 / math.sqrt(2.0)


def orthogonalize(w: torch.Tensor, *bases: torch.Tensor | None) -> torch.Tensor:
    """Remove from ``w`` its components along the orthonormal columns of each basis.

    Classical Gram-Schmidt, :math:`w \\leftarrow w - B(B^\\top w)` for every basis, repeated once
    when the pass removed most of ``w`` (DGKS): a second pass restores orthogonality to working
    precision, a third is never needed.

    Args:
        w: Vector of length ``n`` (float64).
        *bases: ``(n, p)`` matrices with orthonormal columns (``None`` or empty ones are skipped).
    """
    bases = tuple(b for b in bases if b is not None and b.shape[1] > 0)
    if not bases:
        return w
    norm = torch.linalg.vector_norm(w)
    for _ in range(2):
        for basis in bases:
            w = w - basis @ (basis.T @ w)
        kept = torch.linalg.vector_norm(w)
        if kept >= _DGKS * norm:
            break
        norm = kept
    return w


def random_unit(n: int, gen: torch.Generator, device: torch.device, *against: torch.Tensor | None) -> torch.Tensor:
    """A Gaussian vector, projected off ``against`` and normalised: uniform on the unit sphere of the complement."""
    v = orthogonalize(torch.randn(n, generator=gen, dtype=torch.float64).to(device), *against)
    return v / torch.linalg.vector_norm(v)


class LanczosRecurrence:
    """Lanczos with full reorthogonalisation, one product per :meth:`step`.

    After ``m`` steps, :attr:`alpha` and :attr:`beta` hold :math:`\\alpha_1..\\alpha_m` and
    :math:`\\beta_1..\\beta_m` (the last one is the norm of the next residual, so
    :math:`\\beta_m |e_m^\\top s|` is the residual of a Ritz pair of :math:`T_m`), and
    :attr:`basis` holds :math:`Q_m` (column-major: every leading block is contiguous).

    An invariant subspace shows up as :math:`\\beta_j \\approx 0` (relative to the largest
    product norm seen). With a ``restart`` generator the recurrence then continues from a fresh
    random vector orthogonal to everything so far (``beta[j] = 0`` marks the block boundary, so
    :math:`T_m` is block diagonal and its Ritz values in finished blocks are exact); without one,
    :meth:`step` returns ``False`` and the recurrence ends there.

    Args:
        op: Symmetric operator.
        max_steps: Capacity (products at most); reduced to the dimension available.
        start: Start vector (normalised here; projected off ``deflate`` first).
        deflate: ``(n, p)`` orthonormal columns the basis stays orthogonal to.
        restart: Generator for the fresh vectors after an invariant subspace, or ``None`` to stop.
    """

    def __init__(
        self,
        op: SymmetricOperator,
        max_steps: int,
        start: torch.Tensor,
        *,
        deflate: torch.Tensor | None = None,
        restart: torch.Generator | None = None,
    ):
        self.op = op
        n = op.shape[0]
        self.n = n
        self.device = op.device
        self.deflate = None if deflate is None else deflate.to(self.device, torch.float64).T.contiguous().T
        self.dimension = n - (0 if self.deflate is None else self.deflate.shape[1])
        self.capacity = max(0, min(int(max_steps), self.dimension))
        self._Q = torch.zeros(self.capacity, n, dtype=torch.float64, device=self.device).T
        self._alpha = np.zeros(self.capacity)
        self._beta = np.zeros(self.capacity)
        q = orthogonalize(start.detach().to(self.device, torch.float64), self.deflate)
        self._q = q / torch.linalg.vector_norm(q)
        self._restart = restart
        self._eps = torch.finfo(op.dtype).eps
        self._scale = 0.0
        self.m = 0
        #: steps at which a fresh random vector started a new Krylov block (after invariant subspaces)
        self.block_starts: list[int] = [0]
        self.exhausted = self.capacity == 0

    @property
    def alpha(self) -> np.ndarray:
        return self._alpha[: self.m]

    @property
    def beta(self) -> np.ndarray:
        return self._beta[: self.m]

    @property
    def basis(self) -> torch.Tensor:
        return self._Q[:, : self.m]

    @property
    def restarts(self) -> int:
        return len(self.block_starts) - 1

    def step(self) -> bool:
        """One product and one new basis vector; ``False`` when no step was possible."""
        if self.exhausted or self.m >= self.capacity:
            return False
        j = self.m
        q = self._q
        self._Q[:, j] = q
        w = orthogonalize(self.op @ q, self.deflate)
        self._scale = max(self._scale, float(torch.linalg.vector_norm(w)))
        a = float(q @ w)
        w = w - a * q
        if j > 0:
            w = w - self._beta[j - 1] * self._Q[:, j - 1]
        w = orthogonalize(w, self._Q[:, : j + 1], self.deflate)
        b = float(torch.linalg.vector_norm(w))
        self._alpha[j] = a
        self.m = j + 1
        if self.m == self.dimension:
            self.exhausted = True  # the whole space is spanned: T_m is exact, its last beta is 0
        elif b <= 10 * self._eps * math.sqrt(self.n) * self._scale:
            if self._restart is None:
                self.exhausted = True
            else:
                self._q = random_unit(self.n, self._restart, self.device, self.deflate, self._Q[:, : self.m])
                self.block_starts.append(self.m)
        else:
            self._beta[j] = b
            self._q = w / b
        return True


def _log_christoffel_sum(t: float, alpha: np.ndarray, beta: np.ndarray) -> float:
    """:math:`\\log\\sum_{j=0}^{m}\\pi_j(t)^2` for the orthonormal Lanczos polynomials, overflow-safe."""
    p_prev, p, log_scale, total = 0.0, 1.0, 0.0, 1.0
    for j in range(len(alpha)):
        p_next = ((t - alpha[j]) * p - (beta[j - 1] * p_prev if j > 0 else 0.0)) / beta[j]
        p_prev, p = p, p_next
        big = max(abs(p), abs(p_prev))
        if big > 1e100:  # rescale the pair (and the running sum) to keep the recurrence finite
            p, p_prev, total = p / big, p_prev / big, total / (big * big)
            log_scale += math.log(big)
        total += p * p
    return math.log(total) + 2.0 * log_scale


def extreme_eigenvalue_bounds(
    alpha: np.ndarray, beta: np.ndarray, dimension: int, confidence: float
) -> tuple[float, float]:
    """Probabilistic bounds :math:`\\lambda_{\\min} \\ge \\ell` and :math:`\\lambda_{\\max} \\le u` from one Lanczos block.

    Let the start vector be uniform on the unit sphere of a ``dimension``-dimensional space on
    which :math:`H = \\sum_i \\lambda_i u_i u_i^\\top`, with components :math:`\\gamma_i = u_i^\\top q_1`.
    The Lanczos vectors are :math:`q_{j+1} = \\pi_j(H) q_1` with the polynomials
    :math:`\\pi_0 = 1`, :math:`\\beta_{j+1}\\pi_{j+1}(t) = (t-\\alpha_{j+1})\\pi_j(t) - \\beta_j\\pi_{j-1}(t)`,
    orthonormal for the measure :math:`\\sum_i \\gamma_i^2\\delta_{\\lambda_i}`. Hence for any
    coefficients :math:`c`, with :math:`p = \\sum_{j\\le m} c_j\\pi_j`,

    .. math:: \\gamma_1^2\\, p(\\lambda_{\\min})^2 \\le \\sum_i \\gamma_i^2 p(\\lambda_i)^2 = \\lVert c \\rVert^2,
              \\qquad\\text{so}\\qquad \\sum_{j=0}^{m} \\pi_j(\\lambda_{\\min})^2 \\le 1/\\gamma_1^2

    (maximise over :math:`c`: the reciprocal Christoffel function). Below the smallest Ritz
    value :math:`\\theta_1` every :math:`|\\pi_j|` grows monotonically (their zeros are Ritz
    values of :math:`T_j`, all :math:`\\ge \\theta_1` by interlacing), so the equation
    :math:`\\sum_j \\pi_j(\\theta_1 - d)^2 = 1/c` has one root :math:`d^\\ast \\ge 0`. The
    squared component :math:`\\gamma_1^2` of a uniform unit vector is
    :math:`\\mathrm{Beta}(\\tfrac12, \\tfrac{n-1}{2})`-distributed whatever :math:`H` is; taking
    :math:`c` as its :math:`(1-\\text{confidence})`-quantile gives, with probability at least
    ``confidence`` over the start vector,

    .. math:: \\theta_1 - d^\\ast \\le \\lambda_{\\min} \\le \\theta_1 ,

    the right side always (Cauchy interlacing). The top end is the mirror image. The bound needs
    no spectral gap and no converged residual; it proves that no eigenvalue was missed below
    :math:`\\theta_1` (Kuczynski and Wozniakowski 1992 give the a-priori version). It is sharp at
    an isolated end and loose at the edge of a dense bulk, where :math:`|\\pi_j|` grows slowly.
    In floating point it holds for the operator the products actually applied (within their
    rounding of :math:`H`).

    Args:
        alpha: :math:`\\alpha_1..\\alpha_m` of one Krylov block.
        beta: :math:`\\beta_1..\\beta_m`; ``beta[-1] == 0`` means the block is invariant (exact).
        dimension: Dimension of the space the start vector was uniform in.
        confidence: Probability of the bounds, in ``(0, 1)``.

    Returns:
        ``(lower, upper)``: bounds on the smallest and largest eigenvalue.
    """
    from scipy.linalg import eigvalsh_tridiagonal
    from scipy.optimize import brentq
    from scipy.special import betaincinv

    m = len(alpha)
    theta = eigvalsh_tridiagonal(alpha, beta[: m - 1]) if m > 1 else np.asarray(alpha, dtype=np.float64)
    lo, hi = float(theta[0]), float(theta[-1])
    if beta[m - 1] == 0.0 or dimension <= 1:
        return lo, hi  # an invariant block: its Ritz values are eigenvalues
    c = float(betaincinv(0.5, 0.5 * (dimension - 1), 1.0 - confidence))
    target = -math.log(c)
    width = max(hi - lo, abs(hi), abs(lo), 1e-300)

    def distance(sign: float, edge: float) -> float:
        def excess(d: float) -> float:
            return _log_christoffel_sum(edge + sign * d, alpha, beta) - target

        if excess(0.0) >= 0.0:
            return 0.0
        far = width
        while excess(far) < 0.0:
            far *= 2.0
        return brentq(excess, 0.0, far, xtol=1e-15 * width, rtol=1e-12)

    return lo - distance(-1.0, lo), hi + distance(1.0, hi)
