"""Symmetric linear operators, and the parameter-space Hessian of a loss as one.

:class:`LossCurvatureOperator` holds what every curvature of a loss over a data set shares (data,
parameter subset, dtype, modes, loss and gradient); the Hessian is one such curvature, the GGN,
Fisher and KFAC (:mod:`.ggn`, :mod:`.fisher`, :mod:`.kfac`) are the others.

Everything downstream (Lanczos, Hutchinson, Hutch++, stochastic Lanczos quadrature, dense
references) takes a :class:`SymmetricOperator`: anything with a shape ``(n, n)``, a dtype and a
matrix-vector product. The Hessian operator implements

.. math:: v \\mapsto H v = \\nabla_\\theta\\big(\\nabla_\\theta L(\\theta)^\\top v\\big),
          \\qquad L(\\theta) = \\frac{1}{N}\\sum_i \\ell(f_\\theta(x_i), y_i),

by double backward through the gradient graph. The gradient graph
:math:`g(\\theta) = \\nabla L` (built with ``create_graph=True``) does not depend on :math:`v`, so
it is built once and reused by every product when it fits in memory (``cache_graphs``); each
product is then exactly one backward sweep through that graph.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..inference_mode import require_autograd
from ._util import module_mode, with_progress
from .data import BatchSource, batch_size_of
from .parametrized import ParametrizedModel

ArrayLike = Any


class SymmetricOperator:
    """Base class of symmetric ``n x n`` operators acting on torch vectors.

    Subclasses implement :meth:`_matvec` for a 1-D tensor of dtype :attr:`dtype` on
    :attr:`device`. This class supplies ``op @ v`` / ``op @ V`` for torch tensors and numpy
    arrays (same kind and dtype out as in), ``op.T`` (itself), :meth:`to_scipy` and a counter of
    products (:attr:`num_products`, one per vector).
    """

    #: operator size
    n: int
    dtype: torch.dtype = torch.float64
    device: torch.device = torch.device("cpu")

    def __init__(self) -> None:
        self.num_products = 0

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    @property
    def T(self) -> "SymmetricOperator":  # noqa: N802 - mirrors numpy/scipy
        """The transpose, which for a symmetric operator is the operator itself."""
        return self

    def reset_counter(self) -> None:
        """Set :attr:`num_products` back to zero."""
        self.num_products = 0

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return torch.stack([self._matvec(V[:, j]) for j in range(V.shape[1])], dim=1)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """Product with one torch vector; the result has ``v``'s dtype and device."""
        return self @ v

    def __matmul__(self, x: ArrayLike):
        is_numpy = not isinstance(x, torch.Tensor)
        t = torch.as_tensor(np.asarray(x)) if is_numpy else x
        if t.ndim not in (1, 2) or t.shape[0] != self.n:
            raise InputError(f"operator of shape {self.shape} cannot multiply an array of shape {tuple(t.shape)}")
        out_dtype, out_device = t.dtype if t.is_floating_point() else torch.float64, t.device
        work = t.detach().to(self.device, self.dtype)
        if t.ndim == 1:
            y = self._matvec(work)
            self.num_products += 1
        else:
            y = self._matmat(work)
            self.num_products += t.shape[1]
        y = y.detach().to(out_device, out_dtype)
        return y.numpy() if is_numpy else y

    def to_scipy(self):
        """This operator as a ``scipy.sparse.linalg.LinearOperator`` of float64."""
        from scipy.sparse.linalg import LinearOperator

        def mv(x):
            return self @ np.asarray(x, dtype=np.float64).reshape(-1)

        def mm(X):
            return self @ np.asarray(X, dtype=np.float64)

        return LinearOperator(self.shape, matvec=mv, rmatvec=mv, matmat=mm, rmatmat=mm, dtype=np.float64)


class DenseSymmetricOperator(SymmetricOperator):
    """A dense symmetric matrix as an operator (for tests and small problems).

    Args:
        matrix: Square symmetric ``(n, n)`` tensor or array.
        atol: Largest allowed ``|A - A^T|`` entry.
    """

    def __init__(self, matrix: ArrayLike, atol: float = 1e-8):
        super().__init__()
        A = torch.as_tensor(np.asarray(matrix)) if not isinstance(matrix, torch.Tensor) else matrix
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise InputError(f"matrix must be square, got shape {tuple(A.shape)}")
        scale = float(A.abs().max()) if A.numel() else 0.0
        if A.numel() and float((A - A.T).abs().max()) > atol * max(1.0, scale):
            raise InputError("matrix is not symmetric")
        self.matrix = A.detach()
        self.n = A.shape[0]
        self.dtype = A.dtype if A.is_floating_point() else torch.float64
        self.device = A.device

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.matrix.to(self.dtype) @ v

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.matrix.to(self.dtype) @ V


