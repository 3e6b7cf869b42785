"""Three speed choices measured side by side: SAM attention (SAM's code vs SDPA), the CD head's LayerNorms and resizes
(0.14's vs 0.15's) and decoded-image caching.

* ``attention``: forward + backward of the tiny :class:`~semcc.models.encoder.BiTemporalSAMEncoder` (paper
  Eq. 2-3; LoRA on qkv, BCSF) at 256 px, batch ``--batch-size`` pairs, ``attn_impl="eager"`` (SAM's
  matmul-softmax with the decomposed relative-position terms) against ``"sdpa"`` (the same arithmetic through
  ``F.scaled_dot_product_attention`` with the terms as bias), interleaved, best of ``--repeats``.
* ``cd_head``: forward + backward (BCE on a random mask) of tiny's :class:`~semcc.models.cd_head.ChangeDetectionHead`
  (paper Eq. 6) on ``--batch-size`` pairs of stride-16 maps, as semcc 0.14 ran it (SAM's ``LayerNorm2d``,
  ``F.interpolate``) against 0.15 (``ChannelLayerNorm``, ``resize_bilinear``), the same weights, interleaved, best of
  ``--repeats``; ``max abs diff`` is the largest difference of the two heads' logits.
* ``data``: one pass over the LEVIR-MCI training split (the joint source; LEVIR-CC reads the same images)
  with and without ``cache_images`` (the cached pass after a first, filling one), interleaved.

Usage: ``python benchmarks/components.py [--root ~/.cache/semcc/synthlevir-tiny/LEVIR-CC] [--threads 1]
[--parts attention cd_head data]``
(``semcc fit --config configs/tiny.yaml`` generates that root on first use).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import semcc.models.cd_head as cd_head_module
from _common import add_json_argument, report
from semcc.data.levir import LevirMCIDataset
from semcc.models._sam import LayerNorm2d
from semcc.models.cd_head import ChangeDetectionHead, ChannelLayerNorm
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


def _with_sam_layer_norms(head: ChangeDetectionHead) -> ChangeDetectionHead:
    """``head`` with each ``ChannelLayerNorm`` replaced by SAM's ``LayerNorm2d`` holding the same weights (0.14)."""
    for module in list(head.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, ChannelLayerNorm):
                sam = LayerNorm2d(child.weight.shape[0], child.eps)
                sam.load_state_dict(child.state_dict())
                setattr(module, name, sam)
    return head


def _interpolate(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def cd_head_rows(device: str, batch_size: int, repeats: int) -> list[dict]:
    heads = {}
    for version in ("0.14", "0.15"):
        torch.manual_seed(0)
        heads[version] = ChangeDetectionHead(in_channels=64, fpn_channels=32, patch_size=16).to(device)
    _with_sam_layer_norms(heads["0.14"])
    resize = {"0.14": _interpolate, "0.15": cd_head_module.resize_bilinear}
    g = torch.Generator().manual_seed(0)
    f1, f2 = (torch.randn(batch_size, 64, 16, 16, generator=g).to(device) for _ in range(2))
    target = (torch.rand(batch_size, 1, 256, 256, generator=g) > 0.9).float().to(device)
    best = {k: float("inf") for k in heads}
    logits = {}
    original = cd_head_module.resize_bilinear
    try:
        for round_ in range(repeats + 1):  # the first round warms up
            for version, head in heads.items():
                cd_head_module.resize_bilinear = resize[version]
                start = time.perf_counter()
                out = head(f1, f2)
                F.binary_cross_entropy_with_logits(out, target).backward()
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                if round_:
                    best[version] = min(best[version], time.perf_counter() - start)
                logits[version] = out.detach()
    finally:
        cd_head_module.resize_bilinear = original
    diff = float((logits["0.14"] - logits["0.15"]).abs().max())
    names = {"0.14": "SAM LayerNorm2d + F.interpolate (0.14)", "0.15": "ChannelLayerNorm + resize_bilinear (0.15)"}
    return [{"part": "CD head fwd+bwd", "variant": names[k], "pairs": batch_size, "seconds": round(v, 3),
             "max abs diff": f"{diff:.1e}"} for k, v in best.items()]


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
    parser.add_argument("--parts", nargs="+", choices=("attention", "cd_head", "data"),
                        default=["attention", "cd_head", "data"])
    add_json_argument(parser, "components.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    if "attention" in args.parts:
        rows += attention_rows(args.device, args.batch_size, args.repeats)
    if "cd_head" in args.parts:
        rows += cd_head_rows(args.device, args.batch_size, args.repeats)
    if "data" in args.parts and args.root.is_dir():
        rows += data_rows(args.root, args.repeats)
    report("SAM attention, the CD head, image caching", rows, ["part", "variant", "pairs", "seconds", "max abs diff"],
           json_path=args.json, dtype="float32", device=args.device)
    return rows


if __name__ == "__main__":
    main()
