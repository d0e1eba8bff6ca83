"""Extreme eigenpairs of a symmetric operator by Lanczos with full reorthogonalisation.

Lanczos (:class:`~surrogates.landscape.krylov.LanczosRecurrence`) builds an orthonormal basis
:math:`Q_m` of the Krylov space :math:`\\mathcal K_m(H, q_1)` with :math:`Q_m^\\top H Q_m = T_m`
tridiagonal. The Ritz pairs :math:`(\\theta_i, y_i = Q_m s_i)` from :math:`T_m s_i = \\theta_i s_i`
have residuals known without another product,

.. math:: r_i = \\lVert H y_i - \\theta_i y_i \\rVert = \\beta_m |e_m^\\top s_i| .

**What a result proves.** With :math:`\\theta_1 \\le \\dots \\le \\theta_m` and the spread
:math:`s = \\theta_m - \\theta_1`:

1. *Residual*: some eigenvalue of :math:`H` lies in :math:`[\\theta_i - r_i, \\theta_i + r_i]`
   (any symmetric :math:`H`).
2. *Interlacing*: the :math:`i`-th smallest eigenvalue is :math:`\\le \\theta_i` and the
   :math:`i`-th largest :math:`\\ge \\theta_{m+1-i}`.
3. *No missed end* (probabilistic, :func:`~surrogates.landscape.krylov.extreme_eigenvalue_bounds`):
   for the random start, with probability :math:`\\ge` ``confidence``,
   :math:`\\lambda_{\\min} \\ge` ``lower_bound`` and :math:`\\lambda_{\\max} \\le` ``upper_bound``;
   with 2. this brackets each extreme eigenvalue, :math:`\\lambda_{\\min} \\in [\\ell, \\theta_1]`,
   without any assumption on gaps. This is what a residual alone cannot give: a small
   :math:`r_1` says that :math:`\\theta_1` is *an* eigenvalue, not that it is the smallest.
4. *Gap* (an estimate): if the distance :math:`\\delta_i` from :math:`\\theta_i` to the other
   Ritz values is also the distance to the rest of the spectrum,
   :math:`|\\lambda - \\theta_i| \\le r_i^2/\\delta_i` (``error_bounds`` = :math:`\\min(r_i, r_i^2/\\delta_i)`).
   Early on a Ritz gap can exceed the true one many times, so this is not a stopping test.

**Stopping.** A wanted pair is converged when :math:`r_i \\le \\text{tol}\\cdot s`, which by 1.
puts an eigenvalue within :math:`\\text{tol}\\cdot s` of :math:`\\theta_i`. The scale is the
spread, not :math:`\\max|\\theta|`: it does not change when :math:`H` is shifted, it is the scale of
the products' rounding, and it is the scale on which Krylov convergence is measured at *either*
end (the relative gap :math:`(\\lambda_2-\\lambda_1)/(\\lambda_n-\\lambda_1)` sets the rate at
the bottom). Lanczos stops when every wanted pair at every asked end has converged.

**Why not a shift or a filter.** Among all methods that apply :math:`H` ``m`` times to vectors
built from :math:`q_1` (power iteration with a shift :math:`\\lambda_{\\max} - H`, Chebyshev
filters, thick restarts), every vector lies in :math:`\\mathcal K_m(H, q_1)`, and the smallest
Ritz value is the minimum of the Rayleigh quotient over all of it. Shifts leave
:math:`\\mathcal K_m` unchanged, a degree-``d`` filter spends ``d`` products per step inside it,
and restarts discard part of it: none finds :math:`\\lambda_{\\min}` in fewer products than
full-reorthogonalisation Lanczos; they save memory and orthogonalisation time only. At the edge
of a dense bulk (loss Hessians' bottom end) the count is set by the relative gap there.

Single-vector Lanczos finds one copy of a repeated eigenvalue (its multiplicity is not
resolved); the spectral density (:mod:`.density`) is the tool for bulk multiplicities.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal, eigvalsh_tridiagonal

from ..errors import InputError
from ._util import make_generator, with_progress
from .krylov import LanczosRecurrence, extreme_eigenvalue_bounds, random_unit
from .operator import SymmetricOperator

_WHICH = ("LA", "SA", "BE", "LM")

def default_tol(dtype: torch.dtype) -> float:
    """Residual tolerance (relative to the spread of the Ritz values) matched to the operator's precision.

    The residual of a Ritz pair controls its eigenvalue error quadratically when the eigenvalue
    is separated (:math:`|\\theta-\\lambda| \\le r^2/\\mathrm{gap}`), so a residual near the
    square root of the products' rounding level already gives such eigenvalues at that level.
    """
    return {torch.float64: 1e-10, torch.float32: 1e-5}.get(dtype, 1e-3)


@dataclass
class EigenResult:
    """Eigenpairs found by :func:`lanczos`.

    Attributes:
        eigenvalues: Ritz values, ``(k,)`` float64; descending for ``"LA"``/``"LM"``, ascending
            for ``"SA"``; for ``"BE"`` the ``k`` largest (descending) then the ``k`` smallest
            (ascending).
        eigenvectors: Ritz vectors as columns, ``(n, k)`` float64 torch tensor (or ``None``).
        residuals: :math:`\\lVert H y - \\theta y\\rVert` for each pair.
        error_bounds: :math:`\\min(r, r^2/\\mathrm{gap})` with the Ritz gap (an estimate, see
            the module docstring).
        converged: Per pair, ``residual <= tol * scale``.
        tol: The relative tolerance used.
        scale: Spread :math:`\\theta_{\\max} - \\theta_{\\min}` of all Ritz values (the residual scale).
        iterations: Lanczos steps taken (= products).
        num_products: Operator products used.
        which: The part of the spectrum asked for.
        restarts: Invariant subspaces continued with a fresh random vector.
        all_ritz_values: Every Ritz value of the final :math:`T_m`, ascending.
        basis: The Krylov basis :math:`Q_m` (with ``keep_basis=True``).
        refined_with: Operator dtype used by :func:`refine`, if any.
        lower_bound: With probability ``>= confidence``, :math:`\\lambda_{\\min} \\ge` this (on the
            complement of ``deflate``); ``None`` when the start vector was given (not random).
        upper_bound: Likewise :math:`\\lambda_{\\max} \\le` this.
        confidence: Probability of each bound.
    """

    eigenvalues: np.ndarray
    eigenvectors: torch.Tensor | None
    residuals: np.ndarray
    error_bounds: np.ndarray
    converged: np.ndarray
    tol: float
    scale: float
    iterations: int
    num_products: int
    which: str
    restarts: int = 0
    all_ritz_values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    basis: torch.Tensor | None = None
    refined_with: str | None = None
    lower_bound: float | None = None
    upper_bound: float | None = None
    confidence: float | None = None

    @property
    def all_converged(self) -> bool:
        return bool(np.all(self.converged))

    def message(self) -> str:
        """A one-line human-readable status."""
        if self.all_converged:
            text = f"all {len(self.eigenvalues)} eigenpairs converged in {self.iterations} products"
        else:
            bad = int(np.sum(~self.converged))
            worst = float(np.max(self.residuals / max(self.scale, 1e-300)))
            text = (
                f"{bad} of {len(self.eigenvalues)} eigenpairs NOT converged after {self.iterations} products "
                f"(worst relative residual {worst:.2e} > tol {self.tol:.1e}); raise max_iter"
            )
        if self.lower_bound is not None and self.which in ("SA", "BE"):
            text += f"; lambda_min in [{self.lower_bound:.6g}, {self.all_ritz_values[0]:.6g}] (p >= {self.confidence:g})"
        if self.upper_bound is not None and self.which in ("LA", "BE"):
            text += f"; lambda_max in [{self.all_ritz_values[-1]:.6g}, {self.upper_bound:.6g}] (p >= {self.confidence:g})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "which": self.which,
            "eigenvalues": self.eigenvalues.tolist(),
            "residuals": self.residuals.tolist(),
            "error_bounds": self.error_bounds.tolist(),
            "converged": [bool(c) for c in self.converged],
            "all_converged": self.all_converged,
            "tol": self.tol,
            "scale": self.scale,
            "iterations": self.iterations,
            "num_products": self.num_products,
            "restarts": self.restarts,
            "refined_with": self.refined_with,
            "lambda_min_lower_bound": self.lower_bound,
            "lambda_max_upper_bound": self.upper_bound,
            "bound_confidence": self.confidence,
            "status": self.message(),
        }


def _wanted(theta: np.ndarray, k: int, which: str) -> np.ndarray:
    order = np.argsort(theta)
    if which == "LA":
        return order[::-1][:k]
    if which == "SA":
        return order[:k]
    if which == "LM":
        return np.argsort(-np.abs(theta), kind="stable")[:k]
    top = order[::-1][:k]
    bottom = [i for i in order[:k] if i not in set(top)]
    return np.concatenate([top, np.asarray(bottom, dtype=int)]).astype(int)


def _spread(theta_min: float, theta_max: float, eps: float) -> float:
    """The residual scale; floored at the rounding level of the largest |theta| (a multiple of I has s = 0)."""
    return max(theta_max - theta_min, eps * max(abs(theta_min), abs(theta_max)), 1e-300)


def _converged_so_far(alpha: np.ndarray, beta: np.ndarray, k: int, which: str, tol: float, eps: float) -> bool:
    """The stopping test on the current T_m, computing only the Ritz pairs it needs."""
    m = len(alpha)
    off = beta[: m - 1]
    if which == "LM":
        theta, S = eigh_tridiagonal(alpha, off)
        idx = _wanted(theta, k, which)
        last, lo, hi = S[m - 1, idx], theta[0], theta[-1]
    else:
        last = []
        top_n = k if which in ("LA", "BE") else 1  # theta_max is needed for the spread anyway
        bottom_n = k if which in ("SA", "BE") else 1
        w_top, s_top = eigh_tridiagonal(alpha, off, select="i", select_range=(m - top_n, m - 1))
        w_bot, s_bot = eigh_tridiagonal(alpha, off, select="i", select_range=(0, bottom_n - 1))
        lo, hi = w_bot[0], w_top[-1]
        if which in ("LA", "BE"):
            last.append(s_top[m - 1])
        if which in ("SA", "BE"):
            last.append(s_bot[m - 1])
        last = np.concatenate(last)
    return bool(np.all(beta[m - 1] * np.abs(last) <= tol * _spread(lo, hi, eps)))


def lanczos(
    op: SymmetricOperator,
    k: int = 6,
    which: str = "LA",
    *,
    max_iter: int | None = None,
    tol: float | None = None,
    seed: int | None = 0,
    v0: torch.Tensor | None = None,
    deflate: torch.Tensor | None = None,
    return_eigenvectors: bool = True,
    keep_basis: bool = False,
    confidence: float = 0.99,
    progress: bool | None = None,
    warn: bool = True,
) -> EigenResult:
    """Extreme eigenpairs of a symmetric operator (Lanczos, full reorthogonalisation).

    Stops as soon as every wanted Ritz pair has :math:`r_i \\le \\text{tol}\\cdot s`, with
    :math:`s = \\theta_{\\max}-\\theta_{\\min}` the spread of the Ritz values, or after
    ``max_iter`` products (then ``converged`` is ``False`` for the laggards and a warning says
    so); the module docstring states what a result proves. An invariant subspace (breakdown) is
    continued with a fresh random vector orthogonal to the basis, so the whole spectrum is
    reachable; with ``max_iter >= n`` the result is exact. The result also brackets the extreme
    eigenvalues, :math:`\\lambda_{\\min} \\in [\\text{lower\\_bound}, \\theta_{\\min}]` and
    :math:`\\lambda_{\\max} \\in [\\theta_{\\max}, \\text{upper\\_bound}]`, each with probability
    ``>= confidence`` over the random start.

    Args:
        op: Symmetric operator (``shape``, ``@``).
        k: Number of eigenpairs (for ``"BE"``: ``k`` at each end).
        which: ``"LA"`` largest algebraic, ``"SA"`` smallest algebraic (most negative),
            ``"BE"`` both ends, ``"LM"`` largest magnitude.
        max_iter: Most products to spend; default ``min(n, max(100, 10 k))``.
        tol: Relative residual tolerance; default :func:`default_tol` of the operator's dtype.
        seed: Seed of the random start vector.
        v0: Explicit start vector instead (then no probabilistic bounds).
        deflate: ``(n, p)`` orthonormal columns to stay orthogonal to (e.g. known eigenvectors).
        return_eigenvectors: Form the Ritz vectors (``n x k`` float64 memory).
        keep_basis: Keep the whole orthonormal Krylov basis ``Q_m`` (``result.basis``); with
            ``result.all_ritz_values`` it deflates stochastic Lanczos quadrature
            (:func:`~surrogates.landscape.density.spectral_density`) at no extra products.
        confidence: Probability of ``lower_bound`` / ``upper_bound``, in ``(0, 1)``.
        progress: tqdm bar over steps (``None``: only on a TTY).
        warn: Emit a ``RuntimeWarning`` when not converged.

    Returns:
        An :class:`EigenResult`.

    Raises:
        InputError: For an unknown ``which``, a bad ``k``/``max_iter``/``confidence``, or a
            ``v0`` of the wrong shape.
    """
    if which not in _WHICH:
        raise InputError(f"which must be one of {_WHICH}, got {which!r}")
    n = op.shape[0]
    if not isinstance(k, int) or k < 1:
        raise InputError(f"k must be a positive int, got {k!r}")
    if not 0.0 < float(confidence) < 1.0:
        raise InputError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    p = 0 if deflate is None else deflate.shape[1]
    avail = n - p
    want = 2 * k if which == "BE" else k
    if want > avail:
        raise InputError(f"asked for {want} eigenpairs of an operator of size {n}" + (f" with {p} deflated" if p else ""))
    max_iter = min(avail, max(100, 10 * k)) if max_iter is None else min(int(max_iter), avail)
    if max_iter < want:
        raise InputError(f"max_iter={max_iter} is smaller than the {want} eigenpairs asked for")
    tol = default_tol(op.dtype) if tol is None else float(tol)
    device = op.device
    gen = make_generator(seed)
    eps = float(torch.finfo(op.dtype).eps)
    if v0 is None:
        start = random_unit(n, gen, device, None if deflate is None else deflate.to(device, torch.float64))
    elif tuple(v0.shape) != (n,):
        raise InputError(f"v0 must have shape ({n},), got {tuple(v0.shape)}")
    else:
        start = v0
    start_products = op.num_products
    rec = LanczosRecurrence(op, max_iter, start, deflate=deflate, restart=gen)
    min_steps = min(avail, max(want, 2 * k))
    for _ in with_progress(range(max_iter), enabled=progress, total=max_iter, desc=f"Lanczos ({which})"):
        rec.step()
        if rec.exhausted:
            break
        if rec.m >= min_steps and _converged_so_far(rec.alpha, rec.beta, k, which, tol, eps):
            break

    m = rec.m
    alpha, beta = rec.alpha, rec.beta
    theta = eigvalsh_tridiagonal(alpha, beta[: m - 1]) if m > 1 else alpha.copy()
    idx = _wanted(theta, k, which)
    S = _ritz_vectors(alpha, beta[: m - 1], idx)
    res = beta[m - 1] * np.abs(S[m - 1])
    scale = _spread(float(theta[0]), float(theta[-1]), eps)
    gaps = np.array([np.min(np.abs(np.delete(theta, i) - theta[i])) if m > 1 else np.inf for i in idx])
    with np.errstate(divide="ignore", invalid="ignore"):
        bounds = np.minimum(res, np.where(gaps > 0, res**2 / gaps, res))
    lower = upper = None
    if v0 is None:
        lower, upper = _bounds(rec, theta, confidence, eps)
    vecs = None
    if return_eigenvectors:
        vecs = rec.basis @ torch.as_tensor(S, dtype=torch.float64, device=device)
    result = EigenResult(
        eigenvalues=theta[idx].astype(np.float64),
        eigenvectors=vecs,
        residuals=res,
        error_bounds=bounds,
        converged=res <= tol * scale,
        tol=tol,
        scale=scale,
        iterations=m,
        num_products=op.num_products - start_products,
        which=which,
        restarts=rec.restarts,
        all_ritz_values=theta,
        basis=rec.basis.clone() if keep_basis else None,
        lower_bound=lower,
        upper_bound=upper,
        confidence=float(confidence) if v0 is None else None,
    )
    if warn and not result.all_converged:
        warnings.warn(f"lanczos({which}): {result.message()}", RuntimeWarning, stacklevel=2)
    return result


def _ritz_vectors(alpha: np.ndarray, off: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Eigenvectors of T_m for the Ritz values at sorted positions ``idx`` (columns, in that order)."""
    m = len(alpha)
    if m == 1:
        return np.ones((1, len(idx)))
    lo, hi = int(np.min(idx)), int(np.max(idx))
    if hi - lo + 1 <= 2 * len(idx):
        _, S = eigh_tridiagonal(alpha, off, select="i", select_range=(lo, hi))
        return S[:, idx - lo]
    _, S = eigh_tridiagonal(alpha, off)  # both ends far apart (BE, LM): all of them is cheaper than two calls
    return S[:, idx]


