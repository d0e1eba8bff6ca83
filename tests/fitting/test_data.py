"""Data sources, samplers and validation: every bad input gives an error naming the place."""

from __future__ import annotations

import numpy as np
import pytest

from surrogates.errors import DataError
from surrogates.fitting.datamodule import SurrogateDataModule
from surrogates.fitting.functions import get_function
from surrogates.fitting.samples import column_stats, validate_samples
from surrogates.fitting.sampling import sample_box
from surrogates.fitting.sources import (
    ArraySource,
    CallableSource,
    CsvSource,
    FunctionSource,
    NpySource,
    NpzSource,
)


def test_uniform_sampling_and_noise_follow_the_protocol():
    samples = FunctionSource("quartic", n_samples=2000, noise=0.01, seed=1).load()
    rng = np.random.default_rng(1)
    X = rng.uniform([-2, -2], [2, 2], size=(2000, 2))
    clean = X[:, 0] ** 4 + X[:, 1] ** 4 - 4 * X[:, 0] * X[:, 1] + 1
    noisy = clean + rng.normal(size=2000) * 0.01 * clean.std()
    np.testing.assert_array_equal(samples.X, X)
    np.testing.assert_allclose(samples.y[:, 0], noisy, rtol=0, atol=1e-12)
    assert samples.scalar_output and samples.function.name == "quartic"


@pytest.mark.parametrize("sampler", ["uniform", "sobol", "lhs", "grid"])
def test_samplers_stay_in_the_box(sampler):
    lower, upper = np.array([-1.0, 0.0, 2.0]), np.array([1.0, 5.0, 3.0])
    X = sample_box(1000, lower, upper, sampler, np.random.default_rng(0))
    assert X.shape[1] == 3 and np.all(X >= lower) and np.all(X <= upper)
    expected_rows = 10**3 if sampler == "grid" else 1000
    assert X.shape[0] == expected_rows


def test_latin_hypercube_has_one_point_per_stratum():
    X = sample_box(50, [0.0, 0.0], [1.0, 1.0], "lhs", np.random.default_rng(3))
    for column in X.T:
        np.testing.assert_array_equal(np.sort(np.floor(column * 50)), np.arange(50))


def test_sobol_fills_space_more_evenly_than_uniform():
    def worst_gap(X):
        grid = np.stack(np.meshgrid(np.linspace(0, 1, 30), np.linspace(0, 1, 30)), -1).reshape(-1, 2)
        return np.max(np.min(np.linalg.norm(grid[:, None] - X[None], axis=-1), axis=1))

    rng = np.random.default_rng(0)
    sobol = sample_box(256, [0, 0], [1, 1], "sobol", rng)
    uniform = sample_box(256, [0, 0], [1, 1], "uniform", rng)
    assert worst_gap(sobol) < worst_gap(uniform)


def test_unknown_sampler_and_bad_box():
    with pytest.raises(DataError, match="unknown sampler 'halton'"):
        sample_box(10, [0], [1], "halton", np.random.default_rng(0))
    with pytest.raises(DataError, match="every upper bound must exceed its lower bound"):
        sample_box(10, [0, 1], [1, 1], "uniform", np.random.default_rng(0))


def test_callable_source_samples_a_black_box():
    source = CallableSource(lambda X: np.sin(X[:, 0]) + X[:, 1], lower=[0, 0], upper=[1, 1], n_samples=64)
    samples = source.load()
    np.testing.assert_allclose(samples.y[:, 0], np.sin(samples.X[:, 0]) + samples.X[:, 1])
    assert samples.scalar_output and samples.lower.tolist() == [0, 0]


def simulator(X):
    """A stand-in for a user's simulator, importable by dotted path."""
    return np.exp(-np.sum(X**2, axis=1))


def test_callable_source_from_a_dotted_path():
    samples = CallableSource("test_data.simulator", lower=[0, 0], upper=[1, 1], n_samples=16).load()
    np.testing.assert_allclose(samples.y[:, 0], simulator(samples.X))


