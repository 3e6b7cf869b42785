"""Consistency-aware decoding measured (issue 13, part 2; beyond the paper): greedy captions against the caption,
among each instruction's beams, most consistent with the pair's own predicted mask.

Runs a ``semcc fit`` checkpoint with :class:`semcc.inference.Predictor` on a split of a LEVIR-CC-layout folder with
LEVIR-MCI labels and ground truth (SynthLEVIR's ``synth_meta.json``, or the labels), once with ``decoding="greedy"``
and once with ``decoding="consistent"`` (once per ``--change-share``, the mask's change threshold, when given; once
more per ``--samples`` value, with that many captions drawn from the model joining the candidates and deciding ties
by minimum Bayes risk; once more per ``--length-penalty`` value, the beams ranked with it; once more with
``--mask-prefixes`` or ``--no-mask-prefixes``, the mask-guided candidates on or off; once more with ``--road-shapes``
or ``--no-road-shapes``, a building mask's road-shaped components counted apart or not, with the mask-guided
candidates as ``--mask-prefixes`` says; once more with ``--first-clauses`` or ``--no-first-clauses``, each candidate's
first clause among the candidates or not), and prints one row each
(:func:`_common.score_predictor`): captions right about change, the semantic scores (change-type F1 also per class:
building, road, trees), changed-pair BLEU-4 and CIDEr,
how varied the changed pairs' captions are (``caption_diversity``: the share of distinct captions and the share given
the most frequent one), overall CIDEr, the share of pairs whose caption agrees with the mask, and the time.

Usage: ``python benchmarks/consistent_decoding.py --ckpt CKPT [--root ~/.cache/semcc/synthlevir-tiny/LEVIR-CC]
[--split test] [--beams 2] [--change-share 0.005 0.002] [--samples 16 32] [--temperature 0.5] [--length-penalty 0]
[--mask-prefixes] [--road-shapes] [--first-clauses]``
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from _common import add_json_argument, report, score_predictor

COLUMNS = {
    "decoding": "decoding",
    "change_accuracy": "right about change",
    "sem_type_f1_macro": "type F1",
    "sem_type_f1_building": "type F1: building",
    "sem_type_f1_road": "type F1: road",
    "sem_type_f1_vegetation": "type F1: trees",
    "sem_count_accuracy": "count acc.",
    "sem_location_accuracy": "location acc.",
    "sem_hallucination_rate": "hallucination",
    "consistent_share": "caption agrees with mask",
    "bleu_4": "BLEU-4",
    "change_bleu_4": "changed BLEU-4",
    "change_cider": "changed CIDEr",
    "change_distinct": "changed: distinct",
    "change_top_share": "changed: top share",
    "cider": "CIDEr",
    "seconds": "seconds",
}


#: The consistent decoding's switches: Predictor setting, the row's words when a row sets it on / off, and the words
#: when a row leaves it as the checkpoint has it, on.
SWITCHES = (("mask_prefixes", ("mask-guided candidates on", "mask-guided candidates off"), "mask-guided"),
            ("road_shapes", ("road shapes apart", "road shapes counted"), "road shapes apart"),
            ("first_clauses", ("first clauses in", "first clauses out"), "first clauses"))


def row_label(run: dict[str, Any], predictor: Any, temperature: float) -> str:
    """The ``decoding`` cell of a row: its decoding and what the row sets, or the checkpoint's switches that are on."""
    label = run["decoding"]
    if run.get("change_share") is not None:
        label += f" ({predictor.change_share:g})"
    if run["samples"]:
        label += f", {run['samples']} samples (T {temperature:g})"
    if run.get("length_penalty") is not None:
        label += f", length penalty {run['length_penalty']:g}"
    for name, (on, off), kept in SWITCHES:
        if run.get(name) is not None:
            label += ", " + (on if run[name] else off)
        elif run["decoding"] == "consistent" and getattr(predictor, name):
            label += f" ({kept})"
    return label


