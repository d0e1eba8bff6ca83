"""Curvature products over shards in two processes (torch.distributed, gloo on CPU) = one process on all rows.

This file is also the worker: ``python tests/landscape/test_landscape_distributed.py <out> <rank> <port>``
joins a 2-process gloo group, builds :class:`DistributedOperator` s over its (unequal) shard and
saves what it computed in ``<out>/rank<r>.npz``. The test compares both processes with each
other and with float64 dense Hessians of the whole data set computed in the test process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
N_ROWS = 53
SPLIT = 19  # rank 0 holds rows [0, 19), rank 1 rows [19, 53): unequal shards
WORLD = 2


def _problem():
    from landscape_helpers import classification_data, small_mlp

    model = small_mlp(d_in=4, hidden=5, d_out=3, seed=3)
    X, Y = classification_data(n=N_ROWS, d_in=4, d_out=3, seed=7)
    targets = torch.randn(N_ROWS, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    return model, X, Y, targets


def _cases():
    """(name, loss, which targets, batch size, cache): mean and summed losses, cached and batch-by-batch."""
    return [
        ("ce_mean_cached", nn.CrossEntropyLoss(), "labels", None, True),
        ("ce_mean_batches", nn.CrossEntropyLoss(), "labels", 7, False),
        ("mse_sum_batches", nn.MSELoss(reduction="sum"), "values", 6, False),
    ]


def _other_curvatures(ggn, fisher):
    """The other sample-mean curvature matrices, by label: constructors taking (model, loss, data, batch_size)."""
    return {
        "ggn": ggn,
        "fisher_empirical": lambda *a, **k: fisher(*a, kind="empirical", **k),
        "fisher_true": lambda *a, **k: fisher(*a, kind="true", **k),
    }


def _vectors(n):
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(11), dtype=torch.float64)


def _worker(out: Path, rank: int, port: int) -> None:
    import torch.distributed as dist

    from surrogates.landscape import FisherOperator, GGNOperator, HessianOperator, hutchinson, lanczos
    from surrogates.landscape.distributed import DistributedOperator

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    model, X, Y, targets = _problem()
    rows = slice(0, SPLIT) if rank == 0 else slice(SPLIT, N_ROWS)
    saved = {}
    for name, loss, kind, batch, cache in _cases():
        T = Y if kind == "labels" else targets
        op = DistributedOperator(HessianOperator(model, loss, (X[rows], T[rows]), batch_size=batch, cache_graphs=cache))
        V = _vectors(op.n)
        saved[f"{name}.products"] = (op @ V).numpy()
        saved[f"{name}.product0"] = (op @ V[:, 0]).numpy()
        loss_value, grad = op.loss_and_gradient()
        saved[f"{name}.loss"] = np.array(loss_value)
        saved[f"{name}.gradient"] = grad.numpy()
        saved[f"{name}.evaluate"] = np.array(op.evaluate(op.parameters_vector() + 0.01)["loss"])
        saved[f"{name}.num_samples"] = np.array(op.num_samples)
        top = lanczos(op, 3, "BE", max_iter=op.n)
        saved[f"{name}.lanczos"] = top.eigenvalues
        saved[f"{name}.lanczos_iterations"] = np.array(top.iterations)
        saved[f"{name}.hutchinson"] = np.array(hutchinson(op, 20, seed=4).value)
        for label, other in _other_curvatures(GGNOperator, FisherOperator).items():
            shards = other(model, loss, (X[rows], T[rows]), batch_size=batch)
            saved[f"{name}.{label}"] = (DistributedOperator(shards) @ V).numpy()
    from surrogates.errors import InputError
    from surrogates.landscape import DenseSymmetricOperator

    try:
        DistributedOperator(DenseSymmetricOperator(np.eye(3)))
        saved["refuses_non_mean"] = np.array(False)
    except InputError as err:
        saved["refuses_non_mean"] = np.array("sample_mean" in str(err))
    dist.destroy_process_group()
    np.savez(out / f"rank{rank}.npz", **saved)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("distributed")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    workers = [
        subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(out), str(r), str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for r in range(WORLD)
    ]
    for w in workers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err[-3000:]
    return [dict(np.load(out / f"rank{r}.npz")) for r in range(WORLD)]


def _dense_reference(loss, T):
    from landscape_helpers import reference_hessian

    model, X, _, _ = _problem()
    H = reference_hessian(model, loss, X, T).numpy()
    # the summed loss over all rows, divided by N: the operator's convention for reduction="sum"
    return H / N_ROWS if getattr(loss, "reduction", "mean") == "sum" else H


def test_every_process_gets_the_same_bits(ranks):
    a, b = ranks
    assert a["refuses_non_mean"] and b["refuses_non_mean"]  # a dense matrix is no mean over rows
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_sharded_products_equal_the_full_data_hessian(ranks, case):
    """Against an independent dense float64 Hessian of all 53 rows: unequal shards are weighted by their rows."""
    name, loss, kind, _, _ = case
    model, X, Y, targets = _problem()
    T = Y if kind == "labels" else targets
    H = _dense_reference(loss, T)
    V = _vectors(H.shape[0]).numpy()
    got = ranks[0]
    scale = np.abs(H).max()
    np.testing.assert_allclose(got[f"{name}.products"], H @ V, rtol=0, atol=1e-12 * scale * np.abs(V).sum(0).max())
    np.testing.assert_allclose(got[f"{name}.product0"], H @ V[:, 0], rtol=0, atol=1e-12 * scale * np.abs(V[:, 0]).sum())
    assert int(got[f"{name}.num_samples"]) == N_ROWS
    w = np.linalg.eigvalsh(H)
    np.testing.assert_allclose(got[f"{name}.lanczos"], np.concatenate([w[::-1][:3], w[:3]]), rtol=0, atol=1e-10 * np.abs(w).max())


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_sharded_loss_gradient_and_estimators_equal_one_process(ranks, case):
    """Against the same quantities computed by one process on all rows (uneven shards would bias an unweighted mean)."""
    from surrogates.landscape import HessianOperator, hutchinson

    name, loss, kind, batch, cache = case
    model, X, Y, targets = _problem()
    T = Y if kind == "labels" else targets
    single = HessianOperator(model, loss, (X, T), batch_size=batch, cache_graphs=cache)
    value, grad = single.loss_and_gradient()
    got = ranks[1]
    np.testing.assert_allclose(got[f"{name}.loss"], value, rtol=1e-13)
    np.testing.assert_allclose(got[f"{name}.gradient"], grad.numpy(), rtol=0, atol=1e-13 * float(grad.abs().max()))
    moved = single.evaluate(single.parameters_vector() + 0.01)["loss"]
    np.testing.assert_allclose(got[f"{name}.evaluate"], moved, rtol=1e-13)
    np.testing.assert_allclose(got[f"{name}.hutchinson"], hutchinson(single, 20, seed=4).value, rtol=1e-11)
    # shard means weighted equally (the mistake this guards against) differ from the right answer
    halves = [HessianOperator(model, loss, (X[s], T[s])).loss_and_gradient()[0] for s in (slice(0, SPLIT), slice(SPLIT, N_ROWS))]
    assert abs(np.mean(halves) - value) > 1e-3 * abs(value)


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_sharded_ggn_and_fisher_products_equal_one_process(ranks, case):
    """GGN, empirical and true Fisher over the shards against the same operator on all rows in one process."""
    from surrogates.landscape import FisherOperator, GGNOperator

    name, loss, kind, batch, _ = case
    model, X, Y, targets = _problem()
    T = Y if kind == "labels" else targets
    for label, build in _other_curvatures(GGNOperator, FisherOperator).items():
        V = _vectors(build(model, loss, (X, T)).n)
        single = (build(model, loss, (X, T), batch_size=batch) @ V).numpy()
        for got in ranks:
            np.testing.assert_allclose(got[f"{name}.{label}"], single, rtol=0, atol=1e-12 * np.abs(single).max(), err_msg=label)
        assert np.abs(single).max() > 0, label


def test_distributed_operator_refuses_without_a_process_group():
    from surrogates.errors import InputError
    from surrogates.landscape import DenseSymmetricOperator
    from surrogates.landscape.distributed import DistributedOperator, shard_range

    with pytest.raises(InputError, match="torch.distributed to be initialised"):
        DistributedOperator(DenseSymmetricOperator(np.eye(3)))
    parts = [shard_range(10, r, 3) for r in range(3)]
    assert [list(p) for p in parts] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    with pytest.raises(InputError, match="rank"):
        shard_range(10, 3, 3)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))  # landscape_helpers lives in the tests' root folder
    _worker(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
