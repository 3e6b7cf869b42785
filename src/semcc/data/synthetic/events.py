"""SynthLEVIR change events: what differs between image A and image B of a scene.

A changed LEVIR-CC / LEVIR-MCI pair gets one event (:func:`_cc_layout`): buildings appear (on open ground,
along a road, in the woods with the trees under them removed), buildings are demolished, a road is built
(possibly with houses along it), trees are removed, or buildings appear and others disappear. A LEVIR-CD tile
(:func:`_cd_layout`) gets building events in random blocks of a grid, as the 1024 px LEVIR-CD tiles hold
several changed sites. :func:`_fill` adds the unchanged content of both.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from semcc.data.synthetic.scene import _A, _B, _BOTH, _PAD, _Scene

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
