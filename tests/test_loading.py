"""Checkpoints rebuild on their own: stored config and tokenizer, fingerprint-checked frozen weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from semcc.tasks.loading import CheckpointConfigError, load_task


def test_checkpoint_stores_config_and_tokenizer(tiny_checkpoint: Path) -> None:
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)
    config = yaml.safe_load(ckpt["semcc"]["config"])
    assert config["model"]["model"]["class_path"] == "semcc.models.SemanticCC"
    assert config["model"]["model"]["init_args"]["encoder"]["init_args"]["img_size"] == 64
    assert "tokenizer.json" in ckpt["semcc"]["tokenizer_files"]


def test_load_task_rebuilds_the_trained_model(tiny_checkpoint: Path) -> None:
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)
    task = load_task(tiny_checkpoint)
    assert not task.training
    state = task.state_dict()
    for name, tensor in ckpt["state_dict"].items():
        assert torch.equal(state[name], tensor), name
    assert task.frozen_fingerprint() == ckpt["semcc"]["frozen_fingerprint"]
    assert len(task.model.cc_head.tokenizer) > 10
    image = torch.randn(2, 3, 64, 64)
    again = load_task(tiny_checkpoint)
    assert task.model.generate(image, image.flip(-1)) == again.model.generate(image, image.flip(-1))


def test_load_task_errors_name_the_file(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.ckpt"):
        load_task(tmp_path / "missing.ckpt")
    bad = tmp_path / "corrupt.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointConfigError, match=r"corrupt\.ckpt"):
        load_task(bad)
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)
    del ckpt["semcc"]["config"]
    bare = tmp_path / "bare.ckpt"
    torch.save(ckpt, bare)
    with pytest.raises(CheckpointConfigError, match=r"bare\.ckpt: no run configuration"):
        load_task(bare)


def test_task_settings_come_back_from_stored_hyper_parameters() -> None:
    """Grouped settings (this release) and flat ones (earlier checkpoints) both rebuild the task's options;
    of the evaluation settings only those describing the trained model are taken, never a run's scoring options."""
    from semcc.tasks.loading import task_kwargs

    grouped = task_kwargs({"strategy": "two_stage", "optim": {"lr": 0.1, "min_lr_ratio": 0.5},
                           "evaluation": {"max_new_tokens": 5, "ensemble": True, "meteor": False}})
    flat = task_kwargs({"strategy": "two_stage", "lr": 0.1, "min_lr_ratio": 0.5, "max_new_tokens": 5,
                        "ensemble": True, "meteor": False, "caption_protocol": "ids", "unknown": 1})
    for kw in (grouped, flat):
        assert kw["strategy"] == "two_stage" and "unknown" not in kw
        assert kw["optim"].lr == 0.1 and kw["optim"].min_lr_ratio == 0.5
        assert kw["evaluation"].max_new_tokens == 5 and kw["evaluation"].ensemble
        assert kw["evaluation"].meteor and kw["evaluation"].caption_protocol == "words"  # run options: defaults
