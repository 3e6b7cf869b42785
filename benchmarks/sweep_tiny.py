"""Variants of the embedded default, several seeds, several fits at a time: one table of their last validations.

Each run is ``semcc fit --config configs/tiny.yaml --seed_everything SEED --trainer.enable_progress_bar false``
plus a variant's overrides (``python benchmarks/fit_tiny.py``'s fit, with its phase timer), logged under
``--out/NAME_sSEED``; ``--jobs N`` runs N at a time, each with ``--threads`` intra-op threads (default: the cores
divided by the jobs). ``--accelerator gpu`` adds ``--trainer.accelerator gpu --trainer.devices 1`` to every run, so
that one GPU takes several tiny fits side by side (tiny's float32, not bf16: the ranking of variants, not the CPU's
digits; a variant worth keeping is checked again on the CPU). Runs go seed by seed (every variant's first seed,
then the second ...), so that a sweep cut short still compares every variant; the tables list them in that order.

The variants come from ``--variant NAME=OVERRIDES`` (repeatable; OVERRIDES split like a shell command line,
``base=`` for tiny itself) or ``--variants FILE`` (YAML: ``name: overrides``); ``--extra OVERRIDES`` go to every run
before the variant's (a short check: ``--extra "--trainer.max_epochs 1 --trainer.limit_train_batches 5
--trainer.check_val_every_n_epoch 1 --trainer.limit_val_batches 1"``). After each run the table so far is
written to ``--out/sweep.json`` and ``--out/sweep.md``; ``OUT/NAME_sSEED/result.json`` marks a finished run, which a
second call skips (a run folder without it is deleted and run again). The checkpoints are deleted after each run
unless ``--keep-ckpt``. The table: per run the wall time, phase i's
seconds per batch, CD F1 (precision / recall), the share of pairs right about change, BLEU-4 / CIDEr, changed-pair
CIDEr and the semantic scores; then per variant the mean and range over its seeds.

Example (the sweep of ``benchmarks/README.md``, "Faster masks per step: a sweep on one GPU"):
``python benchmarks/sweep_tiny.py --variants benchmarks/sweeps/cd_per_step.yaml --seeds 0 1 2 --jobs 16
--accelerator gpu --out sweep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import yaml

from _common import machine_line, markdown_table, save_run_result
from fit_tiny import last_validation, run_fit, time_table

#: (column, metrics.csv key) of the per-run table, each the last validation's value.
SCORES: tuple[tuple[str, str], ...] = (
    ("CD F1", "val/cd_f1"), ("P", "val/cd_precision"), ("R", "val/cd_recall"),
    ("right", "val/cc_change_accuracy"), ("BLEU-4", "val/cc_bleu_4"), ("CIDEr", "val/cc_cider"),
    ("changed CIDEr", "val/cc_change_cider"), ("type F1", "val/sem_type_f1_macro"),
    ("count", "val/sem_count_accuracy"), ("location", "val/sem_location_accuracy"),
    ("hallucination", "val/sem_hallucination_rate"),
)


def parse_variants(items: list[str], path: Path | None) -> dict[str, list[str]]:
    """``NAME=OVERRIDES`` items and a YAML file's ``name: overrides`` as {name: argument list}, in order."""
    variants: dict[str, list[str]] = {}
    raw: list[tuple[str, Any, str]] = []
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise SystemExit(f"--variants {path}: cannot read it as YAML ({err})") from err
        if not isinstance(loaded, dict) or not loaded:
            raise SystemExit(f"--variants {path}: expected a mapping of variant name to overrides")
        raw += [(str(name), value, str(path)) for name, value in loaded.items()]
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--variant {item!r}: expected NAME=OVERRIDES (base= for no overrides)")
        raw.append((name, value, "--variant"))
    for name, value, where in raw:
        if name in variants:
            raise SystemExit(f"{where}: variant {name!r} given twice")
        if not all(c.isalnum() or c in "._-" for c in name):
            raise SystemExit(f"{where}: variant name {name!r}: use letters, digits, '.', '_' and '-' only")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise SystemExit(f"{where}: variant {name!r}: overrides must be one string, got {type(value).__name__}")
        variants[name] = shlex.split(value)
    if not variants:
        raise SystemExit("no variants: give --variant NAME=OVERRIDES or --variants FILE")
    return variants


def run_one(name: str, overrides: list[str], seed: int, out: Path, accelerator: str,
            common: list[str] = (), keep_ckpt: bool = False) -> dict[str, Any]:
    """One fit; returns its result (``status`` done, skipped or failed)."""
    run_dir = out / f"{name}_s{seed}"
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return {**json.loads(result_path.read_text()), "status": "skipped"}
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    extra = ["--seed_everything", str(seed), "--trainer.enable_progress_bar", "false"]
    if accelerator != "cpu":
        extra += ["--trainer.accelerator", accelerator, "--trainer.devices", "1"]
    extra += [*common, *overrides]
    base = {"variant": name, "seed": seed, "overrides": overrides, "log": str(run_dir / "fit.log")}
    launched = time.time()
    try:
        wall, metrics_csv, launched = run_fit(extra, run_dir, fresh=False, log=run_dir / "fit.log")
    except (subprocess.CalledProcessError, FileNotFoundError) as err:
        return {**base, "status": "failed", "why": str(err), "wall_s": time.time() - launched}
    validation = last_validation(metrics_csv)
    if not any(k.startswith("val/") for k in validation):
        return {**base, "status": "failed", "why": "no validation in metrics.csv", "wall_s": wall}
    times = time_table(json.loads((run_dir / "phase_times.json").read_text()), launched, launched + wall)
    phase_i = next((r.get("s_per_batch") for r in times if r["part"].startswith("phase i ")), None)
    result = {**base, "status": "done", "wall_s": round(wall, 1), "phase_i_s_per_batch": phase_i,
              "validation": validation}
    save_run_result(run_dir, result_path, result, keep_ckpt)
    return result


