"""Shared helpers of the benchmark scripts: the machine line, one markdown table, its JSON, peak memory.

Every script in this folder prints :func:`machine_line` above its table (CPU model from ``/proc/cpuinfo``,
core count, GPU name when CUDA is available, torch version, dtype, threads) and writes the same table with the
machine description to ``--json PATH`` through :func:`report`. Nothing here is measured: it only describes and
formats what a script measured.

Importing it flushes subnormal floats to zero (:func:`semcc.denormals.flush_denormals`) and raises glibc's mmap and
trim thresholds (:func:`semcc.allocator.tune_malloc`), as the ``semcc`` console script does before any command, so
that a script that trains or predicts in its own process measures the arithmetic and the memory reuse of ``semcc
fit``; every script imports this module before it runs a torch operation.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semcc.allocator import tune_malloc
from semcc.denormals import flush_denormals

flush_denormals()
tune_malloc()

__all__ = [
    "PeakMemory",
    "add_json_argument",
    "cpu_model",
    "current_rss_bytes",
    "machine_info",
    "machine_line",
    "markdown_table",
    "mib",
    "report",
    "save_run_result",
    "score_predictor",
]


def cpu_model() -> str:
    """The ``model name`` of ``/proc/cpuinfo`` (``platform.processor()`` or the machine type elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine_info(dtype: str | None = None, device: str | None = None) -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, GPU (if CUDA), torch, dtype, threads."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": _cores(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "device": device,
        "dtype": dtype,
    }
    return info


def machine_line(dtype: str | None = None, device: str | None = None) -> str:
    """One line for the top of a table, e.g. ``AMD EPYC (x86_64), 2 cores, no GPU, torch 2.13.0+cpu, ...``."""
    info = machine_info(dtype, device)
    gpu = f"GPU {info['gpu']} (CUDA {info['cuda']})" if info["gpu"] else "no GPU"
    parts = [f"{info['cpu']} ({info['arch']})", f"{info['cores']} cores", gpu, f"torch {info['torch']}",
             f"{info['threads']} threads"]
    if device:
        parts.append(f"device {device}")
    if dtype:
        parts.append(dtype)
    return "machine: " + ", ".join(parts)


def save_run_result(run_dir: Path, result_path: Path, result: Mapping[str, Any], keep_checkpoints: bool) -> None:
    """A finished run of a sweep: its checkpoints under ``run_dir`` deleted unless ``keep_checkpoints``, then
    ``result`` written to ``result_path`` in one rename (its presence marks the run done for the next call)."""
    if not keep_checkpoints:
        for ckpt in run_dir.rglob("*.ckpt"):
            ckpt.unlink()
    tmp = result_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(result_path)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | Mapping[str, str]) -> str:
    """A markdown table of ``rows``; ``columns`` lists row keys, or maps row keys to header titles."""
    header = dict(columns) if isinstance(columns, Mapping) else {c: c for c in columns}

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)

    lines = ["| " + " | ".join(header.values()) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(row.get(k)) for k in header) + " |" for row in rows]
    return "\n".join(lines)


def add_json_argument(parser: argparse.ArgumentParser, default: str | None) -> None:
    """``--json PATH``: where the table goes as JSON (``default`` None: only when given)."""
    parser.add_argument("--json", type=Path, default=Path(default) if default else None,
                        help=f"write the table and the machine description as JSON (default: {default})")


def add_levir_captions_argument(parser: argparse.ArgumentParser) -> None:
    """``--captions PATH``: the real LEVIR-CC ``LevirCCcaptions.json`` (or ``.json.gz``); default
    ``$SEMCC_LEVIR_DIR/LevirCCcaptions.json[.gz]`` when that folder has one. Read with :func:`read_levir_images`."""
    default = None
    if root := os.environ.get("SEMCC_LEVIR_DIR"):
        found = [p for p in (Path(root, "LevirCCcaptions.json"), Path(root, "LevirCCcaptions.json.gz")) if p.is_file()]
        default = found[0] if found else None
    parser.add_argument("--captions", type=Path, default=default,
                        help="LevirCCcaptions.json(.gz) of LEVIR-CC (default: in $SEMCC_LEVIR_DIR)")


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    """``--root`` (a LEVIR-CC-layout folder with LEVIR-MCI labels, default tiny's SynthLEVIR) and ``--split``."""
    parser.add_argument("--root", type=Path, default=Path("~/.cache/semcc/synthlevir-tiny/LEVIR-CC"),
                        help="LEVIR-CC folder with LEVIR-MCI labels (default: the tiny config's SynthLEVIR)")
    parser.add_argument("--split", default="val")


