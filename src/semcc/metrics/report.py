"""Readable and machine-readable reports of an evaluation (Sec. IV-B metrics, tables shaped like Tables I / V).

A report holds the caption scores of a model and of the two floors (the constant "the scene is the same as
before" and the oracle-constant caption) overall and on the change / no-change subsets, how varied the changed
pairs' captions are, the change-detection
scores, the semantic scores of what the captions claim where there is ground truth (issue 13, beyond the
paper), and the protocol used (words or vocabulary ids, simple or PTB tokenisation, METEOR computed or why not).
:func:`write_report` writes ``metrics.json``, ``report.md`` and ``captions.json`` (name, prediction,
references) into a folder, each file complete or not at all (written to a temporary name, then renamed).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["CAPTION_COLUMNS", "caption_table", "detection_table", "render_report", "semantic_table", "write_report"]

#: Columns of the caption table (Table I of the paper, plus S*m).
CAPTION_COLUMNS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider", "s_m")
_HEAD = {"bleu_1": "BLEU-1", "bleu_2": "BLEU-2", "bleu_3": "BLEU-3", "bleu_4": "BLEU-4", "meteor": "METEOR",
         "rouge_l": "ROUGE-L", "cider": "CIDEr-D", "s_m": "S*m"}
_SUBSETS = (("all", ""), ("change", "change_"), ("no change", "nochange_"))


def caption_table(results: Mapping[str, Mapping[str, float]], columns: Sequence[str] = CAPTION_COLUMNS) -> str:
    """A Markdown table: one row per system and subset (all / change / no change) and the columns given."""
    cols = [c for c in columns if any(c in r for r in results.values())]
    lines = ["| system | pairs | " + " | ".join(_HEAD.get(c, c) for c in cols) + " |", "|---|---|" + "---|" * len(cols)]
    for system, scores in results.items():
        for subset, prefix in _SUBSETS:
            if f"{prefix}cider" in scores:
                values = " | ".join(f"{scores[prefix + c]:.4f}" if prefix + c in scores else "-" for c in cols)
                lines.append(f"| {system} | {subset} | {values} |")
    return "\n".join(lines)


_SEMANTIC_HEAD = {"change_accuracy": "change acc.", "type_f1_macro": "type F1 (macro)", "count_accuracy": "count acc.",
                  "location_accuracy": "location acc.", "hallucination_rate": "hallucination rate"}


def semantic_table(results: Mapping[str, Mapping[str, float]]) -> str:
    """A Markdown table of the semantic scores (:data:`semcc.metrics.claim_scores.SEMANTIC_COLUMNS`), one row per
    system (model, references, floors); NaN (no item to score) prints as ``-``."""
    from semcc.metrics.claim_scores import SEMANTIC_COLUMNS

    lines = ["| system | " + " | ".join(_SEMANTIC_HEAD[c] for c in SEMANTIC_COLUMNS) + " |",
             "|---|" + "---|" * len(SEMANTIC_COLUMNS)]
    for system, scores in results.items():
        cells = [f"{scores[c]:.4f}" if c in scores and not math.isnan(scores[c]) else "-" for c in SEMANTIC_COLUMNS]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def detection_table(scores: Mapping[str, float]) -> str:
    """A Markdown table of the change-detection scores (the change class; per class for multi-class masks)."""
    metrics = ("precision", "recall", "f1", "iou", "oa")
    classes = sorted({k.rsplit("_", 1)[1] for k in scores if k.startswith("f1_")})
    lines = ["| class | precision | recall | F1 | IoU | OA |", "|---|---|---|---|---|---|"]

    def row(label: str, suffix: str) -> str:
        cells = [f"{scores[m + suffix]:.4f}" if m + suffix in scores else "-" for m in metrics[:4]]
        cells.append(f"{scores['oa']:.4f}" if "oa" in scores and not suffix else "-")
        return f"| {label} | " + " | ".join(cells) + " |"

    lines.append(row("change" if not classes else "mean of change classes", ""))
    lines += [row(c, f"_{c}") for c in classes]
    return "\n".join(lines)


def _diversity_lines(scores: Mapping[str, float]) -> list[str]:
    """The report's sentence on how varied the changed pairs' captions are (``change_distinct``...), if scored."""
    if "change_distinct" not in scores:
        return []
    refs = scores.get("change_references_distinct")
    ceiling = f"; one reference per pair: {refs:.1%} distinct" if refs is not None else ""
    return ["", f"Changed pairs: {scores['change_distinct']:.1%} of their captions are distinct, and the most frequent "
                f"caption is given to {scores['change_top_share']:.1%} of them (the oracle-constant floor: one "
                f"caption for all){ceiling}."]


def render_report(results: Mapping[str, Any]) -> str:
    """The ``report.md`` text of :func:`write_report`'s ``results``."""
    lines = [f"# semcc report: {results.get('split', '?')} split", ""]
    for key, label in (("checkpoint", "checkpoint"), ("pairs", "pairs captioned"), ("protocol", "caption protocol"),
                       ("tokenization", "tokenization"), ("meteor", "METEOR")):
        if results.get(key) is not None:
            lines.append(f"- {label}: {results[key]}")
    captioning = results.get("captioning")
    if captioning:
        lines += ["", "## Captioning", "", "Five references per pair; BLEU-1..4, METEOR, ROUGE-L and CIDEr-D from "
                  "pycocoevalcap; S*m = (BLEU-4 + METEOR + ROUGE-L + CIDEr-D) / 4. `constant` always says \"the "
                  "scene is the same as before\"; `oracle_constant` knows whether a pair changed and says that "
                  "sentence or the most frequent training caption of changed pairs. A model that describes "
                  "changes scores above both.", "", caption_table(captioning)]
        accuracy = captioning.get("model", {}).get("change_accuracy")
        if accuracy is not None:
            lines += ["", f"Captions right about change vs no change: {accuracy:.1%} of pairs."]
        lines += _diversity_lines(captioning.get("model", {}))
        if nll := results.get("reference_nll"):
            changed = f", {nll['changed']:.3f} on the changed pairs" if "changed" in nll else ""
            lines += ["", f"The references' negative log-likelihood under the model (teacher-forced, per caption "
                          f"token; lower is better): {nll['all']:.3f} over all pairs{changed}."]
    if results.get("semantic"):
        lines += ["", "## What the captions claim", "", "Each caption is parsed into a claim (changed or not; the "
                  "changed classes, their counts and places; `semcc.metrics.semantic`) and compared with the ground "
                  f"truth: {results.get('semantic_truth', '?')}. Change accuracy: right about change vs no change; "
                  "type F1: per class, macro mean; count / location accuracy: over the classes named by both with a "
                  "number / a place on both sides; hallucination rate: claimed classes with no such change. "
                  "`references` scores each of the five references as a caption (the ceiling human-style captions "
                  "reach), averaged.", "", semantic_table(results["semantic"])]
    if results.get("detection"):
        lines += ["", "## Change detection", "", "Per pixel over the whole split (torchmetrics)."]
        if results.get("detection_protocol"):
            lines += ["", f"Scored on: {results['detection_protocol']}."]
        lines += ["", detection_table(results["detection"])]
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(
    out_dir: str | Path,
    results: Mapping[str, Any],
    captions: Mapping[str, tuple[str, Sequence[str]]] | None = None,
) -> dict[str, Path]:
    """Write ``metrics.json`` (``results``), ``report.md`` and, given ``captions`` (``{name: (prediction,
    references)}``), ``captions.json`` to ``out_dir``; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out / "metrics.json", "report": out / "report.md"}
    _write_atomic(paths["metrics"], json.dumps(results, indent=2, default=str) + "\n")
    _write_atomic(paths["report"], render_report(results))
    if captions is not None:
        paths["captions"] = out / "captions.json"
        items = [{"name": k, "prediction": p, "references": list(r)} for k, (p, r) in captions.items()]
        _write_atomic(paths["captions"], json.dumps(items, indent=2) + "\n")
    return paths
