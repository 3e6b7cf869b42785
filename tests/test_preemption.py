"""Long runs lose no work: SIGTERM saves and resumes at the same step; SIGKILL resumes from the periodic save;
last.ckpt holds the end of training even when the last validation is not a new best."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

from semcc.tasks.preemption import PreemptionCheckpoint

HERE = Path(__file__).resolve().parent


def _override(path: Path, run: Path, kill: tuple[int, str] | None) -> Path:
    """Callbacks: the epoch-end best and last, a periodic last.ckpt every 3 steps, the pre-emption checkpoint, and
    maybe a killer."""
    callbacks = [
        {"class_path": "lightning.pytorch.callbacks.EMAWeightAveraging", "init_args": {"decay": 0.995}},  # tiny's
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",  # as configs/paper/levir.yaml: the best
         "init_args": {"dirpath": str(run / "checkpoints"), "monitor": "val/cc_s_m", "mode": "max",  # at epoch end
                       "save_last": True}},
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
         "init_args": {"dirpath": str(run / "checkpoints"), "every_n_train_steps": 3, "save_top_k": 0,
                       "save_last": True}},
        {"class_path": "semcc.tasks.preemption.PreemptionCheckpoint"},
    ]
    if kill is not None:
        callbacks.append({"class_path": "signal_at_step.SignalAtStep",
                          "init_args": {"step": kill[0], "signal_name": kill[1]}})
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    return path


def _fit(tiny_cli_args, run: Path, tmp_path: Path, name: str, kill: tuple[int, str] | None = None,
         resume: bool = False) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "semcc.main", "fit", *tiny_cli_args(run),
            "--data.phases.repeats={cc: 1, joint: 1}", "--trainer.max_epochs=2", "--model.evaluation.meteor=false",
            "--data.augment.enabled=false",  # speed: tiny's augmentations make these three fits ~3x slower
            "--config", str(_override(tmp_path / f"{name}.yaml", run, kill))]
    if resume:
        args.append("--ckpt_path=last")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def _last(run: Path) -> dict:
    """The newest ``last*.ckpt`` (what ``--ckpt_path last`` takes; the periodic callback's is ``last-v1.ckpt``)."""
    path = max((run / "checkpoints").glob("last*.ckpt"), key=lambda p: p.stat().st_mtime_ns)
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_sigterm_and_sigkill_resume_to_the_same_number_of_steps(tiny_cli_args, tmp_path: Path) -> None:
    total = 14  # an uninterrupted run: 2 epochs of 7 steps (cd 1, cc 3, joint 3)

    # SIGTERM at the start of step 5 (phase iii of epoch 0): that step ends, last.ckpt is saved, exit 143.
    run = tmp_path / "run"
    term = _fit(tiny_cli_args, run, tmp_path, "term", kill=(5, "SIGTERM"))
    assert term.returncode == 128 + signal.SIGTERM, term.stderr[-3000:]
    assert "semcc: received SIGTERM at step 6" in term.stdout + term.stderr
    assert "averaging_state" in _last(run)  # a run cut short keeps the weight average, to resume it
    saved = _last(run)
    assert (saved["global_step"], saved["semcc"]["batches"], saved["semcc"]["phase"]) == (6, 6, "joint")

    # Resumed there, then SIGKILL at the start of step 10 (epoch 1): nothing is saved then, but the periodic
    # last checkpoint of step 9 is.
    killed = _fit(tiny_cli_args, run, tmp_path, "kill", kill=(10, "SIGKILL"), resume=True)
    assert killed.returncode == -signal.SIGKILL
    saved = _last(run)
    assert (saved["global_step"], saved["epoch"], saved["semcc"]["batches"]) == (9, 1, 2)

    # Resumed from it, the run ends with as many optimiser steps as the one that was never interrupted.
    resumed = _fit(tiny_cli_args, run, tmp_path, "resume", resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _last(run)["global_step"] == total
    # last.ckpt itself holds the end, whether or not the second validation was a new best (Lightning's
    # ModelCheckpoint rewrites last.ckpt only with a new best; PreemptionCheckpoint writes it when training ends)
    final = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert final["global_step"] == total
    # tiny's weight average (EMAWeightAveraging): its warning about sharded layers is not shown on one device
    # (semcc.cli filters it unless the strategy shards)
    assert "WeightAveraging callback" not in resumed.stdout + resumed.stderr


class _Worse(L.LightningModule):
    """A one-weight model whose validation score only gets worse: no validation after the first is a new best."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.w - batch).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("score", -float(self.current_epoch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_last_ckpt_holds_the_end_of_training_when_the_last_validation_is_not_a_new_best(tmp_path: Path) -> None:
    data = torch.utils.data.DataLoader(torch.ones(4, 1), batch_size=2)

    def fit(callbacks: list) -> dict:
        run = tmp_path / str(len(callbacks))
        best = ModelCheckpoint(dirpath=run, monitor="score", mode="max", save_last=True)
        trainer = L.Trainer(max_epochs=3, callbacks=[best, *callbacks], logger=False, enable_progress_bar=False,
                            enable_model_summary=False, default_root_dir=run)
        trainer.fit(_Worse(), data, data)
        assert trainer.global_step == 6
        return torch.load(run / "last.ckpt", map_location="cpu", weights_only=False)

    assert fit([])["global_step"] == 2  # Lightning alone: last.ckpt stays at the only best, epoch 0
    assert fit([PreemptionCheckpoint()])["global_step"] == 6  # semcc's callback writes the end
