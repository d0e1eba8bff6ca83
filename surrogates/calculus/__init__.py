"""Exact derivatives of any torch callable f: (N, d) → (N,) or (N, m) — torch only.

The derivatives door: :mod:`~surrogates.calculus.derivatives` holds the batched generic
autograd kernels (value, gradient, Jacobian, Hessian, Laplacian, directional derivative,
Hessian-vector product, Taylor models); :mod:`~surrogates.calculus.layerwise` the exact
layer-wise scheme the package's MLPs use for second derivatives. Nothing here imports
Lightning or Hydra.
"""

from surrogates.calculus.derivatives import (
    HESSIAN_METHODS,
    TaylorModel,
    directional_derivative,
    gradient,
    hessian,
    hvp,
    jacobian,
    laplacian,
    taylor,
    value,
)

__all__ = [
    "HESSIAN_METHODS",
    "TaylorModel",
    "value",
    "gradient",
    "jacobian",
    "hessian",
    "laplacian",
    "directional_derivative",
    "hvp",
    "taylor",
]
