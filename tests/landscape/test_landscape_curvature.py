"""GGN, Fisher and KFAC operators against dense float64 references built here from per-sample Jacobians.

The references never call the package: per-sample Jacobians ``J_i`` (``torch.func.jacrev``),
per-sample loss Hessians in output space (``torch.func.hessian`` of each sample's own loss
term), per-sample parameter gradients (``torch.func.grad``), and for the true Fisher the
expectation over the model's predictive distribution written out by enumerating the labels.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from landscape_helpers import (
    assert_unchanged,
    classification_data,
    one_thread,  # noqa: F401 (autouse fixture)
    small_mlp,
    snapshot,
)
from torch import nn
from torch.func import functional_call, grad, hessian, jacrev, vmap

from surrogates.errors import InputError
from surrogates.landscape import (
    FisherOperator,
    GGNOperator,
    HessianOperator,
    KFACOperator,
    compare_top_eigenvalues,
    exact_spectrum,
    teacher_classification,
)

TOL = 1e-12
D_OUT = 3


def _dense(op):
    return op @ torch.eye(op.n, dtype=torch.float64)


def _regression_targets(n=37, d_out=D_OUT, seed=2):
    return torch.randn(n, d_out, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------------------- references
def _per_sample_terms(loss_name):
    """Each sample's own loss term l_i, with L = (1/N) sum_i l_i for the torch loss of that name."""
    if loss_name == "ce":
        return lambda o, y: F.cross_entropy(o[None], y[None])
    if loss_name == "mse":
        return lambda o, y: ((o - y) ** 2).mean()  # nn.MSELoss(): mean over the D outputs too
    if loss_name == "mse_sum":
        return lambda o, y: ((o - y) ** 2).sum()  # nn.MSELoss(reduction="sum"), divided by N
    raise KeyError(loss_name)


LOSSES = {"ce": nn.CrossEntropyLoss(), "mse": nn.MSELoss(), "mse_sum": nn.MSELoss(reduction="sum")}


class Reference:
    """Dense per-sample quantities of a model in float64, over the parameters ``names`` (default all)."""

    def __init__(self, model, X, names=None):
        self.model = copy.deepcopy(model).double().eval()
        named = dict(self.model.named_parameters())
        self.names = list(named) if names is None else list(names)
        self.shapes = [named[n].shape for n in self.names]
        self.sizes = [named[n].numel() for n in self.names]
        self.theta = torch.cat([named[n].detach().reshape(-1) for n in self.names])
        self.X = X.double()

    def f(self, theta, x):
        params = {n: p.view(s) for n, p, s in zip(self.names, torch.split(theta, self.sizes), self.shapes)}
        return functional_call(self.model, params, (x[None],))[0]

    def outputs(self):
        return vmap(self.f, in_dims=(None, 0))(self.theta, self.X)

    def jacobians(self):
        """``(N, D, n)``: J_i = d f(x_i) / d theta."""
        return vmap(jacrev(self.f), in_dims=(None, 0))(self.theta, self.X)

    def ggn(self, term, Y):
        J = self.jacobians()
        H = vmap(hessian(term))(self.outputs(), Y)  # (N, D, D) per-sample loss Hessians
        return torch.einsum("ica,icd,idb->ab", J, H, J) / len(self.X)

    def per_sample_gradients(self, term, Y):
        return vmap(grad(lambda th, x, y: term(self.f(th, x), y)), in_dims=(None, 0, 0))(self.theta, self.X, Y)

    def empirical_fisher(self, term, Y):
        g = self.per_sample_gradients(term, Y)
        return g.T @ g / len(self.X)

    def true_fisher_ce(self):
        """(1/N) sum_i sum_k p_ik g_ik g_ik^T, g_ik the gradient of CE with label k (labels enumerated)."""
        p = torch.softmax(self.outputs(), dim=1)
        total = 0.0
        for k in range(p.shape[1]):
            labels = torch.full((len(self.X),), k)
            g = self.per_sample_gradients(_per_sample_terms("ce"), labels)
            total = total + torch.einsum("i,ia,ib->ab", p[:, k], g, g)
        return total / len(self.X)

    def true_fisher_mse(self, scale):
        """Gaussian predictive y ~ N(f, I): E[(f - y)(f - y)^T] = I, times the loss's factor ``scale``."""
        J = self.jacobians()
        return scale * torch.einsum("ica,icb->ab", J, J) / len(self.X)