def split_pairs(parser: argparse.ArgumentParser, root: Path, split: str) -> tuple[Path, list[str]]:
    """``(images/<split> folder, sorted pair file names)`` of ``--root``'s captions file; a parser error naming the
    folder when it has no captions file or no pairs in the split."""
    from semcc.data.levir import load_levir_cc_captions

    root = root.expanduser()
    if not (root / "LevirCCcaptions.json").is_file():
        parser.error(f"{root}: no LevirCCcaptions.json (run `semcc fit --config configs/tiny.yaml` or `semcc synth`)")
    names = sorted(e["filename"] for e in load_levir_cc_captions(root / "LevirCCcaptions.json") if e["split"] == split)
    if not names:
        parser.error(f"{root}: no pairs in split {split!r}")
    return root / "images" / split, names


def change_target(label: np.ndarray, mask_mode: str) -> np.ndarray:
    """The change a binary mask of ``mask_mode`` marks in a LEVIR-MCI label (bool): ``building`` = 255 (tiny's), any
    other mode = any non-zero value (as :class:`semcc.data.levir.LevirMCIDataset` maps them)."""
    return label == 255 if mask_mode == "building" else label > 0


def read_levir_images(parser: argparse.ArgumentParser, path: Path | None) -> list[dict]:
    """The ``images`` entries of the captions file ``--captions`` named; a parser error when there is none."""
    if path is None:
        parser.error("give the real LEVIR-CC captions: --captions PATH (or set SEMCC_LEVIR_DIR to their folder)")
    if not path.is_file():
        parser.error(f"{path}: captions file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return json.load(f)["images"]


def report(
    title: str,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | Mapping[str, str],
    *,
    json_path: Path | None = None,
    dtype: str | None = None,
    device: str | None = None,
    notes: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Print ``title``, the machine line, the table and ``notes``; write them as JSON to ``json_path``."""
    table = markdown_table(rows, columns)
    print(title)
    print(machine_line(dtype, device))
    print(table)
    for note in notes:
        print(note)
    if json_path is not None:
        payload = {"title": title, "machine": machine_info(dtype, device), "rows": list(rows), "notes": list(notes),
                   **(extra or {})}
        json_path.write_text(json.dumps(payload, indent=2, default=str))
    return table


# ------------------------------------------------------------------------------------------------ memory
def _read_hwm_kib() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def current_rss_bytes() -> int:
    """Resident set size now (``/proc/self/statm``; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


class PeakMemory:
    """Peak memory of a measured stretch; :attr:`method` says what is measured.

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (tensors only, weights
    included: the absolute peak). CPU: peak RSS growth over the RSS at :meth:`reset`: ``VmHWM`` of
    ``/proc/self/status`` after resetting it by writing ``5`` to ``/proc/self/clear_refs`` where Linux allows
    it, else ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (a lifetime peak: only growth above any earlier
    peak of the process shows).
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.method = ""
        self._baseline = 0
        self.reset()

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = "CUDA max_memory_allocated (absolute, weights included)"
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.method = "CPU peak RSS growth (VmHWM reset via clear_refs)"
            self._baseline = current_rss_bytes()
        except OSError:
            self.method = "CPU peak RSS growth (ru_maxrss, lifetime peak)"
            self._baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def peak_bytes(self) -> int:
        """Peak bytes since :meth:`reset` (see the class docstring)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device))
        if "VmHWM" in self.method and (kib := _read_hwm_kib()) is not None:
            return max(0, kib * 1024 - self._baseline)
        return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self._baseline)


