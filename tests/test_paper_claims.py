"""benchmarks/paper_claims.py: Tables II-IV re-run in miniature. The runner's command lines compose the shipped
configs (tiny + the study budget + every row's override), the verdict rule decides as its docstring says, and a
two-row, one-seed slice of Table II runs end to end at 64 px on the session's SynthLEVIR: one table with both rows
and the floor, finite numbers, a picture, and a second call that skips the finished runs."""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import paper_claims  # noqa: E402
from semcc.cli import SemanticCCCLI  # noqa: E402
from semcc.data.datamodule import SemanticCCDataModule  # noqa: E402
from semcc.tasks.module import SemanticCCTask  # noqa: E402

ALL_ROWS = [row for rows in paper_claims.TABLES.values() for row in rows]


class _ParseOnly(SemanticCCCLI):
    def instantiate_classes(self) -> None:
        pass


def test_every_row_has_its_override_and_every_claim_names_rows_of_its_table() -> None:
    assert sorted(ALL_ROWS) == sorted(p.stem for p in paper_claims.ABLATIONS.glob("*.yaml"))
    assert [len(paper_claims.TABLES[t]) for t in ("2", "3", "4")] == [5, 6, 3]
    for table, _, comparisons in paper_claims.CLAIMS.values():
        for c in comparisons:
            assert c.better in paper_claims.TABLES[table] and c.worse in paper_claims.TABLES[table]


