"""The one guard against differentiating under ``torch.inference_mode``.

Inference mode does not merely switch gradients off: nothing is recorded, ``torch.func``
transforms then return zeros instead of raising, and tensors created inside it can never join
a graph. Lightning runs ``validate/test/predict`` under it by default. Every derivative the
package computes (the calculus door, the curvature operators) calls :func:`require_autograd`
first and refuses, rather than return numbers that look plausible.
"""

from __future__ import annotations

import torch

_HOW = (
    "autograd records nothing there and derivative transforms can silently return zeros. Call it "
    "outside inference mode (in Lightning: Trainer(inference_mode=False) and torch.enable_grad() in the hook)."
)


def require_autograd(what: str, *tensors: torch.Tensor) -> None:
    """Raise if autograd cannot give correct derivatives here.

    Args:
        what: The operation, named in the message (e.g. ``"surrogates.calculus.hessian"``).
        *tensors: Inputs that will be differentiated; none may be an inference tensor.

    Raises:
        RuntimeError: ``torch.is_inference_mode_enabled()``, or an input was created under
            ``torch.inference_mode()``.
    """
    if torch.is_inference_mode_enabled():
        raise RuntimeError(f"{what} cannot differentiate under torch.inference_mode(): {_HOW}")
    if any(t.is_inference() for t in tensors):
        raise RuntimeError(
            f"{what}: an input is an inference tensor (created under torch.inference_mode()); {_HOW} "
            "Pass a clone made outside inference mode (x.clone())."
        )