def test_callable_source_rejects_a_wrong_output_shape():
    with pytest.raises(DataError, match=r"returned shape \(\) for inputs of shape \(16, 2\)"):
        CallableSource(lambda X: float(X.sum()), lower=[0, 0], upper=[1, 1], n_samples=16).load()


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_npz_source_reads_named_arrays_and_gradients(tmp_path):
    X = np.random.default_rng(0).uniform(size=(40, 3))
    y = X @ np.array([1.0, 2.0, 3.0])
    G = np.tile([1.0, 2.0, 3.0], (40, 1))
    samples = NpzSource(_write_npz(tmp_path / "d.npz", inputs=X, f=y, dfdx=G), inputs="inputs", outputs="f", gradients="dfdx").load()
    np.testing.assert_array_equal(samples.X, X)
    assert samples.gradients.shape == (40, 1, 3)
    # the key "gradients" is picked up without being named
    samples = NpzSource(_write_npz(tmp_path / "e.npz", X=X, y=y, gradients=G)).load()
    assert samples.gradients is not None


def test_npz_missing_key_names_what_is_there(tmp_path):
    path = _write_npz(tmp_path / "d.npz", X=np.zeros((20, 2)), target=np.zeros(20))
    with pytest.raises(DataError, match=r"no array 'y' for the outputs; it holds \['X', 'target'\]"):
        NpzSource(path).load()


def test_npy_source_memory_maps(tmp_path):
    X = np.random.default_rng(0).uniform(size=(100, 2))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", X.sum(1))
    samples = NpySource(str(tmp_path / "X.npy"), str(tmp_path / "y.npy")).load()
    assert isinstance(samples.X, np.memmap)
    np.testing.assert_array_equal(np.asarray(samples.X), X)


def test_csv_source_with_named_columns(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("a,b,energy,unused\n0.1,0.2,1.5,9\n0.3,0.4,2.5,9\n" + "".join(f"{i},{i*2},{i*3},0\n" for i in range(20)))
    samples = CsvSource(str(path), outputs=["energy"], inputs=["a", "b"]).load()
    assert samples.X.shape == (22, 2) and samples.input_names == ["a", "b"] and samples.output_names == ["energy"]
    np.testing.assert_allclose(samples.y[:2, 0], [1.5, 2.5])


@pytest.mark.parametrize(
    "text, error",
    [
        ("a,b,energy\n1,2,3\n4,x,6\n", r"line 3, column 'b': 'x' is not a number"),
        ("a,b,enrgy\n1,2,3\n", r"no column\(s\) \['energy'\]; its columns are \['a', 'b', 'enrgy'\]"),
        ("a,b,energy\n", "no data rows"),
        ("a,b,energy\n1,2\n", "line 2: 2 cells for 3 columns"),
    ],
)
def test_csv_errors_name_the_line_and_column(tmp_path, text, error):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=error):
        CsvSource(str(path), outputs=["energy"]).load()


def test_csv_columns_named_twice_are_refused(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("p,q,p,q,y\n" + "".join(f"{i},{i + 1},{i + 2},{i + 3},{i * i}\n" for i in range(20)))
    with pytest.raises(DataError, match=r"runs\.csv: the header names column\(s\) \['p', 'q'\] more than once"):
        CsvSource(str(path), outputs=["y"]).load()
    path.write_text("a,b,y\n" + "".join(f"{i},{i * 2},{i * 3}\n" for i in range(20)))
    with pytest.raises(DataError, match=r"column\(s\) \['a'\] are asked for more than once"):
        CsvSource(str(path), outputs=["y"], inputs=["a", "a"]).load()
    with pytest.raises(DataError, match=r"column\(s\) \['y'\] are asked for more than once"):
        CsvSource(str(path), outputs=["y"], inputs=["a", "y"]).load()


def test_empty_truncated_and_missing_files(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv is empty"):
        CsvSource(str(tmp_path / "empty.csv"), outputs=["y"]).load()
    np.save(tmp_path / "X.npy", np.zeros((1000, 4)))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "X.npy").read_bytes()[:500])
    with pytest.raises(DataError, match="cut.npy is not a readable .npy array"):
        NpySource(str(tmp_path / "cut.npy"), str(tmp_path / "X.npy")).load()
    with pytest.raises(DataError, match="nothere.npz does not exist"):
        NpzSource(str(tmp_path / "nothere.npz")).load()
    with pytest.raises(DataError, match=r"must end in \.npz"):
        NpzSource(str(tmp_path / "X.npy")).load()


