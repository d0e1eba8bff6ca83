"""Where samples come from: a *source* produces :class:`~surrogates.fitting.samples.Samples`.

Sources: an analytic test function (:class:`FunctionSource`, whose exact derivatives make
the fit's derivative error measurable), any Python callable (:class:`CallableSource`, for
black-box simulators), files (:class:`NpzSource`, :class:`NpySource` — memory-mapped —,
:class:`CsvSource`) and in-memory arrays (:class:`ArraySource`, used by
:func:`surrogates.fit`). Configs build them from ``_target_`` (configs/data/).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from surrogates.errors import DataError
from surrogates.fitting.files import (
    existing_file,
    load_npy,
    read_csv_columns,
    read_csv_header,
)
from surrogates.fitting.functions import TestFunction, get_function
from surrogates.fitting.samples import Samples, row_list, to_numpy
from surrogates.fitting.sampling import sample_box


def _names(names: Sequence[str] | None, prefix: str, count: int, what: str) -> list[str]:
    if names is None:
        return [f"{prefix}{i}" for i in range(count)]
    names = [str(n) for n in names]
    if len(names) != count:
        raise DataError(f"{len(names)} {what} names given for {count} {what}s: {names}")
    return names


def _as_2d_outputs(y: np.ndarray) -> tuple[np.ndarray, bool]:
    if y.ndim == 1:
        return y[:, None], True
    return y, False


class _BoxSource:
    """A function sampled over a box: the first design from ``load()``, more points from
    ``evaluate(X)`` (how active sampling asks for them).

    Noise has std = ``noise`` × (std of each output over the first design), fixed from then
    on, and is drawn from the same generator as the first design's inputs.
    """

    lower: np.ndarray
    upper: np.ndarray
    n_samples: int
    sampler: str
    noise: float
    seed: int

    def _outputs(self, X: np.ndarray) -> tuple[np.ndarray, bool, np.ndarray | None]:
        """(y as (N, m), whether the function is scalar, exact gradients (N, m, d) or None)."""
        raise NotImplementedError

    def _describe(self, samples: Samples) -> Samples:
        raise NotImplementedError

    def load(self) -> Samples:
        if self.noise < 0:
            raise DataError(f"noise must be a non-negative fraction of the output spread, got {self.noise}")
        self._rng = np.random.default_rng(self.seed)
        X = sample_box(self.n_samples, self.lower, self.upper, self.sampler, self._rng)
        y, scalar, gradients = self._outputs(X)
        self._spread = y.std(axis=0, keepdims=True)
        samples = Samples(
            X=X,
            y=self._noisy(y),
            gradients=gradients,
            scalar_output=scalar,
            lower=self.lower,
            upper=self.upper,
        )
        return self._describe(samples)

    def _noisy(self, y: np.ndarray) -> np.ndarray:
        return y + self._rng.normal(size=y.shape) * self.noise * self._spread if self.noise else y

    def evaluate(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Outputs (N, m), with the first design's noise level, and gradients (or None) at ``X``."""
        if not hasattr(self, "_rng"):
            raise RuntimeError("call load() before evaluate(): the noise level comes from the first design")
        y, _, gradients = self._outputs(np.asarray(X, dtype=np.float64))
        return self._noisy(y), gradients


