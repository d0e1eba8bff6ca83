"""Shared fixtures for the landscape tests: small nets and independent dense float64 Hessians."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, hessian


def small_mlp(d_in=4, hidden=6, d_out=3, seed=0, dtype=torch.float64, dropout=False):
    torch.manual_seed(seed)
    layers = [nn.Linear(d_in, hidden), nn.Tanh()]
    if dropout:
        layers.append(nn.Dropout(0.5))
    layers.append(nn.Linear(hidden, d_out))
    return nn.Sequential(*layers).to(dtype)


def classification_data(n=37, d_in=4, d_out=3, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d_in, generator=g, dtype=dtype)
    Y = torch.randint(0, d_out, (n,), generator=g)
    return X, Y


def reference_hessian(model, loss_fn, X, Y, names=None):
    """Dense Hessian of loss_fn(model(X), Y) by torch.func.hessian (independent of the package)."""
    model = copy.deepcopy(model).double().eval()
    named = dict(model.named_parameters())
    names = list(named) if names is None else names
    shapes = [named[n].shape for n in names]
    sizes = [named[n].numel() for n in names]
    theta = torch.cat([named[n].detach().reshape(-1) for n in names])
    Xd = X.double() if X.is_floating_point() else X
    Yd = Y.double() if Y.is_floating_point() else Y

    def f(th):
        parts = torch.split(th, sizes)
        params = {n: p.view(s) for n, p, s in zip(names, parts, shapes)}
        return loss_fn(functional_call(model, params, (Xd,)), Yd)

    return hessian(f)(theta).detach()


def snapshot(model):
    """Everything about a model that must not change: values, flags, grads, modes."""
    return {
        "params": {n: (p.detach().clone(), p.requires_grad, p.dtype, None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()},
        "buffers": {n: b.detach().clone() for n, b in model.named_buffers()},
        "modes": [m.training for m in model.modules()],
        "ids": [id(p) for p in model.parameters()],
    }


def assert_unchanged(model, snap):
    now = snapshot(model)
    assert now["ids"] == snap["ids"]
    assert now["modes"] == snap["modes"]
    for n, (v, rg, dt, g) in snap["params"].items():
        v2, rg2, dt2, g2 = now["params"][n]
        assert torch.equal(v, v2), f"parameter {n} changed"
        assert rg == rg2, f"requires_grad of {n} changed"
        assert dt == dt2, f"dtype of {n} changed"
        assert (g is None) == (g2 is None), f".grad of {n} changed"
        if g is not None:
            assert torch.equal(g, g2)
        p = dict(model.named_parameters())[n]
        assert p.grad is None or p.grad.grad_fn is None, f".grad of {n} holds a graph"
    for n, b in snap["buffers"].items():
        assert torch.equal(b, now["buffers"][n])


def np_eigvalsh(H):
    return np.linalg.eigvalsh(H.numpy() if isinstance(H, torch.Tensor) else H)


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny problems run fastest (and without oversubscription on shared 2-core machines) on one thread."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
