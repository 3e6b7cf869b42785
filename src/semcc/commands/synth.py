"""``semcc synth --out DIR``: generate SynthLEVIR, bi-temporal scenes with captions and change masks.

Written in the real LEVIR-CC / LEVIR-MCI (``DIR/LEVIR-CC``) and LEVIR-CD (``DIR/LEVIR-CD``) layouts that the
readers of :mod:`semcc.data.levir` load (:func:`semcc.data.synthetic.generate_synth_levir`); a folder that
holds a complete copy made with the same arguments is reused. ``--preview`` also draws a grid of a few pairs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

__all__ = ["build_parser", "run"]


def build_parser() -> argparse.ArgumentParser:
    """The options of ``semcc synth`` (defaults: :class:`semcc.data.synthetic.SynthLEVIRConfig`'s)."""
    from semcc.data.synthetic import SynthLEVIRConfig

    d = SynthLEVIRConfig()
    p = argparse.ArgumentParser(
        prog="semcc synth",
        description="Generate SynthLEVIR: bi-temporal scenes with captions and change masks, written in the "
        "real LEVIR-CC / LEVIR-MCI (OUT/LEVIR-CC) and LEVIR-CD (OUT/LEVIR-CD) layouts.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    for split in ("train", "val", "test"):
        p.add_argument(f"--{split}", type=int, default=d.pairs.get(split, 0), help=f"{split} pairs (LEVIR-CC)")
    for split in ("train", "val", "test"):
        p.add_argument(
            f"--cd-{split}", type=int, default=d.cd_tiles.get(split, 0), help=f"{split} tiles (LEVIR-CD)"
        )
    p.add_argument("--size", type=int, default=d.size, help="pair size in pixels (square)")
    p.add_argument("--cd-scale", type=int, default=d.cd_scale, help="LEVIR-CD tile size = cd-scale * size")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--nuisance", type=float, default=d.nuisance, help="strength of non-change nuisances, 0-1+")
    p.add_argument("--no-change-ratio", type=float, default=d.no_change_ratio)
    p.add_argument("--workers", type=int, default=d.workers, help="processes (0: all cores)")
    p.add_argument("--overwrite", action="store_true", help="regenerate even if OUT holds a complete copy")
    p.add_argument("--preview", type=Path, help="also write a PNG grid of a few pairs, masks and captions")
    p.add_argument("--preview-n", type=int, default=6, help="pairs in the preview")
    return p


def run(args: argparse.Namespace) -> int:
    """Generate (or reuse) SynthLEVIR in ``args.out``, print its summary, draw the preview if asked."""
    from semcc.data.synthetic import SynthLEVIRConfig, generate_synth_levir, is_generated, write_preview

    config = SynthLEVIRConfig(
        pairs={k: getattr(args, k) for k in ("train", "val", "test") if getattr(args, k) > 0},
        cd_tiles={k: getattr(args, f"cd_{k}") for k in ("train", "val", "test") if getattr(args, f"cd_{k}") > 0},
        size=args.size,
        cd_scale=args.cd_scale,
        seed=args.seed,
        nuisance=args.nuisance,
        no_change_ratio=args.no_change_ratio,
        workers=args.workers,
    )
    start = time.perf_counter()
    if not args.overwrite and is_generated(args.out, config):
        print(f"SynthLEVIR already complete in {args.out} (same arguments); use --overwrite to regenerate")
        summary = json.loads((args.out / "synthlevir.json").read_text())
    else:
        summary = generate_synth_levir(args.out, config, overwrite=True)
    print(json.dumps(summary, indent=2, default=str))
    print(f"done in {time.perf_counter() - start:.1f}s: {args.out}")
    if args.preview:
        split = next(iter(config.pairs), "train")
        path = write_preview(args.out, args.preview, split=split, n=args.preview_n)
        print(f"preview: {path}")
    return 0
