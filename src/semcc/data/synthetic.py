"""SynthLEVIR: procedurally generated bi-temporal aerial scenes, written in the real LEVIR layouts.

It produces data for the LEVIR-CC / LEVIR-MCI / LEVIR-CD readers of :mod:`semcc.data.levir` (the same
readers load the real data sets): a ``LEVIR-CC`` folder (``LevirCCcaptions.json``, ``images/{split}/{A,B}``
pairs and LEVIR-MCI ``label`` masks: 255 building change, 128 road change, 0 nothing) and a ``LEVIR-CD``
folder (``{split}/{A,B,label}`` tiles of ``cd_scale * size`` pixels, 0/255 building-change labels).

Scenes are drawn with numpy and Pillow only: bare land, grass or desert ground (low-frequency noise
upsampled with Pillow + fine grain), tree clusters with shadows, roads (straight, curved, crossing,
branches) and houses (rectangles or L shapes, two-tone roofs with a ridge, shadows) in varied colours and
sizes. About ``no_change_ratio`` of the pairs are unchanged; the others get one change event: buildings
appear (on open ground, along a road, in the woods with the trees under them removed), buildings are
demolished, a road is built (possibly with houses along it), trees are removed, or buildings appear and
others disappear. Nuisances that are not changes (illumination and colour shift, seasonal tint of the
vegetation, misregistration of up to two pixels, sensor noise; strength ``nuisance``) are applied to A
and B independently; masks and captions never mention them.

Captions (five per changed pair, different wordings) use only words of the real LEVIR-CC vocabulary and are
true to the pixels. The rules, also used by the tests:

* count words (:func:`count_words`): 1 -> "a" / "one", 2 -> "two", 3 -> "three" / "several" / "some",
  4-5 -> "several" / "some", 6 or more -> "many";
* place (:func:`place_of`): the 3x3 cell of the centroid of the changed pixels; when at least 80% of those
  pixels lie in that cell the cell is named ("at the top left corner", "at the top", "in the middle"...);
  otherwise when 80% lie in the top / bottom row or the left / right column that side is named ("at the
  top", "on the left side"...); otherwise no place is said;
* context: the ground under new or removed buildings ("on the bareland", "on the grassland", "in the
  desert"), "along the road" for houses placed within a few pixels of a road, "in the woods" for houses
  built where trees stood (those trees are removed).

Changed houses never touch each other (a gap of at least two pixels), so the connected components of the
building-change mask count them. ``LEVIR-CC/synth_meta.json`` records, per pair, the changed objects
(kind, action, count, bounding boxes, place, context) and, per caption, the count words and place it uses.
Every pair is drawn from its own generator ``np.random.default_rng([seed, stream, split, index])``, so the
files do not depend on the number of worker processes; the same seed and config give identical bytes.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from semcc.data.text import NO_CHANGE_SENTENCES

__all__ = [
    "SPLITS",
    "SynthLEVIRConfig",
    "count_words",
    "generate_synth_levir",
    "is_generated",
    "place_of",
    "write_preview",
]

SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_ID = {"train": 0, "val": 1, "test": 2}
_STREAM_CC, _STREAM_CD = 0, 1
_PAD = 2  # canvas margin: room for the misregistration shift of B
_BOTH, _A, _B = 0, 1, 2  # object visible in both images, before only, after only
_MARKER = "synthlevir.json"
_PNG = {"format": "PNG", "compress_level": 1}


@dataclass(frozen=True)
class SynthLEVIRConfig:
    """Arguments of a SynthLEVIR data set.

    Attributes:
        pairs: LEVIR-CC / LEVIR-MCI pairs per split (splits with 0 are left out).
        cd_tiles: LEVIR-CD tiles per split.
        size: side of a pair in pixels (at least 64; object sizes scale with ``size / 256``).
        cd_scale: a LEVIR-CD tile is ``cd_scale * size`` pixels wide, at the same ground resolution.
        seed: base seed.
        nuisance: strength of the non-change nuisances, 0 (none) to 1 (strong): illumination and colour
            shift, seasonal tint, misregistration (0-2 px), sensor noise.
        no_change_ratio: share of unchanged pairs.
        workers: worker processes; 0 = ``os.cpu_count()``, 1 = in this process. Does not change the output.
    """

    pairs: dict[str, int] = field(default_factory=lambda: {"train": 400, "val": 100, "test": 100})
    cd_tiles: dict[str, int] = field(default_factory=lambda: {"train": 16, "val": 4, "test": 4})
    size: int = 256
    cd_scale: int = 4
    seed: int = 0
    nuisance: float = 0.5
    no_change_ratio: float = 0.5
    workers: int = 0

    def __post_init__(self) -> None:
        for name in ("pairs", "cd_tiles"):
            counts = getattr(self, name)
            bad = [k for k in counts if k not in SPLITS]
            if bad:
                raise ValueError(f"SynthLEVIRConfig.{name}: unknown split(s) {bad}; use {list(SPLITS)}")
            if any(int(v) < 0 for v in counts.values()):
                raise ValueError(f"SynthLEVIRConfig.{name}: counts must be >= 0, got {counts}")
        if self.size < 64:
            raise ValueError(f"SynthLEVIRConfig.size must be >= 64, got {self.size}")
        if self.cd_scale < 1:
            raise ValueError(f"SynthLEVIRConfig.cd_scale must be >= 1, got {self.cd_scale}")
        if not 0.0 <= self.nuisance <= 2.0:
            raise ValueError(f"SynthLEVIRConfig.nuisance must be in [0, 2], got {self.nuisance}")
        if not 0.0 <= self.no_change_ratio <= 1.0:
            raise ValueError(f"SynthLEVIRConfig.no_change_ratio must be in [0, 1], got {self.no_change_ratio}")
        if self.workers < 0:
            raise ValueError(f"SynthLEVIRConfig.workers must be >= 0, got {self.workers}")

    def content_dict(self) -> dict[str, Any]:
        """The fields that determine the files (everything but ``workers``), JSON-ready."""
        d = asdict(self)
        d.pop("workers")
        d["pairs"] = {k: int(d["pairs"][k]) for k in SPLITS if int(d["pairs"].get(k, 0)) > 0}
        d["cd_tiles"] = {k: int(d["cd_tiles"][k]) for k in SPLITS if int(d["cd_tiles"].get(k, 0)) > 0}
        return d


# ----------------------------------------------------------------------------------------------------
# Caption language (every word below is a word of the real LEVIR-CC vocabulary)

_COUNT_WORDS: dict[int, tuple[str, ...]] = {1: ("a", "one"), 2: ("two",), 3: ("three", "several", "some")}
_PLACE_PHRASES: dict[str, tuple[str, ...]] = {
    "top_left": ("at the top left corner", "in the top left corner", "in the upper left corner"),
    "top_right": ("at the top right corner", "in the top right corner", "in the upper right corner"),
    "bottom_left": ("at the bottom left corner", "in the bottom left corner", "in the lower left corner"),
    "bottom_right": ("at the bottom right corner", "in the bottom right corner", "in the lower right corner"),
    "top": ("at the top", "at the top of the scene", "in the upper part of the scene"),
    "bottom": ("at the bottom", "at the bottom of the scene", "in the lower part of the scene"),
    "left": ("on the left", "on the left side", "on the left side of the scene"),
    "right": ("on the right", "on the right side", "on the right side of the scene"),
    "center": ("in the middle", "in the center", "in the middle of the scene", "in the center of the scene"),
}
_CELL_NAMES = (("top_left", "top", "top_right"), ("left", "center", "right"),
               ("bottom_left", "bottom", "bottom_right"))
_CONTEXT_PHRASES: dict[str, tuple[str, ...]] = {
    "bareland": ("on the bareland", "in the bareland", "on the bare land", "on the wasteland",
                 "in the open space"),
    "grass": ("on the grassland", "on the meadow", "on the grass", "in the grassland"),
    "desert": ("in the desert", "on the sand"),
    "road": ("along the road", "beside the road", "by the road", "next to the road", "near the road"),
    "woods": ("in the woods", "in the forest", "among the trees", "in the woodland"),
}
_GROUND_NOUNS: dict[str, tuple[str, ...]] = {
    "bareland": ("the bareland", "the bare land", "the wasteland"),
    "grass": ("the grassland", "the meadow"),
    "desert": ("the desert", "the sand"),
    "woods": ("the trees", "the woods", "the forest"),
}
_HOUSE_NOUNS = (("house", "houses"), ("building", "buildings"), ("villa", "villas"))
_ROAD_NOUNS = {
    "straight": ("a road", "a straight road", "a new road"),
    "curved": ("a curved road", "a winding road", "a new road"),
    "cross": ("a cross road", "a crossroad", "a new crossroad"),
    "branch": ("a road", "a new road"),
}


def count_words(n: int) -> tuple[str, ...]:
    """Count words true for ``n`` objects: 1 a/one, 2 two, 3 three/several/some, 4-5 several/some, 6+ many."""
    if n < 1:
        raise ValueError(f"count_words needs n >= 1, got {n}")
    if n in _COUNT_WORDS:
        return _COUNT_WORDS[n]
    return ("several", "some") if n <= 5 else ("many",)


def place_of(mask: np.ndarray) -> str | None:
    """Place name of the True pixels of ``mask`` (H x W) on the 3x3 grid, or None (see the module doc).

    Returns one of ``top_left, top, top_right, left, center, right, bottom_left, bottom, bottom_right``.
    """
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    h, w = mask.shape
    rows, cols = (3 * ys) // h, (3 * xs) // w
    r, c = min(2, int(3 * ys.mean() // h)), min(2, int(3 * xs.mean() // w))
    if np.mean((rows == r) & (cols == c)) >= 0.8:
        return _CELL_NAMES[r][c]
    if r != 1 and np.mean(rows == r) >= 0.8:
        return _CELL_NAMES[r][1]
    if c != 1 and np.mean(cols == c) >= 0.8:
        return _CELL_NAMES[1][c]
    return None


# ----------------------------------------------------------------------------------------------------
# Scene layout

_GROUND: dict[str, dict[str, Any]] = {
    "bareland": {"base": (180, 165, 130), "patch": (150, 130, 98), "patch2": (146, 146, 100), "grain": 9.0,
                 "mid": 14.0},
    "grass": {"base": (100, 118, 68), "patch": (134, 128, 86), "patch2": (78, 98, 54), "grain": 8.0,
              "mid": 12.0},
    "desert": {"base": (214, 202, 172), "patch": (197, 182, 148), "patch2": (224, 216, 192), "grain": 7.0,
               "mid": 11.0},
}
_ROOFS = np.array([(84, 86, 92), (132, 132, 136), (214, 214, 208), (152, 74, 58), (122, 92, 72),
                   (70, 92, 128), (176, 160, 140)], np.float32)
_ROOF_P = np.array([0.25, 0.2, 0.12, 0.12, 0.12, 0.09, 0.10])
_ROAD_COLOURS = {"concrete": ((172, 172, 166), (204, 204, 198)), "asphalt": ((96, 96, 100), (150, 150, 146)),
                 "dirt": ((166, 146, 112), (166, 146, 112))}
_SOIL = np.array((172, 150, 114), np.float32)
_LAWN = np.array((92, 122, 62), np.float32)


def _noise(rng: np.random.Generator, c: int, cell: float) -> np.ndarray:
    """Smooth noise of feature size ``cell`` px on a c x c canvas (small Gaussian field, bicubic upsampling)."""
    k = max(2, math.ceil(c / cell) + 1)
    small = rng.standard_normal((k, k)).astype(np.float32)
    return np.asarray(Image.fromarray(small).resize((c, c), Image.Resampling.BICUBIC), dtype=np.float32)


class _Scene:
    """Objects of one bi-temporal scene on a (n + 2 * _PAD)^2 canvas; ``render(t)`` draws time t (1 A, 2 B)."""

    def __init__(self, rng: np.random.Generator, n: int, unit: float) -> None:
        self.rng, self.n, self.u = rng, n, unit
        self.c = c = n + 2 * _PAD
        self.ground_kind = str(rng.choice(["bareland", "grass", "desert"], p=[0.5, 0.27, 0.23]))
        self.sun = (int(rng.choice([-1, 1])), int(rng.choice([-1, 1])))  # direction shadows fall (x, y)
        self.shadow_len = max(1, round(unit * rng.uniform(2.0, 4.0)))
        self.occ = np.zeros((c, c), bool)  # house bounding boxes
        self.roads: list[dict[str, Any]] = []
        self.trees = np.zeros((0, 4), np.float32)  # cx, cy, r, time
        self.houses: list[dict[str, Any]] = []
        self.patches: list[tuple[str, tuple[float, ...], int, bool]] = []  # kind, box, time, ellipse
        self._masks: dict[str, np.ndarray] | None = None
        self.grain = rng.standard_normal((c, c)).astype(np.float32)
        self.mid = _noise(rng, c, max(2.0, 5 * unit))
        self.tree_colour = np.array((48, 68, 38), np.float32) + rng.normal(0, 5, 3).astype(np.float32)

    # -- geometry helpers -------------------------------------------------------------------------------
    def length(self, lo: float, hi: float, minimum: float = 1.0) -> float:
        return max(minimum, self.u * float(self.rng.uniform(lo, hi)))

    def region(self, big: bool) -> tuple[float, float, float, float]:
        """A random region of the pair (canvas coordinates): a 3x3 cell, a side band or the whole image."""
        rng, n, p = self.rng, self.n, _PAD
        t = n / 3
        kind = rng.choice(["band", "whole"], p=[0.6, 0.4]) if big else rng.choice(
            ["cell", "band", "whole"], p=[0.55, 0.3, 0.15])
        if kind == "cell":
            r, c = rng.integers(0, 3, 2)
            return (p + c * t, p + r * t, p + (c + 1) * t, p + (r + 1) * t)
        if kind == "band":
            side = rng.integers(0, 4)
            return [(p, p, p + n, p + t), (p, p + 2 * t, p + n, p + n), (p, p, p + t, p + n),
                    (p + 2 * t, p, p + n, p + n)][side]
        return (p, p, p + n, p + n)

    def add_road(self, pts: list[tuple[float, float]], time: int, width: int | None = None) -> dict[str, Any]:
        rng = self.rng
        w = width if width is not None else max(2, round(self.length(9, 15)))
        styles = ["concrete", "asphalt", "dirt"] if self.ground_kind != "grass" else ["concrete", "asphalt"]
        probs = [0.5, 0.3, 0.2] if len(styles) == 3 else [0.6, 0.4]
        road = {"pts": np.asarray(pts, np.float32), "w": int(w), "style": str(rng.choice(styles, p=probs)),
                "time": time}
        self.roads.append(road)
        self._masks = None
        return road

    def straight_pts(self, orient: str, pos: float) -> list[tuple[float, float]]:
        c = self.c
        tilt = float(self.rng.uniform(-0.06, 0.06)) * c
        if orient == "h":
            return [(-8.0, pos - tilt / 2), (c + 8.0, pos + tilt / 2)]
        return [(pos - tilt / 2, -8.0), (pos + tilt / 2, c + 8.0)]

    def curve_pts(self) -> list[tuple[float, float]]:
        rng, c = self.rng, self.c
        sides = rng.choice(4, 2, replace=False)

        def edge(side: int) -> np.ndarray:
            v = float(rng.uniform(0.15, 0.85)) * c
            return np.array([(v, -8.0), (v, c + 8.0), (-8.0, v), (c + 8.0, v)][side])

        p0, p2 = edge(int(sides[0])), edge(int(sides[1]))
        p1 = rng.uniform(0.2, 0.8, 2) * c
        s = np.linspace(0, 1, 32)[:, None]
        pts = (1 - s) ** 2 * p0 + 2 * s * (1 - s) * p1 + s**2 * p2
        return [(float(x), float(y)) for x, y in pts]

    def draw_roads(self, extra: float, times: tuple[int, ...] | None = None, body_only: bool = True) -> np.ndarray:
        im = Image.new("L", (self.c, self.c))
        d = ImageDraw.Draw(im)
        for r in self.roads:
            if times is None or r["time"] in times:
                d.line([tuple(p) for p in r["pts"].tolist()], fill=255, width=round(r["w"] + 2 * extra),
                       joint="curve")
        return np.asarray(im) > 0

    @property
    def masks(self) -> dict[str, np.ndarray]:
        """Road corridors (all times): ``near`` (no house), ``tree`` (no tree centre), ``far`` (open ground)."""
        if self._masks is None:
            u = self.u
            self._masks = {"near": self.draw_roads(max(1.0, 1.5 * u)), "tree": self.draw_roads(max(2.0, 5 * u)),
                           "far": self.draw_roads(max(3.0, 16 * u))}
        return self._masks

    def road_samples(self, road: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Points every ~2 px along a road's centre line and the unit normals there."""
        if "samples" not in road:
            pts = road["pts"]
            seg = [np.linspace(pts[i], pts[i + 1], max(2, int(np.linalg.norm(pts[i + 1] - pts[i]) / 2)),
                               endpoint=False) for i in range(len(pts) - 1)]
            dense = np.concatenate([*seg, pts[-1:]])
            tan = np.gradient(dense, axis=0)
            tan /= np.maximum(np.linalg.norm(tan, axis=1, keepdims=True), 1e-6)
            road["samples"] = (dense, np.stack([-tan[:, 1], tan[:, 0]], 1))
        return road["samples"]

    def trees_hit(self, box: tuple[int, int, int, int], pad: float = 0.0) -> np.ndarray:
        x0, y0, x1, y1 = box
        t = self.trees
        dx = np.maximum(np.maximum(x0 - pad - t[:, 0], 0), t[:, 0] - (x1 + pad))
        dy = np.maximum(np.maximum(y0 - pad - t[:, 1], 0), t[:, 1] - (y1 + pad))
        return dx * dx + dy * dy < t[:, 2] ** 2

    # -- houses --------------------------------------------------------------------------------------------
    def house_shape(self) -> tuple[list[tuple[int, int, int, int]], int, int]:
        """Rectangles (relative) of a house: a main block, sometimes an annex making an L, and its bbox size."""
        rng = self.rng
        w = max(4, round(self.length(22, 40)))
        h = max(4, round(w * rng.uniform(0.55, 1.0)))
        if rng.random() < 0.5:
            w, h = h, w
        rects = [(0, 0, w, h)]
        if rng.random() < 0.35 and min(w, h) >= 8:
            aw, ah = max(3, round(w * rng.uniform(0.35, 0.55))), max(3, round(h * rng.uniform(0.3, 0.5)))
            ax = 0 if rng.random() < 0.5 else w - aw
            rects.append((ax, h, ax + aw, h + ah) if rng.random() < 0.5 else (ax, -ah, ax + aw, 0))
        y_min = min(r[1] for r in rects)
        rects = [(a, b - y_min, c, d - y_min) for a, b, c, d in rects]
        return rects, w, max(r[3] for r in rects)

    def try_house(self, cx: float, cy: float, shape: tuple[list[tuple[int, int, int, int]], int, int],
                  time: int, *, inside: bool, margin: int, mode: str) -> dict[str, Any] | None:
        """Place a house centred at (cx, cy) if it fits; mode: open / road / woods / any."""
        rects, w, h = shape
        x0, y0 = round(cx - w / 2), round(cy - h / 2)
        x1, y1 = x0 + w, y0 + h
        lo, hi = (_PAD + 1, _PAD + self.n - 1) if inside else (0, self.c)
        if x0 < lo or y0 < lo or x1 > hi or y1 > hi:
            return None
        if self.occ[max(0, y0 - margin):y1 + margin, max(0, x0 - margin):x1 + margin].any():
            return None
        m = self.masks
        if m["near"][y0:y1, x0:x1].any() or (mode == "open" and m["far"][y0:y1, x0:x1].any()):
            return None
        hit = self.trees_hit((x0, y0, x1, y1), pad=1.0)
        if mode == "woods":
            if hit.sum() < 3:
                return None
        elif hit.any():
            return None
        rng = self.rng
        roof = _ROOFS[rng.choice(len(_ROOFS), p=_ROOF_P)] + rng.normal(0, 7, 3).astype(np.float32)
        house = {"rects": [(x0 + a, y0 + b, x0 + c, y0 + d) for a, b, c, d in rects], "bbox": (x0, y0, x1, y1),
                 "time": time, "roof": np.clip(roof, 30, 235)}
        self.occ[y0:y1, x0:x1] = True
        self.houses.append(house)
        if mode == "woods":  # the trees under a new house are cut
            self.trees[hit & (self.trees[:, 3] == _BOTH), 3] = _A
        return house

    def _yard(self, house: dict[str, Any], kind: str, time: int, lo: float, hi: float) -> None:
        x0, y0, x1, y1 = house["bbox"]
        g = self.length(lo, hi)
        self.patches.append((kind, (x0 - g, y0 - g, x1 + g, y1 + g), time, False))

    def houses_open(self, region: tuple[float, ...], n: int, time: int, margin: int, inside: bool = True,
                    mode: str = "open") -> list[dict[str, Any]]:
        rng, out = self.rng, []
        x0, y0, x1, y1 = region
        for _ in range(n * 30):
            if len(out) == n:
                break
            h = self.try_house(rng.uniform(x0, x1), rng.uniform(y0, y1), self.house_shape(), time,
                               inside=inside, margin=margin, mode=mode)
            if h is not None:
                out.append(h)
        return out

    def houses_along(self, road: dict[str, Any], region: tuple[float, ...], n: int, time: int, margin: int,
                     inside: bool = True) -> list[dict[str, Any]]:
        rng, out = self.rng, []
        pts, normals = self.road_samples(road)
        x0, y0, x1, y1 = region
        sel = np.nonzero((pts[:, 0] >= x0 - 20 * self.u) & (pts[:, 0] < x1 + 20 * self.u)
                         & (pts[:, 1] >= y0 - 20 * self.u) & (pts[:, 1] < y1 + 20 * self.u))[0]
        if sel.size == 0:
            return out
        sides = [-1.0, 1.0] if rng.random() < 0.6 else [float(rng.choice([-1.0, 1.0]))]
        for _ in range(n * 30):
            if len(out) == n:
                break
            i = int(sel[rng.integers(sel.size)])
            shape = self.house_shape()
            nx, ny = normals[i]
            gap = max(1.5, 1.5 * self.u) + self.length(1.0, 4.0, 0.5)
            d = road["w"] / 2 + gap + abs(nx) * shape[1] / 2 + abs(ny) * shape[2] / 2
            side = sides[rng.integers(len(sides))]
            cx, cy = pts[i, 0] + side * nx * d, pts[i, 1] + side * ny * d
            if not (x0 <= cx < x1 and y0 <= cy < y1):
                continue
            h = self.try_house(cx, cy, shape, time, inside=inside, margin=margin, mode="road")
            if h is not None:
                out.append(h)
        return out

    # -- trees ---------------------------------------------------------------------------------------------
    def add_trees(self, cx: np.ndarray, cy: np.ndarray, r: np.ndarray, time: int) -> np.ndarray:
        """Add tree crowns whose centres are off the roads and off the houses; returns their indices."""
        c = self.c
        ix, iy = np.clip(cx.astype(int), 0, c - 1), np.clip(cy.astype(int), 0, c - 1)
        ok = (cx >= 0) & (cx < c) & (cy >= 0) & (cy < c) & ~self.masks["tree"][iy, ix]
        if self.houses:
            for k in np.nonzero(ok)[0]:
                rr = math.ceil(r[k]) + 1
                if self.occ[max(0, iy[k] - rr):iy[k] + rr, max(0, ix[k] - rr):ix[k] + rr].any():
                    ok[k] = False
        new = np.stack([cx[ok], cy[ok], r[ok], np.full(ok.sum(), time)], 1).astype(np.float32)
        start = len(self.trees)
        self.trees = np.concatenate([self.trees, new])
        return np.arange(start, len(self.trees))

    def cluster(self, cx: float, cy: float, radius: float, density: float, time: int,
                rlo: float = 2.5, rhi: float = 6.0) -> np.ndarray:
        rng = self.rng
        rmean = self.u * (rlo + rhi) / 2
        k = max(3, int(density * (radius / max(rmean, 1.0)) ** 2))
        rho, ang = radius * np.sqrt(rng.random(k)), rng.uniform(0, 2 * np.pi, k)
        r = np.maximum(1.2, self.u * rng.uniform(rlo, rhi, k))
        return self.add_trees(cx + rho * np.cos(ang), cy + rho * np.sin(ang), r, time)

    # -- rendering -----------------------------------------------------------------------------------------
    def build_ground(self) -> None:
        rng, c, u = self.rng, self.c, self.u
        pal = _GROUND[self.ground_kind]
        base = np.array(pal["base"], np.float32) + rng.normal(0, 6, 3).astype(np.float32)
        lf1, lf2 = _noise(rng, c, max(8.0, 90 * u)), _noise(rng, c, max(3.0, 14 * u))
        w1 = np.clip(0.45 + 0.9 * lf1, 0, 1)[..., None]
        w2 = np.clip(1.2 * lf2 - 0.45, 0, 1)[..., None] * 0.8
        g = base * (1 - w1) + np.array(pal["patch"], np.float32) * w1
        g = g * (1 - w2) + np.array(pal["patch2"], np.float32) * w2
        g += (self.mid * pal["mid"] + self.grain * pal["grain"])[..., None]
        self.ground = g
        if self.ground_kind == "grass":
            self.ground_veg = 1.0 - 0.6 * w1[..., 0]
        elif self.ground_kind == "bareland":
            self.ground_veg = w2[..., 0]
        else:
            self.ground_veg = np.zeros((c, c), np.float32)

    def road_body(self, t: int) -> np.ndarray:
        key = f"body{t}"
        if key not in self.__dict__:
            self.__dict__[key] = self.draw_roads(0.0, (_BOTH, t))
        return self.__dict__[key]

    def render(self, t: int, tint: float) -> np.ndarray:
        """Float RGB canvas of time t (1 = A, 2 = B); ``tint`` > 0 browner, < 0 greener vegetation."""
        c, u = self.c, self.u
        vis = (_BOTH, t)
        img = self.ground.copy()
        grain = self.grain[..., None]
        styles = sorted({r["style"] for r in self.roads if r["time"] in vis})
        names = ["soil", "lawn", "shadow", "crown", "hl"] + [f"{k}_{s}" for s in styles for k in ("curb", "body")]
        canv = {k: Image.new("L", (c, c)) for k in names}
        draw = {k: ImageDraw.Draw(v) for k, v in canv.items()}
        for kind, box, tt, ellipse in self.patches:
            if tt in vis:
                (draw[kind].ellipse if ellipse else draw[kind].rectangle)(box, fill=255)
        for r in self.roads:
            if r["time"] in vis:
                pts = [tuple(p) for p in r["pts"].tolist()]
                if r["style"] != "dirt":
                    draw[f"curb_{r['style']}"].line(pts, fill=255, width=round(r["w"] + 2 * max(1.0, 1.2 * u)),
                                                    joint="curve")
                draw[f"body_{r['style']}"].line(pts, fill=255, width=r["w"], joint="curve")
        sx, sy = self.sun
        sl = self.shadow_len
        trees = self.trees[np.isin(self.trees[:, 3], vis)]
        for x, y, r, _ in trees.tolist():
            draw["shadow"].ellipse((x - r + sx * sl, y - r + sy * sl, x + r + sx * sl, y + r + sy * sl), fill=255)
            draw["crown"].ellipse((x - r, y - r, x + r, y + r), fill=255)
            hx, hy, hr = x - sx * 0.3 * r, y - sy * 0.3 * r, 0.55 * r
            draw["hl"].ellipse((hx - hr, hy - hr, hx + hr, hy + hr), fill=255)
        houses = [h for h in self.houses if h["time"] in vis]
        for h in houses:
            for x0, y0, x1, y1 in h["rects"]:
                draw["shadow"].rectangle((x0 + sx * sl, y0 + sy * sl, x1 - 1 + sx * sl, y1 - 1 + sy * sl), fill=255)
        veg = self.ground_veg.copy() if tint else None
        mid = self.mid[..., None]

        def region(name: str, box: tuple[int, int, int, int] | None = None) -> tuple[Any, np.ndarray] | None:
            box = box or canv[name].getbbox()
            if box is None:
                return None
            x0, y0, x1, y1 = box
            return (slice(y0, y1), slice(x0, x1)), np.asarray(canv[name].crop(box), np.float32) * (1 / 255)

        layers = [("soil", _SOIL, 9.0, False), ("lawn", _LAWN, 6.0, True)]
        layers += [(f"{k}_{st}", np.array(_ROAD_COLOURS[st][0 if k == "body" else 1], np.float32), 4.0, False)
                   for k in ("curb", "body") for st in styles]
        for name, col, amp, green in layers:
            r = region(name)
            if r is None:
                continue
            sl, a = r
            img[sl] += a[..., None] * (col + amp * grain[sl] + 3 * mid[sl] - img[sl])
            if veg is not None:
                veg[sl] = veg[sl] * (1 - a) + (a if green else 0)
        r = region("shadow")
        if r is not None:
            img[r[0]] *= 1 - 0.45 * r[1][..., None]
        box = canv["crown"].getbbox()
        if box is not None:
            (sl, a), (_, hl) = region("crown", box), region("hl", box)
            crown = self.tree_colour * (1 + 0.16 * grain[sl] + 0.1 * mid[sl]) + hl[..., None] * np.array(
                (16, 22, 9), np.float32)
            img[sl] += a[..., None] * (crown - img[sl])
            if veg is not None:
                veg[sl] = np.maximum(veg[sl], a)
        if veg is not None:
            img += veg[..., None] * (tint * np.array((16, -6, -10), np.float32))
        for h in houses:
            self._draw_roof(img, h)
        return img

    def _draw_roof(self, img: np.ndarray, house: dict[str, Any]) -> None:
        sx, sy = self.sun
        col = house["roof"]
        for x0, y0, x1, y1 in house["rects"]:
            img[y0:y1, x0:x1] = col * 0.72
            ix0, iy0, ix1, iy1 = (x0 + 1, y0 + 1, x1 - 1, y1 - 1) if min(x1 - x0, y1 - y0) >= 6 else (x0, y0, x1, y1)
            if x1 - x0 >= y1 - y0:  # ridge along x
                ym = (iy0 + iy1) // 2
                img[iy0:ym, ix0:ix1] = col * (1.12 if sy > 0 else 0.84)
                img[ym:iy1, ix0:ix1] = col * (0.84 if sy > 0 else 1.12)
                if iy1 - iy0 >= 5:
                    img[ym, ix0:ix1] = np.minimum(col * 1.25, 250)
            else:
                xm = (ix0 + ix1) // 2
                img[iy0:iy1, ix0:xm] = col * (1.12 if sx > 0 else 0.84)
                img[iy0:iy1, xm:ix1] = col * (0.84 if sx > 0 else 1.12)
                if ix1 - ix0 >= 5:
                    img[iy0:iy1, xm] = np.minimum(col * 1.25, 250)


