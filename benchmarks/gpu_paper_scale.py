"""Paper-scale Semantic-CC on one GPU: training samples/s per phase, peak memory, MFU, caption generation.

Builds ``build_semantic_cc("paper")`` (SAM ViT-L at 256 px with LoRA and BCSF, 3 neck units, SimpleFPN 512,
BERT-base Q-Former with 32 queries, a random Llama-7B of Vicuna-7B's shape with LoRA; random weights of the
real shapes: no checkpoint is read) directly on the device in bfloat16 (``torch.device`` context + bf16
default dtype: no slow CPU initialisation of 7B parameters), then keeps the frozen base weights in bf16 and
turns the trainable ones (LoRA, BCSF, neck, heads, ``llama_proj``) to float32 master weights; every step runs
under ``torch.autocast(bfloat16)``. Text goes through a word-level tokenizer of the captions padded with filler
words to the LLM's 32000 ids (no Vicuna tokenizer is at hand: prompts are a few tokens shorter than Vicuna's
SentencePiece would make them). It measures, in one run (generation first, on the freshly built weights):

* training (the real ``SemanticCCTask`` step: ``set_phase`` freezing, the phase's loss of Eq. 9, backward,
  AdamW; see ``train_step.py``) for phases i ``cd``, ii ``cc``, iii ``joint`` at batch sizes 1, 4, 16 (a size
  that runs out of memory is reported as OOM and larger ones are skipped): median ms/step after warm-up,
  samples/s, peak GPU memory (``torch.cuda.max_memory_allocated``, weights included), and MFU. Batch 1 eager
  is the authors' setting (their code is hard-wired to batch 1; it builds on MiniGPT-4, which runs Vicuna in
  half precision under autocast, so half precision is "as the paper"; bf16 has fp16's tensor-core rate);
* caption generation, greedy: the authors' naive loop (batch 1, the whole sequence recomputed for every token,
  no KV cache; ``generate.naive_captions``), batch 1 with the KV cache, and batched with the KV cache (left
  padding, ``ChangeCaptionHead.generate``): captions/s, and how many captions agree with the naive loop;
  ``--check-fp32`` adds, at the end, the same agreement in float32 (no autocast, no TF32), where it must hold;
* ``--compile``: training rows with ``compile_parts=["encoder", "neck"]`` at the largest batch that fitted (their
  MFU uses the eager step's FLOP count: ``FlopCounterMode`` does not see all of a compiled graph's work).

MFU = achieved FLOP/s / peak dense bf16 FLOP/s of the card (H100 SXM / H200: 989 TFLOP/s, H100 PCIe: 756,
A100: 312; ``--peak-tflops`` overrides). FLOPs per sample are counted, not guessed: one step of each
(phase, batch) runs under ``torch.utils.flop_counter.FlopCounterMode``, which adds 2 x multiply-adds of every
matmul, convolution and attention that runs, forward and backward. For a part with P matmul parameters seeing
T tokens this is the textbook estimate: 2PT when it runs forward only (frozen, no gradient through it: the
encoder in phases ii and iii, the Q-Former when nothing before it trains), 4PT when a gradient passes through
its frozen weights (SAM ViT-L and Vicuna-7B under LoRA: input gradients, no weight gradients), 6PT when its
weights train (neck, heads); LoRA adds 6 r (d_in + d_out) T. Attention score FLOPs are in the count too.

Everything is bounded by ``--max-seconds`` (default 420: the whole script fits in about 8 minutes on an
H100 including start-up); rows that would start after the budget are reported as skipped.

GPU: ``python benchmarks/gpu_paper_scale.py`` (defaults: ``--preset paper --device cuda``).
CPU dry run of the same code on the mini preset:
``python benchmarks/gpu_paper_scale.py --preset mini --device cpu --batch-sizes 1 4 --gen-pairs 8 --gen-batch 8
--naive-pairs 2`` (mini with the paper's caption-branch freezing: frozen Q-Former, LoRA on the LLM).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import torch

from _common import add_json_argument, report
from generate import naive_captions
from semcc.models import PRESETS, build_semantic_cc
from semcc.tasks.evaluator import EvalConfig
from semcc.tasks.module import SemanticCCTask
from train_step import (
    PHASE_LABEL,
    PHASES,
    build_optimizer,
    captions_and_tokenizer,
    count_step_flops,
    make_batch,
    time_steps,
)

#: Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) by a substring of ``torch.cuda.get_device_name``.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("H800", 989.0), ("A100", 312.0), ("L40S", 362.0),
)


def peak_tflops(device: torch.device) -> tuple[float | None, str]:
    """The card's dense bf16 peak and its name (``None`` for a CPU or an unknown card)."""
    if device.type != "cuda":
        return None, "cpu"
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS:
        if key in name:
            return value, name
    return None, name