def _fmt(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if percent else f"{value:.3f}"


def run_row(result: dict[str, Any]) -> dict[str, Any]:
    """One result as a table row."""
    row: dict[str, Any] = {"variant": result["variant"], "seed": result["seed"], "status": result["status"],
                           "wall s": round(result["wall_s"]) if result.get("wall_s") is not None else "-"}
    val = result.get("validation", {})
    row["phase i s/batch"] = _fmt(result.get("phase_i_s_per_batch"))
    for column, key in SCORES:
        row[column] = _fmt(val.get(key), percent=column == "right")
    return row


def variant_rows(results: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """Per variant: the finished seeds, mean CD F1 with its range, mean BLEU-4 and share right."""
    rows = []
    for name in names:
        done = [r for r in results if r["variant"] == name and r["status"] in ("done", "skipped")]
        if not done:
            continue
        f1 = [r["validation"]["val/cd_f1"] for r in done]
        bleu = [r["validation"].get("val/cc_bleu_4", float("nan")) for r in done]
        right = [r["validation"].get("val/cc_change_accuracy", float("nan")) for r in done]
        rows.append({"variant": name, "seeds": " ".join(str(r["seed"]) for r in done),
                     "CD F1 mean": f"{sum(f1) / len(f1):.3f}", "CD F1 range": f"{min(f1):.3f}-{max(f1):.3f}",
                     "BLEU-4 mean": f"{sum(bleu) / len(bleu):.3f}",
                     "right mean": f"{100 * sum(right) / len(right):.1f}%",
                     "wall s mean": round(sum(r["wall_s"] for r in done) / len(done))})
    return rows


def write_tables(out: Path, results: list[dict[str, Any]], names: list[str], header: list[str]) -> str:
    runs = markdown_table([run_row(r) for r in results], ["variant", "seed", "status", "wall s", "phase i s/batch",
                                                            *(c for c, _ in SCORES)])
    means = markdown_table(variant_rows(results, names),
                           ["variant", "seeds", "CD F1 mean", "CD F1 range", "BLEU-4 mean", "right mean",
                            "wall s mean"])
    text = "\n".join([*header, "", runs, "", means, ""])
    (out / "sweep.md").write_text(text)
    (out / "sweep.json").write_text(json.dumps({"header": header, "results": results}, indent=2, default=str))
    return text


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=OVERRIDES")
    parser.add_argument("--variants", type=Path, help="YAML file: variant name -> overrides (one string)")
    parser.add_argument("--extra", default="", metavar="OVERRIDES",
                        help="overrides for every run, before the variant's")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--jobs", type=int, default=1, help="fits at a time (default 1)")
    parser.add_argument("--threads", type=int, help="intra-op threads per fit (default: cores / jobs)")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--keep-ckpt", action="store_true",
                        help="keep each run's checkpoints (deleted by default: some 60 MB a run)")
    parser.add_argument("--out", type=Path, required=True, help="sweep folder (runs, sweep.md, sweep.json)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: expected at least 1")
    variants = parse_variants(args.variant, args.variants)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read by every fit this process starts
    args.out.mkdir(parents=True, exist_ok=True)
    runs = [(name, seed) for seed in args.seeds for name in variants]
    header = [f"# semcc tiny sweep ({machine_line()})",
              f"{len(runs)} runs, {args.jobs} at a time, {threads} thread(s) each, accelerator {args.accelerator}"
              + (f", every run with {args.extra}" if args.extra.strip() else ""),
              *(f"- {name}: {shlex.join(over) or '(tiny as it is)'}" for name, over in variants.items())]
    results: list[dict[str, Any]] = []
    started = time.perf_counter()

    def one(run: tuple[str, int]) -> dict[str, Any]:
        return run_one(run[0], variants[run[0]], run[1], args.out, args.accelerator, shlex.split(args.extra),
                       args.keep_ckpt)

    order = {run: i for i, run in enumerate(runs)}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # starts them in the runs' order
        futures = [pool.submit(one, run) for run in runs]
        for i, future in enumerate(as_completed(futures), 1):
            result = future.result()
            results.append(result)
            results.sort(key=lambda r: order[(r["variant"], r["seed"])])
            val = result.get("validation", {})
            what = result["status"] if result["status"] != "failed" else f"failed ({result['why']}; {result['log']})"
            print(f"[{i}/{len(runs)}, {time.perf_counter() - started:.0f} s] {result['variant']} seed "
                  f"{result['seed']}: {what}, CD F1 {_fmt(val.get('val/cd_f1'))}, "
                  f"BLEU-4 {_fmt(val.get('val/cc_bleu_4'))}", flush=True)
            text = write_tables(args.out, results, list(variants), header)
    print(text)
    return results


if __name__ == "__main__":
    main()
