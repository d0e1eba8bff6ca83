"""Small helpers shared by the landscape modules: seeding, progress bars, mode restore."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
from torch import nn

from ..errors import InputError

T = TypeVar("T")


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` seeded with ``seed`` (0 when ``None``: every draw is reproducible)."""
    if seed is not None and not isinstance(seed, int):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    gen = torch.Generator(device=device)
    gen.manual_seed(0 if seed is None else int(seed))
    return gen


def with_progress(iterable: Iterable[T], *, enabled: bool | None, total: int | None = None, desc: str = "") -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar.

    Args:
        iterable: What to iterate over.
        enabled: ``True``/``False`` force the bar on/off; ``None`` shows it only when stderr is a TTY.
        total: Length hint for the bar.
        desc: Label shown before the bar.
    """
    show = sys.stderr.isatty() if enabled is None else bool(enabled)
    if not show:
        yield from iterable
        return
    from tqdm.auto import tqdm

    with tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True) as bar:
        yield from bar


@contextmanager
def module_mode(module: nn.Module, mode: str) -> Iterator[None]:
    """Temporarily put ``module`` in ``mode`` and restore every submodule's own flag afterwards.

    ``module.train(old)`` would not do: submodules may have been set individually (a frozen
    BatchNorm in eval inside a model in train mode), so each flag is recorded and restored.

    Args:
        module: The network.
        mode: ``"eval"``, ``"train"`` or ``"keep"`` (leave as is).
    """
    if mode not in ("eval", "train", "keep"):
        raise InputError(f"mode must be 'eval', 'train' or 'keep', got {mode!r}")
    if mode == "keep":
        yield
        return
    flags = [(m, m.training) for m in module.modules()]
    try:
        try:
            module.train(mode == "train")
        except NotImplementedError:
            pass  # torch.export modules refuse train()/eval(): their mode was fixed at export time
        yield
    finally:
        for m, flag in flags:
            m.training = flag
