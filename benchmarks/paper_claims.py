"""Tables II, III and IV of the paper re-run in miniature on SynthLEVIR, with a verdict on each claim.

Each row of Table II (BCSF, enhancer, neck), Table III (enhancer position and structure) and Table IV (training
strategies) has an override in ``configs/ablations/`` (14 rows). This script trains every row with every seed::

    semcc fit --config configs/tiny.yaml --config configs/study/budget.yaml --config configs/ablations/ROW.yaml \\
        --seed_everything SEED --data.phases.seed SEED --trainer.default_root_dir OUT/ROW/seedSEED [--KEY=VALUE ...]

and reads the run's last validation (its ``metrics.csv``) into ``OUT/ROW/seedSEED/result.json``, with the wall
time and a per-phase clock (:class:`StudyClock`, ``timing.json``). The seed also sets the order of the training
batches (``data.phases.seed``), so that the spread over seeds is that of a rerun, not of the initialisation alone.
Runs are resumable: a run whose ``result.json`` exists is skipped; an interrupted one (a run folder without it) is
deleted and redone from scratch. Each run is a subprocess (``python -m semcc.main fit``, its output in
``fit.log``), so no state leaks from one run into the next; checkpoints are deleted once read unless
``--keep-checkpoints``.

The budget (``configs/study/budget.yaml``, an override of tiny) is the same for every row: tiny's data set at 128 px
(its own SynthLEVIR cache) with a 128 px model, tiny's optimiser and learning rate at batch 4, one epoch of each
strategy's phases, no augmentations, and greedy decoding in validation for every row (tiny decodes
``consistent``ly, which needs a CD mask the single-task rows lack), so that rows compare models, not decodings.
No row is tuned. On top of tiny the rows keep tiny's departures: the whole random-init ViT trains (``train_vit``;
the single-task rows' ``caption_only`` strategy trains it too, by the caption loss), unchanged pairs train on one
no-change sentence, and the enhancer sits before the Q-Former except in the rows that place it (Tables II and
III); so Table IV's three-stage row is tiny at the budget and differs from Table II's row 5 (the enhancer after the
Q-Former) in that. ``--extra KEY=VALUE`` (repeatable) adds ``--KEY=VALUE`` to every run, for longer runs
(``--extra trainer.max_epochs=2``) or other data. ``--jobs N`` runs N at a time, each with cores / N threads
(``OMP_NUM_THREADS``); the budget is sized for ``--jobs 2`` on 2 cores, and a run's wall time is that of a run
sharing the machine with another.

Output, per table (``OUT/table2.{md,json,png}`` ...): one row per paper row with the mean ± sample standard deviation
over the seeds of every caption metric (BLEU-1..4, METEOR, ROUGE-L, CIDEr, S*m; BLEU-4 and CIDEr of the changed
pairs), the semantic scores of what the captions claim (right about change vs no change, change-type macro F1,
count and location accuracy, hallucination rate), the references' NLL under the model (all pairs and changed
pairs), CD F1 where the row trains CD (else ``-``) and the wall time of a run; the oracle-constant floor below (the
same for every row: one val split); a PNG of BLEU-4, CIDEr, S*m, type F1 and the references' NLL (bars with
the standard deviation as error bars, the floor dashed; needs matplotlib: ``pip install 'semcc[plot]'``).
``OUT/summary.md`` holds the three tables and the verdicts.

**Verdicts.** Each claim is a set of comparisons "row A beats row B":

1. Table II: BCSF helps single-task captioning (row 2 > row 1), the enhancer helps (row 3 > row 2), and the
   bilinear neck beats Transformer cross-attention (row 5 > row 4). (The paper's "multi-task beats single-task"
   is left to the table: at a budget of one epoch per strategy, rows 4-5 train more steps than rows 1-3.)
2. Table III: the enhancer works best after the Q-Former with both activation and subtraction: after beats
   before for each structure (3 comparisons), and after-both beats after-activation and after-subtraction.
3. Table IV: three-stage beats two-stage and one-stage.

Each comparison is decided twice, on two metrics each fixed before the 42-run study: S*m (the paper's summary of
BLEU-4, METEOR, ROUGE-L and CIDEr, higher is better; fixed before any run) and the references' NLL under the model
(``val/cc_nll``, :meth:`semcc.tasks.module.SemanticCCTask.reference_nll`, lower is better; added after the Table IV
pilot at seed 0, where every row wrote the same constant caption and S*m could not separate them). The effect of a
comparison is the difference of the rows' means over the seeds (the CIDEr difference and Cohen's d, the difference
over the pooled standard deviation, are printed beside it). The test is Welch's t-test (two-sided p from the t
distribution with Welch's degrees of freedom when scipy is installed, else from the normal approximation, which is
looser at 2-4 degrees of freedom). A comparison is **supported** when the difference is in the claimed direction
and p < 0.05, **contradicted** when it is in the other direction and p < 0.05, and **not separable from seed noise
at this budget** otherwise, always with fewer than 2 seeds of either row (no noise estimate). Two rows whose seeds
all score the same have no noise: any difference between them decides. A claim is supported (on a metric) when all
its comparisons are, contradicted when any is, else not separable.

Why a benchmark script and not a ``semcc study`` command: the study is an experiment over the library, like the
other scripts here (machine line, Markdown table, JSON), not something a user of the library runs on their data;
it needs the repository's ``configs/`` and optional packages (matplotlib, scipy) that the library does not.

Usage: ``python benchmarks/paper_claims.py [--tables 2 3 4 | --rows ROW ...] [--seeds 0 1 2] [--jobs 2]
[--out benchmarks/results/paper_claims] [--budget configs/study/budget.yaml] [--extra KEY=VALUE ...]
[--dry-run] [--keep-checkpoints]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from _common import machine_info, machine_line, markdown_table, save_run_result
from fit_tiny import last_validation

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
BASE = REPO / "configs" / "tiny.yaml"
BUDGET = REPO / "configs" / "study" / "budget.yaml"
ABLATIONS = REPO / "configs" / "ablations"
DEFAULT_OUT = BENCH / "results" / "paper_claims"

#: The rows of each table, in the paper's order: ablation override (``configs/ablations/<name>.yaml``) -> label.
TABLES: dict[str, dict[str, str]] = {
    "2": {
        "table2_row1_plain": "CC only: no BCSF, no enhancer",
        "table2_row2_bcsf": "CC only: BCSF",
        "table2_row3_bcsf_enhancer": "CC only: BCSF + enhancer",
        "table2_row4_neck_cross": "multi-task: + neck (cross-attention)",
        "table2_row5_neck_bilinear": "multi-task: + neck (bilinear)",
    },
    "3": {
        "table3_before_subtraction": "pre., subtraction",
        "table3_after_subtraction": "post., subtraction",
        "table3_before_activation": "pre., activation",
        "table3_after_activation": "post., activation",
        "table3_before_both": "pre., both",
        "table3_after_both": "post., both",
    },
    "4": {
        "table4_one_stage": "one-stage",
        "table4_two_stage": "two-stage",
        "table4_three_stage": "three-stage",
    },
}
ROMAN = {"2": "II", "3": "III", "4": "IV"}
TITLES = {"2": "Table II: architecture components", "3": "Table III: the enhancer's position and structure",
          "4": "Table IV: training strategies"}

#: Table columns: key -> (title, logged validation key). ``wall_s`` is the run's wall time.
COLUMNS: dict[str, tuple[str, str]] = {
    "bleu_1": ("BLEU-1", "val/cc_bleu_1"),
    "bleu_2": ("BLEU-2", "val/cc_bleu_2"),
    "bleu_3": ("BLEU-3", "val/cc_bleu_3"),
    "bleu_4": ("BLEU-4", "val/cc_bleu_4"),
    "meteor": ("METEOR", "val/cc_meteor"),
    "rouge_l": ("ROUGE-L", "val/cc_rouge_l"),
    "cider": ("CIDEr", "val/cc_cider"),
    "s_m": ("S*m", "val/cc_s_m"),
    "change_bleu_4": ("changed BLEU-4", "val/cc_change_bleu_4"),
    "change_cider": ("changed CIDEr", "val/cc_change_cider"),
    "change_accuracy": ("change right", "val/sem_change_accuracy"),
    "type_f1": ("type F1", "val/sem_type_f1_macro"),
    "count_accuracy": ("count acc.", "val/sem_count_accuracy"),
    "location_accuracy": ("location acc.", "val/sem_location_accuracy"),
    "hallucination_rate": ("hallucination", "val/sem_hallucination_rate"),
    "nll": ("caption NLL", "val/cc_nll"),
    "change_nll": ("changed NLL", "val/cc_change_nll"),
    "cd_f1": ("CD F1", "val/cd_f1"),
    "wall_s": ("wall s", ""),
}
#: The oracle-constant floor's key for a column (``None``: the floor has no such score).
FLOOR_KEYS: dict[str, str | None] = {
    key: (logged.replace("val/cc_", "val/floor_oracle_constant_") if logged.startswith("val/cc_")
          else logged.replace("val/sem_", "val/sem_floor_oracle_constant_") if logged.startswith("val/sem_")
          else None)
    for key, (_, logged) in COLUMNS.items()
}
#: The metrics of the pictures.
PLOTTED = ("bleu_4", "cider", "s_m", "type_f1", "nll")
#: Plotted metrics whose axis starts near the rows' values instead of at 0.
ZOOMED = ("nll",)
#: The metrics the verdicts decide on, each with its direction (+1: higher is better), and the one printed beside
#: them. S*m was fixed before any run; the references' NLL (lower is better) was added after the Table IV pilot at
#: seed 0 (every row still wrote the constant caption, so S*m could not tell rows apart) and before the study.
DECIDED: dict[str, int] = {"s_m": 1, "nll": -1}
PRIMARY, SECONDARY = "s_m", "cider"
ALPHA = 0.05
NOT_SEPARABLE = "not separable from seed noise at this budget"


@dataclass(frozen=True)
class Comparison:
    """One comparison of a claim: row ``better`` beats row ``worse`` (``what`` says it in words)."""

    better: str
    worse: str
    what: str


#: The paper's claims, each a set of comparisons (the module docstring gives the rule).
CLAIMS: dict[str, tuple[str, str, tuple[Comparison, ...]]] = {
    "1": ("2", "BCSF and the enhancer each help single-task captioning; the bilinear neck beats cross-attention", (
        Comparison("table2_row2_bcsf", "table2_row1_plain", "BCSF helps (row 2 > row 1)"),
        Comparison("table2_row3_bcsf_enhancer", "table2_row2_bcsf", "the enhancer helps (row 3 > row 2)"),
        Comparison("table2_row5_neck_bilinear", "table2_row4_neck_cross", "bilinear neck > cross-attention neck"),
    )),
    "2": ("3", "the enhancer works best after the Q-Former, with both activation and subtraction", (
        Comparison("table3_after_subtraction", "table3_before_subtraction", "subtraction: post. > pre."),
        Comparison("table3_after_activation", "table3_before_activation", "activation: post. > pre."),
        Comparison("table3_after_both", "table3_before_both", "both: post. > pre."),
        Comparison("table3_after_both", "table3_after_activation", "post.: both > activation"),
        Comparison("table3_after_both", "table3_after_subtraction", "post.: both > subtraction"),
    )),
    "3": ("4", "three-stage training beats two-stage and one-stage", (
        Comparison("table4_three_stage", "table4_two_stage", "three-stage > two-stage"),
        Comparison("table4_three_stage", "table4_one_stage", "three-stage > one-stage"),
    )),
}


def table_of(row: str) -> str:
    """The table (``"2"``, ``"3"``, ``"4"``) of an ablation row."""
    for table, rows in TABLES.items():
        if row in rows:
            return table
    raise KeyError(row)


# ------------------------------------------------------------------------------------------------ the clock
class StudyClock(Callback):
    """Times a fit and writes ``<default_root_dir>/timing.json``: ``fit_s``, ``validation_s``, ``train_s`` (fit
    minus validation: steps, data loading, the frozen-feature cache), optimiser ``steps``, and per phase the
    seconds spent in its training batches and their count (``phases``). Added to every run of the study
    (``--trainer.callbacks+=paper_claims.StudyClock``)."""

    def __init__(self) -> None:
        self.phases: dict[str, dict[str, float]] = {}
        self.validation_s = 0.0
        self._fit = self._batch = self._val = 0.0

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._fit = time.perf_counter()

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._batch = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        phase = str(batch.get("phase", "?")) if isinstance(batch, dict) else "?"
        entry = self.phases.setdefault(phase, {"seconds": 0.0, "batches": 0})
        entry["seconds"] += time.perf_counter() - self._batch
        entry["batches"] += 1

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._val = time.perf_counter()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.validation_s += time.perf_counter() - self._val

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        fit_s = time.perf_counter() - self._fit
        timing = {"fit_s": fit_s, "validation_s": self.validation_s, "train_s": fit_s - self.validation_s,
                  "steps": trainer.global_step,
                  "phases": {k: {"seconds": v["seconds"], "batches": int(v["batches"]),
                                 "ms_per_batch": 1000 * v["seconds"] / max(v["batches"], 1)}
                             for k, v in self.phases.items()}}
        Path(trainer.default_root_dir, "timing.json").write_text(json.dumps(timing, indent=2))


# ------------------------------------------------------------------------------------------------ running
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def fit_command(row: str, seed: int, run_dir: Path, *, base: Path, budget: Path, extra: Sequence[str]) -> list[str]:
    """The ``semcc fit`` command line of one run (``extra``: ``KEY=VALUE`` overrides, added as ``--KEY=VALUE``)."""
    return [
        sys.executable, "-m", "semcc.main", "fit",
        "--config", str(base), "--config", str(budget), "--config", str(ABLATIONS / f"{row}.yaml"),
        "--seed_everything", str(seed), "--data.phases.seed", str(seed),
        "--trainer.default_root_dir", str(run_dir), "--trainer.logger.init_args.save_dir", str(run_dir),
        *(f"--{item.removeprefix('--')}" for item in extra),
        "--trainer.callbacks+=paper_claims.StudyClock",
    ]


def settings_of(row: str, *, base: Path, budget: Path, extra: Sequence[str]) -> dict[str, Any]:
    """What a result depends on besides its seed: the three config files (content hashes) and the overrides."""
    return {"base": _sha256(base), "budget": _sha256(budget), "row": _sha256(ABLATIONS / f"{row}.yaml"),
            "extra": list(extra)}


def run_one(row: str, seed: int, out: Path, *, base: Path, budget: Path, extra: Sequence[str],
            keep_checkpoints: bool = False, threads: int | None = None) -> tuple[str, dict[str, Any] | None]:
    """Run (or skip) one row and seed; returns ``(status, result)`` with status ``skipped``, ``done`` or ``failed``.
    ``threads``: the run's intra-op threads (``OMP_NUM_THREADS``; default: torch's own choice).

    ``OUT/ROW/seedSEED/result.json`` is written last, so its presence means the run finished; a run folder without
    it is an interrupted run and is deleted before the run starts again.
    """
    run_dir = out / row / f"seed{seed}"
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return "skipped", json.loads(result_path.read_text())
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    cmd = fit_command(row, seed, run_dir, base=base, budget=budget, extra=extra)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(BENCH), os.environ.get("PYTHONPATH")) if p)}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    with open(run_dir / "fit.log", "w") as log:
        code = subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    found = sorted(run_dir.rglob("metrics.csv"))
    validation = last_validation(found[-1]) if found else {}
    if code != 0 or not any(k.startswith("val/") for k in validation):
        why = f"exit status {code}" if code else "no validation in metrics.csv"
        return "failed", {"why": why, "log": str(run_dir / "fit.log")}
    timing_path = run_dir / "timing.json"
    result = {
        "row": row, "table": table_of(row), "seed": seed, "wall_s": wall,
        "timing": json.loads(timing_path.read_text()) if timing_path.is_file() else None,
        "validation": validation, "settings": settings_of(row, base=base, budget=budget, extra=extra),
        "threads": threads,
        "command": cmd[2:],
    }
    save_run_result(run_dir, result_path, result, keep_checkpoints)
    return "done", result


# ------------------------------------------------------------------------------------------------ statistics
def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``None`` for one value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def welch(a: Sequence[float], b: Sequence[float]) -> dict[str, float | None]:
    """Welch's t-test of mean(a) - mean(b): ``diff``, ``t``, ``df``, two-sided ``p``, Cohen's ``d`` and the ``method``
    of p (scipy's t distribution, else the normal approximation). ``t``, ``p``, ``d`` are None with fewer than two
    values on a side; with no spread on either side, p is 0 for any difference and 1 for none."""
    diff = statistics.fmean(a) - statistics.fmean(b)
    out: dict[str, Any] = {"diff": diff, "t": None, "df": None, "p": None, "d": None, "method": None}
    if len(a) < 2 or len(b) < 2:
        return out
    va, vb = statistics.variance(a), statistics.variance(b)
    na, nb = len(a), len(b)
    se2 = va / na + vb / nb
    pooled = math.sqrt(((na - 1) * va + (nb - 1) * vb) / (na + nb - 2))
    if se2 == 0:
        out.update(t=math.copysign(math.inf, diff) if diff else 0.0, p=0.0 if diff else 1.0,
                   d=math.copysign(math.inf, diff) if diff else 0.0, method="no spread")
        return out
    t = diff / math.sqrt(se2)
    df = se2**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    try:
        from scipy import stats

        p, method = float(2 * stats.t.sf(abs(t), df)), "Welch t (scipy)"
    except ImportError:
        p, method = math.erfc(abs(t) / math.sqrt(2)), "normal approximation"
    out.update(t=t, df=df, p=p, d=diff / pooled if pooled else math.copysign(math.inf, diff), method=method)
    return out


def verdict(test: dict[str, Any], direction: int = 1) -> str:
    """``supported`` / ``contradicted`` / :data:`NOT_SEPARABLE` of a comparison's :func:`welch` (A - B; claimed:
    A better than B, i.e. A - B of the sign of ``direction``), by the rule of the module docstring."""
    if test["p"] is None or test["p"] >= ALPHA or test["diff"] == 0:
        return NOT_SEPARABLE
    return "supported" if test["diff"] * direction > 0 else "contradicted"


def judge(claim: str, values: dict[str, dict[str, list[float]]], metric: str = PRIMARY) -> dict[str, Any] | None:
    """The verdict of ``claim`` (``CLAIMS``) on ``metric`` (one of :data:`DECIDED`) from each row's per-seed
    values; None when a row of it has no value of the metric."""
    table, text, comparisons = CLAIMS[claim]
    if any(not values.get(c.better, {}).get(metric) or not values.get(c.worse, {}).get(metric)
           for c in comparisons):
        return None
    lines = []
    for c in comparisons:
        test = welch(values[c.better][metric], values[c.worse][metric])
        second = values[c.better].get(SECONDARY) and values[c.worse].get(SECONDARY)
        lines.append({
            "comparison": c.what, "better": c.better, "worse": c.worse, "verdict": verdict(test, DECIDED[metric]),
            **{f"{metric}_{k}": v for k, v in test.items()},
            f"{SECONDARY}_diff": (statistics.fmean(values[c.better][SECONDARY])
                                  - statistics.fmean(values[c.worse][SECONDARY])) if second else None,
            "seeds": [len(values[c.better][metric]), len(values[c.worse][metric])],
        })
    found = {line["verdict"] for line in lines}
    overall = ("contradicted" if "contradicted" in found else "supported" if found == {"supported"}
               else NOT_SEPARABLE)
    return {"claim": claim, "table": table, "text": text, "metric": metric, "verdict": overall,
            "comparisons": lines}


def _num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def verdict_lines(judged: dict[str, Any]) -> list[str]:
    """The claim's verdict and one line per comparison, with the numbers."""
    metric = judged["metric"]
    title = COLUMNS[metric][0]
    better = "higher" if DECIDED[metric] > 0 else "lower"
    lines = [f"Claim {judged['claim']} (Table {ROMAN[judged['table']]}): {judged['text']}, judged on {title} "
             f"({better} is better): **{judged['verdict']}**"]
    for c in judged["comparisons"]:
        p, method = c[f"{metric}_p"], c[f"{metric}_method"]
        test = "" if p is None else f", p {p:.3g} ({method})"
        lines.append(
            f"  - {c['comparison']}: {c['verdict']} ({title} difference {_num(c[f'{metric}_diff'], 4)}, "
            f"CIDEr difference {_num(c[f'{SECONDARY}_diff'], 4)}, Cohen's d {_num(c[f'{metric}_d'], 2)}, "
            f"Welch t {_num(c[f'{metric}_t'], 2)}, df {_num(c[f'{metric}_df'], 1)}{test}; "
            f"seeds {c['seeds'][0]} vs {c['seeds'][1]})")
    return lines


