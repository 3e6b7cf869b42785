"""SemanticCCTask: the LightningModule that trains SemanticCC with the loss of Eq. 9 and the strategy of Sec. III-F.

L = L_cc + lambda * L_cd (Eq. 9, lambda = ``cd_weight`` = 0.5): L_cd is per-pixel binary cross-entropy (or
cross-entropy for multi-class masks, :mod:`semcc.tasks.losses`), L_cc the caption cross-entropy over caption
tokens. Each training batch carries its phase (:mod:`semcc.strategies`: which data it reads, which parts it
trains, which losses it computes); before the step, exactly the parts that phase trains get ``requires_grad``
and the others are switched off (and run without autograd where possible), so a frozen parameter gets no
gradient, hence no AdamW update, momentum step or weight decay: it stays bit-identical through the phase,
under DDP too (:func:`semcc.tasks.schedule.fit_ddp_to_phases`).

The task owns four helpers, each in its own module: the optimiser and learning-rate schedule
(:mod:`semcc.tasks.schedule`), the frozen-feature cache (:mod:`semcc.tasks.feature_cache`), the evaluator
(:mod:`semcc.tasks.evaluator`: CD and caption metrics, floors, reports) and checkpointing
(:mod:`semcc.tasks.checkpointing`: trainable weights only, the frozen-weight fingerprint, the tokenizer files,
the resume position).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch

from semcc.data.text import INSTRUCTIONS, NO_CHANGE_SENTENCES, is_no_change
from semcc.metrics.consistency import binary_mask_name, choose_consistent, mask_class_names, mask_prefixes
from semcc.metrics.report import write_report
from semcc.metrics.truth import summarize_mask
from semcc.models.cd_head import class_mask
from semcc.models.encoder import BiTemporalFeatures
from semcc.models.radiometry import matching
from semcc.models.semantic_cc import SemanticCC
from semcc.strategies import PHASES, STRATEGIES, required_heads
from semcc.tasks.checkpointing import Checkpointing, SchedulePosition
from semcc.tasks.evaluator import EvalConfig, Evaluator
from semcc.tasks.feature_cache import FrozenFeatureCache
from semcc.tasks.losses import cd_loss
from semcc.tasks.schedule import OptimConfig, build_optimizer, fit_ddp_to_phases
from semcc.tasks.sharding import is_sharded, shard_semantic_cc, sync_requires_grad

__all__ = ["SemanticCCTask"]


class SemanticCCTask(L.LightningModule):
    """Train / evaluate :class:`~semcc.models.semantic_cc.SemanticCC`.

    Args:
        model: the network (built from YAML through ``class_path`` / ``init_args``).
        strategy: ``three_stage`` (paper), ``two_stage`` or ``one_stage`` (Table IV), or ``caption_only``
            (single-task CC of Table II rows 1-3 and Table III: the caption loss trains the encoder's adapters,
            BCSF, the neck and the caption head); see :mod:`semcc.strategies`.
        cd_weight: lambda of Eq. 9.
        optim: AdamW and its schedule (:class:`~semcc.tasks.schedule.OptimConfig`: ``lr``, ``weight_decay``,
            ``warmup_steps``, ``min_lr_ratio``, ``lr_scale``).
        evaluation: caption generation and scoring in val / test / predict
            (:class:`~semcc.tasks.evaluator.EvalConfig`: ``max_new_tokens``, ``ensemble``, ``log_samples``,
            ``caption_protocol``, ``caption_tokenization``, ``meteor``, ``write_report``).
        instructions: the instruction prompts P (Sec. IV-C); one is drawn per training sample.
        seed: seed of the caption / instruction draws.
        compile_parts: parts of the model (``encoder``, ``neck``, ``cd_head``, ``cc_head``) to wrap with
            ``torch.compile`` in :meth:`configure_model` (in place, ``nn.Module.compile``: state-dict keys and
            checkpoints do not change).
        cache_frozen_features: reuse the encoder output of a training pair while the encoder stays frozen
            (:class:`~semcc.tasks.feature_cache.FrozenFeatureCache`).
        cd_loss: ``"bce"`` (per-pixel (binary) cross-entropy) or ``"bce_dice"`` (plus a soft Dice loss of the
            change class(es), computed over the batch).
        no_change_caption: the caption-loss target of a pair whose references are all no-change sentences
            (LEVIR-CC gives every unchanged pair the same five, :data:`~semcc.data.text.NO_CHANGE_SENTENCES`).
            ``None`` (paper): a reference drawn at random, like any pair. A sentence (one of the five): always that
            one. The five are equal for meaning and for CIDEr, but not for corpus BLEU, which counts n-grams: a
            longer exact match adds more matched 4-grams. The oracle-constant floor says
            ``"the scene is the same as before"``, the longest.
        binary_mask_class: what a binary CD head's mask marks, for the caption-mask consistency (beyond the
            paper, issue 13; :func:`semcc.metrics.consistency.mask_class_names`): ``"building"`` (trained on
            building-change labels: LEVIR-CD, LEVIR-MCI with ``joint_mask_mode: building``) or ``"change"`` (any
            change). ``None``: the data module's ``binary_mask_class`` when the task is fitted or tested with one
            (then stored in the checkpoint), else ``"change"``.
    """

    def __init__(
        self,
        model: SemanticCC,
        *,
        strategy: str = "three_stage",
        cd_weight: float = 0.5,
        optim: OptimConfig | None = None,
        evaluation: EvalConfig | None = None,
        instructions: Sequence[str] = INSTRUCTIONS,
        seed: int = 0,
        compile_parts: Sequence[str] = (),
        cache_frozen_features: bool = False,
        cd_loss: str = "bce",
        no_change_caption: str | None = None,
        binary_mask_class: str | None = None,
    ) -> None:
        super().__init__()
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose from {list(STRATEGIES)}")
        if lacking := [h for h in required_heads(strategy) if getattr(model, h, None) is None]:
            hint = " (single-task captioning: strategy caption_only)" if lacking == ["cd_head"] else ""
            raise ValueError(f"strategy {strategy!r} trains {list(required_heads(strategy))} but the model has no "
                             f"{' and no '.join(lacking)}{hint}")
        binary_mask_name(binary_mask_class)  # a wrong name fails here, not at the first validation
        if cd_loss not in ("bce", "bce_dice"):
            raise ValueError(f"cd_loss must be 'bce' or 'bce_dice', got {cd_loss!r}")
        if no_change_caption is not None and not is_no_change(no_change_caption):
            raise ValueError(
                f"no_change_caption must be one of the no-change sentences {list(NO_CHANGE_SENTENCES)}, "
                f"got {no_change_caption!r}"
            )
        self.optim, self.evaluation = optim or OptimConfig(), evaluation or EvalConfig()
        parts = {n for n, _ in model.named_children()}
        if self.optim.lr_scale and (unknown := sorted(set(self.optim.lr_scale) - parts)):
            raise ValueError(f"lr_scale names parts the model lacks: {unknown}; parts: {sorted(parts)}")
        self.save_hyperparameters(ignore=["model", "compile_parts"])
        self.hparams["optim"] = asdict(self.optim)
        # Only what describes the trained model; the scoring options belong to each run (EvalConfig.STORED).
        self.hparams["evaluation"] = {k: getattr(self.evaluation, k) for k in EvalConfig.STORED}
        self.compile_parts = tuple(compile_parts)
        self.model = model
        self.strategy = strategy
        self.instructions = list(instructions)
        self._rng = random.Random(seed)
        #: Model-relative names of the parameters that train in some phase; everything else is a frozen base weight.
        self.trainable = {n for n, p in self.model.named_parameters() if p.requires_grad}
        self.strict_loading = False
        self._phase: str | None = None
        self.position = SchedulePosition()
        self.checkpointing = Checkpointing(self.model, self.trainable)
        self.feature_cache = FrozenFeatureCache()
        #: The run's configuration as YAML (the CLI sets it); stored in checkpoints.
        self.run_config: str | None = None
        cd_classes = self.model.cd_head.num_classes if self.model.cd_head is not None else 1
        self.evaluator = Evaluator(cd_classes, self.evaluation)
        #: The last test's results (what ``metrics.json`` holds) and the report files written.
        self.test_results: dict[str, Any] | None = None
        self.report_paths: dict[str, Path] = {}

    # ------------------------------------------------------------------------------------------- setup
    def setup(self, stage: str) -> None:
        """Before the strategy wraps the model: fit DDP to phase-wise training, fingerprint the frozen weights
        (while they are whole, before any sharding), and with ``caption_protocol="ids"`` take the id vocabulary
        from the data module's training captions."""
        if stage == "fit":
            fit_ddp_to_phases(self.trainer.strategy)
        self.checkpointing.fingerprint()
        datamodule = self._datamodule()
        if self.hparams.get("binary_mask_class") is None and hasattr(datamodule, "binary_mask_class"):
            self.hparams["binary_mask_class"] = datamodule.binary_mask_class  # saved with the checkpoint
        if self.evaluation.caption_protocol == "ids" and hasattr(datamodule, "training_captions"):
            self.evaluator.use_id_vocabulary(datamodule.training_captions())

    def configure_model(self) -> None:
        """Compile the parts named in ``compile_parts`` in place (once; their parameter names stay the same), and
        under an FSDP2 strategy (a device mesh) shard the model (:func:`semcc.tasks.sharding.shard_semantic_cc`)."""
        for name in self.compile_parts:
            part = getattr(self.model, name, None)
            if not isinstance(part, torch.nn.Module):
                raise ValueError(f"compile_parts: the model has no part {name!r}")
            if getattr(part, "_compiled_call_impl", None) is None:
                part.compile()
        if self.device_mesh is not None and not is_sharded(self.model):  # after setup() took the fingerprint
            kwargs = getattr(self.trainer.strategy, "fsdp_kwargs", {})
            shard_semantic_cc(self.model, self.device_mesh["data_parallel"], trainable=self.trainable, **kwargs)

    def configure_optimizers(self) -> dict[str, Any]:
        total = self.trainer.estimated_stepping_batches
        return build_optimizer(self.model.named_parameters(), self.trainable, self.optim, total)

    def _datamodule(self) -> L.LightningDataModule | None:
        """The trainer's data module, when the task is attached to a trainer that has one."""
        return getattr(self._trainer, "datamodule", None) if self._trainer is not None else None

    # ---------------------------------------------------------------------------------------- training
    def set_phase(self, phase: str) -> None:
        """Give ``requires_grad`` to exactly the trainable parameters of the parts ``phase`` trains."""
        if phase == self._phase:
            return
        parts = set(PHASES[phase].parts)
        if "encoder" in parts:
            self.feature_cache.clear()  # the encoder changes: cached outputs go stale
        for name, param in self.model.named_parameters():
            param.requires_grad_(name in self.trainable and name.split(".", 1)[0] in parts)
        if is_sharded(self.model):
            sync_requires_grad(self.model)  # FSDP2 fixed each unit's gradient dtype at its first forward
        self._phase = phase

    def draw_captions(self, batch: dict) -> tuple[list[str], list[str]]:
        """One target caption (see ``no_change_caption``) and one instruction per pair of ``batch``."""
        captions = [self.fixed_target(refs) or self._rng.choice(refs) for refs in batch["captions"]]
        instructions = [self._rng.choice(self.instructions) for _ in captions]
        return captions, instructions

    def fixed_target(self, refs: Sequence[str]) -> str | None:
        """``no_change_caption`` when it is set and every reference of the pair says no change, else None: the
        one target such a pair is trained (and its references' NLL scored) on."""
        fixed = self.hparams.no_change_caption
        return fixed if fixed is not None and all(map(is_no_change, refs)) else None

    def mask_loss(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """L_cd of Eq. 9 (:func:`semcc.tasks.losses.cd_loss`, with a Dice term when ``cd_loss="bce_dice"``)."""
        return cd_loss(logits, mask, dice=self.hparams.cd_loss == "bce_dice")

    def losses(self, batch: dict, phase: str) -> dict[str, torch.Tensor]:
        """The losses of Eq. 9 that ``phase`` computes and ``batch``'s labels allow, and their sum ``loss``."""
        spec = PHASES[phase]
        labelled = {"cd": "mask" in batch, "cc": any(batch["captions"])}
        wanted = [t for t in spec.losses if t in self.model.tasks and labelled[t]]
        if not wanted:
            raise ValueError(f"a {batch.get('source')!r} batch in phase {phase!r} carries no label it can train on")
        captions, instructions = self.draw_captions(batch) if "cc" in wanted else (None, None)
        encoder_trains = "encoder" in spec.parts
        encoded = None
        if self.hparams.cache_frozen_features and not encoder_trains:
            encoded = self.feature_cache.encode(self.model.encoder, batch, sharded=is_sharded(self.model))
        changed = None if captions is None else torch.tensor([not is_no_change(c) for c in captions])
        out = self.model(batch["image_a"], batch["image_b"], captions=captions, instructions=instructions,
                         tasks=tuple(wanted), encoder_grad=encoder_trains, encoded=encoded, changed=changed)
        losses: dict[str, torch.Tensor] = {}
        if "cd" in wanted:
            losses["cd"] = self.mask_loss(out.mask_logits, batch["mask"])
        if "cc" in wanted:
            losses["cc"] = out.cc_loss
        if out.cc_change_loss is not None:  # beyond the paper: the caption head's change_loss_weight
            losses["change"] = out.cc_change_loss
        losses["loss"] = (losses.get("cc", 0.0) + self.hparams.cd_weight * losses.get("cd", 0.0)
                          + losses.get("change", 0.0))
        return losses

    def on_train_epoch_start(self) -> None:
        self.position.start_epoch(self.current_epoch)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        phase = batch["phase"]
        self.set_phase(phase)
        losses = self.losses(batch, phase)
        self.position.step()
        bs = batch["image_a"].shape[0]
        for key, value in losses.items():
            name = "train/loss" if key == "loss" else f"train/loss_{key}_{phase}"
            self.log(name, value, batch_size=bs, prog_bar=key == "loss")
        return losses["loss"]

    # -------------------------------------------------------------------------------------- evaluation
    def radiometry(self) -> AbstractContextManager[None]:
        """A block in which the encoder matches the dates' radiometry as ``evaluation.match_radiometry`` says
        (``None``: as in training); validation, test and prediction steps run in one, training steps do not."""
        return matching(self.model.encoder, self.evaluation.match_radiometry)

    def predict_pairs(self, batch: dict, encoded: BiTemporalFeatures | None = None,
                      ) -> tuple[torch.Tensor | None, list[str] | None]:
        """Mask logits and greedy captions of ``batch`` from one encoder pass (the ensemble when configured); with
        ``evaluation.decoding="consistent"`` each caption is the candidate that agrees best with its pair's mask
        (:func:`semcc.metrics.consistency.choose_consistent`, a second caption pass; with ``evaluation.samples``, a
        third that draws captions for the minimum-Bayes-risk choice; with ``evaluation.mask_prefixes``, one more for
        the mask-guided candidates). ``encoded``: the encoder's
        output for the batch, if already computed."""
        bs, ensemble = batch["image_a"].shape[0], self.evaluation.ensemble
        mask_logits, captions = self.model.predict(
            batch["image_a"], batch["image_b"],
            instructions=self.instructions if ensemble else [self.instructions[0]] * bs,
            max_new_tokens=self.evaluation.max_new_tokens, ensemble=ensemble, encoded=encoded,
        )
        if self.evaluation.mask_tta != "none" and mask_logits is not None:
            mask_logits = self.model.mask_logits_tta(batch["image_a"], batch["image_b"], self.evaluation.mask_tta,
                                                     logits=mask_logits)
        if self.evaluation.decoding == "consistent" and mask_logits is not None and captions is not None:
            masks = class_mask(mask_logits).cpu().numpy()
            classes, share = self.mask_classes, self.evaluation.change_share
            shapes = self.evaluation.road_shapes
            summaries = [summarize_mask(m, classes, change_share=share, road_shapes=shapes) for m in masks]
            candidates = self.model.caption_candidates(
                batch["image_a"], batch["image_b"], instructions=self.instructions,
                max_new_tokens=self.evaluation.max_new_tokens, beams=self.evaluation.beams,
                length_penalty=self.evaluation.length_penalty, encoded=encoded,
                prefixes=[mask_prefixes(s) for s in summaries] if self.evaluation.mask_prefixes else None,
            )
            samples: list[list[str]] = [[] for _ in captions]
            if self.evaluation.samples:
                samples = self.model.caption_samples(
                    batch["image_a"], batch["image_b"], instructions=self.instructions,
                    samples=self.evaluation.samples, temperature=self.evaluation.temperature,
                    max_new_tokens=self.evaluation.max_new_tokens, seed=self.evaluation.sample_seed, encoded=encoded,
                )
            extra = self.no_change_candidates()
            clauses = self.evaluation.first_clauses
            captions = [choose_consistent(c, more, s, no_change=extra, samples=drawn, first_clauses=clauses)[0]
                        for c, more, s, drawn in zip(captions, candidates, summaries, samples, strict=True)]
        return mask_logits, captions

    @property
    def mask_classes(self) -> dict[int, str]:
        """What the CD head's mask values mean for the consistency report (:func:`semcc.metrics.consistency.
        mask_class_names`; a binary head: ``binary_mask_class``, ``"change"`` when unknown)."""
        classes = self.model.cd_head.num_classes if self.model.cd_head is not None else 1
        return mask_class_names(max(2, classes), self.hparams.get("binary_mask_class"))

    def no_change_candidates(self, enabled: bool | None = None) -> list[str]:
        """``[no_change_caption]`` when it is set and ``enabled`` (default: ``evaluation.no_change_candidate``) is
        on, else ``[]``: what consistency-aware decoding adds to the generated candidates of each pair whose mask
        shows no change (``choose_consistent(..., no_change=)``; see :class:`EvalConfig`)."""
        fixed = self.hparams.no_change_caption
        on = self.evaluation.no_change_candidate if enabled is None else enabled
        return [fixed] if fixed and on else []

    @torch.no_grad()
    def reference_nll(self, batch: dict, encoded: BiTemporalFeatures | None = None,
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher-forced NLL per caption token of each captioned pair's references under the model (L_cc of
        Eq. 9, the first instruction; an unchanged pair on ``no_change_caption`` when set, as in training), averaged
        over the pair's references: ``(nll [N], changed [N])`` for the N pairs of ``batch`` with references.
        ``encoded``: the encoder's output for the whole batch, if already computed."""
        rows = [i for i, refs in enumerate(batch["captions"]) if refs]
        changed = [not all(map(is_no_change, batch["captions"][i])) for i in rows]
        targets = [[fixed] if (fixed := self.fixed_target(batch["captions"][i])) else batch["captions"][i]
                   for i in rows]
        image_a, image_b = batch["image_a"][rows], batch["image_b"][rows]
        if encoded is None:
            encoded = self.model.encode(image_a, image_b)
        elif len(rows) < len(batch["captions"]):
            encoded = BiTemporalFeatures(*(t[rows] for t in (encoded.cd_1, encoded.cd_2, encoded.cc_1, encoded.cc_2)))
        total = torch.zeros(len(rows), device=image_a.device)
        for k in range(max(map(len, targets))):
            captions = [t[k % len(t)] for t in targets]
            out = self.model(image_a, image_b, captions=captions, instructions=[self.instructions[0]] * len(rows),
                             tasks=("cc",), encoder_grad=False, encoded=encoded)
            logits, labels = out.cc_logits[:, :-1].float(), out.cc_labels[:, 1:]
            token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100,
                                                      reduction="none")
            nll = token.sum(1) / (labels != -100).sum(1).clamp(min=1)
            total += torch.where(torch.tensor([k < len(t) for t in targets], device=total.device), nll, 0.0)
        counts = torch.tensor([len(t) for t in targets], device=total.device, dtype=total.dtype)
        return total / counts, torch.tensor(changed, device=total.device)

    def _eval_step(self, batch: dict, stage: str) -> None:
        with self.radiometry():
            self._eval_batch(batch, stage)

    def _eval_batch(self, batch: dict, stage: str) -> None:
        captions = None
        if any(batch["captions"]):
            encoded = self.model.encode(batch["image_a"], batch["image_b"])  # one pass for all that follows
            mask_logits, captions = self.predict_pairs(batch, encoded)
            if self.evaluation.reference_nll and self.model.cc_head is not None:
                self.evaluator.update_nll(stage, *self.reference_nll(batch, encoded))
        elif "mask" in batch:
            mask_logits = self.model.mask_logits_tta(batch["image_a"], batch["image_b"], self.evaluation.mask_tta)
        else:
            return
        if "mask" in batch and mask_logits is not None:
            self.log(f"{stage}/loss_cd", self.mask_loss(mask_logits, batch["mask"]),
                     batch_size=batch["image_a"].shape[0], add_dataloader_idx=False, sync_dist=True)
        self.evaluator.update(stage, batch, mask_logits, captions)

    def on_validation_epoch_start(self) -> None:
        self.evaluator.start("val", self.current_epoch)

    def on_test_epoch_start(self) -> None:
        self.evaluator.start("test", self.current_epoch)

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        logs, _, _ = self.evaluator.finish("val", self._datamodule())
        self.log_dict(logs, sync_dist=True)  # the same on every rank (gathered metrics): the mean changes nothing

    def on_test_epoch_end(self) -> None:
        logs, results, captions = self.evaluator.finish("test", self._datamodule())
        self.log_dict(logs, sync_dist=True)
        self.test_results = results
        log_dir = self.trainer.log_dir  # a collective under DDP: every rank asks, rank 0 writes
        if self.evaluation.write_report and self.trainer.is_global_zero and ("detection" in results or captions):
            results["checkpoint"] = self.trainer.ckpt_path
            out = Path(log_dir or self.trainer.default_root_dir)
            self.report_paths = write_report(out, results, captions)  # the CLI prints where they went

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        with self.radiometry():
            mask_logits, captions = self.predict_pairs(batch)
        masks = class_mask(mask_logits) if mask_logits is not None else None
        return {"name": batch["name"], "caption": captions, "mask": masks}

    # -------------------------------------------------------------------------------------- checkpoints
    def frozen_fingerprint(self) -> str:
        """SHA-256 over the frozen base weights (:meth:`~semcc.tasks.checkpointing.Checkpointing.fingerprint`)."""
        return self.checkpointing.fingerprint()

    def trainable_parameter_names(self) -> set[str]:
        """Names (``model.``-prefixed) of every parameter that trains in some phase."""
        return self.checkpointing.trainable_names()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        position = {**self.position.state(self.current_epoch), "phase": self._phase}
        self.checkpointing.save(checkpoint, position, self.run_config)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        resume = self.checkpointing.check(checkpoint, set(self.state_dict()))
        self.feature_cache.clear()
        if resume is not None:
            self.position.resume = resume
            datamodule = self._datamodule()
            if datamodule is not None and hasattr(datamodule, "resume_at"):
                datamodule.resume_at(resume["epoch"], resume["batches"])
