"""What every command shares: how it reports a user's mistake, how many threads it uses, its
Hydra callbacks, and the surrogate it works on (:func:`load_or_train`, :func:`format_summary`).

A bad file, a bad checkpoint or a bad config value is not a bug in the program, so the user
gets the message that names the place (file, row, column, key) — not a traceback wall.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from surrogates.console import end_job, report, start_job
from surrogates.errors import InputError, SurrogatesError
from surrogates.io import check_output_folder

if TYPE_CHECKING:
    from surrogates.surrogate import Surrogate

#: What a user's input can cause. Not bare ValueError: raised from numpy or torch it is a bug,
#: and keeps its traceback.
USER_ERRORS = (SurrogatesError, FileNotFoundError, InstantiationException, OmegaConfBaseException)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn :data:`USER_ERRORS` raised inside the block into ``error: …`` on stderr and exit 2."""
    try:
        yield
    except USER_ERRORS as err:
        message = str(err).strip() or type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        end_job()  # Hydra skips its job-end callbacks on sys.exit
        sys.exit(2)


def import_from_working_directory() -> None:
    """Put the working directory first on ``sys.path``, as ``python -m`` does, if it is not there.

    A console script (``surrogates-landscape``) starts with its own ``bin/`` folder on the path,
    not the folder it is run from, so a ``_target_: digitnet.Net`` (or a callback, a data
    source, a ``CallableSource`` function) in a module next to the user's data could not be
    imported without ``PYTHONPATH=.``. The directory is added as an absolute path, so a later
    ``chdir`` does not change what it means; as with ``python -m``, a module there wins over
    an installed module of the same name that has not been imported yet.
    """
    here = os.getcwd()
    if not any(os.path.abspath(entry or os.curdir) == here for entry in sys.path):
        sys.path.insert(0, here)


class CommandOutput(Callback):
    """Hydra callback (configs/hydra/default.yaml) around each job of every command:
    :func:`~surrogates.console.start_job` before the command runs, ``end_job`` after it, and
    modules in the working directory importable for the job's ``_target_`` lookups
    (:func:`import_from_working_directory`)."""

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        import_from_working_directory()
        start_job()

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        end_job()