# ------------------------------------------------------------------------------------------------ tables
def row_values(results: Sequence[dict[str, Any]]) -> dict[str, list[float]]:
    """Per column, the values of the seeds that logged it (finite numbers only)."""
    out: dict[str, list[float]] = {}
    for key, (_, logged) in COLUMNS.items():
        vals = [r["wall_s"] if key == "wall_s" else r["validation"].get(logged) for r in results]
        out[key] = [float(v) for v in vals if v is not None and math.isfinite(float(v))]
    return out


def _cell(values: list[float], seeds: int, key: str) -> str:
    if not values:
        return "-"
    mean, std = mean_std(values)
    digits = 0 if key == "wall_s" else 3
    text = f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")
    return text + ("" if len(values) == seeds else f" (n={len(values)})")


def build_table(table: str, results: dict[str, list[dict[str, Any]]], seeds: int) -> dict[str, Any]:
    """One paper table: display rows (Markdown), per-row statistics and per-seed values (JSON), the floor."""
    display, stats, values = [], {}, {}
    for row, label in TABLES[table].items():
        if not results.get(row):
            continue
        vals = row_values(results[row])
        values[row] = vals
        stats[row] = {k: (None if not v else dict(zip(("mean", "std"), mean_std(v), strict=True)) | {"n": len(v)})
                      for k, v in vals.items()}
        display.append({"row": row, "label": label, "seeds": len(results[row]),
                        **{k: _cell(v, len(results[row]), k) for k, v in vals.items()}})
    floor: dict[str, float | None] = {}
    first = next((r for rows in results.values() for r in rows), None)
    if first is not None:
        raw = {k: first["validation"].get(f) if f else None for k, f in FLOOR_KEYS.items()}
        floor = {k: v if v is not None and math.isfinite(v) else None for k, v in raw.items()}
        display.append({"row": "floor", "label": "oracle-constant floor", "seeds": "-",
                        **{k: "-" if v is None else f"{v:.3f}" for k, v in floor.items()}})
    return {"table": table, "title": TITLES[table], "display": display, "stats": stats, "values": values,
            "floor": floor}


