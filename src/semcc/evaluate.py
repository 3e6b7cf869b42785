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
import sys
from collections.abc import Sequence
from pathlib import Path

from semcc.data.levir import LevirDataError, load_levir_cc_captions, sentence_text
from semcc.data.text import is_no_change, most_frequent_changed_caption
from semcc.metrics.captioning import (
    PROTOCOLS,
    TOKENIZATIONS,
    build_id_vocabulary,
    meteor_unavailable_reason,
    score_floors,
    score_split,
)
from semcc.metrics.report import caption_table, write_report

__all__ = ["evaluate_captions", "load_predictions", "main"]

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="semcc evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", required=True, type=Path, help="captions.json of any program")
    parser.add_argument("--references", required=True, type=Path, help="LevirCCcaptions.json")
    parser.add_argument("--split", default="test")
    parser.add_argument("--no-meteor", action="store_true", help="skip METEOR (it needs Java)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="words",
                        help="score words (default) or vocabulary-id strings as published RSICC code does")
    parser.add_argument("--tokenization", choices=TOKENIZATIONS, default="simple",
                        help="simple normalisation (default) or pycocoevalcap's PTB tokenizer (needs Java)")
    parser.add_argument("--out", type=Path, help="write the scores as JSON here")
    parser.add_argument("--report", type=Path, help="write metrics.json and report.md (as `semcc test`) to this folder")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        predictions = load_predictions(args.predictions)
        results = evaluate_captions(
            predictions, args.references, split=args.split, meteor=not args.no_meteor, protocol=args.protocol,
            tokenization=args.tokenization,
        )
    except (LevirDataError, RuntimeError) as err:
        print(f"semcc evaluate: {err}", file=sys.stderr)
        return 2
    print(f"{args.predictions} on the {args.split} split of {args.references} "
          f"({args.protocol}, {args.tokenization} tokenization, five references per pair)")
    print(caption_table(results, columns=("bleu_4", "meteor", "rouge_l", "cider", "s_m")))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
        print(f"scores: {args.out}")
    if args.report:
        meteor = "computed" if "meteor" in results["model"] else (
            "not computed (--no-meteor)" if args.no_meteor else meteor_unavailable_reason())
        summary = {"split": args.split, "predictions": str(args.predictions), "references": str(args.references),
                   "pairs": len(predictions), "protocol": args.protocol, "tokenization": args.tokenization,
                   "meteor": meteor, "captioning": results}
        paths = write_report(args.report, summary)
        print("report: " + ", ".join(str(p) for p in paths.values()))
    return 0
