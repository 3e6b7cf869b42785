"""A Lightning callback for ``benchmarks/fit_tiny.py``: where a fit's wall time goes, phase by phase (Sec. III-F).

``fit_tiny.py`` adds it to the ``semcc fit`` it runs (``--trainer.callbacks+=``, with this folder on
``PYTHONPATH``). On global rank 0 it writes ``path`` (JSON) at the end of the fit: one entry per run of consecutive
training batches of one phase (the batches carry their phase, ``strategies.PHASES``) with its epoch, batch count
and the wall clock from its first batch's start to its last batch's end, and one entry per validation. Times are
``time.time()`` stamps, so that the script can set them against its own clock for the start-up and the end.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

__all__ = ["PhaseTimer"]


class PhaseTimer(Callback):
    """Records the wall clock of each phase run and validation of a fit; writes them to ``path`` (JSON)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.runs: list[dict[str, Any]] = []
        self.validations: list[dict[str, float]] = []
        self.fit_start = float("nan")

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.fit_start = time.time()

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        phase = batch.get("phase", "?") if isinstance(batch, dict) else "?"
        now = time.time()
        last = self.runs[-1] if self.runs else None
        if last is None or last["phase"] != phase or last["epoch"] != trainer.current_epoch or last["closed"]:
            self.runs.append({"phase": phase, "epoch": trainer.current_epoch, "batches": 0, "start": now,
                              "end": now, "closed": False})
        self.runs[-1]["batches"] += 1

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.runs:
            self.runs[-1]["end"] = time.time()

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        if self.runs:
            self.runs[-1]["closed"] = True
        self.validations.append({"epoch": trainer.current_epoch, "start": time.time(), "end": float("nan")})

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking and self.validations:
            self.validations[-1]["end"] = time.time()

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        runs = [{k: v for k, v in r.items() if k != "closed"} for r in self.runs]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"fit_start": self.fit_start, "runs": runs,
                                         "validations": self.validations}, indent=1))
