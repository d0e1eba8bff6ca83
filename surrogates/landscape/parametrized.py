"""A network seen as a function of a chosen subset of its parameters, without touching the network.

For an ordinary ``nn.Module`` the parameters we differentiate are fresh leaf tensors that *share
storage* with the module's own (``p.detach().requires_grad_()``): no copy, and the module's own
``requires_grad`` flags and ``.grad`` fields are never read or written. The forward pass goes
through :func:`torch.func.functional_call`, so values other than the stored weights (slices,
interpolation paths) never get written into the module either.

TorchScript modules do not support ``functional_call``; for them (and whenever a dtype change is
asked for) we work on a private deep copy, so the user's object is still never modified.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call

from ..errors import InputError


def select_parameters(model: nn.Module, patterns: str | Sequence[str] | None) -> list[str]:
    """Names of the parameters to study.

    Args:
        model: The network.
        patterns: ``None`` selects every parameter with ``requires_grad=True``; otherwise exact
            names or shell-style globs (``"layers.0.*"``, ``"*.weight"``) matched against
            ``model.named_parameters()``. A pattern selects parameters whatever their
            ``requires_grad`` flag.

    Returns:
        Selected names in the model's registration order.

    Raises:
        InputError: A pattern matches nothing (the message lists the available names), or
            nothing is selected.
    """
    named = list(model.named_parameters())
    names = [n for n, _ in named]
    if patterns is None:
        chosen = [n for n, p in named if p.requires_grad]
        if not chosen:
            raise InputError(
                "no parameter of the model has requires_grad=True; pass params=[...] names or patterns "
                f"to choose which to study (available: {_preview(names)})"
            )
        return chosen
    if isinstance(patterns, str):
        patterns = [patterns]
    chosen_set: set[str] = set()
    for pat in patterns:
        if not isinstance(pat, str):
            raise TypeError(f"parameter patterns must be strings, got {type(pat).__name__}")
        hits = [n for n in names if n == pat or fnmatch.fnmatchcase(n, pat)]
        if not hits:
            raise InputError(f"parameter pattern {pat!r} matches no parameter; available: {_preview(names)}")
        chosen_set.update(hits)
    return [n for n in names if n in chosen_set]


def _preview(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _is_script(model: nn.Module) -> bool:
    return isinstance(model, torch.jit.ScriptModule)


class ParametrizedModel:
    """``model`` as a function ``f(theta_S, inputs)`` of a selected parameter subset ``S``.

    Args:
        model: Any ``nn.Module``, an exported program's ``.module()`` or a TorchScript module.
        params: Names/glob patterns of the parameters to study (see :func:`select_parameters`).
        dtype: Floating dtype to compute in. If it differs from the model's, a converted *copy*
            is used; the user's model keeps its dtype.

    Attributes:
        module: The module actually called (the user's, or a private copy).
        names: Selected parameter names.
        shapes: Their shapes.
        numel: Total number of selected scalars, ``n``.
        dtype: Computation dtype.
    """

    def __init__(self, model: nn.Module, params: str | Sequence[str] | None = None, dtype: torch.dtype | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.names = select_parameters(model, params)
        first = dict(model.named_parameters())[self.names[0]]
        current = first.dtype
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        self.dtype = dtype or current
        self.is_script = _is_script(model)
        self.owned = self.is_script or self.dtype != current
        self.module = copy.deepcopy(model) if self.owned else model
        if self.owned and self.dtype != current:
            self.module = self.module.to(self.dtype)
        named = dict(self.module.named_parameters())
        self.device = named[self.names[0]].device
        self.shapes = [tuple(named[n].shape) for n in self.names]
        self.sizes = [named[n].numel() for n in self.names]
        self.numel = int(sum(self.sizes))
        selected = set(self.names)
        if self.is_script:
            # Private copy: its own parameters are the leaves; the rest are frozen.
            for n, p in named.items():
                p.requires_grad_(n in selected)
            self._base = [named[n].detach().clone() for n in self.names]
        self._fixed = {n: p.detach() for n, p in named.items() if n not in selected}

    # ------------------------------------------------------------------ vectors
    def base_values(self) -> list[torch.Tensor]:
        """Detached views of the selected parameters' current values (no copy for plain modules)."""
        if self.is_script:
            return list(self._base)
        named = dict(self.module.named_parameters())
        return [named[n].detach() for n in self.names]

    def base_vector(self) -> torch.Tensor:
        """The selected parameters flattened into one vector (a copy)."""
        return torch.cat([v.reshape(-1) for v in self.base_values()])

    def unflatten(self, vec: torch.Tensor) -> list[torch.Tensor]:
        """Split a flat vector of length ``numel`` into tensors shaped like the selected parameters."""
        if vec.ndim != 1 or vec.shape[0] != self.numel:
            raise InputError(f"expected a vector of shape ({self.numel},), got {tuple(vec.shape)}")
        return [c.view(s) for c, s in zip(torch.split(vec, self.sizes), self.shapes)]

    @staticmethod
    def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """Concatenate tensors into one flat vector."""
        return torch.cat([t.reshape(-1) for t in tensors])

    def leaves(self) -> list[torch.Tensor]:
        """Leaf tensors to differentiate with respect to (storage shared with the module, no copy)."""
        if self.is_script:
            named = dict(self.module.named_parameters())
            return [named[n] for n in self.names]
        return [v.detach().requires_grad_(True) for v in self.base_values()]

    # ------------------------------------------------------------------ calls
    def __call__(self, values: Sequence[torch.Tensor], inputs) -> torch.Tensor:
        """Evaluate the network with the selected parameters set to ``values``.

        Args:
            values: One tensor per selected parameter (e.g. from :meth:`leaves` or :meth:`unflatten`).
            inputs: A tensor, or a tuple/list of tensors passed as positional arguments.
        """
        args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
        if self.is_script:
            named = dict(self.module.named_parameters())
            own = [named[n] for n in self.names]
            if all(v is o for v, o in zip(values, own)):
                return self.module(*args)
            with torch.no_grad():
                for o, v in zip(own, values):
                    o.copy_(v)
            try:
                with torch.no_grad():
                    return self.module(*args)
            finally:
                with torch.no_grad():
                    for o, b in zip(own, self._base):
                        o.copy_(b)
        mapping = dict(self._fixed)
        mapping.update(zip(self.names, values))
        return functional_call(self.module, mapping, args, strict=False)
