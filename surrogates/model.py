"""The surrogate network: a smooth MLP whose normalisation is part of the model.

    f̂(x) = y_shift + y_scale ⊙ N((x − x_shift) ⊘ x_scale),

where N is a plain MLP ``Linear → σ → … → Linear``. Because the affine maps are
layers (buffers, saved with the weights), autograd through ``forward`` yields
derivatives in the units of the user's data; nothing is rescaled by hand.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from surrogates.activations import Activation, get_activation
from surrogates.errors import InputError

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_dtype(dtype: str | torch.dtype, name: str = "dtype") -> torch.dtype:
    """Map ``"float32"``/``"float64"`` (or a torch dtype) to a torch dtype.

    Args:
        dtype: The name or the torch dtype.
        name: The setting's name in the error message (e.g. ``"hessian.dtype"``).
    """
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise InputError(f"{name} must be float32 or float64, got {dtype}")
        return dtype
    try:
        return DTYPES[dtype]
    except (KeyError, TypeError):
        raise InputError(f"{name} must be one of {sorted(DTYPES)}, got {dtype!r}") from None


class Affine(nn.Module):
    """Elementwise ``x ↦ (x − shift) / scale`` (``inverse=False``) or ``x ↦ shift + scale·x``."""

    def __init__(self, size: int, inverse: bool, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.inverse = inverse
        self.register_buffer("shift", torch.zeros(size, dtype=dtype))
        self.register_buffer("scale", torch.ones(size, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        if self.inverse:
            return self.shift + self.scale * x
        return (x - self.shift) / self.scale


class MLP(nn.Module):
    """Fully connected network with smooth activations and built-in normalisation.

    Args:
        in_dim: Input dimension d.
        out_dim: Output dimension m (1 for a scalar function).
        width: Units per hidden layer.
        depth: Number of hidden layers.
        activation: Name of a hidden activation (see :mod:`surrogates.activations`).
        dtype: ``"float32"`` or ``"float64"``.

    The network maps (N, d) → (N, m) in data units. :meth:`set_normalisation` stores
    the data's per-feature location and spread; :meth:`forward_normalised` gives the
    raw network output on the standardised scale, on which the training loss is taken.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        width: int = 64,
        depth: int = 3,
        activation: str = "silu",
        dtype: str = "float64",
    ):
        super().__init__()
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("width", width), ("depth", depth)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"MLP {name} must be a positive integer, got {value!r}")
        torch_dtype = resolve_dtype(dtype)
        self.in_dim, self.out_dim, self.width, self.depth = in_dim, out_dim, width, depth
        self.activation: Activation = get_activation(activation)
        self.input_scaling = Affine(in_dim, inverse=False, dtype=torch_dtype)
        sizes = [in_dim] + [width] * depth
        self.hidden = nn.ModuleList(
            nn.Linear(a, b, dtype=torch_dtype) for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.head = nn.Linear(width, out_dim, dtype=torch_dtype)
        self.output_scaling = Affine(out_dim, inverse=True, dtype=torch_dtype)

    @property
    def dtype(self) -> torch.dtype:
        return self.head.weight.dtype

    @property
    def smooth(self) -> bool:
        """Whether second derivatives are meaningful (False for ReLU)."""
        return self.activation.smooth

    @torch.no_grad()
    def set_normalisation(
        self, x_shift: Tensor, x_scale: Tensor, y_shift: Tensor, y_scale: Tensor
    ) -> None:
        """Store the data's location/spread; scales must be positive and finite."""
        for name, scale in (("input", x_scale), ("output", y_scale)):
            scale = torch.as_tensor(scale)
            if not bool(torch.all(torch.isfinite(scale) & (scale > 0))):
                raise InputError(f"{name} scale must be positive and finite, got {scale.tolist()}")
        self.input_scaling.shift.copy_(torch.as_tensor(x_shift))
        self.input_scaling.scale.copy_(torch.as_tensor(x_scale))
        self.output_scaling.shift.copy_(torch.as_tensor(y_shift))
        self.output_scaling.scale.copy_(torch.as_tensor(y_scale))

    def features(self, x: Tensor) -> Tensor:
        """Last hidden layer's activations, (N, d) → (N, width): the output layer's inputs."""
        h = self.input_scaling(x)
        for layer in self.hidden:
            h = self.activation.forward(layer(h))
        return h

    def forward_normalised(self, x: Tensor) -> Tensor:
        """Network output on the standardised output scale, (N, d) → (N, m)."""
        return self.head(self.features(x))

    def forward(self, x: Tensor) -> Tensor:
        """Prediction in data units, (N, d) → (N, m)."""
        return self.output_scaling(self.forward_normalised(x))