# ----------------------------------------------------------------------------------------------------
# Change events

def _count(rng: np.random.Generator) -> int:
    """Number of houses of an event: 1, 2, 3, several or many."""
    return int(rng.choice([1, 2, 3, 4, 5, 6, 8, 11], p=[0.24, 0.2, 0.15, 0.09, 0.07, 0.08, 0.09, 0.08]))


def _static_roads(scene: _Scene, k: int, orient: str | None = None) -> list[dict[str, Any]]:
    """``k`` roads present in both images (straight or curved)."""
    rng, out = scene.rng, []
    for _ in range(k):
        if rng.random() < 0.75 or orient is not None:
            o = orient or str(rng.choice(["h", "v"]))
            pts = scene.straight_pts(o, float(rng.uniform(0.15, 0.85)) * scene.c)
        else:
            pts = scene.curve_pts()
        out.append(scene.add_road(pts, _BOTH))
    return out


def _add_yards(scene: _Scene, houses: list[dict[str, Any]], time: int, p: float) -> None:
    for h in houses:
        if scene.rng.random() < p:
            scene._yard(h, "lawn", time, 2.0, 5.0)


def _demolish_sites(scene: _Scene, houses: list[dict[str, Any]]) -> None:
    for h in houses:
        scene._yard(h, "soil", _B, 1.0, 3.0)


