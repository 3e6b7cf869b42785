"""GeoTIFF scenes of any size: change mask, change polygons and captions of a georeferenced before / after pair.

Beyond the paper (issue 14, "1. GeoTIFF scenes of any size"): Semantic-CC captions 256 x 256 LEVIR-CC pairs; a
user's scene is a pair of GeoTIFFs thousands of pixels wide, in a map projection. :func:`caption_scene` runs the
paper's network through a :class:`semcc.inference.Predictor` on such a pair with memory bounded by one band of
window rows across the scene, whatever the scene's size:

* **Eq. 6, the change mask**, by the Predictor's sliding window (its input size, ``overlap``, ``weight`` and
  ``batch_size``; :func:`semcc.inference.window_starts` / :func:`~semcc.inference.window_weight` /
  :func:`~semcc.inference.cd_window_logits`). The scene is read one row of windows at a time (a strip of the
  window's height across the scene); its windows go through encoder, neck and CD head ``batch_size`` at a time
  (batches do not span rows; the strip stays 8-bit, and only a batch's windows are normalised to floats); the
  weighted logits are added into a row-band buffer of ``K x window x width`` floats. Rows that no later window
  covers are final: their class mask is written into the output GeoTIFF (in whole 256-row blocks) and the buffer
  moves down. Peak memory is bounded by a window's height of rows across the scene (plus GDAL's block cache,
  ``gdal_cache_mb``), not by the scene. The result equals ``Predictor.predict`` on the same pair (same windows,
  same weights, same order of sums), up to batch composition.
* **Eq. 7, the captions**, by ``Predictor.predict`` at the model's input size: the whole scene read decimated
  (GDAL's average resampling) to the input size gives the scene caption, and a window of the input size at full
  resolution, centred on each of the largest change regions, gives the region's caption.

The inputs:

* **The same ground.** Both rasters must have the same CRS, geotransform and size; otherwise the error names both
  files and what differs. ``resample=True`` warps the after raster onto the before raster's grid on the fly
  (``rasterio.vrt.WarpedVRT``, bilinear; read window by window, so memory stays bounded).
* **Bands.** ``bands=(3, 2, 1)``: 1-based band numbers (as GDAL) taken as red, green, blue (one number: grey).
  Default: the bands whose descriptions say red / green / blue, else whose colour interpretation is red / green /
  blue, else the first three (the first one, repeated, for a one-band raster; alpha bands never count).
  Descriptions come first because GDAL marks any 3- or 4-band 8-bit GeoTIFF as RGB(A) unless told otherwise.
* **Values.** 8-bit bands are used as they are. Any other type (16-bit, float) is stretched per raster and per
  band: the 2nd and 98th percentiles of its valid pixels, computed on a decimated read of the raster (at most
  1024 px on a side), map to 0 and 255, linearly, clipped (:class:`BandScaling`). Each date gets its own stretch,
  as each 8-bit LEVIR photograph has its own exposure.
* **Nodata.** A pixel is invalid where GDAL's mask of any selected band of either raster says so (the nodata
  value, an internal mask or an alpha band; NaN for floats; pixels outside the after raster's footprint after
  ``resample``). Invalid pixels enter the model as the mean colour in both dates, and are written as
  :data:`MASK_NODATA` (255) in the mask: never change, left out of every area, count and share.

The outputs, in ``out_dir`` (all keep the before raster's georeference):

* ``<name>_mask.tif``: the class mask (0 no change, 1 change or the LEVIR-MCI classes 1 road / 2 building,
  255 nodata), uint8, tiled 256 x 256, deflate-compressed, with a colour table.
* ``<name>_changes.geojson``: one polygon per 8-connected change region of a class (GDAL's polygonize on the
  mask GeoTIFF, which it reads row by row: a region that crosses strips is one polygon, and memory grows with
  the polygons found, not with the scene), in the scene's CRS (a ``crs`` member names it). Properties:
  ``class``, ``pixels``, ``area`` with ``area_unit`` (``m2`` when the CRS is projected with a linear unit,
  converted to metres; else ``pixel``), and ``caption`` for the ``max_region_captions`` largest regions (the
  others say why they have none). Regions under ``min_region_pixels`` (default: the speck rule of
  :mod:`semcc.metrics.truth` at one window) are counted as specks in the summary, not written.
* ``<name>_summary.json``: scene size, CRS, pixel size, bands and scaling used, valid / changed pixels and
  area, changed share of the valid area, regions and specks per class, the scene caption and a one-line
  summary (scene caption plus counts).

rasterio is an optional dependency (``pip install 'semcc[geo]'``), imported on first use.
``semcc caption BEFORE.tif AFTER.tif --ckpt CKPT`` (:mod:`semcc.commands.caption`) is the command-line form.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from semcc.data.inputs import InputImageError
from semcc.inference import Predictor, cd_window_logits, window_starts, window_weight
from semcc.metrics.truth import MIN_COMPONENT_SHARE
from semcc.models.cd_head import class_mask

__all__ = [
    "GEO_SUFFIXES",
    "MASK_NODATA",
    "BandScaling",
    "GeoSceneError",
    "SceneResult",
    "caption_scene",
    "check_scene",
    "is_geo_path",
    "parse_bands",
    "select_bands",
]

#: File suffixes ``semcc caption`` sends to this module.
GEO_SUFFIXES = (".tif", ".tiff")
#: The mask GeoTIFF's nodata value.
MASK_NODATA = 255
#: Block size of the mask GeoTIFF (tiles of BLOCK x BLOCK; strips are written in whole block rows).
BLOCK = 256
#: The percentiles of the stretch of non-8-bit bands, and the longest side of the decimated read they come from.
STRETCH_PERCENTILES = (2.0, 98.0)
STATS_SIDE = 1024
_COLOURS = {0: (0, 0, 0, 0), 1: (255, 0, 0, 255), 2: (255, 200, 0, 255), 3: (0, 160, 255, 255),
            MASK_NODATA: (0, 0, 0, 0)}
_METRE_NAMES = {"metre", "meter", "metres", "meters", "m"}


class GeoSceneError(InputImageError):
    """A GeoTIFF pair that cannot be captioned (unreadable, not on one grid, bad bands); names the file(s)."""


def _rasterio() -> Any:
    try:
        import rasterio
    except ImportError as err:
        raise ImportError("GeoTIFF scenes need rasterio: pip install 'semcc[geo]'") from err
    return rasterio


def is_geo_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` ends in ``.tif`` / ``.tiff`` (any case): a raster for this module."""
    return Path(path).suffix.lower() in GEO_SUFFIXES


def parse_bands(text: str) -> tuple[int, ...]:
    """``"3,2,1"`` -> ``(3, 2, 1)`` (``--bands``); a :class:`ValueError` naming the option otherwise."""
    try:
        bands = tuple(int(b) for b in text.replace(" ", "").split(",") if b)
    except ValueError:
        bands = ()
    if len(bands) not in (1, 3) or min(bands) < 1:
        raise ValueError(f"--bands: expected three band numbers from 1 (red,green,blue, e.g. 3,2,1) or one "
                         f"(grey), got {text!r}")
    return bands


# ------------------------------------------------------------------------------------------------ bands
def _colour_word(description: str | None, colour: str) -> bool:
    text = (description or "").lower()
    return bool(re.search(rf"\b{colour}\b", text)) and "edge" not in text


def select_bands(dataset: Any, bands: Sequence[int] | None = None, label: str = "raster") -> tuple[int, int, int]:
    """The 1-based band numbers read as red, green, blue (see the module docstring for the default rule).

    ``bands``: three numbers, or one (grey, repeated); a :class:`GeoSceneError` naming ``label`` when a band
    does not exist.
    """
    count = int(dataset.count)
    if bands is not None:
        chosen = tuple(int(b) for b in bands)
        if len(chosen) == 1:
            chosen = chosen * 3
        if len(chosen) != 3:
            raise GeoSceneError(f"{label}: bands must be three band numbers (red, green, blue) or one, got "
                                f"{list(bands)}")
        if bad := [b for b in chosen if not 1 <= b <= count]:
            raise GeoSceneError(f"{label}: band {bad[0]} does not exist: the raster has {count} band(s), "
                                f"numbered 1 to {count}")
        return chosen  # type: ignore[return-value]
    interp = [ci.name for ci in dataset.colorinterp]
    colours = ("red", "green", "blue")
    described = {c: [i for i, d in enumerate(dataset.descriptions, 1) if _colour_word(d, c)] for c in colours}
    if all(described.values()):  # descriptions first: GDAL gives any 3- or 4-band 8-bit GeoTIFF RGB(A) by default
        return tuple(described[c][0] for c in colours)  # type: ignore[return-value]
    if all(c in interp for c in colours):
        return tuple(interp.index(c) + 1 for c in colours)  # type: ignore[return-value]
    plain = [i for i, name in enumerate(interp, 1) if name != "alpha"]
    if not plain:
        raise GeoSceneError(f"{label}: the raster has no colour band (only alpha)")
    return tuple(plain[:3]) if len(plain) >= 3 else (plain[0],) * 3  # type: ignore[return-value]


