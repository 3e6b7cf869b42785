"""benchmarks/robustness.py (issue 13 part 3, beyond the paper): a checkpoint on SynthLEVIR test sets of several
nuisance strengths, one table row per strength; run small on the session's 64 px tiny checkpoint."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import robustness  # noqa: E402


def test_robustness_table_has_one_row_per_strength(tiny_checkpoint: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    argv = ["--ckpt", str(tiny_checkpoint), "--pairs", "4", "--seeds", "101", "--nuisance", "0", "0.5",
            "--size", "64", "--workers", "1", "--batch-size", "4", "--work", str(tmp_path / "work"),
            "--json", str(tmp_path / "r.json")]
    rows = robustness.main(argv)
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 2  # header, separator, one row per strength
    assert table[0].count("|") == len(robustness.COLUMNS) + 2
    assert table[2].startswith("| 0 |") and table[3].startswith("| 0.5 (training) |")  # the tiny fit's 0.5
    assert [r["nuisance"] for r in rows] == ["0", "0.5 (training)"]
    data = json.loads((tmp_path / "r.json").read_text())
    assert len(data["rows"]) == 2 and len(data["per_seed"]) == 2 and data["table"] in out
    assert data["match_radiometry"] is True and "radiometry matched" in data["title"]  # the tiny fit's setting
    assert data["invariant_share"] == 0.8 and "on 0.8 of the pixels" in data["title"]  # the encoder's default
    for item in data["per_seed"]:
        assert item["pairs"] == 4 and item["seed"] == 101
        for key in robustness.COLUMNS:
            value = item[key]
            assert value is None or math.isnan(value) or 0.0 <= value <= (10.0 if key == "changed_cider" else 1.0)
        assert 0.0 <= item["cd_f1"] <= 1.0 and 0.0 <= item["change_right"] <= 1.0
    # The test sets are generated once and reused.
    sets = sorted(p.name for p in (tmp_path / "work").iterdir())
    assert sets == ["seed101-nuisance0-pairs4-size64", "seed101-nuisance0.5-pairs4-size64"]
    stamp = (tmp_path / "work" / sets[0] / "synthlevir.json").stat().st_mtime_ns
    assert data["mask_prefixes"] is True and "mask-guided candidates" in data["title"]  # the tiny fit's setting
    assert data["road_shapes"] is True and "road shapes apart" in data["title"]
    robustness.main([*argv[:-2], "--nuisance", "0", "--no-match-radiometry", "--no-mask-prefixes", "--no-road-shapes",
                     "--json", str(tmp_path / "again.json")])
    assert (tmp_path / "work" / sets[0] / "synthlevir.json").stat().st_mtime_ns == stamp
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["match_radiometry"] is False and "radiometry" not in again["title"]
    assert again["mask_prefixes"] is False and "mask-guided" not in again["title"]
    assert again["road_shapes"] is False and "road shapes" not in again["title"]
    with pytest.raises(SystemExit):
        robustness.main([*argv, "--nuisance", "2.5"])
    with pytest.raises(SystemExit):
        robustness.main([*argv, "--invariant-share", "0"])
