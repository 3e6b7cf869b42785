"""How much of the real LEVIR-CC captions the semantic caption parser understands (issue 13, part 1).

Parses every reference sentence of a ``LevirCCcaptions.json`` (or ``.json.gz``) you give (``--captions PATH``, or
``$SEMCC_LEVIR_DIR/LevirCCcaptions.json[.gz]``) with :func:`semcc.metrics.semantic.parse_caption`, per split and
overall: the share with ``changed`` decided, the share fully parsed, and the most frequent unparsed words.
Prints one table and writes it as JSON.

Usage: ``python benchmarks/caption_parser_coverage.py --captions PATH [--top 20]``
"""

from __future__ import annotations

import argparse
import time

from _common import add_json_argument, add_levir_captions_argument, read_levir_images, report
from semcc.metrics.semantic import caption_coverage


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_levir_captions_argument(parser)
    parser.add_argument("--top", type=int, default=20, help="how many unparsed words to list")
    add_json_argument(parser, "caption_parser_coverage.json")
    args = parser.parse_args(argv)
    images = read_levir_images(parser, args.captions)
    sentences: dict[str, list[str]] = {}
    for e in images:
        sentences.setdefault(e["split"], []).extend(" ".join(s["tokens"]) for s in e["sentences"])
    rows, overall = [], None
    for split in [*sorted(sentences), "all"]:
        captions = [c for v in sentences.values() for c in v] if split == "all" else sentences[split]
        start = time.perf_counter()
        cov = caption_coverage(captions, top=args.top)
        rows.append({"split": split, "captions": cov["captions"], "changed_decided": round(cov["changed_decided"], 4),
                     "fully_parsed": round(cov["fully_parsed"], 4), "no_change": round(cov["no_change"], 4),
                     "seconds": round(time.perf_counter() - start, 2)})
        overall = cov
    columns = {"split": "split", "captions": "captions", "changed_decided": "changed decided",
               "fully_parsed": "fully parsed", "no_change": "no change", "seconds": "seconds"}
    unparsed = ", ".join(f"{w} ({n})" for w, n in overall["unparsed_top"])
    report("semantic caption parser coverage on LEVIR-CC", rows, columns, json_path=args.json,
           notes=[f"most frequent unparsed words (all splits): {unparsed}"],
           extra={"unparsed_top": overall["unparsed_top"]})
    return rows


if __name__ == "__main__":
    main()