def plot_table(built: dict[str, Any], path: Path) -> bool:
    """Bars of :data:`PLOTTED` per row (error bars: the standard deviation over seeds; dashed: the floor); False
    when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = list(built["stats"])
    labels = [TABLES[built["table"]][r] for r in rows]
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(3.2 * len(PLOTTED), 0.45 * len(rows) + 2.2), sharey=True)
    for ax, key in zip(axes, PLOTTED, strict=True):
        means = [(built["stats"][r][key] or {}).get("mean", float("nan")) for r in rows]
        stds = [(built["stats"][r][key] or {}).get("std") or 0.0 for r in rows]
        ax.barh(range(len(rows)), means, xerr=stds, color="tab:blue", alpha=0.8, capsize=3)
        if (floor := built["floor"].get(key)) is not None:
            ax.axvline(floor, color="tab:red", linestyle="--", linewidth=1, label="oracle-constant floor")
        if key in ZOOMED and all(math.isfinite(m) for m in means):  # differences of a few hundredths: zoom in
            low = min(m - d for m, d in zip(means, stds, strict=True))
            high = max(m + d for m, d in zip(means, stds, strict=True))
            pad = max(high - low, 1e-3) * 0.5
            ax.set_xlim(low - pad, high + pad)
        ax.set_title(COLUMNS[key][0] + (" (zoomed)" if key in ZOOMED else ""))
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(rows)), labels)
    axes[0].invert_yaxis()
    with_floor = [ax for ax, key in zip(axes, PLOTTED, strict=True) if built["floor"].get(key) is not None]
    if with_floor:
        with_floor[0].legend(loc="lower left", fontsize=7)
    fig.suptitle(f"{built['title']} (SynthLEVIR val, mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", choices=list(TABLES), default=list(TABLES),
                        help="the paper tables to re-run (default: 2 3 4)")
    parser.add_argument("--rows", nargs="+", choices=[r for rows in TABLES.values() for r in rows],
                        help="rows by name (configs/ablations/ROW.yaml), instead of whole tables")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"study folder (default: {DEFAULT_OUT})")
    parser.add_argument("--base", type=Path, default=BASE, help="the base config (default: configs/tiny.yaml)")
    parser.add_argument("--budget", type=Path, default=BUDGET, help="the budget override (configs/study/budget.yaml)")
    parser.add_argument("--extra", action="append", default=[], metavar="KEY=VALUE",
                        help="an override added to every run as --KEY=VALUE (repeatable; runs start in the "
                             "repository root, so relative paths are relative to it)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at a time, each with cores/jobs threads (default 1; the study's timing: 2)")
    parser.add_argument("--dry-run", action="store_true", help="print the runs' commands, run nothing")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep each run's checkpoints")
    args = parser.parse_args(argv)
    for item in args.extra:
        if "=" not in item:
            parser.error(f"--extra {item!r}: expected KEY=VALUE")
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: expected at least 1")
    for path in (args.base, args.budget):
        if not path.is_file():
            parser.error(f"{path}: config file not found")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run (or skip) every run of the selection, then print and write the tables and verdicts."""
    args = parse_args(argv)
    rows = args.rows or [r for t in args.tables for r in TABLES[t]]
    base, budget = args.base.resolve(), args.budget.resolve()
    args.out = args.out.resolve()  # the runs start in the repository root
    runs = [(row, seed) for row in rows for seed in args.seeds]
    if args.dry_run:
        for row, seed in runs:
            cmd = fit_command(row, seed, args.out / row / f"seed{seed}", base=base, budget=budget, extra=args.extra)
            print(" ".join(cmd))
        return {"runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, Any]]] = {}
    status: dict[str, int] = {"done": 0, "skipped": 0, "failed": 0}
    changed: list[str] = []
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    started = time.perf_counter()

    def one(run: tuple[str, int]) -> tuple[str, int, str, dict[str, Any] | None]:
        what, result = run_one(*run, args.out, base=base, budget=budget, extra=args.extra,
                               keep_checkpoints=args.keep_checkpoints, threads=threads)
        return *run, what, result

    # With --jobs N, N runs at a time (threads only wait on their subprocess); SynthLEVIR and the tokenizer are
    # generated under a file lock by whichever run comes first, the others wait for it.
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for i, (row, seed, what, result) in enumerate(pool.map(one, runs), 1):  # in the runs' order
            status[what] += 1
            head = f"[{i}/{len(runs)}] {row} seed {seed}:"
            if what == "failed":
                print(f"{head} failed ({result['why']}; see {result['log']})", flush=True)
                continue
            assert result is not None
            results.setdefault(row, []).append(result)
            if result.get("settings") != settings_of(row, base=base, budget=budget, extra=args.extra):
                changed.append(f"{row} seed {seed}")
            val = result["validation"]
            print(f"{head} {what}{' (result.json exists)' if what == 'skipped' else ''}, "
                  f"{result['wall_s']:.0f} s, S*m {val.get('val/cc_s_m', float('nan')):.3f}, "
                  f"CIDEr {val.get('val/cc_cider', float('nan')):.3f}", flush=True)
    elapsed = (time.perf_counter() - started) / 60
    done = f"runs: {status['done']} done, {status['skipped']} skipped, {status['failed']} failed"
    clock = f"{done}; {elapsed:.1f} min, {args.jobs} at a time" + (f", {threads} thread(s) each" if threads else "")
    print(clock)
    seeds = len(args.seeds)
    tables = [t for t in TABLES if any(r in results for r in TABLES[t])]
    summary = [f"# Tables II-IV in miniature ({machine_line()})", "", clock, ""]
    output: dict[str, Any] = {"status": status, "tables": {}, "claims": {}}
    for table in tables:
        built = build_table(table, {r: results[r] for r in TABLES[table] if r in results}, seeds)
        judged = [j for c, (t, _, _) in CLAIMS.items() if t == table for metric in DECIDED
                  if (j := judge(c, built["values"], metric)) is not None]
        notes = [line for j in judged for line in verdict_lines(j)]
        if changed:
            notes.append(f"warning: made with other config files or overrides than this call's: {', '.join(changed)}")
        columns = {"label": "row", "seeds": "seeds", **{k: title for k, (title, _) in COLUMNS.items()}}
        text = markdown_table(built["display"], columns)
        title = f"{built['title']} (SynthLEVIR val, mean ± std over seeds {' '.join(map(str, args.seeds))})"
        print(f"\n{title}\n{machine_line()}\n{text}")
        for note in notes:
            print(note)
        png = args.out / f"table{table}.png"
        plotted = plot_table(built, png)
        if not plotted:
            print("no picture: matplotlib is not installed (pip install 'semcc[plot]')")
        payload = {"title": title, "machine": machine_info(), "rows": built["display"], "stats": built["stats"],
                   "per_seed": built["values"], "floor": built["floor"], "claims": judged, "notes": notes,
                   "seeds": args.seeds, "budget": str(args.budget), "base": str(args.base), "extra": args.extra,
                   "picture": str(png) if plotted else None}
        (args.out / f"table{table}.json").write_text(json.dumps(payload, indent=2))
        (args.out / f"table{table}.md").write_text("\n".join([f"## {title}", "", text, "", *notes, ""]))
        summary += [f"## {title}", "", text, "", *notes, ""]
        output["tables"][table] = built
        output["claims"].update({f"{j['claim']}/{j['metric']}": j for j in judged})
    (args.out / "summary.md").write_text("\n".join(summary))
    return output


if __name__ == "__main__":
    out = main()
    sys.exit(1 if out.get("status", {}).get("failed") else 0)
