"""What the user sees while the package works: :func:`report`, :func:`show_progress_bar`,
:func:`lightning_internals_quiet`.

Under a command (a Hydra job, from :func:`start_job` to :func:`end_job`, called by the Hydra
callback :class:`surrogates.cli.common.CommandOutput`) a report goes
through the logger :data:`REPORT_LOGGER`, which configs/hydra/default.yaml gives two handlers:
the console (stdout, the bare text) and the job's log file in the run folder (``train.log``,
``critical.log``, ``landscape.log``, with a timestamp). It does not propagate, so the console
shows it once. Outside a command's job (a test, a notebook calling a command's ``run``) it is
printed.
"""

from __future__ import annotations

import logging
import re
import sys
import warnings
from contextlib import ExitStack, contextmanager
from typing import Iterator

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
    (:func:`lightning_internals_quiet`)."""
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


# ---------------------------------------------------------------- Lightning's own output
#
# lightning_internals_quiet drops, within its block,
#
# * Lightning's own deprecation notices (PYTREE_DEPRECATION), and
# * the lines Lightning logs at INFO on every ``Trainer`` (LIGHTNING_CHATTER): the
#   "GPU available / TPU available" banners, the "💡 Tip" advertisements for litlogger and
#   litmodels, and "`Trainer.fit` stopped: `max_epochs=…` reached" (the summary says how many
#   epochs ran).
#
# Lightning 2.6 has no switch or environment variable for these; they all go through
# ``rank_zero_info`` to the logger ``lightning.pytorch.utilities.rank_zero``. The block adds a
# filter to that logger and removes it on exit: levels, handlers and the rest of the user's
# logging configuration are left as they were, and Lightning's other messages (warnings,
# "Restoring states from the checkpoint …") still show.
#
# ``train`` (so surrogates.fit and every command that fits) builds and runs its trainers inside
# the block; the command-line tools run their whole job inside it (start_job).

#: Lightning 2.6 flattens batches with a torch pytree API that torch 2.13 deprecates. The notice
#: fires in every fit and predict and names nothing a user of this package can change.
PYTREE_DEPRECATION = r".*isinstance\(treespec, LeafSpec\).*"

#: Start of the INFO lines every Lightning trainer logs that tell a user of this package nothing
#: they can act on (lightning/pytorch/trainer/setup.py, connectors/logger_connector,
#: connectors/callback_connector, loops/fit_loop.py).
LIGHTNING_CHATTER = re.compile(
    r"\s*(GPU available: |TPU available: |HPU available: |💡 Tip: |`Trainer\.fit` stopped: `max_)"
)

#: The loggers ``rank_zero_info`` writes to (lightning_utilities' module-level ``log``, set by
#: whichever of lightning.pytorch / lightning.fabric was imported last).
RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _DropChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not LIGHTNING_CHATTER.match(record.getMessage())


def _rank_zero_loggers() -> list[logging.Logger]:
    loggers = [logging.getLogger(name) for name in RANK_ZERO_LOGGERS]
    try:
        import lightning_utilities.core.rank_zero as rank_zero_module

        current = getattr(rank_zero_module, "log", None)
        if isinstance(current, logging.Logger) and current not in loggers:
            loggers.append(current)
    except ImportError:  # pragma: no cover - lightning always brings lightning_utilities
        pass
    return loggers


@contextmanager
def lightning_internals_quiet() -> Iterator[None]:
    """Within the block, Lightning's deprecation notices and banners/tips are not shown."""
    chatter = _DropChatter()
    loggers = _rank_zero_loggers()
    for logger in loggers:
        logger.addFilter(chatter)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=PYTREE_DEPRECATION)
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(chatter)

