"""Change regions of a GeoTIFF scene's mask: polygons, their areas, region captions, the GeoJSON file.

Beyond the paper (issue 14, "1. GeoTIFF scenes of any size"; see :mod:`semcc.geo`): the Eq. 6 mask polygonised
by GDAL, and Eq. 7 captions of a window around each of the largest regions, via a
:class:`semcc.inference.Predictor`. rasterio is imported on first use.
"""

from __future__ import annotations

import heapq
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semcc.geo.raster import MASK_NODATA, _fill_invalid, _rasterio, _Source
from semcc.inference import Predictor


def _ring_area(ring: Sequence[Sequence[float]]) -> float:
    xy = np.asarray(ring, dtype=np.float64)
    x, y = xy[:, 0] - xy[0, 0], xy[:, 1] - xy[0, 1]
    return 0.5 * abs(float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1])))


def _polygon_area(geometry: dict[str, Any]) -> float:
    rings = geometry["coordinates"]
    return _ring_area(rings[0]) - sum(_ring_area(r) for r in rings[1:])



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
