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

__all__ = ["CaptionScorer", "score_captions"]


def _meteor_available() -> bool:
    return shutil.which("java") is not None


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
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        try:
            scores["meteor"] = float(scorer.compute_score(gts, res)[0])
        finally:  # pycocoevalcap only stops its Java process on garbage collection
            scorer.meteor_p.stdin.close()
            scorer.meteor_p.kill()
            scorer.meteor_p.wait()
    elif meteor:
        warnings.warn("METEOR needs Java (not found on PATH): reporting the other metrics", stacklevel=2)
    scores["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    scores["cider"] = float(Cider().compute_score(gts, res)[0])
    parts = [scores["bleu_4"], scores["rouge_l"], scores["cider"]] + ([scores["meteor"]] if "meteor" in scores else [])
    scores["s_m"] = sum(parts) / len(parts)
    return scores


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
        scores = score_captions(preds, refs, meteor=self.meteor)
        if self.subsets:
            unchanged = {k for k, r in refs.items() if all(is_no_change(x) for x in r)}
            for prefix, keep in (("nochange_", unchanged), ("change_", set(refs) - unchanged)):
                if keep and len(keep) < len(refs):
                    sub = score_captions({k: preds[k] for k in keep}, {k: refs[k] for k in keep}, meteor=self.meteor)
                    scores.update({prefix + k: v for k, v in sub.items()})
            said_change = {k for k, p in preds.items() if not is_no_change(p)}
            correct = sum((k in said_change) == (k not in unchanged) for k in preds)
            scores["change_accuracy"] = correct / len(preds)
        return scores
