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


def test_a_checkpoint_in_the_0_1_layout_loads(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """A checkpoint whose stored configuration and hyper-parameters use 0.1's flat names (``qformer_layers``,
    ``lora_r``, ``lr``, ``max_new_tokens``, ...) rebuilds the same task."""
    from semcc.models.configs import FLAT_NAMES

    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)
    config = yaml.safe_load(ckpt["semcc"]["config"])
    for part in config["model"]["model"]["init_args"].values():
        if not isinstance(part, dict):
            continue
        args = part["init_args"]
        for flat, dotted in FLAT_NAMES.get(part["class_path"].rsplit(".", 1)[-1], {}).items():
            group, field = dotted.split(".")
            if isinstance(args.get(group), dict) and field in args[group]:
                args[flat] = args[group].pop(field)
        for group in [g for g, v in args.items() if isinstance(v, dict) and not v]:
            del args[group]
    hparams = dict(ckpt["hyper_parameters"])
    hparams.update(hparams.pop("optim"), **hparams.pop("evaluation"))
    flat = tmp_path / "flat.ckpt"
    torch.save(dict(ckpt, hyper_parameters=hparams, semcc=dict(ckpt["semcc"], config=yaml.safe_dump(config))), flat)
    cc_args = config["model"]["model"]["init_args"]["cc_head"]["init_args"]
    assert "qformer_layers" in cc_args and "llm_hidden_size" in cc_args and "qformer" not in cc_args
    assert "lr" in hparams and "max_new_tokens" in hparams
    old, new = load_task(flat), load_task(tiny_checkpoint)
    assert old.evaluation.max_new_tokens == new.evaluation.max_new_tokens == 6
    assert old.optim == new.optim
    state_old, state_new = old.state_dict(), new.state_dict()
    assert state_old.keys() == state_new.keys()
    assert all(torch.equal(state_old[k], state_new[k]) for k in state_new)
