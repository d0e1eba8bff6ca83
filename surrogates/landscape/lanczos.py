"""Extreme eigenpairs of a symmetric operator by Lanczos with full reorthogonalisation.

Lanczos builds an orthonormal basis :math:`Q_m = [q_1, \\dots, q_m]` of the Krylov space
:math:`\\mathcal{K}_m(H, q_1)` in which :math:`Q_m^\\top H Q_m = T_m` is tridiagonal:

.. math:: H Q_m = Q_m T_m + \\beta_m q_{m+1} e_m^\\top .

The Ritz pairs :math:`(\\theta_i, y_i = Q_m s_i)` from :math:`T_m s_i = \\theta_i s_i` satisfy

.. math:: \\lVert H y_i - \\theta_i y_i \\rVert = \\beta_m |e_m^\\top s_i| =: r_i,

so each residual is known without another product, and an eigenvalue of :math:`H` lies within
:math:`\\min(r_i,\\ r_i^2/\\mathrm{gap}_i)` of :math:`\\theta_i`. Full reorthogonalisation (two
Gram-Schmidt passes, in float64 whatever the operator's dtype) keeps the basis orthogonal to
working precision, so no spurious ("ghost") copies of converged eigenvalues appear. Among all
methods that see the same ``m`` products, the Krylov space is optimal for the extreme
eigenvalues; unlike restarted solvers (ARPACK) nothing computed is thrown away.

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
from scipy.linalg import eigh_tridiagonal

from ._util import make_generator, progress
from .operator import SymmetricOperator

_WHICH = ("LA", "SA", "BE", "LM")


def default_tol(dtype: torch.dtype) -> float:
    """Residual tolerance (relative to the largest |Ritz value|) matched to the operator's precision.

    The residual of a Ritz pair controls its eigenvalue error quadratically
    (:math:`|\\theta-\\lambda| \\le r^2/\\mathrm{gap}`), so a residual near the square root of the
    products' rounding level already gives eigenvalues at that level.
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
        error_bounds: :math:`\\min(r, r^2/\\mathrm{gap})`, a bound on each eigenvalue's error.
        converged: Per pair, ``residual <= tol * scale``.
        tol: The relative tolerance used.
        scale: Largest |Ritz value| (the residual scale).
        iterations: Lanczos steps taken (= products).
        num_products: Operator products used.
        which: The part of the spectrum asked for.
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

    @property
    def all_converged(self) -> bool:
        return bool(np.all(self.converged))

    def message(self) -> str:
        """A one-line human-readable status."""
        if self.all_converged:
            return f"all {len(self.eigenvalues)} eigenpairs converged in {self.iterations} products"
        bad = int(np.sum(~self.converged))
        worst = float(np.max(self.residuals / max(self.scale, 1e-300)))
        return (
            f"{bad} of {len(self.eigenvalues)} eigenpairs NOT converged after {self.iterations} products "
            f"(worst relative residual {worst:.2e} > tol {self.tol:.1e}); raise max_iter"
        )

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
            "status": self.message(),
        }


