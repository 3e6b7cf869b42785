"""The paper-scale path on the CPU: the paper config at real widths, 2 layers each, from files in the real formats.

Runs ``semcc fit --config configs/paper/levir.yaml --config configs/paper/shape_check.yaml`` (2-process DDP on
the CPU, the three phases of Sec. III-F, SAM ViT-L / BERT-base Q-Former / Llama-4096 widths loaded by the real
loaders from ``semcc shape-files`` output, written first when missing) through the same CLI classes, with a probe
callback on every rank, and prints:

* per phase: training steps, median seconds per step (each rank's median, the slower rank shown), samples/s over
  both ranks;
* per rank: peak RSS after the model was built from the files (what loading costs), peak RSS at the end of fit,
  and the bytes of the model's weights (what a copy of the model costs);
* the checkpoint: file size, ``trainer.save_checkpoint`` time (all ranks take part, rank 0 writes), trainable
  parameters, and the time of one frozen-weight fingerprint (now once per process; before, every rank paid it at
  every save);
* why the run is float32 on this machine: bf16 and float32 matrix products of one Vicuna MLP projection
  (4096 x 11008, 80 tokens), forward ``x @ W.T`` and the input gradient ``g @ W`` of every Linear backward.

``python benchmarks/paper_shape.py [--files DIR] [--out DIR] [--precision bf16-mixed --llm-dtype bfloat16]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from _common import add_json_argument, report
from semcc.cli import CONFIG_DIR, SemanticCCCLI
from semcc.data.datamodule import SemanticCCDataModule
from semcc.paper_shape import write_paper_shape_checkpoints
from semcc.tasks.identity import hash_frozen
from semcc.tasks.module import SemanticCCTask

DEFAULT_FILES = Path("~/.cache/semcc/paper-shape").expanduser()


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (``ru_maxrss``, KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class Probe(L.Callback):
    """Per-rank measurements: step times by phase, peak RSS after loading and at the end, weight bytes."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.steps: dict[str, list[float]] = {}
        self._start = 0.0
        self.loaded_rss = peak_rss_mib()  # built from the files before the trainer runs (instantiate_classes)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.steps.setdefault(batch["phase"], []).append(time.perf_counter() - self._start)

    def write(self, trainer: L.Trainer, task: SemanticCCTask) -> None:
        by_dtype: dict[str, int] = {}
        for p in task.model.parameters():
            by_dtype[str(p.dtype).removeprefix("torch.")] = by_dtype.get(str(p.dtype).removeprefix("torch."), 0) + (
                p.numel() * p.element_size())
        record = {"rank": trainer.global_rank, "steps": self.steps, "loaded_rss_mib": self.loaded_rss,
                  "end_rss_mib": peak_rss_mib(), "weights_mib": {k: round(v / 2**20, 1) for k, v in by_dtype.items()}}
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def gemm_rows(tokens: int = 80, d_in: int = 4096, d_out: int = 11008) -> list[dict[str, Any]]:
    """Seconds and GFLOP/s of ``x @ W.T`` and ``g @ W`` in float32 and bfloat16 (one Vicuna MLP projection),
    each timed once after a warm-up on a tenth of ``W`` (the slow bf16 product takes tens of seconds)."""
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        w = torch.randn(d_out, d_in, dtype=dtype)
        x, g = torch.randn(tokens, d_in, dtype=dtype), torch.randn(tokens, d_out, dtype=dtype)
        small, g_small = w[: d_out // 10], g[:, : d_out // 10]
        for label, (a, b), (a_warm, b_warm) in (("forward x @ W.T", (x, w.t()), (x, small.t())),
                                                ("input gradient g @ W", (g, w), (g_small, small))):
            a_warm @ b_warm
            start = time.perf_counter()
            a @ b
            seconds = time.perf_counter() - start
            rows.append({"product": label, "dtype": str(dtype).removeprefix("torch."), "seconds": round(seconds, 3),
                         "gflops": round(2 * tokens * d_in * d_out / seconds / 1e9, 2)})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=Path, default=DEFAULT_FILES, help="semcc shape-files folder")
    parser.add_argument("--out", type=Path, default=Path("runs/paper-shape-bench"))
    parser.add_argument("--precision", default=None, help="e.g. bf16-mixed (default: shape_check.yaml's)")
    parser.add_argument("--llm-dtype", default=None, help="e.g. bfloat16 (default: shape_check.yaml's)")
    parser.add_argument("--skip-gemm", action="store_true")
    add_json_argument(parser, "paper_shape.json")
    args = parser.parse_args(argv)
    launcher = "LOCAL_RANK" not in os.environ  # Lightning's DDP launcher re-runs this script for rank 1
    gemm: list[dict[str, Any]] = []
    if launcher:
        write_paper_shape_checkpoints(args.files)
        if not args.skip_gemm:
            torch.set_num_threads(1)
            gemm = gemm_rows()
            torch.set_num_threads(os.cpu_count() or 1)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cli_args = ["--config", str(CONFIG_DIR / "paper" / "levir.yaml"), "--config",
                str(CONFIG_DIR / "paper" / "shape_check.yaml"), f"--trainer.default_root_dir={out}",
                f"--trainer.logger.init_args.save_dir={out}", "--trainer.enable_progress_bar=false"]
    head = "--model.model.init_args.cc_head.init_args"
    enc = "--model.model.init_args.encoder.init_args"
    cli_args += [f"{enc}.checkpoint={args.files / 'sam_vit_l.pth'}", f"{head}.llm.path={args.files / 'vicuna-7b'}",
                 f"{head}.qformer.checkpoint={args.files / 'blip2_pretrained_flant5xxl.pth'}",
                 f"{head}.llama_proj_checkpoint={args.files / 'pretrained_minigpt4.pth'}"]
    if args.precision:
        cli_args.append(f"--trainer.precision={args.precision}")
    if args.llm_dtype:
        cli_args.append(f"{head}.llm.dtype={args.llm_dtype}")
    # The CLI reads `cli_args` only; Lightning's DDP launcher starts rank 1 later by re-running this script with
    # its own arguments (sys.argv, restored by then).
    saved_argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        cli = SemanticCCCLI(SemanticCCTask, SemanticCCDataModule, args=cli_args, run=False,
                            save_config_kwargs={"overwrite": True})
    finally:
        sys.argv = saved_argv
    probe = Probe(out)
    trainer, task = cli.trainer, cli.model
    trainer.callbacks.append(probe)
    trainer.fit(task, datamodule=cli.datamodule)
    probe.write(trainer, task)
    ckpt = out / "bench.ckpt"
    trainer.strategy.barrier()
    start = time.perf_counter()
    trainer.save_checkpoint(ckpt)
    save_s = time.perf_counter() - start
    start = time.perf_counter()
    hash_frozen(task.model, task.trainable)
    hash_s = time.perf_counter() - start
    trainer.strategy.barrier()
    if not trainer.is_global_zero:
        return
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(trainer.world_size)]
    world, batch = trainer.world_size, cli.datamodule.batch_size
    phase_rows = []
    for phase in ("cd", "cc", "joint"):
        medians = [statistics.median(r["steps"][phase]) for r in ranks if r["steps"].get(phase)]
        if medians:
            slow = max(medians)
            phase_rows.append({"phase": phase, "steps": len(ranks[0]["steps"][phase]), "s_per_step": round(slow, 2),
                               "samples_per_s": round(world * batch / slow, 3)})
    rank_rows = [{"rank": r["rank"], "loaded": r["loaded_rss_mib"], "end": r["end_rss_mib"],
                  "weights": ", ".join(f"{k} {v} MiB" for k, v in r["weights_mib"].items())} for r in ranks]
    n_train = sum(p.numel() for n, p in task.model.named_parameters() if n in task.trainable)
    ckpt_rows = [{"file_mib": round(ckpt.stat().st_size / 2**20, 1), "save_s": round(save_s, 2),
                  "trainable_m": round(n_train / 1e6, 1), "fingerprint_s": round(hash_s, 2)}]
    precision = str(trainer.precision)
    device = f"cpu, {world} DDP processes (gloo)"
    report(f"paper shape (2 layers each, real widths), batch {batch} per rank: training by phase", phase_rows,
           {"phase": "phase", "steps": "steps per rank", "s_per_step": "s/step (median, slower rank)",
            "samples_per_s": "samples/s (all ranks)"}, device=device, dtype=precision)
    report("peak RSS per rank (MiB)", rank_rows, {"rank": "rank", "loaded": "after building from the files",
                                                  "end": "end of fit", "weights": "model weights"},
           device=device, dtype=precision)
    notes = [f"checkpoint: trainer.save_checkpoint of the trained model ({ckpt}); it holds the trainable weights "
             "and their AdamW moments; fingerprint: one SHA-256 of the frozen weights (computed once per process)"]
    tables = {"training": phase_rows, "ranks": rank_rows, "checkpoint": ckpt_rows}
    if gemm:
        report("matrix products of one Vicuna MLP projection (80 tokens x 4096 -> 11008), 1 thread", gemm,
               {"product": "product", "dtype": "dtype", "seconds": "seconds", "gflops": "GFLOP/s"}, dtype="1 thread")
        tables["gemm"] = gemm
    report("checkpoint", ckpt_rows, {"file_mib": "file MiB", "save_s": "save s", "trainable_m": "trainable M params",
                                     "fingerprint_s": "fingerprint s (once per process)"},
           json_path=args.json, device=device, dtype=precision, notes=notes, extra=tables)


if __name__ == "__main__":
    main()
