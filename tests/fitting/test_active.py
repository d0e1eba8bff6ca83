"""Active sampling: the disagreement score, the spread-out pick, and the loop end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FAST

import surrogates
from surrogates import calculus
from surrogates.errors import DataError
from surrogates.fitting.active import fit_active, hessian_disagreement, pick_spread_out

QUIET = [*FAST, "logger=none"]


def bump(X: np.ndarray) -> np.ndarray:
    """A narrow Gaussian bump at (0.6, 0.6) on an otherwise flat plane: all the curvature is there."""
    return np.exp(-((X - 0.6) ** 2).sum(axis=1) / (2 * 0.1**2)) + 0.1 * X[:, 0]


def test_disagreement_is_the_frobenius_norm_of_the_members_hessian_std():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (300, 2))
    s = surrogates.fit(X, np.sin(2 * X[:, 0]) * X[:, 1], overrides=[*QUIET, "ensemble.size=3"])
    P = rng.uniform(-0.9, 0.9, (40, 2))
    # independent route: each member's Hessian by generic autograd, std over members by hand
    member_hessians = torch.stack([
        calculus.hessian(m, torch.as_tensor(P, dtype=m.dtype), method="vmap-rev-rev")[:, 0] for m in s.members
    ]).numpy()
    std = member_hessians.std(axis=0, ddof=1)
    np.testing.assert_allclose(hessian_disagreement(s, P), np.sqrt((std**2).sum(axis=(1, 2))), rtol=1e-9)

    single = surrogates.fit(X, X[:, 0], overrides=QUIET)
    with pytest.raises(ValueError, match="needs an ensemble"):
        hessian_disagreement(single, P)


def test_pick_takes_the_best_first_and_keeps_picks_apart():
    rng = np.random.default_rng(1)
    candidates = rng.uniform(0, 1, (2000, 2))
    existing = rng.uniform(0, 1, (100, 2))
    scores = -np.linalg.norm(candidates - 0.8, axis=1)  # one hot spot at (0.8, 0.8)
    chosen = pick_spread_out(candidates, scores, existing, 20)
    assert len(chosen) == 20 == len(set(chosen.tolist()))
    assert chosen[0] == np.argmax(scores)
    picked = candidates[chosen]
    gaps = np.linalg.norm(picked[:, None] - picked[None], axis=-1) + np.eye(20) * 9
    top20 = candidates[np.argsort(-scores)[:20]]
    top_gaps = np.linalg.norm(top20[:, None] - top20[None], axis=-1) + np.eye(20) * 9
    assert gaps.min() > 5 * top_gaps.min()  # plain top-k would cluster
    with pytest.raises(ValueError, match="cannot pick 30"):
        pick_spread_out(candidates[:10], scores[:10], existing, 30)


def test_active_loop_spends_the_budget_where_the_curvature_is():
    calls = []

    def black_box(X):
        calls.append(X.shape)
        return bump(X)

    result = fit_active(
        black_box, [-1, -1], [1, 1], initial=200, batch=100, rounds=1, ensemble_size=3, log=None,
        overrides=["logger=none", "trainer.enable_progress_bar=false", "trainer.max_epochs=130", "model.width=64",
                   "model.polish_epochs=30", "model.polish_iterations=20"],
    )
    assert calls == [(200, 2), (100, 2)]
    assert result.X.shape == (300, 2) and result.y.shape == (300,)
    np.testing.assert_array_equal(result.y, bump(result.X))
    assert [r.samples for r in result.rounds] == [200, 300]
    assert result.rounds[-1].surrogate is result.surrogate
    assert result.surrogate.ensemble_size == 3
    np.testing.assert_array_equal(result.surrogate.lower, [-1, -1])
    first = result.rounds[0]
    assert first.chosen_score > first.median_score
    # 7 % of the box lies within 0.3 of the bump's centre; the added samples go there far more often
    near = np.linalg.norm(result.X[200:] - 0.6, axis=1) < 0.3
    assert near.mean() > 0.3, near.mean()


def test_bad_settings_and_a_misbehaving_black_box_are_named():
    with pytest.raises(ValueError, match="ensemble.size must be an integer >= 2"):
        fit_active(bump, [-1, -1], [1, 1], ensemble_size=1)
    with pytest.raises(DataError, match=r"returned shape \(7, 3, 2\)"):
        fit_active(lambda X: np.zeros((len(X), 3, 2)), [-1, -1], [1, 1], initial=7, log=None)


def test_fit_checks_the_box_it_is_given():
    X = np.random.default_rng(0).uniform(-1, 1, (50, 2))
    X[[4, 9]] = 1.5
    with pytest.raises(DataError, match=r"inputs in row\(s\) 4, 9 \(0-based\) lie outside"):
        surrogates.fit(X, X[:, 0], lower=[-1, -1], upper=[1, 1], overrides=QUIET)
    with pytest.raises(DataError, match="both lower and upper"):
        surrogates.fit(X, X[:, 0], lower=[-1, -1], overrides=QUIET)
    with pytest.raises(DataError, match=r"shape \(2,\)"):
        surrogates.fit(X, X[:, 0], lower=[-2, -2, -2], upper=[2, 2, 2], overrides=QUIET)


def test_train_command_samples_a_test_function_actively(compose_config, tmp_path, capsys):
    from surrogates.cli.train import run

    cfg = compose_config("train", [
        *QUIET, "data.source.n_samples=100", "data.source.noise=0.01", "ensemble.size=2",
        "active.rounds=2", "active.batch=30",
    ])
    summary = run(cfg, str(tmp_path))
    assert [r["samples"] for r in summary["active"]] == [100, 130, 160]
    assert summary["samples"]["train"] + summary["samples"]["validation"] == 160
    assert summary["derivatives"]["hessian"]["median"] > 0  # the final ensemble against quartic's exact Hessian
    on_disk = surrogates.load(tmp_path / "surrogate.safetensors")
    assert on_disk.ensemble_size == 2 and on_disk.info["samples"] == 160
    assert sorted(p.name for p in tmp_path.glob("round*")) == ["round0", "round1"]
    assert "active sampling: 2 rounds, samples 100 → 130 → 160" in capsys.readouterr().out


def test_gradient_samples_of_later_rounds_are_kept(compose_config, tmp_path):
    from surrogates.fitting.active import active_train
    from surrogates.fitting.sources import FunctionSource

    cfg = compose_config("train", [*QUIET, "ensemble.size=2"])
    source = FunctionSource("quad2", n_samples=60, with_gradients=True)
    result = active_train(cfg, source, tmp_path, rounds=1, batch=20, log=None)
    assert result.X.shape == (80, 2) and result.y.shape == (80,)
    np.testing.assert_allclose(result.y, source.function.value(result.X), rtol=1e-12)
    np.testing.assert_allclose(result.gradients[:, 0], source.function.gradient(result.X), rtol=1e-12)
    assert result.summary["samples"]["train"] + result.summary["samples"]["validation"] == 80


def test_active_sampling_needs_a_source_it_can_call(compose_config, tmp_path):
    from surrogates.cli.train import run

    npz = tmp_path / "d.npz"
    np.savez(npz, X=np.zeros((10, 2)), y=np.zeros(10))
    cfg = compose_config("train", [*QUIET, "data=npz", f"data.source.path={npz}", "ensemble.size=2", "active.rounds=1"])
    with pytest.raises(ValueError, match="data=callable or a test function"):
        run(cfg, str(tmp_path / "run"))


# ------------------------------------------------------------------ zooming in on critical points


def test_refine_samples_a_clipped_box_around_each_point_and_finds_the_minimum_there():
    from surrogates.critical.refine import refine_critical_points

    centre = np.array([0.2, -0.3])
    calls = []

    def bowl(X):
        calls.append(X.copy())
        return ((X - centre) ** 2 * [1.0, 3.0]).sum(axis=1)

    starts = [np.array([0.25, -0.25]), np.array([0.95, -0.95])]
    zooms = refine_critical_points(bowl, starts, [-1, -1], [1, 1], radius=0.1, samples=300,
                                   overrides=["logger=none", "trainer.enable_progress_bar=false", "trainer.max_epochs=130"],
                                   starts=16, log=None)
    near, corner = zooms
    np.testing.assert_allclose(near.lower, [0.05, -0.45])
    np.testing.assert_allclose(near.upper, [0.45, -0.05])
    np.testing.assert_allclose(corner.lower, [0.75, -1.0])  # clipped to the domain
    np.testing.assert_allclose(corner.upper, [1.0, -0.75])
    assert [len(X) for X in calls] == [300, 300]
    assert np.all((calls[0] >= near.lower) & (calls[0] <= near.upper))
    assert near.point.kind == "minimum" and np.linalg.norm(near.point.x - centre) < 1e-3
    np.testing.assert_allclose(near.point.eigenvalues, [2.0, 6.0], rtol=0.02)
    assert corner.point is None  # the bowl's only critical point is far from that corner


def test_refine_rejects_bad_requests():
    from surrogates.critical.refine import refine_critical_points

    with pytest.raises(ValueError, match="radius must be in"):
        refine_critical_points(bump, [np.zeros(2)], [-1, -1], [1, 1], radius=0.0)
    with pytest.raises(ValueError, match="point 0 has shape"):
        refine_critical_points(bump, [np.zeros(3)], [-1, -1], [1, 1])
    with pytest.raises(DataError, match="scalar function"):
        refine_critical_points(lambda X: np.ones((len(X), 2)), [np.zeros(2)], [-1, -1], [1, 1], samples=8)
