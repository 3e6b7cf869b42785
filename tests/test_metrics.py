"""Caption metrics: pycocoevalcap equality, subsets, and the two floors on the real LEVIR-CC test split."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from semcc.data.text import NO_CHANGE_SENTENCES, most_frequent_changed_caption
from semcc.metrics.captioning import CaptionScorer, floor_predictions, score_captions, score_split

REFS = {
    "a.png": ["two houses are built on the bareland", "two buildings appear at the bottom", "houses are built",
              "two villas are constructed", "two new houses appear on the bareland"],
    "b.png": list(NO_CHANGE_SENTENCES),
    "c.png": ["a road is built in the middle", "a new road appears", "a road is constructed across the scene",
              "the scene shows a new road", "a road runs through the middle"],
}
PREDS = {"a.png": "Two houses are built on the bareland.", "b.png": "there is no difference", "c.png": "a road appears"}


def test_scores_equal_pycocoevalcap_called_directly() -> None:
    ours = score_captions(PREDS, REFS, meteor=False)
    res = {k: [v.lower().replace(".", "").strip()] for k, v in PREDS.items()}
    bleu, _ = Bleu(4).compute_score(REFS, res, verbose=0)
    for i in range(4):
        assert ours[f"bleu_{i + 1}"] == pytest.approx(bleu[i], abs=1e-12)
    assert ours["rouge_l"] == pytest.approx(Rouge().compute_score(REFS, res)[0], abs=1e-12)
    assert ours["cider"] == pytest.approx(Cider().compute_score(REFS, res)[0], abs=1e-12)
    assert ours["s_m"] == pytest.approx((ours["bleu_4"] + ours["rouge_l"] + ours["cider"]) / 3)


def test_subsets_and_change_accuracy() -> None:
    scores = score_split(PREDS, REFS, meteor=False)
    change = score_captions({k: PREDS[k] for k in ("a.png", "c.png")}, {k: REFS[k] for k in ("a.png", "c.png")},
                            meteor=False)
    assert scores["change_cider"] == pytest.approx(change["cider"])
    assert scores["nochange_bleu_1"] == pytest.approx(1.0)
    assert scores["change_accuracy"] == 1.0
    wrong = score_split({**PREDS, "c.png": "no change has occurred"}, REFS, meteor=False)
    assert wrong["change_accuracy"] == pytest.approx(2 / 3)


def test_scorer_keeps_one_prediction_per_pair() -> None:
    scorer = CaptionScorer(meteor=False)
    scorer.update(["a.png", "b.png"], [PREDS["a.png"], PREDS["b.png"]], [REFS["a.png"], REFS["b.png"]])
    scorer.update(["c.png", "a.png"], [PREDS["c.png"], PREDS["a.png"]], [REFS["c.png"], REFS["a.png"]])  # a repeat
    assert scorer.compute() == score_split(PREDS, REFS, meteor=False)
    with pytest.raises(ValueError, match="differ in length"):
        scorer.update(["x"], [], [[]])


def test_floors_on_real_levir_cc_test(real_levir_dir: Path) -> None:
    """The published-protocol floors: constant BLEU-4 0.515 / CIDEr 1.019 / METEOR 0.2777, oracle 0.598 / 1.266."""
    with gzip.open(real_levir_dir / "LevirCCcaptions.json.gz", "rt") as f:
        images = json.load(f)["images"]
    refs = {s: {e["filename"]: [" ".join(x["tokens"]) for x in e["sentences"]] for e in images if e["split"] == s}
            for s in ("train", "test")}
    changed = most_frequent_changed_caption(list(refs["train"].values()))
    assert changed == "some roads and houses are built on bareland"
    floors = floor_predictions(refs["test"], changed)
    constant = score_captions(floors["constant"], refs["test"])
    assert round(constant["bleu_4"], 3) == 0.515 and round(constant["cider"], 3) == 1.019
    assert round(constant["meteor"], 4) == 0.2777
    oracle = score_captions(floors["oracle_constant"], refs["test"], meteor=False)
    assert round(oracle["bleu_4"], 3) == 0.598 and round(oracle["cider"], 3) == 1.266


def _write_split(tmp_path: Path) -> Path:
    images = []
    for i, (split, refs) in enumerate([("train", REFS["a.png"]), ("train", REFS["a.png"]), ("train", REFS["b.png"]),
                                       ("test", REFS["a.png"]), ("test", REFS["b.png"]), ("test", REFS["c.png"])]):
        images.append({"filepath": split, "filename": f"{split}_{i}.png", "imgid": i, "split": split,
                       "sentences": [{"tokens": r.split(), "raw": r + " .", "imgid": i, "sentid": 5 * i + k}
                                     for k, r in enumerate(refs)]})
    path = tmp_path / "LevirCCcaptions.json"
    path.write_text(json.dumps({"images": images}))
    return path


def test_semcc_evaluate_round_trip(tmp_path: Path, capsys) -> None:
    from semcc.main import main

    refs_path = _write_split(tmp_path)
    preds = [{"name": "test_3.png", "prediction": "two houses are built on the bareland"},
             {"name": "test_4.png", "prediction": "the scene is the same as before"},
             {"name": "test_5.png", "prediction": "two houses are built on the bareland"}]
    (tmp_path / "captions.json").write_text(json.dumps(preds))
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--predictions", str(tmp_path / "captions.json"), "--references", str(refs_path),
                 "--no-meteor", "--out", str(out)]) == 0
    scores = json.loads(out.read_text())
    refs = {"test_3.png": REFS["a.png"], "test_4.png": REFS["b.png"], "test_5.png": REFS["c.png"]}
    ours = score_split({p["name"]: p["prediction"] for p in preds}, refs, meteor=False)
    assert scores["model"] == pytest.approx(ours)
    # The oracle-constant floor says the most frequent changed training caption for changed pairs.
    floors = floor_predictions(refs, most_frequent_changed_caption([REFS["a.png"]]))
    assert scores["oracle_constant"] == pytest.approx(score_split(floors["oracle_constant"], refs, meteor=False))
    assert "| oracle_constant | change |" in capsys.readouterr().out


def test_semcc_evaluate_errors(tmp_path: Path) -> None:
    from semcc.data.levir import LevirDataError
    from semcc.evaluate import evaluate_captions, load_predictions

    refs_path = _write_split(tmp_path)
    with pytest.raises(LevirDataError, match=r"lack 1 pairs of the test split, e\.g\. \['test_5\.png'\]"):
        evaluate_captions({"test_3.png": "x", "test_4.png": "y"}, refs_path, meteor=False)
    with pytest.raises(LevirDataError, match=r"not in the test split, e\.g\. \['zzz\.png'\]"):
        evaluate_captions({"test_3.png": "x", "test_4.png": "y", "test_5.png": "z", "zzz.png": "w"}, refs_path)
    with pytest.raises(LevirDataError, match="unknown split 'val'; available: test, train"):
        evaluate_captions({}, refs_path, split="val")
    bad = tmp_path / "bad.json"
    bad.write_text('[{"name": "a.png"}]')
    with pytest.raises(LevirDataError, match=r"bad\.json: item 0 needs a string 'name' and a string 'prediction'"):
        load_predictions(bad)