def _move(x: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Move a batch to ``device``; floating tensors take the computation dtype."""
    if x is None:
        return None
    if isinstance(x, (tuple, list)):
        return type(x)(_move(t, device, dtype) for t in x)
    if not isinstance(x, torch.Tensor):
        return x
    if x.is_inference():
        x = x.clone()  # inference tensors cannot be recorded by autograd
    if x.is_floating_point():
        return x.to(device=device, dtype=dtype)
    return x.to(device=device)


class LossCurvatureOperator(SymmetricOperator):
    """Base of the curvature operators of a mean loss over a data set w.r.t. (a subset of) a network's parameters.

    .. math:: L(\\theta) = \\sum_b \\frac{n_b}{N}\\,\\bar\\ell_b(\\theta)

    with :math:`\\bar\\ell_b` the *mean* loss of batch :math:`b` (``reduction="mean"``) or
    :math:`L = \\frac1N\\sum_b \\ell_b` for a summed loss (``reduction="sum"``). Uneven batches are
    therefore exact: every curvature equals the full-batch one however the data are cut.

    This class holds what every curvature shares (data, parameter subset, dtype, train/eval mode,
    the loss and its gradient, evaluation at other weights); subclasses implement the product
    :meth:`_matvec` and, when they keep graphs between products, :meth:`_build_cache` (a dict with
    at least ``"loss"`` and ``"grads"``, the full-data loss and gradient).

    The user's model is never changed: parameters are differentiated through storage-sharing
    leaf tensors and :func:`torch.func.functional_call`, so the model's parameters,
    ``requires_grad`` flags and ``.grad`` fields are untouched; train/eval flags are set only
    during forward passes and restored module by module afterwards.

    Args:
        model: The network (``nn.Module``, ``torch.export`` module or TorchScript module).
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` (``loss_fn(outputs)`` when batches have
            no targets), e.g. ``nn.CrossEntropyLoss()``. It must reduce to a scalar.
        data: See :class:`~surrogates.landscape.data.BatchSource` (DataLoader, Dataset,
            ``(X, Y)`` arrays, or a list of batches).
        params: Parameter names or glob patterns to restrict to (per layer/block curvature);
            ``None`` = every parameter with ``requires_grad``.
        dtype: Computation dtype, e.g. ``torch.float64``; a converted copy of the model is used.
        batch_size: Chunk size for array data / datasets (``None``: one full batch).
        reduction: ``"mean"`` or ``"sum"``; ``None`` reads ``loss_fn.reduction`` when present and
            otherwise assumes ``"mean"``.
        cache_graphs: Keep the autograd graphs between products (fast; memory of about three
            forward passes over all data). ``"auto"`` caches when the data set has at most
            ``cache_limit`` samples.
        cache_limit: Threshold for ``"auto"``.
        mode: ``"eval"`` (default: dropout off, BatchNorm uses running statistics, so the loss
            is a deterministic function of the weights), ``"train"`` or ``"keep"``.
        progress: Show a bar over batches (``None``: only on a TTY).

    Attributes:
        num_products: Curvature-vector products done (one per vector).
        num_gradients: Full-data gradient evaluations done.
        num_samples: ``N``, known after the first pass.
    """

    #: the product is a mean over the data's rows, so shards combine by their row counts
    #: (:class:`~surrogates.landscape.distributed.DistributedOperator`)
    sample_mean = True

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[..., torch.Tensor],
        data: Any,
        *,
        params: str | Sequence[str] | None = None,
        dtype: torch.dtype | None = None,
        batch_size: int | None = None,
        reduction: str | None = None,
        cache_graphs: bool | str = "auto",
        cache_limit: int = 10_000,
        mode: str = "eval",
        progress: bool | None = False,
    ):
        super().__init__()
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        if mode not in ("eval", "train", "keep"):
            raise InputError(f"mode must be 'eval', 'train' or 'keep', got {mode!r}")
        if cache_graphs not in (True, False, "auto"):
            raise InputError(f"cache_graphs must be True, False or 'auto', got {cache_graphs!r}")
        if reduction is None:
            reduction = getattr(loss_fn, "reduction", "mean")
        if reduction not in ("mean", "sum"):
            raise InputError(
                f"the loss must reduce to a scalar by 'mean' or 'sum', got reduction={reduction!r}; "
                "a per-sample loss (reduction='none') is not a scalar loss"
            )
        self.model = model
        self.fmodel = ParametrizedModel(model, params=params, dtype=dtype)
        self.loss_fn = loss_fn
        self.source = BatchSource(data, batch_size)
        self.reduction = reduction
        self.mode = mode
        self.progress = progress
        self.n = self.fmodel.numel
        self.dtype = self.fmodel.dtype
        self.device = self.fmodel.device
        self.param_names = list(self.fmodel.names)
        self.num_gradients = 0
        self.num_samples: int | None = None
        self._cache_setting = cache_graphs
        self._cache_limit = cache_limit
        self._cache: dict[str, Any] | None = None
        self.timings: dict[str, float] = {"graph_build_s": 0.0}

    # ------------------------------------------------------------------ batches
    def _batches(self, desc: str):
        for x, y in with_progress(self.source, enabled=self.progress, desc=desc):
            yield _move(x, self.device, self.dtype), _move(y, self.device, self.dtype)

    def _batch_loss(self, values: Sequence[torch.Tensor], x: Any, y: Any, index: int) -> torch.Tensor:
        return self._loss_of(self._forward(values, x, index), y, index)

    def _forward(self, values: Sequence[torch.Tensor], x: Any, index: int) -> Any:
        try:
            return self.fmodel(values, x)
        except (RuntimeError, ValueError, TypeError, IndexError) as err:
            first = x[0] if isinstance(x, (tuple, list)) else x
            raise InputError(
                f"the model failed on batch {index} with inputs of shape {tuple(first.shape)} and dtype "
                f"{first.dtype}: {err}"
            ) from err

    def _loss_of(self, out: Any, y: Any, index: int) -> torch.Tensor:
        try:
            loss = self.loss_fn(out, y) if y is not None else self.loss_fn(out)
        except (RuntimeError, ValueError, TypeError, IndexError) as err:
            raise InputError(
                f"loss_fn failed on batch {index} (outputs of shape {tuple(getattr(out, 'shape', ()))}, targets "
                f"of shape {tuple(getattr(y, 'shape', ()))}): {err}"
            ) from err
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise InputError(
                f"loss_fn must return a scalar tensor (a mean- or sum-reduced loss), got {shape}; "
                "use e.g. reduction='mean'"
            )
        if not loss.requires_grad:
            raise InputError("the loss does not depend on the selected parameters (it does not require grad)")
        return loss.reshape(())

    def _weight(self, n_b: int) -> float:
        return float(n_b) if self.reduction == "mean" else 1.0

    def _use_cache(self) -> bool:
        if self._cache_setting == "auto":
            if not self.source.is_in_memory:
                return False
            total = sum(batch_size_of(x) for x, _ in self.source)
            return total <= self._cache_limit
        return bool(self._cache_setting)

    def _grad_outputs(self, grads: Sequence[torch.Tensor | None], leaves: Sequence[torch.Tensor]):
        return [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, leaves)]

    # ------------------------------------------------------------------ graph cache
    def _build_cache(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def clear_cache(self) -> None:
        """Drop the cached gradient graphs (frees their memory)."""
        self._cache = None

    def _cached(self) -> dict[str, Any] | None:
        if self._cache is None and self._use_cache():
            self._cache = self._build_cache()
        return self._cache

    # ------------------------------------------------------------------ loss and gradient
    def loss_and_gradient(self) -> tuple[float, torch.Tensor]:
        """Full-data loss :math:`L(\\theta)` and gradient :math:`\\nabla L` (flat, detached).

        Returns:
            ``(loss, gradient)`` with the gradient in the operator's dtype.
        """
        require_autograd(f"{type(self).__name__}.loss_and_gradient")
        with torch.enable_grad():
            cache = self._cached()
            if cache is not None:
                return cache["loss"], self.fmodel.flatten([g.detach() for g in cache["grads"]])
            acc = torch.zeros(self.n, dtype=self.dtype, device=self.device)
            loss_sum, N = 0.0, 0
            with module_mode(self.fmodel.module, self.mode):
                for i, (x, y) in enumerate(self._batches("gradient")):
                    leaves = self.fmodel.leaves()
                    n_b = batch_size_of(x)
                    loss = self._batch_loss(leaves, x, y, i) * self._weight(n_b)
                    g = self._grad_outputs(torch.autograd.grad(loss, leaves, allow_unused=True), leaves)
                    acc += self.fmodel.flatten(g)
                    loss_sum += float(loss.detach())
                    N += n_b
            self.num_samples = N
            self.num_gradients += 1
            return loss_sum / N, acc / N

    def evaluate(
        self, theta: torch.Tensor | None = None, metrics: dict[str, Callable[..., Any]] | None = None
    ) -> dict[str, float]:
        """Full-data loss (and metrics) with the selected parameters set to ``theta``.

        Nothing is written into the model (the values go through ``functional_call``).

        Args:
            theta: Flat parameter vector (length ``n``); ``None`` = the model's own values.
            metrics: ``{name: fn(outputs, targets) -> scalar batch mean}``, averaged over the
                data with the same ``n_b/N`` weights as the loss.

        Returns:
            ``{"loss": L, name: metric, ...}``.
        """
        values = self.fmodel.base_values() if theta is None else self.fmodel.unflatten(theta.to(self.device, self.dtype))
        sums = {"loss": 0.0, **{k: 0.0 for k in (metrics or {})}}
        N = 0
        with torch.no_grad(), module_mode(self.fmodel.module, self.mode):
            for i, (x, y) in enumerate(self._batches("evaluate")):
                n_b = batch_size_of(x)
                out = self.fmodel(values, x)
                loss = self.loss_fn(out, y) if y is not None else self.loss_fn(out)
                if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                    raise InputError("loss_fn must return a scalar tensor (a mean- or sum-reduced loss)")
                sums["loss"] += float(loss) * self._weight(n_b)
                for k, fn in (metrics or {}).items():
                    sums[k] += float(fn(out, y)) * n_b
                N += n_b
        self.num_samples = N
        return {k: v / N for k, v in sums.items()}

    def parameters_vector(self) -> torch.Tensor:
        """The selected parameters, flattened (a copy), in the operator's dtype."""
        return self.fmodel.base_vector().to(self.dtype)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={self.n}, dtype={self.dtype}, params={len(self.param_names)} tensors, "
            f"reduction={self.reduction!r}, mode={self.mode!r}, products={self.num_products})"
        )


class HessianOperator(LossCurvatureOperator):
    """The Hessian of a mean loss over a data set w.r.t. (a subset of) a network's parameters.

    .. math:: H = \\nabla^2_\\theta L, \\quad
              L(\\theta) = \\sum_b \\frac{n_b}{N}\\,\\bar\\ell_b(\\theta)

    with :math:`\\bar\\ell_b` the *mean* loss of batch :math:`b` (``reduction="mean"``) or
    :math:`L = \\frac1N\\sum_b \\ell_b` for a summed loss (``reduction="sum"``). Uneven batches are
    therefore exact: the result equals the full-batch Hessian however the data are cut.

    The gradient graphs (``create_graph=True``) do not depend on the vector, so with
    ``cache_graphs`` they are built once and every product is one backward sweep through them.

    Args:
        model, loss_fn, data, params, dtype, batch_size, reduction, cache_graphs, cache_limit,
        mode, progress: As for :class:`LossCurvatureOperator`.

    Attributes:
        num_products: Hessian-vector products done (one per vector).
        num_gradients: Full-data gradient evaluations done.
        num_samples: ``N``, known after the first pass.
    """

    def _build_cache(self) -> dict[str, Any]:
        """Build the summed gradient graph sum_b w_b grad(loss_b) / N once (create_graph=True)."""
        start = time.perf_counter()
        leaves = self.fmodel.leaves()
        total: list[torch.Tensor] | None = None
        loss_sum = 0.0
        N = 0
        with module_mode(self.fmodel.module, self.mode):
            parts = []
            for i, (x, y) in enumerate(self._batches("gradient graphs")):
                n_b = batch_size_of(x)
                loss = self._batch_loss(leaves, x, y, i)
                g = torch.autograd.grad(loss * self._weight(n_b), leaves, create_graph=True, allow_unused=True)
                g = self._grad_outputs(g, leaves)
                parts.append(g)
                loss_sum += float(loss.detach()) * self._weight(n_b)
                N += n_b
        total = [sum(gs[j] for gs in parts) / N for j in range(len(leaves))]  # type: ignore[misc]
        self.num_samples = N
        self.num_gradients += 1
        self.timings["graph_build_s"] += time.perf_counter() - start
        return {"leaves": leaves, "grads": total, "loss": loss_sum / N}

    # ------------------------------------------------------------------ products
    def _hvp_graph(self, grads: Sequence[torch.Tensor], leaves: Sequence[torch.Tensor], v: torch.Tensor) -> list:
        pairs = [(g, u) for g, u in zip(grads, self.fmodel.unflatten(v)) if g.requires_grad]
        if not pairs:
            return [torch.zeros_like(p) for p in leaves]
        hv = torch.autograd.grad(
            [g for g, _ in pairs], leaves, grad_outputs=[u for _, u in pairs], retain_graph=True, allow_unused=True
        )
        return self._grad_outputs(hv, leaves)

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        require_autograd("HessianOperator @ v")
        with torch.enable_grad():
            cache = self._cached()
            if cache is not None:
                return self.fmodel.flatten(self._hvp_graph(cache["grads"], cache["leaves"], v))
            acc = torch.zeros(self.n, dtype=self.dtype, device=self.device)
            N = 0
            with module_mode(self.fmodel.module, self.mode):
                for i, (x, y) in enumerate(self._batches("Hessian-vector product")):
                    leaves = self.fmodel.leaves()
                    n_b = batch_size_of(x)
                    loss = self._batch_loss(leaves, x, y, i) * self._weight(n_b)
                    g = self._grad_outputs(torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True), leaves)
                    acc += self.fmodel.flatten(self._hvp_graph(g, leaves, v))
                    N += n_b
            self.num_samples = N
            return acc / N
