"""Curvature products over a data set sharded across processes (``torch.distributed``).

Every operator of this package built on data (the Hessian, and the GGN and Fisher that share its
machinery) is a *sample mean*: over the rows :math:`i` of a data set of :math:`N` samples,

.. math:: A v = \\frac1N \\sum_{i=1}^{N} A_i v .

When process :math:`r` holds a shard :math:`\\mathcal S_r` of :math:`N_r` rows (the shards
partitioning the data, of any sizes) and its local operator returns the shard's own mean
:math:`A^{(r)} v = \\frac{1}{N_r}\\sum_{i \\in \\mathcal S_r} A_i v`, then

.. math:: A v = \\frac{\\sum_r N_r\\, A^{(r)} v}{\\sum_r N_r},

one all-reduce of the weighted local product with its weight appended. The same identity gives
the loss, the gradient and every metric of :meth:`evaluate`. :class:`DistributedOperator`
wraps any operator that declares ``sample_mean = True`` (as
:class:`~surrogates.landscape.operator.HessianOperator` does), so
new sample-mean operators need no distributed code of their own. Structured approximations
whose product is not a mean of per-sample products (KFAC: a Kronecker product of two means)
must not declare it; they have to reduce their factors instead.

All processes run the same program (SPMD, as under Lightning's DDP): every call on the operator
is a collective, so each process must make the same calls in the same order with the same
arguments. The reduced products are bitwise identical in every process, so Lanczos, Hutchinson
and the density take the same decisions everywhere as long as the processes also agree on
seeds and thread counts.

Example (launched by ``torchrun --nproc-per-node 2`` or Lightning's DDP)::

    torch.distributed.init_process_group("gloo")
    X_r, Y_r = shard((X, Y))                       # this process's rows
    H = DistributedOperator(HessianOperator(model, loss_fn, (X_r, Y_r)))
    top = lanczos(H, 5)                            # the same answer in every process
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist

from ..errors import InputError
from .operator import SymmetricOperator


def _require_initialized(what: str) -> None:
    if not (dist.is_available() and dist.is_initialized()):
        raise InputError(
            f"{what} needs torch.distributed to be initialised (torch.distributed.init_process_group, "
            "or a Lightning DDP strategy) in every process"
        )


def shard_range(num_samples: int, rank: int, world_size: int) -> range:
    """The rows of process ``rank``: contiguous, sizes differing by at most one, together all rows once.

    Unlike ``DistributedSampler`` (which repeats rows so every process gets as many), no row is
    counted twice, so the mean over the shards is the mean over the data.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise InputError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    base, extra = divmod(int(num_samples), world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def shard(arrays: Sequence[Any], group: dist.ProcessGroup | None = None) -> tuple[Any, ...]:
    """This process's rows of each array (split along dimension 0 by :func:`shard_range`)."""
    _require_initialized("shard")
    sizes = {len(a) for a in arrays if a is not None}
    if len(sizes) != 1:
        raise InputError(f"the arrays to shard need the same number of rows, got {sorted(sizes)}")
    rows = shard_range(sizes.pop(), dist.get_rank(group), dist.get_world_size(group))
    return tuple(None if a is None else a[rows.start : rows.stop] for a in arrays)


class DistributedOperator(SymmetricOperator):
    """A sample-mean operator over all processes' shards, from each process's local operator.

    The local operator (e.g. a :class:`~surrogates.landscape.operator.HessianOperator` on this
    process's shard) must declare ``sample_mean = True`` and report its shard size as
    ``num_samples`` after a pass over its data;
    products, :meth:`loss_and_gradient` and :meth:`evaluate` are the row-weighted means over all
    processes (module docstring). Anything else (``fmodel``, ``parameters_vector``,
    ``param_names``, ...) is the local operator's.

    Args:
        local: This process's operator.
        group: Process group (``None``: the default group).

    Raises:
        InputError: When ``torch.distributed`` is not initialised, the operator is not a sample
            mean, or the processes' operators differ in size or dtype.
    """

    def __init__(self, local: SymmetricOperator, group: dist.ProcessGroup | None = None):
        super().__init__()
        _require_initialized("DistributedOperator")
        if getattr(local, "sample_mean", False) is not True:
            raise InputError(
                f"{type(local).__name__} does not declare sample_mean = True (its product is not known to be a "
                "mean over the data's rows), so its shards cannot be combined by their row counts"
            )
        self.local = local
        self.group = group
        self.n = local.n
        self.dtype = local.dtype
        self.device = local.device
        # one collective for both checks: every process's size and dtype must agree
        mine = torch.tensor([self.n, -self.n, local.dtype.itemsize, -local.dtype.itemsize], dtype=torch.float64)
        dist.all_reduce(mine, op=dist.ReduceOp.MAX, group=group)
        if mine[0] != -mine[1] or mine[2] != -mine[3]:
            raise InputError(
                f"the processes' operators differ: sizes {int(-mine[1])}..{int(mine[0])}, dtype sizes "
                f"{int(-mine[3])}..{int(mine[2])} bytes; every process needs the same model and parameter subset"
            )

    def __getattr__(self, name: str) -> Any:
        # only called for names not found on the wrapper: the local operator's model, parameters, ...
        if name == "local":
            raise AttributeError(name)
        return getattr(self.local, name)

    @property
    def num_samples(self) -> int | None:
        """Rows over all processes (known after the first pass)."""
        return getattr(self, "_num_samples", None)

    def _mean(self, local_means: torch.Tensor, count: int) -> torch.Tensor:
        """:math:`\\sum_r N_r m_r / \\sum_r N_r` over the processes, in one all-reduce."""
        packed = torch.cat([local_means.reshape(-1).to(torch.float64) * count, local_means.new_ones(1, dtype=torch.float64) * count])
        dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=self.group)
        self._num_samples = int(round(float(packed[-1])))
        return (packed[:-1] / packed[-1]).reshape(local_means.shape)

    def _local_count(self) -> int:
        count = self.local.num_samples
        if not count:
            raise InputError(f"{type(self.local).__name__} reported no samples after a pass over its shard")
        return int(count)

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        local = self.local @ v
        return self._mean(local, self._local_count()).to(v.dtype)

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        local = self.local @ V
        return self._mean(local, self._local_count()).to(V.dtype)

    def loss_and_gradient(self) -> tuple[float, torch.Tensor]:
        """Loss and gradient of the mean loss over all processes' rows."""
        loss, grad = self.local.loss_and_gradient()
        both = self._mean(torch.cat([grad.to(torch.float64).reshape(-1), torch.tensor([loss], dtype=torch.float64)]), self._local_count())
        return float(both[-1]), both[:-1].to(grad.dtype)

    def evaluate(
        self, theta: torch.Tensor | None = None, metrics: dict[str, Callable[..., Any]] | None = None
    ) -> dict[str, float]:
        """Loss and metrics over all processes' rows (each a per-row mean, weighted like the loss)."""
        out = self.local.evaluate(theta, metrics)
        names = sorted(out)
        means = self._mean(torch.tensor([out[k] for k in names], dtype=torch.float64), self._local_count())
        return {k: float(v) for k, v in zip(names, means)}

    def __repr__(self) -> str:
        return f"DistributedOperator({self.local!r}, world_size={dist.get_world_size(self.group)})"
