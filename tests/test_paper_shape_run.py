"""The paper-scale path proven on the CPU (slow): the paper config plus configs/paper/shape_check.yaml, i.e. the
paper's widths with 2 layers each, built from files in the real formats (`semcc shape-files`) by the real loaders,
trained under 2-process DDP through the three phases, validated, saved, resumed, then `semcc test`,
`semcc predict`, `load_task` and `Predictor` on the result. About 10 minutes on 2 cores: `pytest -m slow`."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from semcc.cli import CONFIG_DIR
from semcc.paper_shape import write_paper_shape_checkpoints

pytestmark = pytest.mark.slow


def _args(files: Path, run: Path, data: Path) -> list[str]:
    head, enc = "--model.model.init_args.cc_head.init_args", "--model.model.init_args.encoder.init_args"
    return [
        "--config", str(CONFIG_DIR / "paper" / "levir.yaml"),
        "--config", str(CONFIG_DIR / "paper" / "shape_check.yaml"),
        f"{enc}.checkpoint={files / 'sam_vit_l.pth'}", f"{head}.llm.path={files / 'vicuna-7b'}",
        f"{head}.qformer.checkpoint={files / 'blip2_pretrained_flant5xxl.pth'}",
        f"{head}.llama_proj_checkpoint={files / 'pretrained_minigpt4.pth'}",
        f"--data.synth_root={data}", f"--trainer.default_root_dir={run}", f"--trainer.logger.init_args.save_dir={run}",
        "--trainer.enable_progress_bar=false",
    ]


def _semcc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "semcc.main", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return result


def test_paper_config_at_real_widths_trains_resumes_tests_and_predicts(tmp_path: Path) -> None:
    files = tmp_path / "files"
    write_paper_shape_checkpoints(files)
    run, data = tmp_path / "run", tmp_path / "synth"
    args = _args(files, run, data)

    # Fit: the three phases under 2-process DDP, one validation, checkpoints of the trainable weights only.
    out = _semcc("fit", *args, cwd=tmp_path)
    assert "distributed_backend=gloo" in out.stdout + out.stderr
    assert (out.stdout + out.stderr).count("semcc: last checkpoint") == 1
    rows = list(csv.DictReader((run / "version_0" / "metrics.csv").open()))
    logged = {k for r in rows for k, v in r.items() if v}
    assert {"train/loss_cd_cd", "train/loss_cc_cc", "train/loss_cd_joint", "train/loss_cc_joint"} <= logged
    assert {"val/cd_f1", "val/cc_cider", "val/floor_constant_cider"} <= logged
    last = run / "version_0" / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    steps = state["global_step"]
    assert steps == 5  # per rank: 1 cd crop, 2 cc pairs, 2 joint pairs
    assert not any(".base_layer." in k for k in state["state_dict"])  # no frozen weights in the file
    assert any(".lora_A." in k for k in state["state_dict"]) and any("encoder.bcsf" in k for k in state["state_dict"])

    # Resume: a second epoch from that file ends at twice the steps.
    _semcc("fit", *args, f"--ckpt_path={last}", "--trainer.max_epochs=2", cwd=tmp_path)
    resumed = run / "version_1" / "checkpoints" / "last.ckpt"
    assert torch.load(resumed, map_location="cpu", weights_only=False)["global_step"] == 2 * steps

    # Test: captions on LEVIR-CC test, CD on LEVIR-CD test, and the report says so.
    _semcc("test", *args, f"--ckpt_path={resumed}", "--model.evaluation.meteor=false", cwd=tmp_path)
    results = json.loads(next(run.rglob("metrics.json")).read_text())
    assert results["detection_protocol"].startswith("LEVIR-CD test")
    assert results["pairs"] == 2 and "cider" in results["captioning"]["model"]

    # Predict: captions.json and one mask per test pair.
    _semcc("predict", *args, f"--ckpt_path={resumed}", cwd=tmp_path)
    predictions = json.loads((run / "predictions" / "captions.json").read_text())
    assert len(predictions) == 2 and len(list((run / "predictions" / "masks").glob("*.png"))) == 2

    # load_task and Predictor rebuild the model from the checkpoint file alone and caption a pair.
    from semcc.inference import Predictor
    from semcc.tasks.loading import load_task

    task = load_task(resumed)
    head = task.model.cc_head
    config = head.llm.config
    assert (config.hidden_size, config.vocab_size, task.model.encoder.embed_dim) == (4096, 32000, 1024)
    saved = torch.load(resumed, map_location="cpu", weights_only=False)["state_dict"]
    name = next(k for k in saved if ".lora_A." in k)
    torch.testing.assert_close(task.state_dict()[name], saved[name])
    pair = sorted((data / "LEVIR-CC" / "images" / "test" / "A").glob("*.png"))[0]
    result = Predictor(task, batch_size=2).predict(pair, pair.parent.parent / "B" / pair.name)
    assert isinstance(result.caption, str) and result.mask.shape == (256, 256)
