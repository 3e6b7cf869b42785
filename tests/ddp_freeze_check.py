"""A real 2-process DDP run (CPU, gloo) of one three-stage epoch, checking per-phase freezing exactly.

Run by ``tests/test_task.py``; Lightning's DDP launcher re-runs this script for rank 1. Environment:
``SEMCC_SYNTH_ROOT`` (a SynthLEVIR folder), ``SEMCC_SYNTH_CONFIG`` (its arguments as JSON), ``SEMCC_OUT``
(where rank 0 writes the JSON report).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L
import torch

from semcc.data.datamodule import SemanticCCDataModule
from semcc.data.options import CDCropConfig
from semcc.data.synthetic import SynthLEVIRConfig
from semcc.models import build_semantic_cc
from semcc.tasks.evaluator import EvalConfig
from semcc.tasks.module import SemanticCCTask
from semcc.tasks.schedule import OptimConfig


class Boundaries(L.Callback):
    def __init__(self) -> None:
        self.snapshots: list[tuple[str, dict[str, torch.Tensor]]] = []

    def _snap(self, module: SemanticCCTask) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in module.model.named_parameters()}

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if not self.snapshots or self.snapshots[-1][0] != batch["phase"]:
            self.snapshots.append((batch["phase"], self._snap(module)))

    def on_train_end(self, trainer, module) -> None:
        self.snapshots.append(("end", self._snap(module)))


def main() -> None:
    root = Path(os.environ["SEMCC_SYNTH_ROOT"])
    config = SynthLEVIRConfig(**json.loads(os.environ["SEMCC_SYNTH_CONFIG"]), workers=1)
    dm = SemanticCCDataModule(
        synth_root=str(root), synth=config, tokenizer_dir=str(Path.cwd() / "tok"), batch_size=2,
        cd=CDCropConfig(crop_size=64, samples_per_tile=2),
    )
    L.seed_everything(0)
    model = build_semantic_cc("mini", img_size=64, tokenizer=dm.tokenizer_path)
    task = SemanticCCTask(model, optim=OptimConfig(lr=1e-3, weight_decay=0.1), evaluation=EvalConfig(log_samples=0))
    recorder = Boundaries()
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp",  # the plain name: the task turns on find_unused_parameters
        max_epochs=1, limit_val_batches=0, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, use_distributed_sampler=False, callbacks=[recorder],
    )
    trainer.fit(task, datamodule=dm)

    assert trainer.strategy._ddp_kwargs["find_unused_parameters"] is True
    trainable = task.trainable
    from semcc.strategies import PHASES

    frozen_moved, moved_parts = [], {}
    for (phase, before), (_, after) in zip(recorder.snapshots, recorder.snapshots[1:], strict=False):
        parts = set(PHASES[phase].parts)
        moved = {n for n in before if not torch.equal(before[n], after[n])}
        frozen_moved += [f"{phase}:{n}" for n in moved if not (n in trainable and n.split(".", 1)[0] in parts)]
        moved_parts[phase] = sorted({n.split(".", 1)[0] for n in moved})
    final = torch.cat([p.detach().flatten().double() for p in task.model.parameters()])
    gathered = [torch.zeros_like(final) for _ in range(trainer.world_size)]
    torch.distributed.all_gather(gathered, final)
    if trainer.global_rank == 0:
        report = {
            "world_size": trainer.world_size,
            "phases": [p for p, _ in recorder.snapshots[:-1]],
            "frozen_moved": frozen_moved,
            "moved_parts": moved_parts,
            "ranks_agree": all(torch.equal(gathered[0], g) for g in gathered[1:]),
        }
        Path(os.environ["SEMCC_OUT"]).write_text(json.dumps(report))
    torch.distributed.barrier()
    # Tear gloo down before interpreter exit; left to the exit handlers its threads may abort the process.
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
