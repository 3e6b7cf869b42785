"""Robustness to look-alike changes: a checkpoint's change masks and captions on SynthLEVIR test sets rendered
with more and more non-change nuisance.

Beyond the paper (issue 13, "3. Robustness to look-alike changes"): the paper scores one test split; this script
asks how a ``semcc fit`` checkpoint holds up when the two dates differ by more illumination, colour shift, seasonal
tint, misregistration and sensor noise than it was trained on (SynthLEVIR's ``nuisance`` strength, 0 to 2; the
tiny config trains at 0.5). For every strength and every seed (seeds the training data did not use) it generates
a SynthLEVIR test split of ``--pairs`` pairs under ``--work`` (once; reused after), predicts every pair with
:class:`semcc.inference.Predictor` (``--batch-size`` pairs at a time) and scores:

* **CD F1**: binary change vs none (torchmetrics through :mod:`semcc.metrics.detection`) over every pixel of the
  split; the target is the LEVIR-MCI label the way the checkpoint was trained (``data.loader.joint_mask_mode``:
  ``building``, the default, counts building change only, as ``semcc test`` does; ``change`` any change);
* **change right**: the share of pairs whose caption is right about change vs no change
  (:func:`semcc.data.text.is_no_change` of the prediction against the references);
* **false change (caption)**: the share of the unchanged pairs captioned as changed;
* **false change (mask)**: the share of the unchanged pairs whose predicted mask marks at least ``--min-share``
  of the pixels (default: the decoding's ``--change-share``, the checkpoint's unless given, else 0.005,
  :data:`semcc.metrics.truth.MASK_CHANGE_SHARE`);
* **changed CIDEr**: CIDEr-D of the changed pairs, scored on their own (the ``change_cider`` of
  :func:`semcc.metrics.captioning.score_split`);
* **semantic scores** (:func:`semcc.metrics.claim_scores.semantic_scores` against the claims of
  ``synth_meta.json``, :func:`semcc.metrics.truth.load_truth`): change-type macro F1, count and location
  accuracy, hallucination rate.

Captions are decoded as the checkpoint's run says (``model.evaluation.decoding``, ``samples``, ``mask_prefixes``,
``road_shapes`` and ``first_clauses``; ``--decoding``, ``--samples``, ``--mask-prefixes`` / ``--no-mask-prefixes``,
``--road-shapes`` / ``--no-road-shapes`` and ``--first-clauses`` / ``--no-first-clauses`` to choose), and the two dates'
radiometry is matched before the model as the run says (``model.evaluation.match_radiometry``; ``--match-radiometry``
/ ``--no-match-radiometry`` to choose), on the share of pseudo-invariant pixels the encoder says
(``encoder.invariant_share``, 0.8 unless set; ``--invariant-share``, e.g. ``1`` for 0.12.0's one pass on all pixels).
One row per strength: the mean over the seeds, ``± std`` (sample standard deviation) when there are several; the
training strength is marked (read from the checkpoint's run configuration, ``data.synth.nuisance``, or
``--train-nuisance``). Prints the table and writes it, with every per-seed value, as JSON (``--json``).

Usage: ``python benchmarks/robustness.py --ckpt runs/tiny/version_0/checkpoints/last.ckpt
[--pairs 100] [--seeds 101 102] [--nuisance 0 0.25 0.5 1 1.5 2] [--work ~/.cache/semcc/robustness]
[--change-share 0.002] [--match-radiometry]``
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path
from typing import Any

import yaml

from _common import add_json_argument, markdown_table, report, score_predictor
from semcc.data.synthetic import SynthLEVIRConfig, generate_synth_levir
from semcc.inference import Predictor
from semcc.models.radiometry import check_share
from semcc.models.tta import MASK_TTA

#: Scores of a row, in table order: key -> column title.
COLUMNS: dict[str, str] = {
    "cd_f1": "CD F1",
    "change_right": "change right",
    "false_change_caption": "false change (caption)",
    "false_change_mask": "false change (mask)",
    "changed_cider": "changed CIDEr",
    "type_f1": "type F1",
    "count_accuracy": "count acc.",
    "location_accuracy": "location acc.",
    "hallucination_rate": "hallucination",
}


def synth_test_split(work: Path, seed: int, nuisance: float, pairs: int, size: int, workers: int) -> Path:
    """The LEVIR-CC folder of a SynthLEVIR test split (generated under ``work`` on first use, reused after)."""
    config = SynthLEVIRConfig(pairs={"test": pairs}, cd_tiles={}, size=size, seed=seed, nuisance=nuisance,
                              workers=workers)
    root = work / f"seed{seed}-nuisance{nuisance:g}-pairs{pairs}-size{size}"
    generate_synth_levir(root, config)
    return root / "LEVIR-CC"


def run_config(predictor: Predictor) -> dict[str, Any]:
    """The ``data`` section of the checkpoint's run configuration (empty when it has none)."""
    text = getattr(predictor.task, "run_config", None)
    data = ((yaml.safe_load(text) or {}).get("data") or {}) if text else {}
    return data.get("init_args", data) if isinstance(data.get("init_args"), dict) else data


