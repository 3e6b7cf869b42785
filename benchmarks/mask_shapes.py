"""The shapes of a checkpoint's predicted change-mask components where a road changed and where none did: what
``road_shapes`` (0.17, beyond the paper; :func:`semcc.metrics.truth.road_shaped`) rests on.

A building-change head (tiny's, Eq. 6 with one class) marks new roads too; counted as buildings, such a component
makes a caption about a house outrank one about the road in consistency-aware decoding. This script runs a
``semcc fit`` checkpoint with :class:`semcc.inference.Predictor` on a split of a LEVIR-CC-layout folder with
LEVIR-MCI labels (``images/<split>/label``: 255 building change, 128 road change), takes each predicted mask's
components of object size (:data:`semcc.metrics.truth.MIN_COMPONENT_SHARE`), and prints one row per kind of pair:
pairs where a road changed (the label has road pixels), pairs where only something else changed, unchanged pairs.
Per row: pairs, components, the share of its bounding box a component fills (min / median / max), the largest
length-to-width ratio and long side (a share of the image side), the components :func:`road_shaped` takes, and the
pairs with at least one.

Usage: ``python benchmarks/mask_shapes.py --ckpt CKPT [--root ~/.cache/semcc/synthlevir-tiny/LEVIR-CC]
[--split val]``
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from _common import add_json_argument, add_split_arguments, report, split_pairs

COLUMNS = {
    "kind": "kind of pair",
    "pairs": "pairs",
    "components": "components",
    "fill": "box filled (min / median / max)",
    "aspect": "max length / width",
    "length": "max long side / image side",
    "road_shaped": "road-shaped components",
    "pairs_road_shaped": "pairs with one",
}
KINDS = ("a road changed", "buildings changed, no road", "no building or road change")


def mask_shapes(mask: np.ndarray, min_share: float | None = None) -> list[dict[str, Any]]:
    """The components of object size of a predicted mask (non-zero pixels): per component its ``pixels``, ``fill``
    (share of its bounding box), ``aspect`` (long side / short side), ``length`` (long side / the image's short side)
    and ``road_shaped`` (:func:`semcc.metrics.truth.road_shaped`)."""
    from semcc.metrics.truth import MIN_COMPONENT_SHARE, component_boxes, connected_components, road_shaped

    mask = np.asarray(mask) > 0
    labels, n = connected_components(mask)
    if n == 0:
        return []
    sizes, heights, widths = component_boxes(labels, n)
    side = min(mask.shape)
    min_pixels = max(1, round((MIN_COMPONENT_SHARE if min_share is None else min_share) * mask.size))
    out = []
    for i in range(1, n + 1):
        if sizes[i] < min_pixels:
            continue
        h, w, px = int(heights[i]), int(widths[i]), int(sizes[i])
        out.append({"pixels": px, "fill": px / (h * w), "aspect": max(h, w) / min(h, w), "length": max(h, w) / side,
                    "road_shaped": road_shaped(h, w, px, side)})
    return out


def summarize(kind: str, pairs: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """One table row for the components of ``pairs`` (one list of :func:`mask_shapes` each)."""
    comps = [c for pair in pairs for c in pair]
    fills = [c["fill"] for c in comps]
    row: dict[str, Any] = {"kind": kind, "pairs": len(pairs), "components": len(comps),
                           "road_shaped": sum(c["road_shaped"] for c in comps),
                           "pairs_road_shaped": sum(any(c["road_shaped"] for c in pair) for pair in pairs)}
    if comps:
        row["fill"] = f"{min(fills):.2f} / {statistics.median(fills):.2f} / {max(fills):.2f}"
        row["aspect"] = round(max(c["aspect"] for c in comps), 2)
        row["length"] = round(max(c["length"] for c in comps), 2)
    else:
        row.update(fill="-", aspect="-", length="-")
    return row


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    from semcc.data.images import read_label
    from semcc.inference import Predictor
    from semcc.metrics.truth import MIN_COMPONENT_SHARE, ROAD_MAX_FILL, ROAD_MIN_ASPECT, ROAD_MIN_LENGTH

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True, help="a semcc fit checkpoint")
    add_split_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=16)
    add_json_argument(parser, "mask_shapes.json")
    args = parser.parse_args(argv)
    folder, names = split_pairs(parser, args.root, args.split)
    root = folder.parent.parent
    predictor = Predictor.from_checkpoint(args.ckpt, decoding="greedy", batch_size=args.batch_size)
    groups: dict[str, list[list[dict[str, Any]]]] = {k: [] for k in KINDS}
    for i in range(0, len(names), args.batch_size):
        chunk = names[i : i + args.batch_size]
        results = predictor.predict([folder / "A" / n for n in chunk], [folder / "B" / n for n in chunk], names=chunk)
        for name, result in zip(chunk, results, strict=True):
            label = read_label(folder / "label" / name)
            kind = KINDS[0] if (label == 128).any() else (KINDS[1] if (label > 0).any() else KINDS[2])
            groups[kind].append(mask_shapes(result.mask))
    rows = [summarize(kind, pairs) for kind, pairs in groups.items()]
    report(f"predicted mask components by kind of pair: {args.ckpt} on {root} ({args.split}, {len(names)} pairs)",
           rows, COLUMNS, json_path=args.json,
           notes=[f"road-shaped (semcc.metrics.truth.road_shaped): long side >= {ROAD_MIN_LENGTH:g} of the image side, "
                  f"and box filled <= {ROAD_MAX_FILL:g} or length / width >= {ROAD_MIN_ASPECT:g}; components under "
                  f"{MIN_COMPONENT_SHARE:g} of the image are specks, left out"])
    return rows


if __name__ == "__main__":
    main()
