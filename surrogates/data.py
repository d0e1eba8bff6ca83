"""Training data: where samples come from, how they are checked, how they are batched.

A *source* produces a :class:`Samples` (inputs ``X`` (N, d), outputs ``y`` (N, m), optional
gradients (N, m, d)). Sources: an analytic test function (:class:`FunctionSource`, whose
exact derivatives make the fit's derivative error measurable), any Python callable
(:class:`CallableSource`, for black-box simulators), files (:class:`NpzSource`,
:class:`NpySource` — memory-mapped —, :class:`CsvSource`) and in-memory arrays
(:class:`ArraySource`, used by :func:`surrogates.fit`).

:func:`validate_samples` rejects what would silently ruin a fit (non-finite rows,
mismatched lengths, constant columns, too few samples) with an error naming the place.
:class:`SurrogateDataModule` splits train/validation and serves batches to Lightning.
"""

from __future__ import annotations

import csv
import math
import mmap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from surrogates.errors import DataError
from surrogates.functions import TestFunction, get_function

SAMPLERS = ("uniform", "sobol", "lhs", "grid")
MIN_SAMPLES = 10
_CHUNK_ROWS = 1 << 16
# Beyond this magnitude a float32 network input or target overflows in its first layer.
_MAX_MAGNITUDE = 1e30


@dataclass
class Samples:
    """Sampled data of a function R^d → R^m.

    Attributes:
        X: Inputs (N, d); may be a read-only memory map.
        y: Outputs (N, m).
        gradients: Optional derivative samples dy/dx, (N, m, d).
        input_names: d column names.
        output_names: m column names.
        scalar_output: True when the user's outputs were 1-D (N,): predictions are then (N,).
        origin: Where the data came from, for messages ("file data.npz", "function quartic").
        function: The analytic function sampled, if any: its exact derivatives let a fit
            report derivative errors.
        lower: Box the inputs were drawn from (d,), or None for data files.
        upper: See ``lower``.
    """

    X: np.ndarray
    y: np.ndarray
    gradients: np.ndarray | None = None
    input_names: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    scalar_output: bool = True
    origin: str = "arrays"
    function: TestFunction | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def in_dim(self) -> int:
        return int(self.X.shape[1])

    @property
    def out_dim(self) -> int:
        return int(self.y.shape[1])


# --------------------------------------------------------------------------- sampling


def sample_box(
    n: int, lower: Sequence[float], upper: Sequence[float], sampler: str, rng: np.random.Generator
) -> np.ndarray:
    """Draw ``n`` points in the box [lower, upper] ⊂ R^d.

    Args:
        n: Number of points (for ``grid``, rounded down to k^d with k = ⌊n^{1/d}⌋ ≥ 2).
        lower: (d,) lower corner.
        upper: (d,) upper corner.
        sampler: ``uniform`` (i.i.d.), ``sobol`` (scrambled Sobol sequence), ``lhs`` (Latin
            hypercube: one point per stratum in every coordinate), ``grid`` (regular).
        rng: Random generator; for ``uniform`` the draw is ``rng.uniform(lower, upper, (n, d))``
            so seeds reproduce the accuracy protocol exactly.

    Returns:
        (n, d) float64 array.
    """
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    if lower.ndim != 1 or lower.shape != upper.shape:
        raise DataError(f"box bounds must be two (d,) vectors, got {lower.shape} and {upper.shape}")
    if not np.all(upper > lower):
        raise DataError(f"box upper bounds must exceed lower bounds, got lower={lower} upper={upper}")
    if n < 1:
        raise DataError(f"number of samples must be positive, got {n}")
    d = lower.size
    if sampler == "uniform":
        return rng.uniform(lower, upper, size=(n, d))
    if sampler == "sobol":
        seed = int(rng.integers(2**31 - 1))
        unit = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed).draw(n, dtype=torch.float64)
        unit = unit.numpy()
    elif sampler == "lhs":
        strata = np.stack([rng.permutation(n) for _ in range(d)], axis=1)
        unit = (strata + rng.uniform(size=(n, d))) / n
    elif sampler == "grid":
        per_axis = int(math.floor(n ** (1.0 / d) + 1e-9))
        if per_axis < 2:
            raise DataError(f"a grid in {d} dimensions needs at least 2**{d} = {2**d} samples, got {n}")
        axes = [np.linspace(0.0, 1.0, per_axis)] * d
        unit = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, d)
    else:
        raise DataError(f"unknown sampler {sampler!r}; choose one of {list(SAMPLERS)}")
    return lower + unit * (upper - lower)


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


