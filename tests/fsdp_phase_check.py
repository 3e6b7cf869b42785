"""A real 2-process FSDP2 run (CPU, gloo) of the three-stage schedule through Lightning, checking sharding,
per-phase freezing, single-file checkpoints of the trainable weights and resuming from them.

Run by ``tests/test_fsdp.py``; Lightning's launcher re-runs this script for rank 1. Environment:
``SEMCC_SYNTH_ROOT`` (a SynthLEVIR folder), ``SEMCC_SYNTH_CONFIG`` (its arguments as JSON), ``SEMCC_OUT``
(where rank 0 writes the JSON report). The model is the tiny preset with a bf16 LLM and the paper's freezing
(frozen Q-Former, LoRA on the LLM; the trainable parameters are float32) and the auxiliary change loss
(detached: a second Q-Former pass), sharded by
:func:`semcc.tasks.sharding.shard_semantic_cc` from ``configure_model`` under
:class:`semcc.tasks.sharding.PhaseFSDPStrategy` with ``precision="bf16-mixed"``.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor

from semcc.data.datamodule import SemanticCCDataModule
from semcc.data.options import CDCropConfig
from semcc.data.synthetic import SynthLEVIRConfig
from semcc.models import build_semantic_cc, preset_kwargs
from semcc.strategies import PHASES
from semcc.tasks.evaluator import EvalConfig
from semcc.tasks.identity import hash_frozen
from semcc.tasks.module import SemanticCCTask
from semcc.tasks.schedule import OptimConfig
from semcc.tasks.sharding import (
    PhaseFSDPStrategy,
    full_state_dict,
    unit_dtype_plan,
)

#: The change loss detached: its second Q-Former pass runs through the sharded units too.
CC_HEAD = {"llm": {"dtype": "bfloat16", "finetune": "lora"}, "qformer": {"freeze": True}, "max_new_tokens": 6,
           "change_loss_weight": 0.5, "change_loss_detach": True}


class ShardedTask(SemanticCCTask):
    """SemanticCCTask (which shards itself in ``configure_model`` under the strategy's device mesh and syncs FSDP2
    after each phase flip), recording whether the first flip landed on a gathered root unit."""

    first_flip_on_gathered_root: bool | None = None

    def set_phase(self, phase: str) -> None:
        if phase != self._phase and self._phase is None and self.model.neck is not None:
            # After a validation FSDP2 leaves the root unit gathered: the flip lands on the gathered parameters.
            self.first_flip_on_gathered_root = not isinstance(next(self.model.neck.parameters()), DTensor)
        super().set_phase(phase)


class Recorder(L.Callback):
    """Full parameters before training and after every batch, the batches seen, and the trainable weights and
    optimizer state right after a resume. Gathering reshards every unit, so snapshots are taken where FSDP2 has
    resharded anyway (before the sanity check, after each optimizer step), never between a validation and the
    first phase flip."""

    def __init__(self) -> None:
        self.snapshots: list[dict[str, torch.Tensor]] = []
        self.batches: list[tuple[str, tuple[str, ...]]] = []
        self.at_start: dict[str, Any] = {}
        self.sanity_metrics: list[str] = []
        self.times: dict[str, float] = {}

    @staticmethod
    def _full(module: SemanticCCTask) -> dict[str, torch.Tensor]:
        return full_state_dict(module.model, [n for n, _ in module.model.named_parameters()], rank0_only=False)

    def on_fit_start(self, trainer: L.Trainer, module: SemanticCCTask) -> None:
        self.times["fit_start"] = time.perf_counter()
        self.snapshots.append(self._full(module))

    def on_sanity_check_start(self, trainer: L.Trainer, module: SemanticCCTask) -> None:
        self.times["sanity_start"] = time.perf_counter()

    def on_sanity_check_end(self, trainer: L.Trainer, module: SemanticCCTask) -> None:
        self.sanity_metrics = sorted(k for k in trainer.callback_metrics if k.startswith("val/"))
        self.times["sanity_end"] = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, module: SemanticCCTask) -> None:
        self.times["train_end"] = time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, module: SemanticCCTask) -> None:
        if trainer.ckpt_path is None:
            return
        # Copies: the optimizer's step counters are tensors it increments in place.
        self.at_start = {
            "params": full_state_dict(module, module.trainable_parameter_names(), rank0_only=False),
            "optimizer": copy.deepcopy(trainer.strategy.optimizer_state(trainer.optimizers[0])),
            "step": trainer.global_step,
        }

    def on_train_batch_start(self, trainer: L.Trainer, module: SemanticCCTask, batch: dict, batch_idx: int) -> None:
        self.batches.append((batch["phase"], tuple(batch["name"])))

    def on_train_batch_end(self, trainer: L.Trainer, module: SemanticCCTask, *args: Any) -> None:
        self.snapshots.append(self._full(module))

    def phase_spans(self) -> list[tuple[str, dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
        """``(phase, parameters before its first batch, parameters after its last batch)`` in order."""
        spans: list[tuple[str, dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []
        for i, (phase, _) in enumerate(self.batches):
            if spans and spans[-1][0] == phase:
                spans[-1] = (phase, spans[-1][1], self.snapshots[i + 1])
            else:
                spans.append((phase, self.snapshots[i], self.snapshots[i + 1]))
        return spans


def _trainer(run: Path, callbacks: list[L.Callback], validate: bool) -> L.Trainer:
    """2 CPU processes, FSDP2, bf16-mixed, one epoch; ``validate``: a sanity check of one batch per validation
    loader before training (generation through the sharded model; it leaves the root unit gathered before the
    first phase flip)."""
    return L.Trainer(
        accelerator="cpu", devices=2, strategy=PhaseFSDPStrategy(process_group_backend="gloo"),
        precision="bf16-mixed", max_epochs=1, limit_val_batches=1 if validate else 0,
        num_sanity_val_steps=1 if validate else 0, check_val_every_n_epoch=2, gradient_clip_val=1.0, logger=False,
        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
        default_root_dir=str(run), callbacks=callbacks,
    )


def _run_config(tokenizer: str | None) -> str:
    """The YAML a ``semcc fit`` of this model would store (seed and ``model.model``), for ``load_task``."""
    classes = {"encoder": "BiTemporalSAMEncoder", "neck": "MultiTaskNeck", "cd_head": "ChangeDetectionHead",
               "cc_head": "ChangeCaptionHead"}
    kwargs = preset_kwargs("mini", img_size=64, tokenizer=tokenizer, cc_head=CC_HEAD)
    parts = {
        name: {"class_path": f"semcc.models.{classes[name]}",
               "init_args": {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}}
        for name, kw in kwargs.items() if kw is not None
    }
    model = {"class_path": "semcc.models.SemanticCC", "init_args": parts}
    return yaml.safe_dump({"seed_everything": 0, "model": {"model": model}}, sort_keys=False)


def _task(dm: SemanticCCDataModule) -> ShardedTask:
    L.seed_everything(0, verbose=False)
    model = build_semantic_cc("mini", img_size=64, tokenizer=dm.tokenizer_path, cc_head=CC_HEAD)
    # cache_frozen_features: phases cc and joint call model.encoder directly (outside the root's forward).
    task = ShardedTask(model, optim=OptimConfig(lr=1e-3, weight_decay=0.1),
                       evaluation=EvalConfig(log_samples=0, meteor=False, write_report=False),
                       cache_frozen_features=True)
    task.run_config = _run_config(dm.tokenizer_path)
    return task


def _difference(a: Any, b: Any, path: str = "") -> str | None:
    """Where two nested states (dicts, lists, tensors) differ first, or ``None`` when they are equal."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
        return None if same else f"{path}: {a!r:.80} != {b!r:.80}"
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{path}: keys {sorted(map(str, a))[:4]} != {sorted(map(str, b))[:4]}"
        return next((d for k in a if (d := _difference(a[k], b[k], f"{path}.{k}")) is not None), None)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{path}: lengths {len(a)} != {len(b)}"
        return next((d for i, (x, y) in enumerate(zip(a, b, strict=True))
                     if (d := _difference(x, y, f"{path}[{i}]")) is not None), None)
    return None if a == b else f"{path}: {a!r:.80} != {b!r:.80}"


