"""SemanticCCTask: the LightningModule that trains SemanticCC with the loss of Eq. 9 and the strategy of Sec. III-F.

L = L_cc + lambda * L_cd (Eq. 9, lambda = ``cd_weight`` = 0.5): L_cd is per-pixel binary cross-entropy
(or cross-entropy for multi-class masks), L_cc the caption cross-entropy over caption tokens. Each
training batch carries its phase (``cd``, ``cc``, ``joint`` or ``all``, see :mod:`semcc.tasks.schedule`);
before the step, exactly the parts that phase trains get ``requires_grad`` and the others are switched off
(and run without autograd where possible), so a frozen parameter gets no gradient, hence no AdamW update,
momentum step or weight decay: it stays bit-identical through the phase, under DDP too
(``find_unused_parameters`` is needed there: :meth:`setup` turns it on for the plain ``ddp`` strategy).

Validation / test: CD metrics (torchmetrics: precision, recall, F1, IoU of the change class, OA; per class
for multi-class masks, :mod:`semcc.metrics.detection`) on batches with masks; captions generated greedily
for batches with references and scored over the whole split, gathered from every rank, beside the two
floors (:mod:`semcc.metrics.captioning`). A test run writes ``metrics.json``, ``report.md`` and
``captions.json`` to the run folder (:mod:`semcc.metrics.report`).

Checkpoints hold only the trainable weights (LoRA, BCSF, neck, heads, projections): frozen base weights
come back from their paths (or, for random-init presets, from the seeded construction) and a fingerprint
of them (computed once per process) is stored and checked on load. The schedule position (epoch, batches
done) is stored so a resumed run continues at the same phase and step. The run's configuration (set by the
CLI as ``run_config``) and the caption tokenizer's files are stored too, so
:func:`semcc.tasks.loading.load_task` rebuilds the model from the checkpoint file alone.

Options for small budgets (``lr_scale``, ``cache_frozen_features``, ``cd_loss``) are off by default; the
class docstring says what each does.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from semcc.data.text import INSTRUCTIONS, NO_CHANGE_SENTENCES, is_no_change
from semcc.metrics.captioning import (
    CaptionMetrics,
    build_id_vocabulary,
    meteor_unavailable_reason,
    score_floors,
)
from semcc.metrics.detection import detection_metrics, flatten_detection_scores
from semcc.metrics.report import write_report
from semcc.models.cd_head import class_mask
from semcc.models.encoder import BiTemporalFeatures
from semcc.models.semantic_cc import SemanticCC
from semcc.tasks.identity import FINGERPRINT_VERSION, tokenizer_files
from semcc.tasks.identity import hash_frozen as _hash_frozen
from semcc.tasks.losses import cd_loss
from semcc.tasks.schedule import PHASE_LOSSES, PHASE_PARTS, STRATEGIES, fit_ddp_to_phases, required_heads
from semcc.tasks.sharding import any_rank, is_sharded, shard_semantic_cc, sync_requires_grad

__all__ = ["SemanticCCTask", "tokenizer_files"]


class SemanticCCTask(L.LightningModule):
    """Train / evaluate :class:`~semcc.models.semantic_cc.SemanticCC`.

    Args:
        model: the network (built from YAML through ``class_path`` / ``init_args``).
        strategy: ``three_stage`` (paper), ``two_stage`` or ``one_stage`` (Table IV), or ``caption_only``
            (single-task CC of Table II rows 1-3 and Table III: the caption loss trains the encoder's adapters,
            BCSF, the neck and the caption head); see :mod:`semcc.tasks.schedule`.
        cd_weight: lambda of Eq. 9.
        lr: AdamW learning rate (paper 1e-4).
        weight_decay: AdamW weight decay (only ever applied to parameters that train in the step).
        warmup_steps: linear warm-up steps (an int) or fraction of all steps (a float below 1).
        min_lr_ratio: the cosine decay ends at ``lr * min_lr_ratio``.
        instructions: the instruction prompts P (Sec. IV-C); one is drawn per training sample.
        max_new_tokens: caption length limit in generation.
        ensemble: use the multi-output ensemble (one caption per instruction, consensus) in val/test.
        log_samples: captions printed per validation (rank 0).
        seed: seed of the caption / instruction draws.
        caption_protocol: ``words`` (default) or ``ids`` (captions scored as vocabulary-id strings, as published
            RSICC-family code does; changes METEOR only). See :mod:`semcc.metrics.captioning`.
        caption_tokenization: ``simple`` (:func:`semcc.data.text.normalize_caption`) or ``ptb``
            (pycocoevalcap's PTB tokenizer).
        meteor: compute METEOR in val/test (needs Java).
        write_report: after ``trainer.test``, write ``metrics.json``, ``report.md`` and ``captions.json`` to the
            run folder (:mod:`semcc.metrics.report`).
        compile_parts: parts of the model (``encoder``, ``neck``, ``cd_head``, ``cc_head``) to wrap with
            ``torch.compile`` in :meth:`configure_model` (in place, ``nn.Module.compile``: state-dict keys and
            checkpoints do not change).
        lr_scale: per-part factors on ``lr`` (keys ``encoder``, ``neck``, ``cd_head``, ``cc_head``; default 1).
        cache_frozen_features: reuse the encoder output of a training pair while the encoder stays frozen
            (the pair is recognised by its name and its pixels; memory: both tiers of every pair, kept on
            the device that computed them). The encoder's LoRA dropout is then drawn once per pair and
            phase run instead of once per step.
        cd_loss: ``"bce"`` (per-pixel (binary) cross-entropy) or ``"bce_dice"`` (plus a soft Dice loss of
            the change class(es), computed over the batch).
        no_change_caption: the caption-loss target of a pair whose references are all no-change sentences
            (LEVIR-CC gives every unchanged pair the same five, :data:`~semcc.data.text.NO_CHANGE_SENTENCES`).
            ``None`` (paper): a reference drawn at random, like any pair, so the model says one of the five,
            whichever greedy decoding happens to favour. A sentence (one of the five): always that one. The
            five are equal for meaning and for CIDEr, but not for corpus BLEU, which counts n-grams: a
            longer exact match adds more matched 4-grams (on an earlier tiny checkpoint's test captions, the same
            predictions score BLEU-4 0.34, 0.41 or 0.51 depending only on which no-change sentence they use).
            The oracle-constant floor says ``"the scene is the same as before"``, the longest.
    """

    #: Options of one run (evaluation protocol, reports, compilation), not stored as hyper-parameters.
    RUN_OPTIONS = ("caption_protocol", "caption_tokenization", "meteor", "write_report", "compile_parts")

    def __init__(
        self,
        model: SemanticCC,
        *,
        strategy: str = "three_stage",
        cd_weight: float = 0.5,
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        warmup_steps: int | float = 0.05,
        min_lr_ratio: float = 0.01,
        instructions: Sequence[str] = INSTRUCTIONS,
        max_new_tokens: int = 32,
        ensemble: bool = False,
        log_samples: int = 4,
        seed: int = 0,
        caption_protocol: str = "words",
        caption_tokenization: str = "simple",
        meteor: bool = True,
        write_report: bool = True,
        compile_parts: Sequence[str] = (),
        lr_scale: dict[str, float] | None = None,
        cache_frozen_features: bool = False,
        cd_loss: str = "bce",
        no_change_caption: str | None = None,
    ) -> None:
        super().__init__()
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose from {list(STRATEGIES)}")
        if lacking := [h for h in required_heads(strategy) if getattr(model, h, None) is None]:
            hint = " (single-task captioning: strategy caption_only)" if lacking == ["cd_head"] else ""
            raise ValueError(f"strategy {strategy!r} trains {list(required_heads(strategy))} but the model has no "
                             f"{' and no '.join(lacking)}{hint}")
        if cd_loss not in ("bce", "bce_dice"):
            raise ValueError(f"cd_loss must be 'bce' or 'bce_dice', got {cd_loss!r}")
        if no_change_caption is not None and not is_no_change(no_change_caption):
            raise ValueError(
                f"no_change_caption must be one of the no-change sentences {list(NO_CHANGE_SENTENCES)}, "
                f"got {no_change_caption!r}"
            )
        parts = {n for n, _ in model.named_children()}
        if lr_scale and (unknown := sorted(set(lr_scale) - parts)):
            raise ValueError(f"lr_scale names parts the model lacks: {unknown}; parts: {sorted(parts)}")
        # Evaluation-time and machine-specific options stay out of the checkpoint's hyper-parameters, so that
        # `semcc test --ckpt_path ... --model.meteor false` (say) is not overridden by the training run's values.
        self.save_hyperparameters(ignore=["model", *self.RUN_OPTIONS])
        self.caption_protocol, self.caption_tokenization = caption_protocol, caption_tokenization
        self.write_report, self.compile_parts = write_report, tuple(compile_parts)
        self.model = model
        self.strategy = strategy
        self.instructions = list(instructions)
        self._rng = random.Random(seed)
        # Parameters that train in some phase; everything else is a frozen base weight.
        self._trainable = {n for n, p in self.model.named_parameters() if p.requires_grad}
        self._part_of = {n: n.split(".", 1)[0] for n, _ in self.model.named_parameters()}
        self.strict_loading = False
        self._phase: str | None = None
        self._batches_in_epoch = 0
        self._batches_epoch = 0
        self._resume: dict[str, int] | None = None
        self._fingerprint: str | None = None
        self._tokenizer_files: dict[str, bytes] | None = None
        #: The run's configuration as YAML (the CLI sets it); stored in checkpoints.
        self.run_config: str | None = None
        self._cd_classes = self.model.cd_head.num_classes if self.model.cd_head is not None else 1
        cd_metrics = detection_metrics(self._cd_classes)
        self._feature_cache: dict[tuple, tuple[torch.Tensor, ...]] = {}
        self.val_cd = cd_metrics.clone(prefix="val/cd_")
        self.test_cd = cd_metrics.clone(prefix="test/cd_")
        cc = {"meteor": meteor, "protocol": caption_protocol, "tokenization": caption_tokenization}
        self.val_cc = CaptionMetrics(**cc)
        self.test_cc = CaptionMetrics(**cc)
        #: The last test's results (what ``metrics.json`` holds) and the report files written.
        self.test_results: dict[str, Any] | None = None
        self.report_paths: dict[str, Path] = {}

    def configure_model(self) -> None:
        """Compile the parts named in ``compile_parts`` in place (once; their parameter names stay the same), and
        under an FSDP2 strategy (a device mesh) shard the model (:func:`semcc.tasks.sharding.shard_semantic_cc`)."""
        for name in self.compile_parts:
            part = getattr(self.model, name, None)
            if not isinstance(part, torch.nn.Module):
                raise ValueError(f"compile_parts: the model has no part {name!r}")
            if getattr(part, "_compiled_call_impl", None) is None:
                part.compile()
        # FSDP2 (semcc.tasks.sharding.PhaseFSDPStrategy): shard once, after setup() took the fingerprint.
        if self.device_mesh is not None and not is_sharded(self.model):
            kwargs = getattr(self.trainer.strategy, "fsdp_kwargs", {})
            shard_semantic_cc(self.model, self.device_mesh["data_parallel"], trainable=self._trainable, **kwargs)

    # ------------------------------------------------------------------------------------------ phases
    def set_phase(self, phase: str) -> None:
        """Give ``requires_grad`` to exactly the trainable parameters of the parts ``phase`` trains."""
        if phase == self._phase:
            return
        parts = set(PHASE_PARTS[phase])
        if "encoder" in parts:
            self._feature_cache.clear()  # the encoder changes: cached outputs go stale
        for name, param in self.model.named_parameters():
            param.requires_grad_(name in self._trainable and self._part_of[name] in parts)
        if is_sharded(self.model):
            sync_requires_grad(self.model)  # FSDP2 fixed each unit's gradient dtype at its first forward
        self._phase = phase

    def trainable_parameter_names(self) -> set[str]:
        """Names (``model.``-prefixed) of every parameter that trains in some phase."""
        return {f"model.{n}" for n in self._trainable}

    # ------------------------------------------------------------------------------------------ losses
    def _cd_loss(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return cd_loss(logits, mask, dice=self.hparams.cd_loss == "bce_dice")

    def _encoded(self, batch: dict) -> BiTemporalFeatures:
        """The encoder's output for ``batch`` from the frozen-encoder cache; missing pairs are encoded
        (without autograd) and added."""
        image_a, image_b = batch["image_a"], batch["image_b"]
        sums = torch.stack([image_a.flatten(1).sum(1), image_b.flatten(1).sum(1)], 1).double().tolist()
        keys = [(name, *s) for name, s in zip(batch["name"], sums, strict=True)]
        missing = [i for i, k in enumerate(keys) if k not in self._feature_cache]
        # Sharded, every rank must call the encoder's units when any rank does (their all-gathers must match):
        # a rank with nothing to encode runs one cached pair and drops it.
        if any_rank(bool(missing), image_a.device) if is_sharded(self.model) else missing:
            rows = missing or [0]
            with torch.no_grad():
                f = self.model.encoder(image_a[rows], image_b[rows])
            for j, i in enumerate(missing):
                self._feature_cache[keys[i]] = (f.cd_1[j], f.cd_2[j], f.cc_1[j], f.cc_2[j])
        tiers = [torch.stack(t) for t in zip(*(self._feature_cache[k] for k in keys), strict=True)]
        return BiTemporalFeatures(*tiers)

    def _draw_captions(self, batch: dict) -> tuple[list[str], list[str]]:
        fixed = self.hparams.no_change_caption
        captions = [
            fixed if fixed is not None and all(map(is_no_change, refs)) else self._rng.choice(refs)
            for refs in batch["captions"]
        ]
        instructions = [self._rng.choice(self.instructions) for _ in captions]
        return captions, instructions

    def _losses(self, batch: dict, phase: str) -> dict[str, torch.Tensor]:
        labelled = {"cd": "mask" in batch, "cc": any(batch["captions"])}
        wanted = [t for t in PHASE_LOSSES[phase] if t in self.model.tasks and labelled[t]]
        if not wanted:
            raise ValueError(f"a {batch.get('source')!r} batch in phase {phase!r} carries no label it can train on")
        captions = instructions = None
        if "cc" in wanted:
            captions, instructions = self._draw_captions(batch)
        encoder_trains = "encoder" in PHASE_PARTS[phase]
        encoded = None
        if self.hparams.cache_frozen_features and not encoder_trains:
            encoded = self._encoded(batch)
        out = self.model(
            batch["image_a"],
            batch["image_b"],
            captions=captions,
            instructions=instructions,
            tasks=tuple(wanted),
            encoder_grad=encoder_trains,
            encoded=encoded,
        )
        losses: dict[str, torch.Tensor] = {}
        if "cd" in wanted:
            losses["cd"] = self._cd_loss(out.mask_logits, batch["mask"])
        if "cc" in wanted:
            losses["cc"] = out.cc_loss
        losses["loss"] = losses.get("cc", 0.0) + self.hparams.cd_weight * losses.get("cd", 0.0)
        return losses

    # ---------------------------------------------------------------------------------------- training
    def on_train_epoch_start(self) -> None:
        self._batches_in_epoch = 0
        self._batches_epoch = self.current_epoch
        if self._resume is not None and self._resume["epoch"] == self.current_epoch:
            self._batches_in_epoch = self._resume["batches"]
        self._resume = None

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        phase = batch["phase"]
        self.set_phase(phase)
        losses = self._losses(batch, phase)
        self._batches_in_epoch += 1
        bs = batch["image_a"].shape[0]
        for key, value in losses.items():
            name = "train/loss" if key == "loss" else f"train/loss_{key}"
            self.log(f"{name}_{phase}" if key != "loss" else name, value, batch_size=bs, prog_bar=key == "loss")
        return losses["loss"]

    # -------------------------------------------------------------------------------------- evaluation
    def _predict(self, batch: dict) -> tuple[torch.Tensor | None, list[str] | None]:
        """Mask logits and greedy captions from one encoder pass (the ensemble when configured)."""
        bs = batch["image_a"].shape[0]
        ensemble = bool(self.hparams.ensemble)
        return self.model.predict(
            batch["image_a"],
            batch["image_b"],
            instructions=self.instructions if ensemble else [self.instructions[0]] * bs,
            max_new_tokens=self.hparams.max_new_tokens,
            ensemble=ensemble,
        )

    def _eval_step(self, batch: dict, stage: str) -> None:
        has_mask, has_caps = "mask" in batch, any(batch["captions"])
        bs = batch["image_a"].shape[0]
        if has_caps:
            mask_logits, captions = self._predict(batch)
            scorer = self.val_cc if stage == "val" else self.test_cc
            scorer.update(batch["name"], captions, batch["captions"])
            if stage == "val" and self._samples_left > 0:
                for name, pred, refs in zip(batch["name"], captions, batch["captions"], strict=True):
                    if self._samples_left <= 0:
                        break
                    rank_zero_info(f"  [{name}] pred: {pred!r} | ref: {refs[0]!r}")
                    self._samples_left -= 1
        elif has_mask:
            out = self.model(batch["image_a"], batch["image_b"], tasks=("cd",), encoder_grad=False)
            mask_logits = out.mask_logits
        else:
            return
        if has_mask and mask_logits is not None:
            self.log(f"{stage}/loss_cd", self._cd_loss(mask_logits, batch["mask"]), batch_size=bs,
                     add_dataloader_idx=False)
            metrics = self.val_cd if stage == "val" else self.test_cd
            pred, target = class_mask(mask_logits), batch["mask"].long()
            if self._cd_classes <= 2:  # binary metrics: change vs no change
                pred, target = (pred > 0).long(), (target > 0).long()
            metrics.update(pred, target)

    def on_validation_epoch_start(self) -> None:
        self._samples_left = self.hparams.log_samples
        if self.hparams.log_samples:
            rank_zero_info(f"epoch {self.current_epoch} sample captions:")

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, "test")

    def _eval_epoch_end(self, stage: str) -> None:
        results: dict[str, Any] = {"split": stage, "protocol": self.caption_protocol,
                                   "tokenization": self.caption_tokenization}
        metrics = self.val_cd if stage == "val" else self.test_cd
        if metrics["f1"].update_called:
            detection = flatten_detection_scores(metrics.compute(), prefix=f"{stage}/cd_")
            self.log_dict(detection, sync_dist=False)
            results["detection"] = {k.removeprefix(f"{stage}/cd_"): v for k, v in detection.items()}
            datamodule = self._datamodule()
            if hasattr(datamodule, "detection_protocol"):
                results["detection_protocol"] = datamodule.detection_protocol(stage)
        metrics.reset()
        scorer = self.val_cc if stage == "val" else self.test_cc
        captions: dict[str, tuple[str, list[str]]] | None = None
        if scorer.update_called:
            scores = scorer.compute()
            captions = scorer.items
            refs = {k: v[1] for k, v in captions.items()}
            self.log_dict({f"{stage}/cc_{k}": v for k, v in scores.items()}, sync_dist=False)
            results["pairs"] = len(captions)
            results["meteor"] = "computed" if "meteor" in scores else (
                meteor_unavailable_reason() or "not computed (meteor=False)")
            results["captioning"] = {"model": scores}
            changed_caption = self._changed_caption()
            if changed_caption is not None and any(not all(is_no_change(r) for r in x) for x in refs.values()):
                for floor, floor_scores in score_floors(refs, changed_caption, **scorer.options).items():
                    floor_scores = {k: v for k, v in floor_scores.items() if "accuracy" not in k}
                    results["captioning"][floor] = floor_scores
                    self.log_dict({f"{stage}/floor_{floor}_{k}": v for k, v in floor_scores.items()}, sync_dist=False)
        scorer.reset()
        if stage == "test":
            self.test_results = results
            log_dir = self.trainer.log_dir  # a collective under DDP: every rank asks, rank 0 writes
            if self.write_report and self.trainer.is_global_zero and ("detection" in results or captions):
                results["checkpoint"] = self.trainer.ckpt_path
                out = Path(log_dir or self.trainer.default_root_dir)
                self.report_paths = write_report(out, results, captions)  # the CLI prints where they went

    def setup(self, stage: str) -> None:
        """Before the strategy wraps the model: fit DDP to phase-wise training, fingerprint the frozen weights
        (while they are whole, before any sharding), and with ``caption_protocol="ids"`` take the id vocabulary
        from the data module's training captions."""
        if stage == "fit":
            fit_ddp_to_phases(self.trainer.strategy)
        self.frozen_fingerprint()
        datamodule = self._datamodule()
        if self.caption_protocol == "ids" and hasattr(datamodule, "training_captions"):
            vocabulary = build_id_vocabulary(datamodule.training_captions())
            if vocabulary:
                self.val_cc.vocabulary = self.test_cc.vocabulary = vocabulary

    def _datamodule(self) -> L.LightningDataModule | None:
        """The trainer's data module, when the task is attached to a trainer that has one."""
        return getattr(self._trainer, "datamodule", None) if self._trainer is not None else None

    def _changed_caption(self) -> str | None:
        """The oracle-constant floor's caption for changed pairs, from the data module's training split."""
        datamodule = self._datamodule()
        if datamodule is None or not hasattr(datamodule, "most_frequent_changed_caption"):
            return None
        return datamodule.most_frequent_changed_caption()

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        mask_logits, captions = self._predict(batch)
        masks = class_mask(mask_logits) if mask_logits is not None else None
        return {"name": batch["name"], "caption": captions, "mask": masks}

    # ---------------------------------------------------------------------------------------- optimizer
    def configure_optimizers(self) -> dict[str, Any]:
        # One group per (lr factor, decay or not); without lr_scale: [decay, no decay], as before.
        scale = self.hparams.lr_scale or {}
        groups: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
        for n, p in self.model.named_parameters():
            if n in self._trainable:
                groups.setdefault((float(scale.get(self._part_of[n], 1.0)), p.ndim < 2), []).append(p)
        lr, wd = self.hparams.lr, self.hparams.weight_decay
        optimizer = torch.optim.AdamW(
            [
                {"params": ps, "lr": lr * f, "weight_decay": 0.0 if no_decay else wd}
                for (f, no_decay), ps in sorted(groups.items())
            ],
            lr=lr,
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warm = self.hparams.warmup_steps
        warmup = int(warm * total) if isinstance(warm, float) and warm < 1 else int(warm)
        floor = self.hparams.min_lr_ratio

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -------------------------------------------------------------------------------------- checkpoints
    def frozen_fingerprint(self) -> str:
        """SHA-256 over the frozen base weights (names, dtypes, shapes and raw bytes) of the model.

        Computed once per process and kept: the frozen weights never change (that is what frozen means
        here), so a checkpoint save costs nothing more, whatever the size of the frozen model. The first call
        must see whole tensors: the task computes it in :meth:`setup`, before any sharding (FSDP).
        """
        if self._fingerprint is None:
            self._fingerprint = _hash_frozen(self.model, self._trainable)
        return self._fingerprint

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep = self.trainable_parameter_names()
        state = checkpoint["state_dict"]
        checkpoint["state_dict"] = {k: v for k, v in state.items() if k in keep}
        checkpoint["semcc"] = {
            "frozen_fingerprint": self.frozen_fingerprint(),
            "fingerprint_version": FINGERPRINT_VERSION,
            "epoch": self.current_epoch,
            # After an epoch has been counted as done (e.g. a stop at max_steps), the next one starts afresh.
            "batches": self._batches_in_epoch if self._batches_epoch == self.current_epoch else 0,
            "phase": self._phase,
        }
        if self.run_config is not None:
            checkpoint["semcc"]["config"] = self.run_config
        if self._tokenizer_files is None:  # once per process, like the fingerprint
            tokenizer = getattr(self.model.cc_head, "tokenizer", None) if self.model.cc_head is not None else None
            self._tokenizer_files = tokenizer_files(tokenizer) if tokenizer is not None else {}
        if self._tokenizer_files:
            checkpoint["semcc"]["tokenizer_files"] = self._tokenizer_files

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("state_dict", {})
        expected = self.trainable_parameter_names()
        if missing := sorted(expected - set(state)):
            raise KeyError(f"checkpoint lacks trainable weights: {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        if unexpected := sorted(set(state) - set(self.state_dict())):
            raise KeyError(f"checkpoint has weights this model does not: {unexpected[:8]}")
        self._feature_cache.clear()
        meta = checkpoint.get("semcc", {})
        stored = meta.get("frozen_fingerprint")
        # Checkpoints written before the fingerprint hashed raw bytes (no version) hashed float32 copies.
        ours = self.frozen_fingerprint() if meta.get("fingerprint_version") == FINGERPRINT_VERSION else (
            _hash_frozen(self.model, self._trainable, legacy=True) if stored else None)
        if stored and stored != ours:
            raise ValueError(
                "the frozen base weights differ from those this checkpoint was trained with: build the model "
                "from the same base checkpoints (or, for random-init presets, the same seed) as the run that saved it"
            )
        if "epoch" in meta:
            self._resume = {"epoch": int(meta["epoch"]), "batches": int(meta["batches"])}
            datamodule = self._datamodule()
            if datamodule is not None and hasattr(datamodule, "resume_at"):
                datamodule.resume_at(self._resume["epoch"], self._resume["batches"])
