"""SynthLEVIR scene rendering: one bi-temporal aerial scene drawn with numpy and Pillow.

A :class:`_Scene` holds the objects of a scene at the ground resolution of LEVIR-CC (0.5 m/px at 256 px;
object sizes scale with ``size / 256``): bare land, grass or desert ground (low-frequency noise upsampled with
Pillow + fine grain), tree clusters with shadows, roads (straight, curved, crossing, branches) and houses
(rectangles or L shapes, two-tone roofs with a ridge, shadows) in varied colours and sizes. Every object
carries the time it is visible at (``_BOTH``, ``_A`` before only, ``_B`` after only); ``render(t)`` draws
image A (t = 1) or B (t = 2). What changes between the two is laid out by :mod:`.events`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

_PAD = 2  # canvas margin: room for the misregistration shift of B
_BOTH, _A, _B = 0, 1, 2  # object visible in both images, before only, after only


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
