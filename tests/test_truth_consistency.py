"""Ground truth of the semantic scores (SynthLEVIR events, LEVIR-MCI masks), the scores' reference ceiling and
floors, caption-mask consistency and consistency-aware decoding (issue 13, parts 1 and 2)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semcc.data.text import is_no_change
from semcc.metrics.claim_scores import compare_claims, semantic_report, semantic_scores
from semcc.metrics.consistency import check_consistency, consistency_rank, mask_class_names
from semcc.metrics.semantic import CaptionClaim, ObjectClaim, parse_caption
from semcc.metrics.truth import (
    MCI_LABEL_CLASSES,
    claim_from_mask,
    claim_from_synth_event,
    connected_components,
    load_truth,
    summarize_mask,
    truth_source,
)


def _squares(size: int, boxes: list[tuple[int, int, int, int]], value: int = 1) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    for y0, x0, y1, x1 in boxes:
        mask[y0:y1, x0:x1] = value
    return mask


# ------------------------------------------------------------------------------------------------ masks
def test_connected_components_hand_made() -> None:
    mask = np.zeros((8, 10), dtype=bool)
    mask[0:2, 0:2] = True  # A
    mask[2, 2] = True  # touches A diagonally: same component (8-connectivity)
    mask[5:7, 5:9] = True  # B
    mask[0, 9] = True  # C, one pixel
    mask[7, 0:2] = True  # D
    labels, n = connected_components(mask)
    assert n == 4
    assert labels[0, 0] == labels[2, 2] != 0
    assert len({labels[0, 0], labels[5, 5], labels[0, 9], labels[7, 0]}) == 4
    assert ((labels > 0) == mask).all()
    # a U shape is one component (its two arms meet only in a later row)
    u = np.zeros((5, 5), dtype=bool)
    u[0:4, 0] = u[0:4, 4] = True
    u[4, :] = True
    assert connected_components(u)[1] == 1
    assert connected_components(np.zeros((3, 3), bool))[1] == 0


def test_summarize_mask_counts_places_and_specks() -> None:
    mask = _squares(100, [(2, 2, 12, 12), (2, 20, 12, 30), (20, 2, 30, 10)])  # three houses, top left
    mask[90, 90] = 1  # a one-pixel speck at the bottom right
    summary = summarize_mask(mask, {1: "change"})
    (region,) = summary.regions
    assert region.cls == "change" and region.components == 3
    assert region.share == pytest.approx((100 + 100 + 80 + 1) / 10000)
    assert region.place == "top_left"  # 280 of the 281 pixels lie in the top left cell
    mask[60:100, 60:100] = 1  # a large change at the bottom right: no cell or side holds 80%
    region = summarize_mask(mask, {1: "change"}).regions[0]
    assert region.place is None and region.components == 4
    classes = summarize_mask(_squares(90, [(40, 40, 50, 50)], 255) + _squares(90, [(0, 0, 90, 3)], 128),
                             MCI_LABEL_CLASSES)
    by_class = {r.cls: r for r in classes.regions}
    assert by_class["building"].place == "centre" and by_class["road"].place == "left"
    with pytest.raises(ValueError, match=r"mask values \[7\]"):
        summarize_mask(np.full((4, 4), 7), {1: "change"})


def test_claim_from_mask() -> None:
    label = _squares(64, [(1, 1, 6, 6), (1, 10, 6, 16)], 255)
    claim = claim_from_mask(summarize_mask(label, MCI_LABEL_CLASSES))
    assert claim.changed is True and claim.classes == {"building"}
    assert claim.objects[0].count == 2 and claim.objects[0].direction is None
    assert claim.objects[0].places == ("top_left",)
    assert "vegetation" in claim.optional and "building" not in claim.optional
    empty = claim_from_mask(summarize_mask(np.zeros((64, 64), np.uint8), MCI_LABEL_CLASSES))
    assert empty.changed is False and not empty.objects


# ------------------------------------------------------------------------------------------------ ground truth
def test_synthlevir_truth_is_written_beside_the_captions(synth_root: Path) -> None:
    cc = synth_root / "LEVIR-CC"
    assert truth_source(cc, "test").startswith("SynthLEVIR change events")
    meta = json.loads((cc / "synth_meta.json").read_text())["pairs"]
    captions = {e["filename"]: e for e in json.loads((cc / "LevirCCcaptions.json").read_text())["images"]}
    for split in ("train", "val", "test"):
        truth = load_truth(cc, split)
        names = {n for n, e in captions.items() if e["split"] == split}
        assert set(truth) == names
    for entry in meta:
        claim = claim_from_synth_event(entry)
        refs = [s["raw"] for s in captions[entry["filename"]]["sentences"]]
        assert claim.changed == (not all(is_no_change(r) for r in refs))
        label = np.array(Image.open(cc / "images" / entry["split"] / "label" / entry["filename"]))
        if not claim.changed:
            assert not label.any() and not claim.objects
        for clause, obj in zip(entry["clauses"], claim.objects, strict=True):
            if clause["kind"] == "building":
                assert obj.cls == "building" and obj.count == len(clause["boxes"])
                assert obj.direction == ("added" if clause["action"] == "appear" else "removed")
                assert (label == 255).any()
            if clause["kind"] == "road":
                assert obj.cls == "road" and (label == 128).any()


def test_mask_truth_of_a_levir_mci_folder(tmp_path: Path) -> None:
    root = tmp_path / "mci"
    (root / "images" / "test" / "label").mkdir(parents=True)
    labels = {"p1.png": _squares(64, [(50, 2, 60, 9), (50, 12, 60, 20)], 255),  # two buildings, bottom left
              "p2.png": np.zeros((64, 64), np.uint8)}
    for name, label in labels.items():
        Image.fromarray(label).save(root / "images" / "test" / "label" / name)
    images = [{"filename": n, "split": "test", "sentences": [{"raw": "x"}]} for n in labels]
    (root / "LevirCCcaptions.json").write_text(json.dumps({"images": images}))
    assert truth_source(root, "test").startswith("LEVIR-MCI change masks")
    truth = load_truth(root, "test")
    assert truth["p1.png"].objects == (ObjectClaim("building", None, 2, None, ("bottom_left",)),)
    assert truth["p2.png"].changed is False
    # a caption that also says trees went is not punished for what the mask cannot tell
    s = semantic_scores({"p1.png": "two houses are built and some trees are removed at the bottom left",
                         "p2.png": "the scene is the same as before"}, truth)
    assert s["change_accuracy"] == 1.0 and s["hallucination_rate"] == 0.0 and s["count_accuracy"] == 1.0
    assert truth_source(root, "val") is None and load_truth(root, "val") is None
    (root / "images" / "test" / "label" / "p2.png").unlink()
    with pytest.raises(Exception, match=r"p2\.png"):
        load_truth(root, "test")


def test_malformed_synth_meta_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "synth_meta.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"synth_meta\.json"):
        load_truth(tmp_path, "test")
    with pytest.raises(ValueError, match=r"'x\.png' is malformed"):
        claim_from_synth_event({"filename": "x.png", "changed": True, "clauses": [{"kind": "ufo"}]})


# ------------------------------------------------------------------------------------------------ scores
def test_vague_counts_and_optional_classes() -> None:
    truth = CaptionClaim(changed=True, objects=(ObjectClaim("building", "added", 4),), optional=frozenset({"bareland"}))
    assert compare_claims(parse_caption("several houses are built"), truth)["count"] == 1.0  # 4 is several
    assert compare_claims(parse_caption("many houses are built"), truth)["count"] == 0.0  # many is 6+
    assert compare_claims(parse_caption("two houses are built"), truth)["count"] == 0.0
    out = compare_claims(parse_caption("the bareland is replaced by several houses"), truth)
    assert out["hallucinated"] == 0.0 and out["type"] == 1.0  # bareland is optional: neither rewarded nor wrong
    assert compare_claims(parse_caption("a road is built"), truth)["hallucinated"] == 1.0


def test_semantic_report_has_the_reference_ceiling_and_the_floors() -> None:
    truths = {"a": CaptionClaim(changed=False),
              "b": CaptionClaim(changed=True, objects=(ObjectClaim("building", "added", 2, None, ("top",)),))}
    refs = {"a": ["the scene is the same as before", "there is no difference"],
            "b": ["two houses are built at the top", "a road is built"]}
    preds = {"a": "the scene is the same as before", "b": "two houses are built at the bottom"}
    report = semantic_report(preds, refs, truths, changed_caption="a road is built")
    assert set(report) == {"model", "references", "constant", "oracle_constant"}
    assert report["model"]["location_accuracy"] == 0.0 and report["model"]["count_accuracy"] == 1.0
    # references: position 0 is perfect, position 1 names a road (hallucinated) -> means over the positions
    assert report["references"]["change_accuracy"] == 1.0
    assert report["references"]["hallucination_rate"] == pytest.approx(0.5)
    assert report["references"]["location_accuracy"] == 1.0  # only position 0 places anything
    assert report["constant"]["change_accuracy"] == 0.5 and math.isnan(report["constant"]["hallucination_rate"])
    assert report["oracle_constant"]["change_accuracy"] == 1.0
    assert report["oracle_constant"]["hallucination_rate"] == 1.0  # "a road is built" on a building change


# ------------------------------------------------------------------------------------------------ consistency
def test_consistency_report_disagreements() -> None:
    six = _squares(100, [(0, 0, 20, 30)])  # 6% of the pixels, top left
    report = check_consistency("the scene is the same as before", summarize_mask(six, {1: "change"}))
    assert report.disagreements == ("the caption says no change; the mask marks 6.0% of the pixels",)
    assert not report.consistent and report.to_dict()["mask"]["regions"][0]["components"] == 1

    five = summarize_mask(_squares(100, [(80, 5 + 18 * i, 90, 15 + 18 * i) for i in range(5)], 2), {1: "road",
                                                                                                   2: "building"})
    report = check_consistency("two houses are built at the top", five)
    assert report.disagreements == (
        "the caption says 2 buildings; the mask has 5 building component(s)",
        "the caption places the buildings at the top; the mask's building lies at the bottom",
    )
    report = check_consistency("a road is built", five)
    assert report.disagreements == (
        "the caption names a change of roads; the mask marks no road change",
        "the mask has 5 building component(s) that the caption does not mention",
    )
    assert check_consistency("several houses are built at the bottom", five).consistent
    assert check_consistency("a house is built at the bottom", five).disagreements == (
        "the caption says 1 building; the mask has 5 building component(s)",)
    none = summarize_mask(np.zeros((100, 100), np.uint8), {1: "change"})
    assert check_consistency("two houses are built", none).disagreements == (
        "the caption says buildings changed; the mask marks 0.00% of the pixels (no change)",)
    assert check_consistency("there is no difference", none).consistent


def test_consistency_rank_prefers_the_caption_the_mask_confirms() -> None:
    mask = summarize_mask(_squares(100, [(70, 70, 80, 80), (85, 85, 95, 95)]), {1: "change"})  # 2, bottom right
    candidates = ["the scene is the same as before", "two houses are built", "two houses are built at the top",
                  "two houses are built at the bottom right", "a house is built at the bottom right"]
    # disagreements / agreements: 0: 1/0 (no change), 1: 0/2 (change, count), 2: 1/2 (place), 3: 0/3, 4: 1/2 (count)
    assert consistency_rank(candidates, mask) == [3, 1, 2, 4, 0]
    assert consistency_rank(["a", "b"], mask) == [0, 1]  # ties keep the order


def test_first_clauses_win_where_the_mask_confirms_no_more_of_the_whole() -> None:
    from semcc.metrics.consistency import choose_consistent, first_clause, with_first_clauses

    two_events = "many houses are built on the right side of the scene and a house is demolished at the bottom"
    assert first_clause(two_events) == "many houses are built on the right side of the scene"
    assert first_clause("two houses are built") == "two houses are built"
    assert with_first_clauses(["a b and c", "d"]) == ["a b", "a b and c", "d"]
    # eight building components spread over the image: the second event adds no agreement, so its first clause wins
    boxes = [(x, y, x + 6, y + 6) for x in (5, 30, 55, 80) for y in (10, 60)]
    many = summarize_mask(_squares(100, boxes), mask_class_names(2, "building"))
    whole, head = check_consistency(two_events, many), check_consistency(first_clause(two_events), many)
    assert whole.severity() == head.severity() and whole.checks - len(whole.disagreements) == head.checks - len(
        head.disagreements)
    assert choose_consistent(two_events, [], many)[0] == two_events  # without: the greedy caption wins the tie
    caption, ranked = choose_consistent(two_events, [], many, first_clauses=True)
    assert caption == first_clause(two_events) and ranked == [caption, two_events]
    # a road and two houses (a LEVIR-MCI class mask): the first clause leaves the houses out, the whole caption wins
    classes = np.zeros((100, 100), np.uint8)
    classes[45:55, :] = 1  # road
    classes[20:30, 20:30] = classes[20:30, 60:70] = 2  # two buildings
    mci = summarize_mask(classes, mask_class_names(3))
    road_and_houses = "a new road is built and two houses are built along the road"
    caption, ranked = choose_consistent(road_and_houses, [], mci, first_clauses=True)
    assert caption == road_and_houses and ranked[1] == "a new road is built"
    assert check_consistency("a new road is built", mci).severity()[1] == 1  # the houses left out


def test_a_building_mask_checks_only_the_classes_it_marks() -> None:
    """A binary mask of building change (tiny's CD head: LEVIR-CD and LEVIR-MCI building labels) confirms or
    contradicts buildings only: leaving its buildings out is a ``class`` disagreement, which outweighs any number of
    count and place ones; over an empty mask a caption about trees or a road is neither confirmed nor contradicted."""
    two = summarize_mask(_squares(100, [(70, 70, 80, 80), (85, 85, 95, 95)]), mask_class_names(2, "building"))
    assert two.classes == ("building",) and two.to_dict()["classes"] == ["building"]
    trees = check_consistency("the trees in the lower part of the scene are removed", two)
    assert trees.disagreements == ("the mask has 2 building component(s) that the caption does not mention",)
    assert trees.kinds == ("class",) and trees.severity() == (0, 1, 0)
    assert trees.to_dict()["disagreement_kinds"] == ["class"]
    wrong = check_consistency("three houses are built at the top", two)
    assert wrong.kinds == ("count", "place") and wrong.severity() == (0, 0, 2) and wrong.checks == 4
    right = check_consistency("two houses are built at the bottom right", two)
    assert right.consistent and right.checks == 4
    # the class outweighs count and place; the same mask read as any change cannot tell trees from buildings
    candidates = ["the trees in the lower part of the scene are removed", "three houses are built at the top"]
    assert consistency_rank(candidates, two) == [1, 0]
    as_change = summarize_mask(_squares(100, [(70, 70, 80, 80), (85, 85, 95, 95)]), mask_class_names(2))
    assert check_consistency(candidates[0], as_change).consistent
    assert consistency_rank(candidates, as_change) == [0, 1]
    no_change = check_consistency("the scene is the same as before", two)
    assert no_change.kinds == ("change",) and consistency_rank(["the scene is the same as before", candidates[0]],
                                                                two) == [1, 0]
    empty = summarize_mask(np.zeros((100, 100), np.uint8), {1: "building"})
    for unmarked in ("the trees in the lower part of the scene are removed", "a road is built"):
        report = check_consistency(unmarked, empty)
        assert report.consistent and report.checks == 0
    assert check_consistency("two houses are built", empty).kinds == ("change",)
    assert check_consistency("the scene is the same as before", empty).consistent
    # an empty mask of any change: a road is a change such a mask marks
    assert check_consistency("a road is built", summarize_mask(np.zeros((100, 100), np.uint8), {1: "change"})
                             ).kinds == ("change",)


def test_mask_class_names_and_what_a_data_module_marks() -> None:
    from semcc.data.datamodule import binary_mask_class

    assert mask_class_names(1) == {1: "change"} and mask_class_names(2, "building") == {1: "building"}
    assert mask_class_names(3, "building") == {1: "road", 2: "building"}
    with pytest.raises(ValueError, match="binary mask class"):
        mask_class_names(2, "trees")
    assert binary_mask_class(["cd", "cc", "joint"]) == "building"
    assert binary_mask_class(["cd", "cc", "joint"], "change") == "change"
    assert binary_mask_class(["cd"], "change") == "building"  # LEVIR-CD labels building change only


# ------------------------------------------------------------------------------------------------ inference
def test_predictor_reports_consistency_and_decodes_consistently(tiny_checkpoint: Path, synth_root: Path) -> None:
    from semcc.inference import Predictor

    folder = synth_root / "LEVIR-CC" / "images" / "test"
    names = sorted(p.name for p in (folder / "A").iterdir())[:4]
    pairs = ([folder / "A" / n for n in names], [folder / "B" / n for n in names])
    greedy = Predictor.from_checkpoint(tiny_checkpoint, decoding="greedy").predict(*pairs)
    consistent = Predictor.from_checkpoint(tiny_checkpoint, decoding="consistent", beams=2).predict(*pairs)
    for g, c in zip(greedy, consistent, strict=True):
        assert g.consistency is not None and g.candidates is None
        summary = summarize_mask(g.mask, {1: "building"})  # the fit's data: building-change labels
        assert g.consistency.mask == summary
        assert g.consistency.disagreements == check_consistency(g.caption, summary).disagreements
        d = g.to_dict()
        assert d["caption"] == g.caption and d["disagreements"] == list(g.consistency.disagreements)
        assert c.candidates[0] == c.caption and g.caption in c.candidates
        assert c.consistency.severity() <= g.consistency.severity()
        assert consistency_rank(c.candidates, c.consistency.mask)[0] == 0
        if not c.consistency.mask.changed:  # tiny's no_change_caption joins the pool where the mask shows no change
            assert "the scene is the same as before" in c.candidates
    with pytest.raises(ValueError, match="decoding"):
        Predictor.from_checkpoint(tiny_checkpoint, decoding="best")


def test_sampled_captions_decide_ties_by_minimum_bayes_risk() -> None:
    """With samples, the captions the mask confirms equally well are ordered by their mean caption similarity to the
    samples (minimum Bayes risk), not by the greedy caption's place: a greedy sentence that leaves the mask's
    buildings out loses to the sampled building caption most like the other samples."""
    from semcc.metrics.consistency import choose_consistent, expected_similarity

    two = summarize_mask(_squares(100, [(80, 10, 90, 20), (80, 60, 90, 70)]), {1: "building"})  # 2, at the bottom
    greedy = "a new road is built on the sand"
    samples = ["two houses are built at the bottom", "two new houses appear at the bottom", "two houses are built",
               greedy, "two buildings are built at the bottom"]
    assert choose_consistent(greedy, [], two) == (greedy, [greedy])  # no samples: nothing else to choose
    caption, ranked = choose_consistent(greedy, [], two, samples=samples)
    assert set(ranked) == set(samples) and ranked[-1] == greedy  # the one caption with a class disagreement: last
    # the four confirmed captions tie on disagreements (none); the one sharing most words with the others wins
    assert caption == "two houses are built at the bottom"
    utility = expected_similarity(ranked[:4], samples)
    assert utility == sorted(utility, reverse=True) and utility[0] > utility[1]
    # a repeated sample counts as often as it was drawn: twice the greedy caption and it is closer to them than
    # "two houses are built" is, but a class disagreement still outweighs any similarity
    assert choose_consistent(greedy, [], two, samples=[greedy] * 9 + samples)[0] == caption
    assert expected_similarity(["a b"], ["a b", "c d"]) == [0.5]
    with pytest.raises(ValueError, match="no samples"):
        expected_similarity(["a b"], [])


def test_an_empty_building_mask_leaves_road_and_tree_captions_to_the_model() -> None:
    """Over an empty building mask a caption about trees or a road has no disagreement, and the no-change sentence is
    not confirmed either (the mask says no building changed, nothing about roads or trees; 0.15.0): the two tie, so
    the greedy caption (first) or, with samples, their consensus decides. Over an empty mask of any change the
    no-change sentence is confirmed and beats the tree caption, which such a mask does not mark, and a road caption
    contradicts it."""
    from semcc.metrics.consistency import choose_consistent, expected_similarity

    empty = summarize_mask(np.zeros((100, 100), np.uint8), {1: "building"})
    fixed = "the scene is the same as before"
    trees = ["the trees at the top are removed", "some trees at the top are cut down",
             "the trees at the top are removed", "a road is built"]
    assert check_consistency(trees[0], empty).change_checked is False
    assert check_consistency(fixed, empty).consistent and not check_consistency(fixed, empty).change_confirmed
    assert not check_consistency("two houses are built", empty).change_confirmed
    assert consistency_rank([trees[0], fixed], empty) == [0, 1]  # a tie: the greedy caption, first, stays first
    assert consistency_rank([fixed, trees[0]], empty) == [0, 1]
    assert consistency_rank(["two houses are built", fixed], empty) == [1, 0]  # buildings: the mask contradicts
    utility = expected_similarity([trees[0], fixed], trees)
    assert utility[0] > utility[1]  # the tree caption is the samples' consensus, and wins the tie
    caption, ranked = choose_consistent(fixed, [], empty, no_change=[fixed], samples=trees)
    assert caption == trees[0] and ranked[-1] != trees[0]
    any_change = summarize_mask(np.zeros((100, 100), np.uint8), {1: "change"})
    assert check_consistency(fixed, any_change).change_confirmed
    assert consistency_rank([trees[0], fixed], any_change) == [1, 0]
    assert consistency_rank([trees[0], fixed], any_change, utility) == [1, 0]  # confirmed before the consensus
    assert check_consistency(trees[3], any_change).kinds == ("change",)


def test_sampled_candidates_are_reproducible_and_sharpen_to_greedy(tiny_checkpoint: Path, synth_root: Path) -> None:
    """``SemanticCC.caption_samples``: ``samples`` captions per pair, the prompts in turn; the same batch and seed give
    the same samples, without touching the global random state; at a temperature near 0 each prompt's samples are
    its greedy caption. The predictor's consistent decoding with samples offers them as candidates."""
    import torch

    from semcc.inference import Predictor
    from semcc.tasks.loading import load_task

    task = load_task(tiny_checkpoint).eval()
    model, prompts = task.model, task.instructions
    folder = synth_root / "LEVIR-CC" / "images" / "test"
    names = sorted(p.name for p in (folder / "A").iterdir())[:3]
    predictor = Predictor(task, decoding="consistent", samples=6)
    images = [torch.stack([predictor._normalize(np.array(Image.open(folder / side / n).convert("RGB")))
                           for n in names]) for side in ("A", "B")]
    state = torch.get_rng_state()
    drawn = model.caption_samples(*images, instructions=prompts, samples=6, temperature=1.0, max_new_tokens=6)
    assert torch.equal(torch.get_rng_state(), state)
    assert [len(d) for d in drawn] == [6, 6, 6]
    assert drawn == model.caption_samples(*images, instructions=prompts, samples=6, temperature=1.0, max_new_tokens=6)
    greedy = model.caption_candidates(*images, instructions=prompts, max_new_tokens=6)  # [B][K], one per prompt
    cold = model.caption_samples(*images, instructions=prompts, samples=2 * len(prompts), temperature=1e-5,
                                 max_new_tokens=6)
    assert cold == [[c for c in row for _ in range(2)] for row in greedy]
    results = predictor.predict(*[[folder / side / n for n in names] for side in ("A", "B")])
    plain = Predictor(task, decoding="consistent").predict(*[[folder / side / n for n in names] for side in "AB"])
    for with_samples, without in zip(results, plain, strict=True):
        assert with_samples.caption == with_samples.candidates[0]
        assert set(without.candidates) <= set(with_samples.candidates)  # the samples join the beams
    with pytest.raises(ValueError, match="samples"):
        Predictor(task, samples=-1)
    with pytest.raises(ValueError, match="temperature"):
        Predictor(task, temperature=0.0)


def test_the_beams_length_penalty_reaches_the_beam_search(tiny_checkpoint: Path, synth_root: Path) -> None:
    """``length_penalty`` ranks the beams by their summed log-probability over ``length ** length_penalty``: a high
    penalty keeps longer beams than a negative one, on the model's own candidates. The predictor takes the run's
    value (stored in the checkpoint) unless given one."""
    from dataclasses import replace

    import torch

    from semcc.inference import Predictor
    from semcc.tasks.evaluator import EvalConfig
    from semcc.tasks.loading import load_task

    task = load_task(tiny_checkpoint).eval()
    model, prompts = task.model, task.instructions
    folder = synth_root / "LEVIR-CC" / "images" / "test"
    names = sorted(p.name for p in (folder / "A").iterdir())[:4]
    predictor = Predictor(task, decoding="consistent")
    images = [torch.stack([predictor._normalize(np.array(Image.open(folder / side / n).convert("RGB")))
                           for n in names]) for side in ("A", "B")]

    def words(penalty: float) -> list[float]:
        rows = model.caption_candidates(*images, instructions=prompts, max_new_tokens=12, beams=3,
                                        length_penalty=penalty)
        return [float(np.mean([len(c.split()) for c in row])) for row in rows]

    short, long = words(-4.0), words(4.0)
    assert all(s <= g for s, g in zip(short, long, strict=True)) and sum(long) > sum(short)
    assert words(1.0) == [float(np.mean([len(c.split()) for c in row]))  # 1 is the default
                          for row in model.caption_candidates(*images, instructions=prompts, max_new_tokens=12,
                                                              beams=3)]
    assert "length_penalty" in EvalConfig.STORED and task.evaluation.length_penalty == 1.0
    assert predictor.length_penalty == 1.0 and Predictor(task, length_penalty=0.0).length_penalty == 0.0
    task.evaluation = replace(task.evaluation, length_penalty=0.0)  # as a run with --model.evaluation.length_penalty
    assert Predictor(task).length_penalty == 0.0


def test_a_checkpoint_says_what_its_binary_mask_marks(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The fit stores the data module's ``binary_mask_class``; a checkpoint written before 0.6 (no such
    hyperparameter) gets it from its stored data configuration; a bare model, or the caller, says ``change``."""
    import torch
    import yaml

    from semcc.inference import Predictor
    from semcc.tasks.loading import load_task

    checkpoint = torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)
    assert checkpoint["hyper_parameters"]["binary_mask_class"] == "building"
    task = load_task(tiny_checkpoint)
    assert task.mask_classes == {1: "building"} and Predictor(task).mask_classes == {1: "building"}
    assert Predictor(task, binary_mask_class="change").mask_classes == {1: "change"}
    assert Predictor(task.model).mask_classes == {1: "change"}
    with pytest.raises(ValueError, match="binary mask class"):
        Predictor(task, binary_mask_class="water")
    del checkpoint["hyper_parameters"]["binary_mask_class"]
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    assert load_task(old).hparams["binary_mask_class"] == "building"
    config = yaml.safe_load(checkpoint["semcc"]["config"])
    config["data"].setdefault("loader", {})["joint_mask_mode"] = "change"
    checkpoint["semcc"]["config"] = yaml.safe_dump(config)
    torch.save(checkpoint, old)
    assert load_task(old).mask_classes == {1: "change"}


def test_the_no_change_sentence_is_a_candidate_only_where_the_mask_shows_no_change(
        tiny_checkpoint: Path) -> None:
    """Consistency-aware decoding with ``no_change_candidate``: a look-alike change (every generated candidate
    describes a change, the mask shows none) is captioned with the task's no-change sentence; where the mask shows a
    change the sentence is not offered, not even when every generated candidate disagrees with the mask on more
    points than its one (count and place against the change); the option off (or no ``no_change_caption``) adds
    nothing."""
    from dataclasses import replace

    from semcc.inference import Predictor
    from semcc.metrics.consistency import choose_consistent
    from semcc.tasks.loading import load_task

    fixed = "the scene is the same as before"
    empty = np.zeros((64, 64), np.uint8)
    house = empty.copy()
    house[26:38, 26:38] = 1  # one component at the centre
    generated = ["a house is built in the middle", "two houses are built"]
    for mask, chosen, pool in ((empty, fixed, {*generated, fixed}), (house, generated[0], set(generated))):
        caption, ranked = choose_consistent(generated[0], generated[1:], summarize_mask(mask, {1: "change"}),
                                            no_change=[fixed])
        assert caption == chosen and set(ranked) == pool
    wrong = "two houses are built at the top"  # two disagreements with the house: count and place
    summary = summarize_mask(house, {1: "change"})
    assert len(check_consistency(wrong, summary).disagreements) == 2
    assert len(check_consistency(fixed, summary).disagreements) == 1
    assert choose_consistent(wrong, [], summary, no_change=[fixed]) == (wrong, [wrong])
    # a generated no-change caption still competes, but is wrong about change itself, which outweighs count and place
    assert choose_consistent(wrong, [fixed], summary)[1] == [wrong, fixed]
    assert choose_consistent(fixed, [], summary, no_change=[fixed])[0] == fixed
    task = load_task(tiny_checkpoint)
    assert task.hparams.no_change_caption == fixed and task.evaluation.no_change_candidate  # tiny's defaults
    assert task.no_change_candidates() == [fixed] and Predictor(task).no_change_candidates == [fixed]
    assert Predictor(task, no_change_candidate=False).no_change_candidates == []
    task.evaluation = replace(task.evaluation, no_change_candidate=False)
    assert task.no_change_candidates() == [] and Predictor(task).no_change_candidates == []
    assert Predictor(task, no_change_candidate=True).no_change_candidates == [fixed]
    assert Predictor(task.model).no_change_candidates == []  # a bare model knows no fixed sentence


# ------------------------------------------------------------------------------------------------ commands
def test_semcc_evaluate_scores_claims_against_the_truth(synth_root: Path, tmp_path: Path, capsys) -> None:
    from semcc.main import main
    from semcc.metrics.report import semantic_table

    cc = synth_root / "LEVIR-CC"
    images = [e for e in json.loads((cc / "LevirCCcaptions.json").read_text())["images"] if e["split"] == "test"]
    preds = {e["filename"]: e["sentences"][1]["raw"] for e in images}
    (tmp_path / "captions.json").write_text(json.dumps(preds))
    out, report = tmp_path / "scores.json", tmp_path / "report"
    args = ["evaluate", "--predictions", str(tmp_path / "captions.json"), "--references",
            str(cc / "LevirCCcaptions.json"), "--no-meteor", "--out", str(out), "--report", str(report)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    scores = json.loads(out.read_text())["semantic"]
    assert set(scores) == {"model", "references", "constant", "oracle_constant"}
    assert scores["model"] == pytest.approx(semantic_scores(preds, load_truth(cc, "test")), nan_ok=True)
    assert scores["model"]["change_accuracy"] == 1.0  # a reference is always right about change
    assert semantic_table(scores) in printed and "SynthLEVIR change events" in printed
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["semantic"] == json.loads(out.read_text())["semantic"]
    assert "## What the captions claim" in (report / "report.md").read_text()
    assert main([*args[:6], "--no-meteor", "--truth", str(tmp_path)]) == 1
    assert "--truth" in capsys.readouterr().err


def test_decoding_options_are_checked() -> None:
    from semcc.tasks.evaluator import EvalConfig

    with pytest.raises(ValueError, match=r"evaluation\.decoding"):
        EvalConfig(decoding="best")
    with pytest.raises(ValueError, match=r"evaluation\.beams"):
        EvalConfig(beams=0)
    with pytest.raises(ValueError, match=r"evaluation\.samples"):
        EvalConfig(samples=-1)
    with pytest.raises(ValueError, match=r"evaluation\.temperature"):
        EvalConfig(temperature=0.0)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"evaluation\.change_share must be in \(0, 1\]"):
            EvalConfig(change_share=bad)
    # Predictor and semcc caption default to the run's
    assert {"decoding", "beams", "samples", "temperature", "sample_seed", "change_share"} <= set(EvalConfig.STORED)


def test_the_mask_change_threshold_decides_what_a_small_mask_says(tiny_checkpoint: Path) -> None:
    """``change_share``: one house of 14 x 14 px on a 256 x 256 pair (0.30% of the pixels, under the default 0.5%)
    says "no change" by default and "changed" from 0.2%: the no-change caption then disagrees with the mask, and
    consistency-aware decoding neither offers the no-change sentence nor keeps a generated one over the house."""
    from dataclasses import replace

    from semcc.inference import Predictor
    from semcc.metrics.consistency import choose_consistent
    from semcc.metrics.truth import MASK_CHANGE_SHARE
    from semcc.tasks.loading import load_task

    house = _squares(256, [(100, 100, 114, 114)])
    default, low = summarize_mask(house, {1: "building"}), summarize_mask(house, {1: "building"}, change_share=0.002)
    assert math.isclose(default.changed_share, 196 / 256**2) and default.change_share == MASK_CHANGE_SHARE == 0.005
    assert not default.changed and low.changed and low.change_share == 0.002
    fixed, built = "the scene is the same as before", "a house is built in the middle"
    assert check_consistency(fixed, default).consistent
    assert check_consistency(fixed, low).kinds == ("change",)
    assert choose_consistent(fixed, [built], default, no_change=[fixed])[0] == fixed  # ties keep the greedy one
    assert choose_consistent(fixed, [built], low, no_change=[fixed]) == (built, [built, fixed])
    for bad in (0, 2.0):
        with pytest.raises(ValueError, match=r"change_share must be in \(0, 1\]"):
            summarize_mask(house, {1: "building"}, change_share=bad)
    task = load_task(tiny_checkpoint)
    assert task.evaluation.change_share == MASK_CHANGE_SHARE and Predictor(task).change_share == MASK_CHANGE_SHARE
    assert Predictor(task, change_share=0.002).change_share == 0.002
    task.evaluation = replace(task.evaluation, change_share=0.003)  # as a run with --model.evaluation.change_share
    assert Predictor(task).change_share == 0.003
    with pytest.raises(ValueError, match="change_share"):
        Predictor(task, change_share=0.0)


def test_mask_prefixes_say_the_count_and_class_the_mask_marks() -> None:
    """``mask_prefixes``: the openings of the mask-guided candidates state the count and class of each class the mask
    marks apart, in words whose count the consistency check confirms; none where the mask shows no change or marks
    any change without a class."""
    from semcc.metrics.consistency import mask_prefixes

    def boxes(n: int) -> list[tuple[int, int, int, int]]:
        return [(10 + 12 * (i // 4), 10 + 20 * (i % 4), 18 + 12 * (i // 4), 18 + 20 * (i % 4)) for i in range(n)]

    building = {1: "building"}
    expected = {1: ["a house", "a building"], 2: ["two houses", "two buildings"],
                3: ["three houses", "three buildings"], 4: ["several houses", "some buildings"],
                5: ["several houses", "some buildings"],
                7: ["many houses", "many buildings"]}
    for n, prefixes in expected.items():
        summary = summarize_mask(_squares(100, boxes(n)), building)
        assert summary.regions[0].components == n
        assert mask_prefixes(summary) == prefixes
        for prefix in prefixes:  # the check reads back the count the prefix was made from
            report = check_consistency(f"{prefix} {'is' if n == 1 else 'are'} built", summary)
            assert "count" not in report.kinds and "class" not in report.kinds, (prefix, report.disagreements)
    assert mask_prefixes(summarize_mask(np.zeros((100, 100), np.uint8), building)) == []
    assert mask_prefixes(summarize_mask(_squares(100, boxes(2)), {1: "change"})) == []  # any change: class unknown
    mci = _squares(100, boxes(3), value=2)
    mci[60:64, 0:100] = 1  # one road across the image
    summary = summarize_mask(mci, {1: "road", 2: "building"})
    assert sorted(mask_prefixes(summary)) == sorted(["a new road", "three houses", "three buildings"])


def test_road_shaped_components_are_not_counted_as_buildings() -> None:
    """``road_shapes``: a building mask's long thin (a straight road) or long sparse (a diagonal road) components are
    counted apart from its buildings, and the place is the buildings'; compact blocks, short strips and a long but
    solid block of houses stay buildings; without the option, or for another class, everything counts as before.
    The consistency check then takes the model's caption of a new road over "a house is built", and the mask-guided
    openings count the buildings alone."""
    from semcc.metrics.consistency import choose_consistent, mask_prefixes
    from semcc.metrics.truth import road_shaped

    assert road_shaped(200, 20, 3000, 256)  # 10 times as long as wide
    assert road_shaped(120, 140, 3000, 256)  # fills 18% of its box: a diagonal or branching road
    assert not road_shaped(30, 25, 600, 256)  # a house
    assert not road_shaped(40, 6, 200, 256)  # thin but short (under 0.2 of the side)
    assert not road_shaped(196, 83, 6000, 256)  # a long block of houses filling 37% of its box
    with pytest.raises(ValueError, match="positive"):
        road_shaped(0, 5, 10, 256)

    mask = _squares(100, [(5, 70, 15, 80), (20, 70, 30, 80)])  # two houses at the top right
    mask[60:64, 0:100] = 1  # a straight road across the image
    for i in range(40):  # a diagonal road, one pixel wide: fills 1/40 of its box
        mask[35 + i // 2, i] = 1
    building = {1: "building"}
    plain = summarize_mask(mask, building)
    shaped = summarize_mask(mask, building, road_shapes=True)
    assert (plain.regions[0].components, plain.regions[0].road_shaped) == (4, 0)
    assert (shaped.regions[0].components, shaped.regions[0].road_shaped) == (2, 2)
    assert shaped.regions[0].place == "top_right" and plain.regions[0].place != "top_right"
    assert shaped.regions[0].share == plain.regions[0].share and shaped.changed_share == plain.changed_share
    assert shaped.to_dict()["regions"][0]["road_shaped"] == 2
    assert mask_prefixes(shaped) == ["two houses", "two buildings"]
    assert summarize_mask(mask, {1: "change"}, road_shapes=True).regions[0].road_shaped == 0  # any change: as it is

    road_only = np.zeros((100, 100), np.uint8)
    road_only[:, 40:46] = 1
    summary = summarize_mask(road_only, building, road_shapes=True)
    assert summary.changed and summary.regions[0].components == 0 and mask_prefixes(summary) == []
    road, house = "a new road is built on the sand", "a house is built on the sand"
    assert check_consistency(road, summary).consistent
    report = check_consistency(house, summary)
    assert report.kinds == ("class",) and "shaped like a road" in report.disagreements[0]
    assert choose_consistent(house, [road], summary)[0] == road  # the road caption wins over the greedy one
    unshaped = summarize_mask(road_only, building)
    assert choose_consistent(house, [road], unshaped)[0] == house  # counted as a building, the house caption wins


def test_prefixed_captions_continue_the_given_words(tiny_checkpoint: Path, synth_root: Path) -> None:
    """``SemanticCC.prefixed_captions``: per pair one caption per prefix, each opening with it; greedy decoding
    continued from the first words of the model's own greedy caption gives that caption back; the prefix counts
    towards ``max_new_tokens``."""
    import torch

    from semcc.inference import Predictor
    from semcc.tasks.loading import load_task

    task = load_task(tiny_checkpoint).eval()
    model, prompt = task.model, task.instructions[0]
    folder = synth_root / "LEVIR-CC" / "images" / "test"
    names = sorted(p.name for p in (folder / "A").iterdir())[:3]
    predictor = Predictor(task)
    images = [torch.stack([predictor._normalize(np.array(Image.open(folder / side / n).convert("RGB")))
                           for n in names]) for side in ("A", "B")]
    with torch.no_grad():
        greedy = model.generate(*images, instructions=[prompt] * 3, max_new_tokens=12)
    own = [" ".join(c.split()[:2]) for c in greedy]
    vocabulary = model.cc_head._tok().get_vocab()
    words = [w for w in ("two", "houses", "a", "new", "road", "buildings") if w in vocabulary]
    assert len(words) >= 4, sorted(vocabulary)
    prefixes = [[" ".join(words[:2]), own[0]], [], [" ".join(words[2:4]), words[-1], own[2]]]
    out = model.prefixed_captions(*images, prefixes, instruction=prompt, max_new_tokens=12)
    assert [len(row) for row in out] == [2, 0, 3]
    for row, wanted in zip(out, prefixes, strict=True):
        for caption, prefix in zip(row, wanted, strict=True):
            assert caption == prefix or caption.startswith(prefix + " "), (prefix, caption)
    assert out[0][1] == greedy[0] and out[2][2] == greedy[2]
    short = model.prefixed_captions(*images, [[" ".join(words[:2])]] * 3, instruction=prompt, max_new_tokens=3)
    assert all(len(row[0].split()) <= 3 for row in short)
    assert "zebras" not in vocabulary  # a word the model never read gives no candidate
    assert model.prefixed_captions(*images, [["two zebras", words[0]], [], []], instruction=prompt)[0] == \
        model.prefixed_captions(*images, [[words[0]], [], []], instruction=prompt)[0]
    assert model.prefixed_captions(*images, [[], [], []]) == [[], [], []]
    with pytest.raises(ValueError, match="prefix lists"):
        model.cc_head.prefixed_candidates(*model.features(*images)[1], [["a house"]])


def test_mask_guided_candidates_join_the_consistent_decoding(tiny_checkpoint: Path, synth_root: Path) -> None:
    """``Predictor(mask_prefixes=True)``: each pair's candidates are the plain consistent decoding's plus the model's
    captions continued from the prefixes of its own mask (``mask_prefixes``), and the chosen caption is the first of
    ``choose_consistent``'s ranking of them all. The predictor takes the run's setting unless given one."""
    import torch

    from semcc.inference import Predictor
    from semcc.metrics.consistency import choose_consistent, mask_prefixes, with_first_clauses
    from semcc.tasks.loading import load_task

    task = load_task(tiny_checkpoint).eval()
    assert Predictor(task).mask_prefixes == task.evaluation.mask_prefixes
    assert Predictor(task).road_shapes == task.evaluation.road_shapes is True  # tiny's
    assert Predictor(task, road_shapes=False).road_shapes is False
    assert Predictor(task).first_clauses == task.evaluation.first_clauses is True  # tiny's
    folder = synth_root / "LEVIR-CC" / "images" / "test"
    names = sorted(p.name for p in (folder / "A").iterdir())[:4]
    pairs = ([folder / "A" / n for n in names], [folder / "B" / n for n in names])
    with torch.no_grad():  # the short test fit's masks mark nothing: shift the logits so that they mark a building
        task.model.cd_head.proj.bias.add_(50.0)
    guided = Predictor(task, decoding="consistent", mask_prefixes=True, first_clauses=False).predict(*pairs)
    plain = Predictor(task, decoding="consistent", mask_prefixes=False, first_clauses=False).predict(*pairs)
    predictor = Predictor(task)
    images = [torch.stack([predictor._normalize(np.array(Image.open(p).convert("RGB"))) for p in side])
              for side in pairs]
    prefixes = [mask_prefixes(r.consistency.mask) for r in plain]
    assert all(p == ["a house", "a building"] for p in prefixes), prefixes  # one component: the whole image
    model, prompts, n = task.model, predictor.instructions, predictor.max_new_tokens
    vocabulary = model.cc_head._tok().get_vocab()
    with torch.no_grad(), predictor.radiometry():
        greedy = model.generate(*images, instructions=[prompts[0]] * len(names), max_new_tokens=n)
        beams = model.caption_candidates(*images, instructions=prompts, max_new_tokens=n, beams=predictor.beams,
                                         length_penalty=predictor.length_penalty)
        more = model.prefixed_captions(*images, prefixes, instruction=prompts[0], max_new_tokens=n)
    assert any(more), "the test vocabulary has neither 'house' nor 'building'"
    for i, (g, p) in enumerate(zip(guided, plain, strict=True)):
        assert np.array_equal(g.mask, p.mask)
        assert set(g.candidates) == set(p.candidates) | set(more[i])
        known = [q for q in prefixes[i] if all(w in vocabulary for w in q.split())]
        assert len(more[i]) == len(known) and all(c.startswith(q) for c, q in zip(more[i], known, strict=True))
        assert g.caption == choose_consistent(greedy[i], [*beams[i], *more[i]], g.consistency.mask,
                                              no_change=predictor.no_change_candidates)[0]
    # first clauses (tiny's): the same candidates and each one's first clause; the choice is never less consistent
    clauses = Predictor(task, decoding="consistent", mask_prefixes=True).predict(*pairs)
    for c, g in zip(clauses, guided, strict=True):
        assert set(c.candidates) == set(with_first_clauses(g.candidates))
        assert c.consistency.severity() <= g.consistency.severity()
    # The short test fit writes no caption of two events, so the Predictor's setting is also checked on one written
    # by hand (eight building components: its first clause wins where first clauses are on)
    two_events = "many houses are built on the right side of the scene and a house is demolished at the bottom"
    logit = torch.full((1, 100, 100), -9.0)
    for x in (5, 30, 55, 80):
        for y in (10, 60):
            logit[:, y:y + 6, x:x + 6] = 9.0
    for on, chosen in ((True, "many houses are built on the right side of the scene"), (False, two_events)):
        result = Predictor(task, decoding="consistent", first_clauses=on)._result(
            "hand", (100, 100), two_events, logit, False, False, candidates=[])
        assert result.caption == chosen and result.candidates[0] == chosen
