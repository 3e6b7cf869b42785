"""Where a checkpoint's change mask (Eq. 6) goes wrong: in the outlines of what changed or in whole objects, and how
well a mask drawn on the encoder's 16-px token grid could do at all.

Runs ``semcc fit`` checkpoints with :class:`semcc.inference.Predictor` on a split of a LEVIR-CC-layout folder with
LEVIR-MCI labels (``images/<split>/label``) and counts, over all its pairs, against the change the checkpoint was
trained to mark (its ``binary_mask_class``: ``building`` = label 255, ``change`` = any non-zero label):

* F1, precision and recall of the change pixels (``semcc validate``'s ``cd_f1`` on the same pairs);
* the recall inside the changes (pixels more than ``--rim`` px from their outline) and on their rim (the outer
  ``--rim`` px);
* the true components (8-connected) of which under 20% is marked (missed objects) and their share of the change
  pixels; the predicted components of which under 20% lies on a change (false objects); the false pixels within
  ``--rim`` px of a change (outlines drawn too wide).

``--grids 16 8 4`` adds one row per grid: the truth averaged over ``g x g`` blocks, resized back bilinearly and cut
at one half, the mask of a decoder that knows the truth but draws it on a ``g``-px grid. Eq. 6's SimpleFPN
upsamples the ViT's 16-px tokens without seeing the pixels; the 16-px row shows what the token grid alone would
allow (a head can learn to draw below a token; ``cd_head.image_detail``, unreleased, also gives it the pixels).

Usage: ``python benchmarks/mask_errors.py --ckpt CKPT [CKPT ...] [--root ~/.cache/semcc/synthlevir-tiny/LEVIR-CC]
[--split val] [--grids 16 8 4] [--rim 2]``
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from _common import add_json_argument, add_split_arguments, change_target, report, split_pairs

COLUMNS = {
    "mask": "mask",
    "f1": "F1",
    "precision": "precision",
    "recall": "recall",
    "inside_recall": "recall inside",
    "rim_recall": "recall on the rim",
    "missed_objects": "objects missed",
    "missed_share": "their share of the change",
    "false_objects": "false objects",
    "false_near_share": "false pixels at an outline",
}
#: A component counts as found (or as true) when at least this share of its pixels is marked (lies on a change).
FOUND_SHARE = 0.2


def _window(mask: np.ndarray, r: int, reduce: str) -> np.ndarray:
    """Erosion (``all``) or dilation (``any``) of a boolean mask by a ``(2r + 1)``-px square."""
    if r == 0:
        return mask.copy()
    padded = np.pad(mask, r, constant_values=(reduce == "all"))
    view = np.lib.stride_tricks.sliding_window_view(padded, (2 * r + 1, 2 * r + 1))
    return view.all(axis=(-1, -2)) if reduce == "all" else view.any(axis=(-1, -2))


def _components_found(labels: np.ndarray, n: int, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per component 1..n of ``labels``: its pixel count and whether at least FOUND_SHARE of it lies on ``other``."""
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    on = np.bincount(labels.ravel(), weights=other.ravel().astype(np.float64), minlength=n + 1)[1:]
    return sizes, on >= FOUND_SHARE * sizes


def mask_errors(pred: np.ndarray, truth: np.ndarray, rim: int = 2) -> dict[str, int]:
    """Pixel and object counts of one predicted mask against its truth (non-zero = change), ``[H, W]`` each."""
    from semcc.metrics.truth import connected_components

    pred, truth = np.asarray(pred) > 0, np.asarray(truth) > 0
    if pred.shape != truth.shape:
        raise ValueError(f"mask {pred.shape} and truth {truth.shape} differ in size")
    inside = _window(truth, rim, "all")
    edge = truth & ~inside
    near = _window(truth, rim, "any")
    labels, n = connected_components(truth)
    sizes, found = _components_found(labels, n, pred)
    plabels, pn = connected_components(pred)
    _, real = _components_found(plabels, pn, truth)
    return {
        "tp": int((pred & truth).sum()), "pred": int(pred.sum()), "true": int(truth.sum()),
        "inside": int(inside.sum()), "inside_found": int((inside & pred).sum()),
        "rim": int(edge.sum()), "rim_found": int((edge & pred).sum()),
        "objects": n, "missed_objects": int((~found).sum()), "missed_pixels": int(sizes[~found].sum()),
        "false_objects": int((~real).sum()), "false": int((pred & ~truth).sum()),
        "false_near": int((pred & ~truth & near).sum()),
    }


