"""Is the trained weight vector a minimum, a saddle, or not a critical point at all?

At a critical point :math:`\\nabla L(\\theta^*) = 0`; the Hessian's signature decides its kind:
all eigenvalues :math:`\\ge 0` (minimum), both signs (saddle), all :math:`\\le 0` (maximum). In
floating point and with partial spectra, every word needs a tolerance:

* *critical* means :math:`\\lVert\\nabla L\\rVert \\le` ``gradient_atol`` (absolute);
* an eigenvalue *counts as negative* when :math:`\\lambda < -`\\ ``negative_rtol`` :math:`\\cdot\\max|\\lambda|`
  (relative to the spectral scale, because the loss's units are arbitrary);
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
    lambda_max: float
    lambda_min: float
    num_negative: int
    num_computed: int
    full_spectrum: bool
    kind: str
    gradient_atol: float
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
    gradient_atol: float = 1e-3,
    negative_rtol: float = 1e-3,
    full_spectrum: bool = False,
    converged: bool = True,
) -> CriticalCharacter:
    """Classify a weight vector from its gradient norm and (some of) its Hessian eigenvalues.

    Args:
        gradient_norm: :math:`\\lVert\\nabla L\\rVert_2` over the full data.
        eigenvalues: The Hessian eigenvalues computed (must include the extremes to be
            meaningful: run Lanczos with ``which="BE"``).
        gradient_atol: Absolute gradient-norm tolerance for "critical".
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
    if not np.isfinite(gradient_norm) or gradient_norm < 0:
        raise InputError(f"gradient_norm must be a finite non-negative number, got {gradient_norm}")
    if gradient_atol <= 0 or negative_rtol <= 0:
        raise InputError(f"tolerances must be positive, got gradient_atol={gradient_atol}, negative_rtol={negative_rtol}")
    lmax, lmin = float(ev.max()), float(ev.min())
    scale = max(abs(lmax), abs(lmin))
    threshold = -negative_rtol * scale
    num_neg = int(np.sum(ev < threshold))
    num_pos = int(np.sum(ev > -threshold))
    count = f"{num_neg} of the {ev.size} computed eigenvalues are below {threshold:.3g}"
    if gradient_norm > gradient_atol:
        kind = "not critical"
        why = f"gradient norm {gradient_norm:.3g} > gradient_atol {gradient_atol:.3g}"
    elif num_neg == 0:
        kind = "minimum"
        why = f"gradient norm {gradient_norm:.3g} <= {gradient_atol:.3g} and no eigenvalue below -{negative_rtol:g}*max|lambda| = {threshold:.3g}"
    elif num_pos == 0:
        kind = "maximum"
        why = f"gradient norm {gradient_norm:.3g} <= {gradient_atol:.3g} and all computed eigenvalues negative"
    else:
        kind = "saddle"
        why = f"gradient norm {gradient_norm:.3g} <= {gradient_atol:.3g}; {count}"
    if not full_spectrum:
        why += " (count among computed eigenvalues only: a lower bound)"
    if not converged:
        why += "; WARNING: some eigenvalues did not converge"
    return CriticalCharacter(
        gradient_norm=float(gradient_norm),
        lambda_max=lmax,
        lambda_min=lmin,
        num_negative=num_neg,
        num_computed=int(ev.size),
        full_spectrum=full_spectrum,
        kind=kind,
        gradient_atol=gradient_atol,
        negative_rtol=negative_rtol,
        negative_threshold=threshold,
        eigenvalues_converged=converged,
        explanation=why,
    )