def _validated(X, y, gradients=None):
    samples = ArraySource(X, y, gradients).load()
    validate_samples(samples)
    return samples


def test_non_finite_rows_are_listed():
    X = np.random.default_rng(0).uniform(size=(50, 2))
    y = X.sum(1)
    y[[3, 17]] = np.nan
    X[40, 1] = np.inf
    with pytest.raises(DataError, match=r"inputs contain NaN or inf in row\(s\) 40"):
        _validated(X, y)
    X[40, 1] = 0.5
    with pytest.raises(DataError, match=r"outputs contain NaN or inf in row\(s\) 3, 17"):
        _validated(X, y)


@pytest.mark.parametrize(
    "X, y, error",
    [
        (np.zeros(50), np.zeros(50), r"inputs X must be 2-D .* got shape \(50,\); for one input dimension"),
        (np.random.rand(50, 2), np.random.rand(49), "50 input rows but 49 output rows"),
        (np.random.rand(5, 2), np.random.rand(5), "5 samples is too few .* need at least 10"),
        (np.c_[np.random.rand(50), np.ones(50)], np.random.rand(50), "input column 'x1' is constant"),
        (np.random.rand(50, 2), np.full(50, 2.0), "output column 'y0' is constant"),
        (np.random.rand(50, 2) * 1e31, np.random.rand(50), "input column 'x0' reaches magnitude"),
        (np.random.rand(50, 2), np.random.rand(50, 2, 2), r"outputs y must be \(N,\) or \(N, m\)"),
        (np.array([["a", "b"]] * 20), np.random.rand(20), "must be real numbers"),
    ],
)
def test_bad_arrays_give_clear_errors(X, y, error):
    with pytest.raises(DataError, match=error):
        _validated(X, y)


def test_gradient_shape_is_checked():
    X, y = np.random.rand(30, 3), np.random.rand(30)
    with pytest.raises(DataError, match=r"gradients must have shape \(N, 3\)"):
        _validated(X, y, np.random.rand(30, 2))
    assert _validated(X, y, np.random.rand(30, 3)).gradients.shape == (30, 1, 3)


def test_column_stats_in_chunks_match_numpy():
    X = np.random.default_rng(0).normal(loc=1e6, scale=3.0, size=(200_000, 3))
    stats = column_stats(X)
    np.testing.assert_allclose(stats.mean, X.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.std, X.std(0), rtol=1e-7)
    np.testing.assert_array_equal(stats.min, X.min(0))


def test_datamodule_splits_and_batches():
    source = FunctionSource("vec2", n_samples=100)
    dm = SurrogateDataModule(source, val_fraction=0.2, batch_size=32)
    dm.setup("fit")
    assert len(dm.val_rows) == 20 and len(dm.train_rows) == 80
    assert not set(dm.val_rows) & set(dm.train_rows)
    batches = list(dm.train_dataloader())
    assert [b["x"].shape[0] for b in batches] == [32, 32, 16]
    assert batches[0]["y"].shape == (32, 2)
    rows = np.concatenate([b["x"].numpy() for b in batches])
    np.testing.assert_array_equal(np.sort(rows[:, 0]), np.sort(dm.samples.X[dm.train_rows, 0]))
    f = get_function("vec2")
    np.testing.assert_allclose(batches[0]["y"].numpy(), f.value(batches[0]["x"].numpy()))