def _data(loss_name, n=37):
    X, Y = classification_data(n=n)
    return X, (Y if loss_name == "ce" else _regression_targets(n))


# ---------------------------------------------------------------------------- GGN
@pytest.mark.parametrize("loss_name", ["ce", "mse", "mse_sum"])
@pytest.mark.parametrize("batch_size,cache", [(None, True), (7, False), (10, True)])
def test_ggn_matches_dense_reference(loss_name, batch_size, cache):
    model = small_mlp()
    X, Y = _data(loss_name)
    op = GGNOperator(model, LOSSES[loss_name], (X, Y), batch_size=batch_size, cache_graphs=cache)
    G = Reference(model, X).ggn(_per_sample_terms(loss_name), Y)
    assert torch.allclose(_dense(op), G, atol=TOL * G.abs().max(), rtol=0)
    assert op.num_samples == 37


def test_ggn_of_a_linear_model_with_mse_is_the_hessian():
    # f linear in theta: the dropped term sum_k dl/df_k * d2f_k/dtheta2 vanishes
    model = nn.Linear(4, D_OUT).double()
    X, Y = _data("mse")
    G = _dense(GGNOperator(model, nn.MSELoss(), (X, Y)))
    H = _dense(HessianOperator(model, nn.MSELoss(), (X, Y)))
    assert torch.allclose(G, H, atol=1e-13, rtol=0)


def test_ggn_differs_from_the_hessian_of_a_nonlinear_net():
    model = small_mlp()
    X, Y = _data("ce")
    G = _dense(GGNOperator(model, nn.CrossEntropyLoss(), (X, Y)))
    H = _dense(HessianOperator(model, nn.CrossEntropyLoss(), (X, Y)))
    assert (G - H).abs().max() > 1e-3 * H.abs().max()
    assert np.linalg.eigvalsh(G.numpy()).min() > -1e-12  # positive semi-definite for a convex loss


# ---------------------------------------------------------------------------- Fisher
@pytest.mark.parametrize("loss_name", ["ce", "mse", "mse_sum"])
@pytest.mark.parametrize("batch_size,cache", [(None, True), (7, False)])
def test_empirical_fisher_is_the_mean_outer_product_of_per_sample_gradients(loss_name, batch_size, cache):
    model = small_mlp()
    X, Y = _data(loss_name)
    op = FisherOperator(model, LOSSES[loss_name], (X, Y), kind="empirical", batch_size=batch_size, cache_graphs=cache)
    EF = Reference(model, X).empirical_fisher(_per_sample_terms(loss_name), Y)
    assert torch.allclose(_dense(op), EF, atol=TOL * EF.abs().max(), rtol=0)


@pytest.mark.parametrize("batch_size", [None, 8])
def test_true_fisher_of_cross_entropy_is_the_expectation_over_labels_and_equals_the_ggn(batch_size):
    model = small_mlp()
    X, Y = _data("ce")
    op = FisherOperator(model, nn.CrossEntropyLoss(), (X, Y), kind="true", batch_size=batch_size)
    ref = Reference(model, X)
    TF = ref.true_fisher_ce()
    assert torch.allclose(_dense(op), TF, atol=TOL * TF.abs().max(), rtol=0)
    G = ref.ggn(_per_sample_terms("ce"), Y)
    assert torch.allclose(TF, G, atol=1e-13, rtol=0)
    EF = ref.empirical_fisher(_per_sample_terms("ce"), Y)
    assert (EF - TF).abs().max() > 1e-2 * TF.abs().max()  # the empirical Fisher is another matrix


