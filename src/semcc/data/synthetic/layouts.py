"""SynthLEVIR layouts: one LEVIR-CC pair (with its captions and LEVIR-MCI label) or one LEVIR-CD tile.

* :func:`_make_pair`: a LEVIR-CC pair (A, B, five captions) with its LEVIR-MCI label (255 building change,
  128 road change, 0 nothing); about ``no_change_ratio`` of the pairs are unchanged and get the no-change
  sentences of LEVIR-CC.
* :func:`_make_tile`: a LEVIR-CD tile of ``cd_scale * size`` pixels at the same ground resolution, with its
  0/255 building-change label.

Nuisances that are not changes (illumination and colour shift, seasonal tint of the vegetation,
misregistration of up to two pixels, sensor noise; strength ``nuisance``) are applied to A and B
independently (:func:`_render_pair`); labels and captions never mention them. Every pair or tile is drawn from
its own generator ``np.random.default_rng([seed, stream, split, index])``, so the output does not depend on
the order or process it is made in.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from semcc.data.synthetic.config import _SPLIT_ID, _STREAM_CC, _STREAM_CD
from semcc.data.synthetic.events import _cc_layout, _cd_layout, _fill, _static_roads
from semcc.data.synthetic.language import _captions, place_of
from semcc.data.synthetic.scene import _A, _B, _BOTH, _PAD, _Scene
from semcc.data.text import NO_CHANGE_SENTENCES

# ----------------------------------------------------------------------------------------------------
# Rendering and labels


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