def _bounds(rec: LanczosRecurrence, theta: np.ndarray, confidence: float, eps: float) -> tuple[float, float]:
    """Extreme-eigenvalue bounds: the last Krylov block is random in the complement of all earlier ones.

    Widened by a rounding allowance :math:`10\\,\\varepsilon\\sqrt m\\max|\\theta|`: the bounds are
    exact for the operator the products applied, which differs from :math:`H` by its rounding.
    """
    rounding = 10.0 * eps * math.sqrt(rec.m) * float(np.max(np.abs(theta)))
    first = rec.block_starts[-1]
    if first == rec.m:  # the recurrence ended exactly at an invariant subspace
        lower, upper = float(theta[0]), float(theta[-1])
    else:
        lower, upper = extreme_eigenvalue_bounds(rec.alpha[first:], rec.beta[first:], rec.dimension - first, confidence)
        if first > 0:  # earlier blocks are invariant subspaces: their Ritz values are eigenvalues
            lower, upper = min(lower, float(theta[0])), max(upper, float(theta[-1]))
    return lower - rounding, upper + rounding


def refine(op: SymmetricOperator, result: EigenResult, *, label: str | None = None) -> EigenResult:
    """Rayleigh-Ritz refinement of computed eigenpairs with another (e.g. float64) operator.

    Lanczos on a float32 operator gives Ritz vectors whose residual is limited by float32
    rounding in the products. One product per vector with a higher-precision operator
    :math:`H'` and the small eigenproblem

    .. math:: (Y^\\top H' Y)\\, s = \\theta' s, \\qquad y' = Y s

    give eigenvalues of :math:`H'` with error :math:`O(r^2/\\mathrm{gap})`, i.e. to about the square of
    the float32 level, and *true* residuals :math:`\\lVert H' y' - \\theta' y' \\rVert` (not the recurrence
    estimate). Costs ``k`` products of ``op``.

    Args:
        op: The operator to refine against (same size).
        result: An :class:`EigenResult` with eigenvectors.
        label: Text stored in ``refined_with`` (default: the operator's dtype).

    Returns:
        A new :class:`EigenResult` ordered like ``result``.
    """
    if result.eigenvectors is None:
        raise InputError("refine needs an EigenResult computed with return_eigenvectors=True")
    Y = result.eigenvectors.to(op.device, torch.float64)
    if Y.shape[0] != op.shape[0]:
        raise InputError(f"eigenvectors have {Y.shape[0]} rows but the operator has size {op.shape[0]}")
    Y, _ = torch.linalg.qr(Y)
    start = op.num_products
    W = (op @ Y).to(torch.float64)
    G = Y.T @ W
    theta, S = np.linalg.eigh(0.5 * (G + G.T).cpu().numpy())
    St = torch.as_tensor(S, dtype=torch.float64, device=Y.device)
    Yn, Wn = Y @ St, W @ St
    res = torch.linalg.vector_norm(Wn - Yn * torch.as_tensor(theta, device=Y.device), dim=0).cpu().numpy()
    k = result.eigenvalues.shape[0]
    order = np.argsort(-theta) if result.which in ("LA", "LM") else np.argsort(theta)
    if result.which == "BE":
        half = k // 2
        order = np.concatenate([np.argsort(-theta)[:half], np.argsort(theta)[: k - half]])
    if result.which == "LM":
        order = np.argsort(-np.abs(theta), kind="stable")
    theta, res = theta[order], res[order]
    Yn = Yn[:, torch.as_tensor(order.copy(), device=Y.device)]
    scale = result.scale
    gaps = np.array([np.min(np.abs(np.delete(result.all_ritz_values, np.argmin(np.abs(result.all_ritz_values - t))) - t)) if len(result.all_ritz_values) > 1 else np.inf for t in theta])
    with np.errstate(divide="ignore", invalid="ignore"):
        bounds = np.minimum(res, np.where(gaps > 0, res**2 / gaps, res))
    return EigenResult(
        eigenvalues=theta,
        eigenvectors=Yn,
        residuals=res,
        error_bounds=bounds,
        converged=res <= max(result.tol, default_tol(op.dtype)) * scale,
        tol=max(result.tol, default_tol(op.dtype)),
        scale=scale,
        iterations=result.iterations,
        num_products=result.num_products + op.num_products - start,
        which=result.which,
        restarts=result.restarts,
        all_ritz_values=result.all_ritz_values,
        basis=result.basis,
        refined_with=label or str(op.dtype).replace("torch.", ""),
        lower_bound=result.lower_bound,
        upper_bound=result.upper_bound,
        confidence=result.confidence,
    )