def _houses_event(scene: _Scene, region: tuple[float, ...], n: int, time: int, mode: str,
                  roads: list[dict[str, Any]], margin: int) -> list[dict[str, Any]]:
    if mode == "road" and roads:
        road = roads[int(scene.rng.integers(len(roads)))]
        return scene.houses_along(road, region, n, time, margin)
    return scene.houses_open(region, n, time, margin)


def _woods_event(scene: _Scene, region: tuple[float, ...], n: int, margin: int
                 ) -> tuple[list[dict[str, Any]], np.ndarray]:
    """A tree cluster in ``region``; ``n`` houses are built in it (the trees under them are removed)."""
    rng = scene.rng
    x0, y0, x1, y1 = region
    cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
    radius = min(scene.length(16, 24) * math.sqrt(n), 0.45 * scene.n)
    idx = scene.cluster(cx, cy, radius, 1.8, _BOTH)
    sub = (max(x0, cx - radius), max(y0, cy - radius), min(x1, cx + radius), min(y1, cy + radius))
    houses = scene.houses_open(sub, n, _B, margin, mode="woods")
    removed = idx[scene.trees[idx, 3] == _A]
    return houses, removed


def _cc_layout(scene: _Scene) -> list[dict[str, Any]]:
    """Lay out the change event of a changed pair; returns its clauses (role, kind, action, objects...)."""
    rng, c = scene.rng, scene.c
    margin = max(2, round(3 * scene.u))
    etype = str(rng.choice(["build", "woods", "demolish", "road", "trees", "swap"],
                           p=[0.32, 0.12, 0.16, 0.22, 0.08, 0.10]))
    clauses: list[dict[str, Any]] = []
    ground = scene.ground_kind
    if etype == "road":
        shape = str(rng.choice(["straight", "curved", "cross", "branch"], p=[0.4, 0.22, 0.16, 0.22]))
        if shape == "branch":
            orient = str(rng.choice(["h", "v"]))
            pos = float(rng.uniform(0.2, 0.8)) * c
            main = scene.add_road(scene.straight_pts(orient, pos), _BOTH)
            along, length = float(rng.uniform(0.2, 0.8)) * c, float(rng.uniform(0.25, 0.5)) * c
            sign = 1.0 if rng.random() < 0.5 else -1.0
            start, end = ((along, pos), (along, pos + sign * length)) if orient == "h" else (
                (pos, along), (pos + sign * length, along))
            new = [scene.add_road([start, end], _B, width=max(2, main["w"] - int(rng.integers(0, 3))))]
        elif shape == "straight":
            orient = str(rng.choice(["h", "v"]))
            if rng.random() < 0.5:
                _static_roads(scene, 1, "v" if orient == "h" else "h")
            new = [scene.add_road(scene.straight_pts(orient, float(rng.uniform(0.12, 0.88)) * c), _B)]
        elif shape == "curved":
            new = [scene.add_road(scene.curve_pts(), _B)]
        else:
            new = [scene.add_road(scene.straight_pts(o, float(rng.uniform(0.25, 0.75)) * c), _B) for o in "hv"]
        clauses.append({"role": "r", "kind": "road", "action": "built", "shape": shape, "roads": new,
                        "context": ground})
        if rng.random() < 0.55:
            n = _count(rng)
            houses: list[dict[str, Any]] = []
            for road in new:
                houses += scene.houses_along(road, (0, 0, c, c), n - len(houses), _B, margin)
            _add_yards(scene, houses, _B, 0.5)
            clauses.append({"role": "b", "kind": "building", "action": "appear", "houses": houses,
                            "context": "road"})
    elif etype == "trees":
        if rng.random() < 0.4:
            _static_roads(scene, 1)
        region = scene.region(False)
        x0, y0, x1, y1 = region
        radius = min(scene.length(14, 30), 0.5 * min(x1 - x0, y1 - y0))
        idx = scene.cluster(rng.uniform(x0, x1), rng.uniform(y0, y1), radius, 1.6, _A)
        if ground == "grass" and rng.random() < 0.6 and len(idx):
            t = scene.trees[idx]
            scene.patches.append(("soil", (float(t[:, 0].min()), float(t[:, 1].min()), float(t[:, 0].max()),
                                           float(t[:, 1].max())), _B, True))
        clauses.append({"role": "t", "kind": "trees", "action": "removed", "trees": idx})
    elif etype == "woods":
        if rng.random() < 0.4:
            _static_roads(scene, 1)
        n = _count(rng)
        houses, removed = _woods_event(scene, scene.region(n >= 6), n, margin)
        clauses.append({"role": "b", "kind": "building", "action": "appear", "houses": houses,
                        "context": "woods"})
        clauses.append({"role": "t", "kind": "trees", "action": "removed", "trees": removed})
    else:
        mode = "road" if rng.random() < 0.4 else "open"
        roads = _static_roads(scene, 1 if mode == "road" else int(rng.choice([0, 1, 2], p=[0.45, 0.4, 0.15])))
        if etype in ("build", "swap"):
            n = _count(rng)
            houses = _houses_event(scene, scene.region(n >= 6), n, _B, mode, roads, margin)
            _add_yards(scene, houses, _B, 0.5 if ground != "grass" else 0.2)
            clauses.append({"role": "b", "kind": "building", "action": "appear", "houses": houses,
                            "context": "road" if mode == "road" else ground})
        if etype in ("demolish", "swap"):
            n = _count(rng) if etype == "demolish" else int(rng.integers(1, 4))
            dmode = mode if etype == "demolish" else "open"
            houses = _houses_event(scene, scene.region(n >= 6), n, _A, dmode, roads, margin)
            _add_yards(scene, houses, _A, 0.5)
            _demolish_sites(scene, houses)
            clauses.append({"role": "d", "kind": "building", "action": "disappear", "houses": houses,
                            "context": "road" if dmode == "road" else ground})
    return clauses


