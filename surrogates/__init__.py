"""surrogates: fit smooth MLP surrogates to sampled functions and differentiate them exactly.

    import surrogates
    s = surrogates.fit(X, y)          # Lightning fit, Hydra configs
    s.gradient(X); s.hessian(X)       # exact autograd derivatives, in the data's units
    s.save("model.safetensors"); s = surrogates.load("model.safetensors")
"""

from surrogates.api import fit
from surrogates.surrogate import CheckpointError, ExtrapolationWarning, Surrogate, load

__all__ = ["fit", "load", "Surrogate", "CheckpointError", "ExtrapolationWarning"]
__version__ = "0.1.0"
