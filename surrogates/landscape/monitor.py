"""A Lightning callback that logs the loss Hessian's curvature while a model trains.

Every ``every_n_epochs`` epochs, at the end of the training epoch, :class:`CurvatureMonitor`
computes for the module's current weights, on a fixed evaluation subset,

* :math:`\\lambda_{\\max}` and :math:`\\lambda_{\\min}` of :math:`H = \\nabla^2_\\theta L` (one
  Lanczos run from both ends),
* :math:`\\operatorname{tr} H` with a standard error (the Lanczos Krylov basis is carried exactly,
  Rademacher probes in its complement; :func:`~surrogates.landscape.layers.layer_spectra` with one
  block),

at most ``max_products`` Hessian-vector products per call, and logs them through
``pl_module.log`` (so every attached logger, CSV or TensorBoard, receives them).

**The loss protocol.** A LightningModule computes its loss inside ``training_step``, which may
log, step optimisers (manual optimisation) or draw random numbers, so the monitor never calls
it. Instead it takes ``loss_fn(module, batch) -> scalar tensor``: the *mean* loss of one batch,
computed from ``module`` without side effects, e.g.
``lambda m, b: torch.nn.functional.cross_entropy(m(b[0]), b[1])``. The monitor evaluates it with
the parameters swapped for differentiable copies (:func:`torch.func.functional_call`), so it must
reach the parameters through the module (``m(x)``, ``m.net(x)``, ``m.some_loss(b)`` all do).
Batches are weighted by their size, the leading dimension of the first tensor in the batch,
so the monitored loss is the mean over the whole evaluation subset.

**Training is left bit-identical.** The monitor's random draws come from its own seeded
generator, and the global random states (torch, CUDA, numpy, ``random``) are saved and restored
around each call anyway (a loss in ``mode="train"`` draws dropout masks). Parameters,
``requires_grad``, ``.grad``, train/eval flags and optimiser state are untouched. With
``mode="train"`` BatchNorm layers would update their running statistics; the default
``mode="eval"`` does not.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader

from surrogates.errors import InputError

from .layers import layer_spectra

_METRICS = ("lambda_max", "lambda_min", "trace", "trace_stderr", "converged", "products")


class _BatchLoss(nn.Module):
    """``module`` seen as a network whose output is ``loss_fn(module, batch)``.

    :class:`~surrogates.landscape.operator.HessianOperator` differentiates ``loss(model(x))``;
    wrapping makes any batch loss that form. ``forward`` receives a size marker (an empty
    ``(n_b, 0)`` tensor, which tells the operator the batch size) and the batch itself.
    """

    def __init__(self, module: nn.Module, loss_fn: Callable[[nn.Module, Any], torch.Tensor]):
        super().__init__()
        self.module = module
        object.__setattr__(self, "loss_fn", loss_fn)  # not a submodule even if it is an nn.Module

    def forward(self, size: torch.Tensor, batch: Any) -> torch.Tensor:
        return self.loss_fn(self.module, batch)


def _first_tensor(batch: Any) -> torch.Tensor | None:
    if isinstance(batch, torch.Tensor):
        return batch
    items = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (tuple, list)) else ()
    for item in items:
        found = _first_tensor(item)
        if found is not None:
            return found
    return None


def _detached(batch: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.detach().clone()
    if isinstance(batch, dict):
        return {k: _detached(v) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_detached(v) for v in batch)
    return batch


def _identity(loss: torch.Tensor) -> torch.Tensor:
    return loss


@contextmanager
def preserved_random_state() -> Iterator[None]:
    """Save the global random states (torch CPU and initialised CUDA devices, numpy, ``random``) and restore them."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


