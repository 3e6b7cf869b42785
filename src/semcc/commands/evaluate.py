"""``semcc evaluate``: score any program's ``captions.json`` against a ``LevirCCcaptions.json`` (Sec. IV-B).

Prints the table of :func:`semcc.metrics.report.caption_table` for the predictions and the two floors
(:func:`semcc.evaluate.evaluate_captions`), where the references' folder (or ``--truth``) holds ground truth the
semantic scores of what the captions claim (:func:`semcc.evaluate.evaluate_semantics`, issue 13), and can write
the scores as JSON (``--out``) and a report folder
(``--report``: ``metrics.json`` and ``report.md``, as ``semcc test`` writes them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from semcc.commands import CommandError

__all__ = ["build_parser", "run"]


def build_parser() -> argparse.ArgumentParser:
    """The options of ``semcc evaluate``."""
    from semcc.metrics.captioning import PROTOCOLS, TOKENIZATIONS

    p = argparse.ArgumentParser(
        prog="semcc evaluate",
        description="Score captions made by any program under the published protocol (Sec. IV-B), beside the "
        "constant and oracle-constant floors.",
    )
    p.add_argument("--predictions", required=True, type=Path, help="captions.json of any program")
    p.add_argument("--references", required=True, type=Path, help="LevirCCcaptions.json")
    p.add_argument("--split", default="test")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (it needs Java)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="words",
                   help="score words (default) or vocabulary-id strings as published RSICC code does")
    p.add_argument("--tokenization", choices=TOKENIZATIONS, default="simple",
                   help="simple normalisation (default) or pycocoevalcap's PTB tokenizer (needs Java)")
    p.add_argument("--truth", type=Path, default=None,
                   help="folder with ground truth for the semantic scores: synth_meta.json (SynthLEVIR) or "
                   "images/SPLIT/label (LEVIR-MCI); default: the folder of --references")
    p.add_argument("--out", type=Path, help="write the scores as JSON here")
    p.add_argument("--report", type=Path, help="write metrics.json and report.md (as `semcc test`) to this folder")
    return p


def run(args: argparse.Namespace) -> int:
    """Score ``args.predictions``, print the table, write the files asked for."""
    from semcc.evaluate import evaluate_captions, evaluate_semantics, load_predictions
    from semcc.metrics.captioning import java_available, meteor_unavailable_reason
    from semcc.metrics.report import caption_table, semantic_table, write_report

    if args.tokenization == "ptb" and not java_available():
        raise CommandError("--tokenization ptb: the PTB tokenizer needs Java: no `java` executable on PATH")
    predictions = load_predictions(args.predictions)
    results = evaluate_captions(
        predictions, args.references, split=args.split, meteor=not args.no_meteor, protocol=args.protocol,
        tokenization=args.tokenization,
    )
    print(f"{args.predictions} on the {args.split} split of {args.references} "
          f"({args.protocol}, {args.tokenization} tokenization, five references per pair)")
    print(caption_table(results, columns=("bleu_4", "meteor", "rouge_l", "cider", "s_m")))
    semantic = evaluate_semantics(predictions, args.references, split=args.split, truth_root=args.truth)
    if semantic is not None:
        print(f"\nwhat the captions claim, against {semantic[0]}:")
        print(semantic_table(semantic[1]))
    elif args.truth is not None:
        raise CommandError(f"--truth {args.truth}: no synth_meta.json and no images/{args.split}/label there")
    if args.out:
        out = dict(results) if semantic is None else {**results, "semantic": semantic[1]}
        args.out.write_text(json.dumps(out, indent=2))
        print(f"scores: {args.out}")
    if args.report:
        meteor = "computed" if "meteor" in results["model"] else (
            "not computed (--no-meteor)" if args.no_meteor else meteor_unavailable_reason())
        summary = {"split": args.split, "predictions": str(args.predictions), "references": str(args.references),
                   "pairs": len(predictions), "protocol": args.protocol, "tokenization": args.tokenization,
                   "meteor": meteor, "captioning": results}
        if semantic is not None:
            summary["semantic_truth"], summary["semantic"] = semantic
        paths = write_report(args.report, summary)
        print("report: " + ", ".join(str(p) for p in paths.values()))
    return 0
