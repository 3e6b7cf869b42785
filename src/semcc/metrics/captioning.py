"""Caption metrics of Sec. IV-B (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D) computed by pycocoevalcap.

The protocol of DESIGN.md: lower-cased, whitespace-tokenised text with punctuation removed
(:func:`semcc.data.text.normalize_caption`), every reference of a pair, the whole split scored at once
(CIDEr's document frequencies depend on the whole split), predictions gathered from every rank and
de-duplicated by pair name (``DistributedSampler`` pads with repeats). Also reported: S*m =
(BLEU-4 + METEOR + ROUGE-L + CIDEr) / 4, and the same metrics on the change / no-change subsets (a pair
is unchanged when its references are the LEVIR-CC no-change sentences).
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Mapping, Sequence

import torch

from semcc.data.text import is_no_change, normalize_caption

__all__ = ["NO_CHANGE_PREDICTION", "CaptionScorer", "floor_predictions", "score_captions", "score_split"]

#: The constant floor's caption (a LEVIR-CC no-change sentence).
NO_CHANGE_PREDICTION = "the scene is the same as before"


def _meteor_available() -> bool:
    return shutil.which("java") is not None


_METEOR = None


def _meteor():
    """One METEOR Java process per Python process, started on first use (a start costs seconds)."""
    global _METEOR
    if _METEOR is None or _METEOR.meteor_p.poll() is not None:
        from pycocoevalcap.meteor.meteor import Meteor

        _METEOR = Meteor()
    return _METEOR


def score_captions(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    *,
    meteor: bool = True,
) -> dict[str, float]:
    """Score ``predictions[name]`` against ``references[name]`` with pycocoevalcap.

    Returns ``bleu_1..4``, ``meteor`` (when Java is there and ``meteor`` is set), ``rouge_l``, ``cider`` and
    ``s_m`` (the mean of BLEU-4, METEOR, ROUGE-L, CIDEr; without METEOR, of the other three).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if missing := sorted(set(predictions) - set(references)):
        raise KeyError(f"predictions without references: {missing[:5]}")
    if not predictions:
        raise ValueError("no predictions to score")
    res = {k: [normalize_caption(v) or "<empty>"] for k, v in predictions.items()}
    gts = {k: [normalize_caption(r) for r in references[k]] for k in predictions}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = {f"bleu_{i + 1}": float(b) for i, b in enumerate(bleu)}
    if meteor and _meteor_available():
        scores["meteor"] = float(_meteor().compute_score(gts, res)[0])
    elif meteor:
        warnings.warn("METEOR needs Java (not found on PATH): reporting the other metrics", stacklevel=2)
    scores["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    scores["cider"] = float(Cider().compute_score(gts, res)[0])
    parts = [scores["bleu_4"], scores["rouge_l"], scores["cider"]] + ([scores["meteor"]] if "meteor" in scores else [])
    scores["s_m"] = sum(parts) / len(parts)
    return scores


def floor_predictions(references: Mapping[str, Sequence[str]], changed_caption: str) -> dict[str, dict[str, str]]:
    """The two floors every report shows, as predictions for the pairs of ``references``.

    ``constant``: "the scene is the same as before" for every pair. ``oracle_constant``: knows perfectly
    whether a pair changed; the no-change sentence for unchanged pairs and ``changed_caption`` (the most
    frequent training caption of changed pairs) for changed ones.
    """
    oracle = {
        k: NO_CHANGE_PREDICTION if all(is_no_change(r) for r in refs) else changed_caption
        for k, refs in references.items()
    }
    return {"constant": dict.fromkeys(references, NO_CHANGE_PREDICTION), "oracle_constant": oracle}


class CaptionScorer:
    """Collects (name, prediction, references) over a split and scores it once, gathered from all ranks.

    ``compute`` returns the overall scores plus ``change_*`` / ``nochange_*`` subsets where both occur.
    """

    def __init__(self, *, meteor: bool = True, subsets: bool = True) -> None:
        self.meteor, self.subsets = meteor, subsets
        self.reset()

    def reset(self) -> None:
        self.items: dict[str, tuple[str, list[str]]] = {}
        self.update_count = 0

    def update(self, names: Sequence[str], predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
        if not len(names) == len(predictions) == len(references):
            raise ValueError(
                f"names, predictions and references differ in length: {len(names)}, {len(predictions)}, "
                f"{len(references)}"
            )
        for name, pred, refs in zip(names, predictions, references, strict=True):
            self.items[name] = (pred, list(refs))
        self.update_count += 1

    def gathered(self) -> dict[str, tuple[str, list[str]]]:
        """The items of every rank (one per pair name)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            parts: list[dict] = [None] * torch.distributed.get_world_size()  # type: ignore[list-item]
            torch.distributed.all_gather_object(parts, self.items)
            merged: dict[str, tuple[str, list[str]]] = {}
            for part in parts:
                merged.update(part)
            return dict(sorted(merged.items()))
        return dict(sorted(self.items.items()))

    def compute(self) -> dict[str, float]:
        items = self.gathered()
        preds = {k: v[0] for k, v in items.items()}
        refs = {k: v[1] for k, v in items.items()}
        return score_split(preds, refs, meteor=self.meteor, subsets=self.subsets)


def score_split(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str]], *, meteor: bool = True,
    subsets: bool = True,
) -> dict[str, float]:
    """:func:`score_captions` overall, plus ``change_*`` / ``nochange_*`` subsets (where both occur) and
    ``change_accuracy``: the share of pairs whose caption is right about change vs no change."""
    scores = score_captions(predictions, references, meteor=meteor)
    if subsets:
        unchanged = {k for k, r in references.items() if all(is_no_change(x) for x in r)}
        keys = set(predictions)
        for prefix, keep in (("nochange_", keys & unchanged), ("change_", keys - unchanged)):
            if keep and len(keep) < len(keys):
                sub = score_captions({k: predictions[k] for k in keep}, {k: references[k] for k in keep}, meteor=meteor)
                scores.update({prefix + k: v for k, v in sub.items()})
        correct = sum(is_no_change(p) == (k in unchanged) for k, p in predictions.items())
        scores["change_accuracy"] = correct / len(predictions)
    return scores