def summarize(name: str, counts: list[dict[str, int]]) -> dict[str, Any]:
    """One table row from the :func:`mask_errors` of a split's pairs."""
    total = {k: sum(c[k] for c in counts) for k in counts[0]} if counts else {}

    def ratio(part: str, whole: str) -> float | None:
        return round(total[part] / total[whole], 3) if total.get(whole) else None

    marked = total.get("pred", 0) + total.get("true", 0)
    return {
        "mask": name, "f1": round(2 * total["tp"] / marked, 4) if marked else None,
        "precision": ratio("tp", "pred"), "recall": ratio("tp", "true"),
        "inside_recall": ratio("inside_found", "inside"), "rim_recall": ratio("rim_found", "rim"),
        "missed_objects": f"{total.get('missed_objects', 0)} / {total.get('objects', 0)}",
        "missed_share": ratio("missed_pixels", "true"), "false_objects": total.get("false_objects", 0),
        "false_near_share": ratio("false_near", "false"),
    }


def grid_truth(truth: np.ndarray, grid: int) -> np.ndarray:
    """The truth as a ``grid``-px grid can draw it: block means, bilinear resize back, cut at one half (bool)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.asarray(truth) > 0).float()[None, None]
    h, w = t.shape[-2:]
    ph, pw = -h % grid, -w % grid
    blocks = F.avg_pool2d(F.pad(t, (0, pw, 0, ph)), grid)
    back = F.interpolate(blocks, scale_factor=grid, mode="bilinear", align_corners=False)[..., :h, :w]
    return (back[0, 0] > 0.5).numpy()


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    from semcc.data.images import read_label
    from semcc.inference import Predictor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, nargs="+", required=True, help="semcc fit checkpoints (one row each)")
    add_split_arguments(parser)
    parser.add_argument("--grids", type=int, nargs="*", default=[16], help="grid rows of the truth (none: --grids)")
    parser.add_argument("--rim", type=int, default=2, help="width of a change's outline in pixels (default 2)")
    parser.add_argument("--batch-size", type=int, default=16)
    add_json_argument(parser, "mask_errors.json")
    args = parser.parse_args(argv)
    if args.rim < 0 or any(g < 1 for g in args.grids):
        parser.error("--rim must be >= 0 and every --grids value >= 1")
    folder, names = split_pairs(parser, args.root, args.split)
    root = folder.parent.parent
    labels = [read_label(folder / "label" / n) for n in names]
    truths: dict[str, list[np.ndarray]] = {}  # per mask class (building / change), read from the labels once
    rows = []
    for ckpt in args.ckpt:
        predictor = Predictor.from_checkpoint(ckpt, decoding="greedy", batch_size=args.batch_size)
        if predictor.num_classes != 2:
            parser.error(f"{ckpt}: a {predictor.num_classes}-class mask; this script scores binary change masks")
        cls = predictor.binary_mask_class
        truth = truths.setdefault(cls, [change_target(lab, cls) for lab in labels])
        counts = []
        for i in range(0, len(names), args.batch_size):
            chunk = names[i : i + args.batch_size]
            results = predictor.predict([folder / "A" / n for n in chunk], [folder / "B" / n for n in chunk],
                                        names=chunk)
            counts += [mask_errors(r.mask, truth[i + j], args.rim) for j, r in enumerate(results)]
        rows.append(summarize(str(ckpt), counts))
    for grid in args.grids:
        for cls in sorted(truths):
            suffix = f" ({cls} change)" if len(truths) > 1 else ""
            rows.append(summarize(f"the truth on a {grid}-px grid{suffix}",
                                  [mask_errors(grid_truth(t, grid), t, args.rim) for t in truths[cls]]))
    report(f"change-mask errors on {root} ({args.split}, {len(names)} pairs, {'/'.join(sorted(truths))} change)",
           rows, COLUMNS, json_path=args.json,
           notes=[f"rim: the outer {args.rim} px of each change; an object is missed (false) when under "
                  f"{FOUND_SHARE:g} of it is marked (lies on a change); false pixels at an outline: within {args.rim} "
                  "px of a change"])
    return rows


if __name__ == "__main__":
    main()