def mib(n_bytes: int) -> float:
    """Bytes -> MiB, one decimal."""
    return round(n_bytes / 2**20, 1)


# ------------------------------------------------------------------------------------------------ scoring
def score_predictor(
    predictor: Any,
    cc_root: Path,
    split: str = "test",
    *,
    mask_mode: str = "building",
    min_share: float | None = None,
    meteor: bool = False,
) -> dict[str, Any]:
    """Run ``predictor`` (:class:`semcc.inference.Predictor`) on every pair of ``split`` of a LEVIR-CC-layout
    folder with LEVIR-MCI labels and score it as a user would check a checkpoint (issue 13).

    Returns: ``cd_f1`` (torchmetrics through :mod:`semcc.metrics.detection`, pixels pooled over the split; target
    ``label == 255`` for ``mask_mode="building"``, as ``semcc test`` scores tiny, any change for ``"change"``),
    ``change_accuracy`` (captions right about change vs no change), ``false_change_caption`` /
    ``false_change_mask`` (unchanged pairs captioned as changed / whose mask marks at least ``min_share``,
    default :data:`semcc.metrics.truth.MASK_CHANGE_SHARE`, of the pixels), ``unchanged_pairs``, the caption scores of
    :func:`semcc.metrics.captioning.score_split` (``cider``, ``change_cider``, ``change_bleu_4``...), the semantic
    scores (:func:`semcc.metrics.claim_scores.semantic_scores` against :func:`semcc.metrics.truth.load_truth`),
    ``consistent_share`` (pairs whose caption agrees with their own mask), ``pairs``, ``seconds`` and
    ``captions`` (name -> caption).
    """
    import time

    from semcc.data.images import read_label
    from semcc.data.levir import load_levir_cc_captions, sentence_text
    from semcc.data.text import is_no_change
    from semcc.metrics.captioning import score_split
    from semcc.metrics.claim_scores import semantic_scores
    from semcc.metrics.detection import detection_metrics
    from semcc.metrics.truth import MASK_CHANGE_SHARE, load_truth

    min_share = MASK_CHANGE_SHARE if min_share is None else min_share

    entries = [e for e in load_levir_cc_captions(cc_root / "LevirCCcaptions.json") if e["split"] == split]
    refs = {e["filename"]: [sentence_text(s) for s in e["sentences"]] for e in entries}
    folder = cc_root / "images" / split
    names = sorted(refs)
    cd = detection_metrics(1)
    captions: dict[str, str] = {}
    false_caption = false_mask = unchanged = consistent = 0
    start = time.perf_counter()
    batch = predictor.batch_size
    for i in range(0, len(names), batch):
        chunk = names[i : i + batch]
        results = predictor.predict([folder / "A" / n for n in chunk], [folder / "B" / n for n in chunk], names=chunk)
        for name, result in zip(chunk, results, strict=True):
            label = read_label(folder / "label" / name)
            target = change_target(label, mask_mode)
            pred = result.mask > 0
            cd.update(torch.from_numpy(pred.ravel()).long(), torch.from_numpy(target.ravel()).long())
            captions[name] = result.caption
            consistent += int(result.consistency is not None and result.consistency.consistent)
            if all(is_no_change(r) for r in refs[name]):
                unchanged += 1
                false_caption += int(not is_no_change(result.caption))
                false_mask += int(pred.mean() >= min_share)
    seconds = time.perf_counter() - start
    out: dict[str, Any] = {"pairs": len(names), "unchanged_pairs": unchanged, "seconds": seconds,
                           "cd_f1": float(cd.compute()["f1"])}
    out.update(score_split(captions, refs, meteor=meteor))
    out["false_change_caption"] = false_caption / unchanged if unchanged else float("nan")
    out["false_change_mask"] = false_mask / unchanged if unchanged else float("nan")
    out["consistent_share"] = consistent / len(names) if names else float("nan")
    truth = load_truth(cc_root, split)
    if truth:
        out.update({f"sem_{k}": v for k, v in semantic_scores(captions, truth).items()})
    out["captions"] = captions
    return out
