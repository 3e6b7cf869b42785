"""``semcc dataset --pairs DIR --captions FILE --out DIR``: your own pairs and captions as a LEVIR-CC data set.

Beyond the paper (issue 14, "2. Their own data sets"). The work is :func:`semcc.data.build.build_dataset`: every
pair and caption is checked first and every problem is reported (one line each, naming the file; exit status 1,
nothing written); then the pairs are written in the LEVIR-CC layout (LEVIR-MCI with change masks), the captions
JSON last. The summary says what was written (pairs per split, changed / unchanged, captions per pair, image size,
warnings) and prints the ``semcc fit`` command that trains ``configs/tiny.yaml`` on it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["build_parser", "run"]


def build_parser() -> argparse.ArgumentParser:
    """The options of ``semcc dataset``."""
    p = argparse.ArgumentParser(
        prog="semcc dataset",
        description="Build a LEVIR-CC-format data set (LEVIR-MCI with change masks) from a folder of pairs "
        "(PAIRS/A/NAME before, PAIRS/B/NAME after, optional PAIRS/label/NAME change masks 0/255 or 0/128/255) "
        "and a captions file, and print the `semcc fit` command that trains on it.",
    )
    p.add_argument("--pairs", required=True, type=Path, help="folder with A/, B/ and optional label/")
    p.add_argument("--captions", required=True, type=Path,
                   help="CSV with columns name, caption (optional split), one row per caption; or JSON Lines "
                   '{"name": ..., "caption": ...} / {"name": ..., "captions": [...]} (optional "split")')
    p.add_argument("--out", required=True, type=Path, help="the data set folder to write (empty or new)")
    p.add_argument("--split-ratio", default="0.8,0.1,0.1",
                   help="train,val,test shares for the pairs the captions file gives no split (default 0.8,0.1,0.1; "
                   "stratified by changed / unchanged)")
    p.add_argument("--seed", type=int, default=0, help="seed of the ratio split (default 0)")
    p.add_argument("--size", type=int, default=None,
                   help="resize every pair to SIZE x SIZE px (images bilinear, labels nearest); default: keep "
                   "(the tiny model trains on one square size, a multiple of 16: 256)")
    p.add_argument("--link", action="store_true",
                   help="symlink the PNG images instead of copying them (converted or resized ones are written)")
    p.add_argument("--overwrite", action="store_true", help="replace the data set in a non-empty --out")
    p.add_argument("--allow-uncaptioned", action="store_true",
                   help="leave pairs without captions out (counted in a warning) instead of refusing them")
    return p


def run(args: argparse.Namespace) -> int:
    """Build the data set, print its summary and the training command; every problem on its own line."""
    from semcc.data.build import DatasetBuildError, build_dataset

    try:
        summary = build_dataset(
            args.pairs, args.captions, args.out, split_ratio=args.split_ratio, seed=args.seed, size=args.size,
            link=args.link, overwrite=args.overwrite, allow_uncaptioned=args.allow_uncaptioned,
        )
    except DatasetBuildError as err:
        for problem in err.problems:
            print(f"semcc dataset: {problem}", file=sys.stderr)
        n = len(err.problems)
        print(f"semcc dataset: {n} problem{'s' if n != 1 else ''}; nothing written to {args.out}", file=sys.stderr)
        return 1
    print(summary.report())
    return 0
