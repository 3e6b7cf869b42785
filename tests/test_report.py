"""`semcc test` writes metrics.json, report.md and captions.json; the numbers match the metrics called directly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from semcc.data.levir import LevirCCDataset
from semcc.main import main
from semcc.metrics.captioning import floor_predictions, score_split
from semcc.metrics.claim_scores import semantic_scores
from semcc.metrics.report import caption_table, detection_table, semantic_table
from semcc.metrics.truth import load_truth


def test_semcc_test_writes_the_report(tiny_cli_args, tiny_checkpoint: Path, synth_root: Path, tmp_path: Path,
                                      capsys) -> None:
    run = tmp_path / "test-run"
    args = ["test", *tiny_cli_args(run), f"--ckpt_path={tiny_checkpoint}", "--model.evaluation.meteor=false"]
    assert main(args) == 0
    out = capsys.readouterr().out
    metrics_file = next(run.rglob("metrics.json"))
    folder = metrics_file.parent
    assert f"semcc: test report {metrics_file}" in out
    results = json.loads(metrics_file.read_text())
    assert results["split"] == "test" and results["protocol"] == "words"
    assert results["checkpoint"] == str(tiny_checkpoint)
    assert results["meteor"] == "not computed (meteor=False)"
    captions = json.loads((folder / "captions.json").read_text())
    test_split = LevirCCDataset(synth_root / "LEVIR-CC", "test")
    assert sorted(c["name"] for c in captions) == sorted(test_split[i]["name"] for i in range(len(test_split)))
    assert results["pairs"] == len(captions)
    preds = {c["name"]: c["prediction"] for c in captions}
    refs = {c["name"]: c["references"] for c in captions}
    model = results["captioning"]["model"]
    assert model == pytest.approx(score_split(preds, refs, meteor=False), abs=1e-12)
    changed = {k for k, v in results["captioning"].items() if k != "model"}
    assert changed == {"constant", "oracle_constant"}
    constant = score_split(floor_predictions(refs, "x")["constant"], refs, meteor=False)
    assert results["captioning"]["constant"]["cider"] == pytest.approx(constant["cider"], abs=1e-12)
    assert 0.0 <= results["detection"]["f1"] <= 1.0 and "oa" in results["detection"]
    report = (folder / "report.md").read_text()
    assert caption_table(results["captioning"]) in report and detection_table(results["detection"]) in report
    assert "| oracle_constant | change |" in report
    # How varied the changed pairs' captions are, beside the oracle-constant floor's one sentence.
    assert f"Changed pairs: {model['change_distinct']:.1%} of their captions are distinct" in report
    assert results["captioning"]["oracle_constant"]["change_top_share"] == 1.0
    # Which data CD was scored on (tiny validates on D_cd-cc: whole SynthLEVIR-MCI pairs).
    assert results["detection_protocol"].startswith(f"LEVIR-MCI test ({synth_root / 'LEVIR-CC'}): 6 pairs")
    assert f"Scored on: {results['detection_protocol']}." in report
    # What the captions claim, against SynthLEVIR's events: the model, the references (ceiling) and the floors.
    truth = load_truth(synth_root / "LEVIR-CC", "test")
    assert results["semantic"]["model"] == pytest.approx(semantic_scores(preds, truth), nan_ok=True)
    assert set(results["semantic"]) == {"model", "references", "constant", "oracle_constant"}
    assert results["semantic"]["references"]["change_accuracy"] == 1.0
    assert results["semantic_truth"].startswith("SynthLEVIR change events")
    assert semantic_table(results["semantic"]) in report
    nll = results["reference_nll"]  # the references scored by the model, all pairs and the changed ones
    assert set(nll) == {"all", "changed"} and 0.0 < nll["all"] < 20.0 and 0.0 < nll["changed"] < 20.0
    assert f"{nll['all']:.3f} over all pairs, {nll['changed']:.3f} on the changed pairs" in report


def test_report_tables_per_class() -> None:
    table = detection_table({"f1": 0.5, "precision": 0.4, "recall": 0.6, "iou": 0.3, "oa": 0.9, "f1_building": 0.7,
                             "f1_road": 0.3, "iou_building": 0.5, "iou_road": 0.1})
    assert "| building | - | - | 0.7000 | 0.5000 | - |" in table
    assert "| mean of change classes | 0.4000 | 0.6000 | 0.5000 | 0.3000 | 0.9000 |" in table
