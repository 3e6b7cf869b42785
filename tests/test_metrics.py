"""Caption metrics: pycocoevalcap equality, subsets, and the two floors on the real LEVIR-CC test split."""

from __future__ import annotations

import gzip
import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from semcc.data.text import NO_CHANGE_SENTENCES, most_frequent_changed_caption
from semcc.metrics.captioning import (
    CaptionMetrics,
    build_id_vocabulary,
    caption_diversity,
    floor_predictions,
    meteor_unavailable_reason,
    score_captions,
    score_floors,
    score_split,
)
from semcc.metrics.detection import detection_metrics, flatten_detection_scores
from semcc.metrics.report import render_report

HERE = Path(__file__).resolve().parent

REFS = {
    "a.png": ["two houses are built on the bareland", "two buildings appear at the bottom", "houses are built",
              "two villas are constructed", "two new houses appear on the bareland"],
    "b.png": list(NO_CHANGE_SENTENCES),
    "c.png": ["a road is built in the middle", "a new road appears", "a road is constructed across the scene",
              "the scene shows a new road", "a road runs through the middle"],
}
PREDS = {"a.png": "Two houses are built on the bareland.", "b.png": "there is no difference", "c.png": "a road appears"}


def _direct(gts: dict, res: dict) -> dict[str, float]:
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return {**{f"bleu_{i + 1}": bleu[i] for i in range(4)}, "meteor": Meteor().compute_score(gts, res)[0],
            "rouge_l": Rouge().compute_score(gts, res)[0], "cider": Cider().compute_score(gts, res)[0]}


def test_scores_equal_pycocoevalcap_called_directly() -> None:
    ours = score_captions(PREDS, REFS)
    res = {k: [v.lower().replace(".", "").strip()] for k, v in PREDS.items()}
    direct = _direct(REFS, res)
    for key, value in direct.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key
    assert ours["s_m"] == pytest.approx((ours["bleu_4"] + ours["meteor"] + ours["rouge_l"] + ours["cider"]) / 4)


def test_ptb_tokenization_equals_pycocoevalcap_coco_protocol() -> None:
    raw = {**PREDS, "c.png": "A road, it appears!"}
    ours = score_captions(raw, REFS, tokenization="ptb")
    tok = PTBTokenizer()
    res = tok.tokenize({k: [{"caption": v}] for k, v in raw.items()})
    gts = tok.tokenize({k: [{"caption": r} for r in v] for k, v in REFS.items()})
    for key, value in _direct(gts, res).items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key


def test_ids_protocol_changes_meteor_only() -> None:
    words = score_captions(PREDS, REFS)
    vocab = build_id_vocabulary(r for refs in REFS.values() for r in refs)
    assert vocab["two"] == 1 and vocab["houses"] == 2  # first-seen order
    ids = score_captions(PREDS, REFS, protocol="ids", vocabulary=vocab)
    for key in ("bleu_1", "bleu_4", "rouge_l", "cider"):
        assert ids[key] == pytest.approx(words[key], abs=1e-12), key
    res = {k: [" ".join(str(vocab.get(w, len(vocab) + 1)) for w in v.lower().replace(".", "").split())]
           for k, v in PREDS.items()}
    gts = {k: [" ".join(str(vocab[w]) for w in r.split()) for r in v] for k, v in REFS.items()}
    assert ids["meteor"] == pytest.approx(Meteor().compute_score(gts, res)[0], abs=1e-9)
    with pytest.raises(ValueError, match="unknown caption protocol 'tokens'"):
        score_captions(PREDS, REFS, protocol="tokens")


