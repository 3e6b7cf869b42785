"""The `semcc` command line: usage, `semcc synth` and its preview picture, a plain 2-process DDP fit and test
(the console without third-party adverts and known-harmless warnings; errors: tests/test_commands.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from semcc.main import main


def test_usage_lists_commands(capsys) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "synth" in out and "usage: semcc" in out
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_synth_command_writes_data_and_preview(tmp_path: Path, capsys) -> None:
    out, preview = tmp_path / "synth", tmp_path / "preview.png"
    args = ["synth", "--out", str(out), "--train", "6", "--val", "2", "--test", "0", "--cd-train", "1",
            "--cd-val", "0", "--cd-test", "0", "--size", "64", "--workers", "1"]
    assert main([*args, "--preview", str(preview), "--preview-n", "3"]) == 0
    text = capsys.readouterr().out
    assert f"preview: {preview}" in text
    images = json.loads((out / "LEVIR-CC/LevirCCcaptions.json").read_text())["images"]
    assert [sum(e["split"] == s for e in images) for s in ("train", "val", "test")] == [6, 2, 0]
    assert len(list((out / "LEVIR-CD/train/A").glob("*.png"))) == 1
    with Image.open(preview) as im:
        assert im.width >= 3 * 64 and im.height >= 3 * 64
    stamp = (out / "synthlevir.json").stat().st_mtime_ns
    assert main(args) == 0  # same arguments: reused, not regenerated
    assert "already complete" in capsys.readouterr().out
    assert (out / "synthlevir.json").stat().st_mtime_ns == stamp


def test_console_script_entry_point(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "semcc.main", "synth", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--nuisance" in result.stdout


# Slow: two processes, fit and test (about 70 s); test_task.py and test_metrics.py keep 2-process DDP by default.
@pytest.mark.slow
def test_plain_ddp_fit_runs_and_prints_once(tiny_cli_args, tmp_path: Path) -> None:
    """What a user types for 2 processes: `semcc fit ... --trainer.devices 2 --trainer.strategy ddp`."""
    run = tmp_path / "ddp"
    args = [sys.executable, "-m", "semcc.main", "fit", *tiny_cli_args(run), "--trainer.accelerator=cpu",
            "--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.max_steps=6", "--model.evaluation.meteor=false"]
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert out.count("semcc: DDP set to find_unused_parameters=True") == 1
    assert out.count("semcc: last checkpoint") == 1 and out.count("semcc: logs and metrics go to") == 1
    assert "Tip: For seamless cloud" not in out and "LeafSpec" not in out  # quiet console: no advert, no noise
    assert "terminate called" not in out  # the gloo group is closed before exit (semcc.cli.close_process_group)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 6
    # `semcc test` on 2 processes too: rank 0 writes the report (the log folder is asked on every rank).
    test = [sys.executable, "-m", "semcc.main", "test", *tiny_cli_args(run), "--trainer.accelerator=cpu",
            "--trainer.devices=2", "--trainer.strategy=ddp", f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
            "--model.evaluation.meteor=false"]
    result = subprocess.run(test, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert out.count("semcc: test report") == 1 and len(list(run.rglob("metrics.json"))) == 1
    assert "The dirpath has changed" not in out and "Tip: For seamless cloud" not in out
