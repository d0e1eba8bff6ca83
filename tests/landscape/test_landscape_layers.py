"""Per-layer spectra: every diagonal block H_bb against the dense float64 Hessian of a small network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from landscape_helpers import (  # noqa: F401
    assert_unchanged,
    classification_data,
    one_thread,
    reference_hessian,
    snapshot,
)
from torch import nn

from surrogates.errors import InputError
from surrogates.landscape import layer_spectra
from surrogates.landscape.layers import parameter_blocks


def three_layer_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)).double()


@pytest.fixture(scope="module")
def problem():
    torch.set_num_threads(1)
    model = three_layer_net()
    X, Y = classification_data(n=61, d_in=5)
    loss = nn.CrossEntropyLoss()
    H = reference_hessian(model, loss, X, Y).numpy()
    sizes = [p.numel() for p in model.parameters()]  # weight, bias per layer
    edges = np.cumsum([0, *sizes])
    blocks = [slice(edges[2 * i], edges[2 * i + 2]) for i in range(3)]
    return model, X, Y, loss, H, blocks


def test_default_blocks_are_layers():
    parts = parameter_blocks(three_layer_net())
    assert [(label, kind, names) for label, kind, names in parts] == [
        ("0", "Linear", ["0.weight", "0.bias"]),
        ("2", "Linear", ["2.weight", "2.bias"]),
        ("4", "Linear", ["4.weight", "4.bias"]),
    ]


def test_exact_when_lanczos_spans_each_block(problem):
    model, X, Y, loss, H, blocks = problem
    snap = snapshot(model)
    res = layer_spectra(model, loss, (X, Y), max_iter=200, tol=0.0, trace_probes=4)  # tol 0: run to the whole block
    assert_unchanged(model, snap)
    assert [r.size for r in res.layers] == [48, 72, 27]
    for r, s in zip(res.layers, blocks):
        ev = np.linalg.eigvalsh(H[s, s])
        scale = np.max(np.abs(ev))
        assert r.converged
        assert r.lambda_max == pytest.approx(ev[-1], abs=1e-9 * scale)
        assert r.lambda_min == pytest.approx(ev[0], abs=1e-9 * scale)
        # a block spanned by its Krylov basis has an exact trace; one that broke down early (an
        # invariant subspace) leaves only its near-null complement to the probes
        if r.krylov_dim == r.size:
            assert r.trace_stderr == 0.0
        assert abs(r.trace - np.trace(H[s, s])) <= 5 * r.trace_stderr + 1e-9 * np.trace(H[s, s])
        assert r.trace_stderr < 1e-3 * abs(r.trace)
    assert any(r.krylov_dim == r.size for r in res.layers)
    # the blocks' traces sum to the full trace
    assert abs(res.trace - np.trace(H)) <= 5 * res.trace_stderr + 1e-9 * np.trace(H)
    text = res.table()
    assert "all blocks" in text and len(text.splitlines()) == 2 + 3 + 2


def test_shared_probe_traces_are_unbiased_with_calibrated_errors(problem):
    """Krylov bases smaller than the blocks: the traces come from the shared full-Hessian probes.

    Over 40 seeds the estimates scatter around the dense traces by about their reported
    standard errors (unbiased, honest error bars), and the extreme eigenvalues are within the
    reported Lanczos error bounds.
    """
    model, X, Y, loss, H, blocks = problem
    truth = np.array([np.trace(H[s, s]) for s in blocks])
    estimates, stderrs = [], []
    for seed in range(40):
        res = layer_spectra(model, loss, (X, Y), max_iter=6, trace_probes=8, seed=seed)
        assert res.full_products == 8 and res.block_products == 18
        estimates.append([r.trace for r in res.layers])
        stderrs.append([r.trace_stderr for r in res.layers])
        for r, s in zip(res.layers, blocks):
            ev = np.linalg.eigvalsh(H[s, s])
            assert r.lambda_max <= ev[-1] + 1e-12 and r.lambda_min >= ev[0] - 1e-12  # Ritz values lie inside
            if r.converged:
                assert abs(r.lambda_max - ev[-1]) <= r.lambda_max_error + 1e-12
    estimates, stderrs = np.asarray(estimates), np.asarray(stderrs)
    assert np.all(stderrs > 0)
    z = (estimates - truth) / stderrs
    assert np.all(np.abs(z.mean(axis=0)) < 0.6), z.mean(axis=0)  # unbiased: mean z within ~3.5/sqrt(40)
    spread = estimates.std(axis=0, ddof=1) / np.sqrt(np.mean(stderrs**2, axis=0))
    assert np.all((spread > 0.6) & (spread < 1.6)), spread  # reported errors match the real scatter


def test_custom_blocks_and_bad_blocks(problem):
    model, X, Y, loss, H, blocks = problem
    res = layer_spectra(model, loss, (X, Y), blocks={"weights": "*.weight", "biases": "*.bias"}, max_iter=200, trace_probes=4)
    names = [n for n, _ in model.named_parameters()]
    widx = np.concatenate([np.arange(s.start, s.start + p.numel()) for s, p in zip(blocks, list(model.parameters())[::2])])
    ev = np.linalg.eigvalsh(H[np.ix_(widx, widx)])
    assert res.layers[0].name == "weights" and res.layers[0].params == [n for n in names if n.endswith("weight")]
    assert res.layers[0].lambda_max == pytest.approx(ev[-1], rel=1e-9)
    with pytest.raises(InputError, match=r"parameter '0.weight' is in two blocks, 'a' and 'b'"):
        layer_spectra(model, loss, (X, Y), blocks={"a": "0.*", "b": "*.weight"})
    with pytest.raises(InputError, match=r"block 'x': parameter pattern 'nope\*' matches no parameter"):
        layer_spectra(model, loss, (X, Y), blocks={"x": "nope*"})
    with pytest.raises(InputError, match="trace_probes must be an int >= 2"):
        layer_spectra(model, loss, (X, Y), trace_probes=1)