def test_without_java_meteor_is_skipped_with_a_clear_warning(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no java on PATH
    with pytest.warns(UserWarning, match="METEOR needs Java"):
        scores = score_captions(PREDS, REFS)
    assert "meteor" not in scores and scores["cider"] > 0 and "bleu_4" in scores
    with pytest.raises(RuntimeError, match="PTB tokenizer needs Java"):
        score_captions(PREDS, REFS, tokenization="ptb")


def test_subsets_and_change_accuracy() -> None:
    scores = score_split(PREDS, REFS, meteor=False)
    change = score_captions({k: PREDS[k] for k in ("a.png", "c.png")}, {k: REFS[k] for k in ("a.png", "c.png")},
                            meteor=False)
    assert scores["change_cider"] == pytest.approx(change["cider"])
    assert scores["nochange_bleu_1"] == pytest.approx(1.0)
    assert scores["change_accuracy"] == 1.0
    wrong = score_split({**PREDS, "c.png": "no change has occurred"}, REFS, meteor=False)
    assert wrong["change_accuracy"] == pytest.approx(2 / 3)


def test_caption_diversity_of_the_changed_pairs() -> None:
    assert caption_diversity(["a road", "A road.", "two houses", "trees are removed"]) == {"distinct": 0.75,
                                                                                          "top_share": 0.5}
    with pytest.raises(ValueError, match="at least one caption"):
        caption_diversity([])
    varied = score_split(PREDS, REFS, meteor=False)  # the changed pairs a and c get different captions
    assert varied["change_distinct"] == 1.0 and varied["change_top_share"] == 0.5
    assert varied["change_references_distinct"] == 1.0  # each reference position differs between a and c
    # One sentence for both changed pairs (case and punctuation aside), as the oracle-constant floor says.
    same = score_split({**PREDS, "c.png": "two houses are built on the bareland"}, REFS, meteor=False)
    assert same["change_distinct"] == 0.5 and same["change_top_share"] == 1.0
    refs = {**REFS, "c.png": [REFS["a.png"][0], *REFS["c.png"][1:]]}  # the first references now coincide
    assert score_split(PREDS, refs, meteor=False)["change_references_distinct"] == pytest.approx((0.5 + 4) / 5)
    unchanged = {"b.png": REFS["b.png"]}
    assert "change_distinct" not in score_split({"b.png": PREDS["b.png"]}, unchanged, meteor=False)
    floors = score_floors(REFS, "a road is built")
    assert floors["oracle_constant"]["change_distinct"] == 0.5 and floors["oracle_constant"]["change_top_share"] == 1
    assert "change_references_distinct" not in floors["oracle_constant"]
    report = render_report({"captioning": {"model": same, **floors}})
    assert "Changed pairs: 50.0% of their captions are distinct" in report and "100.0% of them" in report


def test_metric_keeps_one_prediction_per_pair() -> None:
    metric = CaptionMetrics(meteor=False)
    metric.update(["a.png", "b.png"], [PREDS["a.png"], PREDS["b.png"]], [REFS["a.png"], REFS["b.png"]])
    metric.update(["c.png", "a.png"], [PREDS["c.png"], PREDS["a.png"]], [REFS["c.png"], REFS["a.png"]])  # a repeat
    assert metric.compute() == score_split(PREDS, REFS, meteor=False)
    assert sorted(metric.items) == sorted(PREDS) and metric.items["a.png"] == (PREDS["a.png"], REFS["a.png"])
    metric.reset()
    metric.update(["é.png"], ["deux maisons"], [["deux maisons é"]])  # non-ASCII survives the byte encoding
    metric.compute()
    assert metric.items == {"é.png": ("deux maisons", ["deux maisons é"])}
    with pytest.raises(ValueError, match="differ in length"):
        metric.update(["x"], [], [[]])


def test_metric_gathers_under_two_process_ddp(tmp_path: Path) -> None:
    script = runpy.run_path(str(HERE / "ddp_caption_metrics.py"))  # its data, without running it as __main__
    out = tmp_path / "ddp.json"
    result = subprocess.run([sys.executable, str(HERE / "ddp_caption_metrics.py"), str(out)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["local"] == 4 and report["names"] == sorted(script["NAMES"])  # shards gathered, repeat dropped
    single = score_split(script["PREDS"], script["REFS"], meteor=False)
    assert report["scores"] == pytest.approx(single, abs=1e-12)


def test_detection_metrics_binary_and_per_class() -> None:
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (4, 16, 16), generator=gen)
    pred = torch.where(torch.rand(4, 16, 16, generator=gen) < 0.7, target, torch.randint(0, 3, (4, 16, 16)))
    binary = detection_metrics(1)
    binary.update((pred > 0).long(), (target > 0).long())
    got = flatten_detection_scores(binary.compute())
    p, t = pred > 0, target > 0
    tp, fp, fn = (p & t).sum().item(), (p & ~t).sum().item(), (~p & t).sum().item()
    assert got["precision"] == pytest.approx(tp / (tp + fp)) and got["recall"] == pytest.approx(tp / (tp + fn))
    assert got["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn)) and got["iou"] == pytest.approx(tp / (tp + fp + fn))
    assert got["oa"] == pytest.approx((p == t).float().mean().item())
    multi = detection_metrics(3)
    multi.update(pred, target)
    got = flatten_detection_scores(multi.compute(), prefix="")
    per_class = []
    for c, name in enumerate(("none", "building", "road")):
        tp = ((pred == c) & (target == c)).sum().item()
        fp, fn = ((pred == c) & (target != c)).sum().item(), ((pred != c) & (target == c)).sum().item()
        assert got[f"f1_{name}"] == pytest.approx(2 * tp / (2 * tp + fp + fn)), name
        assert got[f"iou_{name}"] == pytest.approx(tp / (tp + fp + fn)), name
        per_class.append(tp / (tp + fp + fn))
    assert got["f1"] == pytest.approx((got["f1_building"] + got["f1_road"]) / 2)
    assert got["miou_all"] == pytest.approx(sum(per_class) / 3)
    assert got["oa"] == pytest.approx((pred == target).float().mean().item())


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
    # The published RSICC-family protocol scores id strings: METEOR 0.2932; the others move only where test
    # words outside the training vocabulary collapse into one <unk> id (CIDEr in the fifth decimal).
    vocab = build_id_vocabulary(c for r in refs["train"].values() for c in r)
    ids = score_captions(floors["constant"], refs["test"], protocol="ids", vocabulary=vocab)
    assert round(ids["meteor"], 4) == 0.2932 and ids["bleu_4"] == pytest.approx(constant["bleu_4"], abs=1e-12)
    assert ids["cider"] == pytest.approx(constant["cider"], abs=1e-4)


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
                 "--no-meteor", "--out", str(out), "--report", str(tmp_path / "report")]) == 0
    scores = json.loads(out.read_text())
    refs = {"test_3.png": REFS["a.png"], "test_4.png": REFS["b.png"], "test_5.png": REFS["c.png"]}
    ours = score_split({p["name"]: p["prediction"] for p in preds}, refs, meteor=False)
    assert scores["model"] == pytest.approx(ours)
    # The oracle-constant floor says the most frequent changed training caption for changed pairs.
    floors = floor_predictions(refs, most_frequent_changed_caption([REFS["a.png"]]))
    oracle = score_split(floors["oracle_constant"], refs, meteor=False)
    assert scores["oracle_constant"] == pytest.approx({k: v for k, v in oracle.items() if "references" not in k})
    assert "change_references_distinct" in scores["model"]
    assert "change_references_distinct" not in scores["oracle_constant"]
    assert "| oracle_constant | change |" in capsys.readouterr().out
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert report["captioning"] == scores and report["protocol"] == "words" and report["pairs"] == 3
    assert "| oracle_constant | no change |" in (tmp_path / "report" / "report.md").read_text()
    ids = tmp_path / "ids.json"
    assert main(["evaluate", "--predictions", str(tmp_path / "captions.json"), "--references", str(refs_path),
                 "--no-meteor", "--protocol", "ids", "--out", str(ids)]) == 0
    assert json.loads(ids.read_text())["model"]["bleu_4"] == pytest.approx(scores["model"]["bleu_4"], abs=1e-12)
    assert main(["evaluate", "--predictions", str(tmp_path / "missing.json"), "--references", str(refs_path)]) == 1
    err = capsys.readouterr().err  # the commands' convention: one line naming the file, exit status 1
    assert err == f"semcc evaluate: {tmp_path / 'missing.json'}: predictions file is missing\n"


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


@pytest.mark.skipif(meteor_unavailable_reason() is not None, reason="METEOR needs Java")
def test_meteor_process_out_of_step_is_replaced() -> None:
    """A METEOR process with an unread answer on its stdout (its line protocol out of step) is restarted: the
    scores equal those of a fresh process, with a warning."""
    from semcc.metrics import captioning

    preds = {"a": "two houses are built", "b": "the scene is the same as before"}
    refs = {"a": ["two new houses are built on the bareland"], "b": ["the scene is the same as before"]}
    fresh = score_captions(preds, refs)["meteor"]
    process = captioning._meteor().meteor_p
    process.stdin.write(b"SCORE ||| a house ||| a house\n")  # an answer nobody reads
    process.stdin.flush()
    with pytest.warns(UserWarning, match="out of step"):
        assert score_captions(preds, refs)["meteor"] == pytest.approx(fresh)
    assert captioning._meteor().meteor_p is not process
