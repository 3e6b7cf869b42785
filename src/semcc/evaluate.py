"""Score captions made by any program under the published protocol (Sec. IV-B), as ``semcc evaluate`` does.

:func:`load_predictions` reads predictions (``captions.json``: a list of ``{"name", "prediction"}`` objects,
or a ``{name: caption}`` object); :func:`evaluate_captions` scores one split of a ``LevirCCcaptions.json``
with :func:`semcc.metrics.captioning.score_split` (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, S*m; overall, change
and no-change subsets) and puts the two floors beside it: the constant "the scene is the same as before" and
the oracle-constant caption (the most frequent training caption of changed pairs for changed pairs). The
command (options, table, JSON and report files) is :mod:`semcc.commands.evaluate`.
"""

from __future__ import annotations

import json
from pathlib import Path

from semcc.data.levir import LevirDataError, load_levir_cc_captions, sentence_text
from semcc.data.text import is_no_change, most_frequent_changed_caption
from semcc.metrics.captioning import build_id_vocabulary, score_floors, score_split

__all__ = ["evaluate_captions", "evaluate_semantics", "load_predictions"]


def load_predictions(path: str | Path) -> dict[str, str]:
    """``{name: caption}`` from a ``captions.json`` (list of ``{"name", "prediction"}`` or a mapping)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LevirDataError(f"{path}: predictions file is missing") from None
    except json.JSONDecodeError as err:
        raise LevirDataError(f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    if isinstance(data, dict) and all(isinstance(v, str) for v in data.values()):
        return dict(data)
    if isinstance(data, list):
        out: dict[str, str] = {}
        for i, item in enumerate(data):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(
                item.get("prediction"), str
            ):
                raise LevirDataError(f"{path}: item {i} needs a string 'name' and a string 'prediction'")
            out[item["name"]] = item["prediction"]
        return out
    raise LevirDataError(f"{path}: expected a list of {{name, prediction}} objects or a {{name: caption}} object")


def evaluate_captions(
    predictions: dict[str, str],
    references_file: str | Path,
    *,
    split: str = "test",
    meteor: bool = True,
    protocol: str = "words",
    tokenization: str = "simple",
) -> dict[str, dict[str, float]]:
    """Scores of the predictions and of the two floors on ``split`` of ``references_file``.

    Every pair of the split needs a prediction; a prediction for a pair outside the split is an error
    (both name the file and the pairs). ``protocol="ids"`` maps words to ids of the training captions'
    vocabulary (first-seen order) before scoring; ``tokenization="ptb"`` uses pycocoevalcap's PTB tokenizer.
    """
    images = load_levir_cc_captions(references_file)
    refs = {
        e["filename"]: [sentence_text(s) for s in e["sentences"]]
        for e in images
        if e["split"] == split
    }
    if not refs:
        splits = sorted({str(e["split"]) for e in images})
        raise LevirDataError(f"{references_file}: unknown split {split!r}; available: {', '.join(splits)}")
    if missing := sorted(set(refs) - set(predictions)):
        raise LevirDataError(f"predictions lack {len(missing)} pairs of the {split} split, e.g. {missing[:5]}")
    if extra := sorted(set(predictions) - set(refs)):
        raise LevirDataError(f"predictions name {len(extra)} pairs not in the {split} split, e.g. {extra[:5]}")
    train = [[sentence_text(s) for s in e["sentences"]]
             for e in images if e["split"] == "train"]
    vocabulary = build_id_vocabulary(c for r in train for c in r) if protocol == "ids" and train else None
    kw = {"meteor": meteor, "protocol": protocol, "tokenization": tokenization, "vocabulary": vocabulary}
    results = {"model": score_split(predictions, refs, **kw)}
    if any(not all(is_no_change(x) for x in r) for r in train):  # the floors need a changed training pair
        results.update(score_floors(refs, most_frequent_changed_caption(train), **kw))
    return results


def evaluate_semantics(
    predictions: dict[str, str],
    references_file: str | Path,
    *,
    split: str = "test",
    truth_root: str | Path | None = None,
) -> tuple[str, dict[str, dict[str, float]]] | None:
    """Semantic scores (:func:`semcc.metrics.claim_scores.semantic_report`) of the predictions, the references
    and the floors against the ground truth of ``truth_root`` (default: the folder of ``references_file``):
    ``(where the truth comes from, scores)``, or None when that folder has none (no ``synth_meta.json``, no
    ``images/{split}/label``). Every predicted pair of the split needs a truth (an error names the folder).
    """
    from semcc.metrics.claim_scores import semantic_report
    from semcc.metrics.truth import load_truth, truth_source

    root = Path(truth_root) if truth_root is not None else Path(references_file).parent
    source = truth_source(root, split)
    if source is None:
        return None
    truths = load_truth(root, split) or {}
    if missing := sorted(set(predictions) - set(truths)):
        raise LevirDataError(f"{root}: no ground truth for {len(missing)} predicted pairs, e.g. {missing[:5]}")
    images = load_levir_cc_captions(references_file)
    refs = {e["filename"]: [sentence_text(s) for s in e["sentences"]] for e in images if e["split"] == split}
    train = [[sentence_text(s) for s in e["sentences"]] for e in images if e["split"] == "train"]
    changed = most_frequent_changed_caption(train) if any(not all(is_no_change(x) for x in r) for r in train) else None
    return source, semantic_report(predictions, refs, truths, changed)
