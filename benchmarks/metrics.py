"""Seconds to score a LEVIR-CC-test-sized split (1,929 pairs x 5 references) with the semcc protocol.

Scores the two floors (constant, oracle-constant) on the real LEVIR-CC test split of a ``LevirCCcaptions.json``
(or ``.json.gz``) you give (``--captions PATH``, or ``$SEMCC_LEVIR_DIR/LevirCCcaptions.json[.gz]``) with
:func:`semcc.metrics.captioning.score_split` (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, S*m, subsets), timing each.
Prints one table and writes it as JSON.

Usage: ``python benchmarks/metrics.py --captions PATH [--no-meteor]``
"""

from __future__ import annotations

import argparse
import time

from _common import add_json_argument, add_levir_captions_argument, read_levir_images, report
from semcc.data.text import most_frequent_changed_caption
from semcc.metrics.captioning import floor_predictions, score_split


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_levir_captions_argument(parser)
    parser.add_argument("--no-meteor", action="store_true")
    add_json_argument(parser, "metrics_benchmark.json")
    args = parser.parse_args(argv)
    images = read_levir_images(parser, args.captions)
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
