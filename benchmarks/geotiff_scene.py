"""GeoTIFF scenes of any size (issue 14, part 1; beyond the paper): time and peak memory of
:func:`semcc.geo.caption_scene` (Eq. 6 masks by the sliding window, strip by strip; Eq. 7 captions of the scene and
of the largest change regions, through :class:`semcc.inference.Predictor`) as the scene grows.

For each ``--sizes`` N it writes a before / after GeoTIFF pair of N x N px (UTM zone 50N, EPSG:32650, 0.5 m
pixels, tiled 256 x 256, deflate) by mosaicking SynthLEVIR's LEVIR-CD tiles (before = the tiles' A, after = their
B; each 1024-px block takes a tile, rotated and flipped by its position), block by block so that writing the scene
is bounded too; the tiles are generated under ``--work`` when missing (:func:`semcc.data.synthetic.
generate_synth_levir`, 8 tiles of 1024 px). Each scene is then captioned in a fresh Python process on the CPU
(``--ckpt``: a ``semcc fit`` checkpoint), which reports:

* wall time of :func:`~semcc.geo.caption_scene` (mask, polygons, region and scene captions), and of the mask alone;
* windows per second (the sliding windows of the mask, per second of the mask's time);
* peak RSS of the process (``ru_maxrss``: model, torch, GDAL, everything) and the peak's growth over the RSS after
  the model was loaded and ran one warm-up batch (``VmHWM`` reset, :class:`_common.PeakMemory`): memory must stay
  bounded, roughly flat or growing with the scene's width only (a window's height of rows across the scene), not
  with its area.

Usage: ``python benchmarks/geotiff_scene.py --ckpt CKPT [--sizes 2000 4000 8000] [--work
~/.cache/semcc/geotiff-bench] [--batch-size 8]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import PeakMemory, add_json_argument, current_rss_bytes, mib, report

CRS = "EPSG:32650"
PIXEL = 0.5
ORIGIN = (500_000.0, 4_400_000.0)
COLUMNS = {
    "size": "scene (px)",
    "megapixels": "Mpx",
    "windows": "windows",
    "mask_s": "mask s",
    "total_s": "total s",
    "windows_per_s": "windows/s",
    "regions": "regions",
    "changed_share": "changed share",
    "peak_rss_mib": "peak RSS MiB",
    "growth_mib": "peak growth over loaded model MiB",
    "band_mib": "row band (floats) MiB",
}


def tiles(work: Path, pair_size: int = 256) -> list[tuple[np.ndarray, np.ndarray]]:
    """(A, B) ``uint8`` LEVIR-CD tiles (``4 x pair_size`` px: 1024) of a SynthLEVIR under ``work`` (generated when
    missing)."""
    from PIL import Image

    from semcc.data.synthetic import SynthLEVIRConfig, generate_synth_levir

    root = work / f"synthlevir{pair_size}"
    config = SynthLEVIRConfig(pairs={"train": 1, "val": 1, "test": 1}, cd_tiles={"train": 8, "val": 0, "test": 0},
                              size=pair_size, workers=1)
    summary = generate_synth_levir(root, config)
    folder = Path(summary["levir_cd"]) / "train"
    return [(np.asarray(Image.open(p).convert("RGB")), np.asarray(Image.open(folder / "B" / p.name).convert("RGB")))
            for p in sorted((folder / "A").glob("*.png"))]


def write_scene_pair(pairs: list[tuple[np.ndarray, np.ndarray]], before: Path, after: Path, size: int) -> None:
    """An ``size x size`` mosaic of the tiles as two GeoTIFFs, written one tile-sized block at a time."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    block = pairs[0][0].shape[0]
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8", "crs": CRS,
               "transform": Affine(PIXEL, 0.0, ORIGIN[0], 0.0, -PIXEL, ORIGIN[1]), "tiled": True,
               "blockxsize": 256, "blockysize": 256, "compress": "deflate", "photometric": "RGB"}
    with rasterio.Env(GDAL_CACHEMAX=128), rasterio.open(before, "w", **profile) as da, \
            rasterio.open(after, "w", **profile) as db:
        for i, row in enumerate(range(0, size, block)):
            for j, col in enumerate(range(0, size, block)):
                a, b = pairs[(7 * i + 13 * j) % len(pairs)]
                k, flip = (i + 2 * j) % 4, (i * j) % 2
                h, w = min(block, size - row), min(block, size - col)
                for ds, x in ((da, a), (db, b)):
                    x = np.rot90(x, k)
                    x = x[:, ::-1] if flip else x
                    ds.write(np.moveaxis(x[:h, :w], -1, 0), window=Window(col, row, w, h))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One scene in this process: caption it and report time and memory (the child of :func:`main`)."""
    import torch

    from semcc.geo import caption_scene
    from semcc.inference import Predictor, cd_window_logits

    predictor = Predictor.from_checkpoint(args.ckpt, batch_size=args.batch_size)
    with torch.no_grad():  # one batch first: torch's one-time setup is not the scene's
        x = torch.zeros(args.batch_size, 3, predictor.input_size, predictor.input_size)
        cd_window_logits(predictor.model, x, x)
    loaded = current_rss_bytes()
    peak = PeakMemory("cpu")
    start = time.perf_counter()
    result = caption_scene(predictor, args.measure[0], args.measure[1], args.measure[2], progress=False,
                           max_region_captions=args.max_region_captions)
    total = time.perf_counter() - start
    summary = result.summary
    s, k = predictor.input_size, max(1, int(predictor.model.cd_head.num_classes))  # type: ignore[union-attr]
    width = summary["size"]["width"]
    return {
        "size": width, "window": s, "megapixels": round(width * summary["size"]["height"] / 1e6, 1),
        "windows": summary["windows"], "mask_s": summary["seconds"]["mask"], "total_s": round(total, 1),
        "windows_per_s": round(summary["windows"] / summary["seconds"]["mask"], 2),
        "regions": summary["regions"], "changed_share": round(summary["changed_share"], 4),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "growth_mib": mib(peak.peak_bytes()), "loaded_rss_mib": mib(loaded), "memory_method": peak.method,
        "band_mib": round((k + 1) * s * max(width, s) * 4 / 2**20, 1), "threads": torch.get_num_threads(),
        "scene_caption": summary["scene_caption"], "mask_bytes": Path(summary["outputs"]["mask"]).stat().st_size,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True, help="a semcc fit checkpoint (e.g. tiny-0.2.ckpt)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000, 8000], help="scene sides in px")
    parser.add_argument("--work", type=Path, default=Path("~/.cache/semcc/geotiff-bench"),
                        help="where tiles, scenes and outputs go (tiles and scenes are reused)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward")
    parser.add_argument("--max-region-captions", type=int, default=20)
    parser.add_argument("--tile-size", type=int, default=256,
                        help="SynthLEVIR pair size; its LEVIR-CD tiles, the mosaic's blocks, are 4x (default 1024)")
    parser.add_argument("--measure", nargs=3, type=Path, default=None, help=argparse.SUPPRESS)  # the child
    add_json_argument(parser, "geotiff_scene.json")
    args = parser.parse_args(argv)
    if args.measure is not None:
        print(json.dumps(measure(args)))
        return []
    if not args.ckpt.is_file():
        parser.error(f"{args.ckpt}: no such checkpoint")
    work = args.work.expanduser()
    work.mkdir(parents=True, exist_ok=True)
    pairs: list[tuple[np.ndarray, np.ndarray]] | None = None
    rows = []
    for size in args.sizes:
        before, after = (work / f"scene{size}_{args.tile_size}_{date}.tif" for date in ("before", "after"))
        if not (before.is_file() and after.is_file()):
            pairs = pairs or tiles(work, args.tile_size)
            start = time.perf_counter()
            write_scene_pair(pairs, before, after, size)
            print(f"wrote {before.name} / {after.name} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        out = work / f"out{size}"
        child = subprocess.run(
            [sys.executable, __file__, "--ckpt", str(args.ckpt), "--batch-size", str(args.batch_size),
             "--max-region-captions", str(args.max_region_captions), "--measure", str(before), str(after), str(out)],
            capture_output=True, text=True, env=os.environ.copy(), check=False)
        if child.returncode:
            sys.exit(f"size {size}: the measuring process failed:\n{child.stderr[-3000:]}")
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(f"size {size}: {rows[-1]}", file=sys.stderr)
    notes = [
        f"checkpoint {args.ckpt} (windows of its input size, {rows[0]['window']} px, overlap 0.25), "
        f"batch {args.batch_size}, {rows[0]['threads']} threads, CPU; up to {args.max_region_captions} region "
        "captions and the scene caption included in total s",
        f"scenes: SynthLEVIR LEVIR-CD tiles mosaicked, {CRS}, {PIXEL} m pixels, tiled 256, deflate; "
        f"peak RSS = ru_maxrss of a fresh process per size; growth: {rows[0]['memory_method']} over the RSS after "
        f"loading the model and one warm-up batch ({rows[0]['loaded_rss_mib']} MiB)",
        "row band: the K logits + weight floats of one window's height across the scene (what the stitching holds)",
    ]
    report(f"GeoTIFF scenes: semcc.geo.caption_scene ({args.ckpt.name})", rows, COLUMNS, json_path=args.json,
           notes=notes, extra={"command": " ".join(sys.argv)})
    return rows


if __name__ == "__main__":
    main()