class OutputFolderCheck(Callback):
    """Hydra callback (configs/hydra/default.yaml): the run folder must be able to be a folder.

    Hydra creates ``hydra.run.dir`` (``hydra.sweep.dir`` for ``-m``) before the command's own
    code runs, so a folder below a regular file (``hydra.run.dir=data.csv/x``) would end in
    Hydra's ``NotADirectoryError`` traceback; this turns it into the usual ``error: …`` line.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "run")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "sweep")

    @staticmethod
    def _check(config: DictConfig, mode: str) -> None:
        # the default folders name the job (${hydra:job.name}), which resolves only once the
        # Hydra config is registered; Hydra registers the same config again when the job starts
        HydraConfig.instance().set_config(config)
        with reported_errors():
            check_output_folder(str(config.hydra[mode].dir))


class ResumeInRunFolder(Callback):
    """Hydra callback (configs/train.yaml): ``surrogates-train ckpt_path=<run>/checkpoints/last.ckpt``
    goes on in ``<run>``, the folder of the run that wrote the checkpoint
    (:func:`~surrogates.fitting.train.run_folder_of`), instead of a new dated folder.

    So an interrupted run's folder ends up with its surrogate, summary and checkpoints in one
    place, and its ``train.log`` continues (Hydra's log handler appends). Hydra's record of this
    invocation goes to ``<run>/.hydra/resume<k>/`` beside the first one; the files the resumed
    fit replaces are kept by :func:`~surrogates.fitting.train.train` in ``before_resume<k>/``.
    An explicit ``hydra.run.dir`` is left as given, and so is a checkpoint outside a run folder.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from surrogates.fitting.train import run_folder_of  # only surrogates-train needs the fitting door

        folder = run_folder_of(config.get("ckpt_path"))
        explicit = any(o.split("=", 1)[0].lstrip("+~") == "hydra.run.dir" for o in config.hydra.overrides.hydra)
        if folder is None or explicit:
            return
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.run.dir = str(folder)
            if config.hydra.output_subdir is not None:
                k = 1
                while (folder / str(config.hydra.output_subdir) / f"resume{k}").exists():
                    k += 1
                config.hydra.output_subdir = f"{config.hydra.output_subdir}/resume{k}"


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads for torch (None: torch's default, one per core).

    Small full-batch fits gain little from threads, and on a machine shared with other jobs
    OpenMP threads that wait on each other can cost many times their work; ``threads=1`` is
    then the fast choice.
    """
    if threads is not None:
        if threads < 1:
            raise InputError(f"threads must be a positive integer or null, got {threads}")
        torch.set_num_threads(threads)


def load_or_train(checkpoint: str | Path | None, output_dir: str | Path, overrides: Sequence[str] = ()) -> Surrogate:
    """The surrogate in ``checkpoint``, or — when it is None — one trained now.

    Lets every command run on a fresh machine with no arguments: the ``train`` config with
    ``overrides`` is fitted into ``output_dir/train`` (its surrogate file is
    ``output_dir/train/surrogate.safetensors``) and its summary reported
    (:func:`surrogates.console.report`: printed, and under a command kept in its log file).
    """
    # imported here: surrogates-landscape shares this module and needs neither Lightning nor Hydra's fits
    from surrogates.config import compose_config
    from surrogates.fitting.train import train
    from surrogates.surrogate import Surrogate

    if checkpoint is not None:
        return Surrogate.load(checkpoint)
    overrides = list(overrides)
    report(f"no checkpoint given: training a surrogate first (train config, overrides: {overrides or 'none'})")
    result = train(compose_config("train", overrides), output_dir=Path(output_dir) / "train")
    report(format_summary(result.summary))
    return result.surrogate


def box_corner(value: Any, default: np.ndarray, key: str) -> np.ndarray:
    """A box corner from a config entry: null is ``default`` (the training domain's corner), one
    number is that number for every input, a list has one entry per input.

    Raises:
        InputError: ``value`` is not a number or a list of numbers (the message names ``key``).
    """
    if value is None:
        return np.asarray(default, dtype=np.float64)
    listed = OmegaConf.to_object(value) if OmegaConf.is_config(value) else value
    try:
        corner = np.asarray(listed, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{key} must be a number or a list with one number per input, got {listed!r}") from None
    if corner.ndim > 1:
        raise InputError(f"{key} must be a number or a list with one number per input, got {listed!r}")
    return np.broadcast_to(corner, np.shape(default)).copy() if corner.ndim == 0 else corner


def format_summary(summary: dict[str, Any]) -> str:
    """A few readable lines of a training summary."""
    from surrogates.fitting.train import summary_headline

    lines = [summary_headline(summary)]
    for split in ("train", "validation"):
        metrics = summary.get(split) or {}
        if metrics:
            r2 = ", ".join(f"{k}={v:.6f}" for k, v in metrics["r2"].items())
            rmse = ", ".join(f"{k}={v:.3g}" for k, v in metrics["rmse"].items())
            lines.append(f"  {split:<10} R² {r2}   RMSE {rmse}   ({metrics['points']} points)")
    spent = summary.get("time")
    if spent:
        line = f"  time: {spent['adam_epochs']} Adam epochs {spent['adam_seconds']:.1f} s"
        if spent["polish_epochs"]:
            line += (f", {spent['polish_epochs']} L-BFGS epochs ({spent['polish_evaluations']} evaluations) "
                     f"{spent['polish_seconds']:.1f} s, polish stopped: {spent['polish_stop']}")
        lines.append(line)
    if "polish_kept_epoch" in summary:
        lines.append(f"  L-BFGS polish: kept the state after {summary['polish_kept_epoch'] + 1} of {summary['epochs']} "
                     "epochs (the lowest validation error)")
    noise = summary.get("estimated_noise_std")
    if noise:
        lines.append("  noise std estimated by the evidence fit: " + ", ".join(f"{k}={v:.3g}" for k, v in noise.items()))
    derivatives = summary.get("derivatives")
    if derivatives:
        parts = [
            f"{name.replace('_', ' ')} {100 * derivatives[name]['median']:.3g}%"
            for name in ("gradient", "jacobian", "hessian", "mixed_partials")
            if name in derivatives
        ]
        lines.append(f"  derivative error vs exact (median relative, {derivatives['test_points']} test points): " + ", ".join(parts))
        if "laplacian_abs" in derivatives:
            lines.append(f"  laplacian absolute error (median): {derivatives['laplacian_abs']['median']:.3g}")
    active = summary.get("active")
    if active:
        sizes = " → ".join(str(r["samples"]) for r in active)
        lines.append(f"  active sampling: {len(active) - 1} rounds, samples {sizes} (summary.json: active)")
    resumed = summary.get("resumed")
    if resumed:
        line = f"  resumed from {resumed['checkpoint']} in its run folder {resumed['folder']}"
        if resumed["earlier_files"]:
            line += f"; the files it replaced are kept in {resumed['earlier_files']}"
        lines.append(line)
    lines.append(f"  surrogate: {summary['files']['surrogate']}")
    lines.append(f"  summary:   {summary['files']['summary']}")
    return "\n".join(lines)


def keep_freed_memory() -> None:
    """Let this process reuse the memory it frees instead of handing it back to the kernel (glibc only).

    A Hessian-vector product allocates and frees tens of megabytes of autograd temporaries.
    glibc returns large freed blocks to the kernel (``mmap`` above a threshold, heap trimming),
    so the next product page-faults fresh zeroed pages: on the digits CNN a third of each
    product's time went to the kernel (``scripts/bench_landscape_cli.py``). Raising both
    thresholds keeps the memory in the process, which is the right trade for a command that
    runs and exits. Elsewhere (macOS, Windows, musl) nothing changes.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    libc.mallopt(m_trim_threshold, 1 << 30)
    if not libc.mallopt(m_mmap_threshold, 1 << 30):  # glibc before 2.26 caps it at 32 MiB
        libc.mallopt(m_mmap_threshold, 1 << 25)
