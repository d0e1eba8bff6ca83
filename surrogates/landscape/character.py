"""Is the trained weight vector a minimum, a saddle, or not a critical point at all?

At a critical point :math:`\\nabla L(\\theta^*) = 0`; the Hessian's signature decides its kind:
all eigenvalues :math:`\\ge 0` (minimum), both signs (saddle), all :math:`\\le 0` (maximum). In
floating point and with partial spectra, every word needs a tolerance, and no tolerance may
depend on the units of the loss or of the parameters (multiply the loss by 1000, or all weights
by 10 with the network taking them back out, and the verdict must stay):

* *critical* means :math:`\\lVert g\\rVert \\le` ``gradient_tol`` :math:`\\cdot \\max|\\lambda| \\cdot
  \\lVert\\theta\\rVert`. Read as a length: :math:`\\lVert g\\rVert / \\max|\\lambda|` is the shortest
  Newton step :math:`\\lVert H^{-1} g\\rVert` can be, the least distance to the stationary point of
  the local quadratic model, and it is compared with the weights' own norm. Scaling the loss by
  :math:`c` scales :math:`g` and :math:`\\lambda` alike; scaling the parameters by :math:`a` scales
  :math:`g` by :math:`1/a`, :math:`\\lambda` by :math:`1/a^2` and :math:`\\theta` by :math:`a`: the test is
  unchanged by both;
* an eigenvalue *counts as negative* when :math:`\\lambda < -`\\ ``negative_rtol`` :math:`\\cdot\\max|\\lambda|`
  (relative to the spectral scale, for the same reason);
* only the eigenvalues actually computed are counted, so the count is a lower bound unless the
  full spectrum was computed; unconverged eigenvalues are flagged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import InputError


@dataclass
class CriticalCharacter:
    """The verdict and the evidence behind it (all tolerances included)."""

    gradient_norm: float
    parameter_norm: float
    lambda_max: float
    lambda_min: float
    num_negative: int
    num_computed: int
    full_spectrum: bool
    kind: str
    gradient_tol: float
    gradient_threshold: float
    negative_rtol: float
    negative_threshold: float
    eigenvalues_converged: bool
    explanation: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def characterize(
    gradient_norm: float,
    eigenvalues: np.ndarray,
    *,
    parameter_norm: float,
    gradient_tol: float = 1e-3,
    negative_rtol: float = 1e-3,
    full_spectrum: bool = False,
    converged: bool = True,
) -> CriticalCharacter:
    """Classify a weight vector from its gradient norm and (some of) its Hessian eigenvalues.

    Args:
        gradient_norm: :math:`\\lVert\\nabla L\\rVert_2` over the full data.
        eigenvalues: The Hessian eigenvalues computed (must include the extremes to be
            meaningful: run Lanczos with ``which="BE"``).
        parameter_norm: :math:`\\lVert\\theta\\rVert_2` of the weights analysed (the same subset).
        gradient_tol: "Critical" when ``gradient_norm <= gradient_tol * max|lambda| * parameter_norm``.
        negative_rtol: An eigenvalue is negative when below ``-negative_rtol * max|lambda|``.
        full_spectrum: The eigenvalues are the whole spectrum (exact count).
        converged: Whether the eigenvalues were converged (recorded, and noted if not).

    Returns:
        A :class:`CriticalCharacter` with kind ``"minimum"``, ``"saddle"``, ``"maximum"``
        or ``"not critical"``.
    """
    ev = np.asarray(eigenvalues, dtype=np.float64).ravel()
    if ev.size == 0:
        raise InputError("characterize needs at least one eigenvalue")
    for name, value in (("gradient_norm", gradient_norm), ("parameter_norm", parameter_norm)):
        if not np.isfinite(value) or value < 0:
            raise InputError(f"{name} must be a finite non-negative number, got {value}")
    if gradient_tol <= 0 or negative_rtol <= 0:
        raise InputError(f"tolerances must be positive, got gradient_tol={gradient_tol}, negative_rtol={negative_rtol}")
    lmax, lmin = float(ev.max()), float(ev.min())
    scale = max(abs(lmax), abs(lmin))
    gradient_threshold = gradient_tol * scale * float(parameter_norm)
    small = (f"gradient norm {gradient_norm:.3g} <= {gradient_threshold:.3g} "
             f"(= {gradient_tol:g} * max|lambda| {scale:.3g} * |theta| {parameter_norm:.3g})")
    threshold = -negative_rtol * scale
    num_neg = int(np.sum(ev < threshold))
    num_pos = int(np.sum(ev > -threshold))
    count = f"{num_neg} of the {ev.size} computed eigenvalues are below {threshold:.3g}"
    if gradient_norm > gradient_threshold:
        kind = "not critical"
        why = (f"gradient norm {gradient_norm:.3g} > {gradient_threshold:.3g} (= {gradient_tol:g} * max|lambda| "
               f"{scale:.3g} * |theta| {parameter_norm:.3g}): even the shortest Newton step, |g|/max|lambda| = "
               f"{gradient_norm / scale if scale > 0 else float('inf'):.3g}, is longer than {gradient_tol:g} |theta|")
    elif num_neg == 0:
        kind = "minimum"
        why = f"{small} and no eigenvalue below -{negative_rtol:g}*max|lambda| = {threshold:.3g}"
    elif num_pos == 0:
        kind = "maximum"
        why = f"{small} and all computed eigenvalues negative"
    else:
        kind = "saddle"
        why = f"{small}; {count}"
    if not full_spectrum:
        why += " (count among computed eigenvalues only: a lower bound)"
    if not converged:
        why += "; WARNING: some eigenvalues did not converge"
    return CriticalCharacter(
        gradient_norm=float(gradient_norm),
        parameter_norm=float(parameter_norm),
        lambda_max=lmax,
        lambda_min=lmin,
        num_negative=num_neg,
        num_computed=int(ev.size),
        full_spectrum=full_spectrum,
        kind=kind,
        gradient_tol=gradient_tol,
        gradient_threshold=gradient_threshold,
        negative_rtol=negative_rtol,
        negative_threshold=threshold,
        eigenvalues_converged=converged,
        explanation=why,
    )