class CurvatureMonitor(Callback):
    """Log :math:`\\lambda_{\\max}`, :math:`\\lambda_{\\min}` and :math:`\\operatorname{tr} H` of a module's loss every few epochs.

    Logged keys (``prefix`` + ): ``lambda_max``, ``lambda_min``, ``trace``, ``trace_stderr``,
    ``converged`` (1 when both Lanczos ends met their tolerance, else 0) and ``products``.

    Args:
        data: The fixed evaluation subset: a ``DataLoader`` (its first ``max_batches`` batches are
            drawn once, here, with the random state restored afterwards), a list of batches,
            or one batch (a tuple, dict or tensor).
        loss_fn: ``loss_fn(module, batch) -> scalar``, the batch's mean loss (see the module
            docstring for the protocol).
        every_n_epochs: Measure after epochs ``k, 2k, ...``.
        max_products: Hessian-vector products per call, at most: ``max_products - trace_probes``
            for Lanczos, ``trace_probes`` for the trace.
        trace_probes: Probes of the trace (at least 2).
        max_batches: Batches taken from a ``DataLoader`` (``None``: all of them).
        seed: Seed of the Lanczos start vector and the probes (the same every call, so changes
            between epochs are the weights', not the probes').
        mode: Module mode during the monitor's forward passes (``"eval"``: no dropout, BatchNorm
            running statistics; ``"train"``; ``"keep"``).
        dtype: Computation dtype (``None``: the module's; ``torch.float64`` works on a copy).
        prefix: Prefix of the logged names.

    Raises:
        InputError: Bad budgets, an empty subset, or a batch with no tensor.
    """

    def __init__(
        self,
        data: Any,
        loss_fn: Callable[[nn.Module, Any], torch.Tensor],
        *,
        every_n_epochs: int = 1,
        max_products: int = 60,
        trace_probes: int = 20,
        max_batches: int | None = None,
        seed: int = 0,
        mode: str = "eval",
        dtype: torch.dtype | None = None,
        prefix: str = "curvature/",
    ):
        if not callable(loss_fn):
            raise InputError(f"loss_fn must be callable as loss_fn(module, batch), got {type(loss_fn).__name__}")
        if not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise InputError(f"every_n_epochs must be a positive int, got {every_n_epochs!r}")
        if not isinstance(trace_probes, int) or trace_probes < 2:
            raise InputError(f"trace_probes must be an int >= 2, got {trace_probes!r}")
        if not isinstance(max_products, int) or max_products < trace_probes + 2:
            raise InputError(
                f"max_products must be an int >= trace_probes + 2 = {trace_probes + 2} (Lanczos needs 2), got {max_products!r}"
            )
        if mode not in ("eval", "train", "keep"):
            raise InputError(f"mode must be 'eval', 'train' or 'keep', got {mode!r}")
        self.loss_fn = loss_fn
        self.every_n_epochs = every_n_epochs
        self.max_products = max_products
        self.trace_probes = trace_probes
        self.seed = seed
        self.mode = mode
        self.dtype = dtype
        self.prefix = prefix
        self.batches = self._collect(data, max_batches)
        self.history: list[dict[str, float]] = []

    @staticmethod
    def _collect(data: Any, max_batches: int | None) -> list[Any]:
        if max_batches is not None and (not isinstance(max_batches, int) or max_batches < 1):
            raise InputError(f"max_batches must be a positive int or None, got {max_batches!r}")
        if isinstance(data, DataLoader):
            with preserved_random_state():  # a shuffling sampler draws from the global generator
                batches = []
                for batch in data:
                    batches.append(_detached(batch))
                    if max_batches is not None and len(batches) == max_batches:
                        break
        elif isinstance(data, list):
            batches = [_detached(b) for b in data[:max_batches]]
        else:
            batches = [_detached(data)]
        if not batches:
            raise InputError("the evaluation subset is empty (the data loader yielded no batches)")
        for i, batch in enumerate(batches):
            first = _first_tensor(batch)
            if first is None or first.ndim == 0:
                raise InputError(
                    f"evaluation batch {i} holds no tensor with a leading batch dimension (got {type(batch).__name__}); "
                    "the monitor weights batches by that dimension"
                )
        return batches

    def measure(self, module: nn.Module) -> dict[str, float]:
        """Curvature of ``loss_fn`` over the evaluation subset at ``module``'s current weights.

        Usable outside training too. Leaves the module and the global random states as found.

        Returns:
            ``{"lambda_max", "lambda_min", "trace", "trace_stderr", "converged", "products", "seconds"}``.
        """
        start = time.perf_counter()
        wrapped = _BatchLoss(module, self.loss_fn)
        names = [f"module.{n}" for n, p in module.named_parameters() if p.requires_grad]
        if not names:
            raise InputError("the module has no parameter with requires_grad=True to measure curvature for")
        data = [((torch.empty(_first_tensor(b).shape[0], 0), b), None) for b in self.batches]
        with preserved_random_state():
            res = layer_spectra(
                wrapped, _identity, data, blocks={"all": names}, max_iter=self.max_products - self.trace_probes,
                trace_probes=self.trace_probes, seed=self.seed, dtype=self.dtype, reduction="mean", mode=self.mode,
            )
        whole = res.layers[0]
        return {
            "lambda_max": whole.lambda_max,
            "lambda_min": whole.lambda_min,
            "trace": whole.trace,
            "trace_stderr": whole.trace_stderr,
            "converged": float(whole.converged),
            "products": float(res.num_products),
            "seconds": time.perf_counter() - start,
        }

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        if not trainer.is_global_zero:  # same weights and data on every process: measure once
            return
        values = self.measure(pl_module)
        self.history.append({"epoch": float(trainer.current_epoch), **values})
        for key in _METRICS:
            pl_module.log(self.prefix + key, values[key], on_step=False, on_epoch=True, rank_zero_only=True)