@dataclass(frozen=True)
class BandScaling:
    """How one raster's three selected bands become 8-bit RGB.

    ``uint8``: as they are. Any other type: ``(x - low) * 255 / (high - low)``, clipped to 0-255 and rounded,
    with ``low`` / ``high`` the :data:`STRETCH_PERCENTILES` of each band's valid pixels on a decimated read.
    """

    dtype: str
    low: tuple[float, float, float] = (0.0, 0.0, 0.0)
    high: tuple[float, float, float] = (255.0, 255.0, 255.0)

    @property
    def identity(self) -> bool:
        return self.dtype == "uint8"

    def apply(self, data: np.ndarray) -> np.ndarray:
        """``[3, h, w]`` band values -> ``uint8 [h, w, 3]``."""
        if self.identity:
            return np.ascontiguousarray(np.moveaxis(data, 0, -1))
        out = np.empty((data.shape[1], data.shape[2], 3), dtype=np.uint8)
        for i in range(3):
            lo, hi = self.low[i], self.high[i]
            band = (data[i].astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
            out[..., i] = np.rint(np.clip(np.nan_to_num(band), 0, 255))
        return out

    def to_dict(self) -> dict[str, Any]:
        if self.identity:
            return {"dtype": self.dtype, "rule": "8-bit, used as it is"}
        return {"dtype": self.dtype, "low": list(self.low), "high": list(self.high),
                "rule": f"per band, percentiles {STRETCH_PERCENTILES[0]:g}-{STRETCH_PERCENTILES[1]:g} of the valid "
                        f"pixels of a read decimated to at most {STATS_SIDE} px a side -> 0-255"}


def _scaling(dataset: Any, bands: tuple[int, int, int], label: str) -> BandScaling:
    dtype = str(dataset.dtypes[bands[0] - 1])
    if dtype == "uint8":
        return BandScaling(dtype)
    factor = min(1.0, STATS_SIDE / max(dataset.height, dataset.width))
    shape = (3, max(1, round(dataset.height * factor)), max(1, round(dataset.width * factor)))
    data = dataset.read(list(bands), out_shape=shape).astype(np.float64)
    valid = np.all(dataset.read_masks(list(bands), out_shape=shape) > 0, axis=0) & np.all(np.isfinite(data), axis=0)
    if not valid.any():
        raise GeoSceneError(f"{label}: no valid pixel (everything is nodata)")
    low, high = [], []
    for i in range(3):
        lo, hi = np.percentile(data[i][valid], STRETCH_PERCENTILES)
        low.append(float(lo))
        high.append(float(hi) if hi > lo else float(lo) + 1.0)
    return BandScaling(dtype, tuple(low), tuple(high))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ grid
def _same_grid(a: Any, b: Any) -> list[str]:
    """What differs between the grids of two datasets (empty: the same pixels on the same ground)."""
    diffs = []
    if a.crs != b.crs:
        diffs.append(f"CRS {a.crs.to_string() if a.crs else 'none'} vs {b.crs.to_string() if b.crs else 'none'}")
    if (a.width, a.height) != (b.width, b.height):
        diffs.append(f"size {a.width}x{a.height} vs {b.width}x{b.height} px")
    ta, tb = a.transform, b.transform
    pixel = max(abs(ta.a), abs(ta.e), 1e-12)
    scale_ok = all(abs(x - y) <= 1e-6 * pixel for x, y in ((ta.a, tb.a), (ta.b, tb.b), (ta.d, tb.d), (ta.e, tb.e)))
    offset_ok = abs(ta.c - tb.c) <= 0.01 * pixel and abs(ta.f - tb.f) <= 0.01 * pixel
    if not (scale_ok and offset_ok):
        diffs.append(f"transform {tuple(round(v, 6) for v in ta[:6])} vs {tuple(round(v, 6) for v in tb[:6])}")
    return diffs


def _open(rasterio: Any, path: Path, stack: ExitStack) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            return stack.enter_context(rasterio.open(path))
    except rasterio.errors.RasterioIOError as err:
        raise GeoSceneError(f"{path}: cannot read it as a raster: {err}") from None


def _area_unit(crs: Any, transform: Any) -> tuple[float, str]:
    """(area of one pixel, unit): square metres for a projected CRS with a linear unit, else one pixel."""
    if crs is None or not crs.is_projected:
        return 1.0, "pixel"
    try:
        unit, factor = crs.linear_units_factor
    except Exception:  # rasterio raises CRSError when the CRS has no linear unit
        return 1.0, "pixel"
    factor = 1.0 if str(unit).lower() in _METRE_NAMES else float(factor)
    return abs(transform.a * transform.e - transform.b * transform.d) * factor**2, "m2"


# ------------------------------------------------------------------------------------------------ reading
@dataclass
class _Source:
    """One date: its dataset, bands, scaling and name."""

    dataset: Any
    bands: tuple[int, int, int]
    scaling: BandScaling
    path: Path

    def read(self, window: Any = None, out_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(uint8 [h, w, 3] RGB, bool [h, w] valid)`` of a window (or the whole raster decimated)."""
        kwargs: dict[str, Any] = {"window": window}
        if out_shape is not None:
            kwargs["out_shape"] = (3, *out_shape)
            kwargs["resampling"] = _rasterio().enums.Resampling.average
        data = self.dataset.read(list(self.bands), **kwargs)
        if out_shape is not None:
            kwargs["resampling"] = _rasterio().enums.Resampling.nearest
        valid = np.all(self.dataset.read_masks(list(self.bands), **kwargs) > 0, axis=0)
        if data.dtype.kind == "f":
            valid &= np.all(np.isfinite(data), axis=0)
        return self.scaling.apply(data), valid


def _fill_invalid(a: np.ndarray, b: np.ndarray, valid: np.ndarray, colour: np.ndarray) -> None:
    """Invalid pixels take the mean colour in both dates (no difference for the model to see)."""
    if not valid.all():
        a[~valid] = colour
        b[~valid] = colour


class _Progress:
    """tqdm when installed, else a line every 10%."""

    def __init__(self, total: int, enabled: bool, label: str) -> None:
        self.total, self.done, self.enabled, self.label, self._next = total, 0, enabled, label, 0.1
        self._bar = None
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, unit="window", desc=label, file=sys.stderr)
            except ImportError:
                pass

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and self.done >= self._next * self.total:
            print(f"{self.label}: {self.done}/{self.total} windows", file=sys.stderr, flush=True)
            self._next = math.floor(10 * self.done / self.total) / 10 + 0.1

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


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


def _ring_area(ring: Sequence[Sequence[float]]) -> float:
    xy = np.asarray(ring, dtype=np.float64)
    x, y = xy[:, 0] - xy[0, 0], xy[:, 1] - xy[0, 1]
    return 0.5 * abs(float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1])))


def _polygon_area(geometry: dict[str, Any]) -> float:
    rings = geometry["coordinates"]
    return _ring_area(rings[0]) - sum(_ring_area(r) for r in rings[1:])


# ------------------------------------------------------------------------------------------------ the mask
def _window(predictor: Predictor, strip: np.ndarray, left: int, size: int) -> torch.Tensor:
    """The normalised ``[3, size, size]`` window at column ``left`` of a ``uint8 [h, W, 3]`` strip; a strip
    shorter or narrower than the window is padded after normalising (zeros: the mean colour), as
    :func:`semcc.inference.sliding_window_logits` pads. Strips stay 8-bit: floats exist one batch at a time."""
    x = predictor._normalize(strip[:, left : left + size])
    h, w = x.shape[-2:]
    return F.pad(x, (0, size - w, 0, size - h)) if (h, w) != (size, size) else x


@torch.no_grad()
def _write_mask(
    predictor: Predictor, a: _Source, b: _Source, mask_path: Path, batch_size: int, progress: bool
) -> tuple[np.ndarray, int]:
    """Sliding-window mask of the scene written strip by strip; returns (pixel count per value, windows)."""
    rasterio = _rasterio()
    from rasterio.windows import Window

    ds = a.dataset
    height, width = int(ds.height), int(ds.width)
    s = predictor.input_size
    rows, cols = window_starts(height, s, predictor.overlap), window_starts(width, s, predictor.overlap)
    padded_w = max(width, s)  # the row band: K logits and the weight, a window's height across the scene
    device = predictor.device
    w = window_weight(s, predictor.weight).to(device)
    k = max(1, int(predictor.model.cd_head.num_classes))  # type: ignore[union-attr]
    acc = torch.zeros((k, s, padded_w), device=device)
    total = torch.zeros((s, padded_w), device=device)
    colour = np.rint(np.asarray(predictor.mean) * 255).astype(np.uint8)
    counts = np.zeros(256, dtype=np.int64)
    pending: list[np.ndarray] = []
    written = 0
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "uint8",
               "crs": ds.crs, "transform": ds.transform, "nodata": MASK_NODATA, "tiled": True,
               "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate", "BIGTIFF": "IF_SAFER"}
    bar = _Progress(len(rows) * len(cols), progress, f"{mask_path.name}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        dst = rasterio.open(mask_path, "w", **profile)
    try:
        names = {0: "no change", **predictor.mask_classes, MASK_NODATA: "nodata"}
        dst.update_tags(1, classes=json.dumps({str(v): n for v, n in names.items()}))
        dst.set_band_description(1, "semcc change mask: " + ", ".join(f"{v} {n}" for v, n in names.items()))
        dst.write_colormap(1, {v: _COLOURS.get(v, (255, 0, 255, 255)) for v in names})

        def flush(final: bool) -> None:
            nonlocal written, pending
            if not pending:
                return
            block = np.concatenate(pending, axis=0)
            n = block.shape[0] if final else (block.shape[0] // BLOCK) * BLOCK
            if n:
                dst.write(block[:n], 1, window=Window(0, written, width, n))
                written += n
            pending = [block[n:]] if n < block.shape[0] else []

        for i, top in enumerate(rows):
            h = min(s, height - top)
            rgb_a, valid_a = a.read(Window(0, top, width, h))
            rgb_b, valid_b = b.read(Window(0, top, width, h))
            valid = valid_a & valid_b
            _fill_invalid(rgb_a, rgb_b, valid, colour)
            for start in range(0, len(cols), batch_size):
                chunk = cols[start : start + batch_size]
                image_a = torch.stack([_window(predictor, rgb_a, x, s) for x in chunk]).to(device)
                image_b = torch.stack([_window(predictor, rgb_b, x, s) for x in chunk]).to(device)
                logits = cd_window_logits(predictor.model, image_a, image_b)
                for x, logit in zip(chunk, logits, strict=True):
                    acc[:, :, x : x + s] += logit * w
                    total[:, x : x + s] += w
                bar.update(len(chunk))
            done = (rows[i + 1] if i + 1 < len(rows) else height) - top  # rows no later window covers
            mask = class_mask((acc[:, :done, :width] / total[:done, :width]).cpu()).numpy().astype(np.uint8)
            mask[~valid[:done]] = MASK_NODATA  # done <= h: the strip's first rows
            counts += np.bincount(mask.ravel(), minlength=256)
            pending.append(mask)
            flush(final=False)
            acc = torch.roll(acc, -done, dims=1)
            acc[:, s - done :] = 0
            total = torch.roll(total, -done, dims=0)
            total[s - done :] = 0
        flush(final=True)
    finally:
        dst.close()
        bar.close()
    assert written == height, (written, height)
    return counts, len(rows) * len(cols)


# ------------------------------------------------------------------------------------------------ regions
@dataclass(order=True)
class _Region:
    pixels: int
    neg_id: int  # ties: the earlier region first
    value: int = field(compare=False)
    centre: tuple[float, float] = field(compare=False)  # (col, row) in pixels


def _regions(mask_path: Path, min_pixels: int, pixel_area: float, unit: str, names: dict[int, str],
             tmp_path: Path, keep: int) -> tuple[list[_Region], dict[str, int], dict[str, int], int]:
    """Polygonise the mask file; features to ``tmp_path`` (one JSON per line); the ``keep`` largest regions,
    regions and specks per class, and the number of features written."""
    rasterio = _rasterio()
    from rasterio.features import shapes

    largest: list[_Region] = []
    regions = dict.fromkeys(names.values(), 0)
    specks = dict.fromkeys(names.values(), 0)
    n = 0
    with rasterio.open(mask_path) as ds, tmp_path.open("w", encoding="utf-8") as out:
        inverse = ~ds.transform
        band = rasterio.band(ds, 1)
        for geometry, raw in shapes(band, mask=band, connectivity=8):
            value = int(raw)
            if value == MASK_NODATA or value not in names:
                continue
            area = _polygon_area(geometry)
            pixels = round(area / abs(ds.transform.a * ds.transform.e - ds.transform.b * ds.transform.d))
            cls = names[value]
            if pixels < min_pixels:
                specks[cls] += 1
                continue
            n += 1
            regions[cls] += 1
            xy = np.asarray(geometry["coordinates"][0])
            cols = inverse.a * xy[:, 0] + inverse.b * xy[:, 1] + inverse.c
            rws = inverse.d * xy[:, 0] + inverse.e * xy[:, 1] + inverse.f
            centre = ((float(np.min(cols)) + float(np.max(cols))) / 2, (float(np.min(rws)) + float(np.max(rws))) / 2)
            props = {"region": n, "class": cls, "value": value, "pixels": pixels,
                     "area": round(pixels * pixel_area, 3) if unit == "m2" else pixels, "area_unit": unit}
            out.write(json.dumps({"type": "Feature", "id": n, "properties": props, "geometry": geometry}) + "\n")
            region = _Region(pixels, -n, value, centre)
            if keep > 0:
                if len(largest) < keep:
                    heapq.heappush(largest, region)
                elif region > largest[0]:
                    heapq.heapreplace(largest, region)
    return sorted(largest, reverse=True), regions, specks, n


def _crop_window(centre: tuple[float, float], size: int, height: int, width: int) -> tuple[int, int, int, int]:
    """(col, row, w, h) of a ``size`` window centred on ``centre`` and moved inside the scene."""
    col = round(centre[0] - size / 2)
    row = round(centre[1] - size / 2)
    col, row = min(max(0, col), max(0, width - size)), min(max(0, row), max(0, height - size))
    return col, row, min(size, width), min(size, height)


def _caption_regions(predictor: Predictor, a: _Source, b: _Source, largest: list[_Region]) -> dict[int, dict]:
    """Caption the window of the model's input size around each region: ``{region: properties}``."""
    from rasterio.windows import Window

    s = predictor.input_size
    height, width = int(a.dataset.height), int(a.dataset.width)
    colour = np.rint(np.asarray(predictor.mean) * 255).astype(np.uint8)
    out: dict[int, dict] = {}
    for start in range(0, len(largest), predictor.batch_size):
        chunk = largest[start : start + predictor.batch_size]
        befores, afters, windows = [], [], []
        for region in chunk:
            col, row, w, h = _crop_window(region.centre, s, height, width)
            rgb_a, valid = a.read(Window(col, row, w, h))
            rgb_b, valid_b = b.read(Window(col, row, w, h))
            _fill_invalid(rgb_a, rgb_b, valid & valid_b, colour)
            befores.append(rgb_a)
            afters.append(rgb_b)
            windows.append([col, row, w, h])
        results = predictor.predict(befores, afters, names=[f"region{-r.neg_id}" for r in chunk])
        assert isinstance(results, list)
        for rank, (region, result, window) in enumerate(zip(chunk, results, windows, strict=True), start + 1):
            props: dict[str, Any] = {"caption": result.caption, "caption_rank": rank, "caption_window": window}
            if result.consistency is not None:
                props["caption_disagreements"] = list(result.consistency.disagreements)
            out[-region.neg_id] = props
    return out


def _write_geojson(path: Path, tmp_path: Path, crs: Any, captions: dict[int, dict], cap: int) -> None:
    header: dict[str, Any] = {"type": "FeatureCollection", "name": path.stem}
    epsg = crs.to_epsg() if crs is not None else None
    if epsg is not None:
        header["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}}
    head = json.dumps({**header, "features": []})[: -len("[]}")]
    note = f"not captioned: only the {cap} largest regions are (max_region_captions)"
    tmp_out = path.with_name(f".{path.name}.tmp")
    with tmp_out.open("w", encoding="utf-8") as out, tmp_path.open(encoding="utf-8") as lines:
        out.write(head + "[\n")
        for i, line in enumerate(lines):
            feature = json.loads(line)
            props = feature["properties"]
            props.update(captions.get(props["region"], {"caption": None, "caption_note": note}))
            out.write((",\n" if i else "") + json.dumps(feature))
        out.write("\n]}\n")
    os.replace(tmp_out, path)


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

