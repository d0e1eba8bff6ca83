"""Exact derivatives, vector calculus and integrals of any torch callable f: (N, d) → (N,) or (N, m) — torch only.

The derivatives door: :mod:`~surrogates.calculus.derivatives` holds the batched generic
autograd kernels (value, gradient, Jacobian, Hessian, Laplacian, directional derivative,
Hessian-vector product, Taylor models); :mod:`~surrogates.calculus.layerwise` the exact
layer-wise scheme the package's MLPs use for second derivatives;
:mod:`~surrogates.calculus.vector` determinants, divergence and curl of square maps;
:mod:`~surrogates.calculus.regions` the regions (Box, Ball, Simplex, Indicator, Mapped) and
:mod:`~surrogates.calculus.integrals` randomised quasi-Monte Carlo integrals over them, with
standard errors. Nothing here imports Lightning or Hydra.
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
from surrogates.calculus.integrals import SAMPLERS, IntegralResult, integrate
from surrogates.calculus.regions import Ball, Box, Indicator, Mapped, Region, Simplex
from surrogates.calculus.vector import (
    DIVERGENCE_METHODS,
    curl,
    divergence,
    jacobian_determinant,
    log_abs_det_jacobian,
)

__all__ = [
    "HESSIAN_METHODS",
    "DIVERGENCE_METHODS",
    "SAMPLERS",
    "TaylorModel",
    "IntegralResult",
    "value",
    "gradient",
    "jacobian",
    "hessian",
    "laplacian",
    "directional_derivative",
    "hvp",
    "taylor",
    "jacobian_determinant",
    "log_abs_det_jacobian",
    "divergence",
    "curl",
    "Region",
    "Box",
    "Ball",
    "Simplex",
    "Indicator",
    "Mapped",
    "integrate",
]
