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

from surrogates import calculus
from surrogates.active import fit_active, refine_critical_points
from surrogates.api import fit
from surrogates.critical import CriticalPoint, CriticalPointReport, find_critical_points
from surrogates.data import DataError
from surrogates.surrogate import CheckpointError, ExtrapolationWarning, Surrogate, load

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
    "CheckpointError",
    "DataError",
    "ExtrapolationWarning",
]
__version__ = "0.1.0"
