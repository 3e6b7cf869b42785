"""Validation and test of SemanticCC (paper Sec. IV-B): change-detection metrics of Eq. 6's masks and caption metrics
of Eq. 7's captions over a whole split, beside the two floors every report carries.

CD metrics (torchmetrics: precision, recall, F1, IoU of the change class, OA; per class for multi-class masks,
:mod:`semcc.metrics.detection`) are updated on batches with masks. Captions generated greedily for batches with
references are scored over the whole split, gathered from every rank (:class:`semcc.metrics.captioning.
CaptionMetrics`: BLEU-1..4, METEOR, ROUGE-L, CIDEr, S*m, the change / no-change subsets), beside the constant
"no change" caption and the oracle-constant caption (:func:`semcc.metrics.captioning.score_floors`), and, where the
data has ground truth (SynthLEVIR events, LEVIR-MCI masks), the semantic scores of what the captions claim
(issue 13, beyond the paper: :func:`semcc.metrics.claim_scores.semantic_report`, model, references and floors). The task
logs what :meth:`Evaluator.finish` returns and, after a test, writes the report (:mod:`semcc.metrics.report`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torchmetrics import MeanMetric

from semcc.data.text import is_no_change
from semcc.metrics.captioning import CaptionMetrics, build_id_vocabulary, meteor_unavailable_reason, score_floors
from semcc.metrics.claim_scores import SEMANTIC_COLUMNS, semantic_report
from semcc.metrics.detection import detection_metrics, flatten_detection_scores
from semcc.metrics.truth import MASK_CHANGE_SHARE, check_change_share
from semcc.models.cd_head import class_mask
from semcc.models.tta import check_mask_tta

__all__ = ["EvalConfig", "Evaluator"]

#: The references' NLL over each subset of pairs (``metrics.json["reference_nll"]`` keys) -> its logged name.
NLL_LOGS = {"all": "cc_nll", "changed": "cc_change_nll"}


@dataclass(frozen=True)
class EvalConfig:
    """How validation, test and prediction generate and score captions.

    Args:
        max_new_tokens: caption length limit in generation.
        ensemble: use the multi-output ensemble (one caption per instruction, consensus).
        log_samples: captions printed per validation (rank 0).
        caption_protocol: ``words`` (default) or ``ids`` (captions scored as vocabulary-id strings, as published
            RSICC-family code does; changes METEOR only). See :mod:`semcc.metrics.captioning`.
        caption_tokenization: ``simple`` (:func:`semcc.data.text.normalize_caption`) or ``ptb`` (pycocoevalcap's
            PTB tokenizer).
        meteor: compute METEOR (needs Java).
        write_report: after ``trainer.test``, write ``metrics.json``, ``report.md`` and ``captions.json`` to the
            run folder (:mod:`semcc.metrics.report`).
        decoding: ``greedy`` (the paper's) or ``consistent``: consistency-aware decoding (issue 13, beyond the
            paper), the caption among the greedy one and each instruction's ``beams`` best beams that agrees best
            with the pair's predicted mask (:func:`semcc.metrics.consistency.choose_consistent`); pairs without a
            CD head's mask keep the greedy caption. ``semcc caption`` and ``Predictor`` default to the run's value.
        beams: beams per instruction for ``decoding="consistent"``.
        length_penalty: how those beams are ranked: the sum of their token log-probabilities divided by
            ``length ** length_penalty`` (transformers' beam score; 1, its default, ranks by the mean and so favours
            longer captions; 0 by the sum, the most probable captions). Beyond the paper; on tiny, 0 trades n-gram
            scores against what the captions say (``benchmarks/README.md``, "The beams' length penalty").
        samples: captions drawn from the model per pair for ``decoding="consistent"`` (0: none, the default). They
            join the candidates, and among the candidates the mask confirms equally well the one most like the
            samples wins (minimum-Bayes-risk decoding, :func:`semcc.metrics.consistency.choose_consistent`) instead
            of the greedy caption; a caption whose change or no change the mask confirms goes first. Beyond the
            paper: more varied changed-pair captions, fewer hallucinated classes, a lower overall BLEU-4 on tiny
            (``benchmarks/README.md``, "Sampled candidates").
        temperature: the sampling temperature of ``samples``.
        sample_seed: the random seed of the samples (the same batches get the same samples).
        no_change_candidate: with ``decoding="consistent"``, the task's ``no_change_caption`` (when set: the one
            sentence the model was trained to say for unchanged pairs) joins the candidates of each pair whose mask
            shows no change, so that such a pair is captioned as unchanged even when every generated candidate
            describes a change (a look-alike change: illumination, season, haze, misregistration). It is not
            offered where the mask marks a change (``MaskSummary.changed``): there it would contradict the mask.
        change_share: the share of a predicted mask's pixels from which consistency-aware decoding (and the
            consistency report) takes the mask to say "changed", in (0, 1]; default
            :data:`semcc.metrics.truth.MASK_CHANGE_SHARE` (0.005). Lower catches changes the CD head marks only in
            part (a house under-segmented) and costs false changes where look-alike changes leave specks
            (``benchmarks/README.md``, "The mask's change threshold").
        mask_prefixes: with ``decoding="consistent"``, mask-guided candidates join each pair's candidates: the
            model's greedy caption continued from openings that say the count and class of what the predicted mask
            marks (:func:`semcc.metrics.consistency.mask_prefixes`: "two houses", "two buildings" for a building
            mask of two components; none where the mask shows no change or marks any change without a class).
            Beyond the paper: the change detection guides what the caption names and how many; the model still
            writes the direction, the place and the rest. A third caption pass, on the pairs whose mask marks a
            change.
        road_shapes: a binary building-change mask's components shaped like a road (long and thin, or long and
            sparse: :func:`semcc.metrics.truth.road_shaped`) are not counted as buildings by the consistency check,
            the consistency-aware decoding and the mask-guided openings (``MaskSummary`` regions keep them in
            ``road_shaped``). Beyond the paper (0.17): a weak building-change head marks new roads too, and without
            it "a house is built" outranks the model's own caption of a new road.
        first_clauses: with ``decoding="consistent"``, each candidate's first clause (the words before its first
            "and") joins the candidates just before it (:func:`semcc.metrics.consistency.choose_consistent`): a caption
            of two events wins only where the mask confirms more of it than of its first clause. Beyond the paper
            (``benchmarks/README.md``, "First clauses").
        match_radiometry: beyond the paper: match the two dates' per-channel mean and standard deviation before the
            encoder in validation, test and prediction (:func:`semcc.models.radiometry.match_radiometry`, relative
            radiometric normalisation), whatever the encoder's own ``match_radiometry`` did in training; ``None``
            (default): as in training. On tiny the masks then hold up under look-alike changes far stronger than
            training's at a small cost in CD F1 on the training strength (``benchmarks/README.md``, "Radiometric
            matching").
        reference_nll: also score the references by the model: the teacher-forced negative log-likelihood per
            caption token of each reference (L_cc of Eq. 9 on held-out captions; a no-change pair on the
            task's ``no_change_caption`` when set, as in training), averaged over a pair's references and over
            the pairs, and over the changed pairs alone (``cc_nll``, ``cc_change_nll``; lower is better). Beyond
            the paper: it separates models while greedy captions are still the same sentence. One teacher-forced
            pass per reference, on the encoder output that the step's captioning uses.
        mask_tta: test-time augmentation of the mask (beyond the paper, :mod:`semcc.models.tta`): ``none``
            (default), ``flips`` (the mask logits averaged over the pair and its three flips: three more encoder
            passes) or ``d4`` (the eight symmetries of the square). The captions still read the pair as it is; the
            consistency-aware decoding reads the averaged mask.
    """

    max_new_tokens: int = 32
    ensemble: bool = False
    log_samples: int = 4
    caption_protocol: str = "words"
    caption_tokenization: str = "simple"
    meteor: bool = True
    write_report: bool = True
    decoding: str = "greedy"
    beams: int = 2
    length_penalty: float = 1.0
    samples: int = 0
    temperature: float = 0.5
    sample_seed: int = 0
    no_change_candidate: bool = True
    change_share: float = MASK_CHANGE_SHARE
    mask_prefixes: bool = False
    road_shapes: bool = False
    first_clauses: bool = False
    match_radiometry: bool | None = None
    reference_nll: bool = True
    mask_tta: str = "none"

    def __post_init__(self) -> None:
        check_mask_tta(self.mask_tta, "evaluation.mask_tta")
        if self.decoding not in ("greedy", "consistent"):
            raise ValueError(f"evaluation.decoding must be 'greedy' or 'consistent', got {self.decoding!r}")
        if self.beams < 1:
            raise ValueError(f"evaluation.beams must be >= 1, got {self.beams}")
        if self.samples < 0:
            raise ValueError(f"evaluation.samples must be >= 0, got {self.samples}")
        if not self.temperature > 0:
            raise ValueError(f"evaluation.temperature must be > 0, got {self.temperature}")
        check_change_share(self.change_share, "evaluation.change_share")

    #: What a checkpoint keeps of the evaluation settings (the others are options of each run, so that, say,
    #: ``--model.evaluation.meteor false`` for a test is never overridden by the training run's value).
    STORED = ("max_new_tokens", "ensemble", "log_samples", "decoding", "beams", "length_penalty", "samples",
              "temperature", "sample_seed", "no_change_candidate", "change_share", "mask_prefixes", "road_shapes",
              "first_clauses", "match_radiometry", "mask_tta")


class Evaluator(nn.Module):
    """The metrics of one task, for the ``val`` and ``test`` stages (a module, so they move with the task).

    Args:
        cd_classes: classes of the CD head's masks (1 or 2: binary change metrics; more: per class).
        config: the evaluation settings.
    """

    def __init__(self, cd_classes: int, config: EvalConfig) -> None:
        super().__init__()
        self.config, self.cd_classes = config, cd_classes
        cd = detection_metrics(cd_classes)
        self.cd = nn.ModuleDict({stage: cd.clone(prefix=f"{stage}/cd_") for stage in ("val", "test")})
        options = {"meteor": config.meteor, "protocol": config.caption_protocol,
                   "tokenization": config.caption_tokenization}
        self.cc = nn.ModuleDict({stage: CaptionMetrics(**options) for stage in ("val", "test")})
        self.nll = nn.ModuleDict({f"{stage}_{subset}": MeanMetric()
                                  for stage in ("val", "test") for subset in NLL_LOGS})
        self._samples_left = 0

    def use_id_vocabulary(self, training_captions: list[str]) -> None:
        """``caption_protocol="ids"``: score captions as ids of the vocabulary of ``training_captions``."""
        if vocabulary := build_id_vocabulary(training_captions):
            for scorer in self.cc.values():
                scorer.vocabulary = vocabulary

    def start(self, stage: str, epoch: int) -> None:
        """A validation (or test) epoch starts: print up to ``log_samples`` captions of it (validation only)."""
        self._samples_left = self.config.log_samples if stage == "val" else 0
        if self._samples_left:
            rank_zero_info(f"epoch {epoch} sample captions:")

    def update(self, stage: str, batch: dict, mask_logits: torch.Tensor | None, captions: list[str] | None) -> None:
        """Add one batch's predictions (captions for pairs with references, masks for pairs with masks)."""
        if captions is not None:
            self.cc[stage].update(batch["name"], captions, batch["captions"])
            for name, pred, refs in zip(batch["name"], captions, batch["captions"], strict=True):
                if self._samples_left <= 0:
                    break
                rank_zero_info(f"  [{name}] pred: {pred!r} | ref: {refs[0]!r}")
                self._samples_left -= 1
        if "mask" in batch and mask_logits is not None:
            pred, target = class_mask(mask_logits), batch["mask"].long()
            if self.cd_classes <= 2:  # binary metrics: change vs no change
                pred, target = (pred > 0).long(), (target > 0).long()
            self.cd[stage].update(pred, target)

    def update_nll(self, stage: str, nll: torch.Tensor, changed: torch.Tensor) -> None:
        """Add the reference NLL of a batch's captioned pairs (``[N]``) and which of them changed (bool ``[N]``)."""
        self.nll[f"{stage}_all"].update(nll)
        self.nll[f"{stage}_changed"].update(nll, weight=changed.to(nll.dtype))  # every rank updates both (DDP sync)

    def finish(self, stage: str, datamodule: Any = None) -> tuple[dict[str, float], dict[str, Any], dict | None]:
        """Compute and reset the stage's metrics: ``(values to log, results, captions)``.

        ``results`` is what ``metrics.json`` holds (detection scores and protocol, caption scores of the model and
        the floors); ``captions`` maps each pair to ``(prediction, references)``. The data module (optional)
        gives the detection protocol and the oracle-constant floor's caption for changed pairs.
        """
        logs: dict[str, float] = {}
        results: dict[str, Any] = {"split": stage, "protocol": self.config.caption_protocol,
                                   "tokenization": self.config.caption_tokenization}
        metrics = self.cd[stage]
        if metrics["f1"].update_called:
            detection = flatten_detection_scores(metrics.compute(), prefix=f"{stage}/cd_")
            logs.update(detection)
            results["detection"] = {k.removeprefix(f"{stage}/cd_"): v for k, v in detection.items()}
            if hasattr(datamodule, "detection_protocol"):
                results["detection_protocol"] = datamodule.detection_protocol(stage)
        metrics.reset()
        scorer = self.cc[stage]
        captions: dict[str, tuple[str, list[str]]] | None = None
        if scorer.update_called:
            scores = scorer.compute()
            captions = scorer.items
            refs = {k: v[1] for k, v in captions.items()}
            logs.update({f"{stage}/cc_{k}": v for k, v in scores.items()})
            results["pairs"] = len(captions)
            results["meteor"] = "computed" if "meteor" in scores else (
                meteor_unavailable_reason() or "not computed (meteor=False)")
            results["captioning"] = {"model": scores}
            changed = getattr(datamodule, "most_frequent_changed_caption", None)
            any_changed = any(not all(is_no_change(r) for r in x) for x in refs.values())
            changed_caption = changed() if changed is not None and any_changed else None  # no changed pair: none
            if changed_caption is not None:
                for floor, floor_scores in score_floors(refs, changed_caption, **scorer.options).items():
                    floor_scores = {k: v for k, v in floor_scores.items() if "accuracy" not in k}
                    results["captioning"][floor] = floor_scores
                    logs.update({f"{stage}/floor_{floor}_{k}": v for k, v in floor_scores.items()})
            semantic = self._semantic(stage, captions, changed_caption, datamodule)
            if semantic is not None:
                results["semantic_truth"], results["semantic"] = semantic
                prefixes = {"model": "sem_", "references": "sem_references_", "constant": "sem_floor_constant_",
                            "oracle_constant": "sem_floor_oracle_constant_"}
                for system, scores in semantic[1].items():
                    logs.update({f"{stage}/{prefixes[system]}{k}": scores[k] for k in SEMANTIC_COLUMNS})
        scorer.reset()
        nll = {subset: self.nll[f"{stage}_{subset}"] for subset in NLL_LOGS}
        if nll["all"].update_called:
            values = {k: v for k, m in nll.items() if math.isfinite(v := float(m.compute()))}  # no changed pair: nan
            logs.update({f"{stage}/{NLL_LOGS[k]}": v for k, v in values.items()})
            results["reference_nll"] = values
        for metric in nll.values():
            metric.reset()
        return logs, results, captions

    @staticmethod
    def _semantic(stage: str, captions: dict[str, tuple[str, list[str]]], changed_caption: str | None,
                  datamodule: Any) -> tuple[str, dict[str, dict[str, float]]] | None:
        """Semantic scores (:func:`semcc.metrics.claim_scores.semantic_report`) when the data has ground truth."""
        truth_of = getattr(datamodule, "semantic_truth", None)
        found = truth_of(stage) if truth_of is not None else None
        if not found:
            return None
        truths, source = found
        missing = [k for k in captions if k not in truths]
        if missing:
            rank_zero_warn(f"semantic scores: {len(missing)} of {len(captions)} captioned {stage} pairs have no "
                           f"ground truth (e.g. {missing[0]!r}); they are left out of the semantic scores")
        if len(missing) == len(captions):
            return None
        predictions = {k: p for k, (p, _) in captions.items()}
        references = {k: r for k, (_, r) in captions.items()}
        return source, semantic_report(predictions, references, truths, changed_caption)