def score_pairs(predictor: Predictor, cc_root: Path, mask_mode: str, min_share: float) -> dict[str, float]:
    """Predict every test pair of ``cc_root`` and score it (:func:`_common.score_predictor`; see the module doc)."""
    s = score_predictor(predictor, cc_root, "test", mask_mode=mask_mode, min_share=min_share)
    keys = {"cd_f1": "cd_f1", "change_right": "change_accuracy", "false_change_caption": "false_change_caption",
            "false_change_mask": "false_change_mask", "changed_cider": "change_cider", "type_f1": "sem_type_f1_macro",
            "count_accuracy": "sem_count_accuracy", "location_accuracy": "sem_location_accuracy",
            "hallucination_rate": "sem_hallucination_rate", "semantic_change_accuracy": "sem_change_accuracy",
            "count_items": "sem_count_items", "location_items": "sem_location_items",
            "claimed_classes": "sem_claimed_classes", "pairs": "pairs", "unchanged_pairs": "unchanged_pairs"}
    return {ours: float(s.get(theirs, math.nan)) for ours, theirs in keys.items()}


def _cell(values: list[float]) -> str:
    """``mean`` or ``mean ± std`` of the finite values, 3 decimals; ``-`` when none is."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "-"
    mean = statistics.fmean(finite)
    return f"{mean:.3f} ± {statistics.stdev(finite):.3f}" if len(finite) > 1 else f"{mean:.3f}"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True, help="a `semcc fit` checkpoint")
    parser.add_argument("--pairs", type=int, default=100, help="test pairs per seed and strength")
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102], help="SynthLEVIR seeds (unseen)")
    parser.add_argument("--nuisance", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0, 1.5, 2.0],
                        help="SynthLEVIR nuisance strengths (0 to 2)")
    parser.add_argument("--size", type=int, default=256, help="pair size in pixels")
    parser.add_argument("--work", type=Path, default=Path("~/.cache/semcc/robustness"),
                        help="where the test sets are generated (reused when present)")
    parser.add_argument("--change-share", type=float, default=None,
                        help="the mask's change threshold of the consistent decoding (Predictor(change_share=...); "
                        "default: the checkpoint's, 0.005 unless it was set)")
    parser.add_argument("--min-share", type=float, default=None,
                        help="false change (mask): a predicted mask marking at least this share of the pixels says "
                        "'changed' (default: the decoding's change share)")
    parser.add_argument("--mask-mode", choices=("auto", "building", "change"), default="auto",
                        help="CD target: building change (LEVIR-CD), any change; auto: as the checkpoint trained")
    parser.add_argument("--train-nuisance", type=float, default=None,
                        help="the training strength to mark (default: the checkpoint's data.synth.nuisance)")
    parser.add_argument("--decoding", choices=("auto", "greedy", "consistent"), default="auto",
                        help="caption decoding (auto: the checkpoint's model.evaluation.decoding, else greedy)")
    parser.add_argument("--samples", type=int, default=None,
                        help="captions sampled per pair for the consistent decoding (Predictor(samples=...); default: "
                        "the checkpoint's, else 0)")
    parser.add_argument("--mask-prefixes", action=argparse.BooleanOptionalAction, default=None,
                        help="mask-guided candidates in the consistent decoding (Predictor(mask_prefixes=...); "
                        "default: the checkpoint's)")
    parser.add_argument("--road-shapes", action=argparse.BooleanOptionalAction, default=None,
                        help="a building mask's road-shaped components not counted as buildings in the consistent "
                        "decoding (Predictor(road_shapes=...); default: the checkpoint's)")
    parser.add_argument("--first-clauses", action=argparse.BooleanOptionalAction, default=None,
                        help="each candidate's first clause among the consistent decoding's candidates "
                        "(Predictor(first_clauses=...); default: the checkpoint's)")
    parser.add_argument("--match-radiometry", action=argparse.BooleanOptionalAction, default=None,
                        help="match the dates' per-channel mean and standard deviation before the model "
                        "(Predictor(match_radiometry=...); default: the checkpoint's)")
    parser.add_argument("--mask-tta", choices=sorted(MASK_TTA), default=None,
                        help="test-time augmentation of the mask (Predictor(mask_tta=...); default: the checkpoint's, "
                        "else none)")
    parser.add_argument("--invariant-share", type=float, default=None,
                        help="the share of each pair's pixels whose statistics the matching uses (the encoder's "
                        "invariant_share; 1: all pixels, one pass; default: the checkpoint's, else 0.8)")
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per forward")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=0, help="SynthLEVIR generation processes (0: every core)")
    add_json_argument(parser, "robustness.json")
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error(f"--pairs must be at least 1, got {args.pairs}")
    if bad := [x for x in args.nuisance if not 0.0 <= x <= 2.0]:
        parser.error(f"--nuisance strengths must be in [0, 2], got {bad}")
    if not args.ckpt.is_file():
        parser.error(f"{args.ckpt}: no such checkpoint file (--ckpt)")
    if args.invariant_share is not None:
        try:
            check_share(args.invariant_share)
        except ValueError as err:
            parser.error(f"--invariant-share: {err}")

    start = time.perf_counter()
    predictor = Predictor.from_checkpoint(args.ckpt, device=args.device, batch_size=args.batch_size,
                                          decoding=None if args.decoding == "auto" else args.decoding,
                                          change_share=args.change_share, samples=args.samples,
                                          mask_prefixes=args.mask_prefixes, road_shapes=args.road_shapes,
                                          first_clauses=args.first_clauses, match_radiometry=args.match_radiometry,
                                          mask_tta=args.mask_tta)
    if args.min_share is None:
        args.min_share = predictor.change_share
    if args.invariant_share is not None:
        predictor.model.encoder.invariant_share = args.invariant_share
    invariant_share = predictor.model.encoder.invariant_share
    data = run_config(predictor)
    synth = data.get("synth") if isinstance(data.get("synth"), dict) else {}
    train_nuisance = args.train_nuisance if args.train_nuisance is not None else synth.get("nuisance")
    loader = data.get("loader") if isinstance(data.get("loader"), dict) else {}
    mask_mode = args.mask_mode if args.mask_mode != "auto" else (
        "change" if loader.get("joint_mask_mode", "building") != "building" else "building")
    work = args.work.expanduser()
    per_seed: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for nuisance in args.nuisance:
        scores = []
        for seed in args.seeds:
            cc_root = synth_test_split(work, seed, nuisance, args.pairs, args.size, args.workers)
            s = score_pairs(predictor, cc_root, mask_mode, args.min_share)
            per_seed.append({"nuisance": nuisance, "seed": seed, **s})
            scores.append(s)
        mark = " (training)" if train_nuisance is not None and math.isclose(nuisance, float(train_nuisance)) else ""
        row: dict[str, Any] = {"nuisance": f"{nuisance:g}{mark}"}
        for key in COLUMNS:
            values = [float(s[key]) for s in scores]
            row[key] = _cell(values)
            finite = [v for v in values if not math.isnan(v)]
            row[f"{key}_mean"] = statistics.fmean(finite) if finite else None
            row[f"{key}_std"] = statistics.stdev(finite) if len(finite) > 1 else None
        rows.append(row)
    columns = {"nuisance": "nuisance", **COLUMNS}
    guided = predictor.mask_prefixes and predictor.decoding == "consistent"
    shapes = predictor.road_shapes and predictor.decoding == "consistent"
    clauses = predictor.first_clauses and predictor.decoding == "consistent"
    seconds = round(time.perf_counter() - start, 1)
    title = (f"robustness to look-alike changes: {args.ckpt} on SynthLEVIR test sets, {args.pairs} pairs x "
             f"seeds {' '.join(map(str, args.seeds))} per nuisance strength, {predictor.decoding} decoding"
             f"{f' with {predictor.samples} samples' if predictor.samples else ''}"
             f"{' and mask-guided candidates' if guided else ''}"
             f"{', road shapes apart' if shapes else ''}"
             f"{', first clauses' if clauses else ''}"
             f"{f', radiometry matched on {invariant_share:g} of the pixels' if predictor.match_radiometry else ''}"
             f"{f', mask averaged over its {predictor.mask_tta} views' if predictor.mask_tta != 'none' else ''}"
             " (mean ± sample std over seeds)")
    notes = [f"CD target: {mask_mode} change; false change (mask): predicted mask >= {args.min_share:g} of the pixels; "
             f"{seconds} s in all (generation included)"]
    report(title, rows, columns, json_path=args.json, device=args.device, dtype="float32", notes=notes,
           extra={"args": {k: str(v) for k, v in vars(args).items()}, "per_seed": per_seed,
                  "table": markdown_table(rows, columns), "mask_mode": mask_mode, "train_nuisance": train_nuisance,
                  "decoding": predictor.decoding, "samples": predictor.samples,
                  "mask_prefixes": predictor.mask_prefixes, "road_shapes": predictor.road_shapes,
                  "first_clauses": predictor.first_clauses, "match_radiometry": predictor.match_radiometry,
                  "invariant_share": invariant_share, "mask_tta": predictor.mask_tta})
    return rows


if __name__ == "__main__":
    main()