def _cd_layout(scene: _Scene, scale: int) -> None:
    """Roads and building changes of a LEVIR-CD tile: events in random blocks of a scale x scale grid."""
    rng, n = scene.rng, scene.n
    margin = max(2, round(3 * scene.u))
    roads = _static_roads(scene, int(rng.integers(1, scale + 2)))
    blocks = [(i, j) for i in range(scale) for j in range(scale)]
    chosen = [b for b in blocks if rng.random() < 0.3]
    if not chosen and rng.random() < 0.9:
        chosen = [blocks[int(rng.integers(len(blocks)))]]
    bs = n / scale
    for i, j in chosen:
        region = (_PAD + j * bs, _PAD + i * bs, _PAD + (j + 1) * bs, _PAD + (i + 1) * bs)
        etype = str(rng.choice(["open", "road", "woods", "demolish", "newroad"], p=[0.3, 0.25, 0.15, 0.2, 0.1]))
        k = _count(rng)
        if etype == "woods":
            _woods_event(scene, region, k, margin)
        elif etype == "newroad":
            road = scene.add_road(scene.straight_pts(str(rng.choice(["h", "v"])),
                                                     float(rng.uniform(region[1], region[3]))), _B)
            _add_yards(scene, scene.houses_along(road, region, k, _B, margin), _B, 0.5)
        elif etype == "demolish":
            houses = _houses_event(scene, region, k, _A, str(rng.choice(["open", "road"])), roads, margin)
            _add_yards(scene, houses, _A, 0.5)
            _demolish_sites(scene, houses)
        else:
            _add_yards(scene, _houses_event(scene, region, k, _B, etype, roads, margin), _B, 0.5)


