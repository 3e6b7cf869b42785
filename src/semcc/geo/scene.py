"""A GeoTIFF scene end to end: :func:`check_scene`, :func:`caption_scene` and its summary (:class:`SceneResult`).

Beyond the paper (issue 14, "1. GeoTIFF scenes of any size"; see :mod:`semcc.geo` for the whole description):
Eq. 6 masks (:mod:`semcc.geo.stitch`) and Eq. 7 captions of the scene and its regions (:mod:`semcc.geo.regions`)
via a :class:`semcc.inference.Predictor`. rasterio is imported on first use.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semcc.geo.raster import (
    MASK_NODATA,
    GeoSceneError,
    _area_unit,
    _fill_invalid,
    _open,
    _rasterio,
    _same_grid,
    _scaling,
    _Source,
    select_bands,
)
from semcc.geo.regions import _caption_regions, _regions, _write_geojson
from semcc.geo.stitch import _write_mask
from semcc.inference import Predictor
from semcc.metrics.truth import MIN_COMPONENT_SHARE


# ------------------------------------------------------------------------------------------------ results
@dataclass
class SceneResult:
    """What :func:`caption_scene` wrote, and the scene summary (the content of ``summary_path``)."""

    mask_path: Path
    geojson_path: Path
    summary_path: Path
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def caption(self) -> str | None:
        """The scene caption (the whole scene decimated to the model's input size)."""
        return self.summary.get("scene_caption")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)



# ------------------------------------------------------------------------------------------------ the scene
def _open_pair(before: Path, after: Path, bands: Sequence[int] | None, resample: bool,
               stack: ExitStack) -> tuple[Any, Any, tuple[int, int, int], tuple[int, int, int], list[str]]:
    """Both datasets (the after one warped onto the before grid when ``resample``), their bands, the grid
    differences; the errors of :func:`check_scene`."""
    rasterio = _rasterio()
    from rasterio.vrt import WarpedVRT

    ds_a, ds_b = _open(rasterio, before, stack), _open(rasterio, after, stack)
    diffs = _same_grid(ds_a, ds_b)
    bands_a = select_bands(ds_a, bands, str(before))
    bands_b = select_bands(ds_b, bands, str(after))
    if diffs and not resample:
        raise GeoSceneError(f"{before} and {after} are not on the same grid ({'; '.join(diffs)}; before vs "
                            "after): give rasters of the same ground, or resample the after raster onto the "
                            "before raster's grid (--resample, resample=True)")
    if diffs:
        if ds_a.crs is None or ds_b.crs is None:
            raise GeoSceneError(f"{before if ds_a.crs is None else after}: no CRS, so {after} cannot be resampled "
                                f"onto the grid of {before}")
        alpha = ds_b.nodata is None and "alpha" not in [c.name for c in ds_b.colorinterp]
        ds_b = stack.enter_context(WarpedVRT(
            ds_b, crs=ds_a.crs, transform=ds_a.transform, width=ds_a.width, height=ds_a.height,
            resampling=rasterio.enums.Resampling.bilinear, add_alpha=alpha))
    return ds_a, ds_b, bands_a, bands_b, diffs


def check_scene(
    before: str | os.PathLike, after: str | os.PathLike, *, bands: Sequence[int] | None = None,
    resample: bool = False,
) -> dict[str, Any]:
    """Check a pair without a model (what ``semcc caption`` does before loading one): both readable, on one grid
    (or ``resample``), the bands there. Returns ``size``, ``crs``, ``bands`` and ``resample`` (grid differences);
    raises :class:`GeoSceneError` naming the file(s)."""
    with ExitStack() as stack:
        ds_a, _, bands_a, bands_b, diffs = _open_pair(Path(before), Path(after), bands, resample, stack)
        return {"size": (int(ds_a.height), int(ds_a.width)), "crs": ds_a.crs.to_string() if ds_a.crs else None,
                "bands": (bands_a, bands_b), "resample": diffs}


