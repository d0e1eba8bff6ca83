"""Loss slices, interpolation paths and the critical-point verdict."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from landscape_helpers import (
    assert_unchanged,
    classification_data,
    one_thread,  # noqa: F401 (autouse fixture)
    small_mlp,
    snapshot,
)
from torch import nn

from surrogates.landscape.character import characterize
from surrogates.landscape.lanczos import lanczos
from surrogates.landscape.operator import HessianOperator
from surrogates.landscape.slices import (
    accuracy,
    eigenvector_slice,
    filter_normalized_direction,
    interpolation_path,
    path_grid,
    random_slice,
    slice_row,
    symmetric_grid,
)


def test_grids_contain_origin_and_ends_exactly():
    for n in (3, 21, 51):
        g = symmetric_grid(n, 0.7)
        assert len(g) == n and g[n // 2] == 0.0 and np.array_equal(g, -g[::-1])
        assert g[0] == -0.7 and g[-1] == 0.7
    t = path_grid(11, extend=0.2)
    assert 0.0 in t and 1.0 in t and np.allclose(np.diff(t), 0.1)
    with pytest.raises(ValueError, match="must be an odd int >= 3 so the grid contains the origin, got 20"):
        symmetric_grid(20, 1.0)


def test_filter_normalized_direction():
    model = small_mlp(d_in=5, hidden=7)
    X, Y = classification_data(d_in=5)
    op = HessianOperator(model, nn.CrossEntropyLoss(), (X, Y))
    d = filter_normalized_direction(op, seed=3)
    parts = op.fmodel.unflatten(d)
    for (name, p), dp in zip(model.named_parameters(), parts):
        if p.ndim == 1:
            assert torch.all(dp == 0), name
        else:
            np.testing.assert_allclose(dp.norm(dim=1).numpy(), p.detach().norm(dim=1).numpy(), rtol=1e-12)
    assert torch.equal(d, filter_normalized_direction(op, seed=3))
    assert not torch.equal(d, filter_normalized_direction(op, seed=4))
    db = filter_normalized_direction(op, seed=3, bias="normalize")
    assert float(op.fmodel.unflatten(db)[1].norm()) == pytest.approx(float(model[0].bias.detach().norm()), rel=1e-12)


def test_random_slices_hit_the_origin_and_leave_the_model_alone():
    model = small_mlp(dropout=True).train()
    X, Y = classification_data()
    snap = snapshot(model)
    op = HessianOperator(model, nn.CrossEntropyLoss(), (X, Y), batch_size=10)
    with torch.no_grad():
        ref = nn.CrossEntropyLoss()(copy.deepcopy(model).eval()(X), Y).item()
    s1 = random_slice(op, 7, 0.5, metrics={"accuracy": accuracy})
    assert s1.values["loss"][3] == pytest.approx(ref, abs=1e-14)
    assert s1.values["loss"].shape == (7,) and s1.origin_index == (3,)
    assert np.all((s1.values["accuracy"] >= 0) & (s1.values["accuracy"] <= 1))
    s2 = random_slice(op, 5, 0.5, dims=2)
    assert s2.values["loss"].shape == (5, 5)
    assert s2.values["loss"][2, 2] == pytest.approx(ref, abs=1e-14)
    np.testing.assert_allclose(s2.values["loss"][:, 2], random_slice(op, 5, 0.5).values["loss"], atol=1e-14)
    assert_unchanged(model, snap)


def test_a_1d_slice_reuses_the_row_of_a_2d_slice_exactly():
    model = small_mlp()
    X, Y = classification_data()
    op = HessianOperator(model, nn.CrossEntropyLoss(), (X, Y))
    s2 = random_slice(op, 5, 0.5, dims=2, seed=7, metrics={"accuracy": accuracy})
    fresh = random_slice(op, 9, 0.5, seed=7, metrics={"accuracy": accuracy})
    shared = random_slice(op, 9, 0.5, seed=7, metrics={"accuracy": accuracy}, known=slice_row(s2))
    assert fresh.num_evaluations == 9 and shared.num_evaluations == 4  # every other point is on the 2-D grid
    for key in ("loss", "accuracy"):
        np.testing.assert_array_equal(shared.values[key], fresh.values[key])
    with pytest.raises(ValueError, match="slice_row needs a 2-D slice"):
        slice_row(fresh)


def test_eigenvector_slice_curvature_equals_eigenvalue():
    model = small_mlp()
    X, Y = classification_data()
    op = HessianOperator(model, nn.CrossEntropyLoss(), (X, Y))
    top = lanczos(op, 1, "LA")
    h = 1e-3
    s = eigenvector_slice(op, top.eigenvectors[:, 0], 3, h)
    L = s.values["loss"]
    curvature = (L[0] - 2 * L[1] + L[2]) / h**2
    assert curvature == pytest.approx(top.eigenvalues[0], rel=1e-5)


def test_interpolation_path_ends_are_the_checkpoints():
    model_a = small_mlp(seed=0)
    model_b = small_mlp(seed=1)
    X, Y = classification_data()
    snap = snapshot(model_a)
    op = HessianOperator(model_a, nn.CrossEntropyLoss(), (X, Y))
    path = interpolation_path(op, None, model_b.state_dict(), 6, extend=0.2)
    t = path.axes[0]
    with torch.no_grad():
        la = nn.CrossEntropyLoss()(model_a(X), Y).item()
        lb = nn.CrossEntropyLoss()(model_b(X), Y).item()
    assert path.values["loss"][list(t).index(0.0)] == pytest.approx(la, abs=1e-14)
    assert path.values["loss"][list(t).index(1.0)] == pytest.approx(lb, abs=1e-14)
    assert_unchanged(model_a, snap)
    bad = dict(model_b.state_dict())
    bad["2.weight"] = torch.zeros(5, 5)
    with pytest.raises(ValueError, match=r"checkpoint B: parameter '2.weight' has shape \(5, 5\), the model expects \(3, 6\)"):
        interpolation_path(op, None, bad, 3)
    del bad["0.bias"]
    with pytest.raises(ValueError, match=r"checkpoint B lacks parameters \['0.bias'\]"):
        interpolation_path(op, None, bad, 3)


def test_characterize_verdicts_and_tolerances():
    m = characterize(1e-5, [3.0, 1.0, -1e-4], parameter_norm=1.0, gradient_tol=1e-3, negative_rtol=1e-3)
    assert m.kind == "minimum" and m.num_negative == 0 and m.negative_threshold == pytest.approx(-3e-3)
    assert m.gradient_threshold == pytest.approx(3e-3)  # 1e-3 * max|lambda| 3 * |theta| 1
    s = characterize(1e-5, [3.0, 1.0, -0.5, -0.1], parameter_norm=1.0)
    assert s.kind == "saddle" and s.num_negative == 2 and "lower bound" in s.explanation
    assert characterize(0.5, [1.0], parameter_norm=1.0).kind == "not critical"
    assert characterize(0.5, [1.0], parameter_norm=1000.0).kind == "minimum"  # a Newton step of 0.05 % of |theta|
    assert characterize(0.0, [-1.0, -2.0], parameter_norm=1.0, full_spectrum=True).kind == "maximum"
    assert "did not converge" in characterize(0.0, [1.0], parameter_norm=1.0, converged=False).explanation
    with pytest.raises(ValueError, match="at least one eigenvalue"):
        characterize(0.0, [], parameter_norm=1.0)
    with pytest.raises(ValueError, match="parameter_norm must be a finite non-negative number"):
        characterize(0.0, [1.0], parameter_norm=float("nan"))


@pytest.mark.parametrize("gradient_norm", [1e-4, 2.9e-3, 3.1e-3, 0.1])
def test_characterize_does_not_depend_on_the_units_of_the_loss_or_the_weights(gradient_norm):
    """L -> cL scales g and lambda by c; theta -> a theta scales g by 1/a, lambda by 1/a^2, |theta| by a."""
    eigenvalues = np.array([3.0, 1.0, -0.5, -1e-4])
    reference = characterize(gradient_norm, eigenvalues, parameter_norm=1.0)
    for c in (1e-3, 1e3):
        for a in (1e-2, 1.0, 1e2):
            got = characterize(c * gradient_norm / a, c * eigenvalues / a**2, parameter_norm=a)
            assert (got.kind, got.num_negative) == (reference.kind, reference.num_negative), (c, a)

