"""What every command shares: how it reports a user's mistake, how many threads it uses.

A bad file, a bad checkpoint or a bad config value is not a bug in the program, so the user
gets the message that names the place (file, row, column, key) — not a traceback wall.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import ctypes
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.errors import InstantiationException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from surrogates.console import end_job
from surrogates.errors import SurrogatesError
from surrogates.io import check_output_folder

USER_ERRORS = (
    SurrogatesError, ValueError, FileNotFoundError, InstantiationException, OmegaConfBaseException,
)


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


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads for torch (None: torch's default, one per core).

    Small full-batch fits gain little from threads, and on a machine shared with other jobs
    OpenMP threads that wait on each other can cost many times their work; ``threads=1`` is
    then the fast choice.
    """
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be a positive integer or null, got {threads}")
        torch.set_num_threads(int(threads))


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
