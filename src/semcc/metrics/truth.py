"""Ground truth for the semantic caption scores, and what a change mask tells (issue 13; beyond the paper, whose
Sec. IV-B scores captions with n-gram metrics only, and whose Eq. 6 mask is scored only pixel by pixel).

Two sources of truth, both as :class:`~semcc.metrics.semantic.CaptionClaim` (what a perfect caption would claim):

* **SynthLEVIR** writes each pair's change events into ``LEVIR-CC/synth_meta.json`` beside the captions
  (:mod:`semcc.data.synthetic.writing`): per event its class, direction, exact count and place.
  :func:`claim_from_synth_event` turns them into a claim; directions are exact.
* **A LEVIR-MCI label** (``images/{split}/label``: 255 building, 128 road) tells what a mask can: the classes
  present, the connected components of each (the count) and where they lie (the place rule below); it has no
  direction. :func:`summarize_mask` computes that summary (also for a predicted mask, see
  :mod:`semcc.metrics.consistency`), :func:`claim_from_mask` turns it into a claim.

:func:`load_truth` reads whichever a LEVIR-CC-layout folder holds. The place rule is SynthLEVIR's
(:func:`semcc.data.synthetic.language.place_of`): the 3x3 cell of the changed pixels' centroid when it holds
80% of them, else a side holding 80%, else no place. Components are 8-connected; those under
``min_share`` of the image are specks and not counted. For a predicted building-change mask, ``road_shapes`` (beyond
the paper, 0.17) counts the components shaped like a road (:func:`road_shaped`: long and thin, or long and sparse)
apart from the buildings: a weak building-change model marks new roads too, and such a component is no house.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semcc.data.synthetic.language import place_of
from semcc.metrics.caption_rules import CLASSES
from semcc.metrics.semantic import CaptionClaim, ObjectClaim

__all__ = [
    "MASK_CHANGE_SHARE",
    "MCI_LABEL_CLASSES",
    "MIN_COMPONENT_SHARE",
    "ROAD_MAX_FILL",
    "ROAD_MIN_ASPECT",
    "ROAD_MIN_LENGTH",
    "MaskSummary",
    "RegionSummary",
    "check_change_share",
    "claim_from_mask",
    "claim_from_synth_event",
    "component_boxes",
    "connected_components",
    "load_truth",
    "road_shaped",
    "summarize_mask",
    "truth_source",
]

#: A mask that marks at least this share of its pixels says "changed" (0.5%: 328 px of a 256 x 256 pair).
MASK_CHANGE_SHARE = 0.005
#: Components smaller than this share of the image are specks, not objects (0.05%: 33 px of 256 x 256).
MIN_COMPONENT_SHARE = 0.0005
#: :func:`road_shaped`: a component whose bounding box's long side is at least this share of the mask's short side,
#: and that fills at most :data:`ROAD_MAX_FILL` of that box or is at least :data:`ROAD_MIN_ASPECT` times as long as
#: wide, is shaped like a road, not a building (buildings fill 0.37 to 0.9 of their box on SynthLEVIR's masks).
ROAD_MIN_LENGTH = 0.2
ROAD_MAX_FILL = 0.3
ROAD_MIN_ASPECT = 5.0
#: LEVIR-MCI label value -> claim class.
MCI_LABEL_CLASSES: dict[int, str] = {255: "building", 128: "road"}

_SYNTH_KIND = {"building": "building", "road": "road", "trees": "vegetation"}
#: The ground a SynthLEVIR change happens on (scene ground, event context) -> the class a caption may name for it
#: ("the bareland is replaced by houses", "trees are replaced by houses").
_SYNTH_GROUND = {"bareland": "bareland", "desert": "bareland", "grass": "vegetation", "woods": "vegetation"}
_SYNTH_ACTION = {"appear": "added", "built": "added", "disappear": "removed", "removed": "removed"}


def _place(name: str | None) -> tuple[str, ...]:
    """A place of the place rule in the parser's names (``center`` -> ``centre``)."""
    if name is None:
        return ()
    return ("centre",) if name == "center" else (name,)


