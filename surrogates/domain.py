"""The one check of a box [lower, upper] ⊂ Rᵈ: :func:`check_box`."""

from __future__ import annotations

from typing import Any

import numpy as np

from surrogates.errors import InputError


def check_box(lower: Any, upper: Any, what: str = "box", error: type[Exception] = InputError) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 (d,) corners of a box with every upper bound above its lower bound.

    Args:
        lower: (d,) lower corner: a sequence, numpy array or tensor of numbers.
        upper: (d,) upper corner.
        what: How the message names the box ("box", "Box region", "grid", …).
        error: The error type raised (:class:`InputError`; sources raise ``DataError``).

    Returns:
        ``(lower, upper)`` as new float64 numpy arrays.

    Raises:
        InputError (or ``error``): Corners that are not numeric, not (d,) with d ≥ 1, of different
            lengths, not finite, or with some upper bound ≤ its lower bound (zero or negative width).
    """
    try:
        lo = np.array(lower.detach().cpu().numpy() if hasattr(lower, "detach") else lower, dtype=np.float64)
        hi = np.array(upper.detach().cpu().numpy() if hasattr(upper, "detach") else upper, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise error(f"{what}: lower and upper must be numeric (d,) vectors: {err}") from None
    if lo.ndim != 1 or lo.shape != hi.shape or lo.size == 0:
        raise error(f"{what}: lower and upper must be two (d,) vectors of one length d ≥ 1, got shapes {lo.shape} and {hi.shape}")
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise error(f"{what}: lower and upper must be finite, got lower={lo.tolist()} upper={hi.tolist()}")
    if not (hi > lo).all():
        axes = np.flatnonzero(~(hi > lo)).tolist()
        raise error(f"{what}: every upper bound must exceed its lower bound (zero or negative width on axes {axes}), "
                    f"got lower={lo.tolist()} upper={hi.tolist()}")
    return lo, hi