@pytest.mark.parametrize("loss_name,scale", [("mse", 2.0 / D_OUT), ("mse_sum", 2.0)])
def test_true_fisher_of_mse_is_the_gaussian_expectation(loss_name, scale):
    model = small_mlp()
    X, Y = _data(loss_name)
    op = FisherOperator(model, LOSSES[loss_name], (X, Y), kind="true", batch_size=9)
    TF = Reference(model, X).true_fisher_mse(scale)
    assert torch.allclose(_dense(op), TF, atol=TOL * TF.abs().max(), rtol=0)


def test_true_fisher_of_logistic_loss_enumerates_both_labels():
    model = small_mlp(d_out=2)
    X, _ = classification_data(n=29)
    Y = (torch.randn(29, 2, generator=torch.Generator().manual_seed(4)) > 0).double()
    op = FisherOperator(model, nn.BCEWithLogitsLoss(), (X, Y), kind="true")
    ref = Reference(model, X)
    s = torch.sigmoid(ref.outputs())
    total = 0.0
    for labels in ([0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]):  # all joint labels of 2 outputs
        lab = torch.tensor(labels, dtype=torch.float64).expand(29, 2)
        prob = torch.where(lab > 0, s, 1 - s).prod(1)
        g = ref.per_sample_gradients(lambda o, y: F.binary_cross_entropy_with_logits(o, y), lab)
        total = total + torch.einsum("i,ia,ib->ab", prob, g, g)
    # BCE's mean also divides by the 2 outputs: l_i = (1/2) NLL_i, so M_i = (1/2) E[grad NLL grad NLL^T]
    TF = 2.0 * total / 29  # the enumerated g are gradients of l_i = NLL_i / 2
    assert torch.allclose(_dense(op), TF, atol=TOL * TF.abs().max(), rtol=0)


def test_ignored_targets_drop_out_of_both_fishers():
    model = small_mlp()
    X, Y = _data("ce")
    Y = Y.clone()
    Y[::4] = -100
    keep = Y != -100
    loss = nn.CrossEntropyLoss()  # mean over the kept targets only
    n_keep = int(keep.sum())
    ref = Reference(model, X[keep])
    for kind, expected in (
        ("empirical", ref.empirical_fisher(_per_sample_terms("ce"), Y[keep])),
        ("true", ref.true_fisher_ce()),
    ):
        op = FisherOperator(model, loss, (X, Y), kind=kind)
        # L = (1/n_keep) sum_kept CE; the operator divides by N = 37 samples, so l_i = (37/n_keep) CE_i
        c = 37 / n_keep
        scaled = expected * (c * c if kind == "empirical" else c) * n_keep / 37
        assert torch.allclose(_dense(op), scaled, atol=TOL * scaled.abs().max(), rtol=0), kind


# ---------------------------------------------------------------------------- shared interface
@pytest.mark.parametrize("make", [
    lambda m, d, **kw: GGNOperator(m, nn.CrossEntropyLoss(), d, **kw),
    lambda m, d, **kw: FisherOperator(m, nn.CrossEntropyLoss(), d, kind="empirical", **kw),
    lambda m, d, **kw: FisherOperator(m, nn.CrossEntropyLoss(), d, kind="true", **kw),
    lambda m, d, **kw: KFACOperator(m, nn.CrossEntropyLoss(), d, **kw),
], ids=["ggn", "empirical", "true", "kfac"])
def test_parameter_subset_is_the_diagonal_block(make):
    model = small_mlp()
    X, Y = _data("ce")
    full = _dense(make(model, (X, Y)))
    op = make(model, (X, Y), params=["2.*"])
    assert op.param_names == ["2.weight", "2.bias"]
    first = 4 * 6 + 6
    assert torch.allclose(_dense(op), full[first:, first:], atol=1e-13, rtol=0)
    op_w = make(model, (X, Y), params="0.weight")
    assert torch.allclose(_dense(op_w), full[:24, :24], atol=1e-13, rtol=0)
    op_b = make(model, (X, Y), params="0.bias")
    assert torch.allclose(_dense(op_b), full[24:30, 24:30], atol=1e-13, rtol=0)