def test_the_runs_commands_compose_tiny_the_budget_and_each_row(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The exact arguments the runner gives `semcc fit`, parsed (not built) for all 14 rows."""
    monkeypatch.setattr(sys, "argv", ["semcc"])  # LightningCLI warns when pytest's arguments are there too
    for row in ALL_ROWS:
        cmd = paper_claims.fit_command(row, 2, tmp_path / row / "seed2", base=paper_claims.BASE,
                                       budget=paper_claims.BUDGET, extra=["trainer.max_epochs=3"])
        assert cmd[1:4] == ["-m", "semcc.main", "fit"]
        cfg = _ParseOnly(SemanticCCTask, SemanticCCDataModule, args=cmd[4:], run=False).config
        encoder = cfg.model.model.init_args.encoder.init_args
        assert encoder.train_vit is True  # tiny's trained ViT, in the single-task rows too
        assert cfg.model.evaluation.decoding == "greedy"  # the same decoding for every row
        assert cfg.seed_everything == 2 and cfg.data.phases.seed == 2
        assert cfg.trainer.max_epochs == 3 and cfg.trainer.check_val_every_n_epoch == 1  # --extra wins
        assert cfg.trainer.default_root_dir == str(tmp_path / row / "seed2")
        assert cfg.trainer.callbacks[-1].class_path == "paper_claims.StudyClock"
        assert cfg.data.cd.samples_per_tile == 120 and cfg.data.cd.crop_size == 128  # merged onto tiny's group
        assert cfg.data.cd.positive_fraction == 0.5  # tiny's, kept
        assert encoder.img_size == 128 and cfg.data.synth.size == 128 and cfg.data.batch_size == 4
        assert cfg.data.synth.pairs == {"train": 640, "val": 100, "test": 100}  # tiny's data set, at 128 px
        assert cfg.data.augment.enabled is False
        assert cfg.model.model.init_args.cc_head.init_args.change_loss_weight == 0  # the paper's loss in every row
        single = row.startswith("table3") or row in ("table2_row1_plain", "table2_row2_bcsf",
                                                      "table2_row3_bcsf_enhancer")
        if single:
            assert cfg.model.strategy == "caption_only" and cfg.data.eval_data.sources == ["cc"]
            assert cfg.model.model.init_args.neck is None and cfg.model.model.init_args.cd_head is None
        else:
            assert cfg.model.model.init_args.cd_head is not None
            assert cfg.model.model.init_args.cd_head.init_args.fusion == "cat"  # Eq. 6 in every row
        if row.startswith("table4"):
            assert cfg.model.strategy == row.split("_", 1)[1]


def test_welch_and_the_verdict_rule() -> None:
    scipy_stats = pytest.importorskip("scipy.stats", reason="scipy (dev extra) gives Welch's t distribution")
    a, b = [0.62, 0.64, 0.63], [0.50, 0.52, 0.49]
    test = paper_claims.welch(a, b)
    reference = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert test["t"] == pytest.approx(reference.statistic) and test["p"] == pytest.approx(reference.pvalue)
    assert test["diff"] == pytest.approx(statistics.fmean(a) - statistics.fmean(b))
    assert paper_claims.verdict(test) == "supported"
    assert paper_claims.verdict(paper_claims.welch(b, a)) == "contradicted"
    noisy = paper_claims.welch([0.60, 0.40, 0.55], [0.50, 0.58, 0.45])
    assert noisy["p"] > 0.05 and paper_claims.verdict(noisy) == paper_claims.NOT_SEPARABLE
    assert paper_claims.verdict(paper_claims.welch([0.9], [0.1])) == paper_claims.NOT_SEPARABLE  # one seed
    flat = paper_claims.welch([0.5, 0.5], [0.4, 0.4])  # no spread: the difference decides
    assert flat["p"] == 0.0 and paper_claims.verdict(flat) == "supported"
    assert paper_claims.verdict(paper_claims.welch([0.5, 0.5], [0.5, 0.5])) == paper_claims.NOT_SEPARABLE

    values = {"table4_three_stage": {"s_m": a, "cider": [1.2, 1.3, 1.25]},
              "table4_two_stage": {"s_m": b, "cider": [1.0, 1.1, 1.0]},
              "table4_one_stage": {"s_m": [0.60, 0.66, 0.61], "cider": [1.2, 1.2, 1.2]}}
    judged = paper_claims.judge("3", values)
    assert judged is not None
    assert [c["verdict"] for c in judged["comparisons"]] == ["supported", paper_claims.NOT_SEPARABLE]
    assert judged["verdict"] == paper_claims.NOT_SEPARABLE  # supported only when every comparison is
    assert judged["comparisons"][0]["cider_diff"] == pytest.approx(0.2166667, abs=1e-6)
    values["table4_one_stage"]["s_m"] = [0.70, 0.71, 0.72]
    assert paper_claims.judge("3", values)["verdict"] == "contradicted"
    # The references' NLL decides the other way round: lower is better.
    assert paper_claims.verdict(paper_claims.welch(b, a), direction=-1) == "supported"
    values["table4_three_stage"]["nll"] = [1.01, 1.02, 1.00]
    values["table4_two_stage"]["nll"] = [1.20, 1.22, 1.19]
    values["table4_one_stage"]["nll"] = [1.00, 0.99, 1.02]
    on_nll = paper_claims.judge("3", values, "nll")
    assert on_nll["metric"] == "nll"
    assert [c["verdict"] for c in on_nll["comparisons"]] == ["supported", paper_claims.NOT_SEPARABLE]
    assert on_nll["comparisons"][0]["nll_diff"] == pytest.approx(-0.19333333, abs=1e-6)
    assert "judged on caption NLL (lower is better)" in paper_claims.verdict_lines(on_nll)[0]
    del values["table4_one_stage"]
    assert paper_claims.judge("3", values) is None  # a row without results: no verdict


def _extras(synth_root: Path, synth_config, tmp_path: Path) -> list[str]:
    """tests/conftest.py's tiny_cli_args as --extra KEY=VALUE: 64 px model on the session's SynthLEVIR."""
    synth = {"pairs": synth_config.pairs, "cd_tiles": synth_config.cd_tiles, "size": synth_config.size,
             "seed": synth_config.seed, "nuisance": synth_config.nuisance, "workers": 1}
    items = [f"data.synth_root={synth_root}", f"data.tokenizer_dir={tmp_path / 'tok'}",
             f"data.synth={json.dumps(synth)}", "data.cd.crop_size=64", "data.cd.samples_per_tile=2",
             "data.batch_size=4", "model.model.init_args.encoder.init_args.img_size=64",
             "model.evaluation.max_new_tokens=6", "trainer.limit_val_batches=1",
             "model.evaluation.meteor=false"]  # METEOR's Java start costs 5-20 s a run
    return [a for item in items for a in ("--extra", item)]


@pytest.mark.slow  # a study slice of its own (about 40 s): out of the default suite's 10 minutes
def test_a_two_row_slice_runs_tabulates_draws_and_resumes(synth_root: Path, synth_config, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("matplotlib", reason="the pictures need matplotlib (pip install 'semcc[plot]')")
    out = tmp_path / "study"
    rows = ["table2_row1_plain", "table2_row5_neck_bilinear"]
    argv = ["--rows", *rows, "--seeds", "0", "--out", str(out), *_extras(synth_root, synth_config, tmp_path)]
    first = paper_claims.main(argv)
    printed = capsys.readouterr().out
    assert first["status"] == {"done": 2, "skipped": 0, "failed": 0}, printed

    # One table (II), its two rows in the paper's order, then the floor; every column present.
    table = [line for line in printed.splitlines() if line.startswith("|")]
    titles = [c.strip() for c in table[0].strip("|").split("|")]
    assert titles == ["row", "seeds", *(title for title, _ in paper_claims.COLUMNS.values())]
    body = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    assert [r[0] for r in body] == [paper_claims.TABLES["2"][r] for r in rows] + ["oracle-constant floor"]
    cd = titles.index("CD F1")
    assert body[0][cd] == "-" and body[1][cd] != "-"  # CD F1 only where CD is trained
    assert all(r[titles.index("METEOR")] == "-" for r in body)  # not computed here (meteor=false): "-"
    built = first["tables"]["2"]
    for row in rows:
        stats = built["stats"][row]
        for key in ("bleu_1", "bleu_4", "rouge_l", "cider", "s_m", "change_accuracy", "type_f1", "nll",
                    "change_nll", "wall_s"):
            assert stats[key] is not None and math.isfinite(stats[key]["mean"]) and stats[key]["n"] == 1, key
            assert stats[key]["std"] is None  # one seed: no spread
        assert stats["meteor"] is None
        assert 0.0 <= stats["bleu_4"]["mean"] <= 1.0 and 0.0 <= stats["change_accuracy"]["mean"] <= 1.0
    assert built["stats"]["table2_row1_plain"]["cd_f1"] is None
    assert 0.0 <= built["stats"]["table2_row5_neck_bilinear"]["cd_f1"]["mean"] <= 1.0
    assert 0.0 < built["floor"]["s_m"] <= 2.0 and built["floor"]["cd_f1"] is None
    assert first["claims"] == {}  # claim 1 needs rows 1-5: no verdict from two of them

    saved = json.loads((out / "table2.json").read_text())
    assert [r["row"] for r in saved["rows"]] == [*rows, "floor"] and saved["picture"] == str(out / "table2.png")
    assert (out / "table2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / "table2.md").is_file()
    assert not list(out.rglob("*.ckpt"))  # deleted once read
    results = {row: out / row / "seed0" / "result.json" for row in rows}
    for row, path in results.items():
        result = json.loads(path.read_text())
        assert result["row"] == row and result["seed"] == 0 and result["wall_s"] > 0
        assert result["timing"]["steps"] > 0 and result["timing"]["validation_s"] > 0
        assert "val/cc_s_m" in result["validation"]
    assert "caption" in json.loads(results["table2_row1_plain"].read_text())["timing"]["phases"]
    assert set(json.loads(results["table2_row5_neck_bilinear"].read_text())["timing"]["phases"]) == {
        "cd", "cc", "joint"}

    # Again: both runs are skipped, their results untouched, the same table printed.
    stamps = {row: path.stat().st_mtime_ns for row, path in results.items()}
    second = paper_claims.main(argv)
    again = capsys.readouterr().out
    assert second["status"] == {"done": 0, "skipped": 2, "failed": 0}
    assert again.count("skipped (result.json exists)") == 2
    assert {row: path.stat().st_mtime_ns for row, path in results.items()} == stamps
    assert [line for line in again.splitlines() if line.startswith("|")] == table