# --------------------------------------------------------------------------- sources


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
    """Samples of an analytic test function from :mod:`surrogates.functions`.

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
                raise DataError(f"inputs at rows {_row_list(outside)} lie outside the given box [lower, upper]")
            samples.lower, samples.upper = lower, upper
        samples.function = self.function
        return samples


def _to_numpy(array: Any, what: str, origin: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    if isinstance(array, np.memmap):
        return array
    try:
        array = np.asarray(array)
    except (TypeError, ValueError) as err:
        raise DataError(f"{origin}: {what} cannot be read as a numeric array: {err}") from None
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise DataError(f"{origin}: {what} must be real numbers, got dtype {array.dtype}")
    return array


def _samples_from_arrays(
    inputs: Any,
    outputs: Any,
    gradients: Any | None,
    input_names: Sequence[str] | None,
    output_names: Sequence[str] | None,
    origin: str,
) -> Samples:
    X = _to_numpy(inputs, "inputs X", origin)
    y = _to_numpy(outputs, "outputs y", origin)
    if X.ndim != 2:
        raise DataError(
            f"{origin}: inputs X must be 2-D (N samples, d inputs), got shape {X.shape}"
            + ("; for one input dimension pass X.reshape(-1, 1)" if X.ndim == 1 else "")
        )
    if y.ndim not in (1, 2):
        raise DataError(f"{origin}: outputs y must be (N,) or (N, m), got shape {y.shape}")
    y, scalar = _as_2d_outputs(y)
    if gradients is not None:
        gradients = _to_numpy(gradients, "gradients", origin)
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


def _existing_file(path: str | Path, suffixes: tuple[str, ...]) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    if path.suffix.lower() not in suffixes:
        raise DataError(f"data file {path} must end in {' or '.join(suffixes)}, got {path.suffix!r}")
    if path.stat().st_size == 0:
        raise DataError(f"data file {path} is empty")
    return path


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"data file {path} is not a readable .npy array (truncated or corrupt?): {err}") from None


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
            key: None if path is None else _load_npy(_existing_file(path, (".npy",)), self.mmap)
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
        path = _existing_file(self.path, (".npz",))
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
        path = _existing_file(self.path, (".csv",))
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


def read_csv_header(path: Path) -> list[str]:
    """The column names in the first row of a CSV file."""
    with open(path, newline="") as handle:
        header = next(csv.reader(handle), None)
    if not header:
        raise DataError(f"data file {path} has no header row naming its columns")
    header = [h.strip() for h in header]
    # columns are looked up by name: with two columns of one name, one of them would be read twice
    # and the other silently ignored
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise DataError(
            f"data file {path}: the header names column(s) {duplicated} more than once; "
            f"give every column a distinct name (columns: {header})"
        )
    return header


def read_csv_columns(path: Path, columns: Sequence[str]) -> np.ndarray:
    """The named columns of a CSV file as a float64 (rows, columns) array.

    Raises:
        DataError: a column is missing, a row has the wrong number of cells, a cell is not a
            number (naming the line and column), or there are no data rows.
    """
    header = read_csv_header(path)
    twice = sorted({c for c in columns if list(columns).count(c) > 1})
    if twice:
        raise DataError(f"data file {path}: column(s) {twice} are asked for more than once (as inputs, outputs or gradients)")
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"data file {path} has no column(s) {missing}; its columns are {header}")
    index = [header.index(c) for c in columns]
    rows = []
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for line_number, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(f"data file {path}, line {line_number}: {len(row)} cells for {len(header)} columns")
            try:
                rows.append([float(row[i]) for i in index])
            except ValueError:
                bad = next(c for c, i in zip(columns, index) if not _is_float(row[i]))
                raise DataError(
                    f"data file {path}, line {line_number}, column {bad!r}: {row[header.index(bad)]!r} is not a number"
                ) from None
    if not rows:
        raise DataError(f"data file {path} has a header but no data rows")
    return np.asarray(rows, dtype=np.float64)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- validation


def release_pages(*arrays: Any) -> None:
    """Drop the pages of memory-mapped arrays from this process's resident memory.

    Reading a memory map faults its pages into the process: a pass over a large ``.npy``
    would otherwise leave the whole file counted in the resident set, defeating the map. The
    pages stay in the kernel's page cache, so reading them again is not a disk read. Arrays
    that are not memory maps are left alone.
    """
    for array in arrays:
        handle = getattr(array, "_mmap", None)
        # a copy-on-write map ("c") holds private changes that dropping its pages would discard
        if handle is None or getattr(array, "mode", None) == "c" or not hasattr(mmap, "MADV_DONTNEED"):
            continue
        try:
            handle.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):  # closed map or a platform without madvise: only memory at stake
            pass


def read_rows(array: np.ndarray, rows: np.ndarray, group: int = 512) -> np.ndarray:
    """``array[rows]`` as float64, for sorted ``rows``; gentle on memory maps.

    Each page fault on a memory map maps a whole neighbourhood (the kernel's fault-around,
    64 KiB), so one fancy-indexed read of a few thousand scattered rows can put most of a file
    into the resident set at once. Memory maps are therefore read ``group`` rows at a time and
    their pages released after each group.
    """
    if getattr(array, "_mmap", None) is None:
        return np.asarray(array[rows], dtype=np.float64)
    out = np.empty((len(rows), *array.shape[1:]), dtype=np.float64)
    for start in range(0, len(rows), group):
        out[start : start + group] = array[rows[start : start + group]]
        release_pages(array)
    return out


@dataclass
class ColumnStats:
    """Per-column statistics gathered in one chunked pass (memory maps stay on disk)."""

    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray


def column_stats(array: np.ndarray, rows: np.ndarray | None = None) -> ColumnStats:
    """Mean, std, min and max of each column of a 2-D array, over ``rows`` (default all), in chunks."""
    n_rows = array.shape[0] if rows is None else len(rows)
    total = np.zeros(array.shape[1])
    total_sq = np.zeros(array.shape[1])
    low = np.full(array.shape[1], np.inf)
    high = np.full(array.shape[1], -np.inf)
    shift = np.asarray(array[rows[0] if rows is not None else 0], dtype=np.float64)
    for start in range(0, n_rows, _CHUNK_ROWS):
        if rows is None:
            chunk = np.asarray(array[start : start + _CHUNK_ROWS], dtype=np.float64)
        else:
            chunk = read_rows(array, np.sort(rows[start : start + _CHUNK_ROWS]))
        centred = chunk - shift  # shifted sums keep the variance accurate for large offsets
        total += centred.sum(axis=0)
        total_sq += (centred * centred).sum(axis=0)
        low = np.minimum(low, chunk.min(axis=0))
        high = np.maximum(high, chunk.max(axis=0))
        release_pages(array)
    mean_centred = total / n_rows
    variance = np.maximum(total_sq / n_rows - mean_centred**2, 0.0)
    return ColumnStats(mean=shift + mean_centred, std=np.sqrt(variance), min=low, max=high)


def _bad_rows(array: np.ndarray) -> np.ndarray:
    flat = array.reshape(array.shape[0], -1)
    bad = []
    for start in range(0, flat.shape[0], _CHUNK_ROWS):
        chunk = np.asarray(flat[start : start + _CHUNK_ROWS], dtype=np.float64)
        rows = np.nonzero(~np.all(np.isfinite(chunk), axis=1))[0]
        bad.append(rows + start)
        release_pages(array)
    return np.concatenate(bad)


def _row_list(rows: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    return shown + (f", … ({len(rows)} rows in all)" if len(rows) > limit else "")


def validate_samples(samples: Samples) -> None:
    """Check that samples can be fitted; raise :class:`DataError` naming the problem.

    Checks: equal lengths; at least :data:`MIN_SAMPLES` and more samples than inputs;
    no NaN/inf (listing the first offending rows, 0-based); magnitudes below 1e30; no
    constant input or output column (its spread would be a division by zero in the
    normalisation, and a constant input carries no information).
    """
    X, y, where = samples.X, samples.y, samples.origin
    n = X.shape[0]
    if y.shape[0] != n:
        raise DataError(f"{where}: {n} input rows but {y.shape[0]} output rows")
    if samples.gradients is not None and samples.gradients.shape[0] != n:
        raise DataError(f"{where}: {n} input rows but {samples.gradients.shape[0]} gradient rows")
    minimum = max(MIN_SAMPLES, X.shape[1] + 2)
    if n < minimum:
        raise DataError(f"{where}: {n} samples is too few to fit a surrogate in {X.shape[1]} dimensions; need at least {minimum}")
    arrays = {"inputs": X, "outputs": y}
    if samples.gradients is not None:
        arrays["gradients"] = samples.gradients
    for what, array in arrays.items():
        rows = _bad_rows(array)
        if rows.size:
            raise DataError(f"{where}: {what} contain NaN or inf in row(s) {_row_list(rows)} (0-based)")
    for what, array, names in (("input", X, samples.input_names), ("output", y, samples.output_names)):
        stats = column_stats(array)
        for j, name in enumerate(names):
            if max(abs(stats.min[j]), abs(stats.max[j])) > _MAX_MAGNITUDE:
                raise DataError(
                    f"{where}: {what} column {name!r} reaches magnitude "
                    f"{max(abs(stats.min[j]), abs(stats.max[j])):.3g}, beyond what a network can fit "
                    f"(limit {_MAX_MAGNITUDE:g}); rescale it"
                )
            if stats.max[j] == stats.min[j]:
                raise DataError(
                    f"{where}: {what} column {name!r} is constant ({stats.min[j]:g}); "
                    + ("it carries no information — drop it" if what == "input" else "there is nothing to fit")
                )


# --------------------------------------------------------------------------- batching


class _RowBatches(Dataset):
    """Fetches whole batches by a list of row indices (one fancy-indexing read per batch)."""

    def __init__(self, samples: Samples, rows: np.ndarray):
        self.samples, self.rows = samples, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, positions: np.ndarray | list[int]) -> dict[str, torch.Tensor]:
        rows = np.sort(self.rows[np.asarray(positions)])  # sorted reads are sequential on a memory map
        # read_rows: random rows touch pages all over a memory map, which must not all stay resident
        batch = {
            "x": torch.from_numpy(read_rows(self.samples.X, rows)),
            "y": torch.from_numpy(read_rows(self.samples.y, rows)),
        }
        if self.samples.gradients is not None:
            batch["dydx"] = torch.from_numpy(read_rows(self.samples.gradients, rows))
        return batch


class _Batches(Sampler):
    """Batches of positions as numpy arrays: in order, or reshuffled every epoch.

    Draws its permutation exactly as ``RandomSampler`` does (a seed from torch's global
    generator), but keeps it as one int64 array instead of a Python list of every row number
    (≈ 35 bytes per row) — which dominated the memory of an epoch over millions of rows.
    """

    def __init__(self, n: int, size: int, shuffle: bool):
        self.n, self.size, self.shuffle = n, size, shuffle

    def __len__(self) -> int:
        return math.ceil(self.n / self.size)

    def __iter__(self):
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
            order = torch.randperm(self.n, generator=generator).numpy()
        else:
            order = np.arange(self.n)
        for start in range(0, self.n, self.size):
            yield order[start : start + self.size]


class SurrogateDataModule(L.LightningDataModule):
    """Loads a source once, validates it, splits it and serves batches.

    Args:
        source: Any object with ``load() -> Samples`` (the sources of this module).
        val_fraction: Fraction of samples held out for validation (0 disables validation).
        batch_size: Rows per batch; ``None`` means the whole training set (full batch, which
            suits L-BFGS and small data).
        split_seed: Seed of the train/validation permutation.
        num_workers: DataLoader worker processes.

    Attributes:
        full_batch_from_epoch: Training epochs from this one on get the whole training set as one
            batch whatever ``batch_size`` says (set by the trainer to where the L-BFGS polish
            starts; ``None``: never). "Whole" is per process under a multi-process strategy: one
            shard each, which the module weights back into the full-batch objective.
    """

    def __init__(
        self,
        source: Any,
        val_fraction: float = 0.1,
        batch_size: int | None = None,
        split_seed: int = 0,
        num_workers: int = 0,
    ):
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise DataError(f"val_fraction must lie in [0, 1), got {val_fraction}")
        if batch_size is not None and batch_size < 1:
            raise DataError(f"batch_size must be positive or null (full batch), got {batch_size}")
        self.source, self.val_fraction, self.batch_size = source, val_fraction, batch_size
        self.split_seed, self.num_workers = split_seed, num_workers
        self.samples: Samples | None = None
        self.full_batch_from_epoch: int | None = None
        self._loaders: dict[tuple[str, bool, int], DataLoader] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.samples is not None:
            return
        samples = self.source.load()
        validate_samples(samples)
        self.samples = samples
        self.split(self.split_seed)

    def split(self, seed: int, bootstrap: bool = False) -> None:
        """(Re)draw the train/validation split and the training-set statistics from ``seed``.

        Ensemble members each call this with their own seed, so they see different splits of
        the same samples (loaded and validated once). ``bootstrap`` then redraws the training
        rows with replacement (as many as before), so members also differ the way fits to
        other noise realisations would.
        """
        samples = self.samples
        rng = np.random.default_rng(seed)
        order = rng.permutation(samples.n_samples)
        n_val = int(round(self.val_fraction * samples.n_samples))
        self.val_rows, self.train_rows = np.sort(order[:n_val]), np.sort(order[n_val:])
        self._loaders.clear()
        if bootstrap:
            self.train_rows = np.sort(rng.choice(self.train_rows, size=self.train_rows.size, replace=True))
        self.input_stats = column_stats(samples.X, self.train_rows)
        self.output_stats = column_stats(samples.y, self.train_rows)
        for what, stats, names in (
            ("input", self.input_stats, samples.input_names),
            ("output", self.output_stats, samples.output_names),
        ):
            constant = [name for name, s in zip(names, stats.std) if s == 0]
            if constant:
                raise DataError(
                    f"{samples.origin}: {what} column(s) {constant} are constant on the training split; "
                    "more samples or a different split are needed"
                )

    def _loader(self, part: str, full_batch: bool) -> DataLoader:
        # Lightning asks for the train loader every epoch (see train_dataloader); handing back the
        # same object while the batching is unchanged keeps persistent workers alive. One loader
        # per part: the Adam loader's workers must not idle on through the polish.
        processes = self.trainer.world_size if self.trainer is not None else 1
        key = (part, full_batch, processes)
        if key not in self._loaders:
            for stale in [k for k in self._loaders if k[0] == part]:
                del self._loaders[stale]
            rows = self.train_rows if part == "train" else self.val_rows
            size = math.ceil(len(rows) / processes) if full_batch else min(self.batch_size, len(rows))
            self._loaders[key] = DataLoader(
                _RowBatches(self.samples, rows),
                sampler=_Batches(len(rows), size, shuffle=not full_batch),
                batch_size=None,
                num_workers=self.num_workers,
                persistent_workers=self.num_workers > 0,
            )
        return self._loaders[key]

    def _polishing(self) -> bool:
        return (
            self.full_batch_from_epoch is not None
            and self.trainer is not None
            and self.trainer.current_epoch >= self.full_batch_from_epoch
        )

    def train_dataloader(self) -> DataLoader:
        # L-BFGS on a different mini-batch per step would pair curvature from different
        # objectives, and the evidence polish would solve the output layer from the last
        # batch alone (mixed10: 2048 of 18000 rows).
        return self._loader("train", full_batch=self.batch_size is None or self._polishing())

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("validation", full_batch=self.batch_size is None) if len(self.val_rows) else []


def read_points(path: str | Path, input_names: Sequence[str], key: str = "X") -> np.ndarray:
    """Query points from a file: ``.npy`` (the array), ``.npz`` (array ``key``) or ``.csv``
    (the columns named like the surrogate's inputs). Returns (N, d) float64; checks d and finiteness.
    """
    path = _existing_file(path, (".npy", ".npz", ".csv"))
    suffix = path.suffix.lower()
    if suffix == ".npy":
        points = _load_npy(path, mmap=False)
    elif suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                if key not in archive:
                    raise DataError(f"points file {path} has no array {key!r}; it holds {list(archive.keys())} (set points_key)")
                points = archive[key]
        except (ValueError, OSError, EOFError) as err:
            raise DataError(f"points file {path} is not a readable .npz archive: {err}") from None
    else:
        points = read_csv_columns(path, list(input_names))
    points = _to_numpy(points, "query points", f"points file {path}")
    d = len(input_names)
    if points.ndim == 1 and d == 1:
        points = points[:, None]
    if points.ndim != 2 or points.shape[1] != d:
        raise DataError(f"points file {path}: points must have shape (N, {d}) for inputs {list(input_names)}, got {points.shape}")
    rows = _bad_rows(points)
    if rows.size:
        raise DataError(f"points file {path}: NaN or inf in row(s) {_row_list(rows)} (0-based)")
    return np.asarray(points, dtype=np.float64)
