"""Training-step speed and memory per phase of Sec. III-F (i ``cd``, ii ``cc``, iii ``joint``).

For a preset (``mini``, ``tiny`` or ``paper``), batch sizes, precisions (``32``: float32; ``bf16``: float32 weights
under ``torch.autocast(bfloat16)``, as Lightning's ``bf16-mixed``) and, with ``--compile``, eager vs
``SemanticCCTask(compile_parts=["encoder", "neck"])`` (``torch.compile`` of the encoder and the neck): one
training step is the real task's step: ``SemanticCCTask.set_phase`` freezes what the phase keeps frozen,
``SemanticCCTask._losses`` computes the loss of Eq. 9 that the phase trains, then backward and an AdamW step
(one optimizer over every trainable parameter, as ``configure_optimizers`` builds it; a parameter frozen in the
phase has no gradient, so AdamW skips it). Batches are random images of the :class:`ChangeBatch` structure the
data module yields (``cd``: masks, no captions; ``cc``: five reference captions, no mask; ``joint``: both),
with captions drawn from SynthLEVIR when it is in ``~/.cache/semcc/synthlevir-tiny`` and made on the device
beforehand (no data loading is timed). Warm-up steps (compilation included) are excluded from the timing and
reported apart. Peak memory: CUDA ``max_memory_allocated`` (weights included), CPU peak RSS growth over the
measured steps (see ``_common.PeakMemory``).

Usage (the README's table): ``python benchmarks/train_step.py --preset mini --batch-sizes 1 8 --precision 32 bf16``
and ``python benchmarks/train_step.py --preset mini --batch-sizes 8 --precision 32 --compile``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from _common import PeakMemory, add_json_argument, mib, report
from semcc.models import build_semantic_cc
from semcc.tasks.evaluator import EvalConfig
from semcc.tasks.module import SemanticCCTask

PHASES: tuple[str, ...] = ("cd", "cc", "joint")
PHASE_LABEL = {"cd": "i cd", "cc": "ii cc", "joint": "iii joint"}
SYNTH_ROOT = Path("~/.cache/semcc/synthlevir-tiny").expanduser()
FALLBACK_CAPTIONS = (
    "the scene is the same as before",
    "there is no difference",
    "two houses are built on the bareland at the bottom",
    "a road is built along the trees on the left",
    "many buildings appear in the top right corner of the scene",
)


def captions_and_tokenizer(root: Path = SYNTH_ROOT) -> tuple[list[list[str]], str]:
    """Reference captions (five per pair) and a word-tokenizer directory: SynthLEVIR's under ``root`` when
    it has been generated, else a tokenizer built from a few fixed captions in a temporary directory."""
    captions: list[list[str]] = []
    path = root / "LEVIR-CC" / "LevirCCcaptions.json"
    if path.is_file():
        images = json.loads(path.read_text())["images"]
        captions = [[" ".join(s["tokens"]) for s in e["sentences"]] for e in images if e["split"] == "train"]
    if not captions:
        captions = [[c] * 5 for c in FALLBACK_CAPTIONS]
    tok_dir = root / "tokenizer"
    if not (tok_dir / "tokenizer.json").is_file():
        from semcc.data.text import build_word_tokenizer

        tok_dir = Path(tempfile.mkdtemp(prefix="semcc-tok-"))
        build_word_tokenizer([c for refs in captions for c in refs], tok_dir)
    return captions, str(tok_dir)


def make_batch(
    phase: str, batch_size: int, img_size: int, captions: Sequence[list[str]], device: torch.device, seed: int = 0
) -> dict[str, Any]:
    """A random :class:`~semcc.data.batch.ChangeBatch` for ``phase`` (``cd``, ``cc`` or ``joint``)."""
    g = torch.Generator().manual_seed(seed)
    source = {"cd": "cd", "cc": "cc", "joint": "joint"}[phase]
    rng = random.Random(seed)
    refs = [list(rng.choice(captions)) for _ in range(batch_size)] if phase != "cd" else [[] for _ in range(batch_size)]
    batch: dict[str, Any] = {
        "image_a": torch.randn(batch_size, 3, img_size, img_size, generator=g).to(device),
        "image_b": torch.randn(batch_size, 3, img_size, img_size, generator=g).to(device),
        "captions": refs,
        "name": [f"{phase}_{i:06d}.png" for i in range(batch_size)],
        "changed": torch.ones(batch_size, dtype=torch.bool, device=device),
        "source": source,
        "phase": phase,
    }
    if phase != "cc":
        batch["mask"] = (torch.rand(batch_size, img_size, img_size, generator=g) > 0.9).long().to(device)
    return batch


def build_optimizer(task: SemanticCCTask, lr: float = 1e-4, weight_decay: float = 0.01) -> torch.optim.AdamW:
    """AdamW over every parameter that trains in some phase, grouped as ``configure_optimizers`` does."""
    params = [p for n, p in task.model.named_parameters() if n in task.trainable]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to bfloat16 for ``bf16``; nothing for ``32``."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(
    task: SemanticCCTask, optimizer: torch.optim.Optimizer, batch: dict[str, Any], precision: str
) -> float:
    """One training step of ``batch["phase"]``: set_phase, the phase's loss, backward, AdamW; returns the loss."""
    phase = batch["phase"]
    task.set_phase(phase)
    with autocast(batch["image_a"].device, precision):
        loss = task.losses(batch, phase)["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def count_step_flops(task: SemanticCCTask, optimizer: torch.optim.Optimizer, batch: dict[str, Any],
                     precision: str) -> int:
    """FLOPs of one training step as ``torch.utils.flop_counter.FlopCounterMode`` counts them (matmul, conv,
    attention; forward plus the backward autograd actually runs: no weight gradient for frozen weights, no
    backward at all through a part run without autograd)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        train_step(task, optimizer, batch, precision)
    return int(counter.get_total_flops())


def time_steps(
    task: SemanticCCTask,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, Any],
    precision: str,
    *,
    warmup: int,
    steps: int,
    max_seconds: float | None = None,
) -> dict[str, Any]:
    """Warm-up steps (timed apart), then ``steps`` timed steps (fewer if ``max_seconds`` runs out); returns
    the median seconds per step, samples/s, the warm-up seconds and the peak memory of warm-up + steps
    (``_common.PeakMemory``, reset before the warm-up: optimizer state and gradients count)."""
    device = batch["image_a"].device
    peak = PeakMemory(device)
    start = time.perf_counter()
    for _ in range(warmup):
        train_step(task, optimizer, batch, precision)
    _sync(device)
    warmup_s = time.perf_counter() - start
    times: list[float] = []
    loss = float("nan")
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = train_step(task, optimizer, batch, precision)
        _sync(device)
        times.append(time.perf_counter() - t0)
        if max_seconds is not None and sum(times) > max_seconds:
            break
    step_s = sorted(times)[len(times) // 2]  # median: robust to a neighbour taking the cores for a moment
    bs = batch["image_a"].shape[0]
    return {"step_ms": round(1000 * step_s, 1), "samples_per_s": round(bs / step_s, 2), "steps": len(times),
            "peak_mib": mib(peak.peak_bytes()), "memory": peak.method, "warmup_s": round(warmup_s, 2),
            "loss": round(loss, 4)}


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


def build_task(preset: str, tokenizer: str, img_size: int, compile_parts: Sequence[str] = (), seed: int = 0,
               **overrides: Any) -> SemanticCCTask:
    """The preset's model in a :class:`SemanticCCTask` (``configure_model`` run: compiled parts wrapped)."""
    with _seeded(seed):
        model = build_semantic_cc(preset, img_size=img_size, tokenizer=tokenizer, **overrides)
    task = SemanticCCTask(model, evaluation=EvalConfig(log_samples=0), compile_parts=list(compile_parts), seed=seed)
    task.configure_model()
    return task


