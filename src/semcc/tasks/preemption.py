"""Checkpoint on pre-emption: a run told to stop (SIGTERM, SIGUSR1) saves where it is and exits.

The paper's schedule (Sec. III-F, 300 epochs of three phases at batch 1, ~20k steps an epoch) runs for days on
clusters that pre-empt jobs: the scheduler sends SIGTERM (or SIGUSR1, e.g. SLURM's ``--signal``) and kills the
job a little later. :class:`PreemptionCheckpoint` catches those signals (its handler only sets a flag), and at
the end of the training step in progress every rank agrees (one all-reduce of a flag per step) to save
``last.ckpt`` beside the run's other checkpoints and exit with status ``128 + signal`` (143 for SIGTERM).
``semcc fit ... --ckpt_path last`` then resumes at the same phase and step: semcc checkpoints carry the
position in the epoch and the phase sampler skips the batches already done
(:meth:`semcc.tasks.module.SemanticCCTask.on_save_checkpoint`). A job killed outright (SIGKILL, a node lost)
resumes from the last periodic checkpoint instead: Lightning's ``ModelCheckpoint(every_n_train_steps=N,
save_last=True)``, as ``configs/paper/levir.yaml`` sets it.

Signals that arrive during validation are acted on at the next training step.

The same callback writes ``last.ckpt`` once more when training ends (``save_at_end``): Lightning's
``ModelCheckpoint(monitor=..., save_last=True)`` writes ``last.ckpt`` at a validation only when it also saves a
best checkpoint there (Lightning 2.6), so when the last validation is not a new best, ``last.ckpt`` would keep an
older state and ``semcc caption``, ``semcc test`` or ``--ckpt_path last`` would use it instead of the trained
weights.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["PreemptionCheckpoint"]


class PreemptionCheckpoint(L.Callback):
    """Save ``last.ckpt`` and exit when the process receives one of ``signals`` during ``fit``.

    Args:
        signals: signal names to catch (default SIGTERM and SIGUSR1).
        dirpath: where to write ``last.ckpt`` (default: the folder of the trainer's first ``ModelCheckpoint``,
            so that ``--ckpt_path last`` finds it, else ``<default_root_dir>/checkpoints``).
        exit: exit after saving (status ``128 + signal``); ``False`` only saves and lets training go on.
        save_at_end: also write ``last.ckpt`` when training ends, so that it always holds the final weights.
    """

    def __init__(self, signals: tuple[str, ...] = ("SIGTERM", "SIGUSR1"), dirpath: str | None = None,
                 exit: bool = True, save_at_end: bool = True) -> None:
        unknown = [s for s in signals if not isinstance(getattr(signal, s, None), signal.Signals)]
        if unknown:
            raise ValueError(f"unknown signal names {unknown}; e.g. SIGTERM, SIGUSR1")
        self.signals = tuple(signals)
        self.dirpath = dirpath
        self.exit = exit
        self.save_at_end = save_at_end
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        #: Where the last pre-emption checkpoint went (``None`` before one is written).
        self.saved_path: Path | None = None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum  # no I/O and no collectives in a signal handler: the step end acts on it

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After Lightning has installed its own handlers (whose SIGTERM handling waits for the epoch's end on
        # one process): these replace them for the run and are restored at its end.
        for name in self.signals:
            signum = getattr(signal, name)
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handler)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()
        if self.save_at_end and not trainer.fast_dev_run:
            trainer.save_checkpoint(self.checkpoint_path(trainer))  # every rank takes part; rank 0 writes

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()

    def checkpoint_path(self, trainer: L.Trainer) -> Path:
        """``last.ckpt`` in ``dirpath``, the first ModelCheckpoint's folder or ``<root>/checkpoints``."""
        if self.dirpath is not None:
            return Path(self.dirpath) / "last.ckpt"
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath:
                return Path(callback.dirpath) / "last.ckpt"
        return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # Any rank that was signalled stops them all (a scheduler may signal only some processes).
        if not trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            return
        signum = self.received if self.received is not None else signal.SIGTERM
        name = signal.Signals(signum).name if self.received is not None else "a stop signal on another rank"
        path = self.checkpoint_path(trainer)
        trainer.save_checkpoint(path)  # every rank takes part (sharded states); rank 0 writes
        self.saved_path = path
        rank_zero_info(f"semcc: received {name} at step {trainer.global_step}: saved {path}; resume with "
                       "--ckpt_path last (or that path)")
        self.received = None
        if self.exit:
            raise SystemExit(128 + int(signum))
