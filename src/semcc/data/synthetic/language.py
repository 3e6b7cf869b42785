"""SynthLEVIR caption language: true, varied sentences in the words of the real LEVIR-CC vocabulary.

The captions y_cc that LEVIR-CC gives each changed pair (five per pair, different wordings) are mimicked from
what the layout actually changed. The rules, also used by the tests:

* count words (:func:`count_words`): 1 -> "a" / "one", 2 -> "two", 3 -> "three" / "several" / "some",
  4-5 -> "several" / "some", 6 or more -> "many";
* place (:func:`place_of`): the 3x3 cell of the centroid of the changed pixels; when at least 80% of those
  pixels lie in that cell the cell is named ("at the top left corner", "at the top", "in the middle"...);
  otherwise when 80% lie in the top / bottom row or the left / right column that side is named ("at the
  top", "on the left side"...); otherwise no place is said;
* context: the ground under new or removed buildings ("on the bareland", "on the grassland", "in the
  desert"), "along the road" for houses placed within a few pixels of a road, "in the woods" for houses
  built where trees stood (those trees are removed).

Sentence templates are chosen by the roles of the change event (``b`` new buildings, ``d`` demolished
buildings, ``r`` new road, ``t`` removed trees); :func:`_captions` fills five distinct ones and records what
each claims (count words, places) for ``synth_meta.json``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["count_words", "place_of"]

# ----------------------------------------------------------------------------------------------------
# Phrases (every word below is a word of the real LEVIR-CC vocabulary)

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
