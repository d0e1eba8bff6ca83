"""Lightning batching: :class:`SurrogateDataModule` splits train/validation and serves batches."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from surrogates.errors import DataError
from surrogates.fitting.samples import (
    Samples,
    column_stats,
    read_rows,
    validate_samples,
)


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