def _fingerprint_on_sharded(task: SemanticCCTask) -> str:
    """What hashing the frozen weights through ``state_dict()`` (``SemanticCCTask``'s fingerprint) meets on the
    sharded model: the type of the values and the outcome."""
    sample = next(v for k, v in task.model.state_dict().items() if k.startswith("encoder.vit.blocks.0."))
    try:
        digest = hash_frozen(task.model, task.trainable)
    except Exception as err:  # reported, not handled
        return f"{type(sample).__name__}: raises {type(err).__name__}: {str(err)[:160]}"
    return f"{type(sample).__name__}: {digest}"


def main() -> None:
    t0 = time.perf_counter()
    root = Path(os.environ["SEMCC_SYNTH_ROOT"])
    config = SynthLEVIRConfig(**json.loads(os.environ["SEMCC_SYNTH_CONFIG"]), workers=1)
    run = Path.cwd()
    dm = SemanticCCDataModule(
        synth_root=str(root), synth=config, tokenizer_dir=str(run / "tok"), batch_size=2,
        cd=CDCropConfig(crop_size=64, samples_per_tile=2),
    )
    task = _task(dm)
    plan = unit_dtype_plan(task.model, task.trainable)
    recorder = Recorder()
    saver = ModelCheckpoint(dirpath=run / "ckpts", every_n_train_steps=5, save_top_k=-1, filename="{step}")
    trainer = _trainer(run / "a", [recorder, saver], validate=True)
    trainer.fit(task, datamodule=dm)
    t_fit = time.perf_counter()

    rank = trainer.global_rank
    model = task.model
    units = {
        "root": isinstance(model, FSDPModule),
        "encoder": isinstance(model.encoder, FSDPModule),
        "sam_blocks": all(isinstance(b, FSDPModule) for b in model.encoder.vit.blocks),
        "qformer_layers": all(isinstance(x, FSDPModule) for x in model.cc_head.qformer.encoder.layer),
        "llama_layers": all(isinstance(x, FSDPModule) for x in model.cc_head.llm.model.layers),
        "llm_embedding": isinstance(model.cc_head.llm.model.embed_tokens, FSDPModule),
        "llm": isinstance(model.cc_head.llm, FSDPModule),
        "all_dtensor": all(isinstance(p, DTensor) for p in model.parameters()),
    }
    llm_dtypes = sorted({str(p.dtype) for n, p in model.cc_head.llm.named_parameters() if "lora_" not in n})
    trainable_dtypes = sorted({str(p.dtype) for n, p in model.named_parameters() if n in task.trainable})

    trainable = task.trainable
    frozen_moved, moved_parts = [], {}
    for phase, before, after in recorder.phase_spans():
        parts = set(PHASES[phase].parts)
        moved = {n for n in before if not torch.equal(before[n], after[n])}
        frozen_moved += [f"{phase}:{n}" for n in moved if not (n in trainable and n.split(".", 1)[0] in parts)]
        moved_parts[phase] = sorted({n.split(".", 1)[0] for n in moved})
    final = torch.cat([v.flatten().double() for _, v in sorted(recorder.snapshots[-1].items())])
    gathered = [torch.zeros_like(final) for _ in range(trainer.world_size)]
    dist.all_gather(gathered, final)
    lm_head = model.cc_head.llm.lm_head.weight
    lm_head_numel = [lm_head.to_local().numel(), lm_head.numel()]  # this rank's shard, the whole
    # Generation of a different length on each rank (1 and 5 tokens): the ranks must stay in step (synced_gpus),
    # each LLM call all-gathers the LLM's units.
    llm, calls = model.cc_head.llm, []
    hook = llm.register_forward_hook(lambda *_: calls.append(1))
    want = 1 + 4 * rank
    with torch.no_grad():
        out = llm.generate(input_ids=torch.tensor([[1, 2, 3]]), attention_mask=torch.ones(1, 3, dtype=torch.long),
                           max_new_tokens=want, min_new_tokens=want, do_sample=False)
    hook.remove()
    generation = [None] * trainer.world_size
    dist.all_gather_object(generation, {"new_tokens": out.shape[1] - 3, "llm_calls": len(calls)})
    fingerprint_sharded = _fingerprint_on_sharded(task)
    fingerprints = [None] * trainer.world_size
    dist.all_gather_object(fingerprints, fingerprint_sharded)

    names = {id(p): n for n, p in task.named_parameters()}
    optimizer_order = [[names[id(p)] for p in g["params"]] for g in trainer.optimizers[0].param_groups]

    # The mid-epoch checkpoint (step 5: inside phase joint) and a resumed fit from it in the same processes.
    ckpt = run / "ckpts" / "step=5.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    dm2 = SemanticCCDataModule(
        synth_root=str(root), synth=config, tokenizer_dir=str(run / "tok"), batch_size=2,
        cd=CDCropConfig(crop_size=64, samples_per_tile=2),
    )
    resumed_task = _task(dm2)
    resumed = Recorder()
    second = _trainer(run / "b", [resumed], validate=False)
    second.fit(resumed_task, datamodule=dm2, ckpt_path=str(ckpt))
    t_resume = time.perf_counter()
    start = resumed.at_start
    loaded_equal = start["params"].keys() == saved["state_dict"].keys() and all(
        torch.equal(start["params"][k], v) for k, v in saved["state_dict"].items()
    )
    if rank == 0:
        report = {
            "world_size": trainer.world_size,
            "strategy": type(trainer.strategy).__name__,
            "precision": trainer.precision,
            "units": units,
            "llm_dtypes": llm_dtypes,
            "trainable_dtypes": trainable_dtypes,
            "plan": plan,
            "phases": [p for p, _, _ in recorder.phase_spans()],
            "first_flip_on_gathered_root": task.first_flip_on_gathered_root,
            "cached_pairs": len(task.feature_cache),
            "generation_by_rank": generation,
            "steps": trainer.global_step,
            "sanity_metrics": recorder.sanity_metrics,
            "frozen_moved": frozen_moved,
            "moved_parts": moved_parts,
            "ranks_agree": all(torch.equal(gathered[0], g) for g in gathered[1:]),
            "lm_head_numel": lm_head_numel,
            "fingerprints_on_sharded_model": fingerprints,
            "fingerprint_before_sharding": task.frozen_fingerprint(),
            "checkpoints": sorted(p.name for p in (run / "ckpts").iterdir()),
            "ckpt_is_file": ckpt.is_file(),
            "ckpt_keys_equal_trainable": set(saved["state_dict"]) == task.trainable_parameter_names(),
            "ckpt_has_frozen": sorted(set(saved["state_dict"]) - task.trainable_parameter_names())[:5],
            "ckpt_all_cpu_full": all(
                type(v) is torch.Tensor and v.device.type == "cpu" for v in saved["state_dict"].values()
            ),
            "ckpt_semcc": {k: saved["semcc"][k] for k in ("batches", "phase", "frozen_fingerprint")},
            "ckpt_optimizer_states": len(saved.get("optimizer_states", [])),
            # Names in the optimizer's order: a DDP run's optimizer.load_state_dict maps them by position.
            "ckpt_optimizer_groups_in_order": [g["params"] for g in saved["optimizer_states"][0]["param_groups"]]
            == optimizer_order,
            "resume_start_step": start["step"],
            "resume_loaded_equal_saved": loaded_equal,
            "resume_optimizer_difference": _difference(start["optimizer"], saved["optimizer_states"][0]),
            "resume_steps": second.global_step,
            "resume_batches": resumed.batches,
            "reference_batches": recorder.batches,
            "resume_phases": [p for p, _, _ in resumed.phase_spans()],
            "seconds": {"fit": round(t_fit - t0, 1), "resume": round(t_resume - t_fit, 1),
                        **{k: round(v - t0, 1) for k, v in recorder.times.items()}},
        }
        Path(os.environ["SEMCC_OUT"]).write_text(json.dumps(report, default=str))
    dist.barrier()
    # Tear gloo down before interpreter exit; left to the exit handlers its threads may abort the process.
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
