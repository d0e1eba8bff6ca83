"""Lanczos, Hutchinson, Hutch++ and stochastic Lanczos quadrature against exact dense answers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from landscape_helpers import (
    assert_unchanged,
    classification_data,
    one_thread,  # noqa: F401 (autouse fixture)
    reference_hessian,
    small_mlp,
    snapshot,
)
from torch import nn

from surrogates.landscape.density import spectral_density
from surrogates.landscape.exact import dense_matrix, exact_spectrum
from surrogates.landscape.lanczos import lanczos
from surrogates.landscape.operator import DenseSymmetricOperator, HessianOperator
from surrogates.landscape.trace import hutchinson, hutchpp


def known_operator(eigs, seed=0):
    eigs = np.asarray(eigs, dtype=np.float64)
    g = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(g.standard_normal((len(eigs), len(eigs))))
    return DenseSymmetricOperator(torch.as_tensor((Q * eigs) @ Q.T)), np.sort(eigs)


@pytest.fixture(scope="module")
def net_problem():
    torch.set_num_threads(1)
    model = small_mlp(d_in=5, hidden=8, d_out=3)
    X, Y = classification_data(n=41, d_in=5)
    loss = nn.CrossEntropyLoss()
    H = reference_hessian(model, loss, X, Y).numpy()
    return model, X, Y, loss, H, np.linalg.eigvalsh(H)


@pytest.mark.parametrize("which", ["LA", "SA", "BE", "LM"])
def test_lanczos_on_known_spectrum(which):
    eigs = np.concatenate([[50.0, 20.0, 9.0], np.linspace(-3, 2, 57), [-7.0]])
    op, ref = known_operator(eigs)
    res = lanczos(op, 3, which, max_iter=60)
    if which == "LA":
        expected = ref[::-1][:3]
    elif which == "SA":
        expected = ref[:3]
    elif which == "LM":
        expected = ref[np.argsort(-np.abs(ref))][:3]
    else:
        expected = np.concatenate([ref[::-1][:3], ref[:3]])
    np.testing.assert_allclose(res.eigenvalues, expected, atol=1e-10)
    assert res.all_converged
    H = op.matrix.numpy()
    V = res.eigenvectors.numpy()
    np.testing.assert_allclose(H @ V, V * res.eigenvalues, atol=1e-8)
    np.testing.assert_allclose(V.T @ V, np.eye(V.shape[1]), atol=1e-12)
    assert res.num_products == res.iterations == op.num_products


def test_lanczos_on_network_hessian(net_problem):
    model, X, Y, loss, H, ref = net_problem
    snap = snapshot(model)
    op = HessianOperator(model, loss, (X, Y), batch_size=9)
    top = lanczos(op, 4, "LA")
    bottom = lanczos(op, 4, "SA", max_iter=op.n)
    np.testing.assert_allclose(top.eigenvalues, ref[::-1][:4], atol=1e-10)
    np.testing.assert_allclose(bottom.eigenvalues, ref[:4], atol=1e-10)
    assert top.all_converged and bottom.all_converged
    assert top.iterations < op.n  # stops on the residual test, not by exhausting the space
    np.testing.assert_allclose(exact_spectrum(op), ref, atol=1e-10)
    assert_unchanged(model, snap)


def test_lanczos_breakdown_low_rank_reaches_whole_spectrum():
    op, ref = known_operator([5.0, 3.0, -2.0] + [0.0] * 17)
    res = lanczos(op, 4, "LA", max_iter=20)
    np.testing.assert_allclose(res.eigenvalues, [5.0, 3.0, 0.0, 0.0], atol=1e-10)
    res_all = lanczos(op, 10, "SA", max_iter=20)
    np.testing.assert_allclose(res_all.eigenvalues[0], -2.0, atol=1e-10)


def test_lanczos_reports_non_convergence_and_is_seeded():
    op, _ = known_operator(np.linspace(1.0, 1.1, 200))
    with pytest.warns(RuntimeWarning, match=r"NOT converged after 8 products"):
        res = lanczos(op, 2, "LA", max_iter=8)
    assert not res.all_converged
    assert "raise max_iter" in res.to_dict()["status"]
    a = lanczos(op, 2, "LA", max_iter=8, seed=3, warn=False)
    b = lanczos(op, 2, "LA", max_iter=8, seed=3, warn=False)
    np.testing.assert_array_equal(a.eigenvalues, b.eigenvalues)
    with pytest.raises(ValueError, match="which must be one of"):
        lanczos(op, 2, "BIG")
    with pytest.raises(ValueError, match="asked for 402 eigenpairs of an operator of size 200"):
        lanczos(op, 201, "BE")


def test_hutchinson_unbiased_and_hutchpp_exact_when_sketch_spans(net_problem):
    model, X, Y, loss, H, ref = net_problem
    op = HessianOperator(model, loss, (X, Y))
    exact = np.trace(H)
    est = hutchinson(op, 300, seed=1)
    assert abs(est.value - exact) < 4 * est.stderr
    assert est.num_products == 300
    small, _ = known_operator(np.linspace(-1, 4, 20))
    pp = hutchpp(small, num_products=62, seed=0)  # sketch of 20 vectors spans R^20
    np.testing.assert_allclose(pp.value, np.trace(small.matrix.numpy()), atol=1e-10)
    assert pp.num_products == 62
    pp_net = hutchpp(op, num_products=90, seed=2)
    assert abs(pp_net.value - exact) < 4 * pp_net.stderr + 1e-10
    assert pp_net.stderr < est.stderr  # deflating the outliers pays


def test_density_nodes_and_implied_trace(net_problem):
    model, X, Y, loss, H, ref = net_problem
    op = HessianOperator(model, loss, (X, Y))
    n = op.n
    full = spectral_density(op, num_probes=2, num_steps=n, seed=0)
    for nodes in full.nodes:  # exhausted Krylov space: the nodes are the distinct eigenvalues
        assert np.abs(nodes[:, None] - ref[None, :]).min(1).max() < 1e-9
        assert np.abs(nodes[:, None] - ref[None, :]).min(0).max() < 1e-9
    nodes, weights = full.point_masses()
    assert abs(weights.sum() - 1) < 1e-12
    # implied trace = n * first moment, and agrees with the exact trace within its error bar
    assert abs(full.trace - n * full.moment(1)) < 1e-8
    dens = spectral_density(op, num_probes=30, num_steps=20, seed=1)
    assert abs(dens.trace - np.trace(H)) < 4 * dens.trace_stderr
    # deflating all but one eigenpair leaves a 1-D complement: the implied trace is exact
    w, V = np.linalg.eigh(H)
    defl = spectral_density(op, num_probes=3, num_steps=5, deflate=(w[1:], torch.as_tensor(V[:, 1:])))
    np.testing.assert_allclose(defl.trace, np.trace(H), atol=1e-10)
    assert defl.trace_stderr < 1e-10
    grid = np.linspace(ref[0] - 1, ref[-1] + 1, 2001)
    area = np.trapezoid(full.evaluate(grid), grid)
    assert abs(area - 1) < 1e-3


def test_deflated_density_from_lanczos(net_problem):
    model, X, Y, loss, H, ref = net_problem
    op = HessianOperator(model, loss, (X, Y))
    top = lanczos(op, 5, "LA", keep_basis=True)
    assert top.basis.shape == (op.n, top.iterations)
    np.testing.assert_allclose(np.sum(top.all_ritz_values), np.trace(top.basis.numpy().T @ H @ top.basis.numpy()), atol=1e-10)
    plain = spectral_density(op, num_probes=30, num_steps=15, seed=4)
    defl = spectral_density(op, num_probes=30, num_steps=15, seed=4, deflate=top)
    vecs = spectral_density(op, num_probes=30, num_steps=15, seed=4, deflate=lanczos(op, 5, "LA"))
    assert defl.trace_stderr < plain.trace_stderr
    for d in (plain, defl, vecs):
        assert abs(d.trace - np.trace(H)) < 4 * d.trace_stderr
        assert abs(d.trace - op.n * d.moment(1)) < 1e-8  # the density's own first moment
    np.testing.assert_allclose(vecs.deflated, ref[::-1][:5], atol=1e-10)
    with pytest.raises(ValueError, match=r"deflation vectors must have shape"):
        spectral_density(op, 2, 3, deflate=(np.ones(2), torch.ones(op.n, 3, dtype=torch.float64)))


def test_dense_matrix_matches_reference(net_problem):
    model, X, Y, loss, H, _ = net_problem
    op = HessianOperator(model, loss, (X, Y), batch_size=10)
    np.testing.assert_allclose(dense_matrix(op, chunk_size=7).numpy(), H, atol=1e-10)


def test_refine_with_float64_operator_recovers_float64_eigenvalues(net_problem):
    model, X, Y, loss, H, ref = net_problem
    from surrogates.landscape.lanczos import refine

    m32 = copy.deepcopy(model).float()
    H64 = reference_hessian(m32, loss, X.float(), Y)  # the float32 weights, differentiated in float64
    ref64 = np.linalg.eigvalsh(H64.numpy())
    op32 = HessianOperator(m32, loss, (X.float(), Y))
    op64 = HessianOperator(m32, loss, (X.float(), Y), dtype=torch.float64)
    top = lanczos(op32, 3, "LA")
    assert np.max(np.abs(top.eigenvalues - ref64[::-1][:3])) > 1e-9  # float32 products limit it
    fine = refine(op64, top)
    np.testing.assert_allclose(fine.eigenvalues, ref64[::-1][:3], atol=1e-10)
    assert fine.num_products == top.num_products + 3 and fine.refined_with == "float64"
    assert op64.num_products == 3