def measure(preset: str, compiled: bool, precision: str, batch_size: int, phase: str, *, img_size: int,
            warmup: int, steps: int, device: torch.device, task: SemanticCCTask | None = None,
            optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """One row: ``phase`` at ``batch_size`` and ``precision`` (builds the task unless one is given)."""
    captions, tokenizer = captions_and_tokenizer()
    if task is None:
        with device:
            task = build_task(preset, tokenizer, img_size, ("encoder", "neck") if compiled else ())
        task.train()
    optimizer = optimizer or build_optimizer(task)
    batch = make_batch(phase, batch_size, img_size, captions, device)
    result = time_steps(task, optimizer, batch, precision, warmup=warmup, steps=steps)
    return {"preset": preset, "precision": "bf16-autocast" if precision == "bf16" else "fp32",
            "compile": "encoder+neck" if compiled else "eager", "phase": PHASE_LABEL[phase], "batch": batch_size,
            **result}


def _isolated(config: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """:func:`measure` in a fresh process (CPU: its peak RSS growth is this configuration's alone)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, __file__, "--worker", json.dumps(config), "--json", out.name, "--device", args.device,
               "--img-size", str(args.img_size), "--warmup", str(args.warmup), "--steps", str(args.steps),
               "--threads", str(torch.get_num_threads())]
        subprocess.run(cmd, check=True)
        return json.loads(Path(out.name).read_text())


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=["mini", "tiny", "paper"], default="mini")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--precision", nargs="+", choices=["32", "bf16"], default=["32", "bf16"])
    parser.add_argument("--compile", action="store_true",
                        help="also measure torch.compile of the encoder and neck (compile_parts), beside eager")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument("--img-size", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                        help="one process per row (default on the CPU, where peak RSS cannot be reset otherwise)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    add_json_argument(parser, "train_step.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.worker:
        row = measure(**json.loads(args.worker), img_size=args.img_size, warmup=args.warmup, steps=args.steps,
                      device=device)
        args.json.write_text(json.dumps(row))
        return [row]
    isolate = device.type == "cpu" if args.isolate is None else args.isolate
    load = f"load average at start {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    rows: list[dict] = []
    for compiled in ([False, True] if args.compile else [False]):
        task = optimizer = None
        for precision in args.precision:
            for bs in args.batch_sizes:
                for phase in args.phases:
                    config = {"preset": args.preset, "compiled": compiled, "precision": precision,
                              "batch_size": bs, "phase": phase}
                    if isolate:
                        row = _isolated(config, args)
                    else:
                        if task is None:
                            with device:
                                task = build_task(args.preset, captions_and_tokenizer()[1], args.img_size,
                                                  ("encoder", "neck") if compiled else ())
                            task.train()
                            optimizer = build_optimizer(task)
                        row = measure(**config, img_size=args.img_size, warmup=args.warmup, steps=args.steps,
                                      device=device, task=task, optimizer=optimizer)
                    rows.append(row)
                    print(f"  {row['compile']} {row['precision']} batch {bs} {row['phase']}: {row['step_ms']} ms "
                          f"({row['samples_per_s']} samples/s), warm-up {row['warmup_s']} s", flush=True)
    columns = {"precision": "precision", "compile": "compile", "phase": "phase", "batch": "batch",
               "step_ms": "ms/step", "samples_per_s": "samples/s", "peak_mib": "peak MiB",
               "warmup_s": f"warm-up s ({args.warmup} steps)"}
    memory = rows[0]["memory"] if rows else ""
    report(f"training step, {args.preset} preset, median of {args.steps} steps after {args.warmup} warm-up",
           rows, columns, json_path=args.json, device=str(device),
           dtype="/".join("bf16 autocast" if p == "bf16" else "float32" for p in args.precision),
           notes=[f"peak memory: {memory}{', one process per row' if isolate else ''}; {load}"])
    return rows


if __name__ == "__main__":
    main()
