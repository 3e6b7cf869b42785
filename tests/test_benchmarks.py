"""The benchmark helpers: table/JSON output, synthetic typed batches, one real task step, metrics.csv parsing,
and ``SemanticCCTask(compile_parts=...)`` keeping the state-dict keys."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _common  # noqa: E402
import augment_speed  # noqa: E402
import change_probe  # noqa: E402
import components  # noqa: E402
import consistent_decoding  # noqa: E402
import fit_tiny  # noqa: E402
import mask_errors  # noqa: E402
import mask_shapes  # noqa: E402
import neck_gates  # noqa: E402
import sweep_tiny  # noqa: E402
import train_step  # noqa: E402
from semcc.models import build_semantic_cc  # noqa: E402
from semcc.tasks.evaluator import EvalConfig  # noqa: E402
from semcc.tasks.module import SemanticCCTask  # noqa: E402


def test_report_prints_machine_and_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = [{"a": 1.23456, "b": None}, {"a": 2, "b": "x"}]
    _common.report("title", rows, {"a": "A", "b": "B"}, json_path=tmp_path / "t.json", dtype="float32",
                   notes=["note"])
    out = capsys.readouterr().out
    assert "machine:" in out and "torch" in out and "| A | B |" in out and "| 1.23456 | - |" in out
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["rows"] == rows and data["machine"]["dtype"] == "float32" and data["notes"] == ["note"]
    assert data["machine"]["cores"] >= 1


def test_peak_memory_cpu_counts_growth() -> None:
    peak = _common.PeakMemory("cpu")
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB touched
    assert block.sum() > 0
    assert "CPU" in peak.method
    if "VmHWM" in peak.method:  # a reset peak (Linux): the block's growth must show
        assert peak.peak_bytes() >= 48 * 2**20, _common.mib(peak.peak_bytes())
    else:  # a lifetime peak only shows growth above earlier peaks
        assert peak.peak_bytes() >= 0


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    from semcc.data.text import build_word_tokenizer

    out = tmp_path_factory.mktemp("tok")
    build_word_tokenizer(list(train_step.FALLBACK_CAPTIONS), out)
    return str(out)


@pytest.fixture
def one_thread():
    """Tiny steps run fastest on one thread (and do not stall when the cores are shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("phase", train_step.PHASES)
def test_synthetic_batches_train_one_step(tokenizer_dir: str, phase: str, one_thread: None) -> None:
    captions = [[c] * 5 for c in train_step.FALLBACK_CAPTIONS]
    batch = train_step.make_batch(phase, 2, 64, captions, torch.device("cpu"))
    assert batch["image_a"].shape == (2, 3, 64, 64) and batch["phase"] == phase
    assert ("mask" in batch) == (phase != "cc") and any(batch["captions"]) == (phase != "cd")
    task = train_step.build_task("mini", tokenizer_dir, 64)
    optimizer = train_step.build_optimizer(task)
    before = {n: p.detach().clone() for n, p in task.model.named_parameters()}
    loss = train_step.train_step(task, optimizer, batch, "32")
    assert loss == loss  # finite, not NaN
    changed = {n.split(".", 1)[0] for n, p in task.model.named_parameters() if not torch.equal(before[n], p)}
    from semcc.strategies import PHASES

    assert changed and changed <= set(PHASES[phase].parts)


def test_compile_parts_keeps_state_dict_keys(tokenizer_dir: str) -> None:
    model = build_semantic_cc("mini", img_size=64, tokenizer=tokenizer_dir)
    task = SemanticCCTask(model, compile_parts=["encoder", "neck"], evaluation=EvalConfig(log_samples=0))
    keys = list(task.state_dict())
    task.configure_model()
    task.configure_model()  # idempotent
    assert list(task.state_dict()) == keys
    assert task.model.encoder._compiled_call_impl is not None and task.model.cd_head._compiled_call_impl is None
    with pytest.raises(ValueError, match="no part"):
        SemanticCCTask(model, compile_parts=["decoder"], evaluation=EvalConfig(log_samples=0)).configure_model()


def test_last_validation_merges_the_last_epoch(tmp_path: Path) -> None:
    csv = tmp_path / "metrics.csv"
    csv.write_text(
        "epoch,step,train/loss,val/cd_f1,val/cc_bleu_4,val/floor_constant_bleu_4\n"
        "0,9,1.0,,,\n"
        "0,9,,0.1,,\n"
        "1,19,,0.4,,\n"
        "1,19,,,0.3,0.5\n"
    )
    val = fit_tiny.last_validation(csv)
    assert val["val/cd_f1"] == 0.4 and val["val/cc_bleu_4"] == 0.3 and val["val/floor_constant_bleu_4"] == 0.5
    assert val["epoch"] == 1 and val["step"] == 19


def test_gpu_paper_scale_runs_on_the_cpu_with_exact_fp32_generation(tmp_path: Path, one_thread: None) -> None:
    """The GPU script's code path on the mini preset: a training row with counted FLOPs, and in float32 the batched
    KV-cache captions equal to the naive loop's (``--compile`` is left to the CPU dry run in benchmarks/README.md:
    inductor's C++ build would double this test's time)."""
    import gpu_paper_scale

    out = gpu_paper_scale.main(["--preset", "mini", "--device", "cpu", "--batch-sizes", "2", "--phases", "cd",
                                "--steps", "1", "--warmup", "0", "--check-fp32", "--gen-pairs", "3",
                                "--gen-batch", "3", "--naive-pairs", "3", "--json", str(tmp_path / "g.json")])
    (row,) = out["training"]
    assert row["status"] == "ok" and row["gflop_per_sample"] > 0 and row["samples_per_s"] > 0
    fp32 = [r for r in out["generation"] if r["path"].startswith("float32")]
    assert [r["pairs"] for r in fp32] == [3, 3] and all(r["same_as_naive"] == "3/3" for r in fp32)
    assert json.loads((tmp_path / "g.json").read_text())["generation"][-1]["path"].startswith("float32: batched")


def test_time_table_sums_phase_runs_over_epochs() -> None:
    """fit_tiny's time table on hand-made PhaseTimer stamps: each phase summed over its runs (two epochs), the
    start-up from the launch to the first batch, a validation that never ended left out, the rest to the wall."""
    runs = [{"phase": "cd", "epoch": 0, "batches": 4, "start": 10.0, "end": 14.0},
            {"phase": "cc", "epoch": 0, "batches": 8, "start": 14.5, "end": 16.5},
            {"phase": "cd", "epoch": 1, "batches": 4, "start": 17.0, "end": 21.0}]
    vals = [{"epoch": 1, "start": 21.0, "end": 24.0}, {"epoch": 2, "start": 25.0, "end": float("nan")}]
    rows = fit_tiny.time_table({"runs": runs, "validations": vals}, launched=2.0, exited=30.0)
    parts = {r["part"]: r for r in rows}
    assert parts["start-up (to the first training batch)"]["seconds"] == 8.0
    assert parts["phase i (cd)"] == {"part": "phase i (cd)", "runs": 2, "batches": 8, "seconds": 8.0,
                                     "s_per_batch": 1.0}
    assert parts["phase ii (cc)"]["seconds"] == 2.0 and parts["phase ii (cc)"]["s_per_batch"] == 0.25
    assert parts["validation"]["runs"] == 1 and parts["validation"]["seconds"] == 3.0
    assert parts["the rest (between phases, checkpoints, exit)"]["seconds"] == 7.0
    assert parts["wall time"]["seconds"] == 28.0 and "phase iii (joint)" not in parts


@pytest.mark.slow
def test_phase_timer_times_every_phase_of_a_real_fit(tiny_cli_args, tmp_path: Path) -> None:
    """fit_tiny's time table from a real `semcc fit` (64 px, one short epoch) with its PhaseTimer: one run of each
    phase of Sec. III-F, together the optimiser steps of the fit's checkpoint, a validation, and parts that add
    up to the wall time. Slow (a fit of its own: about 40 s)."""
    from semcc.main import main

    run = tmp_path / "run"
    timer = json.dumps({"class_path": "_phase_timer.PhaseTimer", "init_args": {"path": str(run / "t.json")}})
    launched = time.time()
    assert main(["fit", *tiny_cli_args(run), f"--trainer.callbacks+={timer}"]) == 0
    exited = time.time()
    times = json.loads((run / "t.json").read_text())
    assert [r["phase"] for r in times["runs"]] == ["cd", "cc", "joint"]
    steps = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    assert all(r["batches"] > 0 for r in times["runs"]) and sum(r["batches"] for r in times["runs"]) == steps
    rows = fit_tiny.time_table(times, launched, exited)
    parts = {r["part"]: r for r in rows}
    assert [parts[fit_tiny.PHASE_NAMES[p]]["batches"] for p in ("cd", "cc", "joint")] == [
        r["batches"] for r in times["runs"]]
    assert parts["validation"]["runs"] == 1 and parts["validation"]["seconds"] > 0
    assert all(r["seconds"] >= 0 for r in rows)
    assert sum(r["seconds"] for r in rows[:-1]) == pytest.approx(parts["wall time"]["seconds"], abs=0.5)


def test_augment_speed_times_both_blas_settings_on_the_same_images(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    rows = augment_speed.main(["--pairs", "3", "--size", "64", "--repeats", "1", "--json", str(tmp_path / "a.json")])
    assert [row["blas"] for row in rows] == ["1 (semcc 0.5.1)", "numpy's default (semcc 0.5.0)"]
    assert all(row["ms"] > 0 and row["same"] == "yes" for row in rows)
    assert "| BLAS threads in the colour map |" in capsys.readouterr().out
    assert json.loads((tmp_path / "a.json").read_text())["rows"] == rows


def test_components_times_both_cd_heads_with_the_same_logits(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The CD head part times 0.14's and 0.15's LayerNorms and resizes on the same weights and inputs: their logits
    agree to float rounding, and the real ``resize_bilinear`` is back in place afterwards."""
    from semcc.models import cd_head

    resize = cd_head.resize_bilinear
    rows = components.main(["--parts", "cd_head", "--batch-size", "1", "--repeats", "1", "--json",
                            str(tmp_path / "c.json")])
    assert [r["variant"] for r in rows] == ["SAM LayerNorm2d + F.interpolate (0.14)",
                                           "ChannelLayerNorm + resize_bilinear (0.15)"]
    assert all(r["seconds"] > 0 for r in rows) and float(rows[0]["max abs diff"]) < 1e-4
    assert cd_head.resize_bilinear is resize
    assert "| CD head fwd+bwd |" in capsys.readouterr().out


def test_neck_gates_reads_eq5_gates_per_unit_and_direction(tmp_path: Path, tiny_checkpoint: Path, synth_root: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(0)
    model = build_semantic_cc("tiny", img_size=64, cc_head=False).eval()
    images = [(torch.randn(3, 64, 64), torch.randn(3, 64, 64)) for _ in range(3)]
    unit = model.neck.units[0]
    with torch.no_grad():
        unit.inter_cc.weight.zero_()  # S = 0 everywhere: every gate half open
        unit.inter_cd.weight.mul_(1e4)  # |S| huge: every gate shut or fully open
    rows = {r["gate"]: r for r in neck_gates.gate_rows(model, images, "hand-made", batch_size=2)}
    assert (rows["CD -> CC"]["s_p01"], rows["CD -> CC"]["s_p99"]) == (0, 0)
    assert rows["CD -> CC"]["shut"] == rows["CD -> CC"]["open"] == 0
    assert rows["CC -> CD"]["shut"] + rows["CC -> CD"]["open"] > 0.99
    assert rows["CC -> CD"]["s_p01"] < 0 < rows["CC -> CD"]["s_p99"]

    out = neck_gates.main(["--random", "--ckpt", str(tiny_checkpoint), "--root", str(synth_root / "LEVIR-CC"),
                           "--pairs", "4", "--json", str(tmp_path / "g.json")])
    assert [(r["model"], r["gate"]) for r in out] == [
        ("random init", "CD -> CC"), ("random init", "CC -> CD"), ("last.ckpt", "CD -> CC"), ("last.ckpt", "CC -> CD")]
    assert all(r["s_p01"] <= r["s_p50"] <= r["s_p99"] and 0 <= r["shut"] + r["open"] <= 1 for r in out)
    assert all(r["shut"] == r["open"] == 0 for r in out[:2])  # at init no gate is saturated
    assert "| model | unit | gate |" in capsys.readouterr().out
    assert json.loads((tmp_path / "g.json").read_text())["rows"] == out


def test_change_probe_fits_on_train_pairs_and_reads_the_caption_branch(tmp_path: Path, tiny_checkpoint: Path,
                                                                       synth_root: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    g = torch.Generator().manual_seed(0)
    y_train, y_test = torch.arange(40) % 2 == 0, torch.arange(20) % 4 == 0
    informative = lambda y: y.float()[:, None] + 0.1 * torch.randn(len(y), 1, generator=g)  # noqa: E731
    assert change_probe.probe(informative(y_train), y_train, informative(y_test), y_test) == (1.0, 1.0)
    flat_train, flat_test = torch.ones(40, 1), torch.ones(20, 1)  # no information: the bias only
    right_train, right_test = change_probe.probe(flat_train, y_train, flat_test, y_test)
    assert right_train == 0.5 and right_test in (0.25, 0.75)  # one class for every pair

    out = change_probe.main(["--ckpt", str(tiny_checkpoint), "--root", str(synth_root / "LEVIR-CC"),
                             "--train-pairs", "12", "--json", str(tmp_path / "p.json")])
    assert [r["feature"] for r in out] == ["difference (max)", "enhancer (mean)", "queries (mean)", "greedy caption"]
    assert [r["dims"] for r in out] == [1, 64, 64, "-"]
    assert all(0 <= r["train"] <= 1 and 0 <= r["split"] <= 1 for r in out)
    assert "| model | feature | dims |" in capsys.readouterr().out
    assert json.loads((tmp_path / "p.json").read_text())["rows"] == out
    with pytest.raises(SystemExit):
        change_probe.main(["--ckpt", str(tiny_checkpoint), "--root", str(tmp_path), "--json", ""])


def test_consistent_decoding_prints_one_row_per_decoding(tmp_path: Path, tiny_checkpoint: Path, synth_root: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    """benchmarks/consistent_decoding.py: greedy, the checkpoint's consistent decoding, and one more row each for
    --no-mask-prefixes, --no-road-shapes and --no-first-clauses (the rows not set otherwise keep the run's settings,
    tiny's: guided, road shapes apart, first clauses in), scored by the real caption metrics and the semantic
    scores."""
    root = str(synth_root / "LEVIR-CC")
    rows = consistent_decoding.main(["--ckpt", str(tiny_checkpoint), "--root", root, "--split", "test",
                                     "--no-mask-prefixes", "--no-road-shapes", "--no-first-clauses",
                                     "--json", str(tmp_path / "c.json")])
    assert [r["decoding"] for r in rows] == [
        "greedy", "consistent (mask-guided) (road shapes apart) (first clauses)",
        "consistent, mask-guided candidates off (road shapes apart) (first clauses)",
        "consistent, mask-guided candidates off, road shapes counted (first clauses)",
        "consistent (mask-guided) (road shapes apart), first clauses out"]
    for row in rows:
        assert 0.0 <= row["change_accuracy"] <= 1.0 and 0.0 <= row["consistent_share"] <= 1.0
        assert 0.0 <= row["bleu_4"] <= 1.0 and row["seconds"] > 0
    out = capsys.readouterr().out
    assert "| decoding | right about change |" in out
    written = json.loads((tmp_path / "c.json").read_text())["rows"]
    assert [r["decoding"] for r in written] == [r["decoding"] for r in rows]
    assert [r["bleu_4"] for r in written] == [r["bleu_4"] for r in rows]
    with pytest.raises(SystemExit):
        consistent_decoding.main(["--ckpt", str(tiny_checkpoint), "--root", str(tmp_path)])


def test_mask_shapes_measures_components_by_kind_of_pair(tmp_path: Path, tiny_checkpoint: Path, synth_root: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    """benchmarks/mask_shapes.py: a hand-made mask's components (a house, a straight road, a speck) measured as
    ``road_shaped`` reads them; on the session's checkpoint one row per kind of pair, whose pairs add up to the
    split's."""
    import numpy as np

    mask = np.zeros((100, 100), np.uint8)
    mask[10:20, 10:18] = 1  # an L-shaped house: fills 3/4 of its box, 1.25 times as long as wide
    mask[10:15, 14:18] = 0
    mask[50:54, 0:100] = 1  # a road across the image
    mask[90, 90] = 1  # a speck: left out
    shapes = mask_shapes.mask_shapes(mask)
    assert [c["pixels"] for c in shapes] == [60, 400]
    assert [c["road_shaped"] for c in shapes] == [False, True]
    assert shapes[0]["fill"] == 0.75 and shapes[0]["aspect"] == 1.25 and shapes[1]["length"] == 1.0
    assert mask_shapes.mask_shapes(np.zeros((8, 8), np.uint8)) == []
    row = mask_shapes.summarize("k", [shapes, []])
    assert (row["pairs"], row["components"], row["road_shaped"], row["pairs_road_shaped"]) == (2, 2, 1, 1)
    assert row["fill"] == "0.75 / 0.88 / 1.00" and row["aspect"] == 25.0

    rows = mask_shapes.main(["--ckpt", str(tiny_checkpoint), "--root", str(synth_root / "LEVIR-CC"), "--split", "test",
                             "--json", str(tmp_path / "m.json")])
    assert [r["kind"] for r in rows] == list(mask_shapes.KINDS)
    assert sum(r["pairs"] for r in rows) == 6  # the session's SynthLEVIR test split
    assert all(0 <= r["pairs_road_shaped"] <= r["pairs"] and r["road_shaped"] <= r["components"] for r in rows)
    assert "| kind of pair | pairs |" in capsys.readouterr().out
    assert json.loads((tmp_path / "m.json").read_text())["rows"] == rows


def test_mask_errors_counts_outlines_and_objects(tmp_path: Path, tiny_checkpoint: Path, synth_root: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    """benchmarks/mask_errors.py: a hand-made mask (one house found one row too low, one missed, a false speck far
    from both) counted pixel by pixel and object by object; the truth on a grid coarser than a house loses it; on the
    session's checkpoint one row per checkpoint and per grid, written as JSON."""
    import numpy as np

    truth = np.zeros((20, 20), np.uint8)
    truth[2:8, 2:8] = 1  # house A, 36 px
    truth[12:16, 12:16] = 1  # house B, 16 px
    pred = np.zeros_like(truth)
    pred[3:9, 2:8] = 1  # A one row too low: 30 px right, 6 false at its outline
    pred[0:2, 16:18] = 1  # a false speck, far from both
    c = mask_errors.mask_errors(pred, truth, rim=1)
    assert (c["tp"], c["pred"], c["true"]) == (30, 40, 52)
    assert (c["inside"], c["inside_found"], c["rim"], c["rim_found"]) == (20, 16, 32, 14)
    assert (c["objects"], c["missed_objects"], c["missed_pixels"]) == (2, 1, 16)
    assert (c["false_objects"], c["false"], c["false_near"]) == (1, 10, 6)
    row = mask_errors.summarize("m", [c, mask_errors.mask_errors(truth, truth, rim=1)])
    assert row["f1"] == round(2 * 82 / (92 + 104), 4) and row["missed_objects"] == "1 / 4" and row["recall"] == 0.788
    with pytest.raises(ValueError, match="differ in size"):
        mask_errors.mask_errors(pred[:10], truth)

    house = np.zeros((64, 64), bool)
    house[18:22, 18:22] = True  # 4 px: a sixteenth of its 16-px cell
    house[24:56, 32:64] = True  # 32 px: kept, all but the outline
    assert np.array_equal(mask_errors.grid_truth(house, 1), house)
    coarse = mask_errors.grid_truth(house, 16)
    assert not coarse[18:22, 18:22].any() and coarse[28:52, 36:60].all()

    rows = mask_errors.main(["--ckpt", str(tiny_checkpoint), "--root", str(synth_root / "LEVIR-CC"), "--split", "test",
                             "--grids", "16", "4", "--json", str(tmp_path / "e.json")])
    assert [r["mask"] for r in rows] == [str(tiny_checkpoint), "the truth on a 16-px grid", "the truth on a 4-px grid"]
    assert all(r["f1"] is None or 0 <= r["f1"] <= 1 for r in rows) and rows[2]["missed_objects"].endswith(
        rows[0]["missed_objects"].split(" / ")[1])  # the same true objects in every row
    assert "| mask | F1 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "e.json").read_text())["rows"] == rows
    with pytest.raises(SystemExit):
        mask_errors.main(["--ckpt", str(tiny_checkpoint), "--root", str(synth_root / "LEVIR-CC"), "--rim", "-1"])


def test_sweep_variants_parse_from_items_and_yaml_and_name_each_mistake(tmp_path: Path) -> None:
    path = tmp_path / "v.yaml"
    path.write_text("base: ''\nlr: --model.optim.lr 2e-3\nnone:\n")
    got = sweep_tiny.parse_variants(["pos=--data.cd.positive_fraction 0.75 --x '{a: 1}'"], path)
    assert got == {"base": [], "lr": ["--model.optim.lr", "2e-3"], "none": [],
                   "pos": ["--data.cd.positive_fraction", "0.75", "--x", "{a: 1}"]}
    other = tmp_path / "w.yaml"
    for items, file_text, message in [
        (["lr=--a 1"], path.read_text(), "variant 'lr' given twice"),
        (["no-equals"], None, "expected NAME=OVERRIDES"),
        (["a b=--x"], None, "use letters, digits"),
        ([], "[1, 2]", "expected a mapping"),
        ([], "x: [1]", "overrides must be one string"),
        ([], "x: [", "cannot read it as YAML"),
        ([], None, "no variants"),
    ]:
        if file_text is not None:
            other.write_text(file_text)
        with pytest.raises(SystemExit, match=message):
            sweep_tiny.parse_variants(items, other if file_text is not None else None)


def _sweep_extra(tiny_cli_args, run: Path) -> str:
    """tiny_cli_args without what sweep_tiny's fit sets itself (config, log folders)."""
    args, out = tiny_cli_args(run), []
    skip = ("--trainer.default_root_dir", "--trainer.logger", "--trainer.callbacks.init_args.dirpath")
    for i, arg in enumerate(args):
        if arg == "--config" or (i and args[i - 1] == "--config") or arg.startswith(skip):
            continue
        out.append(arg)
    return shlex.join(out)


def test_sweep_reports_a_failed_variant_with_its_log(tiny_cli_args, tmp_path: Path) -> None:
    """A variant with a wrong config key: its row says failed, its log names the key; tables are written."""
    out = tmp_path / "sweep"
    results = sweep_tiny.main(["--variant", "bad=--model.optim.no_such_key 1", "--extra", _sweep_extra(
        tiny_cli_args, tmp_path / "r"), "--out", str(out), "--threads", "1"])
    assert [r["status"] for r in results] == ["failed"]
    assert "no_such_key" in Path(results[0]["log"]).read_text()
    table = (out / "sweep.md").read_text()
    assert "| bad | 0 | failed |" in table
    assert json.loads((out / "sweep.json").read_text())["results"][0]["status"] == "failed"
    assert not (out / "bad_s0" / "result.json").exists()  # a failed run is run again by the next call


@pytest.mark.slow
def test_sweep_runs_real_fits_and_skips_finished_ones(tiny_cli_args, tmp_path: Path) -> None:
    """Two variants, two at a time, of a real 64-px fit: each run's last validation in the tables, the variant's
    override in its config, checkpoints kept only when asked, a second call skips finished runs. Slow (two fits)."""
    out = tmp_path / "sweep"
    argv = ["--variant", "base=", "--variant", "lr=--model.optim.lr 5e-3", "--extra",
            _sweep_extra(tiny_cli_args, tmp_path / "r"), "--out", str(out), "--jobs", "2", "--keep-ckpt"]
    first = sweep_tiny.main(argv)
    assert [(r["variant"], r["status"]) for r in first] == [("base", "done"), ("lr", "done")]
    assert all("val/cd_f1" in r["validation"] and r["phase_i_s_per_batch"] > 0 for r in first)
    config = next((out / "lr_s0").rglob("config.yaml")).read_text()
    assert "lr: 0.005" in config
    assert list((out / "lr_s0").rglob("*.ckpt"))
    means = (out / "sweep.md").read_text().split("| variant | seeds |")[1]
    assert "| base | 0 |" in means and "| lr | 0 |" in means
    again = sweep_tiny.main(argv)
    assert [r["status"] for r in again] == ["skipped", "skipped"]
    assert json.dumps([r["validation"] for r in again]) == json.dumps([r["validation"] for r in first])  # nan too