def _fill(scene: _Scene, area: float) -> None:
    """Unchanged content: tree clusters, scattered trees / shrubs, houses along the roads and elsewhere."""
    rng, c, kind = scene.rng, scene.c, scene.ground_kind
    lam = {"grass": 3.0, "bareland": 1.5, "desert": 0.6}[kind] * area
    for _ in range(int(rng.poisson(lam))):
        scene.cluster(rng.uniform(0, c), rng.uniform(0, c), scene.length(10, 32), 1.2, _BOTH)
    k = int(rng.poisson({"grass": 20.0, "bareland": 30.0, "desert": 6.0}[kind] * area))
    lo, hi = (2.0, 5.0) if kind == "grass" else (1.2, 2.8)
    scene.add_trees(rng.uniform(0, c, k), rng.uniform(0, c, k), np.maximum(1.0, scene.u * rng.uniform(lo, hi, k)),
                    _BOTH)
    for road in [r for r in scene.roads if r["time"] == _BOTH]:
        if rng.random() < 0.6:
            houses = scene.houses_along(road, (0, 0, c, c), int(rng.integers(3, 10) * math.sqrt(area)), _BOTH, 1,
                                        inside=False)
            _add_yards(scene, houses, _BOTH, 0.6)
    if rng.random() < 0.35:
        scene.houses_open((0, 0, c, c), int(rng.integers(1, 4) * area), _BOTH, 1, inside=False, mode="any")


