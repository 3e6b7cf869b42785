"""SynthLEVIR writing: the data set on disk in the real LEVIR folder layouts, generated once and reused.

Under ``root``: ``LEVIR-CC/`` (``LevirCCcaptions.json`` in the LEVIR-CC format, ``images/{split}/{A,B}`` pairs
and the LEVIR-MCI ``label`` masks, ``synth_meta.json`` recording per pair the changed objects and what each
caption claims), ``LEVIR-CD/`` (``{split}/{A,B,label}`` tiles) and ``synthlevir.json`` (the config and counts,
written last: :func:`is_generated` trusts only a complete one). Pairs and tiles are made in worker processes;
the same seed and config give identical bytes whatever the number of workers.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from semcc.data.synthetic.config import SynthLEVIRConfig
from semcc.data.synthetic.language import count_words
from semcc.data.synthetic.layouts import _make_pair, _make_tile

__all__ = ["generate_synth_levir", "is_generated"]

_MARKER = "synthlevir.json"
_PNG = {"format": "PNG", "compress_level": 1}


# ----------------------------------------------------------------------------------------------------
# Files

def _save_png(arr: np.ndarray, path: Path) -> None:
    """Write a PNG atomically (temporary name, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(arr).save(tmp, **_PNG)
    os.replace(tmp, path)


def _write_json(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)


def _pair_name(split: str, index: int) -> str:
    return f"{split}_{index:06d}.png"


def _tile_name(split: str, index: int) -> str:
    return f"{split}_{index + 1}.png"


def _work(task: tuple[Any, ...]) -> dict[str, Any]:
    """Generate and write one pair or tile (runs in a worker process); returns its captions / meta."""
    kind, split, index, seed, size, scale, nuisance, ratio, out = task
    out = Path(out)
    if kind == "cc":
        a, b, label, captions, meta = _make_pair(seed, split, index, size, nuisance, ratio)
        name = _pair_name(split, index)
        base = out / "images" / split
    else:
        a, b, label, meta = _make_tile(seed, split, index, size, scale, nuisance)
        captions, name, base = [], _tile_name(split, index), out / split
    for sub, arr in (("A", a), ("B", b), ("label", label)):
        _save_png(arr, base / sub / name)
    return {"kind": kind, "split": split, "name": name, "captions": captions, "meta": meta}


def _read_marker(root: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((root / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _count_pngs(folder: Path) -> int:
    try:
        return sum(1 for e in os.scandir(folder) if e.name.endswith(".png") and e.is_file())
    except OSError:
        return -1


def is_generated(root: str | Path, config: SynthLEVIRConfig | None = None) -> bool:
    """True when ``root`` holds a complete SynthLEVIR data set (made with ``config``, if given).

    Complete means: ``synthlevir.json`` says ``"complete": true`` (it is written last, so an interrupted
    run never looks complete), the captions JSON exists and every image folder holds the recorded number
    of PNGs. ``config.workers`` is ignored (it does not change the files).
    """
    root = Path(root)
    data = _read_marker(root)
    if data is None or data.get("complete") is not True:
        return False
    if config is not None and data.get("config") != config.content_dict():
        return False
    counts = data.get("counts", {})
    cc, cd = root / "LEVIR-CC", root / "LEVIR-CD"
    if counts.get("LEVIR-CC") and not (cc / "LevirCCcaptions.json").is_file():
        return False
    for split, n in counts.get("LEVIR-CC", {}).items():
        if any(_count_pngs(cc / "images" / split / sub) != n for sub in ("A", "B", "label")):
            return False
    for split, n in counts.get("LEVIR-CD", {}).items():
        if any(_count_pngs(cd / split / sub) != n for sub in ("A", "B", "label")):
            return False
    return True


def _summary(root: Path, marker: dict[str, Any], seconds: float, reused: bool) -> dict[str, Any]:
    counts = marker["counts"]
    share = {ds: {s: (marker["changed"][ds][s] / n if n else 0.0) for s, n in counts[ds].items()}
             for ds in counts}
    return {"root": str(root),
            "levir_cc": str(root / "LEVIR-CC") if counts["LEVIR-CC"] else None,
            "levir_cd": str(root / "LEVIR-CD") if counts["LEVIR-CD"] else None,
            "counts": counts, "changed": marker["changed"], "changed_share": share,
            "config": marker["config"], "seconds": seconds, "reused": reused}


def generate_synth_levir(root: str | Path, config: SynthLEVIRConfig | None = None, *,
                         overwrite: bool = False) -> dict[str, Any]:
    """Generate SynthLEVIR under ``root`` (``LEVIR-CC/`` with MCI labels, ``LEVIR-CD/``, ``synthlevir.json``).

    If ``root`` already holds a complete data set made with the same config, nothing is generated (the
    summary says ``"reused": True``) unless ``overwrite``. A partial data set (an interrupted run) is
    replaced. A complete data set made with another config, or LEVIR folders that SynthLEVIR did not write,
    raise ``FileExistsError`` unless ``overwrite``.

    Returns a summary: ``root``, ``levir_cc`` / ``levir_cd`` paths (None when no split has items),
    ``counts`` and ``changed`` per data set and split, ``changed_share``, ``config``, ``seconds``, ``reused``.
    """
    config = config if config is not None else SynthLEVIRConfig()
    root = Path(root)
    start = time.perf_counter()
    cfg = config.content_dict()
    marker = _read_marker(root)
    cc_dir, cd_dir = root / "LEVIR-CC", root / "LEVIR-CD"
    if not overwrite:
        if marker is not None and is_generated(root, config):
            return _summary(root, marker, time.perf_counter() - start, True)
        if marker is not None and marker.get("complete") is True and marker.get("config") != cfg:
            raise FileExistsError(f"{root} holds a SynthLEVIR data set made with another config "
                                  f"({marker.get('config')}); pass overwrite=True to replace it")
        if marker is None and (cc_dir.exists() or cd_dir.exists()):
            raise FileExistsError(f"{root} holds LEVIR-CC / LEVIR-CD folders that SynthLEVIR did not write; "
                                  "pass overwrite=True to replace them")
    for d in (cc_dir, cd_dir):
        if d.exists():
            shutil.rmtree(d)
    root.mkdir(parents=True, exist_ok=True)
    counts = {"LEVIR-CC": cfg["pairs"], "LEVIR-CD": cfg["cd_tiles"]}
    _write_json({"complete": False, "config": cfg, "counts": counts}, root / _MARKER)
    for split in cfg["pairs"]:
        for sub in ("A", "B", "label"):
            (cc_dir / "images" / split / sub).mkdir(parents=True, exist_ok=True)
    for split in cfg["cd_tiles"]:
        for sub in ("A", "B", "label"):
            (cd_dir / split / sub).mkdir(parents=True, exist_ok=True)

    common = (config.seed, config.size, config.cd_scale, float(config.nuisance), float(config.no_change_ratio))
    tasks = [("cd", s, i, *common, str(cd_dir)) for s in cfg["cd_tiles"] for i in range(cfg["cd_tiles"][s])]
    tasks += [("cc", s, i, *common, str(cc_dir)) for s in cfg["pairs"] for i in range(cfg["pairs"][s])]
    workers = min(config.workers or os.cpu_count() or 1, max(1, len(tasks)))
    if workers <= 1:
        results = [_work(t) for t in tasks]
    else:
        # fork where there is one: the workers use numpy and Pillow only, and callers need no __main__ guard
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(workers) as pool:
            results = pool.map(_work, tasks, chunksize=max(1, min(16, len(tasks) // (4 * workers))))

    changed = {"LEVIR-CC": {s: 0 for s in cfg["pairs"]}, "LEVIR-CD": {s: 0 for s in cfg["cd_tiles"]}}
    images, metas, imgid = [], [], 0
    for r in results:
        ds = "LEVIR-CC" if r["kind"] == "cc" else "LEVIR-CD"
        changed[ds][r["split"]] += int(r["meta"]["changed"])
        if r["kind"] != "cc":
            continue
        sentences = [{"tokens": c.split(), "raw": f"{c} .", "imgid": imgid, "sentid": 5 * imgid + k}
                     for k, c in enumerate(r["captions"])]
        images.append({"filepath": r["split"], "filename": r["name"], "imgid": imgid, "split": r["split"],
                       "sentences": sentences})
        metas.append({"filename": r["name"], "split": r["split"], "imgid": imgid, **r["meta"]})
        imgid += 1
    if cfg["pairs"]:
        _write_json({"images": images}, cc_dir / "LevirCCcaptions.json")
        _write_json({"rules": {"count_words": {str(k): list(count_words(k)) for k in range(1, 7)},
                               "place": "3x3 cell of the centroid if >= 80% of the pixels lie in it, else the "
                                        "top/bottom row or left/right column holding >= 80%, else none"},
                     "pairs": metas}, cc_dir / "synth_meta.json")
    marker = {"complete": True, "config": cfg, "counts": counts, "changed": changed}
    _write_json(marker, root / _MARKER)
    return _summary(root, marker, time.perf_counter() - start, False)