def main(argv: list[str] | None = None) -> list[dict]:
    from semcc.inference import Predictor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True, help="a semcc fit checkpoint")
    parser.add_argument("--root", type=Path, default=Path("~/.cache/semcc/synthlevir-tiny/LEVIR-CC"),
                        help="LEVIR-CC folder with labels (default: the tiny config's SynthLEVIR)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--beams", type=int, default=2, help="beams per instruction for the consistent decoding")
    parser.add_argument("--change-share", type=float, nargs="+", default=None,
                        help="the mask's change threshold(s) of the consistent decoding (Predictor(change_share=...)),"
                        " one consistent row each (default: the checkpoint's, 0.005 unless it was set)")
    parser.add_argument("--samples", type=int, nargs="+", default=None,
                        help="captions drawn per pair (Predictor(samples=...)), one more consistent row each, at the "
                        "checkpoint's change share")
    parser.add_argument("--temperature", type=float, default=0.5, help="sampling temperature of --samples")
    parser.add_argument("--length-penalty", type=float, nargs="+", default=None,
                        help="the beams' length penalty (Predictor(length_penalty=...)), one more consistent row each "
                        "(default row: the checkpoint's, 1 unless it was set)")
    parser.add_argument("--mask-prefixes", action=argparse.BooleanOptionalAction, default=None,
                        help="one more consistent row with the mask-guided candidates on (--mask-prefixes) or off "
                        "(--no-mask-prefixes); the other rows keep the checkpoint's setting")
    parser.add_argument("--road-shapes", action=argparse.BooleanOptionalAction, default=None,
                        help="one more consistent row with a building mask's road-shaped components not counted as "
                        "buildings (--road-shapes) or counted (--no-road-shapes), the mask-guided candidates as "
                        "--mask-prefixes says; the other rows keep the checkpoint's setting")
    parser.add_argument("--first-clauses", action=argparse.BooleanOptionalAction, default=None,
                        help="one more consistent row with each candidate's first clause among the candidates "
                        "(--first-clauses) or not (--no-first-clauses); the other rows keep the checkpoint's setting")
    parser.add_argument("--batch-size", type=int, default=16)
    add_json_argument(parser, "consistent_decoding.json")
    args = parser.parse_args(argv)
    root = args.root.expanduser()
    if not (root / "LevirCCcaptions.json").is_file():
        parser.error(f"{root}: no LevirCCcaptions.json (run `semcc fit --config configs/tiny.yaml` or `semcc synth`)")
    rows = []
    shares: list[float | None] = list(args.change_share) if args.change_share else [None]
    base: dict[str, Any] = {"decoding": "consistent", "samples": 0}  # Predictor's settings per row
    runs = [{**base, "decoding": "greedy"}, *({**base, "change_share": x} for x in shares)]
    runs += [{**base, "samples": n} for n in args.samples or []]
    runs += [{**base, "length_penalty": lp} for lp in args.length_penalty or []]
    if args.mask_prefixes is not None:
        runs.append({**base, "mask_prefixes": args.mask_prefixes})
    if args.road_shapes is not None:
        runs.append({**base, "mask_prefixes": args.mask_prefixes, "road_shapes": args.road_shapes})
    if args.first_clauses is not None:
        runs.append({**base, "first_clauses": args.first_clauses})
    for run in runs:
        predictor = Predictor.from_checkpoint(args.ckpt, beams=args.beams, temperature=args.temperature,
                                              batch_size=args.batch_size, **run)
        scores = score_predictor(predictor, root, args.split, min_share=predictor.change_share)
        row = {"decoding": row_label(run, predictor, args.temperature)}
        row.update({k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items() if k in COLUMNS})
        row["seconds"] = round(scores["seconds"], 3)
        rows.append(row)
    pairs = scores["pairs"]
    report(f"consistency-aware decoding on {root} ({args.split}, {pairs} pairs; checkpoint {args.ckpt})", rows,
           COLUMNS, json_path=args.json,
           notes=["candidates: the greedy caption and each instruction's best beams "
                  f"({args.beams} per instruction, ranked with the checkpoint's length penalty unless a row says "
                  "another); ties keep the greedy caption",
                  "with samples: the sampled captions join the candidates; ties (the same disagreements per kind) go "
                  "to the candidate of the highest mean caption similarity to the samples (minimum Bayes risk)"])
    return rows


if __name__ == "__main__":
    main()