def test_parameter_subset_against_the_reference():
    model = small_mlp()
    X, Y = _data("mse")
    names = ["0.bias", "2.weight"]
    ref = Reference(model, X, names=names)
    G = ref.ggn(_per_sample_terms("mse"), Y)
    EF = ref.empirical_fisher(_per_sample_terms("mse"), Y)
    assert torch.allclose(_dense(GGNOperator(model, nn.MSELoss(), (X, Y), params=names)), G, atol=TOL, rtol=0)
    assert torch.allclose(_dense(FisherOperator(model, nn.MSELoss(), (X, Y), params=names)), EF, atol=TOL, rtol=0)


@pytest.mark.parametrize("make", [
    lambda m, d, c: GGNOperator(m, nn.CrossEntropyLoss(), d, cache_graphs=c),
    lambda m, d, c: FisherOperator(m, nn.CrossEntropyLoss(), d, kind="empirical", cache_graphs=c),
    lambda m, d, c: FisherOperator(m, nn.CrossEntropyLoss(), d, kind="true", cache_graphs=c),
    lambda m, d, c: KFACOperator(m, nn.CrossEntropyLoss(), d),
], ids=["ggn", "empirical", "true", "kfac"])
def test_model_state_untouched_including_grads_flags_modes_and_hooks(make):
    model = small_mlp(dropout=True)
    model.train()
    model[0].bias.requires_grad_(False)
    X, Y = _data("ce")
    nn.CrossEntropyLoss()(model(X), Y).backward()  # pre-existing .grad
    snap = snapshot(model)
    for cache in (False, True):
        op = make(model, (X, Y), cache)
        v = torch.randn(op.n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        first = op @ v
        op.loss_and_gradient()
        assert torch.equal(op @ v, first)  # eval mode: dropout off, deterministic
        assert "0.bias" not in op.param_names
    assert_unchanged(model, snap)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("make", [
    lambda m, d: GGNOperator(m, nn.CrossEntropyLoss(), d),
    lambda m, d: FisherOperator(m, nn.CrossEntropyLoss(), d, kind="empirical"),
    lambda m, d: KFACOperator(m, nn.CrossEntropyLoss(), d),
], ids=["ggn", "empirical", "kfac"])
def test_operator_algebra_numpy_matrix_scipy_counter_and_symmetry(make):
    model = small_mlp()
    X, Y = _data("ce")
    op = make(model, (X, Y))
    M = _dense(make(model, (X, Y))).numpy()
    assert np.abs(M - M.T).max() <= 1e-14 * np.abs(M).max()
    v = np.random.default_rng(0).standard_normal(op.n)
    out = op @ v
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_allclose(out, M @ v, atol=1e-12)
    V = np.random.default_rng(1).standard_normal((op.n, 3))
    np.testing.assert_allclose(op @ V, M @ V, atol=1e-12)
    assert op.num_products == 4
    assert op.T is op and op.shape == (op.n, op.n)
    np.testing.assert_allclose(op.to_scipy().matvec(v), M @ v, atol=1e-12)
    torch_out = op @ torch.as_tensor(v, dtype=torch.float32)
    assert torch_out.dtype == torch.float32
    op.reset_counter()
    assert op.num_products == 0


def test_float64_copy_of_a_float32_model_and_loss_and_gradient():
    model32 = small_mlp(dtype=torch.float32)
    X, Y = classification_data(dtype=torch.float32)
    snap = snapshot(model32)
    G = Reference(model32, X).ggn(_per_sample_terms("ce"), Y)
    op = GGNOperator(model32, nn.CrossEntropyLoss(), (X, Y), dtype=torch.float64)
    assert torch.allclose(_dense(op), G, atol=1e-13, rtol=0)
    loss, g = op.loss_and_gradient()
    h_loss, h_g = HessianOperator(model32, nn.CrossEntropyLoss(), (X, Y), dtype=torch.float64).loss_and_gradient()
    assert abs(loss - h_loss) < 1e-14 and torch.allclose(g, h_g, atol=1e-15)
    assert_unchanged(model32, snap)
    assert torch.allclose(_dense(GGNOperator(model32, nn.CrossEntropyLoss(), (X, Y))), G, atol=1e-6, rtol=0)


def test_torchscript_and_export_modules():
    model = small_mlp()
    X, Y = _data("ce")
    G = Reference(model, X).ggn(_per_sample_terms("ce"), Y)
    for m in (torch.jit.script(model), torch.export.export(model, (X,)).module()):
        assert torch.allclose(_dense(GGNOperator(m, nn.CrossEntropyLoss(), (X, Y))), G, atol=TOL, rtol=0)
    with pytest.raises(InputError, match="TorchScript"):
        KFACOperator(torch.jit.script(model), nn.CrossEntropyLoss(), (X, Y))


# ---------------------------------------------------------------------------- KFAC
def _kfac_block_reference(model, X, Y, loss_name, layer_index):
    """kron(B, A) of one Linear of an nn.Sequential from per-sample Jacobians w.r.t. its output."""
    model = copy.deepcopy(model).double().eval()
    layers = list(model)
    head, rest = nn.Sequential(*layers[:layer_index]), nn.Sequential(*layers[layer_index + 1 :])
    with torch.no_grad():
        a = head(X.double()) if layer_index else X.double()
        z = layers[layer_index](a)
    f_rest = lambda zi: rest(zi[None])[0] if len(rest) else zi  # noqa: E731
    Jz = vmap(jacrev(f_rest))(z)  # (N, D, d_out)
    H = vmap(hessian(_per_sample_terms(loss_name)))(vmap(f_rest)(z), Y)
    N = len(X)
    B = torch.einsum("ico,icd,idp->op", Jz, H, Jz) / N
    a1 = torch.cat([a, torch.ones(N, 1, dtype=a.dtype)], 1)
    A = a1.T @ a1 / N
    d_out, d_in = layers[layer_index].weight.shape
    K = torch.kron(B.contiguous(), A.contiguous())  # in [W | b] row-major coordinates
    perm = [o * (d_in + 1) + j for o in range(d_out) for j in range(d_in)] + [o * (d_in + 1) + d_in for o in range(d_out)]
    return K[np.ix_(perm, perm)]


@pytest.mark.parametrize("loss_name", ["ce", "mse", "mse_sum"])
def test_kfac_blocks_are_kron_of_factors_built_from_jacobians(loss_name):
    model = small_mlp()
    X, Y = _data(loss_name)
    op = KFACOperator(model, LOSSES[loss_name], [(X[:20], Y[:20]), (X[20:], Y[20:])])
    K = _dense(op)
    w0 = 4 * 6 + 6
    ref0 = _kfac_block_reference(model, X, Y, loss_name, 0)
    ref2 = _kfac_block_reference(model, X, Y, loss_name, 2)
    scale = K.abs().max()
    assert torch.allclose(K[:w0, :w0], ref0, atol=TOL * scale, rtol=0)
    assert torch.allclose(K[w0:, w0:], ref2, atol=TOL * scale, rtol=0)
    assert torch.equal(K[:w0, w0:], torch.zeros(w0, op.n - w0, dtype=K.dtype))  # block diagonal


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_kfac_is_exact_on_a_single_linear_layer_with_mse(reduction):
    model = nn.Linear(4, D_OUT).double()
    X, Y = _data("mse")
    term = _per_sample_terms("mse" if reduction == "mean" else "mse_sum")
    G = Reference(model, X).ggn(term, Y)
    K = KFACOperator(model, nn.MSELoss(reduction=reduction), (X, Y), batch_size=10)
    assert torch.allclose(_dense(K), G, atol=TOL * G.abs().max(), rtol=0)
    np.testing.assert_allclose(K.eigenvalues(), np.linalg.eigvalsh(G.numpy())[::-1], atol=1e-12 * float(G.abs().max()))


def test_kfac_of_a_strided_conv_layer_from_patches_cut_by_hand():
    # one Conv2d (3x3, stride 2, padding 1) on 5x5 inputs is the whole net, MSE (mean over D outputs):
    # M_i = (2/D) I, so B = T (2/D) I and A = (1/(N T)) sum of the [patch, 1] outer products
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1).double()
    g = torch.Generator().manual_seed(1)
    X = torch.randn(6, 2, 5, 5, generator=g, dtype=torch.float64)
    Y = torch.randn(6, 3, 3, 3, generator=g, dtype=torch.float64)
    N, T, D = 6, 9, 27
    Xp = F.pad(X, (1, 1, 1, 1))
    patches = [Xp[:, :, 2 * r : 2 * r + 3, 2 * c : 2 * c + 3].reshape(N, -1) for r in range(3) for c in range(3)]
    a1 = torch.cat([torch.cat([p, torch.ones(N, 1, dtype=p.dtype)], 1) for p in patches])  # (N T, 19)
    A = a1.T @ a1 / (N * T)
    B = T * (2.0 / D) * torch.eye(3, dtype=torch.float64)
    K = torch.kron(B, A)
    d_in = 2 * 9
    perm = [o * (d_in + 1) + j for o in range(3) for j in range(d_in)] + [o * (d_in + 1) + d_in for o in range(3)]
    op = KFACOperator(conv, nn.MSELoss(), (X, Y), batch_size=4)
    assert torch.allclose(_dense(op), K[np.ix_(perm, perm)], atol=1e-13, rtol=0)


