"""Scores of what captions claim (issue 13's semantic caption metrics; beyond the n-gram metrics of the paper's
Sec. IV-B): a predicted :class:`~semcc.metrics.semantic.CaptionClaim` against a ground-truth one, per pair
(:func:`compare_claims`) and over a split (:func:`semantic_scores`): change accuracy, change-type F1 per class,
count and location accuracy, hallucination rate. Directions are not compared: a truth derived from a mask has none.

Counts: an exact number agrees with an equal one; a vague word ("several", "many") with the numbers it is true
of (:data:`~semcc.metrics.caption_rules.VAGUE_COUNTS`). Classes a truth marks ``optional`` (the ground a change
replaced; what a mask cannot tell) are neither rewarded nor counted as hallucinated when a caption names them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

from semcc.metrics.caption_rules import CLASSES, VAGUE_COUNTS
from semcc.metrics.semantic import CaptionClaim, parse_caption

__all__ = ["SEMANTIC_COLUMNS", "compare_claims", "semantic_report", "semantic_scores"]

_COMPASS = {"top", "bottom", "left", "right"}


def _class_counts(claim: CaptionClaim) -> dict[str, tuple[int, int | None] | None]:
    """Per class: the range of numbers its objects claim (exact counts summed, vague words as in
    :data:`~semcc.metrics.caption_rules.VAGUE_COUNTS`), or None when some object has no scorable number."""
    counts: dict[str, tuple[int, int | None] | None] = {}
    for o in claim.objects:
        if o.count is not None:
            span: tuple[int, int | None] | None = (o.count, o.count)
        else:
            span = VAGUE_COUNTS.get(o.count_word) if o.count_word else None
        if o.cls not in counts:
            counts[o.cls] = span
        elif counts[o.cls] is not None and span is not None:
            lo, hi = counts[o.cls]  # type: ignore[misc]
            counts[o.cls] = (lo + span[0], None if hi is None or span[1] is None else hi + span[1])
        else:
            counts[o.cls] = None
    return counts


def _counts_agree(pred: tuple[int, int | None], truth: tuple[int, int | None]) -> bool:
    """An exact truth inside the predicted range (two ranges: they overlap)."""
    p_hi = math.inf if pred[1] is None else pred[1]
    t_hi = math.inf if truth[1] is None else truth[1]
    return pred[0] <= t_hi and truth[0] <= p_hi


def _scored_classes(pred: CaptionClaim, truth: CaptionClaim) -> frozenset[str]:
    """The predicted classes that count: those the truth does not mark optional (unless it also claims them)."""
    return pred.classes - (truth.optional - truth.classes)


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
    counts = [float(_counts_agree(pc[c], tc[c])) for c in shared  # type: ignore[arg-type]
              if pc[c] is not None and tc[c] is not None]
    places = [float(_places_agree(pp[c], tp[c])) for c in shared if c in pp and c in tp]
    return counts, places


def compare_claims(pred: CaptionClaim, truth: CaptionClaim) -> dict[str, float | None]:
    """Agreement of one predicted claim with the ground-truth claim of the same pair.

    ``change``: 1/0 (None when ``truth.changed`` is None; an undecided prediction counts as wrong).
    ``type``: Jaccard of the two class sets (1 when both are empty); ``type_<cls>``: 1 when both name the class,
    0 when one does, None when neither. ``count``: share of the shared classes with a number on both sides whose
    numbers agree (None when there is none). ``location``: share of the shared classes placed on both sides whose
    places agree (equal, or a corner and one of its sides, or ``everywhere``; None when there is none).
    ``hallucinated``: how many classes ``pred`` claims that ``truth`` neither claims nor marks optional.
    Directions are not compared (a mask-derived truth has none).
    """
    p, t = _scored_classes(pred, truth), truth.classes
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
        p, t = _scored_classes(pred, truth), truth.classes
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


#: The scores a report table shows, in order (the per-class F1 and denominators stay in the JSON).
SEMANTIC_COLUMNS = ("change_accuracy", "type_f1_macro", "count_accuracy", "location_accuracy", "hallucination_rate")


def semantic_report(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    truths: Mapping[str, CaptionClaim],
    changed_caption: str | None = None,
) -> dict[str, dict[str, float]]:
    """:func:`semantic_scores` of the model, of the references (the ceiling) and of the floors, on the same pairs.

    Pairs: those with a prediction and a truth (the caller warns about the others). ``references`` (the
    reference captions per pair): each reference position ``k`` is scored as if it were a prediction, and the
    scores are averaged over the positions (how well human-style captions agree with the truth). The floors
    (:func:`semcc.metrics.captioning.floor_predictions`: the constant "no change" caption, and given
    ``changed_caption`` the oracle constant) are scored as a model would be.
    """
    from semcc.metrics.captioning import floor_predictions

    keys = [k for k in predictions if k in truths]
    truth = {k: truths[k] for k in keys}
    out = {"model": semantic_scores({k: predictions[k] for k in keys}, truth)}
    refs = {k: list(references[k]) for k in keys if k in references}
    if refs and len(refs) == len(keys):
        positions = min(len(r) for r in refs.values())
        runs = [semantic_scores({k: r[i] for k, r in refs.items()}, truth) for i in range(positions)]
        names = {n for run in runs for n in run}
        out["references"] = {n: _nanmean([run.get(n, math.nan) for run in runs]) for n in sorted(names)}
        if changed_caption is not None:
            for floor, preds in floor_predictions(refs, changed_caption).items():
                out[floor] = semantic_scores(preds, truth)
    return out


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan
