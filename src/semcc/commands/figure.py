"""``semcc figure --ckpt CKPT --root ROOT``: a Fig. 9-style picture of N pairs of a LEVIR-CC / LEVIR-MCI split.

Rows of before, after, ground-truth mask (``images/<split>/label/`` when present, else a blank "no GT mask"
panel), predicted mask, with the reference and predicted captions (:func:`semcc.visualize.results_figure`);
the predictions are :class:`semcc.inference.Predictor`'s (paper Eq. 1 at inference).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from semcc.commands import CommandError

__all__ = ["build_parser", "run", "split_entries"]


def build_parser() -> argparse.ArgumentParser:
    """The options of ``semcc figure``."""
    p = argparse.ArgumentParser(
        prog="semcc figure",
        description="Draw a Fig. 9-style picture of N pairs of a LEVIR-CC / LEVIR-MCI split: before, after, GT "
        "mask, predicted mask, GT and predicted captions.",
    )
    p.add_argument("--ckpt", required=True, type=Path, help="a checkpoint written by `semcc fit`")
    p.add_argument("--root", required=True, type=Path,
                   help="LEVIR-CC or LEVIR-MCI folder (LevirCCcaptions.json[.gz] + images/SPLIT/{A,B[,label]})")
    p.add_argument("--split", default="test")
    p.add_argument("--n", type=int, default=6, help="pairs to draw (of those with images on disk)")
    p.add_argument("--out", type=Path, default=Path("fig9.png"), help="output PNG (default fig9.png)")
    p.add_argument("--seed", type=int, default=0, help="seed of the choice of pairs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--panel-size", type=int, default=256, help="panel size in pixels")
    return p


def split_entries(root: Path, split: str) -> list[dict]:
    """The caption entries of ``split`` in ``root``'s ``LevirCCcaptions.json`` (or ``.json.gz``)."""
    from semcc.data.levir import LevirDataError, load_levir_cc_captions

    plain, packed = root / "LevirCCcaptions.json", root / "LevirCCcaptions.json.gz"
    images = load_levir_cc_captions(plain if plain.is_file() or not packed.is_file() else packed)
    entries = [e for e in images if e["split"] == split]
    if not entries:
        splits = sorted({str(e["split"]) for e in images})
        raise LevirDataError(f"{root}: no pairs in split {split!r}; splits: {', '.join(splits)}")
    return entries


def run(args: argparse.Namespace) -> int:
    """Choose ``args.n`` pairs (seeded) with both images on disk, predict them and draw the figure."""
    from semcc.data.images import read_label
    from semcc.data.levir import sentence_text
    from semcc.inference import Predictor, check_device
    from semcc.visualize import FigureSample, results_figure

    if args.n < 1:
        raise CommandError(f"--n must be at least 1, got {args.n}")
    check_device(args.device)
    entries = split_entries(args.root, args.split)
    rows = []
    for e in entries:
        folder = args.root / "images" / str(e.get("filepath") or e["split"])
        a, b, label = (folder / sub / e["filename"] for sub in ("A", "B", "label"))
        if a.is_file() and b.is_file():
            rows.append((e, a, b, label if label.is_file() else None))
    if not rows:
        raise CommandError(f"{args.root / 'images'}: no {args.split} pair has both its A and B image on disk")
    chosen = sorted(random.Random(args.seed).sample(rows, min(args.n, len(rows))), key=lambda r: r[0]["filename"])
    predictor = Predictor.from_checkpoint(args.ckpt, device=args.device, batch_size=args.batch_size)
    results = predictor.predict([r[1] for r in chosen], [r[2] for r in chosen])
    samples = [
        FigureSample(
            before=a, after=b, pred_mask=res.mask, pred_caption=res.caption,
            gt_mask=read_label(label) if label is not None else None,
            gt_caption=sentence_text(e["sentences"][0]), name=str(e["filename"]),
        )
        for (e, a, b, label), res in zip(chosen, results, strict=True)
    ]
    figure = results_figure(samples, panel_size=args.panel_size, num_classes=max(2, predictor.num_classes))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.out)
    missing = sum(1 for r in chosen if r[3] is None)
    print(f"semcc figure: {len(chosen)} {args.split} pairs" + (f" ({missing} without a GT mask)" if missing else ""))
    print(f"figure: {args.out}")
    return 0