def _render_pair(scene: _Scene, nrng: np.random.Generator, nuisance: float) -> tuple[np.ndarray, np.ndarray]:
    """The two images of a scene with independent nuisances (gain, colour shift, tint, shift, noise)."""
    n, nu = scene.n, nuisance
    m = min(2, round(2 * nu))
    params = []
    for t in (1, 2):
        gain, shift, tint = nrng.normal(0, 0.12), nrng.normal(0, 7, 3), nrng.uniform(-1, 1)
        off = (0, 0) if t == 1 else tuple(int(v) for v in np.floor(nrng.random(2) * (2 * m + 1)) - m)
        params.append((1 + nu * gain, (nu * shift).astype(np.float32), nu * tint, off))
    out = []
    for t, (gain, shift, tint, (dy, dx)) in zip((1, 2), params, strict=True):
        img = scene.render(t, tint) * gain + shift
        im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))
        arr = np.asarray(im)[_PAD + dy:_PAD + dy + n, _PAD + dx:_PAD + dx + n]
        if nu > 0:
            noise = nrng.standard_normal(arr.shape, dtype=np.float32) * np.float32(5 * nu)
            arr = np.clip(arr + noise, 0, 255).astype(np.uint8)
        out.append(np.ascontiguousarray(arr))
    return out[0], out[1]


def _footprints(houses: list[dict[str, Any]], n: int) -> np.ndarray:
    mask = np.zeros((n, n), bool)
    for h in houses:
        for x0, y0, x1, y1 in h["rects"]:
            mask[max(0, y0 - _PAD):y1 - _PAD, max(0, x0 - _PAD):x1 - _PAD] = True
    return mask


def _crowns(scene: _Scene, idx: np.ndarray) -> np.ndarray:
    im = Image.new("L", (scene.n, scene.n))
    d = ImageDraw.Draw(im)
    for x, y, r, _ in scene.trees[idx].tolist():
        d.ellipse((x - r - _PAD, y - r - _PAD, x + r - _PAD, y + r - _PAD), fill=255)
    return np.asarray(im) > 0


def _bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def _building_label(scene: _Scene) -> np.ndarray:
    return _footprints([h for h in scene.houses if h["time"] != _BOTH], scene.n)


def _road_change(scene: _Scene) -> np.ndarray:
    p, n = _PAD, scene.n
    return (scene.road_body(_B) & ~scene.road_body(_A))[p:p + n, p:p + n]


# ----------------------------------------------------------------------------------------------------
# Captions

# (format, scope of {P}, scope of {P2}); a scope names the clauses ("b" new buildings, "d" demolished
# buildings, "r" new road, "t" removed trees) whose changed pixels the place phrase describes.
_Template = tuple[str, str | None, str | None]
_T_BUILD: list[_Template] = [
    ("{Sb} {beb} {Vb} {Cb} {P}", "b", None),
    ("{Sb} {appearb} {Cb} {P}", "b", None),
    ("{Sb} {haveb} been {Vb} {P} {Cb}", "b", None),
    ("{Nb} {appearb} {P}", "b", None),
    ("{Sb} {beb} {Vb} {Cb}", None, None),
    ("{Nb} {beb} {Vb} {P}", "b", None),
]
_T_OPEN: list[_Template] = [("{G} {P} {Gbe} replaced by {Sb}", "b", None)]
_T_WOODS: list[_Template] = [
    ("the trees {P} are removed and {Sb} {beb} {Vb}", "b+t", None),
    ("some trees are cut down and {Sb} {appearb} {P}", "b", None),
    ("{Sb} {beb} {Vb} {P} to replace the trees", "b", None),
    ("{G} {P} {Gbe} replaced by {Sb}", "b+t", None),
]
_T_DEMOLISH: list[_Template] = [
    ("{Sd} {P} {bed} demolished", "d", None),
    ("{Sd} {disd} {P}", "d", None),
    ("{Sd} {Cd} {bed} removed", None, None),
    ("{Sd} {haved} been knocked down {P}", "d", None),
    ("{Sd} {bed} removed {P}", "d", None),
    ("{Sd} {P} {bed} replaced by bareland", "d", None),
    ("{Sd} {Cd} {disd} {P}", "d", None),
]
_T_ROAD: list[_Template] = [
    ("{R} is built {Cg} {P}", "r", None),
    ("{R} appears {Cg} {P}", "r", None),
    ("{R} has been constructed {P}", "r", None),
    ("{G} {P} {Gbe} replaced by {R}", "r", None),
    ("a new road is built {P}", "r", None),
    ("{R} is constructed {P} {Cg}", "r", None),
]
_T_BRANCH: list[_Template] = [
    ("{R} is built to join the old road", None, None),
    ("{R} connected to the main road appears {P}", "r", None),
]
_T_ROAD_HOUSES: list[_Template] = [
    ("{R} and {Sb} are built {Cg} {P}", "r+b", None),
    ("{R} with {Sb} along it appears {P}", "r+b", None),
    ("{Sb} {beb} built along the new road {P}", "b", None),
    ("{R} appears {P} and {Sb} {beb} built along it", "r", None),
    ("{Sb} and {R} appear {Cg}", None, None),
    ("{Sb} {appearb} beside the newly built road", None, None),
    ("{R} is built {P} with {Sb} along it", "r+b", None),
]
_T_TREES: list[_Template] = [
    ("the trees {P} are removed", "t", None),
    ("some trees {P} have been cut down", "t", None),
    ("the vegetation {P} is removed", "t", None),
    ("the woods {P} disappear", "t", None),
    ("the forest {P} has been cleared", "t", None),
    ("some trees {P} disappear", "t", None),
    ("the trees {P} have been removed", "t", None),
]
_T_SWAP: list[_Template] = [
    ("{Sb} {beb} built {P} and {Sd} {bed} demolished {P2}", "b", "d"),
    ("{Sd} {P2} {disd} and {Sb} {appearb} {P}", "b", "d"),
    ("{Sb} {appearb} {Cb} {P} while {Sd} {bed} removed {P2}", "b", "d"),
    ("{Sd} {bed} knocked down {P2} and {Sb} {beb} constructed {P}", "b", "d"),
    ("{Nb} {appearb} {P} and {Sd} {P2} {disd}", "b", "d"),
]


def _templates(clauses: dict[str, dict[str, Any]]) -> list[_Template]:
    roles = set(clauses)
    if roles == {"b", "d"}:
        return _T_SWAP
    if "r" in roles:
        base = _T_ROAD_HOUSES if "b" in roles else _T_ROAD
        return base + (_T_BRANCH if clauses["r"]["shape"] == "branch" else [])
    if "b" in roles:
        if clauses["b"]["context"] == "woods":
            return _T_BUILD + _T_WOODS if "t" in roles else _T_BUILD
        return _T_BUILD + (_T_OPEN if clauses["b"]["context"] != "road" else [])
    if "d" in roles:
        return _T_DEMOLISH
    return _T_TREES