class FunctionSource(_BoxSource):
    """Samples of an analytic test function from :mod:`surrogates.fitting.functions`.

    Args:
        function: Registered name (``quartic``, ``mixed10``, ``rosenbrock``, …).
        n_samples: Number of samples.
        sampler: One of :data:`SAMPLERS`.
        noise: Gaussian noise std as a fraction of the output's std.
        seed: Seed of the generator that draws inputs and then noise.
        dim: Dimension, for the N-dimensional families.
        lower: Optional box override (defaults to the function's own box).
        upper: See ``lower``.
        with_gradients: Also sample the exact (noise-free) gradient or Jacobian, as a simulator
            with adjoint derivatives would give them; the fit then matches them too
            (``model.gradient_weight``).
    """

    def __init__(
        self,
        function: str,
        n_samples: int = 2000,
        sampler: str = "uniform",
        noise: float = 0.0,
        seed: int = 1,
        dim: int | None = None,
        lower: Sequence[float] | None = None,
        upper: Sequence[float] | None = None,
        with_gradients: bool = False,
    ):
        self.function = get_function(function, dim=dim)
        self.n_samples, self.sampler, self.noise, self.seed = n_samples, sampler, noise, seed
        self.with_gradients = bool(with_gradients)
        self.lower = np.asarray(self.function.lower if lower is None else lower, dtype=np.float64)
        self.upper = np.asarray(self.function.upper if upper is None else upper, dtype=np.float64)

    def _outputs(self, X: np.ndarray) -> tuple[np.ndarray, bool, np.ndarray | None]:
        y, scalar = _as_2d_outputs(np.asarray(self.function.value(X), dtype=np.float64))
        gradients = None
        if self.with_gradients:
            gradients = np.asarray(self.function.gradient(X) if scalar else self.function.jacobian(X), dtype=np.float64)
            gradients = gradients.reshape(X.shape[0], y.shape[1], X.shape[1])
        return y, scalar, gradients

    def _describe(self, samples: Samples) -> Samples:
        samples.input_names = _names(None, "x", samples.in_dim, "input")
        samples.output_names = _names(None, "y", samples.out_dim, "output")
        samples.origin = f"function {self.function.name}"
        samples.function = self.function
        return samples


def _callable_name(function: Callable) -> str:
    return getattr(function, "__qualname__", repr(function))


def evaluate_callable(function: Callable[[np.ndarray], Any], X: np.ndarray) -> np.ndarray:
    """``function(X)`` as a float64 array of shape (N,) or (N, m), or a :class:`DataError`
    naming the callable and the shape it returned."""
    name = _callable_name(function)
    raw = function(X)
    if isinstance(raw, torch.Tensor):
        raw = raw.detach().cpu().numpy()
    y = np.asarray(raw, dtype=np.float64)
    if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
        raise DataError(
            f"callable {name} returned shape {y.shape} for inputs of shape {X.shape}; "
            f"expected ({X.shape[0]},) or ({X.shape[0]}, m)"
        )
    return y


class CallableSource(_BoxSource):
    """Samples of any Python function — a simulator, a black box — over a box.

    Args:
        function: A callable mapping an (N, d) float64 numpy array to (N,) or (N, m), or its
            dotted import path (``"mypackage.simulator.run"``).
        lower: (d,) lower corner of the box.
        upper: (d,) upper corner.
        n_samples, sampler, noise, seed: As for :class:`FunctionSource`.
        input_names: Optional d names; output_names: optional m names.
    """

    def __init__(
        self,
        function: Callable[[np.ndarray], Any] | str,
        lower: Sequence[float],
        upper: Sequence[float],
        n_samples: int = 2000,
        sampler: str = "sobol",
        noise: float = 0.0,
        seed: int = 1,
        input_names: Sequence[str] | None = None,
        output_names: Sequence[str] | None = None,
    ):
        if isinstance(function, str):
            from hydra.utils import get_method

            function = get_method(function)
        if not callable(function):
            raise DataError(f"CallableSource needs a callable or a dotted path, got {function!r}")
        self.function = function
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.n_samples, self.sampler, self.noise, self.seed = n_samples, sampler, noise, seed
        self.input_names, self.output_names = input_names, output_names

    def _outputs(self, X: np.ndarray) -> tuple[np.ndarray, bool, np.ndarray | None]:
        y, scalar = _as_2d_outputs(evaluate_callable(self.function, X))
        return y, scalar, None

    def _describe(self, samples: Samples) -> Samples:
        samples.input_names = _names(self.input_names, "x", samples.in_dim, "input")
        samples.output_names = _names(self.output_names, "y", samples.out_dim, "output")
        samples.origin = f"callable {_callable_name(self.function)}"
        return samples


