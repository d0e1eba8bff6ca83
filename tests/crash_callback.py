"""A Lightning callback for the resume tests, importable by Hydra as ``crash_callback.CrashAt``
from every test folder (this folder is on ``sys.path`` through the root conftest)."""

from __future__ import annotations

import lightning as L


class CrashAt(L.Callback):
    """Simulates a killed run: raises at the end of a given training epoch."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")
