"""Inference on a user's image pair: :class:`Predictor` turns two aerial images of any size into a caption and a
change mask, applying the whole Semantic-CC network of paper Eq. 1 (encoder Eq. 2-3, neck Eq. 4-5, CD head
Eq. 6, caption head Eq. 7-8) at inference.

Two views of each pair (A = before, B = after), both normalised with the run's ``data.loader.mean`` / ``std``
(stored in the checkpoint; LEVIR-CC statistics otherwise):

* **Caption** (Eq. 7): the pair is resized (bilinear, antialiased) to the model's input size
  ``encoder.img_size`` and captioned in one encoder pass per batch.
* **Change mask** (Eq. 6): a sliding window of the model's input size walks over the full-resolution pair
  with ``overlap`` (0.25: windows 3/4 of a window apart; the last row/column is shifted inward to end at the
  border), all windows of a batch of pairs go through the model ``batch_size`` at a time, and the logits are
  averaged where windows overlap with a cosine (Hann, floored above zero) or a flat weight, then stitched
  back to the input's full size. An image smaller than the window in a dimension is **padded** there
  (bottom / right, with zeros after normalisation, i.e. the mean colour) and the logits are cropped back:
  the ground sampling distance the model was trained at is kept (LEVIR-CD tiles are 1024 px, the model
  256 px). A pair that is exactly the model's size takes a single pass for caption and mask together.

Inputs, for ``before`` and ``after`` alike: a file path, a PIL image, an ``H x W x 3`` ``uint8`` numpy array
(floats in [0, 1] are accepted too) or a ``C x H x W`` tensor (``uint8`` 0-255 or float in [0, 1], not
normalised), read by :func:`semcc.data.inputs.to_rgb` (grey repeated to RGB, alpha dropped, palettes
converted). Errors are :class:`~semcc.data.inputs.InputImageError` (a ``ValueError``) naming the file (or
``before[i]`` / ``after[i]`` for in-memory images).

``semcc caption BEFORE AFTER --ckpt CKPT`` (:mod:`semcc.commands.caption`) is the command-line form. This
module imports no Lightning: a checkpoint is rebuilt by :func:`semcc.tasks.loading.load_task`, imported only
when :meth:`Predictor.from_checkpoint` is called.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from semcc.data.inputs import ImageInput, InputImageError, image_name, load_pair, mask_to_png, to_rgb
from semcc.data.levir import LEVIR_CC_MEAN, LEVIR_CC_STD, Normalizer
from semcc.data.text import INSTRUCTIONS
from semcc.metrics.consistency import (
    ConsistencyReport,
    binary_mask_name,
    check_consistency,
    choose_consistent,
    mask_class_names,
    mask_prefixes,
)
from semcc.metrics.truth import MASK_CHANGE_SHARE, MaskSummary, check_change_share, summarize_mask
from semcc.models.cd_head import class_mask
from semcc.models.radiometry import matching
from semcc.models.semantic_cc import SemanticCC
from semcc.models.tta import check_mask_tta
from semcc.windows import cd_window_logits, sliding_window_logits, window_starts, window_weight

# The input helpers live in semcc.data.inputs and the sliding window in semcc.windows; inference re-exports them,
# its public names since the start.
__all__ = [
    "ImageInput",
    "InputImageError",
    "PairPrediction",
    "Predictor",
    "cd_window_logits",
    "check_device",
    "load_pair",
    "mask_to_png",
    "sliding_window_logits",
    "to_rgb",
    "window_starts",
    "window_weight",
]

@dataclass
class PairPrediction:
    """The prediction for one pair.

    Attributes:
        name: the before file's name (``pair{i}`` for in-memory images).
        size: ``(height, width)`` of the input pair.
        caption: the change caption (``None`` for a model without a caption head).
        mask: ``uint8 [H, W]`` class indices at the input's full size (binary model: 1 = change, 0 = none;
            ``None`` for a model without a change-detection head).
        probability: ``float32 [H, W]`` change probability (binary: sigmoid of the logit; multi-class:
            1 - P(class 0)); only when asked for.
        logits: ``float32 [K, H, W]`` stitched mask logits; only when asked for.
        consistency: the caption's claim, the mask's summary and their disagreements
            (:class:`semcc.metrics.consistency.ConsistencyReport`); when the model gives both.
        candidates: the candidate captions consistency-aware decoding chose from, in the order it ranked them
            (``decoding="consistent"`` only).
    """

    name: str
    size: tuple[int, int]
    caption: str | None
    mask: np.ndarray | None
    probability: np.ndarray | None = None
    logits: np.ndarray | None = None
    consistency: ConsistencyReport | None = None
    candidates: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: name, size, caption, and the consistency report (claim, mask summary, disagreements) and
        candidates when there are any (the arrays are left out: write them with :func:`mask_to_png`)."""
        out: dict[str, Any] = {"name": self.name, "size": list(self.size), "caption": self.caption}
        if self.consistency is not None:
            out.update(self.consistency.to_dict())
        if self.candidates is not None:
            out["candidates"] = list(self.candidates)
        return out


