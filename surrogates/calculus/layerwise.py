"""Exact layer-wise derivatives of the package's own :class:`~surrogates.model.MLP`.

Generic autograd treats the network as a black box and pays for bookkeeping
(graphs, ``vmap`` batching rules, ``d`` reverse sweeps for a Hessian). For a plain
MLP the derivatives have a closed layer-by-layer structure that needs only a few
large matrix products. With

    a    = (x − s) ⊘ c                      (input normalisation, Jacobian D = diag(1/c))
    z_l  = W_l h_{l−1} + b_l,  h_0 = a,  h_l = σ(z_l)      l = 1 … L
    y    = t + r ⊙ (W_o h_L + b_o)          (output de-normalisation)

and J_l = ∂z_l/∂x (w × d, so J_1 = W_1 D is the same for every point), the three
ingredients are

* **forward Jacobians**: J_{l+1} = W_{l+1} diag(σ′(z_l)) J_l;
* **one backward sweep** per output k: δ_L = r_k W_o[k], and
  δ_{l−1} = W_lᵀ (σ′(z_l) ⊙ δ_l), where δ_l = ∂y_k/∂h_l (batched over all outputs);
* **the Hessian** of output k, exactly:

      ∇²y_k = Σ_l J_lᵀ · diag(δ_l ⊙ σ″(z_l)) · J_l ,

  (the biases and the affine maps have no curvature, so only the activations
  contribute), and the **Laplacian**, forward in one sweep without any Hessian:

      Δz_1 = 0,  Δh_l = σ′(z_l) ⊙ Δz_l + σ″(z_l) ⊙ ‖J_l‖²_rows,  Δz_{l+1} = W_{l+1} Δh_l,
      Δy   = r ⊙ W_o Δh_L .

Costs per point and hidden layer (width w): Jacobians d·w², Hessian assembly
m·d²·w, Laplacian only the Jacobians. Propagating full d×d Hessians per unit
(d²·w²) would be slower than autograd, which is why the Hessian is assembled from
first-order quantities instead.

All kernels work on one batch of points; :mod:`surrogates.calculus` splits large
batches into chunks (bounding memory), validates input and dispatches here when
:func:`supports_layerwise` is true. Jacobians are stored transposed, ``Jt`` of shape
(n, d, w), so that J_{l+1}ᵀ = (J_lᵀ ⊙ σ′(z_l)) W_{l+1}ᵀ is one large matrix product
with n·d rows instead of n small ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from surrogates.activations import Activation
from surrogates.errors import InputError
from surrogates.model import MLP

__all__ = [
    "LayerwiseMLP",
    "Workspace",
    "supports_layerwise",
    "check_second_derivatives",
    "layerwise_jacobian",
    "layerwise_hessian",
    "layerwise_laplacian",
]

#: Activation modules whose second derivative is zero almost everywhere.
_PIECEWISE_LINEAR_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.Hardtanh)


def supports_layerwise(f: object) -> bool:
    """Whether ``f`` computes exactly the package :class:`MLP`'s function.

    A subclass that overrides ``forward`` (or ``forward_normalised``) computes
    something else, which the layer-wise kernels would silently get wrong; it takes
    the generic autograd route instead.
    """
    cls = type(f)
    return (
        isinstance(f, MLP)
        and cls.forward is MLP.forward
        and cls.forward_normalised is MLP.forward_normalised
    )


def check_second_derivatives(f: object) -> None:
    """Refuse second derivatives of networks that have none worth computing.

    A piecewise-linear activation (ReLU and relatives) has σ″ = 0 almost
    everywhere, so every Hessian, Laplacian and Hessian-vector product of such a
    network is exactly zero away from a measure-zero set of kinks — a silent,
    misleading answer.

    Args:
        f: The callable about to be differentiated twice.

    Raises:
        InputError: ``f`` is (or contains) an MLP with a non-smooth activation, or a
            piecewise-linear activation module.
    """
    if not isinstance(f, nn.Module):
        return
    for module in f.modules():
        rough_mlp = isinstance(module, MLP) and not module.smooth
        if rough_mlp or isinstance(module, _PIECEWISE_LINEAR_MODULES):
            name = module.activation.name if rough_mlp else type(module).__name__
            raise InputError(
                f"second derivatives requested for a network with a piecewise-linear "
                f"activation ({name}): ReLU-type activations have zero second derivative "
                f"almost everywhere, so its Hessian and Laplacian are identically zero "
                f"between kinks. Fit the surrogate with a smooth activation "
                f"(tanh, silu, softplus or gelu)."
            )


class Workspace:
    """Scratch tensors reused from one chunk of points to the next.

    Fresh multi-megabyte temporaries are returned to the operating system when freed
    and page-faulted back in on the next chunk; on the development VM a page fault
    costs ~7 µs, which made up half of a d = 10 Hessian (15 000 faults per 4096
    points). Writing every large intermediate into the same buffers removes that cost.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """A tensor of ``shape`` (dtype/device of ``like``), reusing ``name``'s memory if large enough."""
        numel = 1
        for size in shape:
            numel *= size
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < numel or buffer.dtype != like.dtype:
            buffer = like.new_empty(numel)
            self._buffers[name] = buffer
        return buffer[:numel].view(shape)


