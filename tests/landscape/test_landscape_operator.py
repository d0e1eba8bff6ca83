"""The parameter-space Hessian operator against dense float64 references (torch.func.hessian)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import eigsh
from landscape_helpers import (
    assert_unchanged,
    classification_data,
    one_thread,  # noqa: F401 (autouse fixture)
    reference_hessian,
    small_mlp,
    snapshot,
)
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from surrogates.landscape.exact import dense_matrix
from surrogates.landscape.operator import DenseSymmetricOperator, HessianOperator

TOL = 1e-10


def _dense(op):
    return op @ torch.eye(op.n, dtype=torch.float64)


@pytest.mark.parametrize("batch_size", [None, 7, 36])
@pytest.mark.parametrize("cache", [True, False])
def test_hessian_matches_reference_uneven_batches(batch_size, cache):
    model = small_mlp()
    X, Y = classification_data(n=37)
    loss = nn.CrossEntropyLoss()
    H = reference_hessian(model, loss, X, Y)
    op = HessianOperator(model, loss, (X, Y), batch_size=batch_size, cache_graphs=cache)
    assert torch.allclose(_dense(op), H, atol=TOL, rtol=0)
    assert op.num_samples == 37


def test_dataloader_and_dataset_inputs_are_exact():
    model = small_mlp()
    X, Y = classification_data(n=29)
    loss = nn.CrossEntropyLoss()
    H = reference_hessian(model, loss, X, Y)
    loader = DataLoader(TensorDataset(X, Y), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(3))
    for data in (loader, TensorDataset(X, Y), [(X[:10], Y[:10]), (X[10:], Y[10:])]):
        op = HessianOperator(model, loss, data, batch_size=6)
        assert torch.allclose(_dense(op), H, atol=TOL, rtol=0)


def test_sum_reduction_regression():
    model = small_mlp(d_out=2)
    g = torch.Generator().manual_seed(5)
    X = torch.randn(23, 4, generator=g, dtype=torch.float64)
    Y = torch.randn(23, 2, generator=g, dtype=torch.float64)
    H = reference_hessian(model, nn.MSELoss(), X, Y)  # mean over all entries
    op = HessianOperator(model, nn.MSELoss(reduction="sum"), (X, Y), batch_size=5)
    # sum-reduced MSE divided by N (samples) = mean MSE times the output width
    assert torch.allclose(_dense(op), H * 2, atol=TOL, rtol=0)


def test_parameter_subset_is_the_diagonal_block():
    model = small_mlp()
    X, Y = classification_data()
    loss = nn.CrossEntropyLoss()
    H = reference_hessian(model, loss, X, Y)
    op = HessianOperator(model, loss, (X, Y), params=["2.*"])
    assert op.param_names == ["2.weight", "2.bias"]
    first = 4 * 6 + 6
    assert torch.allclose(_dense(op), H[first:, first:], atol=TOL, rtol=0)
    op_w = HessianOperator(model, loss, (X, Y), params="0.weight")
    assert torch.allclose(_dense(op_w), H[:24, :24], atol=TOL, rtol=0)


def test_float64_option_uses_a_copy_of_a_float32_model():
    model32 = small_mlp(dtype=torch.float32)
    X, Y = classification_data(dtype=torch.float32)
    loss = nn.CrossEntropyLoss()
    snap = snapshot(model32)
    H = reference_hessian(model32, loss, X, Y)
    op = HessianOperator(model32, loss, (X, Y), dtype=torch.float64)
    assert op.dtype == torch.float64
    assert torch.allclose(_dense(op), H, atol=TOL, rtol=0)
    assert_unchanged(model32, snap)
    op32 = HessianOperator(model32, loss, (X, Y))
    assert torch.allclose(_dense(op32), H, atol=1e-5, rtol=0)


def test_model_state_untouched_including_grads_flags_and_modes():
    model = small_mlp(dropout=True)
    model.train()
    model[0].bias.requires_grad_(False)
    X, Y = classification_data()
    nn.CrossEntropyLoss()(model(X), Y).backward()  # pre-existing .grad
    snap = snapshot(model)
    op = HessianOperator(model, nn.CrossEntropyLoss(), (X, Y), cache_graphs=False)
    v = torch.randn(op.n, dtype=torch.float64)
    op @ v
    op.loss_and_gradient()
    opc = HessianOperator(model, nn.CrossEntropyLoss(), (X, Y), cache_graphs=True)
    opc @ v
    assert_unchanged(model, snap)
    # default selection follows requires_grad; eval mode switches dropout off (deterministic)
    assert "0.bias" not in op.param_names
    assert torch.allclose(op @ v, op @ v, atol=0)


def test_operator_algebra_numpy_matrix_scipy_and_counter():
    model = small_mlp()
    X, Y = classification_data()
    op = HessianOperator(model, nn.CrossEntropyLoss(), (X, Y))
    H = reference_hessian(model, nn.CrossEntropyLoss(), X, Y).numpy()
    v = np.random.default_rng(0).standard_normal(op.n)
    out = op @ v
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_allclose(out, H @ v, atol=TOL)
    V = np.random.default_rng(1).standard_normal((op.n, 3))
    np.testing.assert_allclose(op @ V, H @ V, atol=TOL)
    assert op.num_products == 4
    assert op.T is op and op.shape == (op.n, op.n)
    lin = op.to_scipy()
    np.testing.assert_allclose(lin.rmatvec(v), H @ v, atol=TOL)
    vals = eigsh(lin, k=2, which="LA", return_eigenvectors=False)
    np.testing.assert_allclose(np.sort(vals), np.linalg.eigvalsh(H)[-2:], atol=1e-9)
    op.reset_counter()
    assert op.num_products == 0
    with pytest.raises(ValueError, match=r"cannot multiply an array of shape \(5,\)"):
        op @ np.ones(5)


def test_loss_and_gradient_match_autograd():
    model = small_mlp()
    X, Y = classification_data(n=31)
    op = HessianOperator(model, nn.CrossEntropyLoss(), (X, Y), batch_size=8, cache_graphs=False)
    loss, grad = op.loss_and_gradient()
    m2 = small_mlp()
    ref_loss = nn.CrossEntropyLoss()(m2(X), Y)
    ref = torch.autograd.grad(ref_loss, list(m2.parameters()))
    assert abs(loss - ref_loss.item()) < 1e-12
    assert torch.allclose(grad, torch.cat([g.reshape(-1) for g in ref]), atol=1e-12)
    opc = HessianOperator(model, nn.CrossEntropyLoss(), (X, Y), batch_size=8, cache_graphs=True)
    loss_c, grad_c = opc.loss_and_gradient()
    assert abs(loss_c - loss) < 1e-12 and torch.allclose(grad_c, grad, atol=1e-12)


def test_torchscript_and_export_modules():
    model = small_mlp()
    X, Y = classification_data()
    loss = nn.CrossEntropyLoss()
    H = reference_hessian(model, loss, X, Y)
    scripted = torch.jit.script(model)
    op = HessianOperator(scripted, loss, (X, Y))
    assert torch.allclose(_dense(op), H, atol=TOL, rtol=0)
    exported = torch.export.export(model, (X,)).module()
    op = HessianOperator(exported, loss, (X, Y))
    assert torch.allclose(_dense(op), H, atol=TOL, rtol=0)


def test_dense_matrix_and_dense_operator():
    A = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    A = A + A.T
    op = DenseSymmetricOperator(A)
    assert torch.allclose(dense_matrix(op), A, atol=1e-14)
    with pytest.raises(ValueError, match="not symmetric"):
        DenseSymmetricOperator(torch.triu(A))
    with pytest.raises(ValueError, match="more than max_size=3"):
        dense_matrix(op, max_size=3)


# ---------------------------------------------------------------------------- bad input
def test_non_scalar_loss_is_refused():
    model = small_mlp()
    X, Y = classification_data()
    with pytest.raises(ValueError, match=r"\(reduction='none'\) is not a scalar loss"):
        HessianOperator(model, nn.CrossEntropyLoss(reduction="none"), (X, Y))
    op = HessianOperator(model, lambda out, y: (out - 0).pow(2).sum(1), (X, Y))
    with pytest.raises(ValueError, match=r"must return a scalar tensor .*got \(37,\)"):
        op @ torch.ones(op.n, dtype=torch.float64)


def test_data_of_the_wrong_shape_is_refused():
    model = small_mlp()
    X, Y = classification_data()
    op = HessianOperator(model, nn.CrossEntropyLoss(), (X[:, :3], Y))
    with pytest.raises(ValueError, match=r"model failed on batch 0 with inputs of shape \(37, 3\)"):
        op @ torch.ones(op.n, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"inputs X have shape \(37, 4\) but targets Y have shape \(30,\)"):
        HessianOperator(model, nn.CrossEntropyLoss(), (X, Y[:30]))
    with pytest.raises(ValueError, match=r"batch 1: inputs have shape \(5, 4\) but targets have shape \(4,\)"):
        HessianOperator(model, nn.CrossEntropyLoss(), [(X[:5], Y[:5]), (X[5:10], Y[5:9])]).loss_and_gradient()
    with pytest.raises(TypeError, match="data must be a DataLoader"):
        HessianOperator(model, nn.CrossEntropyLoss(), "data.npz")


def test_bad_parameter_pattern_and_settings():
    model = small_mlp()
    X, Y = classification_data()
    with pytest.raises(ValueError, match=r"pattern 'conv\*' matches no parameter; available: 0.weight"):
        HessianOperator(model, nn.CrossEntropyLoss(), (X, Y), params=["conv*"])
    with pytest.raises(ValueError, match="mode must be"):
        HessianOperator(model, nn.CrossEntropyLoss(), (X, Y), mode="test")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        HessianOperator(lambda x: x, nn.CrossEntropyLoss(), (X, Y))


def test_inference_mode_is_refused():
    model = small_mlp()
    X, Y = classification_data()
    op = HessianOperator(model, nn.CrossEntropyLoss(), (X, Y))
    with torch.inference_mode():
        with pytest.raises(RuntimeError, match="cannot differentiate under torch.inference_mode"):
            op @ torch.ones(op.n, dtype=torch.float64)
    with torch.inference_mode():
        Xi, Yi = X.clone(), Y.clone()
    # inference tensors as data are fine outside inference mode; no_grad is overridden
    op2 = HessianOperator(model, nn.CrossEntropyLoss(), (Xi, Yi))
    with torch.no_grad():
        assert torch.allclose(_dense(op2), _dense(op), atol=TOL)