class ArraySource:
    """In-memory arrays (numpy or torch): X (N, d), y (N,) or (N, m), gradients (N, d) or (N, m, d).

    ``lower``/``upper`` optionally give the box the inputs were drawn from (the surrogate's
    domain of trust); by default it is the inputs' bounding box. ``function``: the analytic
    test function the arrays sample, if any (the fit then reports its derivative errors).
    """

    def __init__(
        self,
        X: Any,
        y: Any,
        gradients: Any | None = None,
        input_names: Sequence[str] | None = None,
        output_names: Sequence[str] | None = None,
        lower: Sequence[float] | None = None,
        upper: Sequence[float] | None = None,
        function: TestFunction | None = None,
    ):
        if (lower is None) != (upper is None):
            raise DataError("give both lower and upper for the input box, or neither")
        self.X, self.y, self.gradients = X, y, gradients
        self.input_names, self.output_names = input_names, output_names
        self.lower, self.upper = lower, upper
        self.function = function

    def load(self) -> Samples:
        samples = _samples_from_arrays(
            self.X, self.y, self.gradients, self.input_names, self.output_names, origin="arrays"
        )
        if self.lower is not None:
            lower = np.asarray(self.lower, dtype=np.float64)
            upper = np.asarray(self.upper, dtype=np.float64)
            if lower.shape != (samples.in_dim,) or upper.shape != (samples.in_dim,) or not np.all(upper > lower):
                raise DataError(
                    f"input box needs lower < upper, each of shape ({samples.in_dim},); "
                    f"got lower {lower.tolist()} and upper {upper.tolist()}"
                )
            outside = np.nonzero(np.any((samples.X < lower) | (samples.X > upper), axis=1))[0]
            if outside.size:
                raise DataError(f"inputs at rows {row_list(outside)} lie outside the given box [lower, upper]")
            samples.lower, samples.upper = lower, upper
        samples.function = self.function
        return samples


def _samples_from_arrays(
    inputs: Any,
    outputs: Any,
    gradients: Any | None,
    input_names: Sequence[str] | None,
    output_names: Sequence[str] | None,
    origin: str,
) -> Samples:
    X = to_numpy(inputs, "inputs X", origin)
    y = to_numpy(outputs, "outputs y", origin)
    if X.ndim != 2:
        raise DataError(
            f"{origin}: inputs X must be 2-D (N samples, d inputs), got shape {X.shape}"
            + ("; for one input dimension pass X.reshape(-1, 1)" if X.ndim == 1 else "")
        )
    if y.ndim not in (1, 2):
        raise DataError(f"{origin}: outputs y must be (N,) or (N, m), got shape {y.shape}")
    y, scalar = _as_2d_outputs(y)
    if gradients is not None:
        gradients = to_numpy(gradients, "gradients", origin)
        m, d = y.shape[1], X.shape[1]
        if gradients.ndim == 2 and m == 1:
            gradients = gradients[:, None, :]
        if gradients.ndim != 3 or gradients.shape[1:] != (m, d):
            raise DataError(
                f"{origin}: gradients must have shape (N, {d})"
                + (f" or (N, {m}, {d})" if m == 1 else f" → (N, {m}, {d})")
                + f" for {d} inputs and {m} output(s), got {gradients.shape}"
            )
    return Samples(
        X=X,
        y=y,
        gradients=gradients,
        input_names=_names(input_names, "x", X.shape[1], "input"),
        output_names=_names(output_names, "y", y.shape[1], "output"),
        scalar_output=scalar,
        origin=origin,
    )


class NpySource:
    """Inputs and outputs in separate ``.npy`` files, memory-mapped so large files are not read whole.

    Args:
        inputs: Path of the (N, d) input array.
        outputs: Path of the (N,) or (N, m) output array.
        gradients: Optional path of (N, d) or (N, m, d) derivative samples.
        mmap: Memory-map instead of reading into RAM.
        input_names, output_names: Optional column names.
    """

    def __init__(
        self,
        inputs: str,
        outputs: str,
        gradients: str | None = None,
        mmap: bool = True,
        input_names: Sequence[str] | None = None,
        output_names: Sequence[str] | None = None,
    ):
        self.paths = {"inputs": inputs, "outputs": outputs, "gradients": gradients}
        self.mmap, self.input_names, self.output_names = mmap, input_names, output_names

    def load(self) -> Samples:
        arrays = {
            key: None if path is None else load_npy(existing_file(path, (".npy",)), self.mmap)
            for key, path in self.paths.items()
        }
        origin = f"files {self.paths['inputs']} / {self.paths['outputs']}"
        return _samples_from_arrays(**arrays, input_names=self.input_names, output_names=self.output_names, origin=origin)