def _captions(rng: np.random.Generator, clauses: dict[str, dict[str, Any]], places: dict[str, str | None],
              ground: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Five true, differently worded captions of a changed pair, and what each one claims."""
    templates = _templates(clauses)

    def pick(options: tuple[str, ...] | list[str]) -> str:
        return str(options[int(rng.integers(len(options)))])

    def fill(fmt: str, p1: str | None, p2: str | None) -> tuple[str, dict[str, Any]]:
        vals: dict[str, str] = {}
        used: dict[str, Any] = {"count_words": {}, "places": []}
        for role in ("b", "d"):
            if role not in clauses:
                continue
            n = clauses[role]["count"]
            word = pick(count_words(n))
            sg, pl = _HOUSE_NOUNS[int(rng.integers(len(_HOUSE_NOUNS)))]
            noun = sg if n == 1 else pl
            one = n == 1
            vals.update({
                f"S{role}": f"{word} {noun}", f"N{role}": f"{word} new {noun}",
                f"be{role}": "is" if one else "are", f"have{role}": "has" if one else "have",
                f"appear{role}": "appears" if one else "appear",
                f"dis{role}": "disappears" if one else "disappear",
                f"V{role}": pick(("built", "constructed")),
                f"C{role}": pick(_CONTEXT_PHRASES[clauses[role]["context"]]),
            })
            if f"{{S{role}}}" in fmt or f"{{N{role}}}" in fmt:
                used["count_words"][role] = word
        woods = "b" in clauses and clauses["b"]["context"] == "woods"
        g = pick(_GROUND_NOUNS["woods" if woods else ground])
        vals.update({"G": g, "Gbe": "are" if g in ("the trees", "the woods") else "is",
                     "Cg": pick(_CONTEXT_PHRASES[ground])})
        if "r" in clauses:
            vals["R"] = pick(_ROAD_NOUNS[clauses["r"]["shape"]])
        for slot, scope in (("P", p1), ("P2", p2)):
            name = places.get(scope) if scope else None
            vals[slot] = pick(_PLACE_PHRASES[name]) if name else ""
            if name and f"{{{slot}}}" in fmt:
                used["places"].append({"place": name, "scope": scope.split("+")})
        return " ".join(fmt.format(**vals).split()), used

    texts: list[str] = []
    claims: list[dict[str, Any]] = []
    for _ in range(80):
        text, used = fill(*templates[int(rng.integers(len(templates)))])
        if text not in texts:
            texts.append(text)
            claims.append(used)
        if len(texts) == 5:
            break
    while len(texts) < 5:  # very few distinct wordings possible: repeat
        texts.append(texts[len(texts) % len(texts)])
        claims.append(claims[len(claims) % len(claims)])
    return texts, claims


# ----------------------------------------------------------------------------------------------------
# One pair / one tile

def _make_pair(seed: int, split: str, index: int, size: int, nuisance: float, no_change_ratio: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], dict[str, Any]]:
    """A LEVIR-CC/MCI pair: A, B, MCI label (255 building, 128 road), five captions, meta."""
    rng = np.random.default_rng([seed, _STREAM_CC, _SPLIT_ID[split], index])
    nrng = np.random.default_rng([seed, _STREAM_CC, _SPLIT_ID[split], index, 1])
    changed = bool(rng.random() >= no_change_ratio)
    for _ in range(4):  # a changed pair whose event found no room is laid out again
        scene = _Scene(rng, size, size / 256)
        raw = _cc_layout(scene) if changed else []
        if not changed or any(cl.get("houses") or cl.get("roads") or len(cl.get("trees", ())) >= 3 for cl in raw):
            break
    if not changed:
        _static_roads(scene, int(rng.choice([0, 1, 2], p=[0.45, 0.4, 0.15])))
    _fill(scene, 1.0)
    scene.build_ground()
    a, b = _render_pair(scene, nrng, nuisance)
    buildings = _building_label(scene)
    road = _road_change(scene) & ~buildings
    label = np.where(buildings, 255, np.where(road, 128, 0)).astype(np.uint8)

    clauses: dict[str, dict[str, Any]] = {}
    masks: dict[str, np.ndarray] = {}
    for cl in raw:
        role = cl["role"]
        if cl["kind"] == "building":
            if not cl["houses"]:
                continue
            mask = _footprints(cl["houses"], size)
            boxes = [[int(v) - _PAD for v in h["bbox"]] for h in cl["houses"]]
            meta = {"count": len(cl["houses"]), "context": cl["context"], "boxes": boxes}
        elif cl["kind"] == "road":
            mask = road
            if not mask.any():
                continue
            meta = {"count": 1, "context": cl["context"], "shape": cl["shape"], "boxes": [_bbox(mask)]}
        else:
            if len(cl["trees"]) < 3:
                continue
            mask = _crowns(scene, cl["trees"])
            if not mask.any():
                continue
            meta = {"count": len(cl["trees"]), "boxes": [_bbox(mask)]}
        masks[role] = mask
        clauses[role] = {"role": role, "kind": cl["kind"], "action": cl["action"], **meta,
                         "place": place_of(mask)}
    changed = bool(clauses)
    if changed:
        scopes = {"+".join(s) for s in (["b", "t"], ["r", "b"]) if all(r in masks for r in s)} | set(masks)
        places = {s: place_of(np.logical_or.reduce([masks[r] for r in s.split("+")])) for s in scopes}
        captions, claims = _captions(rng, clauses, places, scene.ground_kind)
    else:
        label[:] = 0
        captions, claims = list(NO_CHANGE_SENTENCES), [{"count_words": {}, "places": []} for _ in range(5)]
    meta = {"changed": changed, "ground": scene.ground_kind, "clauses": [clauses[r] for r in sorted(clauses)],
            "captions": claims}
    return a, b, label, captions, meta


def _make_tile(seed: int, split: str, index: int, size: int, scale: int, nuisance: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """A LEVIR-CD tile of scale * size pixels (same ground resolution as the pairs) and its 0/255 label."""
    rng = np.random.default_rng([seed, _STREAM_CD, _SPLIT_ID[split], index])
    nrng = np.random.default_rng([seed, _STREAM_CD, _SPLIT_ID[split], index, 1])
    scene = _Scene(rng, size * scale, size / 256)
    _cd_layout(scene, scale)
    _fill(scene, float(scale * scale))
    scene.build_ground()
    a, b = _render_pair(scene, nrng, nuisance)
    label = np.where(_building_label(scene), 255, 0).astype(np.uint8)
    changed = [h for h in scene.houses if h["time"] != _BOTH]
    return a, b, label, {"changed": bool(changed), "buildings": len(changed)}


# ----------------------------------------------------------------------------------------------------
# Files

def _save_png(arr: np.ndarray, path: Path) -> None:
    """Write a PNG atomically (temporary name, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(arr).save(tmp, **_PNG)
    os.replace(tmp, path)


def _write_json(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)


def _pair_name(split: str, index: int) -> str:
    return f"{split}_{index:06d}.png"


def _tile_name(split: str, index: int) -> str:
    return f"{split}_{index + 1}.png"


def _work(task: tuple[Any, ...]) -> dict[str, Any]:
    """Generate and write one pair or tile (runs in a worker process); returns its captions / meta."""
    kind, split, index, seed, size, scale, nuisance, ratio, out = task
    out = Path(out)
    if kind == "cc":
        a, b, label, captions, meta = _make_pair(seed, split, index, size, nuisance, ratio)
        name = _pair_name(split, index)
        base = out / "images" / split
    else:
        a, b, label, meta = _make_tile(seed, split, index, size, scale, nuisance)
        captions, name, base = [], _tile_name(split, index), out / split
    for sub, arr in (("A", a), ("B", b), ("label", label)):
        _save_png(arr, base / sub / name)
    return {"kind": kind, "split": split, "name": name, "captions": captions, "meta": meta}


def _read_marker(root: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((root / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _count_pngs(folder: Path) -> int:
    try:
        return sum(1 for e in os.scandir(folder) if e.name.endswith(".png") and e.is_file())
    except OSError:
        return -1


def is_generated(root: str | Path, config: SynthLEVIRConfig | None = None) -> bool:
    """True when ``root`` holds a complete SynthLEVIR data set (made with ``config``, if given).

    Complete means: ``synthlevir.json`` says ``"complete": true`` (it is written last, so an interrupted
    run never looks complete), the captions JSON exists and every image folder holds the recorded number
    of PNGs. ``config.workers`` is ignored (it does not change the files).
    """
    root = Path(root)
    data = _read_marker(root)
    if data is None or data.get("complete") is not True:
        return False
    if config is not None and data.get("config") != config.content_dict():
        return False
    counts = data.get("counts", {})
    cc, cd = root / "LEVIR-CC", root / "LEVIR-CD"
    if counts.get("LEVIR-CC") and not (cc / "LevirCCcaptions.json").is_file():
        return False
    for split, n in counts.get("LEVIR-CC", {}).items():
        if any(_count_pngs(cc / "images" / split / sub) != n for sub in ("A", "B", "label")):
            return False
    for split, n in counts.get("LEVIR-CD", {}).items():
        if any(_count_pngs(cd / split / sub) != n for sub in ("A", "B", "label")):
            return False
    return True


def _summary(root: Path, marker: dict[str, Any], seconds: float, reused: bool) -> dict[str, Any]:
    counts = marker["counts"]
    share = {ds: {s: (marker["changed"][ds][s] / n if n else 0.0) for s, n in counts[ds].items()}
             for ds in counts}
    return {"root": str(root),
            "levir_cc": str(root / "LEVIR-CC") if counts["LEVIR-CC"] else None,
            "levir_cd": str(root / "LEVIR-CD") if counts["LEVIR-CD"] else None,
            "counts": counts, "changed": marker["changed"], "changed_share": share,
            "config": marker["config"], "seconds": seconds, "reused": reused}


def generate_synth_levir(root: str | Path, config: SynthLEVIRConfig | None = None, *,
                         overwrite: bool = False) -> dict[str, Any]:
    """Generate SynthLEVIR under ``root`` (``LEVIR-CC/`` with MCI labels, ``LEVIR-CD/``, ``synthlevir.json``).

    If ``root`` already holds a complete data set made with the same config, nothing is generated (the
    summary says ``"reused": True``) unless ``overwrite``. A partial data set (an interrupted run) is
    replaced. A complete data set made with another config, or LEVIR folders that SynthLEVIR did not write,
    raise ``FileExistsError`` unless ``overwrite``.

    Returns a summary: ``root``, ``levir_cc`` / ``levir_cd`` paths (None when no split has items),
    ``counts`` and ``changed`` per data set and split, ``changed_share``, ``config``, ``seconds``, ``reused``.
    """
    config = config if config is not None else SynthLEVIRConfig()
    root = Path(root)
    start = time.perf_counter()
    cfg = config.content_dict()
    marker = _read_marker(root)
    cc_dir, cd_dir = root / "LEVIR-CC", root / "LEVIR-CD"
    if not overwrite:
        if marker is not None and is_generated(root, config):
            return _summary(root, marker, time.perf_counter() - start, True)
        if marker is not None and marker.get("complete") is True and marker.get("config") != cfg:
            raise FileExistsError(f"{root} holds a SynthLEVIR data set made with another config "
                                  f"({marker.get('config')}); pass overwrite=True to replace it")
        if marker is None and (cc_dir.exists() or cd_dir.exists()):
            raise FileExistsError(f"{root} holds LEVIR-CC / LEVIR-CD folders that SynthLEVIR did not write; "
                                  "pass overwrite=True to replace them")
    for d in (cc_dir, cd_dir):
        if d.exists():
            shutil.rmtree(d)
    root.mkdir(parents=True, exist_ok=True)
    counts = {"LEVIR-CC": cfg["pairs"], "LEVIR-CD": cfg["cd_tiles"]}
    _write_json({"complete": False, "config": cfg, "counts": counts}, root / _MARKER)
    for split in cfg["pairs"]:
        for sub in ("A", "B", "label"):
            (cc_dir / "images" / split / sub).mkdir(parents=True, exist_ok=True)
    for split in cfg["cd_tiles"]:
        for sub in ("A", "B", "label"):
            (cd_dir / split / sub).mkdir(parents=True, exist_ok=True)

    common = (config.seed, config.size, config.cd_scale, float(config.nuisance), float(config.no_change_ratio))
    tasks = [("cd", s, i, *common, str(cd_dir)) for s in cfg["cd_tiles"] for i in range(cfg["cd_tiles"][s])]
    tasks += [("cc", s, i, *common, str(cc_dir)) for s in cfg["pairs"] for i in range(cfg["pairs"][s])]
    workers = min(config.workers or os.cpu_count() or 1, max(1, len(tasks)))
    if workers <= 1:
        results = [_work(t) for t in tasks]
    else:
        # fork where there is one: the workers use numpy and Pillow only, and callers need no __main__ guard
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(workers) as pool:
            results = pool.map(_work, tasks, chunksize=max(1, min(16, len(tasks) // (4 * workers))))

    changed = {"LEVIR-CC": {s: 0 for s in cfg["pairs"]}, "LEVIR-CD": {s: 0 for s in cfg["cd_tiles"]}}
    images, metas, imgid = [], [], 0
    for r in results:
        ds = "LEVIR-CC" if r["kind"] == "cc" else "LEVIR-CD"
        changed[ds][r["split"]] += int(r["meta"]["changed"])
        if r["kind"] != "cc":
            continue
        sentences = [{"tokens": c.split(), "raw": f"{c} .", "imgid": imgid, "sentid": 5 * imgid + k}
                     for k, c in enumerate(r["captions"])]
        images.append({"filepath": r["split"], "filename": r["name"], "imgid": imgid, "split": r["split"],
                       "sentences": sentences})
        metas.append({"filename": r["name"], "split": r["split"], "imgid": imgid, **r["meta"]})
        imgid += 1
    if cfg["pairs"]:
        _write_json({"images": images}, cc_dir / "LevirCCcaptions.json")
        _write_json({"rules": {"count_words": {str(k): list(count_words(k)) for k in range(1, 7)},
                               "place": "3x3 cell of the centroid if >= 80% of the pixels lie in it, else the "
                                        "top/bottom row or left/right column holding >= 80%, else none"},
                     "pairs": metas}, cc_dir / "synth_meta.json")
    marker = {"complete": True, "config": cfg, "counts": counts, "changed": changed}
    _write_json(marker, root / _MARKER)
    return _summary(root, marker, time.perf_counter() - start, False)


def write_preview(root: str | Path, out_png: str | Path, *, split: str = "train", n: int = 6) -> Path:
    """Draw ``n`` pairs of a generated split as a grid: A | B | label, first caption under each row.

    Changed and unchanged pairs are both shown when the split has them (about a third unchanged). Each
    picture is shown at ``t = max(size, 128)`` pixels (nearest-neighbour upscaling of small pairs); the PNG
    is ``3 * t + 8`` wide and ``rows * (t + 30)`` high. Label colours: white building change, orange road
    change. Returns the path written.
    """
    root, out_png = Path(root), Path(out_png)
    cc = root / "LEVIR-CC"
    data = json.loads((cc / "LevirCCcaptions.json").read_text(encoding="utf-8"))
    entries = [e for e in data["images"] if e["split"] == split]
    if not entries:
        raise ValueError(f"{cc / 'LevirCCcaptions.json'} has no pairs in split {split!r}")
    no_change = set(NO_CHANGE_SENTENCES)
    unchanged = [e for e in entries if " ".join(e["sentences"][0]["tokens"]) in no_change]
    changed = [e for e in entries if " ".join(e["sentences"][0]["tokens"]) not in no_change]
    k_un = min(len(unchanged), max(1, n // 3)) if n > 1 else 0
    pick = changed[:n - k_un] + unchanged[:k_un]
    pick += [e for e in entries if e not in pick][:n - len(pick)]
    pick.sort(key=lambda e: e["imgid"])
    size = Image.open(cc / "images" / split / "A" / pick[0]["filename"]).size[0]
    t, gap, strip = max(size, 128), 4, 30
    grid = Image.new("RGB", (3 * t + 2 * gap, len(pick) * (t + strip)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    colours = np.zeros((256, 3), np.uint8)
    colours[255], colours[128] = (255, 255, 255), (255, 160, 0)
    for row, e in enumerate(pick):
        folder = cc / "images" / split
        label = np.asarray(Image.open(folder / "label" / e["filename"]))
        label = label[..., 0] if label.ndim == 3 else label
        tiles = [Image.open(folder / sub / e["filename"]).convert("RGB") for sub in ("A", "B")]
        tiles.append(Image.fromarray(colours[label]))
        y = row * (t + strip)
        for col, tile in enumerate(tiles):
            grid.paste(tile.resize((t, t), Image.Resampling.NEAREST), (col * (t + gap), y))
        words, lines = e["sentences"][0]["tokens"], [""]
        for w in words:
            trial = f"{lines[-1]} {w}".strip()
            if draw.textlength(trial, font=font) > grid.width - 6 and lines[-1]:
                lines.append(w)
            else:
                lines[-1] = trial
        draw.multiline_text((3, y + t + 2), "\n".join(lines[:2]), fill=(0, 0, 0), font=font, spacing=2)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out_png)
    return out_png