# ------------------------------------------------------------------------------------------------ masks
def connected_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean ``[H, W]`` mask: ``(labels int32 [H, W], count)``, labels 1..count.

    Row runs joined by union-find (runs of adjacent rows touching or diagonally adjacent are one component).
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"connected_components needs a 2-D mask, got shape {mask.shape}")
    h, w = mask.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    starts_r, starts_c = np.nonzero(edges == 1)
    _, ends_c = np.nonzero(edges == -1)
    runs = list(zip(starts_r.tolist(), starts_c.tolist(), ends_c.tolist(), strict=True))  # (row, start, end)
    parent = list(range(len(runs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    prev: list[int] = []  # run indices of the previous row
    current: list[int] = []
    row = -1
    for i, (r, s, e) in enumerate(runs):
        if r != row:
            prev = current if r == row + 1 else []
            current, row = [], r
        for j in prev:
            _, ps, pe = runs[j]
            if ps <= e and s <= pe:  # overlap with one pixel of slack on each side: 8-connectivity
                a, b = find(i), find(j)
                if a != b:
                    parent[a] = b
        current.append(i)
    labels = np.zeros((h, w), dtype=np.int32)
    ids: dict[int, int] = {}
    for i, (r, s, e) in enumerate(runs):
        labels[r, s:e] = ids.setdefault(find(i), len(ids) + 1)
    return labels, len(ids)


def road_shaped(height: int, width: int, pixels: int, side: int) -> bool:
    """Whether a component of ``pixels`` pixels whose bounding box is ``height`` x ``width`` is shaped like a road
    in a mask whose short side is ``side``: its box's long side is at least :data:`ROAD_MIN_LENGTH` of ``side``, and
    it fills at most :data:`ROAD_MAX_FILL` of the box (a diagonal or branching road) or is at least
    :data:`ROAD_MIN_ASPECT` times as long as wide (a straight one)."""
    if min(height, width, pixels, side) < 1:
        raise ValueError(f"road_shaped needs positive sizes, got {height} x {width}, {pixels} px, side {side}")
    long, short = max(height, width), min(height, width)
    if long < ROAD_MIN_LENGTH * side:
        return False
    return pixels / (height * width) <= ROAD_MAX_FILL or long / short >= ROAD_MIN_ASPECT


def component_boxes(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per component 1..n of ``labels`` (:func:`connected_components`' output): its pixels, bounding-box height and
    width, as three ``int64`` arrays indexed by the component's label (index 0 unused)."""
    ys, xs = np.nonzero(labels)
    ids = labels[ys, xs]
    big = np.iinfo(np.int64).max
    lo_y, lo_x = np.full(n + 1, big), np.full(n + 1, big)
    hi_y, hi_x = np.full(n + 1, -1), np.full(n + 1, -1)
    np.minimum.at(lo_y, ids, ys)
    np.minimum.at(lo_x, ids, xs)
    np.maximum.at(hi_y, ids, ys)
    np.maximum.at(hi_x, ids, xs)
    return np.bincount(ids, minlength=n + 1), hi_y - lo_y + 1, hi_x - lo_x + 1


@dataclass(frozen=True)
class RegionSummary:
    """The changed pixels of one class: components (specks left out), share of the image, place (or None)."""

    cls: str
    components: int
    share: float
    place: str | None
    #: Components of object size shaped like a road (:func:`road_shaped`) that ``components`` leaves out (a
    #: building-change mask summarised with ``road_shapes``; 0 otherwise); ``place`` is then the other pixels'.
    road_shaped: int = 0


@dataclass(frozen=True)
class MaskSummary:
    """What a change mask tells: its size, the share of changed pixels, one :class:`RegionSummary` per class."""

    height: int
    width: int
    changed_share: float
    regions: tuple[RegionSummary, ...]
    #: The classes the mask can mark (the names :func:`summarize_mask` was given), present or not: what a caption
    #: can be checked against (``("building",)`` for a building-change mask, ``("change",)`` for any change).
    classes: tuple[str, ...] = ()
    #: The share of the pixels from which the mask says "changed" (:data:`MASK_CHANGE_SHARE` unless chosen).
    change_share: float = MASK_CHANGE_SHARE

    @property
    def changed(self) -> bool:
        """The mask marks at least ``change_share`` (default :data:`MASK_CHANGE_SHARE`) of the pixels."""
        return self.changed_share >= self.change_share

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``height``, ``width``, ``changed_share``, ``changed``, ``regions`` (list of dicts)."""
        regions = [{"class": r.cls, "components": r.components, "share": round(r.share, 6), "place": r.place,
                    "road_shaped": r.road_shaped} for r in self.regions]
        return {"height": self.height, "width": self.width, "changed_share": round(self.changed_share, 6),
                "changed": self.changed, "classes": list(self.classes), "regions": regions}


def summarize_mask(
    mask: np.ndarray, classes: Mapping[int, str], *, min_share: float = MIN_COMPONENT_SHARE,
    change_share: float = MASK_CHANGE_SHARE, road_shapes: bool = False,
) -> MaskSummary:
    """Summary of an integer ``[H, W]`` mask whose values ``classes`` names (other non-zero values raise).

    A binary mask of any change: ``{1: "change"}``; of building change (LEVIR-CD): ``{1: "building"}``; a
    LEVIR-MCI label: :data:`MCI_LABEL_CLASSES`; a predicted LEVIR-MCI class mask: ``{1: "road", 2: "building"}``.
    Per class: components of at least ``min_share`` of the image, share of the image, place
    (:func:`~semcc.data.synthetic.language.place_of`, ``centre`` for the centre). ``change_share``: the share of
    the pixels from which the mask says "changed" (:attr:`MaskSummary.changed`), in (0, 1]. ``road_shapes``: the
    ``building`` class's road-shaped components (:func:`road_shaped`) are counted in
    :attr:`RegionSummary.road_shaped`, not in its components, and its place is that of its other pixels (for a
    predicted building-change mask; labels and other classes are summarised as they are).
    """
    check_change_share(change_share)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"summarize_mask needs a 2-D mask, got shape {mask.shape}")
    values = {int(v) for v in np.unique(mask)} - {0}
    if unknown := sorted(values - set(classes)):
        raise ValueError(f"mask values {unknown[:5]} are not among the classes given ({dict(classes)})")
    h, w = mask.shape
    area = float(h * w)
    min_pixels = max(1, round(min_share * area))
    regions = []
    for value, cls in classes.items():
        region = mask == value
        pixels = int(region.sum())
        if pixels == 0:
            continue
        labels, n = connected_components(region)
        sizes, heights, widths = component_boxes(labels, n)
        objects = sizes[1:] >= min_pixels
        roads = np.zeros(n, dtype=bool)
        if road_shapes and cls == "building":
            roads = np.array([bool(objects[i]) and road_shaped(int(heights[i + 1]), int(widths[i + 1]),
                                                               int(sizes[i + 1]), min(h, w)) for i in range(n)],
                             dtype=bool)
        if roads.any():
            rest = region & ~np.isin(labels, np.flatnonzero(roads) + 1)
            place = place_of(rest) if rest.any() else None
        else:
            place = place_of(region)
        regions.append(RegionSummary(cls=cls, components=int((objects & ~roads).sum()), share=pixels / area,
                                     place=_place(place)[0] if place else None, road_shaped=int(roads.sum())))
    return MaskSummary(height=h, width=w, changed_share=float((mask != 0).sum()) / area, regions=tuple(regions),
                       classes=tuple(classes.values()), change_share=float(change_share))


def check_change_share(change_share: float, name: str = "change_share") -> float:
    """``change_share`` as a float, checked to lie in (0, 1] (a ``ValueError`` naming ``name`` otherwise)."""
    value = float(change_share)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1] (a share of the mask's pixels), got {change_share!r}")
    return value


def claim_from_mask(summary: MaskSummary, classes: Iterable[str] = MCI_LABEL_CLASSES.values()) -> CaptionClaim:
    """The claim a mask supports: changed when it marks enough pixels; per class its components and place.

    No direction (a mask does not say whether a building appeared or went). Classes with no component of
    object size are left out; a mask whose change is all specks is unchanged. The claim classes the mask cannot
    tell (all but ``classes``, the mask's own: building and road for LEVIR-MCI) are ``optional``.
    """
    objects = tuple(ObjectClaim(cls=r.cls, count=r.components, places=_place(r.place))
                    for r in summary.regions if r.components > 0)
    changed = summary.changed and bool(objects)
    return CaptionClaim(changed=changed, objects=objects if changed else (), optional=frozenset(CLASSES) - set(classes))


# ------------------------------------------------------------------------------------------------ SynthLEVIR
def claim_from_synth_event(pair: Mapping[str, Any]) -> CaptionClaim:
    """The claim of one ``synth_meta.json`` pair entry (``changed``, ``clauses``: kind, action, count, place).

    Buildings and roads keep their exact count; removed trees have no count (captions say "some trees", the
    generator counts crowns). The ground of a changed pair (bareland, desert, grass, woods) is ``optional``: a
    caption may say the houses replaced it, and so is bareland after a removal (demolished sites and felled trees
    leave soil).
    """
    try:
        objects = []
        for clause in pair["clauses"]:
            cls = _SYNTH_KIND[clause["kind"]]
            count = None if cls == "vegetation" else int(clause["count"])
            objects.append(ObjectClaim(cls=cls, direction=_SYNTH_ACTION[clause["action"]], count=count,
                                       places=_place(clause.get("place"))))
        changed = bool(pair["changed"])
        grounds = {pair.get("ground"), *(c.get("context") for c in pair["clauses"])} if changed else set()
        optional = {_SYNTH_GROUND[g] for g in grounds if g in _SYNTH_GROUND}
        if any(o.direction == "removed" for o in objects):  # demolished sites and felled trees leave soil
            optional.add("bareland")
        return CaptionClaim(changed=changed, objects=tuple(objects), optional=frozenset(optional))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"synth_meta entry {pair.get('filename', '?')!r} is malformed: {err!r}") from None


def truth_source(cc_root: str | Path, split: str) -> str | None:
    """Which ground truth :func:`load_truth` reads for ``split`` of ``cc_root``, in words (None: none)."""
    root = Path(cc_root)
    if (root / "synth_meta.json").is_file():
        return "SynthLEVIR change events (synth_meta.json: class, direction, count, place of each change)"
    if (root / "images" / split / "label").is_dir() and (root / "LevirCCcaptions.json").is_file():
        return ("LEVIR-MCI change masks (building and road: classes, connected components, places; no direction; "
                "other classes neither rewarded nor counted as hallucinated)")
    return None


def load_truth(cc_root: str | Path, split: str) -> dict[str, CaptionClaim] | None:
    """Ground-truth claims of a split of a LEVIR-CC-layout folder, keyed by pair file name; None when it has none.

    ``synth_meta.json`` (SynthLEVIR) wins; otherwise the LEVIR-MCI labels under ``images/{split}/label`` give
    mask-derived claims (every pair of the split in ``LevirCCcaptions.json`` must have its label). Errors name
    the file.
    """
    from semcc.data.images import read_label

    root = Path(cc_root)
    meta = root / "synth_meta.json"
    if meta.is_file():
        try:
            pairs = json.loads(meta.read_text(encoding="utf-8"))["pairs"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{meta}: not a SynthLEVIR meta file ({err!r})") from None
        return {str(p["filename"]): claim_from_synth_event(p) for p in pairs if p.get("split") == split}
    labels = root / "images" / split / "label"
    captions = root / "LevirCCcaptions.json"
    if not labels.is_dir() or not captions.is_file():
        return None
    try:
        images = json.loads(captions.read_text(encoding="utf-8"))["images"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{captions}: cannot read the pair list ({err!r})") from None
    truth = {}
    for image in images:
        if image.get("split") != split:
            continue
        name = str(image["filename"])
        label = read_label(labels / name)
        try:
            summary = summarize_mask(label, MCI_LABEL_CLASSES)
        except ValueError as err:
            raise ValueError(f"{labels / name}: {err}") from None
        truth[name] = claim_from_mask(summary)
    return truth