def _orthogonalize(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Remove the components of ``w`` along the columns of ``basis`` (two classical Gram-Schmidt passes)."""
    if basis.shape[1] == 0:
        return w
    for _ in range(2):
        w = w - basis @ (basis.T @ w)
    return w


def _random_unit(n: int, gen: torch.Generator, device, against: torch.Tensor | None) -> torch.Tensor:
    v = torch.randn(n, generator=gen, dtype=torch.float64).to(device)
    if against is not None:
        v = _orthogonalize(v, against)
    return v / torch.linalg.vector_norm(v)


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
    progress_bar: bool | None = None,
    warn: bool = True,
) -> EigenResult:
    """Extreme eigenpairs of a symmetric operator (Lanczos, full reorthogonalisation).

    Stops as soon as every wanted Ritz pair has :math:`r_i \\le \\text{tol}\\cdot\\max|\\theta|`,
    or after ``max_iter`` products (then ``converged`` is ``False`` for the laggards and a
    warning says so). An invariant subspace (breakdown) is continued with a fresh random
    vector orthogonal to the basis, so the whole spectrum is reachable; with
    ``max_iter >= n`` the result is exact.

    Args:
        op: Symmetric operator (``shape``, ``@``).
        k: Number of eigenpairs (for ``"BE"``: ``k`` at each end).
        which: ``"LA"`` largest algebraic, ``"SA"`` smallest algebraic (most negative),
            ``"BE"`` both ends, ``"LM"`` largest magnitude.
        max_iter: Most products to spend; default ``min(n, max(100, 10 k))``.
        tol: Relative residual tolerance; default :func:`default_tol` of the operator's dtype.
        seed: Seed of the random start vector.
        v0: Explicit start vector instead.
        deflate: ``(n, p)`` orthonormal columns to stay orthogonal to (e.g. known eigenvectors).
        return_eigenvectors: Form the Ritz vectors (``n x k`` float64 memory).
        keep_basis: Keep the whole orthonormal Krylov basis ``Q_m`` (``result.basis``); with
            ``result.all_ritz_values`` it deflates stochastic Lanczos quadrature
            (:func:`~surrogates.landscape.density.spectral_density`) at no extra products.
        progress_bar: tqdm bar over steps (``None``: only on a TTY).
        warn: Emit a ``RuntimeWarning`` when not converged.

    Returns:
        An :class:`EigenResult`.
    """
    if which not in _WHICH:
        raise ValueError(f"which must be one of {_WHICH}, got {which!r}")
    n = op.shape[0]
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    p = 0 if deflate is None else deflate.shape[1]
    avail = n - p
    want = 2 * k if which == "BE" else k
    if want > avail:
        raise ValueError(f"asked for {want} eigenpairs of an operator of size {n}" + (f" with {p} deflated" if p else ""))
    max_iter = min(avail, max(100, 10 * k)) if max_iter is None else min(int(max_iter), avail)
    if max_iter < want:
        raise ValueError(f"max_iter={max_iter} is smaller than the {want} eigenpairs asked for")
    tol = default_tol(op.dtype) if tol is None else float(tol)
    device = op.device
    gen = make_generator(seed)
    defl = None if deflate is None else deflate.to(device, torch.float64).T.contiguous().T

    # column-major storage: each Lanczos vector and every leading block Q[:, :j] is contiguous
    Q = torch.zeros(max_iter, n, dtype=torch.float64, device=device).T
    alpha = np.zeros(max_iter)
    beta = np.zeros(max_iter)
    if v0 is None:
        q = _random_unit(n, gen, device, defl)
    else:
        if v0.shape != (n,):
            raise ValueError(f"v0 must have shape ({n},), got {tuple(v0.shape)}")
        q = v0.detach().to(device, torch.float64)
        q = _orthogonalize(q, defl) if defl is not None else q
        q = q / torch.linalg.vector_norm(q)
    start_products = op.num_products
    restarts = 0
    theta = np.zeros(0)
    S = np.zeros((0, 0))
    m = 0
    eps = torch.finfo(op.dtype).eps
    for j in progress(range(max_iter), enabled=progress_bar, total=max_iter, desc=f"Lanczos ({which})"):
        Q[:, j] = q
        w = op @ q
        if defl is not None:
            w = _orthogonalize(w, defl)
        alpha[j] = float(q @ w)
        w = w - alpha[j] * q
        if j > 0:
            w = w - beta[j - 1] * Q[:, j - 1]
        w = _orthogonalize(w, Q[:, : j + 1])
        if defl is not None:
            w = _orthogonalize(w, defl)
        b = float(torch.linalg.vector_norm(w))
        m = j + 1
        theta, S = eigh_tridiagonal(alpha[:m], beta[: m - 1]) if m > 1 else (alpha[:1].copy(), np.ones((1, 1)))
        scale = max(float(np.max(np.abs(theta))), 1e-300)
        if m == avail:
            beta[j] = 0.0
            break
        if b <= 10 * eps * math.sqrt(n) * scale:
            # Invariant subspace: the Ritz values so far are exact; continue in its complement.
            beta[j] = 0.0
            basis = Q[:, :m] if defl is None else torch.cat([defl, Q[:, :m]], dim=1)
            q = _random_unit(n, gen, device, basis)
            restarts += 1
        else:
            beta[j] = b
            q = w / b
        if m >= min(avail, max(want, 2 * k)):
            idx = _wanted(theta, k, which)
            res = beta[j] * np.abs(S[m - 1, idx])
            if np.all(res <= tol * scale):
                break

    idx = _wanted(theta, k, which)
    res = beta[m - 1] * np.abs(S[m - 1, idx])
    scale = max(float(np.max(np.abs(theta))), 1e-300)
    gaps = np.array([np.min(np.abs(np.delete(theta, i) - theta[i])) if m > 1 else np.inf for i in idx])
    with np.errstate(divide="ignore", invalid="ignore"):
        bounds = np.minimum(res, np.where(gaps > 0, res**2 / gaps, res))
    vecs = None
    if return_eigenvectors:
        vecs = Q[:, :m] @ torch.as_tensor(S[:, idx], dtype=torch.float64, device=device)
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
        restarts=restarts,
        all_ritz_values=theta,
        basis=Q[:, :m].clone() if keep_basis else None,
    )
    if warn and not result.all_converged:
        warnings.warn(f"lanczos({which}): {result.message()}", RuntimeWarning, stacklevel=2)
    return result


def lanczos_tridiagonal(
    op: SymmetricOperator,
    v0: torch.Tensor,
    num_steps: int,
    *,
    deflate: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Run ``num_steps`` Lanczos steps from ``v0`` (full reorthogonalisation); return ``T``'s diagonals.

    Used by stochastic Lanczos quadrature, where the start vector is a random probe. Stops
    early at an invariant subspace (the quadrature is then exact).

    Args:
        op: Symmetric operator.
        v0: Start vector (normalised here).
        num_steps: Most steps.
        deflate: Orthonormal columns to stay orthogonal to.

    Returns:
        ``(alpha, beta, m)``: diagonal ``(m,)``, off-diagonal ``(m-1,)`` and the steps taken.
    """
    n = op.shape[0]
    device = op.device
    num_steps = min(int(num_steps), n - (0 if deflate is None else deflate.shape[1]))
    defl = None if deflate is None else deflate.to(device, torch.float64).T.contiguous().T
    Q = torch.zeros(num_steps, n, dtype=torch.float64, device=device).T
    alpha = np.zeros(num_steps)
    beta = np.zeros(num_steps)
    q = v0.detach().to(device, torch.float64)
    q = q / torch.linalg.vector_norm(q)
    eps = torch.finfo(op.dtype).eps
    m = 0
    for j in range(num_steps):
        Q[:, j] = q
        w = op @ q
        if defl is not None:
            w = _orthogonalize(w, defl)
        alpha[j] = float(q @ w)
        w = w - alpha[j] * q - (beta[j - 1] * Q[:, j - 1] if j > 0 else 0.0)
        w = _orthogonalize(w, Q[:, : j + 1])
        if defl is not None:
            w = _orthogonalize(w, defl)
        b = float(torch.linalg.vector_norm(w))
        m = j + 1
        scale = max(float(np.max(np.abs(alpha[:m]))), float(np.max(beta[:m])) if m > 1 else 0.0, 1e-300)
        if b <= 10 * eps * math.sqrt(n) * scale:
            break
        beta[j] = b
        q = w / b
    return alpha[:m], beta[: m - 1], m


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
        raise ValueError("refine needs an EigenResult computed with return_eigenvectors=True")
    Y = result.eigenvectors.to(op.device, torch.float64)
    if Y.shape[0] != op.shape[0]:
        raise ValueError(f"eigenvectors have {Y.shape[0]} rows but the operator has size {op.shape[0]}")
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
    scale = max(result.scale, float(np.max(np.abs(theta))))
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
    )
