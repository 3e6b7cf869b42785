"""Seconds to score a LEVIR-CC-test-sized split (1,929 pairs x 5 references) with the semcc protocol.

Scores the two floors (constant, oracle-constant) on the real LEVIR-CC test split of a ``LevirCCcaptions.json``
(or ``.json.gz``) you give (``--captions PATH``, or ``$SEMCC_LEVIR_DIR/LevirCCcaptions.json[.gz]``) with
:func:`semcc.metrics.captioning.score_split` (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, S*m, subsets), timing each.
Prints one table and writes it as JSON.

Usage: ``python benchmarks/metrics.py --captions PATH [--no-meteor]``
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from pathlib import Path

from _common import add_json_argument, report
from semcc.data.text import most_frequent_changed_caption
from semcc.metrics.captioning import floor_predictions, score_split


def _default_captions() -> Path | None:
    """``$SEMCC_LEVIR_DIR/LevirCCcaptions.json`` (or ``.json.gz``) when the variable names a folder that has one."""
    root = os.environ.get("SEMCC_LEVIR_DIR")
    if not root:
        return None
    found = [p for p in (Path(root) / "LevirCCcaptions.json", Path(root) / "LevirCCcaptions.json.gz") if p.is_file()]
    return found[0] if found else None


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=Path, default=_default_captions(),
                        help="LevirCCcaptions.json(.gz) of LEVIR-CC (default: in $SEMCC_LEVIR_DIR)")
    parser.add_argument("--no-meteor", action="store_true")
    add_json_argument(parser, "metrics_benchmark.json")
    args = parser.parse_args(argv)
    if args.captions is None:
        parser.error("give the real LEVIR-CC captions: --captions PATH (or set SEMCC_LEVIR_DIR to their folder)")
    if not args.captions.is_file():
        parser.error(f"{args.captions}: captions file not found")
    opener = gzip.open if args.captions.suffix == ".gz" else open
    with opener(args.captions, "rt") as f:
        images = json.load(f)["images"]
    refs = {
        split: {e["filename"]: [" ".join(s["tokens"]) for s in e["sentences"]] for e in images if e["split"] == split}
        for split in ("train", "test")
    }
    floors = floor_predictions(refs["test"], most_frequent_changed_caption(list(refs["train"].values())))
    rows = []
    for name, preds in floors.items():
        start = time.perf_counter()
        scores = score_split(preds, refs["test"], meteor=not args.no_meteor)
        rows.append({"system": name, "pairs": len(preds), "seconds": round(time.perf_counter() - start, 1),
                     **{k: round(scores[k], 4) for k in ("bleu_4", "meteor", "rouge_l", "cider") if k in scores}})
    columns = {"system": "system", "pairs": "pairs", "seconds": "seconds", "bleu_4": "BLEU-4", "meteor": "METEOR",
               "rouge_l": "ROUGE-L", "cider": "CIDEr"}
    report(f"caption metrics, pycocoevalcap, {'with' if not args.no_meteor else 'without'} METEOR", rows, columns,
           json_path=args.json)
    return rows


if __name__ == "__main__":
    main()
