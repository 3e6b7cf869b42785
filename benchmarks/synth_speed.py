"""SynthLEVIR generation speed: N pairs of 256x256 (+ a few LEVIR-CD tiles) with W worker processes.

Usage: ``python benchmarks/synth_speed.py [--pairs 1000] [--workers 2] [--cd-tiles 24] [--size 256]``.
Prints one table (and writes it as JSON, ``--json``): what was generated, seconds, pairs per minute (CC pairs,
and 256x256 pair-equivalents counting each CD tile as (tile / size)^2 pairs), and the machine's CPU count.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import add_json_argument, report
from semcc.data.synthetic import SynthLEVIRConfig, generate_synth_levir


def _split(total: int, shares: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> dict[str, int]:
    val, test = round(total * shares[1]), round(total * shares[2])
    return {"train": total - val - test, "val": val, "test": test}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000, help="LEVIR-CC pairs in all (80/10/10 split)")
    parser.add_argument("--cd-tiles", type=int, default=24, help="LEVIR-CD tiles in all (16/4/4 by default)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--cd-scale", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    add_json_argument(parser, "synth_speed.json")
    args = parser.parse_args(argv)

    cd = _split(args.cd_tiles, (2 / 3, 1 / 6, 1 / 6))
    config = SynthLEVIRConfig(pairs=_split(args.pairs), cd_tiles=cd, size=args.size, cd_scale=args.cd_scale,
                              seed=args.seed, workers=args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = generate_synth_levir(Path(tmp) / "synthlevir", config)
        seconds = time.perf_counter() - start
    equivalents = args.pairs + args.cd_tiles * args.cd_scale**2
    tile = args.size * args.cd_scale
    rows = [
        ("generated", f"{args.pairs} CC/MCI pairs {args.size}x{args.size} + {args.cd_tiles} CD tiles {tile}x{tile}"),
        ("pair-equivalents", f"{equivalents} (a CD tile counts as {args.cd_scale ** 2} pairs)"),
        ("workers", str(args.workers)),
        ("cpu count", str(os.cpu_count())),
        ("seconds", f"{seconds:.1f}"),
        ("CC pairs / minute (whole data set timed)", f"{60 * args.pairs / seconds:.0f}"),
        ("pair-equivalents / minute", f"{60 * equivalents / seconds:.0f}"),
        ("changed share (CC train)", f"{summary['changed_share']['LEVIR-CC'].get('train', 0.0):.2f}"),
    ]
    report("SynthLEVIR generation speed", [{"what": k, "value": v} for k, v in rows],
           {"what": "SynthLEVIR speed", "value": "value"}, json_path=args.json)
    return {"seconds": seconds, "pairs_per_minute": 60 * args.pairs / seconds}


if __name__ == "__main__":
    main()
