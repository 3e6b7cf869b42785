"""How fast does the caption branch (Eq. 7-8) learn change vs no change on fixed encoder features?

Encodes a SynthLEVIR (LEVIR-CC layout) split once with the ``mini`` preset's encoder (frozen, as in phase ii of
Sec. III-F), then trains only the caption head on the cached F_cc tiers and reports, after each budget of
steps, the validation share of pairs whose greedy caption is right about change vs no change, and the
seconds spent. A fast loop for tuning the caption branch; it prints one table and writes it as JSON.

Usage: ``python benchmarks/caption_head_probe.py --root ~/.cache/semcc/synthlevir-tiny/LEVIR-CC
--steps 500 1000 1500 [--lr 1e-3] [--batch-size 16] [--cc-head '{"enhancer": {"position": "before"}}']``
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from _common import add_json_argument, report
from semcc.data.datamodule import SemanticCCDataModule
from semcc.data.options import EvalDataConfig
from semcc.data.text import build_word_tokenizer, is_no_change
from semcc.models import SemanticCC, build_semantic_cc


def _encode(model: SemanticCC, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor, list[list[str]]]:
    f1, f2, refs = [], [], []
    with torch.no_grad():
        for batch in loader:
            f = model.encoder(batch["image_a"], batch["image_b"])
            f1.append(f.cc_1)
            f2.append(f.cc_2)
            refs += batch["captions"]
    return torch.cat(f1), torch.cat(f2), refs


def _change_accuracy(model: SemanticCC, f1: torch.Tensor, f2: torch.Tensor, refs: list[list[str]]) -> float:
    right = 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(refs), 32):
            preds = model.cc_head.generate(f1[i : i + 32], f2[i : i + 32], max_new_tokens=20)
            right += sum(is_no_change(p) == all(is_no_change(r) for r in ref) for p, ref in
                         zip(preds, refs[i : i + 32], strict=True))
    model.train()
    return right / len(refs)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="a LEVIR-CC layout folder (train and val)")
    parser.add_argument("--steps", type=int, nargs="+", default=[500, 1000, 1500])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--img-size", type=int, default=256)
    parser.add_argument("--cc-head", type=json.loads, default={}, help="JSON overrides of the mini caption head")
    parser.add_argument("--seed", type=int, default=0)
    add_json_argument(parser, "caption_head_probe.json")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    dm = SemanticCCDataModule(cc_root=str(args.root), eval_data=EvalDataConfig(batch_size=32))
    tok_dir = Path(tempfile.mkdtemp()) / "tok"
    build_word_tokenizer(dm.training_captions(), tok_dir)
    model = build_semantic_cc("mini", img_size=args.img_size, tokenizer=str(tok_dir), cc_head=args.cc_head)
    start = time.perf_counter()
    train = _encode(model, dm.dataloader("cc", "train", shuffle=False))
    val = _encode(model, dm.dataloader("cc", "val", shuffle=False))
    encode_s = time.perf_counter() - start
    optimizer = torch.optim.AdamW([p for p in model.cc_head.parameters() if p.requires_grad], lr=args.lr)
    rows, done, train_s = [], 0, 0.0
    for budget in sorted(args.steps):
        start = time.perf_counter()
        while done < budget:
            idx = torch.randint(0, len(train[2]), (args.batch_size,))
            captions = [random.choice(train[2][int(i)]) for i in idx]
            loss = model.cc_head(train[0][idx], train[1][idx], captions=captions).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
        train_s += time.perf_counter() - start
        rows.append({"steps": done, "samples": done * args.batch_size, "loss": round(loss.item(), 4),
                     "val_change_accuracy": round(_change_accuracy(model, *val), 4), "train_s": round(train_s, 1)})
    columns = {"steps": "steps", "samples": "samples", "loss": "loss",
               "val_change_accuracy": "val change/no-change right", "train_s": "train s"}
    report("caption head probe, mini caption head on frozen mini-encoder features", rows, columns,
           json_path=args.json, dtype="float32", device="cpu",
           notes=[f"encoding {len(train[2])}+{len(val[2])} pairs took {encode_s:.1f} s"],
           extra={"args": {k: str(v) for k, v in vars(args).items()}})
    return rows


if __name__ == "__main__":
    main()
