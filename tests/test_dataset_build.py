"""``semcc dataset`` / :mod:`semcc.data.build`: a user's folder of pairs and captions as a LEVIR-CC data set.

Builds from CSV and JSON Lines (several captions per pair, splits given or by a seeded ratio), loads the result
with the LEVIR readers, checks every error case (each names its file, all are reported together, nothing is
written) and trains the tiny model for a few steps with the command the summary prints.
"""

from __future__ import annotations

import csv
import json
import shlex
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from semcc.data.build import (
    CAPTIONS_FILE,
    DatasetBuildError,
    assign_splits,
    build_dataset,
    plan_dataset,
    read_captions,
)
from semcc.data.levir import LevirCCDataset, LevirMCIDataset
from semcc.data.text import NO_CHANGE_SENTENCES, normalize_caption
from semcc.main import main

SIZE = 16
CHANGED = ("A house is built at the top!", "Some buildings appear in the upper part.", "a new house, top")


def _image(path: Path, size: tuple[int, int] = (SIZE, SIZE), seed: int = 0, fmt: str = "PNG") -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, format=fmt)


def _mask(path: Path, changed: bool, size: tuple[int, int] = (SIZE, SIZE), value: int = 255) -> None:
    arr = np.zeros((size[1], size[0]), dtype=np.uint8)
    if changed:
        arr[: size[1] // 2, : size[0] // 2] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode="L").save(path)


def _folder(root: Path, n: int = 6, *, labels: bool = True, fmt: str = "png") -> dict[str, list[str]]:
    """``n`` pairs ``p{i}.{fmt}`` under ``root/{A,B[,label]}``: even ones changed (three captions), odd ones not
    (the five no-change sentences). Returns the captions by file name."""
    captions = {}
    for i in range(n):
        name = f"p{i}.{fmt}"
        pil_format = {"png": "PNG", "jpg": "JPEG"}[fmt]
        _image(root / "A" / name, seed=2 * i, fmt=pil_format)
        _image(root / "B" / name, seed=2 * i + 1, fmt=pil_format)
        changed = i % 2 == 0
        if labels:
            _mask(root / "label" / f"p{i}.png", changed)
        captions[name] = list(CHANGED) if changed else [s.capitalize() + " ." for s in NO_CHANGE_SENTENCES]
    return captions


def _csv(path: Path, rows: list[dict[str, str]], header: tuple[str, ...] = ("name", "caption")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _rows(captions: dict[str, list[str]], split: Callable[[str], str] | None = None) -> list[dict[str, str]]:
    return [{"name": n, "caption": c, **({"split": split(n)} if split else {})} for n, cs in captions.items()
            for c in cs]


@pytest.fixture
def user_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A valid folder of 6 pairs with labels and its CSV (one row per caption)."""
    pairs = tmp_path / "pairs"
    return pairs, _csv(tmp_path / "captions.csv", _rows(_folder(pairs)))


# ---------------------------------------------------------------------------------------------- builds
def test_build_from_csv_loads_with_the_levir_readers(tmp_path: Path) -> None:
    pairs, out = tmp_path / "pairs", tmp_path / "out"
    captions = _folder(pairs, n=10)
    rows = _rows(captions)
    rows.append({"name": "p0.png", "caption": "A HOUSE is built at the top"})  # = the first caption, normalised
    summary = build_dataset(pairs, _csv(tmp_path / "c.csv", rows), out)

    assert summary.pairs == {"train": 8, "val": 1, "test": 1}
    assert sum(summary.changed.values()) == 5
    assert summary.labels and summary.sizes == {(SIZE, SIZE): 10}
    assert any("1 duplicate caption removed" in w and "p0.png" in w for w in summary.warnings)
    data = json.loads((out / CAPTIONS_FILE).read_text())["images"]
    assert [e["imgid"] for e in data] == list(range(10))
    sentids = [s["sentid"] for e in data for s in e["sentences"]]
    assert sentids == list(range(len(sentids)))
    p0 = next(e for e in data if e["filename"] == "p0.png")
    assert [s["tokens"] for s in p0["sentences"]] == [normalize_caption(c).split() for c in CHANGED]
    assert p0["sentences"][0]["raw"] == "a house is built at the top ."
    assert p0["filepath"] == p0["split"]
    for split, n in summary.pairs.items():
        cc = LevirCCDataset(out, split)
        mci = LevirMCIDataset(out, split, mask_mode="change")
        assert len(cc) == len(mci) == n
        for i in range(n):
            sample, masked = cc[i], mci[i]
            assert sample["image_a"].shape == (3, SIZE, SIZE)
            assert sample["captions"] == [normalize_caption(c) for c in captions[sample["name"]]]
            assert bool(masked["mask"].any()) == sample["changed"] == (sample["name"] in ("p0.png", "p2.png",
                                                                                          "p4.png", "p6.png",
                                                                                          "p8.png"))
            assert (out / "images" / split / "A" / sample["name"]).read_bytes() == (
                pairs / "A" / sample["name"]).read_bytes()  # PNGs are copied as they are
    assert summary.fit_args is not None
    assert "--data.cd_root" in summary.fit_args and "--data.joint_root" in summary.fit_args
    assert summary.fit_args[summary.fit_args.index("--model.binary_mask_class") + 1] == "change"
    assert summary.fit_args[summary.fit_args.index("--model.model.init_args.encoder.init_args.img_size") + 1] == "16"
    assert not list(out.rglob(".*.tmp"))


def test_build_from_jsonl_with_splits_given(tmp_path: Path) -> None:
    pairs, out = tmp_path / "pairs", tmp_path / "out"
    captions = _folder(pairs, n=6, labels=False, fmt="jpg")
    splits = {"p0.jpg": "train", "p1.jpg": "train", "p2.jpg": "val", "p3.jpg": "val", "p4.jpg": "test",
              "p5.jpg": "Test"}
    lines = []
    for name, caps in captions.items():
        stem = name.removesuffix(".jpg")  # by stem: unique in A/
        lines.append({"name": stem, "captions": caps[:-1], "split": splits[name]})
        lines.append({"name": name, "caption": caps[-1]})  # one more on its own line
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    summary = build_dataset(pairs, path, out)

    assert summary.pairs == {"train": 2, "val": 2, "test": 2} and summary.split_from == "the captions file"
    assert not summary.labels and summary.warnings == []
    assert summary.fit_args is not None and "caption_only" in summary.fit_args
    assert "--data.joint_root" not in summary.fit_args and "--data.cd_root" not in summary.fit_args
    assert not (out / "images" / "train" / "label").exists()
    for split in ("train", "val", "test"):
        ds = LevirCCDataset(out, split)
        assert sorted(ds.names) == sorted(n.replace(".jpg", ".png") for n, s in splits.items() if s.lower() == split)
        for i in range(len(ds)):
            name = ds.names[i]
            assert len(ds.captions(i)) == len(captions[name.replace(".png", ".jpg")])
            written = np.array(Image.open(out / "images" / split / "B" / name))
            assert np.array_equal(written, np.array(Image.open(pairs / "B" / name.replace(".png", ".jpg"))))


def test_ratio_split_is_deterministic_and_stratified(tmp_path: Path) -> None:
    changed = {f"x{i:03d}.png": i % 5 < 2 for i in range(100)}  # 40 changed
    first = assign_splits(changed, (0.8, 0.1, 0.1), seed=0)
    assert first == assign_splits(dict(reversed(changed.items())), (0.8, 0.1, 0.1), seed=0)
    assert first != assign_splits(changed, (0.8, 0.1, 0.1), seed=1)
    for split, n in (("train", 80), ("val", 10), ("test", 10)):
        names = [k for k, s in first.items() if s == split]
        assert len(names) == n
        assert abs(sum(changed[k] for k in names) - 0.4 * n) <= 1, split
    assert sorted(assign_splits(dict(list(changed.items())[:3]), (0.8, 0.1, 0.1)).values()) == ["test", "train",
                                                                                                  "val"]
    # the same build twice: the same bytes; another seed: another split
    pairs = tmp_path / "pairs"
    path = _csv(tmp_path / "c.csv", _rows(_folder(pairs, n=20)))
    build_dataset(pairs, path, tmp_path / "a", seed=7)
    build_dataset(pairs, path, tmp_path / "b", seed=7)
    other = build_dataset(pairs, path, tmp_path / "c", seed=8)
    assert (tmp_path / "a" / CAPTIONS_FILE).read_bytes() == (tmp_path / "b" / CAPTIONS_FILE).read_bytes()
    assert (tmp_path / "a" / CAPTIONS_FILE).read_bytes() != (tmp_path / "c" / CAPTIONS_FILE).read_bytes()
    assert other.pairs == {"train": 16, "val": 2, "test": 2}
    assert {s: other.changed[s] for s in other.changed} == {"train": 8, "val": 1, "test": 1}


def test_csv_split_column_with_some_pairs_left_to_the_ratio(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs"
    captions = _folder(pairs, n=12)
    rows = _rows(captions, split=lambda n: "test" if n in ("p0.png", "p1.png") else "")
    summary = build_dataset(pairs, _csv(tmp_path / "c.csv", rows, ("name", "caption", "split")), tmp_path / "out")
    assert summary.pairs["test"] >= 2 and sum(summary.pairs.values()) == 12
    assert {"p0.png", "p1.png"} <= set(LevirCCDataset(tmp_path / "out", "test").names)
    assert "10" in summary.split_from and "ratio" in summary.split_from


def test_no_val_split_prints_why_it_cannot_train(user_folder, tmp_path: Path) -> None:
    summary = build_dataset(*user_folder, tmp_path / "out", split_ratio="1,0,0")
    assert summary.pairs == {"train": 6, "val": 0, "test": 0}
    assert summary.fit_args is None and summary.fit_command is None
    assert "needs train and val pairs" in summary.report()
    assert len(LevirCCDataset(tmp_path / "out", "train")) == 6


def test_link_resize_and_overwrite(user_folder: tuple[Path, Path], tmp_path: Path) -> None:
    pairs, path = user_folder
    out = tmp_path / "out"
    build_dataset(pairs, path, out, link=True)
    written = sorted((out / "images").rglob("A/*.png"))
    assert written and all(p.is_symlink() and p.resolve() == (pairs / "A" / p.name).resolve() for p in written)
    assert not any(p.is_symlink() for p in (out / "images").rglob("label/*.png"))  # labels are always written
    with pytest.raises(DatasetBuildError, match="not empty"):
        build_dataset(pairs, path, out)
    summary = build_dataset(pairs, path, out, size=8, overwrite=True, link=True)
    assert summary.sizes == {(8, 8): 6}
    written_last = (out / CAPTIONS_FILE).stat().st_mtime_ns  # the captions JSON comes last
    assert all(p.lstat().st_mtime_ns <= written_last for p in (out / "images").rglob("*.png"))
    assert not list(out.rglob(".*.tmp"))
    for p in (out / "images").rglob("*.png"):
        assert not p.is_symlink() and Image.open(p).size == (8, 8)
    for p in (out / "images").rglob("label/*.png"):
        assert set(np.unique(np.array(Image.open(p))).tolist()) <= {0, 255}
    ds = LevirMCIDataset(out, "train", mask_mode="classes")
    assert ds[0]["mask"].shape == (8, 8)
    assert summary.fit_args is None and "multiple of 16" in summary.fit_note  # 8 px cannot train tiny
    assert "rebuild with --size 256" in summary.report()


def test_uncaptioned_pairs_are_refused_or_left_out_with_a_warning(user_folder, tmp_path: Path) -> None:
    pairs, path = user_folder
    for sub in ("A", "B"):
        _image(pairs / sub / "extra.png")
    _mask(pairs / "label" / "extra.png", False)
    with pytest.raises(DatasetBuildError) as err:
        build_dataset(pairs, path, tmp_path / "out")
    assert err.value.problems == [f"{pairs / 'A' / 'extra.png'}: no captions in {path} (caption it, or pass "
                                  "--allow-uncaptioned to leave uncaptioned pairs out)"]
    assert not (tmp_path / "out").exists()
    summary = build_dataset(pairs, path, tmp_path / "out", allow_uncaptioned=True)
    assert sum(summary.pairs.values()) == 6
    assert any("1 pair without captions" in w and "extra.png" in w for w in summary.warnings)
    assert any("1 label of no captioned pair" in w for w in summary.warnings)
    assert "warning: " in summary.report()


# ---------------------------------------------------------------------------------------------- errors
def _rewrite_csv(path: Path, edit: Callable[[list[dict[str, str]]], list[dict[str, str]]],
                 header: tuple[str, ...] = ("name", "caption", "split")) -> None:
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    _csv(path, edit(rows), header)


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")


ERRORS: dict[str, tuple[Callable[[Path, Path], None], list[str]]] = {
    "missing A": (lambda p, c: (p / "A" / "p0.png").unlink(), ["A/p0.png: image file is missing", "line 2"]),
    "missing B": (lambda p, c: (p / "B" / "p1.png").unlink(), ["B/p1.png: image file is missing"]),
    "missing label": (lambda p, c: (p / "label" / "p2.png").unlink(),
                      ["label/p2.png: label file is missing", "every pair needs its mask"]),
    "uncaptioned": (lambda p, c: [_image(p / s / "zz.png") for s in ("A", "B")], ["A/zz.png: no captions in"]),
    "A/B size": (lambda p, c: _image(p / "B" / "p3.png", size=(20, SIZE)),
                 ["B/p3.png: size 20x16 does not match", "A/p3.png (16x16)"]),
    "label size": (lambda p, c: _mask(p / "label" / "p4.png", True, size=(SIZE, 12)),
                   ["label/p4.png: size 16x12 does not match"]),
    "corrupt image": (lambda p, c: _garbage(p / "A" / "p5.png"), ["A/p5.png: cannot decode image"]),
    "corrupt label": (lambda p, c: _garbage(p / "label" / "p5.png"), ["label/p5.png: cannot decode label"]),
    "label values": (lambda p, c: _mask(p / "label" / "p0.png", True, value=7),
                     ["label/p0.png: label values 7 are not change-mask values"]),
    "empty caption": (lambda p, c: _rewrite_csv(c, lambda r: [*r, {"name": "p1.png", "caption": " ?! "}]),
                      ["c.csv line 26: empty caption for 'p1.png'"]),
    "two splits": (lambda p, c: _rewrite_csv(c, lambda r: [{**x, "split": "train" if i else "val"}
                                                           for i, x in enumerate(r)]),
                   ["c.csv line 3: 'p0.png' is in split 'train' here but in 'val' at", "c.csv line 2"]),
    "unknown split": (lambda p, c: _rewrite_csv(c, lambda r: [{**x, "split": "dev" if i == 4 else ""}
                                                              for i, x in enumerate(r)]),
                      ["c.csv line 6: unknown split 'dev' (train, val or test)"]),
    "CSV columns": (lambda p, c: c.write_text("file,text\np0.png,a house\n"),
                    ["c.csv: the CSV header has no 'name' or 'caption' column (columns: 'file', 'text'"]),
    "CSV caption column": (lambda p, c: c.write_text("Name,Captions\np0.png,a house\n"),
                           ["c.csv: the CSV header has no 'caption' column"]),
    "ambiguous stem": (lambda p, c: [_image(p / s / "p0.jpg", fmt="JPEG") for s in ("A", "B")]
                       and _rewrite_csv(c, lambda r: [*r, {"name": "p0", "caption": "x"}]),
                       ["c.csv line 26: name 'p0' matches p0.jpg, p0.png in"]),
    "path name": (lambda p, c: _rewrite_csv(c, lambda r: [*r, {"name": "A/p0.png", "caption": "x"}]),
                  ["c.csv line 26: name 'A/p0.png' is a path"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_each_error_names_its_file_and_nothing_is_written(case: str, user_folder, tmp_path: Path) -> None:
    pairs, path = user_folder
    path = path.rename(tmp_path / "c.csv")
    mutate, expected = ERRORS[case]
    mutate(pairs, path)
    out = tmp_path / "out"
    with pytest.raises(DatasetBuildError) as err:
        build_dataset(pairs, path, out)
    text = "\n".join(err.value.problems)
    for part in expected:
        assert part in text, (case, text)
    assert len(err.value.problems) == 1, text
    assert str(err.value).startswith(err.value.problems[0])
    assert not out.exists()
    with pytest.raises(DatasetBuildError):
        plan_dataset(pairs, path)


def test_jsonl_errors_have_line_numbers(user_folder, tmp_path: Path) -> None:
    pairs, _ = user_folder
    path = tmp_path / "c.jsonl"
    lines = [json.dumps({"name": f"p{i}.png", "captions": ["a house is built"]}) for i in range(6)]
    lines[1] = '{"name": "p1.png", "captions": ["a house" '  # malformed
    lines[2] = json.dumps({"name": "p2.png", "captions": []})
    lines[3] = json.dumps({"name": "p3.png", "caption": 3})
    lines[4] = json.dumps(["p4.png", "a house"])
    lines.append(json.dumps({"name": "p5.png"}))
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetBuildError) as err:
        build_dataset(pairs, path, tmp_path / "out")
    problems = err.value.problems
    assert problems[0].startswith(f"{path} line 2: malformed JSON at column")
    assert f"{path} line 3: 'captions' is an empty list" in problems
    assert f"{path} line 4: 'caption' must be text, got int" in problems
    assert any(p.startswith(f"{path} line 5: expected an object") for p in problems)
    assert f"{path} line 7: no 'caption' (text) or 'captions' (a list of texts)" in problems
    assert len(problems) == 5  # p1 and p4 are not reported as uncaptioned too: their lines could not be read
    lines_read, found = read_captions(path)
    assert found == problems and {x.name for x in lines_read} == {"p0.png", "p2.png", "p3.png", "p5.png"}


def test_the_command_reports_every_problem_and_writes_nothing(user_folder, tmp_path: Path, capsys) -> None:
    pairs, path = user_folder
    (pairs / "A" / "p0.png").unlink()
    _image(pairs / "B" / "p3.png", size=(20, SIZE))
    _garbage(pairs / "A" / "p5.png")
    _mask(pairs / "label" / "p4.png", True, value=3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["dataset", "--pairs", str(pairs), "--captions", str(path), "--out", str(out),
                 "--split-ratio", "0.8,0.1,-1"]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err and captured.out == ""
    assert all(line.startswith("semcc dataset: ") for line in err), err
    for part in ("--split-ratio '0.8,0.1,-1': expected three non-negative numbers", "A/p0.png: image file is missing",
                 "B/p3.png: size 20x16", "A/p5.png: cannot decode image", "label/p4.png: label values 3",
                 f"{out}: folder is not empty (pass --overwrite"):
        assert sum(part in line for line in err) == 1, (part, err)
    assert err[-1] == f"semcc dataset: 6 problems; nothing written to {out}"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_the_command_prints_the_summary(user_folder, tmp_path: Path, capsys) -> None:
    pairs, path = user_folder
    out = tmp_path / "out"
    assert main(["dataset", "--pairs", str(pairs), "--captions", str(path), "--out", str(out), "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}: LevirCCcaptions.json and images/{{train,val,test}}/{{A,B,label}}, 6 pairs" in text
    assert "  train:      4 pairs, 2 changed, 2 unchanged" in text and "  val:        1 pair, " in text
    assert "captions: 24, 3-5 per pair (mean 4.0)" in text
    assert "images: 16x16 px (6 pairs)" in text
    assert "splits: from ratio 0.8,0.1,0.1, seed 3, stratified by changed/unchanged" in text
    assert text.count("semcc fit --data.synth_root null") == 1
    assert main(["dataset", "--pairs", str(pairs), "--captions", str(path), "--out", str(pairs)]) == 1
    assert "holds or is inside the input folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- training
def test_fit_runs_with_the_printed_command(synth_root: Path, tmp_path: Path, capsys) -> None:
    """12 SynthLEVIR pairs (64 px, masks) as a user folder -> `semcc dataset` -> the printed `semcc fit` runs the
    three phases (a few steps) and writes a checkpoint."""
    src = synth_root / "LEVIR-CC"
    entries = [e for e in json.loads((src / CAPTIONS_FILE).read_text())["images"] if e["split"] == "train"][:12]
    pairs, rows = tmp_path / "pairs", []
    for e in entries:
        for sub in ("A", "B", "label"):
            (pairs / sub).mkdir(parents=True, exist_ok=True)
            (pairs / sub / e["filename"]).write_bytes((src / "images" / "train" / sub / e["filename"]).read_bytes())
        rows += [{"name": e["filename"], "caption": s["raw"]} for s in e["sentences"]]
    out = tmp_path / "data"
    assert main(["dataset", "--pairs", str(pairs), "--captions", str(_csv(tmp_path / "c.csv", rows)),
                 "--out", str(out)]) == 0
    printed = [line.strip() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("semcc fit")]
    assert len(printed) == 1
    args = shlex.split(printed[0])[2:]
    run = tmp_path / "run"
    quick = ["--model.evaluation.max_new_tokens=6", "--data.batch_size=4", "--trainer.max_epochs=1",
             "--trainer.check_val_every_n_epoch=1", "--trainer.limit_val_batches=1",
             "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={run}",
             f"--trainer.logger.init_args.save_dir={run}",
             f"--trainer.callbacks.init_args.dirpath={run / 'checkpoints'}"]
    assert main(["fit", *args, *quick]) == 0
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    n = len(LevirCCDataset(out, "train"))
    # cd: 4 crops per pair, cc: 8 passes, joint: 2 passes (configs/tiny.yaml), batches of 4: all three phases ran
    assert ckpt["global_step"] == -(-4 * n // 4) + -(-8 * n // 4) + -(-2 * n // 4)
    assert (out / "tokenizer" / "tokenizer.json").is_file()
