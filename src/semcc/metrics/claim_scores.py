"""Scores of what captions claim (issue 13's semantic caption metrics; beyond the n-gram metrics of the paper's
Sec. IV-B): a predicted :class:`~semcc.metrics.semantic.CaptionClaim` against a ground-truth one, per pair
(:func:`compare_claims`) and over a split (:func:`semantic_scores`): change accuracy, change-type F1 per class,
count and location accuracy, hallucination rate. Directions are not compared: a truth derived from a mask has none.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping

from semcc.metrics.caption_rules import CLASSES
from semcc.metrics.semantic import CaptionClaim, parse_caption

__all__ = ["compare_claims", "semantic_scores"]

_COMPASS = {"top", "bottom", "left", "right"}


def _class_counts(claim: CaptionClaim) -> dict[str, int | None]:
    """Per class: the summed count of its objects, or None when any of them has no number."""
    counts: dict[str, int | None] = {}
    for o in claim.objects:
        if o.cls in counts and counts[o.cls] is None:
            continue
        counts[o.cls] = None if o.count is None else (counts.get(o.cls) or 0) + o.count
    return counts


def _class_places(claim: CaptionClaim) -> dict[str, set[str]]:
    places: dict[str, set[str]] = {}
    for o in claim.objects:
        places.setdefault(o.cls, set()).update(o.places)
    return {c: p for c, p in places.items() if p}


def _places_agree(a: set[str], b: set[str]) -> bool:
    """Some place of ``a`` matches one of ``b``: equal, ``everywhere``, or a corner and one of its sides."""
    def parts(p: str) -> set[str]:
        return set(p.split("_")) if set(p.split("_")) <= _COMPASS else {p}

    for x in a:
        for y in b:
            if x == y or "everywhere" in (x, y):
                return True
            px, py = parts(x), parts(y)
            if px <= _COMPASS and py <= _COMPASS and (px <= py or py <= px):
                return True
    return False


def _pair_items(pred: CaptionClaim, truth: CaptionClaim) -> tuple[list[float], list[float]]:
    """Per shared class: count agreements (both numeric) and location agreements (both placed)."""
    pc, tc = _class_counts(pred), _class_counts(truth)
    pp, tp = _class_places(pred), _class_places(truth)
    shared = sorted(pred.classes & truth.classes)
    counts = [float(pc[c] == tc[c]) for c in shared if pc[c] is not None and tc[c] is not None]
    places = [float(_places_agree(pp[c], tp[c])) for c in shared if c in pp and c in tp]
    return counts, places


def compare_claims(pred: CaptionClaim, truth: CaptionClaim) -> dict[str, float | None]:
    """Agreement of one predicted claim with the ground-truth claim of the same pair.

    ``change``: 1/0 (None when ``truth.changed`` is None; an undecided prediction counts as wrong).
    ``type``: Jaccard of the two class sets (1 when both are empty); ``type_<cls>``: 1 when both name the class,
    0 when one does, None when neither. ``count``: share of the shared classes with a number on both sides whose
    numbers agree (None when there is none). ``location``: share of the shared classes placed on both sides whose
    places agree (equal, or a corner and one of its sides, or ``everywhere``; None when there is none).
    ``hallucinated``: how many classes ``pred`` claims that ``truth`` does not. Directions are not compared (a
    mask-derived truth has none).
    """
    p, t = pred.classes, truth.classes
    counts, places = _pair_items(pred, truth)
    out: dict[str, float | None] = {
        "change": None if truth.changed is None else float(pred.changed is truth.changed),
        "type": len(p & t) / len(p | t) if (p | t) else 1.0,
    }
    for cls in CLASSES:
        out[f"type_{cls}"] = (float(cls in p and cls in t) if (cls in p or cls in t) else None)
    out["count"] = sum(counts) / len(counts) if counts else None
    out["location"] = sum(places) / len(places) if places else None
    out["hallucinated"] = float(len(p - t))
    return out


def semantic_scores(preds: Mapping[str, str], truths: Mapping[str, CaptionClaim]) -> dict[str, float]:
    """Semantic scores of predicted captions (``preds``: pair -> caption) against claims (pair -> claim).

    Over the pairs of ``truths`` (each must have a prediction): ``change_accuracy`` (pairs whose truth decides
    ``changed``), ``type_f1_<cls>`` per class named by a prediction or a truth (a pair is a true positive for a
    class both name) and their mean ``type_f1_macro``, ``count_accuracy`` (over the shared classes with numbers on
    both sides), ``location_accuracy`` (over the shared classes placed on both sides), ``hallucination_rate``
    (claimed classes with no such change in the truth / claimed classes) and the denominators ``pairs``,
    ``count_items``, ``location_items``, ``claimed_classes``. A score without any item is NaN.
    """
    missing = [k for k in truths if k not in preds]
    if missing:
        raise KeyError(f"no prediction for {len(missing)} pair(s), e.g. {missing[0]!r}")
    change: list[float] = []
    counts: list[float] = []
    places: list[float] = []
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    claimed = hallucinated = 0
    for key, truth in truths.items():
        pred = parse_caption(preds[key])
        if truth.changed is not None:
            change.append(float(pred.changed is truth.changed))
        p, t = pred.classes, truth.classes
        tp.update(p & t)
        fp.update(p - t)
        fn.update(t - p)
        claimed += len(p)
        hallucinated += len(p - t)
        c, loc = _pair_items(pred, truth)
        counts.extend(c)
        places.extend(loc)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else math.nan

    scores: dict[str, float] = {"pairs": float(len(truths)), "change_accuracy": mean(change)}
    f1s = []
    for cls in CLASSES:
        if tp[cls] + fp[cls] + fn[cls]:
            scores[f"type_f1_{cls}"] = 2 * tp[cls] / (2 * tp[cls] + fp[cls] + fn[cls])
            f1s.append(scores[f"type_f1_{cls}"])
    scores["type_f1_macro"] = mean(f1s)
    scores["count_accuracy"] = mean(counts)
    scores["count_items"] = float(len(counts))
    scores["location_accuracy"] = mean(places)
    scores["location_items"] = float(len(places))
    scores["hallucination_rate"] = hallucinated / claimed if claimed else math.nan
    scores["claimed_classes"] = float(claimed)
    return scores
