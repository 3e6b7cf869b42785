"""``semcc caption BEFORE AFTER --ckpt CKPT``: caption one pair of the user's and write its mask and overlay.

Prints the caption (paper Eq. 7), writes ``<out>/<name>_mask.png`` (the change mask of Eq. 6 at the pair's
full size, :func:`semcc.data.inputs.mask_to_png`), ``<out>/<name>_overlay.png``
(:func:`semcc.visualize.overlay_figure`) and ``<out>/<name>.json`` (the caption, its claim, the mask's summary and
their disagreements: :mod:`semcc.metrics.consistency`, issue 13), and prints the paths and any disagreement.
``--decoding consistent`` picks the candidate caption most consistent with the mask.
The work is :class:`semcc.inference.Predictor`'s.

A ``.tif`` / ``.tiff`` pair (either file) is a georeferenced scene of any size (issue 14): :func:`semcc.geo.
caption_scene` writes ``<out>/<name>_mask.tif`` (same CRS and transform), ``<name>_changes.geojson`` (change
polygons with areas and captions) and ``<name>_summary.json``, and the command prints the scene caption, the
summary and the paths. ``--bands``, ``--resample``, ``--max-region-captions`` apply to such pairs only.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from semcc.commands import CommandError

__all__ = ["build_parser", "run"]


def build_parser() -> argparse.ArgumentParser:
    """The options of ``semcc caption``."""
    p = argparse.ArgumentParser(
        prog="semcc caption",
        description="Caption the change between two images of one place (any size, same size) and write the "
        "change mask and an overlay picture (paper Eq. 1 at inference).",
    )
    p.add_argument("before", type=Path, help="the earlier image (A)")
    p.add_argument("after", type=Path, help="the later image (B)")
    p.add_argument("--ckpt", required=True, type=Path, help="a checkpoint written by `semcc fit`")
    p.add_argument("--out", type=Path, default=Path("semcc-caption"), help="output folder (default ./semcc-caption)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward of the sliding window")
    p.add_argument("--overlap", type=float, default=0.25, help="overlap of the sliding windows, in [0, 1)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="caption length limit (default: the run's)")
    p.add_argument("--decoding", choices=("greedy", "consistent"), default=None,
                   help="greedy, or consistent: among the greedy caption and each instruction's beams, the caption "
                   "most consistent with the predicted mask (default: the run's model.evaluation.decoding)")
    p.add_argument("--beams", type=int, default=None,
                   help="beams per instruction for --decoding consistent (default: the run's, else 2)")
    p.add_argument("--length-penalty", type=float, default=None,
                   help="how the beams are ranked: the sum of their token log-probabilities over length ** this (1: "
                   "the mean, favouring longer captions; 0: the sum) (default: the run's, else 1)")
    p.add_argument("--samples", type=int, default=None,
                   help="captions drawn from the model for --decoding consistent: they join the candidates, and ties "
                   "among the captions the mask confirms equally well go to the one most like the samples "
                   "(minimum Bayes risk) (default: the run's, else 0)")
    p.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature of --samples (default: the run's, else 0.5)")
    p.add_argument("--change-share", type=float, default=None,
                   help="the share of the mask's pixels from which it says 'changed', for --decoding consistent "
                   "and the consistency report, in (0, 1] (default: the run's, else 0.005)")
    p.add_argument("--mask-prefixes", action=argparse.BooleanOptionalAction, default=None,
                   help="for --decoding consistent: the model's caption continued from openings that say the count "
                   "and class of what the mask marks ('two houses') joins the candidates (default: the run's "
                   "model.evaluation.mask_prefixes, else off)")
    p.add_argument("--road-shapes", action=argparse.BooleanOptionalAction, default=None,
                   help="a building-change mask's components shaped like a road (long and thin) are not counted as "
                   "buildings by the consistency check and decoding (default: the run's "
                   "model.evaluation.road_shapes, else off)")
    p.add_argument("--first-clauses", action=argparse.BooleanOptionalAction, default=None,
                   help="for --decoding consistent: each candidate's first clause (the words before its first 'and') "
                   "joins the candidates, so a caption of two events wins only where the mask confirms more of it "
                   "(default: the run's model.evaluation.first_clauses, else off)")
    p.add_argument("--match-radiometry", action=argparse.BooleanOptionalAction, default=None,
                   help="match the two dates' per-channel mean and standard deviation before the model (against "
                   "illumination, haze, season and sensor shifts; default: the run's "
                   "model.evaluation.match_radiometry, else as the model was trained)")
    p.add_argument("--mask-tta", choices=("d4", "flips", "none"), default=None,  # semcc.models.tta.MASK_TTA's
                   help="test-time augmentation of the mask: its logits averaged over the pair and its flips (flips) "
                   "or all eight symmetries of the square (d4) (default: the run's model.evaluation.mask_tta, else "
                   "none)")
    geo = p.add_argument_group("GeoTIFF scenes (.tif/.tiff pairs, any size; needs pip install 'semcc[geo]')")
    geo.add_argument("--bands", default=None,
                     help="1-based bands read as red,green,blue, e.g. 3,2,1 (default: the RGB colour "
                     "interpretation or descriptions, else the first three)")
    geo.add_argument("--resample", action="store_true",
                     help="warp the after raster onto the before raster's grid when CRS, transform or size differ")
    geo.add_argument("--max-region-captions", type=int, default=None,
                     help="caption the neighbourhood of this many of the largest change regions (default 20)")
    return p


def run(args: argparse.Namespace) -> int:
    """Caption, mask and overlay of ``args.before`` / ``args.after``; the inputs are checked before the model
    is loaded."""
    from semcc.data.inputs import load_pair, mask_to_png
    from semcc.inference import Predictor, check_device
    from semcc.visualize import overlay_figure

    check_device(args.device)
    from semcc.geo import is_geo_path

    if is_geo_path(args.before) or is_geo_path(args.after):
        return _run_scene(args)
    for option, value in (("--bands", args.bands), ("--resample", args.resample or None),
                          ("--max-region-captions", args.max_region_captions)):
        if value is not None:
            raise CommandError(f"{option}: only for GeoTIFF pairs (.tif/.tiff), not {args.before.suffix} images")
    before, after = load_pair(args.before, args.after)  # input errors before the model is loaded
    predictor = Predictor.from_checkpoint(
        args.ckpt, device=args.device, batch_size=args.batch_size, overlap=args.overlap,
        max_new_tokens=args.max_new_tokens, decoding=args.decoding, beams=args.beams,
        length_penalty=args.length_penalty,
        samples=args.samples, temperature=args.temperature, change_share=args.change_share,
        mask_prefixes=args.mask_prefixes, road_shapes=args.road_shapes, first_clauses=args.first_clauses,
        match_radiometry=args.match_radiometry, mask_tta=args.mask_tta,
    )
    name = args.before.stem
    result = predictor.predict(before, after, names=[name])
    assert not isinstance(result, list)
    args.out.mkdir(parents=True, exist_ok=True)
    print(result.caption if result.caption is not None else "(this model has no caption head)")
    if result.mask is not None:
        mask_path = args.out / f"{name}_mask.png"
        mask_to_png(result.mask, predictor.num_classes).save(mask_path)
        print(f"mask: {mask_path}")
    overlay_path = args.out / f"{name}_overlay.png"
    overlay_figure(before, after, result.mask, result.caption or "").save(overlay_path)
    print(f"overlay: {overlay_path}")
    if result.consistency is not None:
        for kind, note in zip(result.consistency.kinds, result.consistency.disagreements, strict=True):
            print(f"disagreement ({kind}): {note}")
    report = {**result.to_dict(), "before": str(args.before), "after": str(args.after), "checkpoint": str(args.ckpt),
              "decoding": predictor.decoding, "samples": predictor.samples, "change_share": predictor.change_share,
              "mask_prefixes": predictor.mask_prefixes, "road_shapes": predictor.road_shapes,
              "first_clauses": predictor.first_clauses, "match_radiometry": predictor.match_radiometry,
              "mask_tta": predictor.mask_tta}
    json_path = args.out / f"{name}.json"
    tmp = json_path.with_name(f".{json_path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, json_path)
    print(f"report: {json_path}")
    return 0


def _run_scene(args: argparse.Namespace) -> int:
    """A GeoTIFF pair: checked before the model is loaded, then :func:`semcc.geo.caption_scene`."""
    from semcc.geo import caption_scene, check_scene, parse_bands
    from semcc.inference import Predictor

    bands = parse_bands(args.bands) if args.bands is not None else None
    max_captions = 20 if args.max_region_captions is None else args.max_region_captions
    if max_captions < 0:
        raise CommandError(f"--max-region-captions: must be 0 or more, got {max_captions}")
    try:
        check_scene(args.before, args.after, bands=bands, resample=args.resample)
    except ImportError as err:
        raise CommandError(f"{args.before}: {err}") from None
    predictor = Predictor.from_checkpoint(
        args.ckpt, device=args.device, batch_size=args.batch_size, overlap=args.overlap,
        max_new_tokens=args.max_new_tokens, decoding=args.decoding, beams=args.beams,
        length_penalty=args.length_penalty,
        samples=args.samples, temperature=args.temperature, change_share=args.change_share,
        mask_prefixes=args.mask_prefixes, road_shapes=args.road_shapes, first_clauses=args.first_clauses,
        match_radiometry=args.match_radiometry, mask_tta=args.mask_tta,
    )
    result = caption_scene(predictor, args.before, args.after, args.out, bands=bands, resample=args.resample,
                           max_region_captions=max_captions)
    print(result.caption if result.caption is not None else "(this model has no caption head)")
    print(f"summary: {result.summary['summary']}")
    print(f"mask: {result.mask_path}")
    print(f"changes: {result.geojson_path}")
    print(f"report: {result.summary_path}")
    return 0