@dataclass(frozen=True)
class LayerwiseMLP:
    """The weights of an :class:`MLP`, detached and cast to one dtype.

    Attributes:
        in_shift: Input shift s, (d,).
        in_inv_scale: 1/c, (d,).
        weights: Hidden-layer weights W_l, each (w_l, w_{l−1}).
        biases: Hidden-layer biases b_l, each (w_l,).
        head_weight: W_o, (m, w_L).
        head_bias: b_o, (m,).
        out_shift: t, (m,).
        out_scale: r, (m,).
        activation: σ with its closed-form σ′ and σ″.
    """

    in_shift: Tensor
    in_inv_scale: Tensor
    weights: tuple[Tensor, ...]
    biases: tuple[Tensor, ...]
    head_weight: Tensor
    head_bias: Tensor
    out_shift: Tensor
    out_scale: Tensor
    activation: Activation

    @classmethod
    def from_module(cls, model: MLP, dtype: torch.dtype) -> LayerwiseMLP:
        """Snapshot ``model``'s parameters in ``dtype`` (no copy when it already matches)."""

        def cast(t: Tensor) -> Tensor:
            return t.detach().to(dtype)

        return cls(
            in_shift=cast(model.input_scaling.shift),
            in_inv_scale=cast(model.input_scaling.scale).reciprocal(),
            weights=tuple(cast(layer.weight) for layer in model.hidden),
            biases=tuple(cast(layer.bias) for layer in model.hidden),
            head_weight=cast(model.head.weight),
            head_bias=cast(model.head.bias),
            out_shift=cast(model.output_scaling.shift),
            out_scale=cast(model.output_scaling.scale),
            activation=model.activation,
        )

    @property
    def in_dim(self) -> int:
        return self.in_shift.shape[0]

    @property
    def out_dim(self) -> int:
        return self.out_shift.shape[0]

    def first_jacobian_t(self) -> Tensor:
        """J_1ᵀ = (W_1 D)ᵀ, (d, w): identical for every point.

        Made contiguous: elementwise results inherit the memory layout of a transposed
        operand, and a transposed Jᵀ would turn every later product into a slow
        batched matmul against an expanded weight.
        """
        return (self.in_inv_scale[:, None] * self.weights[0].T).contiguous()

    def local_derivatives(self, X: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """σ′(z_l) and σ″(z_l) for l = 1 … L along one forward pass, each (n, w)."""
        h = (X - self.in_shift) * self.in_inv_scale
        slopes, curvatures = [], []
        for weight, bias in zip(self.weights, self.biases):
            h, slope, curvature = _activation_and_derivatives(self.activation, torch.addmm(bias, h, weight.T))
            slopes.append(slope)
            curvatures.append(curvature)
        return slopes, curvatures

    def output_signal(self, n: int) -> Tensor:
        """δ_L = ∂y/∂h_L for every output, (n, m, w), the same for every point."""
        signal = self.out_scale[:, None] * self.head_weight
        return signal.expand(n, *signal.shape)

    def backward_signals(self, slopes: list[Tensor]) -> list[Tensor]:
        """δ_l = ∂y/∂h_l for l = 1 … L, each (n, m, w), from one batched backward sweep."""
        signal = self.output_signal(slopes[0].shape[0])
        signals = [signal]
        for slope, weight in zip(reversed(slopes[1:]), reversed(self.weights[1:])):
            signal = (signal * slope[:, None, :]) @ weight
            signals.append(signal)
        return signals[::-1]

    @staticmethod
    def next_jacobian_t(
        jacobian_t: Tensor,
        slope: Tensor,
        weight: Tensor,
        scratch: Tensor | None = None,
        out: Tensor | None = None,
    ) -> Tensor:
        """J_{l+1}ᵀ = (J_lᵀ ⊙ σ′(z_l)) W_{l+1}ᵀ as one (n·d, w) × (w, w') product.

        ``scratch`` (n, d, w) and ``out`` (n, d, w'), when given, receive the scaled
        Jacobian and the result (see :class:`Workspace`).
        """
        scaled = torch.mul(jacobian_t, slope[:, None, :], out=scratch)
        return torch.matmul(scaled, weight.T, out=out)


def _activation_and_derivatives(activation: Activation, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """σ(z), σ′(z), σ″(z) together.

    tanh shares one transcendental evaluation: σ′ = 1 − t², σ″ = −2tσ′ with t = tanh z.
    (torch.tanh is the most expensive elementwise op in these kernels, ~3 ns per
    float32 value on the development machine; calling σ, σ′, σ″ separately evaluated
    it three times.)
    """
    if activation.name == "tanh":
        value = torch.tanh(z)
        slope = 1.0 - value * value
        return value, slope, -2.0 * value * slope
    return activation.forward(z), activation.first(z), activation.second(z)


def layerwise_jacobian(net: LayerwiseMLP, X: Tensor) -> Tensor:
    """Jacobian ∂y/∂x of every point, (n, m, d).

    Picks the cheaper exact mode: forward (propagate J_l, cost d·w² per layer) when
    d < m, otherwise one backward sweep batched over the m outputs (m·w² per layer).

    Args:
        net: The network's weights.
        X: Points, (n, d).
    """
    slopes, _ = net.local_derivatives(X)
    if X.shape[1] < net.out_dim:
        jacobian_t = net.first_jacobian_t()
        for slope, weight in zip(slopes[:-1], net.weights[1:]):
            jacobian_t = net.next_jacobian_t(jacobian_t, slope, weight)
        last = net.next_jacobian_t(jacobian_t, slopes[-1], net.head_weight)
        return (last * net.out_scale).transpose(1, 2)
    signal = net.output_signal(X.shape[0])
    for slope, weight in zip(reversed(slopes), reversed(net.weights)):
        signal = (signal * slope[:, None, :]) @ weight
    return signal * net.in_inv_scale


def layerwise_hessian(net: LayerwiseMLP, X: Tensor, workspace: Workspace | None = None) -> Tensor:
    """All second partials of every output at every point, (n, m, d, d).

    ∇²y_k = Σ_l J_lᵀ diag(δ_l,k ⊙ σ″(z_l)) J_l. The first layer's J_1 is shared by
    all points, so its term is one (n·m, w) × (w, d²) product; deeper terms are
    batched (n, m·d, w) × (n, w, d) products accumulated in place.

    Args:
        net: The network's weights.
        X: Points, (n, d).
        workspace: Buffers to reuse across calls; the result lives in it, so copy it
            out before the next call with the same workspace.
    """
    workspace = workspace or Workspace()
    n, d = X.shape
    m = net.out_dim
    slopes, second = net.local_derivatives(X)
    signals = net.backward_signals(slopes)
    weighted = [signal * curvature[:, None, :] for signal, curvature in zip(signals, second)]
    jacobian_t = net.first_jacobian_t()
    width = jacobian_t.shape[1]
    hessian = workspace.get("hessian", (n, m * d, d), X)
    if d <= width:
        # One (n·m, w) × (w, d²) product against the rows' outer products J_1[:, k] J_1[:, k]ᵀ,
        # which hold d²·w numbers — no more than one point's Jacobian work when d ≤ w.
        outer = (jacobian_t[:, None, :] * jacobian_t[None, :, :]).reshape(d * d, width)
        torch.matmul(weighted[0].reshape(n * m, width), outer.T, out=hessian.view(n * m, d * d))
    else:
        scaled = workspace.get("curvature-scaled", (n, m, d, width), X)
        torch.mul(weighted[0][:, :, None, :], jacobian_t, out=scaled)
        torch.matmul(scaled.view(n * m * d, width), jacobian_t.T, out=hessian.view(n * m * d, d))
    for index, (slope, weight) in enumerate(zip(slopes[:-1], net.weights[1:])):
        jacobian_t = net.next_jacobian_t(
            jacobian_t,
            slope,
            weight,
            scratch=workspace.get("scaled", (n, d, jacobian_t.shape[-1]), X),
            out=workspace.get(f"jacobian{index % 2}", (n, d, weight.shape[0]), X),
        )
        scaled = workspace.get("curvature-scaled", (n, m, d, weight.shape[0]), X)
        torch.mul(weighted[index + 1][:, :, None, :], jacobian_t[:, None, :, :], out=scaled)
        hessian.baddbmm_(scaled.view(n, m * d, -1), jacobian_t.transpose(1, 2))
    return hessian.view(n, m, d, d)


def layerwise_laplacian(net: LayerwiseMLP, X: Tensor, workspace: Workspace | None = None) -> Tensor:
    """Laplacian Σ_i ∂²y/∂x_i² of every output at every point, (n, m).

    Forward propagation of (J_l, Δz_l) next to the values: no backward sweep and no
    d×d matrix, so it costs about one forward Jacobian.

    Args:
        net: The network's weights.
        X: Points, (n, d).
        workspace: Buffers to reuse across calls.
    """
    workspace = workspace or Workspace()
    n, d = X.shape
    slopes, curvatures = net.local_derivatives(X)
    jacobian_t = net.first_jacobian_t()
    # Δz_1 = 0 because the first map is affine; J_1 is shared, so its row norms are too.
    laplacian_h = curvatures[0] * jacobian_t.square().sum(0)
    for index, weight in enumerate(net.weights[1:], start=1):
        scratch = workspace.get("scaled", (n, d, jacobian_t.shape[-1]), X)
        jacobian_t = net.next_jacobian_t(
            jacobian_t,
            slopes[index - 1],
            weight,
            scratch=scratch,
            out=workspace.get(f"jacobian{index % 2}", (n, d, weight.shape[0]), X),
        )
        squares = torch.mul(jacobian_t, jacobian_t, out=workspace.get("squares", jacobian_t.shape, X))
        laplacian_z = laplacian_h @ weight.T
        laplacian_h = slopes[index] * laplacian_z + curvatures[index] * squares.sum(1)
    return laplacian_h @ net.head_weight.T * net.out_scale
