"""A fitted surrogate: the network, what it was fitted to, and exact derivatives of it.

Saved as a single safetensors file: the weights (including the normalisation buffers) as
tensors and everything else as JSON in the header. Loading therefore never unpickles
anything — a checkpoint from an untrusted source cannot execute code.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from surrogates import calculus
from surrogates.io import atomic_write
from surrogates.model import MLP

FORMAT = "surrogates.mlp/1"


class CheckpointError(ValueError):
    """A surrogate file that is missing, unreadable or does not describe a surrogate."""


class ExtrapolationWarning(UserWarning):
    """Query points outside the box of the training inputs: the surrogate is extrapolating."""


class Surrogate:
    """A fitted MLP surrogate f̂: R^d → R^m with exact derivatives in the data's units.

    Every query method takes points as numpy or torch, (N, d) or a single point (d,), and
    returns the same kind: numpy in → numpy out, torch in → torch out, a single point →
    unbatched shapes. For a surrogate of scalar data (y given as (N,)) outputs drop the m axis.

    Args:
        model: The fitted network (maps data units to data units).
        input_names: d input names.
        output_names: m output names.
        scalar_output: Whether the training outputs were 1-D.
        lower: (d,) lower corner of the training inputs' box (the domain of trust).
        upper: (d,) upper corner.
        info: JSON-serialisable facts about the fit (data origin, metrics, config).
        chunk_size: Points per derivative chunk (bounds memory; results do not depend on it).
    """

    def __init__(
        self,
        model: MLP,
        input_names: list[str],
        output_names: list[str],
        scalar_output: bool,
        lower: np.ndarray,
        upper: np.ndarray,
        info: dict[str, Any] | None = None,
        chunk_size: int | None = None,
    ):
        if len(input_names) != model.in_dim or len(output_names) != model.out_dim:
            raise ValueError(
                f"{len(input_names)} input / {len(output_names)} output names for a model "
                f"with {model.in_dim} inputs and {model.out_dim} outputs"
            )
        if scalar_output and model.out_dim != 1:
            raise ValueError(f"scalar_output needs a model with one output, got {model.out_dim}")
        self.model = model.eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.input_names, self.output_names = list(input_names), list(output_names)
        self.scalar_output = bool(scalar_output)
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.info = dict(info or {})
        self.chunk_size = chunk_size

    @property
    def in_dim(self) -> int:
        return self.model.in_dim

    @property
    def out_dim(self) -> int:
        return self.model.out_dim

    def __repr__(self) -> str:
        m = self.model
        return (
            f"Surrogate({m.in_dim} → {'scalar' if self.scalar_output else m.out_dim}, "
            f"MLP {m.depth}×{m.width} {m.activation.name}, {str(m.dtype).replace('torch.', '')})"
        )

    # ------------------------------------------------------------------ points in and out

    def _points(self, X: Any) -> tuple[Tensor, Callable[[Tensor], Any]]:
        """Convert query points to a (N, d) tensor and return how to convert results back."""
        as_numpy = not isinstance(X, Tensor)
        if as_numpy:
            try:
                X = torch.as_tensor(np.asarray(X, dtype=np.float64))
            except (TypeError, ValueError) as err:
                raise ValueError(f"query points must be numeric arrays: {err}") from None
        if not torch.is_floating_point(X):
            X = X.to(torch.float64)
        single = X.ndim == 1
        batch = X[None] if single else X
        if batch.ndim != 2 or batch.shape[1] != self.in_dim:
            raise ValueError(
                f"query points must have shape (N, {self.in_dim}) or ({self.in_dim},) for this "
                f"surrogate of inputs {self.input_names}, got {tuple(X.shape)}"
            )
        out_dtype, device = X.dtype, X.device
        outside = int((~self._inside(batch)).sum())
        if outside:
            warnings.warn(
                f"{outside} of {batch.shape[0]} query points lie outside the training domain "
                "(the surrogate is extrapolating there); see Surrogate.in_domain",
                ExtrapolationWarning,
                stacklevel=3,
            )

        def restore(result: Tensor) -> Any:
            result = result.to(device=device, dtype=out_dtype)
            if single:
                result = result[0]
            return result.numpy() if as_numpy else result

        return batch.to(self.model.head.weight.device, self.model.dtype), restore

    def _inside(self, batch: Tensor) -> Tensor:
        lower = torch.as_tensor(self.lower, dtype=batch.dtype, device=batch.device)
        upper = torch.as_tensor(self.upper, dtype=batch.dtype, device=batch.device)
        return torch.all((batch >= lower) & (batch <= upper), dim=-1)

    def in_domain(self, X: Any) -> Any:
        """Boolean mask: which points lie inside the box of the training inputs."""
        as_numpy = not isinstance(X, Tensor)
        batch = torch.as_tensor(np.asarray(X, dtype=np.float64)) if as_numpy else X
        single = batch.ndim == 1
        batch = batch[None] if single else batch
        if batch.ndim != 2 or batch.shape[1] != self.in_dim:
            raise ValueError(f"points must have shape (N, {self.in_dim}) or ({self.in_dim},), got {tuple(batch.shape)}")
        mask = self._inside(batch)
        mask = mask[0] if single else mask
        return mask.numpy() if as_numpy else mask

    def _squeeze(self, result: Tensor, axis: int = 1) -> Tensor:
        return result.squeeze(axis) if self.scalar_output else result

    # ------------------------------------------------------------------ queries

    def predict(self, X: Any) -> Any:
        """Surrogate values: (N,) for scalar data, (N, m) otherwise."""
        batch, restore = self._points(X)
        return restore(self._squeeze(calculus.value(self.model, batch, chunk_size=self.chunk_size)))

    def gradient(self, X: Any) -> Any:
        """∇f̂, (N, d). Scalar surrogates only (use :meth:`jacobian` otherwise)."""
        if self.out_dim != 1:
            raise ValueError(f"gradient needs a scalar surrogate; this one has {self.out_dim} outputs: use jacobian")
        batch, restore = self._points(X)
        return restore(calculus.gradient(self.model, batch, chunk_size=self.chunk_size))

    def jacobian(self, X: Any) -> Any:
        """∂f̂_i/∂x_j, (N, m, d) (m = 1 for scalar surrogates)."""
        batch, restore = self._points(X)
        return restore(calculus.jacobian(self.model, batch, chunk_size=self.chunk_size))

    def hessian(self, X: Any) -> Any:
        """∂²f̂/∂x_j∂x_k with all mixed partials: (N, d, d) scalar, (N, m, d, d) otherwise."""
        batch, restore = self._points(X)
        return restore(self._squeeze(calculus.hessian(self.model, batch, chunk_size=self.chunk_size)))

    def laplacian(self, X: Any) -> Any:
        """Σ_j ∂²f̂/∂x_j²: (N,) scalar, (N, m) otherwise."""
        batch, restore = self._points(X)
        return restore(self._squeeze(calculus.laplacian(self.model, batch, chunk_size=self.chunk_size)))

    def directional_derivative(self, X: Any, v: Any) -> Any:
        """∇f̂ · v/‖v‖ for v (d,) or (N, d): (N,) scalar, (N, m) otherwise."""
        batch, restore = self._points(X)
        direction = torch.as_tensor(np.asarray(v) if not isinstance(v, Tensor) else v, dtype=batch.dtype)
        result = calculus.directional_derivative(self.model, batch, direction, chunk_size=self.chunk_size)
        return restore(self._squeeze(result))

    def hvp(self, X: Any, V: Any) -> Any:
        """Hessian-vector products H(x)·v for v (d,) or (N, d): (N, d) scalar, (N, m, d) otherwise."""
        batch, restore = self._points(X)
        vectors = torch.as_tensor(np.asarray(V) if not isinstance(V, Tensor) else V, dtype=batch.dtype)
        return restore(self._squeeze(calculus.hvp(self.model, batch, vectors, chunk_size=self.chunk_size)))

    def taylor(self, x0: Any) -> calculus.TaylorModel:
        """Second-order Taylor model of f̂ around the single point ``x0`` (d,)."""
        batch, _ = self._points(x0)
        if batch.shape[0] != 1:
            raise ValueError(f"taylor needs a single point of shape ({self.in_dim},), got {np.shape(x0)}")
        return calculus.taylor(self.model, batch[0])

    # ------------------------------------------------------------------ persistence

    def _metadata(self) -> dict[str, Any]:
        m = self.model
        return {
            "format": FORMAT,
            "model": {
                "in_dim": m.in_dim,
                "out_dim": m.out_dim,
                "width": m.width,
                "depth": m.depth,
                "activation": m.activation.name,
                "dtype": str(m.dtype).replace("torch.", ""),
            },
            "input_names": self.input_names,
            "output_names": self.output_names,
            "scalar_output": self.scalar_output,
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
            "info": self.info,
        }

    def save(self, path: str | Path) -> Path:
        """Write the surrogate to ``path`` (safetensors; atomic: a crash never leaves half a file)."""
        path = Path(path)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        with atomic_write(path) as tmp:
            save_file(tensors, str(tmp), metadata={"surrogates": json.dumps(self._metadata())})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Surrogate":
        """Read a surrogate written by :meth:`save`. Never unpickles: safe on untrusted files.

        Raises:
            CheckpointError: the file is missing, is not a surrogate file, or its weights do not
                match the architecture it declares.
        """
        path = Path(path).expanduser()
        if not path.is_file():
            raise CheckpointError(f"surrogate file {path} does not exist")
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                header = handle.metadata() or {}
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            hint = ""
            with open(path, "rb") as raw:
                if raw.read(2) == b"PK":
                    hint = (
                        " It looks like a torch/Lightning training checkpoint (used to resume training); "
                        "load the surrogate file written next to it (surrogate.safetensors) instead."
                    )
            raise CheckpointError(f"{path} is not a readable surrogate file: {err}.{hint}") from None
        if "surrogates" not in header:
            raise CheckpointError(f"{path} is a safetensors file but not a surrogate (no 'surrogates' header)")
        try:
            meta = json.loads(header["surrogates"])
            if meta.get("format") != FORMAT:
                raise CheckpointError(f"{path} has format {meta.get('format')!r}; this version reads {FORMAT!r}")
            model = MLP(**meta["model"])
            model.load_state_dict(tensors)
            return cls(
                model,
                input_names=meta["input_names"],
                output_names=meta["output_names"],
                scalar_output=meta["scalar_output"],
                lower=np.asarray(meta["lower"]),
                upper=np.asarray(meta["upper"]),
                info=meta.get("info"),
            )
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"{path} does not describe a valid surrogate: {err}") from None


def load(path: str | Path) -> Surrogate:
    """Load a surrogate saved with :meth:`Surrogate.save` (see :meth:`Surrogate.load`)."""
    return Surrogate.load(path)
