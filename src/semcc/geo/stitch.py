"""The change mask of a GeoTIFF scene, written strip by strip (windowed, memory bounded by one row of windows).

Beyond the paper (issue 14, "1. GeoTIFF scenes of any size"; see :mod:`semcc.geo`): Eq. 6 masks by the
:class:`semcc.inference.Predictor`'s sliding window, one strip of window rows at a time, into a tiled mask
GeoTIFF. rasterio is imported on first use.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from semcc.geo.raster import MASK_NODATA, _fill_invalid, _rasterio, _Source
from semcc.inference import Predictor, cd_window_logits, window_starts, window_weight
from semcc.models.cd_head import class_mask

#: Block size of the mask GeoTIFF (tiles of BLOCK x BLOCK; strips are written in whole block rows).
BLOCK = 256
_COLOURS = {0: (0, 0, 0, 0), 1: (255, 0, 0, 255), 2: (255, 200, 0, 255), 3: (0, 160, 255, 255),
            MASK_NODATA: (0, 0, 0, 0)}


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
                with predictor.radiometry():
                    logits = cd_window_logits(predictor.model, image_a, image_b, predictor.mask_tta)
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