def test_kfac_is_not_exact_on_a_hidden_layer():
    model = small_mlp()
    X, Y = _data("mse")
    G = Reference(model, X).ggn(_per_sample_terms("mse"), Y)
    K = _dense(KFACOperator(model, nn.MSELoss(), (X, Y)))
    w0 = 4 * 6 + 6
    assert (K[:w0, :w0] - G[:w0, :w0]).abs().max() > 1e-3 * G.abs().max()


def test_kfac_eigenvalues_and_damped_inverse_from_the_factors():
    model = small_mlp()
    X, Y = _data("ce")
    op = KFACOperator(model, nn.CrossEntropyLoss(), (X, Y))
    K = _dense(op)
    exact = np.linalg.eigvalsh(K.numpy())[::-1]
    np.testing.assert_allclose(op.eigenvalues(), exact, atol=1e-13)
    np.testing.assert_allclose(op.eigenvalues(3), exact[:3], atol=1e-13)
    for damping in (1e-3, 0.5):
        inv = op.inverse(damping)
        M = K + damping * torch.eye(op.n, dtype=torch.float64)
        cond = float(np.linalg.cond(M.numpy()))
        assert torch.allclose(_dense(inv) @ M, torch.eye(op.n, dtype=torch.float64), atol=1e-14 * cond, rtol=0)
        v = np.random.default_rng(2).standard_normal(op.n)
        x = np.linalg.solve(M.numpy(), v)
        np.testing.assert_allclose(inv @ v, x, rtol=0, atol=1e-14 * cond * np.abs(x).max())
    for bad in (0.0, -1.0, float("nan"), "1"):
        with pytest.raises(InputError, match="damping must be a positive finite number"):
            op.inverse(bad)
    with pytest.raises(InputError, match=r"k must be an int in \[1, 51\]"):
        op.eigenvalues(0)


