"""The semantic caption parser and claim scorer (issue 13, part 1): real LEVIR-CC sentences, scores, coverage."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

from semcc.data.text import NO_CHANGE_SENTENCES
from semcc.metrics.claim_scores import compare_claims, semantic_scores
from semcc.metrics.semantic import CaptionClaim, ObjectClaim, caption_coverage, parse_caption

B, R, V, L, P = "building", "road", "vegetation", "bareland", "parking"

#: Real LEVIR-CC sentences (copied from LevirCCcaptions.json) -> expected (cls, direction, count, count_word, places).
REAL_SENTENCES: list[tuple[str, list[tuple]]] = [
    ("two houses are built on the bareland at the bottom", [(B, "added", 2, None, ("on_bareland", "bottom"))]),
    ("some roads and houses are built on bareland",
     [(R, "added", None, "some", ("on_bareland",)), (B, "added", None, None, ("on_bareland",))]),
    ("many houses are built along the road", [(B, "added", None, "many", ("along_road",))]),
    ("two rows of houses are built on both sides of the road", [(B, "added", None, "two rows of", ("along_road",))]),
    ("some buildings disappear on the top right", [(B, "removed", None, "some", ("top_right",))]),
    ("the grassland has been developed into a residential area with staggered roads",
     [(V, "replaced", None, None, ()), (B, "added", 1, None, ()), (R, "added", None, None, ())]),
    ("a road has been built to replace the trees and many villas have been constructed near it",
     [(R, "added", 1, None, ()), (V, "replaced", None, None, ()), (B, "added", None, "many", ("along_road",))]),
    ("many houses are built at the end of the road in the upper left corner of the scene",
     [(B, "added", None, "many", ("along_road", "top_left"))]),
    ("part of the woods disappear", [(V, "removed", None, "part of", ())]),
    ("a building appears at the edge of the forest and a road disappears",
     [(B, "added", 1, None, ("near_vegetation",)), (R, "removed", 1, None, ())]),
    ("some small buildings have been knocked down", [(B, "removed", None, "some", ())]),
    ("a parking lot is built in the open space", [(P, "added", 1, None, ("on_bareland",))]),
    ("the vegetation becomes sparse and withered", [(V, "changed", None, None, ())]),
    ("a small building and a parking lot appear on the top right",
     [(B, "added", 1, None, ("top_right",)), (P, "added", 1, None, ("top_right",))]),
    ("two roads appear at the top and the bottom and villas are built along them",
     [(R, "added", 2, None, ("top", "bottom")), (B, "added", None, None, ("along_road",))]),
    ("three completed villas with respective paths connected to the road have been constructed",
     [(B, "added", 3, None, ("on_road",)), (R, "added", None, None, ("on_road",))]),
    ("a row of houses is built along the road", [(B, "added", None, "a row of", ("along_road",))]),
    ("four rows of houses are built along the road", [(B, "added", None, "four rows of", ("along_road",))]),
]


@pytest.mark.parametrize("sentence", [*NO_CHANGE_SENTENCES, "There is no difference .", "nothing has changed"])
def test_no_change_sentences(sentence: str) -> None:
    claim = parse_caption(sentence)
    assert claim == CaptionClaim(changed=False)
    assert claim.fully_parsed


@pytest.mark.parametrize(("sentence", "expected"), REAL_SENTENCES, ids=[s for s, _ in REAL_SENTENCES])
def test_parser_on_real_levir_sentences(sentence: str, expected: list[tuple]) -> None:
    claim = parse_caption(sentence)
    assert claim.changed is True
    assert claim.unparsed == ()
    got = [(o.cls, o.direction, o.count, o.count_word, o.places) for o in claim.objects]
    assert got == expected


def test_parser_corners_digits_and_unparsed_words() -> None:
    assert parse_caption("a house is built in the lower-right corner").objects[0].places == ("bottom_right",)
    assert parse_caption("houses are built in the corner").objects[0].places == ("corner",)
    assert parse_caption("4 houses are built near the lake").objects[0] == ObjectClaim(
        "building", "added", 4, None, ("near_water",))
    claim = parse_caption("a zorblax appears")
    assert claim.changed is True and claim.unparsed == ("zorblax",) and not claim.fully_parsed
    assert parse_caption("zorblax").changed is None


def _claim(*objects: ObjectClaim, changed: bool = True) -> CaptionClaim:
    return CaptionClaim(changed=changed, objects=objects)


def test_compare_claims_pair() -> None:
    truth = _claim(ObjectClaim("building", "added", 2, None, ("bottom",)), ObjectClaim("road", "added", 1))
    out = compare_claims(parse_caption("two houses are built at the bottom left and some trees are removed"), truth)
    assert out["change"] == 1.0
    assert out["type"] == pytest.approx(1 / 3)  # {building, vegetation} vs {building, road}
    assert out["type_building"] == 1.0 and out["type_road"] == 0.0 and out["type_vegetation"] == 0.0
    assert out["type_water"] is None
    assert out["count"] == 1.0  # 2 houses vs 2
    assert out["location"] == 1.0  # bottom_left lies in bottom
    assert out["hallucinated"] == 1.0  # vegetation
    assert compare_claims(parse_caption("there is no difference"), truth)["change"] == 0.0


def test_semantic_scores_hand_made() -> None:
    truths = {
        "a": _claim(changed=False),
        "b": _claim(ObjectClaim("building", "added", 2, None, ("top",))),
        "c": _claim(ObjectClaim("road", "added", 1, None, ("left",)), ObjectClaim("building", "added", 3)),
        "d": _claim(ObjectClaim("vegetation", "removed", None, "some", ("bottom",))),
    }
    preds = {
        "a": "the scene is the same as before",  # change right
        "b": "two houses are built at the top right",  # count right, location right (top_right in top)
        "c": "a road is built on the right and four houses appear",  # road place wrong, building count wrong
        "d": "there is no difference",  # change wrong, vegetation missed
    }
    s = semantic_scores(preds, truths)
    assert s["pairs"] == 4
    assert s["change_accuracy"] == 0.75
    # building: TP b, c -> F1 1; road: TP c -> 1; vegetation: FN d -> 0
    assert s["type_f1_building"] == 1.0 and s["type_f1_road"] == 1.0 and s["type_f1_vegetation"] == 0.0
    assert "type_f1_water" not in s
    assert s["type_f1_macro"] == pytest.approx(2 / 3)
    # counted items: b building (2 = 2), c road (1 = 1), c building (4 != 3)
    assert s["count_items"] == 3 and s["count_accuracy"] == pytest.approx(2 / 3)
    # placed items: b building (top_right ~ top), c road (right vs left)
    assert s["location_items"] == 2 and s["location_accuracy"] == 0.5
    assert s["hallucination_rate"] == 0.0 and s["claimed_classes"] == 3


def test_semantic_scores_hallucination_and_nan() -> None:
    truths = {"a": _claim(ObjectClaim("building", "added")), "b": _claim(changed=False)}
    s = semantic_scores({"a": "some houses and a parking lot appear", "b": "trees are removed"}, truths)
    assert s["claimed_classes"] == 3 and s["hallucination_rate"] == pytest.approx(2 / 3)
    assert s["type_f1_parking"] == 0.0 and s["type_f1_vegetation"] == 0.0 and s["type_f1_building"] == 1.0
    assert math.isnan(s["count_accuracy"]) and math.isnan(s["location_accuracy"])
    with pytest.raises(KeyError):
        semantic_scores({}, truths)


def test_coverage_on_real_levir_cc(real_levir_dir: Path) -> None:
    with gzip.open(real_levir_dir / "LevirCCcaptions.json.gz", "rt") as f:
        images = json.load(f)["images"]
    captions = [s["raw"] for e in images for s in e["sentences"]]
    cov = caption_coverage(captions)
    assert cov["captions"] == len(captions) > 50_000
    assert cov["changed_decided"] > 0.999  # reached: 0.9998
    assert cov["fully_parsed"] > 0.98  # reached: 0.9896
    assert 0.49 < cov["no_change"] < 0.51  # LEVIR-CC: half of the pairs are unchanged
    assert len(cov["unparsed_top"]) == 20 and all(n >= 1 for _, n in cov["unparsed_top"])
