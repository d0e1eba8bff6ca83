"""Reading users' files: .npy (memory-mapped), .npz and .csv columns, query points.

Errors name the file, the line (1-based, as an editor shows it) and the column.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from surrogates.errors import DataError
from surrogates.fitting.samples import bad_rows, row_list, to_numpy


def existing_file(path: str | Path, suffixes: tuple[str, ...]) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    if path.suffix.lower() not in suffixes:
        raise DataError(f"data file {path} must end in {' or '.join(suffixes)}, got {path.suffix!r}")
    if path.stat().st_size == 0:
        raise DataError(f"data file {path} is empty")
    return path


def load_npy(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"data file {path} is not a readable .npy array (truncated or corrupt?): {err}") from None


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


def read_points(path: str | Path, input_names: Sequence[str], key: str = "X") -> np.ndarray:
    """Query points from a file: ``.npy`` (the array), ``.npz`` (array ``key``) or ``.csv``
    (the columns named like the surrogate's inputs). Returns (N, d) float64; checks d and finiteness.
    """
    path = existing_file(path, (".npy", ".npz", ".csv"))
    suffix = path.suffix.lower()
    if suffix == ".npy":
        points = load_npy(path, mmap=False)
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
    points = to_numpy(points, "query points", f"points file {path}")
    d = len(input_names)
    if points.ndim == 1 and d == 1:
        points = points[:, None]
    if points.ndim != 2 or points.shape[1] != d:
        raise DataError(f"points file {path}: points must have shape (N, {d}) for inputs {list(input_names)}, got {points.shape}")
    rows = bad_rows(points)
    if rows.size:
        raise DataError(f"points file {path}: NaN or inf in row(s) {row_list(rows)} (0-based)")
    return np.asarray(points, dtype=np.float64)
