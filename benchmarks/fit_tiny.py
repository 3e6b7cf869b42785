"""Wall time and last validation scores of ``semcc fit --config configs/tiny.yaml`` (the embedded default).

Runs the fit in a subprocess (``python -m semcc.main fit --config configs/tiny.yaml`` plus any extra arguments,
passed through to LightningCLI) with its logs under ``--out`` (a temporary folder unless given), times it,
reads the run's ``metrics.csv`` (CSVLogger) and prints one table: the last validation's CD scores
(``val/cd_f1``, ``val/cd_iou``, ``val/cd_oa``), caption scores (``val/cc_bleu_4``, ``val/cc_cider``,
``val/cc_s_m``, the changed-pair subset ``val/cc_change_*``: BLEU-4, CIDEr and how varied its captions are,
``change_distinct`` and ``change_top_share``, and ``val/cc_change_accuracy``: the share of pairs
whose caption is right about change vs no change) beside the two caption floors the task logs
(``val/floor_constant_*``, ``val/floor_oracle_constant_*``). ``--fresh`` gives the fit an empty temporary
``HOME``, so SynthLEVIR is generated again (its time is part of the wall time).

A second table says where the wall time went (``_phase_timer.PhaseTimer``, added to the fit): the start-up (from
the launch to the first training batch: imports, SynthLEVIR, model), each phase of Sec. III-F (summed over the
epochs: batches, seconds, seconds per batch), the validations, and the rest (checkpoints, exit).

The full fit (2 epochs; README, "Quick start", for its time): ``python benchmarks/fit_tiny.py [--fresh]``.
A short check (one epoch of 5 batches, then validation):
``python benchmarks/fit_tiny.py -- --trainer.max_epochs 1 --trainer.limit_train_batches 5
--trainer.check_val_every_n_epoch 1`` (configs/tiny.yaml validates after its second epoch only).

``--same-as DIR`` compares the run with an earlier one whose ``--out`` was ``DIR``: how many cells of the two
``metrics.csv`` files are equal (every logged loss and score, as text) and how many tensors of the two ``last.ckpt``
state dicts are ``torch.equal``. A change that should alter the speed and nothing else (``SEMCC_MALLOC_TUNING=0``
against the default, ``SEMCC_FLUSH_DENORMALS=0``) must leave both at all of them. ``--compare DIR DIR`` compares two
earlier runs without fitting.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import add_json_argument, report

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "tiny.yaml"
HERE = Path(__file__).resolve().parent
#: Names of the phases (strategies.PHASES) in the time table.
PHASE_NAMES = {"cd": "phase i (cd)", "cc": "phase ii (cc)", "joint": "phase iii (joint)"}

#: (label, run key, floor key suffix) of the table; floors are ``val/floor_{constant,oracle_constant}_<suffix>``.
METRICS: tuple[tuple[str, str, str | None], ...] = (
    ("CD F1", "val/cd_f1", None),
    ("CD IoU", "val/cd_iou", None),
    ("CD OA", "val/cd_oa", None),
    ("caption BLEU-4", "val/cc_bleu_4", "bleu_4"),
    ("caption CIDEr", "val/cc_cider", "cider"),
    ("caption S*m", "val/cc_s_m", "s_m"),
    ("changed pairs BLEU-4", "val/cc_change_bleu_4", "change_bleu_4"),
    ("changed pairs CIDEr", "val/cc_change_cider", "change_cider"),
    ("changed pairs: distinct captions", "val/cc_change_distinct", "change_distinct"),
    ("changed pairs: the top caption's share", "val/cc_change_top_share", "change_top_share"),
    ("change / no-change right", "val/cc_change_accuracy", None),
)


def last_validation(metrics_csv: Path) -> dict[str, float]:
    """The ``val/*`` values of the last epoch that logged any (rows of that epoch merged, last value wins)."""
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    val_rows = [r for r in rows if any(k.startswith("val/") and r.get(k) not in (None, "") for k in r)]
    if not val_rows:
        return {}
    epoch = val_rows[-1].get("epoch")
    out: dict[str, float] = {}
    for row in val_rows:
        if row.get("epoch") != epoch:
            continue
        for key, value in row.items():
            if key.startswith("val/") and value not in (None, ""):
                out[key] = float(value)
    out["epoch"] = float(epoch) if epoch not in (None, "") else float("nan")
    steps = [int(r["step"]) for r in rows if r.get("step") not in (None, "")]
    out["step"] = float(max(steps)) if steps else float("nan")
    return out


def time_table(times: dict[str, Any], launched: float, exited: float) -> list[dict[str, Any]]:
    """Rows of where the wall time went, from a :class:`_phase_timer.PhaseTimer` file's ``times`` and the
    launch / exit ``time.time()`` of the process: start-up, each phase (summed over epochs), validation, the rest."""
    runs, vals = times.get("runs", []), times.get("validations", [])
    first = min((r["start"] for r in runs), default=times.get("fit_start", launched))
    rows: list[dict[str, Any]] = [{"part": "start-up (to the first training batch)", "runs": 1, "batches": None,
                                   "seconds": first - launched}]
    order = [p for p in PHASE_NAMES if any(r["phase"] == p for r in runs)]
    order += sorted({r["phase"] for r in runs} - set(order))
    for phase in order:
        mine = [r for r in runs if r["phase"] == phase]
        seconds, batches = sum(r["end"] - r["start"] for r in mine), sum(r["batches"] for r in mine)
        rows.append({"part": PHASE_NAMES.get(phase, phase), "runs": len(mine), "batches": batches,
                     "seconds": seconds, "s_per_batch": seconds / batches if batches else None})
    done = [v for v in vals if not math.isnan(v["end"])]  # NaN: a validation that never ended
    if done:
        rows.append({"part": "validation", "runs": len(done), "batches": None,
                     "seconds": sum(v["end"] - v["start"] for v in done)})
    counted = sum(r["seconds"] for r in rows)
    rows.append({"part": "the rest (between phases, checkpoints, exit)", "runs": None, "batches": None,
                 "seconds": (exited - launched) - counted})
    rows.append({"part": "wall time", "runs": None, "batches": None, "seconds": exited - launched})
    for row in rows:
        row["seconds"] = round(row["seconds"], 1)
        if row.get("s_per_batch") is not None:
            row["s_per_batch"] = round(row["s_per_batch"], 3)
    return rows


def run_fit(extra: list[str], out: Path, *, fresh: bool, config: Path = CONFIG,
            log: Path | None = None) -> tuple[float, Path, float]:
    """Run the fit with logs under ``out`` and a :class:`_phase_timer.PhaseTimer` writing ``out/phase_times.json``;
    returns (wall seconds, metrics.csv path, launch ``time.time()``). ``log``: the fit's output goes to this file
    instead of this process's stdout / stderr."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    home = None
    if fresh:
        home = tempfile.TemporaryDirectory(prefix="semcc-home-")
        env["HOME"] = home.name
    timer = json.dumps({"class_path": "_phase_timer.PhaseTimer", "init_args": {"path": str(out / "phase_times.json")}})
    cmd = [sys.executable, "-m", "semcc.main", "fit", "--config", str(config),
           "--trainer.default_root_dir", str(out), "--trainer.logger.init_args.save_dir", str(out), *extra,
           f"--trainer.callbacks+={timer}"]
    print("running:", " ".join(cmd), flush=True)
    start, launched = time.perf_counter(), time.time()
    try:
        if log is None:
            subprocess.run(cmd, check=True, env=env, cwd=REPO)
        else:
            with open(log, "w") as f:
                subprocess.run(cmd, check=True, env=env, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    finally:
        wall = time.perf_counter() - start
        if home is not None:
            home.cleanup()
    return wall, newest(out, "metrics.csv"), launched


def newest(folder: Path, name: str) -> Path:
    """The newest file called ``name`` under ``folder``; none is an error naming both."""
    found = max(folder.rglob(name), key=lambda p: p.stat().st_mtime, default=None)
    if found is None:
        raise FileNotFoundError(f"no {name} under {folder}")
    return found


def _run_files(folder: Path) -> tuple[Path, Path]:
    """The newest ``metrics.csv`` and ``last.ckpt`` under a run folder."""
    return newest(folder, "metrics.csv"), newest(folder, "last.ckpt")


def compare_runs(first: Path, second: Path) -> dict[str, int]:
    """Cells of the two runs' ``metrics.csv`` that are equal, and tensors of their ``last.ckpt`` state dicts that are
    ``torch.equal``, with the totals (a cell or tensor only one run has counts as different)."""
    import torch

    (csv_a, ckpt_a), (csv_b, ckpt_b) = _run_files(first), _run_files(second)
    rows_a = list(csv.reader(csv_a.open(newline="")))
    rows_b = list(csv.reader(csv_b.open(newline="")))
    cells = max(sum(map(len, rows_a)), sum(map(len, rows_b)))
    same_cells = sum(x == y for ra, rb in zip(rows_a, rows_b, strict=False) for x, y in zip(ra, rb, strict=False))
    state_a = torch.load(ckpt_a, map_location="cpu", weights_only=False)["state_dict"]
    state_b = torch.load(ckpt_b, map_location="cpu", weights_only=False)["state_dict"]
    keys = state_a.keys() | state_b.keys()
    same_tensors = sum(k in state_a and k in state_b and state_a[k].shape == state_b[k].shape
                       and torch.equal(state_a[k], state_b[k]) for k in keys)
    return {"cells": cells, "same_cells": same_cells, "tensors": len(keys), "same_tensors": same_tensors}


def same_line(other: Path, same: dict[str, int]) -> str:
    """One line of :func:`compare_runs`'s counts against the run folder ``other``."""
    return (f"against {other}: {same['same_cells']} of {same['cells']} metrics.csv cells equal, "
            f"{same['same_tensors']} of {same['tensors']} last.ckpt tensors torch.equal")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="arguments after -- go to `semcc fit` unchanged")
    parser.add_argument("--fresh", action="store_true", help="empty temporary HOME: SynthLEVIR is generated again")
    parser.add_argument("--out", type=Path, help="log folder (default: a new temporary folder, kept)")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--same-as", type=Path, metavar="DIR",
                        help="an earlier run's --out: count the equal metrics.csv cells and last.ckpt tensors")
    parser.add_argument("--compare", type=Path, nargs=2, metavar="DIR",
                        help="no fit: compare two earlier runs' --out folders as --same-as does")
    add_json_argument(parser, "fit_tiny.json")
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    if args.compare:
        same = compare_runs(*args.compare)
        print(args.compare[0], same_line(args.compare[1], same))
        return {"same_as": same}
    if args.same_as is not None:
        _run_files(args.same_as)  # before the fit: a wrong folder fails now, not after minutes of training
    out = args.out or Path(tempfile.mkdtemp(prefix="semcc-fit-tiny-"))
    wall, metrics_csv, launched = run_fit(extra, out, fresh=args.fresh, config=args.config)
    val = last_validation(metrics_csv)
    rows = []
    for label, key, floor in METRICS:
        rows.append({
            "metric": label, "run": val.get(key),
            "constant": val.get(f"val/floor_constant_{floor}") if floor else None,
            "oracle_constant": val.get(f"val/floor_oracle_constant_{floor}") if floor else None,
        })
    for row in rows:
        for k in ("run", "constant", "oracle_constant"):
            if isinstance(row[k], float):
                row[k] = round(row[k], 3)
    notes = [
        f"wall time {wall:.1f} s ({'fresh HOME: SynthLEVIR generated' if args.fresh else 'SynthLEVIR reused'}), "
        f"last validation at epoch {val.get('epoch', float('nan')):.0f}, step {val.get('step', float('nan')):.0f}",
        f"command: semcc fit --config {args.config.name} {' '.join(extra)}".rstrip(),
        f"metrics: {metrics_csv}",
    ]
    same = compare_runs(out, args.same_as) if args.same_as is not None else None
    if same is not None:
        notes.append(same_line(args.same_as, same))
    if not any(r["run"] is not None for r in rows):
        notes.append("no validation was logged: configs/tiny.yaml validates after its second epoch only "
                     "(add --trainer.check_val_every_n_epoch 1 to a shorter run)")
    columns = {"metric": "metric", "run": "tiny run", "constant": "constant floor",
               "oracle_constant": "oracle-constant floor"}
    times_file = out / "phase_times.json"
    if not times_file.is_file():
        raise FileNotFoundError(f"{times_file}: the fit wrote no phase times")
    times = time_table(json.loads(times_file.read_text()), launched, launched + wall)
    report("semcc fit, tiny", rows, columns,
           json_path=args.json, notes=notes,
           extra={"wall_s": round(wall, 1), "fresh": args.fresh, "extra_args": extra, "validation": val,
                  "times": times, "same_as": same})
    report("where the wall time went", times,
           {"part": "part", "runs": "runs", "batches": "batches", "seconds": "seconds", "s_per_batch": "s / batch"},
           json_path=None, notes=[f"phase times: {times_file}"])
    return {"wall_s": wall, "validation": val, "times": times, "same_as": same}


if __name__ == "__main__":
    main()
