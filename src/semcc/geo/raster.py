"""Rasters of a GeoTIFF scene: opening them, band selection, the 16-bit stretch, nodata, grid checks.

Beyond the paper (issue 14, "1. GeoTIFF scenes of any size"; see :mod:`semcc.geo`): what turns a georeferenced
before / after pair into the 8-bit RGB windows and valid-pixel masks that the paper's network (Eq. 6 masks /
Eq. 7 captions, via a :class:`semcc.inference.Predictor`) reads. rasterio is imported on first use.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semcc.data.inputs import InputImageError

#: File suffixes ``semcc caption`` sends to this module.
GEO_SUFFIXES = (".tif", ".tiff")
#: The mask GeoTIFF's nodata value.
MASK_NODATA = 255
#: The percentiles of the stretch of non-8-bit bands, and the longest side of the decimated read they come from.
STRETCH_PERCENTILES = (2.0, 98.0)
STATS_SIDE = 1024
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