def test_kfac_empirical_kind_factors_the_observed_gradients():
    model = nn.Linear(4, D_OUT).double()
    X, Y = _data("ce")
    # one Linear layer, one sample: the empirical Fisher g g^T = (r r^T) kron (a a^T) is Kronecker exactly
    x1, y1 = X[:1], Y[:1]
    EF = Reference(model, x1).empirical_fisher(_per_sample_terms("ce"), y1)
    K = KFACOperator(model, nn.CrossEntropyLoss(), (x1, y1), kind="empirical")
    assert torch.allclose(_dense(K), EF, atol=TOL * EF.abs().max(), rtol=0)


def test_kfac_top_eigenvalues_close_to_the_ggn_on_a_trained_mlp():
    ex = teacher_classification(n_samples=256, d_in=8, hidden=(16, 16), n_classes=4, steps=150, lr=1e-2, dtype=torch.float64)
    data = (ex.X, ex.Y)
    kfac = KFACOperator(ex.model, ex.loss_fn, data)
    ggn = GGNOperator(ex.model, ex.loss_fn, data)
    cmp = compare_top_eigenvalues(kfac, ggn, k=5)
    exact_top = exact_spectrum(GGNOperator(ex.model, ex.loss_fn, data))[::-1][:5]
    np.testing.assert_allclose(cmp.exact, exact_top, rtol=1e-8)
    # measured (484 parameters, loss 0.013): KFAC/GGN = 0.630, 0.659, 0.763, 0.880, 0.931 for the top 5;
    # block-diagonal KFAC misses the cross-layer coupling that lifts the GGN's leading eigenvalues
    assert np.all((cmp.ratio > 0.5) & (cmp.ratio < 1.1)), cmp.ratio
    np.testing.assert_allclose(cmp.ratio, cmp.approx / cmp.exact)


