"""``semcc shape-files --out DIR``: random checkpoint files of the paper's pretrained parts, in their formats.

SAM ViT-L, the BLIP-2 Q-Former, MiniGPT-4's ``llama_proj`` and Vicuna-7B with its tokenizer, at the paper's
widths with few layers (:func:`semcc.paper_shape.write_paper_shape_checkpoints`), so that the paper config's
loaders run on a CPU. Prints each file's path and size.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["build_parser", "run"]


def build_parser() -> argparse.ArgumentParser:
    """The options of ``semcc shape-files``."""
    from semcc.paper_shape import SHAPES

    p = argparse.ArgumentParser(
        prog="semcc shape-files",
        description="Write random checkpoint files of the paper's pretrained parts (SAM ViT-L, BLIP-2 Q-Former, "
        "MiniGPT-4 llama_proj, Vicuna-7B + tokenizer) in their real formats, at the paper's widths with few "
        "layers, so that the paper config's loaders can run on a CPU.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--vit-depth", type=int, default=2, help="SAM ViT blocks (the last one global)")
    p.add_argument("--qformer-layers", type=int, default=2, help="Q-Former layers")
    p.add_argument("--llm-layers", type=int, default=2, help="Llama layers")
    p.add_argument("--widths", choices=sorted(SHAPES), default="paper", help="paper widths or small test widths")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="rewrite even if OUT holds a complete copy")
    return p


def run(args: argparse.Namespace) -> int:
    """Write (or reuse) the files in ``args.out`` and print their paths and sizes."""
    from semcc.paper_shape import MARKER, file_size, is_written, write_paper_shape_checkpoints

    start = time.perf_counter()
    shape = {"vit_depth": args.vit_depth, "qformer_layers": args.qformer_layers, "llm_layers": args.llm_layers,
             "widths": args.widths, "seed": args.seed}
    if not args.overwrite and is_written(args.out, **shape):
        print(f"already complete in {args.out} (same arguments): nothing written; --overwrite rewrites")
    paths = write_paper_shape_checkpoints(args.out, overwrite=args.overwrite, **shape)
    for part, path in paths.items():
        print(f"{part:<10} {path}  {file_size(path) / 2**20:.1f} MiB")
    print(f"{'summary':<10} {args.out / MARKER}")
    print(f"done in {time.perf_counter() - start:.1f}s")
    return 0
