"""Activation functions with closed-form first and second derivatives.

The surrogate's exact derivative engine needs σ, σ′ and σ″ of each hidden
activation: σ′ for gradients and σ″ for Hessians and Laplacians. Keeping the three
together in one object means a new activation cannot be added without its
derivatives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from surrogates.errors import InputError

_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class Activation:
    """A scalar activation with its exact derivatives.

    Attributes:
        name: Config name (``model.activation=<name>``).
        forward: σ(z).
        first: σ′(z).
        second: σ″(z).
        smooth: False when σ″ is zero almost everywhere (piecewise-linear σ), so the
            network has no usable second derivatives.
    """

    name: str
    forward: Callable[[Tensor], Tensor]
    first: Callable[[Tensor], Tensor]
    second: Callable[[Tensor], Tensor]
    smooth: bool = True


def _tanh_first(z: Tensor) -> Tensor:
    t = torch.tanh(z)
    return 1.0 - t * t


def _tanh_second(z: Tensor) -> Tensor:
    t = torch.tanh(z)
    return -2.0 * t * (1.0 - t * t)


def _silu_first(z: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


def _silu_second(z: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s))


def _softplus_second(z: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 - s)


def _gelu_first(z: Tensor) -> Tensor:
    cdf = 0.5 * (1.0 + torch.erf(z / _SQRT_2))
    pdf = _INV_SQRT_2PI * torch.exp(-0.5 * z * z)
    return cdf + z * pdf


def _gelu_second(z: Tensor) -> Tensor:
    pdf = _INV_SQRT_2PI * torch.exp(-0.5 * z * z)
    return pdf * (2.0 - z * z)


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("tanh", torch.tanh, _tanh_first, _tanh_second),
        Activation("silu", torch.nn.functional.silu, _silu_first, _silu_second),
        Activation("softplus", torch.nn.functional.softplus, torch.sigmoid, _softplus_second),
        Activation("gelu", torch.nn.functional.gelu, _gelu_first, _gelu_second),
        Activation(
            "relu",
            torch.relu,
            lambda z: (z > 0).to(z.dtype),
            torch.zeros_like,
            smooth=False,
        ),
    )
}


def get_activation(name: str) -> Activation:
    """Look up an activation by name.

    Raises:
        InputError: ``name`` is not one of :data:`ACTIVATIONS`.
    """
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise InputError(
            f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}"
        ) from None