# ---------------------------------------------------------------------------- curvlinops
class _TinyCNN(nn.Sequential):
    def __init__(self):
        torch.manual_seed(3)
        super().__init__(
            nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, 2, 2, stride=2), nn.Tanh(),
            nn.Flatten(), nn.Linear(2 * 3 * 3, 3),
        )
        self.double()


def _cnn_data(n=13):
    g = torch.Generator().manual_seed(5)
    return torch.randn(n, 1, 6, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


@pytest.mark.parametrize("loss_name", ["ce", "mse", "mse_sum"])
def test_against_curvlinops_ggn_ef_and_kfac(loss_name):
    curvlinops = pytest.importorskip("curvlinops")
    model = small_mlp()
    X, Y = _data(loss_name)
    data = [(X[:20], Y[:20]), (X[20:], Y[20:])]
    loss = LOSSES[loss_name]
    params = list(model.parameters())
    eye = np.eye(sum(p.numel() for p in params))
    # conventions: a sum-reduced loss here is divided by N (as for HessianOperator), and curvlinops'
    # empirical Fisher of a mean-reduced MSE counts each of the D outputs as a sample (D times ours)
    n_factor = 37.0 if loss_name == "mse_sum" else 1.0
    ef_factor = n_factor * (D_OUT if loss_name == "mse" else 1.0)
    pairs = [
        (GGNOperator(model, loss, data), curvlinops.GGNLinearOperator(model, loss, params, data), n_factor),
        (FisherOperator(model, loss, data), curvlinops.EFLinearOperator(model, loss, params, data), ef_factor),
        (
            KFACOperator(model, loss, data),
            curvlinops.KFACLinearOperator(model, loss, params, data, fisher_type="type-2", separate_weight_and_bias=False),
            n_factor,
        ),
        (
            KFACOperator(model, loss, data, kind="empirical"),
            curvlinops.KFACLinearOperator(model, loss, params, data, fisher_type="empirical", separate_weight_and_bias=False),
            ef_factor,
        ),
    ]
    for ours, theirs, factor in pairs:
        A, B = (ours @ eye) * factor, theirs.to_scipy() @ eye
        np.testing.assert_allclose(A, B, rtol=0, atol=1e-12 * np.abs(B).max(), err_msg=type(ours).__name__)


def test_against_curvlinops_true_fisher_monte_carlo():
    curvlinops = pytest.importorskip("curvlinops")
    model = small_mlp()
    for loss_name in ("ce", "mse"):
        X, Y = _data(loss_name)
        loss = LOSSES[loss_name]
        ours = _dense(FisherOperator(model, loss, (X, Y), kind="true")).numpy()
        mc = curvlinops.FisherMCLinearOperator(model, loss, list(model.parameters()), [(X, Y)], mc_samples=2000, seed=1)
        theirs = mc.to_scipy() @ np.eye(ours.shape[0])
        # 2000 samples per point: Monte Carlo error ~1/sqrt(2000 * 37) of the entries' scale (measured 0.4-0.9 %)
        assert np.abs(ours - theirs).max() < 0.03 * np.abs(ours).max(), loss_name


def test_kfac_of_a_cnn_against_curvlinops():
    curvlinops = pytest.importorskip("curvlinops")
    model = _TinyCNN()
    X, Y = _cnn_data()
    data = [(X[:7], Y[:7]), (X[7:], Y[7:])]
    loss = nn.CrossEntropyLoss()
    params = list(model.parameters())
    eye = np.eye(sum(p.numel() for p in params))
    for kind, ftype in (("ggn", "type-2"), ("empirical", "empirical")):
        ours = KFACOperator(model, loss, data, kind=kind) @ eye
        theirs = curvlinops.KFACLinearOperator(
            model, loss, params, data, fisher_type=ftype, separate_weight_and_bias=False
        ).to_scipy() @ eye
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12 * np.abs(theirs).max(), err_msg=kind)
    G = GGNOperator(model, loss, data) @ eye
    np.testing.assert_allclose(G, curvlinops.GGNLinearOperator(model, loss, params, data).to_scipy() @ eye, atol=1e-13)


