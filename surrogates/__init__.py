"""surrogates: fit smooth MLP surrogates to sampled functions and differentiate them exactly.

    import surrogates
    s = surrogates.fit(X, y)          # Lightning fit, Hydra configs
    s.gradient(X); s.hessian(X)       # exact autograd derivatives, in the data's units
    s.critical_points()               # minima, maxima, saddles, classified by Hessian eigenvalues
    surrogates.fit_active(simulate, lower, upper)              # sample a black box where the Hessian is unsure
    surrogates.refine_critical_points(simulate, points, lower, upper)  # zoom in: local fits
    s.save("model.safetensors"); s = surrogates.load("model.safetensors")

Derivatives of any torch callable: :mod:`surrogates.calculus`. Loss landscapes of existing
networks: :mod:`surrogates.landscape`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from surrogates._lazy import lazy_exports

# Public name -> module that defines it. Resolved on first use (PEP 562), so that
# ``import surrogates`` or ``import surrogates.calculus`` does not pay for Lightning and Hydra
# (seconds) before a query or a loss-landscape call that needs neither.
_EXPORTS = {
    "fit": "surrogates.fitting.fit",
    "fit_active": "surrogates.fitting.active",
    "refine_critical_points": "surrogates.critical.refine",
    "load": "surrogates.surrogate",
    "Surrogate": "surrogates.surrogate",
    "SurrogatesError": "surrogates.errors",
    "InputError": "surrogates.errors",
    "DataError": "surrogates.errors",
    "CheckpointError": "surrogates.errors",
    "ExtrapolationError": "surrogates.errors",
    "OutputError": "surrogates.errors",
    "ExtrapolationWarning": "surrogates.errors",
    "CriticalPoint": "surrogates.critical.report",
    "CriticalPointReport": "surrogates.critical.report",
    "find_critical_points": "surrogates.critical.search",
}

if TYPE_CHECKING:
    from surrogates import calculus
    from surrogates.critical.refine import refine_critical_points
    from surrogates.critical.report import CriticalPoint, CriticalPointReport
    from surrogates.critical.search import find_critical_points
    from surrogates.errors import (
        CheckpointError,
        DataError,
        ExtrapolationError,
        ExtrapolationWarning,
        InputError,
        OutputError,
        SurrogatesError,
    )
    from surrogates.fitting.active import fit_active
    from surrogates.fitting.fit import fit
    from surrogates.surrogate import Surrogate, load


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "fit",
    "fit_active",
    "refine_critical_points",
    "load",
    "Surrogate",
    "CriticalPoint",
    "CriticalPointReport",
    "find_critical_points",
    "calculus",
    "SurrogatesError",
    "InputError",
    "DataError",
    "CheckpointError",
    "ExtrapolationError",
    "OutputError",
    "ExtrapolationWarning",
]
__version__ = "0.1.0"
