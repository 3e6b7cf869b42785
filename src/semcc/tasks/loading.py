"""Rebuild a trained :class:`~semcc.tasks.module.SemanticCCTask` (paper Eq. 1) from a ``semcc fit`` checkpoint.

A semcc checkpoint keeps the trainable weights only, plus (``checkpoint["semcc"]``) the run's configuration
as YAML, the caption tokenizer's files and a fingerprint of the frozen base weights. :func:`load_task`
builds the model from that configuration (re-seeding first, so random-init frozen weights come back
identical; pretrained ones are read again from the paths the configuration names), loads the trainable
weights and checks the fingerprint. No data module and no trainer are needed: this is what
:class:`semcc.inference.Predictor` and ``semcc caption`` use.
"""

from __future__ import annotations

import dataclasses
import inspect
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from jsonargparse import ArgumentParser

from semcc.data.options import binary_mask_class
from semcc.models.configs import upgrade_model_config
from semcc.models.semantic_cc import SemanticCC
from semcc.tasks.evaluator import EvalConfig
from semcc.tasks.module import SemanticCCTask
from semcc.tasks.schedule import OptimConfig

__all__ = ["CheckpointConfigError", "load_task", "task_kwargs"]


class CheckpointConfigError(ValueError):
    """A checkpoint that cannot be rebuilt on its own (no stored configuration, or a broken one)."""


def _read(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # torch raises many kinds for a bad file
        raise CheckpointConfigError(f"{path}: not a readable PyTorch checkpoint ({err})") from err


def task_kwargs(hparams: dict[str, Any]) -> dict[str, Any]:
    """The :class:`SemanticCCTask` keyword arguments stored in a checkpoint's ``hyper_parameters``.

    Of the evaluation settings only :data:`EvalConfig.STORED <semcc.tasks.evaluator.EvalConfig>` are taken (the
    others are options of each run). Checkpoints written before the optimiser and evaluation settings were
    grouped (``lr``, ``max_new_tokens``, ... at the top level) are read too.
    """
    accepted = set(inspect.signature(SemanticCCTask.__init__).parameters) - {"self", "model"}
    kwargs = {k: v for k, v in hparams.items() if k in accepted and k not in ("optim", "evaluation")}
    optim = dict(hparams.get("optim") or {k: hparams[k] for k in _fields(OptimConfig) if k in hparams})
    evaluation = dict(hparams.get("evaluation") or {}) or {k: hparams[k] for k in _fields(EvalConfig) if k in hparams}
    kwargs["optim"] = OptimConfig(**{k: v for k, v in optim.items() if k in _fields(OptimConfig)})
    kwargs["evaluation"] = EvalConfig(**{k: v for k, v in evaluation.items() if k in EvalConfig.STORED})
    return kwargs


def _config_binary_mask_class(config: dict[str, Any]) -> str | None:
    """What a binary mask of a run marks (:func:`semcc.data.options.binary_mask_class`), from its stored ``data``
    section (sources: those with a root, ``synth_root`` giving all three; ``loader.joint_mask_mode``); ``None``
    when the run had no semcc data module."""
    data = config.get("data")
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("init_args"), dict):
        data = data["init_args"]
    synth = bool(data.get("synth_root"))
    sources = data.get("sources") or [s for s in ("cd", "cc", "joint") if synth or data.get(f"{s}_root")]
    loader = data.get("loader") if isinstance(data.get("loader"), dict) else {}
    return binary_mask_class(sources, loader.get("joint_mask_mode", "building"))


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def load_task(path: str | Path, map_location: str | torch.device = "cpu") -> SemanticCCTask:
    """The task of a ``semcc fit`` checkpoint, in eval mode, on ``map_location``.

    Raises :class:`CheckpointConfigError` when the checkpoint lacks semcc's stored configuration (build the
    model yourself then, and call ``SemanticCCTask.load_from_checkpoint(path, model=model)``), and
    ``ValueError`` when the frozen base weights differ from those it was trained with.
    """
    path = Path(path).expanduser()
    checkpoint = _read(path, map_location)
    meta = checkpoint.get("semcc") or {}
    if "config" not in meta:
        raise CheckpointConfigError(
            f"{path}: no run configuration stored (not written by `semcc fit`); build the model yourself and use "
            "SemanticCCTask.load_from_checkpoint(path, model=model)"
        )
    config = yaml.safe_load(meta["config"])
    try:
        model_config = config["model"]["model"]
    except (KeyError, TypeError) as err:
        raise CheckpointConfigError(f"{path}: the stored configuration has no model.model section") from err
    model_config = upgrade_model_config(model_config)  # flat part options of earlier releases
    with tempfile.TemporaryDirectory() as tmp:
        if meta.get("tokenizer_files"):
            for name, data in meta["tokenizer_files"].items():
                (Path(tmp) / name).write_bytes(data)
            cc_head = (model_config.get("init_args") or {}).get("cc_head")
            if isinstance(cc_head, dict):
                cc_head.setdefault("init_args", {})["tokenizer"] = tmp
        seed = config.get("seed_everything")
        if seed is not None and seed is not False and seed is not True:
            L.seed_everything(int(seed), verbose=False)
        parser = ArgumentParser(exit_on_error=False)
        parser.add_argument("--model", type=SemanticCC)
        model = parser.instantiate(parser.parse_object({"model": model_config})).model
    kwargs = task_kwargs(checkpoint.get("hyper_parameters") or {})
    if kwargs.get("binary_mask_class") is None:  # written before 0.6 stored it
        kwargs["binary_mask_class"] = _config_binary_mask_class(config)
    task = SemanticCCTask(model, **kwargs)
    task.run_config = meta["config"]
    task.on_load_checkpoint(checkpoint)
    task.load_state_dict(checkpoint["state_dict"], strict=False)
    return task.to(map_location).eval()