def caption_scene(
    predictor: Predictor,
    before: str | os.PathLike,
    after: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    name: str | None = None,
    bands: Sequence[int] | None = None,
    resample: bool = False,
    batch_size: int | None = None,
    max_region_captions: int = 20,
    min_region_pixels: int | None = None,
    progress: bool = True,
    gdal_cache_mb: int = 64,
) -> SceneResult:
    """Change mask, change polygons and captions of a GeoTIFF pair of any size (see the module docstring).

    Args:
        predictor: the model (window size, overlap, weight, batch size, decoding are its settings).
        before, after: the two rasters (any GDAL format; GeoTIFF expected).
        out_dir: where ``<name>_mask.tif``, ``<name>_changes.geojson`` and ``<name>_summary.json`` go.
        name: the outputs' prefix (default: the before file's stem).
        bands: 1-based band numbers read as red, green, blue in both rasters (default: see :func:`select_bands`).
        resample: warp the after raster onto the before raster's grid when they differ (else an error).
        batch_size: windows per forward (default: the predictor's).
        max_region_captions: caption the neighbourhood of this many of the largest regions (0: none).
        min_region_pixels: smaller regions are specks, counted, not written (default:
            :data:`semcc.metrics.truth.MIN_COMPONENT_SHARE` of one window, 33 px at 256).
        progress: a progress bar on stderr (tqdm when installed).
        gdal_cache_mb: GDAL's block cache while reading and writing (keeps memory bounded).
    """
    rasterio = _rasterio()
    if predictor.model.cd_head is None:
        raise ValueError("this model has no cd_head: a scene needs change masks")
    batch_size = int(batch_size or predictor.batch_size)
    if batch_size < 1 or max_region_captions < 0:
        raise ValueError(f"batch_size must be >= 1 and max_region_captions >= 0, got {batch_size}, "
                         f"{max_region_captions}")
    before, after, out = Path(before), Path(after), Path(out_dir)
    name = name or before.stem
    s = predictor.input_size
    min_pixels = int(min_region_pixels) if min_region_pixels is not None else max(1, round(MIN_COMPONENT_SHARE * s * s))
    started = time.perf_counter()
    with rasterio.Env(GDAL_CACHEMAX=int(gdal_cache_mb)), ExitStack() as stack:
        ds_a, ds_b, bands_a, bands_b, diffs = _open_pair(before, after, bands, resample, stack)
        src_a = _Source(ds_a, bands_a, _scaling(ds_a, bands_a, str(before)), before)
        src_b = _Source(ds_b, bands_b, _scaling(ds_b, bands_b, str(after)), after)
        out.mkdir(parents=True, exist_ok=True)
        mask_path = out / f"{name}_mask.tif"
        counts, windows = _write_mask(predictor, src_a, src_b, mask_path, batch_size, progress)
        mask_seconds = time.perf_counter() - started

        classes = predictor.mask_classes
        pixel_area, unit = _area_unit(ds_a.crs, ds_a.transform)
        tmp = out / f".{name}_features.jsonl"
        try:
            largest, regions, specks, n_regions = _regions(mask_path, min_pixels, pixel_area, unit, classes, tmp,
                                                           max_region_captions)
            captions = _caption_regions(predictor, src_a, src_b, largest)
            geojson_path = out / f"{name}_changes.geojson"
            _write_geojson(geojson_path, tmp, ds_a.crs, captions, max_region_captions)
        finally:
            tmp.unlink(missing_ok=True)

        scene_a, valid = src_a.read(out_shape=(s, s))
        scene_b, valid_b = src_b.read(out_shape=(s, s))
        _fill_invalid(scene_a, scene_b, valid & valid_b, np.rint(np.asarray(predictor.mean) * 255).astype(np.uint8))
        scene = predictor.predict(scene_a, scene_b, names=[name])
        assert not isinstance(scene, list)

    total_px = int(ds_a.height) * int(ds_a.width)
    valid_px = total_px - int(counts[MASK_NODATA])
    changed_px = {cls: int(counts[v]) for v, cls in classes.items()}
    changed = sum(changed_px.values())
    share = changed / valid_px if valid_px else 0.0

    def area(px: int) -> float:
        return round(px * pixel_area, 3) if unit == "m2" else px

    per_class = ", ".join(f"{regions[c]} {c}" for c in classes.values())
    summary_line = (f"{scene.caption or '(no caption head)'} [{n_regions} change regions ({per_class}); "
                    f"{area(changed):g} {unit} changed, {share:.2%} of the valid area]")
    res = ds_a.res
    summary: dict[str, Any] = {
        "name": name, "before": str(before), "after": str(after),
        "size": {"height": int(ds_a.height), "width": int(ds_a.width)},
        "crs": ds_a.crs.to_string() if ds_a.crs else None,
        "crs_wkt": ds_a.crs.to_wkt() if ds_a.crs else None,
        "transform": list(ds_a.transform)[:6], "pixel_size": [float(res[0]), float(res[1])],
        "bounds": list(ds_a.bounds),
        "resampled": bool(diffs), "bands": {"before": list(bands_a), "after": list(bands_b)},
        "scaling": {"before": src_a.scaling.to_dict(), "after": src_b.scaling.to_dict()},
        "area_unit": unit, "pixel_area": pixel_area,
        "pixels": {"total": total_px, "valid": valid_px, "nodata": int(counts[MASK_NODATA]), "changed": changed,
                   "changed_per_class": changed_px},
        "changed_area": area(changed), "changed_area_per_class": {c: area(p) for c, p in changed_px.items()},
        "changed_share": round(share, 6),
        "regions_per_class": regions, "specks_per_class": specks, "min_region_pixels": min_pixels,
        "regions": n_regions, "captioned_regions": len(captions), "max_region_captions": max_region_captions,
        "scene_caption": scene.caption, "summary": summary_line,
        "window": s, "overlap": predictor.overlap, "windows": windows,
        "seconds": {"mask": round(mask_seconds, 3), "total": round(time.perf_counter() - started, 3)},
        "outputs": {"mask": str(mask_path), "changes": str(geojson_path)},
    }
    summary_path = out / f"{name}_summary.json"
    summary["outputs"]["summary"] = str(summary_path)
    _write_atomic(summary_path, json.dumps(summary, indent=2) + "\n")
    return SceneResult(mask_path, geojson_path, summary_path, summary)

