"""Caption generation speed: batched greedy decoding with the KV cache vs the naive loop.

The naive loop is the authors' setting: one pair at a time, and at every new token the whole sequence
(prompt, visual tokens of Eq. 7-8, caption so far) goes through the LLM again (no cache). The batched path is
:meth:`ChangeCaptionHead.generate` (left padding, KV cache). Both are greedy, so the captions must be
identical; the script asserts it. Prints one table and writes it as JSON.

Usage: ``python benchmarks/generate.py [--pairs 64] [--batch-size 32] [--max-new-tokens 24] [--checkpoint CKPT]``
(a ``semcc fit`` checkpoint of configs/tiny.yaml gives realistic caption lengths; without one the ``mini`` preset
is built with random weights and runs to ``max_new_tokens``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from _common import add_json_argument, report
from semcc.data.text import build_word_tokenizer
from semcc.models import SemanticCC, build_semantic_cc
from semcc.models.cc_head import DEFAULT_INSTRUCTIONS


@torch.no_grad()
def naive_captions(model: SemanticCC, f1: torch.Tensor, f2: torch.Tensor, max_new_tokens: int) -> list[str]:
    """Greedy, one pair at a time, recomputing the whole sequence for every token (no KV cache)."""
    head = model.cc_head
    tok = head.tokenizer
    end = head.end_marker_ids
    out = []
    for i in range(f1.shape[0]):
        vis = head.visual_tokens(f1[i : i + 1], f2[i : i + 1])[0]
        before, after = head._prompt_ids(DEFAULT_INSTRUCTIONS[0])
        embeds = torch.cat([head._embed(before, vis.device), vis, head._embed(after, vis.device)])[None]
        ids: list[int] = []
        for _ in range(max_new_tokens):
            logits = head.llm(inputs_embeds=embeds, use_cache=False).logits[0, -1]
            nxt = int(logits.argmax())
            ids.append(nxt)
            if ids[-len(end) :] == end:
                ids = ids[: -len(end)]
                break
            embeds = torch.cat([embeds, head._embed([nxt], vis.device)[None]], dim=1)
        out.append(tok.decode(ids, skip_special_tokens=True).strip())
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--img-size", type=int, default=256)
    parser.add_argument("--checkpoint", type=Path, help="a semcc fit checkpoint of configs/tiny.yaml (optional)")
    add_json_argument(parser, "generate.json")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    if args.checkpoint is not None:
        from semcc.cli import CONFIG_DIR, SemanticCCCLI
        from semcc.data.datamodule import SemanticCCDataModule
        from semcc.tasks.module import SemanticCCTask

        cli = SemanticCCCLI(SemanticCCTask, SemanticCCDataModule, args=["--config", str(CONFIG_DIR / "tiny.yaml")],
                            run=False)
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)["state_dict"]
        cli.model.load_state_dict(state, strict=False)
        model = cli.model.model
        loader = cli.datamodule.dataloader("cc", "val", shuffle=False)
        a, b = [], []
        for batch in loader:
            a.append(batch["image_a"])
            b.append(batch["image_b"])
        image_a, image_b = torch.cat(a)[: args.pairs], torch.cat(b)[: args.pairs]
    else:
        words = ["two houses are built on the bareland at the bottom", "there is no difference"]
        tok = build_word_tokenizer(words, Path(tempfile.mkdtemp()) / "tok")
        model = build_semantic_cc("mini", img_size=args.img_size, tokenizer=tok)
        image_a = torch.randn(args.pairs, 3, args.img_size, args.img_size)
        image_b = torch.randn(args.pairs, 3, args.img_size, args.img_size)
    model.eval()
    with torch.no_grad():
        _, (f1, f2) = model.features(image_a, image_b)

    start = time.perf_counter()
    naive = naive_captions(model, f1, f2, args.max_new_tokens)
    naive_s = time.perf_counter() - start
    start = time.perf_counter()
    batched = []
    for i in range(0, len(naive), args.batch_size):
        batched += model.cc_head.generate(f1[i : i + args.batch_size], f2[i : i + args.batch_size],
                                          max_new_tokens=args.max_new_tokens)
    batched_s = time.perf_counter() - start
    same = sum(x == y for x, y in zip(naive, batched, strict=True))
    if same != len(naive):
        raise AssertionError(f"batched captions differ from the naive loop for {len(naive) - same} pairs")
    mean_words = sum(len(c.split()) for c in batched) / len(batched)
    rows = {
        "pairs": len(naive), "mean_words": round(mean_words, 1), "naive_s": round(naive_s, 2),
        "batched_s": round(batched_s, 2), "naive_captions_per_s": round(len(naive) / naive_s, 1),
        "batched_captions_per_s": round(len(naive) / batched_s, 1), "speedup": round(naive_s / batched_s, 1),
        "identical_captions": f"{same}/{len(naive)}",
    }
    table = [
        {"path": "naive loop (batch 1, no KV cache)", "pairs": len(naive), "seconds": round(naive_s, 2),
         "captions_per_s": round(len(naive) / naive_s, 1)},
        {"path": f"batched {args.batch_size} + KV cache", "pairs": len(naive), "seconds": round(batched_s, 2),
         "captions_per_s": round(len(naive) / batched_s, 1)},
    ]
    report(f"caption generation, tiny preset, {'trained' if args.checkpoint else 'random'} weights", table,
           {"path": "path", "pairs": "pairs", "seconds": "seconds", "captions_per_s": "captions/s"},
           json_path=args.json, dtype="float32", device="cpu",
           notes=[f"speed-up {naive_s / batched_s:.1f}x, identical captions {same}/{len(naive)}, "
                  f"mean {mean_words:.1f} words"], extra={"summary": rows})
    return rows


if __name__ == "__main__":
    main()