# -------------------------------------------------------------------------------------------- predictor
def _run_config_stats(task: Any) -> tuple[Sequence[float] | None, Sequence[float] | None]:
    """``data.loader.mean`` / ``data.loader.std`` (``data.mean`` / ``data.std`` in older runs) of the YAML run
    configuration a checkpoint stored, if any."""
    text = getattr(task, "run_config", None)
    if not text:
        return None, None
    try:
        data = (yaml.safe_load(text) or {}).get("data") or {}
    except yaml.YAMLError:
        return None, None
    if isinstance(data.get("init_args"), dict):
        data = data["init_args"]
    loader = data.get("loader") if isinstance(data.get("loader"), dict) else {}
    return loader.get("mean", data.get("mean")), loader.get("std", data.get("std"))


def _task_setting(task: Any, name: str) -> Any:
    """The task's evaluation setting ``name`` (``task.evaluation.<name>``; ``None`` for a bare model)."""
    return getattr(getattr(task, "evaluation", None), name, None)


class Predictor:
    """Caption and segment image pairs of any size with a trained Semantic-CC (paper Eq. 1).

    Args:
        task_or_model: a :class:`~semcc.tasks.module.SemanticCCTask` (e.g. from
            :func:`~semcc.tasks.loading.load_task`) or a bare :class:`~semcc.models.SemanticCC`.
        device: where the model runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``...).
        mean, std: RGB normalisation on the 0-1 scale; default: the run configuration's ``data.loader.mean`` /
            ``data.loader.std`` when the task carries one (checkpoints of ``semcc fit`` do), else LEVIR-CC's.
        batch_size: pairs per caption forward, and windows per mask forward.
        max_new_tokens: caption length limit (default: the task's ``max_new_tokens``, else the model's).
        overlap: fraction of a window shared with its neighbour, in [0, 1).
        weight: how overlapping window logits are averaged: ``"cosine"`` (Hann) or ``"flat"``.
        instructions: the instruction prompts (default: the task's; the first is used unless ``ensemble``).
        ensemble: the paper's multi-output ensemble over all instructions (default: the task's setting).
        decoding: ``"greedy"`` (the caption of the first instruction, or the ensemble's consensus) or
            ``"consistent"``: consistency-aware decoding (beyond the paper; issue 13). The candidates are the greedy
            caption and, for every instruction, its ``beams`` best beam-search captions; the one with the fewest
            disagreements with the pair's predicted mask wins (:func:`semcc.metrics.consistency.consistency_rank`;
            ties keep the greedy caption). A task trained with a ``no_change_caption`` adds that sentence to the
            candidates of a pair whose mask shows no change (see ``no_change_candidate``; a bare model adds none).
            Costs a second caption pass.
            Default: the task's setting (``model.evaluation.decoding``), else greedy.
        beams: beams per instruction for ``decoding="consistent"`` (default: the task's, else 2).
        length_penalty: how the beams are ranked, the sum of their token log-probabilities over ``length **
            length_penalty`` (default: the task's ``evaluation.length_penalty``, else 1, transformers' default).
        samples: captions drawn from the model per pair for ``decoding="consistent"``: they join the candidates, and
            ties among the captions the mask confirms equally well go to the one most like the samples
            (minimum-Bayes-risk decoding; :func:`semcc.metrics.consistency.choose_consistent`) instead of the greedy
            caption. Default: the task's ``evaluation.samples``, else 0 (none).
        temperature: their sampling temperature (default: the task's, else 0.5).
        sample_seed: the random seed of the samples (default: the task's, else 0): the same pairs in the same batches
            get the same samples.
        no_change_candidate: add the task's ``no_change_caption`` to the candidates of ``decoding="consistent"``
            where the pair's mask shows no change (default: the task's ``evaluation.no_change_candidate``; a bare
            model, or a task without the sentence, adds nothing either way).
        change_share: the share of a predicted mask's pixels from which the mask says "changed", for consistency-aware
            decoding and the report, in (0, 1] (default: the task's ``evaluation.change_share``, else
            :data:`semcc.metrics.truth.MASK_CHANGE_SHARE`).
        mask_prefixes: with ``decoding="consistent"``, the model's greedy caption continued from openings that say
            the count and class of what the pair's mask marks (:func:`semcc.metrics.consistency.mask_prefixes`, e.g.
            "two houses") joins the candidates (beyond the paper: the mask guides what the caption names). Default:
            the task's ``evaluation.mask_prefixes``, else off.
        road_shapes: a binary building-change mask's components shaped like a road
            (:func:`semcc.metrics.truth.road_shaped`) are not counted as buildings by the consistency report, the
            consistency-aware decoding and the mask-guided openings (beyond the paper, 0.17). Default: the task's
            ``evaluation.road_shapes``, else off.
        first_clauses: with ``decoding="consistent"``, each candidate's first clause (the words before its first
            "and") joins the candidates just before it, so that a caption of two events wins only where the mask
            confirms more of it (beyond the paper; :func:`semcc.metrics.consistency.choose_consistent`). Default: the
            task's ``evaluation.first_clauses``, else off.
        binary_mask_class: what a binary model's mask marks, for the consistency report and decoding:
            ``"building"`` or ``"change"`` (any change). Default: the task's (stored by ``semcc fit``; tiny's is
            ``"building"``), else ``"change"``.
        match_radiometry: match the two dates' per-channel mean and standard deviation before the encoder (beyond the
            paper: relative radiometric normalisation against illumination, haze and sensor shifts;
            :func:`semcc.models.radiometry.match_radiometry`). Default: the task's ``evaluation.match_radiometry``,
            else as the model was trained (its encoder's ``match_radiometry``). The model itself is left as it is.
        mask_tta: test-time augmentation of the mask (beyond the paper, :mod:`semcc.models.tta`): ``"none"``,
            ``"flips"`` (the logits averaged over the pair and its three flips, each window's in the sliding window)
            or ``"d4"`` (the eight symmetries of the square). Default: the task's ``evaluation.mask_tta``, else none.
    """

    def __init__(
        self,
        task_or_model: Any,
        *,
        device: str | torch.device = "cpu",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        batch_size: int = 8,
        max_new_tokens: int | None = None,
        overlap: float = 0.25,
        weight: Literal["cosine", "flat"] = "cosine",
        instructions: Sequence[str] | None = None,
        ensemble: bool | None = None,
        decoding: Literal["greedy", "consistent"] | None = None,
        beams: int | None = None,
        length_penalty: float | None = None,
        samples: int | None = None,
        temperature: float | None = None,
        sample_seed: int | None = None,
        no_change_candidate: bool | None = None,
        change_share: float | None = None,
        mask_prefixes: bool | None = None,
        road_shapes: bool | None = None,
        first_clauses: bool | None = None,
        binary_mask_class: str | None = None,
        match_radiometry: bool | None = None,
        mask_tta: str | None = None,
    ) -> None:
        model = getattr(task_or_model, "model", task_or_model)
        if not isinstance(model, SemanticCC):
            raise TypeError(f"expected a SemanticCCTask or a SemanticCC, got {type(task_or_model).__name__}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        decoding = decoding or _task_setting(task_or_model, "decoding") or "greedy"
        beams = beams if beams is not None else (_task_setting(task_or_model, "beams") or 2)
        if decoding not in ("greedy", "consistent"):
            raise ValueError(f"decoding must be 'greedy' or 'consistent', got {decoding!r}")
        if beams < 1:
            raise ValueError(f"beams must be at least 1, got {beams}")
        samples = samples if samples is not None else (_task_setting(task_or_model, "samples") or 0)
        temperature = temperature if temperature is not None else (_task_setting(task_or_model, "temperature") or 0.5)
        sample_seed = sample_seed if sample_seed is not None else (_task_setting(task_or_model, "sample_seed") or 0)
        if samples < 0:
            raise ValueError(f"samples must be at least 0, got {samples}")
        if not temperature > 0:
            raise ValueError(f"temperature must be above 0, got {temperature}")
        window_starts(1, 1, overlap)  # validates overlap
        window_weight(1, weight)  # validates weight
        self.device = torch.device(device)
        self.task = task_or_model if task_or_model is not model else None
        self.model = model.to(self.device).eval()
        run_mean, run_std = _run_config_stats(task_or_model)
        mean = mean if mean is not None else (run_mean if run_mean is not None else LEVIR_CC_MEAN)
        std = std if std is not None else (run_std if run_std is not None else LEVIR_CC_STD)
        self._normalize = Normalizer(mean, std)  # checks three values and std > 0
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.batch_size = int(batch_size)
        if max_new_tokens is None:
            max_new_tokens = _task_setting(task_or_model, "max_new_tokens")
        self.max_new_tokens = max_new_tokens
        self.overlap = float(overlap)
        self.weight = weight
        self.instructions = list(instructions or getattr(task_or_model, "instructions", None) or INSTRUCTIONS)
        self.ensemble = bool(_task_setting(task_or_model, "ensemble")) if ensemble is None else bool(ensemble)
        self.decoding, self.beams = decoding, int(beams)
        if length_penalty is None:
            length_penalty = _task_setting(task_or_model, "length_penalty")
        self.length_penalty = 1.0 if length_penalty is None else float(length_penalty)
        self.samples, self.temperature, self.sample_seed = int(samples), float(temperature), int(sample_seed)
        if change_share is None:
            change_share = _task_setting(task_or_model, "change_share") or MASK_CHANGE_SHARE
        self.change_share = check_change_share(change_share)
        if mask_prefixes is None:
            mask_prefixes = _task_setting(task_or_model, "mask_prefixes")
        self.mask_prefixes = bool(mask_prefixes)
        if road_shapes is None:
            road_shapes = _task_setting(task_or_model, "road_shapes")
        self.road_shapes = bool(road_shapes)
        if first_clauses is None:
            first_clauses = _task_setting(task_or_model, "first_clauses")
        self.first_clauses = bool(first_clauses)
        stored = self.task.hparams.get("binary_mask_class") if self.task is not None else None
        self.binary_mask_class: str = binary_mask_name(binary_mask_class or stored)
        if match_radiometry is None:
            match_radiometry = _task_setting(task_or_model, "match_radiometry")
        self.match_radiometry: bool = bool(model.encoder.match_radiometry if match_radiometry is None
                                           else match_radiometry)
        self.mask_tta: str = mask_tta or _task_setting(task_or_model, "mask_tta") or "none"
        check_mask_tta(self.mask_tta, "mask_tta")
        no_change = getattr(task_or_model, "no_change_candidates", None)
        self.no_change_candidates: list[str] = no_change(no_change_candidate) if callable(no_change) else []

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | torch.device = "cpu", **kwargs: Any) -> Predictor:
        """A predictor for a ``semcc fit`` checkpoint (rebuilt by :func:`~semcc.tasks.loading.load_task`)."""
        from semcc.tasks.loading import load_task

        return cls(load_task(path, map_location=device), device=device, **kwargs)

    @property
    def input_size(self) -> int:
        """The model's input size (square), the window size of the mask and the caption's resize target."""
        return int(self.model.encoder.img_size)

    @property
    def num_classes(self) -> int:
        """Mask classes: 2 for a binary change logit, else the CD head's class count (0 without a CD head)."""
        head = self.model.cd_head
        return 0 if head is None else max(2, int(head.num_classes))

    @property
    def mask_classes(self) -> dict[int, str]:
        """What the mask's values mean for the consistency report (:func:`semcc.metrics.consistency.
        mask_class_names`): ``{1: binary_mask_class}`` for a binary model, ``{1: "road", 2: "building"}`` for
        LEVIR-MCI."""
        return mask_class_names(self.num_classes, self.binary_mask_class)

    def radiometry(self) -> AbstractContextManager[None]:
        """A block in which the model matches the dates' radiometry as this predictor does (``match_radiometry``);
        every model call of :meth:`predict` runs in one, and so must a caller's own calls of ``self.model``."""
        return matching(self.model.encoder, self.match_radiometry)

    def _resized(self, x: torch.Tensor) -> torch.Tensor:
        s = self.input_size
        if tuple(x.shape[-2:]) == (s, s):
            return x
        return F.interpolate(x[None], size=(s, s), mode="bilinear", antialias=True, align_corners=False)[0]

    def _load_pair(self, before: ImageInput, after: ImageInput, index: int) -> tuple[np.ndarray, np.ndarray]:
        return load_pair(before, after, f"before[{index}]", f"after[{index}]")

    def _generate(self, image_a: torch.Tensor, image_b: torch.Tensor, masks: bool) -> tuple[Any, list[str] | None]:
        n = image_a.shape[0]
        instructions = self.instructions if self.ensemble else [self.instructions[0]] * n
        kwargs = {"instructions": instructions, "max_new_tokens": self.max_new_tokens, "ensemble": self.ensemble}
        if masks:
            return self.model.predict(image_a, image_b, **kwargs)
        return None, self.model.generate(image_a, image_b, **kwargs)

    @torch.no_grad()
    def _predict_batch(
        self, pairs: list[tuple[torch.Tensor, torch.Tensor]], probability: bool, logits: bool
    ) -> list[tuple[str | None, torch.Tensor | None, list[str] | None, list[str], MaskSummary | None]]:
        s = self.input_size
        has_cc, has_cd = self.model.cc_head is not None, self.model.cd_head is not None
        exact = [i for i, (a, _) in enumerate(pairs) if tuple(a.shape[-2:]) == (s, s)]
        other = [i for i in range(len(pairs)) if i not in set(exact)]
        captions: list[str | None] = [None] * len(pairs)
        mask_logits: list[torch.Tensor | None] = [None] * len(pairs)
        if exact and has_cc:  # one encoder pass gives the caption and the mask
            image_a = torch.stack([pairs[i][0] for i in exact]).to(self.device)
            image_b = torch.stack([pairs[i][1] for i in exact]).to(self.device)
            out_masks, out_caps = self._generate(image_a, image_b, masks=has_cd)
            if out_masks is not None and self.mask_tta != "none":
                out_masks = self.model.mask_logits_tta(image_a, image_b, self.mask_tta, logits=out_masks)
            for k, i in enumerate(exact):
                captions[i] = out_caps[k] if out_caps is not None else None
                mask_logits[i] = out_masks[k].float() if out_masks is not None else None
            window_pairs = other
        else:
            window_pairs = list(range(len(pairs)))
        if other and has_cc:
            image_a = torch.stack([self._resized(pairs[i][0]) for i in other]).to(self.device)
            image_b = torch.stack([self._resized(pairs[i][1]) for i in other]).to(self.device)
            _, out_caps = self._generate(image_a, image_b, masks=False)
            for k, i in enumerate(other):
                captions[i] = out_caps[k] if out_caps is not None else None
        if window_pairs and has_cd:
            stitched = sliding_window_logits(
                self.model,
                [pairs[i] for i in window_pairs],
                overlap=self.overlap,
                batch_size=self.batch_size,
                weight=self.weight,
                mask_tta=self.mask_tta,
            )
            for i, logit in zip(window_pairs, stitched, strict=True):
                mask_logits[i] = logit
        candidates: list[list[str] | None] = [None] * len(pairs)
        samples: list[list[str]] = [[] for _ in pairs]
        summaries: list[MaskSummary | None] = [None] * len(pairs)
        if self.decoding == "consistent" and has_cc and has_cd:
            image_a = torch.stack([self._resized(a) for a, _ in pairs]).to(self.device)
            image_b = torch.stack([self._resized(b) for _, b in pairs]).to(self.device)
            encoded = self.model.encode(image_a, image_b)
            prefixes = None
            if self.mask_prefixes:  # summarised once: the guided candidates' openings and, in _result, the choice
                summaries = [self._summary(x) if x is not None else None for x in mask_logits]
                prefixes = [mask_prefixes(m) if m is not None else [] for m in summaries]
            candidates = [*self.model.caption_candidates(image_a, image_b, instructions=self.instructions,
                                                         max_new_tokens=self.max_new_tokens, beams=self.beams,
                                                         length_penalty=self.length_penalty, encoded=encoded,
                                                         prefixes=prefixes)]
            if self.samples:
                samples = self.model.caption_samples(image_a, image_b, instructions=self.instructions,
                                                     samples=self.samples, temperature=self.temperature,
                                                     max_new_tokens=self.max_new_tokens, seed=self.sample_seed,
                                                     encoded=encoded)
        return list(zip(captions, mask_logits, candidates, samples, summaries, strict=True))

    def _summary(self, logit: torch.Tensor) -> MaskSummary:
        """The summary of the mask of ``logit`` ``[C, H, W]`` that consistency-aware decoding checks captions on."""
        return self._summary_of(class_mask(logit.float().cpu()).numpy().astype(np.uint8))

    def _summary_of(self, mask: np.ndarray) -> MaskSummary:
        return summarize_mask(mask, self.mask_classes, change_share=self.change_share, road_shapes=self.road_shapes)

    def _result(
        self, name: str, size: tuple[int, int], caption: str | None, logit: torch.Tensor | None, probability: bool,
        logits: bool, candidates: list[str] | None = None, samples: Sequence[str] = (),
        summary: MaskSummary | None = None,
    ) -> PairPrediction:
        result = PairPrediction(name=name, size=size, caption=caption, mask=None)
        if logit is None:
            return result
        logit = logit.float().cpu()
        result.mask = class_mask(logit).numpy().astype(np.uint8)
        if caption is not None:
            # once: for the choice and the report
            summary = summary if summary is not None else self._summary_of(result.mask)
            if candidates is not None:
                result.caption, result.candidates = choose_consistent(caption, candidates, summary,
                                                                      no_change=self.no_change_candidates,
                                                                      samples=samples,
                                                                      first_clauses=self.first_clauses)
            result.consistency = check_consistency(result.caption or "", summary)
        if probability:
            prob = torch.sigmoid(logit[0]) if logit.shape[0] == 1 else 1 - torch.softmax(logit, 0)[0]
            result.probability = prob.numpy().astype(np.float32)
        if logits:
            result.logits = logit.numpy().astype(np.float32)
        return result

    def predict(
        self,
        before: ImageInput | Sequence[ImageInput],
        after: ImageInput | Sequence[ImageInput],
        *,
        names: Sequence[str] | None = None,
        probability: bool = False,
        logits: bool = False,
    ) -> PairPrediction | list[PairPrediction]:
        """Caption and change mask of one pair, or of lists of pairs (then a list of results, in order).

        ``before`` / ``after``: one image each, or two equally long lists. ``names`` overrides the result
        names (default: the before file's name, ``pair{i}`` for in-memory images). ``probability`` and
        ``logits`` add the change probability map / the stitched logits to each result. Pairs are read
        and predicted ``batch_size`` at a time.
        """
        single = not isinstance(before, (list, tuple))
        if single != (not isinstance(after, (list, tuple))):
            raise InputImageError("before and after must both be single images or both be lists of images")
        befores = [before] if single else list(before)  # type: ignore[list-item]
        afters = [after] if single else list(after)  # type: ignore[arg-type]
        if len(befores) != len(afters):
            raise InputImageError(f"{len(befores)} before images but {len(afters)} after images")
        if names is not None and len(names) != len(befores):
            raise ValueError(f"{len(names)} names for {len(befores)} pairs")
        results: list[PairPrediction] = []
        for start in range(0, len(befores), self.batch_size):
            indices = range(start, min(start + self.batch_size, len(befores)))
            pairs, sizes = [], []
            for i in indices:
                a, b = self._load_pair(befores[i], afters[i], i)
                pairs.append((self._normalize(a), self._normalize(b)))
                sizes.append((int(a.shape[0]), int(a.shape[1])))
            with self.radiometry():
                outputs = self._predict_batch(pairs, probability, logits)
            for i, size, (caption, logit, candidates, samples, summary) in zip(indices, sizes, outputs, strict=True):
                name = names[i] if names is not None else image_name(befores[i], i)
                results.append(self._result(name, size, caption, logit, probability, logits, candidates, samples,
                                            summary))
        return results[0] if single else results


def check_device(device: str) -> None:
    """Raise a one-line error for a CUDA device on a machine without one."""
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but no CUDA device is available")
