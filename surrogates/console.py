"""What a command shows the user while it runs: :func:`report`, :class:`CommandOutput`.

Under a command (a Hydra job, from :class:`CommandOutput`'s start to its end) a report goes
through the logger :data:`REPORT_LOGGER`, which configs/hydra/default.yaml gives two handlers:
the console (stdout, the bare text) and the job's log file in the run folder (``train.log``,
``critical.log``, ``landscape.log``, with a timestamp). It does not propagate, so the console
shows it once. Outside a command's job (a test, a notebook calling a command's ``run``) it is
printed.
"""

from __future__ import annotations

import logging
import sys
from contextlib import ExitStack
from typing import Any

from hydra.experimental.callback import Callback

from surrogates.lightning_warnings import lightning_internals_quiet

REPORT_LOGGER = "surrogates.report"

_report = logging.getLogger(REPORT_LOGGER)
_job: ExitStack | None = None  # set while a command's job runs


def report(text: str) -> None:
    """Show ``text`` (a run's summary, the output folder) to the user and keep it in the job's log."""
    if _job is not None and _report.handlers:
        _report.info(text)
    else:
        print(text)


def start_job() -> None:
    """From here on :func:`report` logs, and Lightning's banners and tips are dropped
    (:func:`~surrogates.lightning_warnings.lightning_internals_quiet`)."""
    global _job
    end_job()  # a job that ended by sys.exit never reached on_job_end
    _job = ExitStack()
    _job.enter_context(lightning_internals_quiet())


def end_job() -> None:
    """Undo :func:`start_job`: the logging filters come off, :func:`report` prints again."""
    global _job
    if _job is not None:
        job, _job = _job, None
        job.close()


class CommandOutput(Callback):
    """Hydra callback (configs/hydra/default.yaml) around each job of every command:
    :func:`start_job` before the command runs, :func:`end_job` after it."""

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        start_job()

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        end_job()


def show_progress_bar(setting: bool | None) -> bool:
    """Whether a Lightning progress bar is shown for ``trainer.enable_progress_bar``: as set,
    and when the config leaves it open (null) only when stdout is a terminal. Piped or
    redirected, its redraws would fill the log (a bar line per refresh)."""
    if setting is not None:
        return bool(setting)
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed stdout
        return False
