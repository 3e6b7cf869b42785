"""Long runs lose no work: SIGTERM saves and resumes at the same step; SIGKILL resumes from the periodic save."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

HERE = Path(__file__).resolve().parent


def _override(path: Path, run: Path, kill: tuple[int, str] | None) -> Path:
    """Callbacks: the epoch-end best and last, a periodic last.ckpt every 3 steps, the pre-emption checkpoint, and
    maybe a killer."""
    callbacks = [
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
            # tiny.yaml's augmentations off: with them on, the newest last*.ckpt of the plain run holds step 12, not
            # 14 (which ModelCheckpoint writes last.ckpt last differs; open, see the issue-13 note)
            "--data.augment.enabled=false",
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
    plain = _fit(tiny_cli_args, tmp_path / "plain", tmp_path, "plain")
    assert plain.returncode == 0, plain.stderr[-3000:]
    total = _last(tmp_path / "plain")["global_step"]
    assert total == 14  # 2 epochs of 7 steps: cd 1, cc 3, joint 3

    # SIGTERM at the start of step 5 (phase iii of epoch 0): that step ends, last.ckpt is saved, exit 143.
    run = tmp_path / "run"
    term = _fit(tiny_cli_args, run, tmp_path, "term", kill=(5, "SIGTERM"))
    assert term.returncode == 128 + signal.SIGTERM, term.stderr[-3000:]
    assert "semcc: received SIGTERM at step 6" in term.stdout + term.stderr
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