def padded_tokenizer(preset: str, captions: list[list[str]], tokenizer: str) -> str:
    """A word tokenizer whose vocabulary fills the preset's LLM vocabulary (``vocab_size``, 32000 for the paper:
    the caption words, then filler words), so every id the random LLM generates decodes to one word; the
    tokenizer directory unchanged for presets whose vocabulary is the tokenizer's (mini, tiny)."""
    size = PRESETS[preset]["cc_head"].get("llm", {}).get("vocab_size")
    if not size:
        return tokenizer
    from semcc.data.text import build_word_tokenizer

    words = [c for refs in captions for c in refs]
    base = len(build_word_tokenizer(words))
    out = tempfile.mkdtemp(prefix="semcc-tok-")
    tok = build_word_tokenizer(words, out, extra_words=[f"w{i}" for i in range(size - base)])
    if len(tok) != size:
        raise RuntimeError(f"padded tokenizer has {len(tok)} tokens, not {size}")
    return out


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """``torch.set_default_dtype`` for the block only."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def build_task(preset: str, tokenizer: str, device: torch.device, seed: int = 0) -> tuple[SemanticCCTask, float]:
    """The preset built on ``device`` in bf16, trainable parameters back in float32; returns (task, seconds).

    ``mini`` and ``tiny`` get the paper's caption-branch freezing (frozen Q-Former, LoRA on the LLM) so that a CPU
    dry run goes through the same dtype paths as the paper preset.
    """
    start = time.perf_counter()
    torch.manual_seed(seed)
    overrides = ({"cc_head": {"qformer": {"freeze": True}, "llm": {"finetune": "lora", "dtype": "bfloat16"}}}
                 if preset != "paper" else {})
    with device, default_dtype(torch.bfloat16):
        model = build_semantic_cc(preset, img_size=256, tokenizer=tokenizer, **overrides)
    task = SemanticCCTask(model, evaluation=EvalConfig(log_samples=0), seed=seed)
    for name, param in task.model.named_parameters():
        if name in task.trainable:
            param.data = param.data.float()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return task, time.perf_counter() - start


def _free(device: torch.device, optimizer: torch.optim.Optimizer | None = None) -> None:
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def training_rows(task: SemanticCCTask, args: argparse.Namespace, device: torch.device, captions: list[list[str]],
                  deadline: float, peak: float | None, label: str = "eager",
                  step_flops: dict[tuple[str, int], float] | None = None) -> list[dict[str, Any]]:
    """One row per (phase, batch size): step time, samples/s, peak memory, counted FLOPs and MFU.

    ``step_flops``: FLOPs per step by (phase label, batch) to use instead of this task's count (the compiled rows
    take the eager step's: ``FlopCounterMode`` does not see all of a compiled graph's work).
    """
    optimizer = build_optimizer(task)
    task.train()
    rows: list[dict[str, Any]] = []
    out_of_memory: set[str] = set()
    for bs in args.batch_sizes:  # batch-major: every phase gets its batch-1 row before the budget can run out
        for phase in args.phases:
            oom = phase in out_of_memory
            row: dict[str, Any] = {"phase": PHASE_LABEL[phase], "batch": bs, "setting": label}
            if bs == 1 and label == "eager":
                row["setting"] = "eager, batch 1 (authors' setting)"
            if oom or time.perf_counter() > deadline:
                rows.append({**row, "status": "skipped (a smaller batch ran out of memory)" if oom else
                             "skipped (--max-seconds)"})
                continue
            batch = make_batch(phase, bs, 256, captions, device)
            result: dict[str, Any] | None = None
            try:
                flops = count_step_flops(task, optimizer, batch, "bf16")  # also the first warm-up step
                flops = (step_flops or {}).get((row["phase"], bs), flops)
                result = time_steps(task, optimizer, batch, "bf16", warmup=args.warmup, steps=args.steps,
                                    max_seconds=max(1.0, deadline - time.perf_counter()))
            except torch.OutOfMemoryError:
                pass  # freed below, once the exception (and the frames it holds) is gone
            if result is None:
                out_of_memory.add(phase)
                del batch
                _free(device, optimizer)
                rows.append({**row, "status": "OOM"})
                print(f"  {row['phase']} batch {bs}: out of memory", flush=True)
                continue
            step_s = result["step_ms"] / 1000
            achieved = flops / step_s / 1e12
            rows.append({
                **row, "status": "ok", "step_ms": result["step_ms"], "samples_per_s": result["samples_per_s"],
                "peak_gib": round(result["peak_mib"] / 1024, 2), "gflop_per_sample": round(flops / bs / 1e9, 1),
                "tflops": round(achieved, 4), "mfu_pct": round(100 * achieved / peak, 1) if peak else None,
                "steps": result["steps"], "memory": result["memory"],
            })
            print(f"  {row['setting']} {row['phase']} batch {bs}: {result['step_ms']} ms/step, "
                  f"{result['samples_per_s']} samples/s, {rows[-1]['peak_gib']} GiB, {achieved:.1f} TFLOP/s",
                  flush=True)
            del batch
            _free(device, optimizer)
    return rows


@torch.no_grad()
def generation_rows(task: SemanticCCTask, args: argparse.Namespace, device: torch.device,
                    deadline: float, fp32: bool = False) -> list[dict[str, Any]]:
    """Captions/s: the naive loop (batch 1, no KV cache), batch 1 + KV cache, batched + KV cache.

    ``fp32``: the agreement check. The model is turned to float32 and run without autocast and without TF32, and
    only the naive loop and the batched path run, on ``--naive-pairs`` pairs. Under bf16 a random-init LLM's
    nearly uniform next-token scores let rounding pick another argmax on another path, so "same as naive" in
    the bf16 rows does not tell a cache bug from rounding; in float32 the two paths must agree.
    """
    model = task.model
    if fp32:
        model.float()
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=not fp32)
    model.eval()
    head = model.cc_head
    assert head is not None
    max_new = args.max_new_tokens or head.max_new_tokens
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, args.gen_pairs, 3, 256, 256, generator=g).to(device)
    with amp:
        f1, f2 = [], []
        for i in range(0, args.gen_pairs, args.gen_batch):
            _, (a, b) = model.features(images[0, i : i + args.gen_batch], images[1, i : i + args.gen_batch])
            f1.append(a)
            f2.append(b)
        f_1, f_2 = torch.cat(f1), torch.cat(f2)

    def timed(fn: Any) -> tuple[list[str], float]:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with amp:
            out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out, time.perf_counter() - start

    def batched(n: int, size: int) -> list[str]:
        caps: list[str] = []
        for i in range(0, n, size):
            caps += head.generate(f_1[i : min(n, i + size)], f_2[i : min(n, i + size)], max_new_tokens=max_new)
        return caps

    rows: list[dict[str, Any]] = []
    n_naive = min(args.naive_pairs, args.gen_pairs)
    timed(lambda: batched(min(2, args.gen_pairs), args.gen_batch))  # warm-up (kernels, allocator)
    plans = [
        ("naive loop, batch 1, no KV cache (authors' setting)", n_naive,
         lambda: naive_captions(model, f_1[:n_naive], f_2[:n_naive], max_new)),
        ("batch 1 + KV cache", n_naive, lambda: batched(n_naive, 1)),
        (f"batched {args.gen_batch} + KV cache", args.gen_pairs, lambda: batched(args.gen_pairs, args.gen_batch)),
    ]
    if fp32:
        plans = [(f"float32: {plans[0][0]}", n_naive, plans[0][2]),
                 (f"float32: batched {args.gen_batch} + KV cache", n_naive, lambda: batched(n_naive, args.gen_batch))]
    reference: list[str] | None = None
    for label, n, fn in plans:
        if time.perf_counter() > deadline:
            rows.append({"path": label, "pairs": n, "status": "skipped (--max-seconds)"})
            continue
        caps, seconds = timed(fn)
        if reference is None:
            reference = caps
        same = sum(x == y for x, y in zip(reference, caps[: len(reference)], strict=False))
        tok = head.tokenizer
        words = sum(len(tok(c, add_special_tokens=False).input_ids) for c in caps) / max(1, len(caps))
        rows.append({"path": label, "pairs": n, "status": "ok", "seconds": round(seconds, 2),
                     "captions_per_s": round(n / seconds, 2), "mean_tokens": round(words, 1),
                     "same_as_naive": f"{same}/{min(len(reference), len(caps))}"})
        print(f"  {label}: {n} captions in {seconds:.2f} s", flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=["mini", "tiny", "paper"], default="paper")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument("--warmup", type=int, default=1, help="warm-up steps after the FLOP-counting step")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--gen-pairs", type=int, default=64)
    parser.add_argument("--gen-batch", type=int, default=32)
    parser.add_argument("--naive-pairs", type=int, default=4, help="pairs captioned by the naive loop")
    parser.add_argument("--max-new-tokens", type=int, help="default: the preset's (paper 40)")
    parser.add_argument("--compile", action="store_true",
                        help="also train with compile_parts=['encoder', 'neck'] at the largest batch that fitted")
    parser.add_argument("--peak-tflops", type=float, help="peak dense bf16 TFLOP/s (default: from the card name)")
    parser.add_argument("--max-seconds", type=float, default=420.0, help="time budget of the measurements")
    parser.add_argument("--check-fp32", action="store_true",
                        help="last: the model in float32, naive loop vs batched + KV cache on --naive-pairs pairs")
    add_json_argument(parser, "gpu_paper_scale.json")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    deadline = start + args.max_seconds
    gen_deadline = start + 0.3 * args.max_seconds
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    peak, card = peak_tflops(device)
    peak = args.peak_tflops or peak
    captions, tokenizer = captions_and_tokenizer()
    tokenizer = padded_tokenizer(args.preset, captions, tokenizer)
    task, build_s = build_task(args.preset, tokenizer, device)
    n_params = sum(p.numel() for p in task.model.parameters())
    n_train = sum(p.numel() for n, p in task.model.named_parameters() if n in task.trainable)
    print(f"built {args.preset} on {device} ({card}) in {build_s:.1f} s: {n_params / 1e6:.1f} M parameters, "
          f"{n_train / 1e6:.1f} M trainable", flush=True)

    gen = generation_rows(task, args, device, gen_deadline)  # first: on the freshly initialised weights
    train = training_rows(task, args, device, captions, deadline, peak)
    if args.compile:
        fitted = [r["batch"] for r in train if r.get("status") == "ok"]
        if fitted:
            compiled = SemanticCCTask(task.model, evaluation=EvalConfig(log_samples=0),
                                      compile_parts=["encoder", "neck"])
            compiled.configure_model()
            sub = argparse.Namespace(**{**vars(args), "batch_sizes": [max(fitted)]})
            train += training_rows(compiled, sub, device, captions, deadline, peak,
                                   label="torch.compile encoder+neck",
                                   step_flops={(r["phase"], r["batch"]): r["gflop_per_sample"] * 1e9 * r["batch"]
                                               for r in train if r.get("status") == "ok"})

    if args.check_fp32:
        gen += generation_rows(task, args, device, float("inf"), fp32=True)

    dtype = "bf16 weights (trainable fp32) under bf16 autocast"
    notes = [
        f"{args.preset} preset: {n_params / 1e6:.1f} M parameters ({n_train / 1e6:.1f} M trainable), built in "
        f"{build_s:.1f} s on {device}",
        f"MFU against {peak} TFLOP/s dense bf16 ({card})" if peak else f"no MFU: no bf16 peak known for {card}",
        "FLOPs/sample: FlopCounterMode over one step (2 x multiply-adds of matmul/conv/attention, forward + the "
        "backward that runs) = 2PT frozen forward-only, 4PT frozen with gradient through, 6PT trained (P params, "
        "T tokens); compiled rows: the eager step's count at the same phase and batch",
        f"peak memory: {next((r['memory'] for r in train if r.get('memory')), '-')}",
        f"total {time.perf_counter() - start:.0f} s (budget --max-seconds {args.max_seconds:.0f})",
    ]
    train_cols = {"setting": "setting", "phase": "phase", "batch": "batch", "status": "status", "step_ms": "ms/step",
                  "samples_per_s": "samples/s", "peak_gib": "peak GiB", "gflop_per_sample": "GFLOP/sample",
                  "tflops": "TFLOP/s", "mfu_pct": "MFU %"}
    report(f"paper-scale training, {args.preset} preset, median of {args.steps} steps", train, train_cols,
           device=str(device), dtype=dtype)
    gen_cols = {"path": "generation (greedy)", "pairs": "pairs", "status": "status", "seconds": "seconds",
                "captions_per_s": "captions/s", "mean_tokens": "tokens/caption", "same_as_naive": "same as naive"}
    report(f"caption generation, {args.preset} preset, max {args.max_new_tokens or task.model.cc_head.max_new_tokens}"
           " new tokens", gen, gen_cols, json_path=args.json, device=str(device), dtype=dtype, notes=notes,
           extra={"training": train, "generation": gen, "args": {k: str(v) for k, v in vars(args).items()}})
    return {"training": train, "generation": gen}


if __name__ == "__main__":
    main()