def test_loaders_are_reused_until_the_batching_or_the_split_changes():
    """Lightning asks for the train loader every epoch; a new loader would restart its workers."""
    from types import SimpleNamespace

    dm = SurrogateDataModule(FunctionSource("quartic", n_samples=100), val_fraction=0.2, batch_size=32)
    dm.setup("fit")
    dm.trainer = SimpleNamespace(current_epoch=0, world_size=1)
    dm.full_batch_from_epoch = 3
    adam, validation = dm.train_dataloader(), dm.val_dataloader()
    assert dm.train_dataloader() is adam and dm.val_dataloader() is validation
    assert [len(b["x"]) for b in adam] == [32, 32, 16]
    dm.trainer.current_epoch = 3
    polish = dm.train_dataloader()
    assert polish is not adam and dm.train_dataloader() is polish
    assert [len(b["x"]) for b in polish] == [80]
    old_rows = np.sort(next(iter(polish))["x"].numpy()[:, 0])
    dm.split(dm.split_seed + 1)
    resplit = dm.train_dataloader()
    assert resplit is not polish
    new_rows = np.sort(next(iter(resplit))["x"].numpy()[:, 0])
    np.testing.assert_array_equal(new_rows, np.sort(dm.samples.X[dm.train_rows, 0]))
    assert not np.array_equal(new_rows, old_rows)


@pytest.mark.parametrize("name", ["quartic", "vec2"])
def test_function_source_with_gradients_feeds_exact_derivatives_to_the_batches(name):
    f = get_function(name)
    plain = FunctionSource(name, n_samples=50, noise=0.01).load()
    source = FunctionSource(name, n_samples=50, noise=0.01, with_gradients=True)
    samples = source.load()
    # same inputs and noisy values as without gradients: the gradients draw nothing from the generator
    np.testing.assert_array_equal(samples.X, plain.X)
    np.testing.assert_array_equal(samples.y, plain.y)
    exact = f.gradient(samples.X)[:, None, :] if f.is_scalar else f.jacobian(samples.X)
    np.testing.assert_array_equal(samples.gradients, exact)
    dm = SurrogateDataModule(source, val_fraction=0.2, batch_size=None)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    expected = f.gradient(batch["x"].numpy())[:, None, :] if f.is_scalar else f.jacobian(batch["x"].numpy())
    np.testing.assert_allclose(batch["dydx"].numpy(), expected, rtol=1e-12)


def test_bootstrap_split_resamples_training_rows_and_keeps_validation_apart():
    dm = SurrogateDataModule(FunctionSource("quartic", n_samples=200), val_fraction=0.1)
    dm.setup("fit")
    plain_train, plain_val = dm.train_rows.copy(), dm.val_rows.copy()
    dm.split(dm.split_seed, bootstrap=True)
    np.testing.assert_array_equal(dm.val_rows, plain_val)
    assert dm.train_rows.size == plain_train.size
    assert set(dm.train_rows) <= set(plain_train)
    assert len(set(dm.train_rows)) < plain_train.size  # drawn with replacement: repeats
    np.testing.assert_allclose(dm.output_stats.mean, dm.samples.y[dm.train_rows].mean(0))


def test_later_points_get_the_first_designs_noise_level():
    """Active sampling asks a source for more points; their noise must not depend on how many."""
    source = FunctionSource("quartic", n_samples=4000, noise=0.05, seed=3)
    first = source.load()
    level = 0.05 * source.function.value(first.X).std()
    X = np.random.default_rng(0).uniform(-2, 2, (4000, 2))
    y, gradients = source.evaluate(X)
    assert y.shape == (4000, 1) and gradients is None
    residual = y[:, 0] - source.function.value(X)
    assert abs(residual.std() / level - 1) < 0.05
    few, _ = source.evaluate(X[:3])  # three points: the std of three outputs would be a different level
    assert np.abs(few[:, 0] - source.function.value(X[:3])).max() < 5 * level

    with pytest.raises(RuntimeError, match="call load"):
        CallableSource(lambda X: X[:, 0], lower=[0, 0], upper=[1, 1]).evaluate(X)
