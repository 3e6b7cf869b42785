"""``semcc evaluate``: score captions made by any program under the published protocol (Sec. IV-B).

Reads predictions (``captions.json``: a list of ``{"name", "prediction"}`` objects, or a ``{name: caption}``
object) and a ``LevirCCcaptions.json``, scores one split with :func:`semcc.metrics.captioning.score_split`
(BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, S*m; overall, change and no-change subsets) and puts the two floors
beside it: the constant "the scene is the same as before" and the oracle-constant caption (the most
frequent training caption of changed pairs for changed pairs). Prints a table and can write JSON.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from semcc.data.levir import LevirDataError, load_levir_cc_captions, sentence_text
from semcc.data.text import is_no_change, most_frequent_changed_caption
from semcc.metrics.captioning import floor_predictions, score_split

__all__ = ["evaluate_captions", "load_predictions", "main"]

COLUMNS = ("bleu_4", "meteor", "rouge_l", "cider", "s_m")


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
    predictions: dict[str, str], references_file: str | Path, *, split: str = "test", meteor: bool = True
) -> dict[str, dict[str, float]]:
    """Scores of the predictions and of the two floors on ``split`` of ``references_file``.

    Every pair of the split needs a prediction; a prediction for a pair outside the split is an error
    (both name the file and the pairs).
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
    results = {"model": score_split(predictions, refs, meteor=meteor)}
    if any(not all(is_no_change(x) for x in r) for r in train):  # the floors need a changed training pair
        for name, preds in floor_predictions(refs, most_frequent_changed_caption(train)).items():
            results[name] = score_split(preds, refs, meteor=meteor)
    return results


def format_table(results: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per system and subset, the columns of Table I (and S*m)."""
    cols = [c for c in COLUMNS if any(c in r for r in results.values())]
    lines = ["| system | pairs | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for system, scores in results.items():
        for subset, prefix in (("all", ""), ("change", "change_"), ("no change", "nochange_")):
            if f"{prefix}cider" in scores:
                values = " | ".join(f"{scores.get(prefix + c, float('nan')):.4f}" for c in cols)
                lines.append(f"| {system} | {subset} | {values} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="semcc evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", required=True, type=Path, help="captions.json of any program")
    parser.add_argument("--references", required=True, type=Path, help="LevirCCcaptions.json")
    parser.add_argument("--split", default="test")
    parser.add_argument("--no-meteor", action="store_true", help="skip METEOR (it needs Java)")
    parser.add_argument("--out", type=Path, help="write the scores as JSON here")
    args = parser.parse_args(list(argv) if argv is not None else None)
    results = evaluate_captions(
        load_predictions(args.predictions), args.references, split=args.split, meteor=not args.no_meteor
    )
    print(f"{args.predictions} on the {args.split} split of {args.references} (words, five references per pair)")
    print(format_table(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
        print(f"scores: {args.out}")
    return 0