class NpzSource:
    """Named arrays in one ``.npz`` file.

    Args:
        path: The ``.npz`` file.
        inputs: Key of the (N, d) inputs.
        outputs: Key of the (N,) or (N, m) outputs.
        gradients: Key of optional (N, d) or (N, m, d) derivative samples; ``None`` to use the
            key ``gradients`` when present.
        input_names, output_names: Optional column names.
    """

    def __init__(
        self,
        path: str,
        inputs: str = "X",
        outputs: str = "y",
        gradients: str | None = None,
        input_names: Sequence[str] | None = None,
        output_names: Sequence[str] | None = None,
    ):
        self.path, self.keys = path, {"inputs": inputs, "outputs": outputs, "gradients": gradients}
        self.input_names, self.output_names = input_names, output_names

    def load(self) -> Samples:
        path = existing_file(self.path, (".npz",))
        try:
            archive = np.load(path, allow_pickle=False)
            available = list(archive.keys())
        except (ValueError, OSError, EOFError) as err:
            raise DataError(f"data file {path} is not a readable .npz archive: {err}") from None
        with archive:
            arrays = {}
            for role, key in self.keys.items():
                if key is None and role == "gradients":
                    key = "gradients" if "gradients" in available else None
                if key is None:
                    arrays[role] = None
                    continue
                if key not in available:
                    raise DataError(
                        f"data file {path} has no array {key!r} for the {role}; it holds {available} "
                        f"(choose with data.source.{role}=<key>)"
                    )
                try:
                    arrays[role] = archive[key]
                except (ValueError, OSError, EOFError) as err:
                    raise DataError(f"data file {path}: array {key!r} is unreadable: {err}") from None
        return _samples_from_arrays(**arrays, input_names=self.input_names, output_names=self.output_names, origin=f"file {path}")


class CsvSource:
    """A ``.csv`` file with a header row naming its columns.

    Args:
        path: The CSV file.
        outputs: Names of the output columns.
        inputs: Names of the input columns (default: every column that is not an output or
            gradient column).
        gradients: Optional names of derivative columns, ordered output-major
            (dy0/dx0, dy0/dx1, …, dy1/dx0, …): m·d names.
    """

    def __init__(
        self,
        path: str,
        outputs: Sequence[str],
        inputs: Sequence[str] | None = None,
        gradients: Sequence[str] | None = None,
    ):
        self.path = path
        self.outputs = [outputs] if isinstance(outputs, str) else list(outputs)
        self.inputs = None if inputs is None else list(inputs)
        self.gradients = None if gradients is None else list(gradients)

    def load(self) -> Samples:
        path = existing_file(self.path, (".csv",))
        gradient_cols = self.gradients or []
        header = read_csv_header(path)
        inputs = self.inputs or [h for h in header if h not in self.outputs and h not in gradient_cols]
        table = read_csv_columns(path, inputs + self.outputs + gradient_cols)
        n_in, n_out = len(inputs), len(self.outputs)
        gradients = None
        if gradient_cols:
            if len(gradient_cols) != n_in * n_out:
                raise DataError(
                    f"data file {path}: {len(gradient_cols)} gradient columns given; "
                    f"{n_out} output(s) × {n_in} inputs need {n_in * n_out}"
                )
            gradients = table[:, n_in + n_out :].reshape(-1, n_out, n_in)
        y = table[:, n_in : n_in + n_out]
        return _samples_from_arrays(
            table[:, :n_in],
            y[:, 0] if n_out == 1 else y,
            gradients,
            inputs,
            self.outputs,
            origin=f"file {path}",
        )
