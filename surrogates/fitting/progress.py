"""One compact progress bar for a quiet fit: the Lightning callback :class:`FitProgress`.

:func:`surrogates.fit` hides Lightning's per-epoch bars by default, yet a fit of minutes with
no sign of life looks hung. This callback shows a single tqdm line — epochs done of
``trainer.max_epochs``, elapsed and remaining time — but only

* once the fit has run :data:`SHOW_AFTER_SECONDS` (a fit that ends sooner shows nothing), and
* when someone is watching: stderr is a terminal, or the code runs in a Jupyter kernel.

A piped or redirected log never gets it. The line is removed when the fit ends (``leave=False``).
"""

from __future__ import annotations

import sys
from typing import Any

import lightning as L

#: Seconds a fit must have run before its bar appears.
SHOW_AFTER_SECONDS = 5.0


def watched_stderr() -> bool:
    """Whether stderr is a terminal, or this is a Jupyter kernel (its stderr is a notebook cell)."""
    try:
        if sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and hasattr(shell, "kernel")  # ZMQInteractiveShell: a notebook's kernel


class FitProgress(L.Callback):
    """A tqdm bar of epochs on stderr for a long fit that someone is watching (module docstring).

    The bar exists from the fit's start, so its elapsed time, rate and remaining time count
    the whole fit, but tqdm draws nothing before ``delay`` seconds (``tqdm(delay=…)``).

    Args:
        description: The bar's label (``"fit"``, ``"fit member 2/4"``).
        after_seconds: Seconds before the bar may appear (default :data:`SHOW_AFTER_SECONDS`,
            read when the fit starts).
    """

    def __init__(self, description: str = "fit", after_seconds: float | None = None):
        self.description = description
        self.after_seconds = after_seconds
        self._bar: Any = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not (trainer.is_global_zero and watched_stderr()):
            return
        from tqdm import tqdm

        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        self._bar = tqdm(
            total=epochs, initial=trainer.current_epoch, desc=self.description, unit="epoch", file=sys.stderr,
            leave=False, dynamic_ncols=True,
            delay=SHOW_AFTER_SECONDS if self.after_seconds is None else float(self.after_seconds),
        )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._bar is not None:
            self._bar.update(trainer.current_epoch + 1 - self._bar.n)  # the counter moves on after this hook

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._close()
