"""Two speed choices measured side by side: SAM attention (SAM's code vs SDPA) and decoded-image caching.

* ``attention``: forward + backward of the tiny :class:`~semcc.models.encoder.BiTemporalSAMEncoder` (paper
  Eq. 2-3; LoRA on qkv, BCSF) at 256 px, batch ``--batch-size`` pairs, ``attn_impl="eager"`` (SAM's
  matmul-softmax with the decomposed relative-position terms) against ``"sdpa"`` (the same arithmetic through
  ``F.scaled_dot_product_attention`` with the terms as bias), interleaved, best of ``--repeats``.
* ``data``: one pass over the LEVIR-MCI training split (the joint source; LEVIR-CC reads the same images)
  with and without ``cache_images`` (the cached pass after a first, filling one), interleaved.

Usage: ``python benchmarks/components.py [--root ~/.cache/semcc/synthlevir-tiny/LEVIR-CC] [--threads 1]``
(``semcc fit --config configs/tiny.yaml`` generates that root on first use).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from _common import add_json_argument, report
from semcc.data.levir import LevirMCIDataset
from semcc.models.encoder import BiTemporalSAMEncoder

TINY = {"img_size": 256, "vit": {"patch_size": 16, "embed_dim": 64, "depth": 4, "num_heads": 4, "window_size": 4,
                                 "global_attn_indexes": (1, 3), "out_chans": 64}, "lora": {"r": 8}}


def attention_rows(device: str, batch_size: int, repeats: int) -> list[dict]:
    models = {}
    for impl in ("eager", "sdpa"):
        torch.manual_seed(0)
        models[impl] = BiTemporalSAMEncoder(**TINY, attn_impl=impl).to(device)
    x1 = torch.randn(batch_size, 3, 256, 256, device=device)
    x2 = torch.randn(batch_size, 3, 256, 256, device=device)
    best = {k: float("inf") for k in models}
    for _ in range(repeats + 1):  # the first round warms up
        for impl, model in models.items():
            start = time.perf_counter()
            f = model(x1, x2)
            (f.cc_1.float().sum() + f.cd_1.float().sum()).backward()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            best[impl] = min(best[impl], time.perf_counter() - start) if _ else best[impl]
    return [{"part": "encoder fwd+bwd", "variant": f"attn_impl={k}", "pairs": batch_size, "seconds": round(v, 3)}
            for k, v in best.items()]


def data_rows(root: Path, repeats: int) -> list[dict]:
    sets = {c: LevirMCIDataset(root, "train", mask_mode="building", cache_images=c) for c in (False, True)}
    for i in range(len(sets[True])):  # fill the cache
        sets[True][i]
    best = {c: float("inf") for c in sets}
    for _ in range(repeats):
        for cache, ds in sets.items():
            start = time.perf_counter()
            for i in range(len(ds)):
                ds[i]
            best[cache] = min(best[cache], time.perf_counter() - start)
    n = len(sets[True])
    return [{"part": "one pass over LEVIR-MCI train", "variant": f"cache_images={c}", "pairs": n,
             "seconds": round(v, 3)} for c, v in best.items()]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("~/.cache/semcc/synthlevir-tiny/LEVIR-CC").expanduser())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    add_json_argument(parser, "components.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = attention_rows(args.device, args.batch_size, args.repeats)
    if args.root.is_dir():
        rows += data_rows(args.root, args.repeats)
    report("SAM attention and image caching", rows, ["part", "variant", "pairs", "seconds"], json_path=args.json,
           dtype="float32", device=args.device)
    return rows


if __name__ == "__main__":
    main()
