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

The package's modules: :mod:`semcc.geo.raster` (opening rasters, bands, stretch, nodata, grid checks),
:mod:`semcc.geo.stitch` (the mask, strip by strip), :mod:`semcc.geo.regions` (polygons, region captions, GeoJSON)
and :mod:`semcc.geo.scene` (:func:`check_scene`, :func:`caption_scene`, the summary); their names are
re-exported here.
"""

from __future__ import annotations

from semcc.geo.raster import (
    GEO_SUFFIXES,
    MASK_NODATA,
    STATS_SIDE,  # noqa: F401  (re-exported, not in __all__)
    STRETCH_PERCENTILES,  # noqa: F401  (re-exported, not in __all__)
    BandScaling,
    GeoSceneError,
    _area_unit,  # noqa: F401  (re-exported, not in __all__)
    is_geo_path,
    parse_bands,
    select_bands,
)
from semcc.geo.scene import SceneResult, caption_scene, check_scene
from semcc.geo.stitch import BLOCK  # noqa: F401  (re-exported, not in __all__)

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
