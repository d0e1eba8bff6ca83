"""A fitted surrogate: the network, what it was fitted to, and exact derivatives of it.

Saved as a single safetensors file: the weights (including the normalisation buffers) as
tensors and everything else as JSON in the header. Loading therefore never unpickles
anything — a checkpoint from an untrusted source cannot execute code.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from surrogates import calculus
from surrogates.critical.report import CriticalPointReport
from surrogates.critical.search import find_critical_points
from surrogates.errors import CheckpointError, ExtrapolationError, ExtrapolationWarning, InputError
from surrogates.io import atomic_write
from surrogates.model import MLP

FORMAT = "surrogates.mlp/1"  # members.<k>.<MLP state key> tensors + JSON header


EXTRAPOLATION_MODES = ("warn", "error", "nan")

# Frames in these files are skipped when an ExtrapolationWarning names its line: the warning
# points at the user's call, however deep inside the package the domain check ran.
_INTERNAL_FILES = {__file__, str(Path(__file__).parent / "fitting" / "predict.py")}


def _user_stacklevel() -> int:
    """``stacklevel`` for a ``warnings.warn`` in the calling function that names the first
    frame outside :data:`_INTERNAL_FILES` (the user's line)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename in _INTERNAL_FILES:
        frame, level = frame.f_back, level + 1
    return level


def check_extrapolation_mode(extrapolation: str) -> str:
    if extrapolation not in EXTRAPOLATION_MODES:
        raise InputError(f"extrapolation must be one of {list(EXTRAPOLATION_MODES)}, got {extrapolation!r}")
    return extrapolation


class EnsembleMean(nn.Module):
    """The mean of several surrogate networks, x ↦ (1/K) Σ_k f̂_k(x): one torch callable for
    code that differentiates "the surrogate" (critical points, plots, landscapes)."""

    def __init__(self, members: Sequence[MLP]):
        super().__init__()
        self.members = nn.ModuleList(members)
        first = self.members[0]
        self.in_dim, self.out_dim, self.smooth = first.in_dim, first.out_dim, first.smooth

    @property
    def dtype(self) -> torch.dtype:
        return self.members[0].dtype

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([member(x) for member in self.members]).mean(dim=0)


class Surrogate:
    """A fitted MLP surrogate f̂: R^d → R^m — or an ensemble of K of them — with exact
    derivatives in the data's units.

    Every query method takes points as numpy or torch, (N, d) or a single point (d,), and
    returns the same kind: numpy in → numpy out, torch in → torch out, a single point →
    unbatched shapes. For a surrogate of scalar data (y given as (N,)) outputs drop the m axis.

    For an ensemble, every query returns the ensemble mean (derivatives are linear, so this is
    the derivative of the mean prediction); ``return_std=True`` returns ``(mean, std)``, the std
    over members (ddof=1), a measure of how far to trust each entry.

    Points outside the box of the training inputs (``lower``..``upper``) are extrapolation.
    Every query method takes ``extrapolation=``: ``"warn"`` (default; an
    :class:`ExtrapolationWarning` saying how many points and how many box widths out, at the
    caller's line), ``"error"`` (raise :class:`ExtrapolationError`, a ``ValueError``) or
    ``"nan"`` (NaN in every entry of those points' rows, the rest as usual).

    Args:
        members: The fitted network(s), each mapping data units to data units.
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
        members: MLP | Sequence[MLP],
        input_names: list[str],
        output_names: list[str],
        scalar_output: bool,
        lower: np.ndarray,
        upper: np.ndarray,
        info: dict[str, Any] | None = None,
        chunk_size: int | None = None,
    ):
        members = [members] if isinstance(members, MLP) else list(members)
        if not members:
            raise InputError("a surrogate needs at least one network")
        first = members[0]
        if any((m.in_dim, m.out_dim, m.dtype) != (first.in_dim, first.out_dim, first.dtype) for m in members):
            raise InputError("ensemble members must share input/output dimensions and dtype")
        if len(input_names) != first.in_dim or len(output_names) != first.out_dim:
            raise InputError(
                f"{len(input_names)} input / {len(output_names)} output names for a model "
                f"with {first.in_dim} inputs and {first.out_dim} outputs"
            )
        if scalar_output and first.out_dim != 1:
            raise InputError(f"scalar_output needs a model with one output, got {first.out_dim}")
        self.members = [m.eval().requires_grad_(False) for m in members]
        self.model: nn.Module = self.members[0] if len(self.members) == 1 else EnsembleMean(self.members)
        self.input_names, self.output_names = list(input_names), list(output_names)
        self.scalar_output = bool(scalar_output)
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.info = dict(info or {})
        self.chunk_size = chunk_size

    @property
    def in_dim(self) -> int:
        return self.members[0].in_dim

    @property
    def out_dim(self) -> int:
        return self.members[0].out_dim

    @property
    def ensemble_size(self) -> int:
        return len(self.members)

    def __repr__(self) -> str:
        m = self.members[0]
        ensemble = f", ensemble of {self.ensemble_size}" if self.ensemble_size > 1 else ""
        return (
            f"Surrogate({m.in_dim} → {'scalar' if self.scalar_output else m.out_dim}, "
            f"MLP {m.depth}×{m.width} {m.activation.name}, {str(m.dtype).replace('torch.', '')}{ensemble})"
        )

    # ------------------------------------------------------------------ points in and out

    def _points(self, X: Any, extrapolation: str = "warn") -> tuple[Tensor, Callable[[Tensor], Any], Tensor]:
        """Convert query points to a (N, d) tensor, check them against the training box
        (:meth:`check_domain`, before any cast to the model's dtype) and return how to convert
        results back and the (N,) inside mask."""
        as_numpy = not isinstance(X, Tensor)
        if as_numpy:
            try:
                X = torch.as_tensor(np.asarray(X, dtype=np.float64))
            except (TypeError, ValueError) as err:
                raise InputError(f"query points must be numeric arrays: {err}") from None
        if not torch.is_floating_point(X):
            X = X.to(torch.float64)
        single = X.ndim == 1
        batch = X[None] if single else X
        if batch.ndim != 2 or batch.shape[1] != self.in_dim:
            raise InputError(
                f"query points must have shape (N, {self.in_dim}) or ({self.in_dim},) for this "
                f"surrogate of inputs {self.input_names}, got {tuple(X.shape)}"
            )
        out_dtype, device = X.dtype, X.device
        inside = self.check_domain(batch, extrapolation)

        def restore(result: Tensor) -> Any:
            result = result.to(device=device, dtype=out_dtype)
            if single:
                result = result[0]
            return result.numpy() if as_numpy else result

        first = self.members[0]
        return batch.to(first.head.weight.device, first.dtype), restore, inside

    def extrapolation_message(self, X: Any) -> str | None:
        """How many of the points ``X`` (N, d) lie outside the training box and how far
        (in box widths, per input: distance beyond the nearer face / (upper − lower)); None if
        all lie inside."""
        inside = np.atleast_1d(np.asarray(self.in_domain(X.detach().cpu() if isinstance(X, Tensor) else X)))
        batch = np.atleast_2d(np.asarray(X.detach().cpu() if isinstance(X, Tensor) else X, dtype=np.float64))
        outside = int((~inside).sum())
        if not outside:
            return None
        width = self.upper - self.lower
        beyond = np.maximum(self.lower - batch, batch - self.upper).clip(min=0) / np.where(width > 0, width, 1.0)
        message = f"{outside} of {len(batch)} query points lie outside the training box"
        if np.isnan(batch[~inside]).any():
            message += " (some have NaN coordinates)"
        if np.nanmax(beyond[~inside], initial=-np.inf) > 0:
            row, column = np.unravel_index(np.nanargmax(np.where(np.isnan(beyond), -1.0, beyond)), beyond.shape)
            message += (
                f", up to {beyond[row, column]:.3g} box widths beyond it (input {self.input_names[column]!r} = "
                f"{batch[row, column]:.6g}, trained on {self.lower[column]:.6g}..{self.upper[column]:.6g})"
            )
        return message + "; the surrogate is extrapolating there, its values and derivatives are not fitted to data"

    def check_domain(self, X: Any, extrapolation: str = "warn") -> Any:
        """The :meth:`in_domain` mask of ``X``, after acting on points outside the training box
        as ``extrapolation`` says: ``"warn"`` (an :class:`ExtrapolationWarning` naming the
        caller's line), ``"error"`` (raise :class:`ExtrapolationError`) or ``"nan"`` (nothing
        here; the query methods return NaN rows for those points)."""
        check_extrapolation_mode(extrapolation)
        inside = self.in_domain(X)
        if extrapolation != "nan" and not bool(inside.all()):
            message = self.extrapolation_message(X)
            if extrapolation == "error":
                raise ExtrapolationError(
                    f"{message}; pass extrapolation='nan' for NaN there or 'warn' to evaluate anyway"
                )
            warnings.warn(f"{message}; see Surrogate.in_domain", ExtrapolationWarning, stacklevel=_user_stacklevel())
        return inside

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
            raise InputError(f"points must have shape (N, {self.in_dim}) or ({self.in_dim},), got {tuple(batch.shape)}")
        mask = self._inside(batch)
        mask = mask[0] if single else mask
        return mask.numpy() if as_numpy else mask

    def _squeeze(self, result: Tensor, axis: int = 1) -> Tensor:
        return result.squeeze(axis) if self.scalar_output else result

    # ------------------------------------------------------------------ queries

    def _query(
        self,
        X: Any,
        compute: Callable[[nn.Module, Tensor], Tensor],
        return_std: bool,
        extrapolation: str,
        squeeze: bool = True,
    ) -> Any:
        """Evaluate ``compute(member, points)`` for every member; mean (and std) over members.

        The one place every query method checks the training domain (``extrapolation``: see
        :meth:`check_domain`); with ``"nan"`` every entry of an outside point's rows is NaN.
        """
        if return_std and self.ensemble_size < 2:
            raise InputError("return_std needs an ensemble: train with ensemble.size=K (K ≥ 2)")
        batch, restore, inside = self._points(X, extrapolation)
        per_member = torch.stack([compute(member, batch) for member in self.members])
        if extrapolation == "nan" and not bool(inside.all()):
            keep = inside.to(per_member.device).view(1, -1, *[1] * (per_member.ndim - 2))
            per_member = torch.where(keep, per_member, torch.full_like(per_member, float("nan")))
        finish = (lambda r: restore(r.squeeze(1))) if squeeze and self.scalar_output else restore
        mean = finish(per_member.mean(dim=0))
        return (mean, finish(per_member.std(dim=0))) if return_std else mean

    def predict(self, X: Any, return_std: bool = False, extrapolation: str = "warn") -> Any:
        """Surrogate values: (N,) for scalar data, (N, m) otherwise."""
        return self._query(X, lambda f, P: calculus.value(f, P, chunk_size=self.chunk_size), return_std, extrapolation)

    def gradient(self, X: Any, return_std: bool = False, extrapolation: str = "warn") -> Any:
        """∇f̂, (N, d). Scalar surrogates only (use :meth:`jacobian` otherwise)."""
        if self.out_dim != 1:
            raise InputError(f"gradient needs a scalar surrogate; this one has {self.out_dim} outputs: use jacobian")
        compute = lambda f, P: calculus.gradient(f, P, chunk_size=self.chunk_size)  # noqa: E731
        return self._query(X, compute, return_std, extrapolation, squeeze=False)

    def jacobian(self, X: Any, return_std: bool = False, extrapolation: str = "warn") -> Any:
        """∂f̂_i/∂x_j, (N, m, d) (m = 1 for scalar surrogates)."""
        compute = lambda f, P: calculus.jacobian(f, P, chunk_size=self.chunk_size)  # noqa: E731
        return self._query(X, compute, return_std, extrapolation, squeeze=False)

    def hessian(self, X: Any, return_std: bool = False, extrapolation: str = "warn") -> Any:
        """∂²f̂/∂x_j∂x_k with all mixed partials: (N, d, d) scalar, (N, m, d, d) otherwise."""
        return self._query(X, lambda f, P: calculus.hessian(f, P, chunk_size=self.chunk_size), return_std, extrapolation)

    def laplacian(self, X: Any, return_std: bool = False, extrapolation: str = "warn") -> Any:
        """Σ_j ∂²f̂/∂x_j²: (N,) scalar, (N, m) otherwise."""
        return self._query(X, lambda f, P: calculus.laplacian(f, P, chunk_size=self.chunk_size), return_std, extrapolation)

    def directional_derivative(self, X: Any, v: Any, return_std: bool = False, extrapolation: str = "warn") -> Any:
        """∇f̂ · v/‖v‖ for v (d,) or (N, d): (N,) scalar, (N, m) otherwise."""
        direction = v if isinstance(v, Tensor) else torch.as_tensor(np.asarray(v, dtype=np.float64))

        def compute(f: nn.Module, P: Tensor) -> Tensor:
            return calculus.directional_derivative(f, P, direction.to(P), chunk_size=self.chunk_size)

        return self._query(X, compute, return_std, extrapolation)

    def hvp(self, X: Any, V: Any, return_std: bool = False, extrapolation: str = "warn") -> Any:
        """Hessian-vector products H(x)·v for v (d,) or (N, d): (N, d) scalar, (N, m, d) otherwise."""
        vectors = V if isinstance(V, Tensor) else torch.as_tensor(np.asarray(V, dtype=np.float64))

        def compute(f: nn.Module, P: Tensor) -> Tensor:
            return calculus.hvp(f, P, vectors.to(P), chunk_size=self.chunk_size)

        return self._query(X, compute, return_std, extrapolation)

    def taylor(self, x0: Any) -> calculus.TaylorModel:
        """Second-order Taylor model of f̂ (the ensemble mean) around the single point ``x0`` (d,).

        The model is a torch callable; for scalar surrogates its value is (), gradient (d,) and
        Hessian (d, d).
        """
        batch, _, _ = self._points(x0)
        if batch.shape[0] != 1:
            raise InputError(f"taylor needs a single point of shape ({self.in_dim},), got {np.shape(x0)}")
        model = calculus.taylor(self.model, batch[0])
        if self.scalar_output:
            model = calculus.TaylorModel(model.center, model.value[0], model.gradient[0], model.hessian[0])
        return model

    def critical_points(self, **options: Any) -> CriticalPointReport:
        """Critical points of f̂ (the ensemble mean) in the training domain, classified by
        Hessian eigenvalues. Scalar surrogates only.

        Args:
            **options: Search settings of :func:`surrogates.critical.find_critical_points`
                (``starts``, ``seed``, tolerances).

        Returns:
            The same :class:`~surrogates.critical.CriticalPointReport` as
            :func:`~surrogates.critical.find_critical_points` on ``self.model`` over the training
            box: it acts as the list of :class:`~surrogates.critical.CriticalPoint` records (x,
            value, gradient_norm, eigenvalues, kind, index, in_domain, …; minima first) and
            also holds the search's bookkeeping (dropped starts, tolerances) and the
            table/JSON/CSV exports.
        """
        if self.out_dim != 1:
            raise InputError(f"critical points need a scalar surrogate; this one has {self.out_dim} outputs")
        return find_critical_points(self.model, self.lower, self.upper, chunk_size=self.chunk_size, **options)

    # ------------------------------------------------------------------ persistence

    def _metadata(self) -> dict[str, Any]:
        m = self.members[0]
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
            "ensemble_size": self.ensemble_size,
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
        tensors = {
            f"members.{k}.{name}": tensor.detach().cpu().contiguous()
            for k, member in enumerate(self.members)
            for name, tensor in member.state_dict().items()
        }
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
            members = [MLP(**meta["model"]) for _ in range(int(meta["ensemble_size"]))]
            nn.ModuleList(members).load_state_dict(
                {name.removeprefix("members."): tensor for name, tensor in tensors.items()}
            )
            return cls(
                members,
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