# ---------------------------------------------------------------------------- bad input
def test_bad_kinds_losses_and_layers_are_refused_by_name():
    model = small_mlp()
    X, Y = _data("ce")
    with pytest.raises(InputError, match=r"kind must be 'empirical' or 'true'; got kind='ggn'"):
        FisherOperator(model, nn.CrossEntropyLoss(), (X, Y), kind="ggn")
    with pytest.raises(InputError, match=r"kind must be one of 'ggn', 'empirical', 'true'; got kind='exact'"):
        KFACOperator(model, nn.CrossEntropyLoss(), (X, Y), kind="exact")
    with pytest.raises(InputError, match=r"predictive distribution.*got loss_fn=function"):
        FisherOperator(model, lambda o, y: F.cross_entropy(o, y), (X, Y), kind="true")
    with pytest.raises(InputError, match="label_smoothing=0.1"):
        FisherOperator(model, nn.CrossEntropyLoss(label_smoothing=0.1), (X, Y), kind="true")
    with pytest.raises(InputError, match="class weights"):
        FisherOperator(model, nn.CrossEntropyLoss(weight=torch.ones(3, dtype=torch.float64)), (X, Y), kind="true")
    norm = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 3)).double()
    with pytest.raises(InputError, match=r"parameters \['1.weight', '1.bias'\] belong to other modules"):
        KFACOperator(norm, nn.CrossEntropyLoss(), (X, Y))
    assert KFACOperator(norm, nn.CrossEntropyLoss(), (X, Y), params=["0.*", "2.*"]).n == 30 + 21
    shared = nn.Linear(4, 4).double()
    twice = nn.Sequential(shared, nn.Tanh(), shared).double()
    with pytest.raises(InputError, match=r"layer '0' to run exactly once per forward pass; it ran 2 times"):
        KFACOperator(twice, nn.CrossEntropyLoss(), (X, torch.randint(0, 4, (37,)))) @ np.ones(20)
    kfac = KFACOperator(model, nn.CrossEntropyLoss(), (X, Y), params="2.*")
    with pytest.raises(InputError, match=r"shape \(51, 51\) but the KFAC operator \(21, 21\)"):
        compare_top_eigenvalues(kfac, GGNOperator(model, nn.CrossEntropyLoss(), (X, Y)))
    with pytest.raises(InputError, match="different parameters"):
        compare_top_eigenvalues(
            KFACOperator(model, nn.CrossEntropyLoss(), (X, Y), params=["0.bias", "2.weight"]),  # 6 + 18
            GGNOperator(model, nn.CrossEntropyLoss(), (X, Y), params="0.weight"),  # 24
        )
    grouped = nn.Sequential(nn.Conv2d(2, 2, 3, groups=2)).double()
    with pytest.raises(InputError, match="groups=1"):
        KFACOperator(grouped, nn.MSELoss(), (torch.zeros(3, 2, 5, 5), torch.zeros(3, 2, 3, 3)))


def test_models_returning_no_batch_tensor_are_refused():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3).double()

        def forward(self, x):
            return self.lin(x), x

    X, Y = _data("ce")
    op = GGNOperator(Pair(), lambda out, y: F.cross_entropy(out[0], y), (X, Y))
    with pytest.raises(InputError, match=r"needs the model to return one tensor .*got tuple"):
        op @ np.ones(op.n)
