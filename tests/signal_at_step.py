"""A test callback that signals its own process at a given training step (pre-emption and crash tests)."""

from __future__ import annotations

import os
import signal

import lightning as L


class SignalAtStep(L.Callback):
    """Send ``signal_name`` to this process at the start of optimiser step ``step`` (rank 0 only)."""

    def __init__(self, step: int, signal_name: str = "SIGTERM") -> None:
        self.step, self.signum = step, getattr(signal, signal_name)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step and trainer.is_global_zero:
            os.kill(os.getpid(), self.signum)
