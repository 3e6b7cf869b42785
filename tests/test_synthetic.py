"""SynthLEVIR: determinism, layout and schema, no-change share, vocabulary, caption/mask truth, nuisances."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semcc.data.synthetic import SynthLEVIRConfig, generate_synth_levir, is_generated, write_preview
from semcc.data.text import NO_CHANGE_SENTENCES

ndimage = pytest.importorskip("scipy.ndimage", reason="scipy (dev extra) counts connected components")

SPLITS = ("train", "val", "test")
HOUSE_WORDS = {"house", "houses", "building", "buildings", "villa", "villas"}


def _shared_levir() -> Path | None:
    base = os.environ.get("SEMCC_SHARED")
    root = Path(base) if base else Path(__file__).resolve().parents[2] / "shared"
    path = root / "data" / "levir-cc-real"
    return path if (path / "LevirCCcaptions.json.gz").is_file() else None


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _count_ok(word: str, n: int) -> bool:
    """The documented count mapping: a/one 1, two 2, three 3, several/some 3-5, many >= 6."""
    return {"a": n == 1, "one": n == 1, "two": n == 2, "three": n == 3, "several": 3 <= n <= 5,
            "some": 3 <= n <= 5, "many": n >= 6}.get(word, False)


def _place(mask: np.ndarray) -> str | None:
    """Independent re-implementation of the documented place rule (centroid cell, 80% of the pixels)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    h, w = mask.shape
    rows, cols = np.minimum(2, 3 * ys // h), np.minimum(2, 3 * xs // w)
    r, c = min(2, int(3 * ys.mean() // h)), min(2, int(3 * xs.mean() // w))
    names = [["top_left", "top", "top_right"], ["left", "center", "right"],
             ["bottom_left", "bottom", "bottom_right"]]
    if np.mean((rows == r) & (cols == c)) >= 0.8:
        return names[r][c]
    if r != 1 and np.mean(rows == r) >= 0.8:
        return names[r][1]
    if c != 1 and np.mean(cols == c) >= 0.8:
        return names[1][c]
    return None


PLACE_WORDS = {  # words a caption must hold for each place
    "top_left": ({"top", "upper"}, {"left"}), "top_right": ({"top", "upper"}, {"right"}),
    "bottom_left": ({"bottom", "lower"}, {"left"}), "bottom_right": ({"bottom", "lower"}, {"right"}),
    "top": ({"top", "upper"},), "bottom": ({"bottom", "lower"},), "left": ({"left"},), "right": ({"right"},),
    "center": ({"middle", "center"},),
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthLEVIRConfig]:
    config = SynthLEVIRConfig(pairs={"train": 160, "val": 20, "test": 20}, cd_tiles={"train": 6, "val": 2},
                              size=64, cd_scale=2, seed=7, workers=2)
    root = tmp_path_factory.mktemp("synth") / "data"
    summary = generate_synth_levir(root, config)
    assert summary["counts"]["LEVIR-CC"] == {"train": 160, "val": 20, "test": 20}
    return root, config


def _load(root: Path) -> tuple[list[dict], list[dict]]:
    images = json.loads((root / "LEVIR-CC" / "LevirCCcaptions.json").read_text())["images"]
    metas = json.loads((root / "LEVIR-CC" / "synth_meta.json").read_text())["pairs"]
    return images, metas


def test_same_seed_same_bytes_any_workers_and_other_seed_differs(tmp_path: Path) -> None:
    cfg = SynthLEVIRConfig(pairs={"train": 10, "test": 4}, cd_tiles={"val": 2}, size=64, cd_scale=2, seed=1,
                           workers=1)
    generate_synth_levir(tmp_path / "a", cfg)
    generate_synth_levir(tmp_path / "b", SynthLEVIRConfig(**{**cfg.__dict__, "workers": 2}))
    generate_synth_levir(tmp_path / "c", SynthLEVIRConfig(**{**cfg.__dict__, "seed": 2}))
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(a) == 3 * 14 + 3 * 2 + 3  # images, CD tiles, captions + meta + marker
    assert a == b
    assert a.keys() == c.keys()
    assert a["LEVIR-CC/LevirCCcaptions.json"] != c["LEVIR-CC/LevirCCcaptions.json"]
    images = [k for k in a if "/A/" in k or "/B/" in k]  # labels of unchanged pairs are all zero anyway
    assert all(a[k] != c[k] for k in images)


def test_layout_and_schema(dataset: tuple[Path, SynthLEVIRConfig]) -> None:
    root, config = dataset
    images, metas = _load(root)
    assert [e["split"] for e in images] == ["train"] * 160 + ["val"] * 20 + ["test"] * 20
    assert [e["imgid"] for e in images] == list(range(200))
    sentids = [s["sentid"] for e in images for s in e["sentences"]]
    assert sentids == list(range(1000))
    for e, meta in zip(images, metas, strict=True):
        assert set(e) == {"filepath", "filename", "imgid", "split", "sentences"}
        assert e["filepath"] == e["split"] and e["filename"] == meta["filename"]
        assert e["filename"].startswith(e["split"] + "_") and e["filename"].endswith(".png")
        assert len(e["sentences"]) == 5
        for s in e["sentences"]:
            assert set(s) == {"tokens", "raw", "imgid", "sentid"} and s["imgid"] == e["imgid"]
            assert all(isinstance(t, str) and t == t.lower() and t.strip() == t and t for t in s["tokens"])
            assert s["raw"] == " ".join(s["tokens"]) + " ."
    for split, n in config.pairs.items():
        folder = root / "LEVIR-CC" / "images" / split
        names = sorted(p.name for p in (folder / "A").iterdir())
        assert names == [f"{split}_{i:06d}.png" for i in range(n)]
        for name in names[:8]:
            a, b, lab = (Image.open(folder / sub / name) for sub in ("A", "B", "label"))
            assert a.mode == b.mode == "RGB" and lab.mode == "L"
            assert a.size == b.size == lab.size == (64, 64)
        for name in names:
            assert set(np.unique(np.asarray(Image.open(folder / "label" / name)))) <= {0, 128, 255}
    tiles = 0
    for split, n in config.cd_tiles.items():
        for sub in ("A", "B", "label"):
            assert sorted(p.name for p in (root / "LEVIR-CD" / split / sub).iterdir()) == sorted(
                f"{split}_{i + 1}.png" for i in range(n))
        for i in range(n):
            lab = Image.open(root / "LEVIR-CD" / split / "label" / f"{split}_{i + 1}.png")
            assert lab.mode == "L" and lab.size == (128, 128)
            values = set(np.unique(np.asarray(lab)))
            assert values <= {0, 255}
            tiles += 255 in values
            assert Image.open(root / "LEVIR-CD" / split / "A" / f"{split}_{i + 1}.png").mode == "RGB"
    assert tiles >= 5  # most CD tiles hold a change (8 tiles here)
    assert not (root / "LEVIR-CD" / "test").exists()  # splits with count 0 are left out
    marker = json.loads((root / "synthlevir.json").read_text())
    assert marker["complete"] is True and marker["config"] == config.content_dict()
    assert not list(root.rglob("*.tmp"))


def test_no_change_share(dataset: tuple[Path, SynthLEVIRConfig]) -> None:
    images, metas = _load(dataset[0])
    unchanged = [e for e in images if [s["raw"][:-2] for s in e["sentences"]] == list(NO_CHANGE_SENTENCES)]
    assert 0.4 <= len(unchanged) / len(images) <= 0.6
    assert len(unchanged) == sum(not m["changed"] for m in metas)


def test_vocabulary_coverage(dataset: tuple[Path, SynthLEVIRConfig]) -> None:
    real = _shared_levir()
    if real is None:
        pytest.skip("../shared/data/levir-cc-real (or $SEMCC_SHARED) is absent: no real LEVIR-CC vocabulary")
    with gzip.open(real / "LevirCCcaptions.json.gz", "rt") as f:
        vocab = {t for e in json.load(f)["images"] for s in e["sentences"] for t in s["tokens"]}
    images, _ = _load(dataset[0])
    tokens = [t for e in images for s in e["sentences"] for t in s["tokens"]]
    coverage = sum(t in vocab for t in tokens) / len(tokens)
    assert coverage >= 0.95, sorted({t for t in tokens if t not in vocab})
    changed = [e for e in images if e["sentences"][0]["raw"][:-2] not in NO_CHANGE_SENTENCES]
    distinct = sum(len({s["raw"] for s in e["sentences"]}) == 5 for e in changed)
    assert distinct >= 0.9 * len(changed)


def test_captions_true_to_masks(dataset: tuple[Path, SynthLEVIRConfig]) -> None:
    root, _ = dataset
    images, metas = _load(root)
    checked_places = 0
    for e, meta in zip(images, metas, strict=True):
        label = np.asarray(Image.open(root / "LEVIR-CC" / "images" / e["split"] / "label" / e["filename"]))
        tokens = [s["tokens"] for s in e["sentences"]]
        if not meta["changed"]:
            assert not label.any()
            assert [" ".join(t) for t in tokens] == list(NO_CHANGE_SENTENCES)
            continue
        clauses = {c["role"]: c for c in meta["clauses"]}
        building = label == 255
        n_houses = sum(c["count"] for c in clauses.values() if c["kind"] == "building")
        components, k = ndimage.label(building)
        assert k == n_houses, (e["filename"], k, n_houses)
        assert ((label == 128).any()) == ("r" in clauses)
        masks: dict[str, np.ndarray] = {}
        for role, c in clauses.items():
            if c["kind"] == "building":
                assert len(c["boxes"]) == c["count"]
                m = np.zeros_like(building)
                for x0, y0, x1, y1 in c["boxes"]:
                    inside = np.unique(components[y0:y1, x0:x1])
                    assert len(inside[inside > 0]) == 1  # one house per box, changed houses never touch
                    m[y0:y1, x0:x1] = building[y0:y1, x0:x1]
                masks[role] = m
            elif c["kind"] == "road":
                masks[role] = label == 128
            if role in masks:
                assert c["place"] == _place(masks[role])
        for toks, claim in zip(tokens, meta["captions"], strict=True):
            if HOUSE_WORDS & set(toks):
                assert building.any()
            for role, word in claim["count_words"].items():
                assert word in toks and _count_ok(word, clauses[role]["count"]), (toks, clauses[role]["count"])
            for p in claim["places"]:
                for options in PLACE_WORDS[p["place"]]:
                    assert options & set(toks), (toks, p)
                if all(r in masks for r in p["scope"]):
                    assert p["place"] == _place(np.logical_or.reduce([masks[r] for r in p["scope"]]))
                    checked_places += 1
            if "desert" in toks:
                assert meta["ground"] == "desert"
            if {"grassland", "meadow"} & set(toks):
                assert meta["ground"] == "grass"
    assert checked_places > 50


def test_nuisance_changes_pixels_not_masks(tmp_path: Path) -> None:
    base = {"pairs": {"train": 16}, "cd_tiles": {}, "size": 64, "seed": 5, "workers": 1}
    generate_synth_levir(tmp_path / "clean", SynthLEVIRConfig(**base, nuisance=0.0))
    generate_synth_levir(tmp_path / "noisy", SynthLEVIRConfig(**base, nuisance=1.0))
    _, metas = _load(tmp_path / "clean")
    assert 0 < sum(not m["changed"] for m in metas) < 16
    folder = "LEVIR-CC/images/train"
    for m in metas:
        clean = {s: np.asarray(Image.open(tmp_path / "clean" / folder / s / m["filename"])) for s in "AB"}
        noisy = {s: np.asarray(Image.open(tmp_path / "noisy" / folder / s / m["filename"])) for s in "AB"}
        lab = [np.asarray(Image.open(tmp_path / d / folder / "label" / m["filename"])) for d in ("clean", "noisy")]
        assert np.array_equal(lab[0], lab[1])
        if not m["changed"]:
            assert np.array_equal(clean["A"], clean["B"])
            assert not np.array_equal(noisy["A"], noisy["B"])
            assert not lab[1].any()
    assert (tmp_path / "clean" / "LEVIR-CC" / "LevirCCcaptions.json").read_bytes() == (
        tmp_path / "noisy" / "LEVIR-CC" / "LevirCCcaptions.json").read_bytes()


def test_is_generated_detects_interruption_and_config(tmp_path: Path) -> None:
    cfg = SynthLEVIRConfig(pairs={"train": 3}, cd_tiles={"train": 1}, size=64, cd_scale=1, workers=1)
    root = tmp_path / "d"
    assert not is_generated(root)
    first = generate_synth_levir(root, cfg)
    assert first["reused"] is False and is_generated(root) and is_generated(root, cfg)
    assert is_generated(root, SynthLEVIRConfig(**{**cfg.__dict__, "workers": 4}))  # workers do not matter
    assert not is_generated(root, SynthLEVIRConfig(**{**cfg.__dict__, "seed": 1}))
    assert generate_synth_levir(root, cfg)["reused"] is True
    with pytest.raises(FileExistsError, match="another config"):
        generate_synth_levir(root, SynthLEVIRConfig(**{**cfg.__dict__, "seed": 1}))
    (root / "LEVIR-CC" / "images" / "train" / "B" / "train_000001.png").unlink()  # a lost file
    assert not is_generated(root, cfg)
    marker = json.loads((root / "synthlevir.json").read_text())
    (root / "synthlevir.json").write_text(json.dumps({**marker, "complete": False}))  # interrupted run
    assert not is_generated(root)
    assert generate_synth_levir(root, cfg)["reused"] is False  # a partial data set is regenerated
    assert is_generated(root, cfg)
    (root / "synthlevir.json").unlink()
    assert not is_generated(root)
    with pytest.raises(FileExistsError, match="did not write"):
        generate_synth_levir(root, cfg)
    assert generate_synth_levir(root, cfg, overwrite=True)["reused"] is False


def test_write_preview(dataset: tuple[Path, SynthLEVIRConfig], tmp_path: Path) -> None:
    out = write_preview(dataset[0], tmp_path / "p" / "preview.png", split="train", n=5)
    im = Image.open(out)
    assert im.size == (3 * 128 + 8, 5 * (128 + 30))
    assert im.mode == "RGB"


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="unknown split"):
        SynthLEVIRConfig(pairs={"training": 3})
    with pytest.raises(ValueError, match="size"):
        SynthLEVIRConfig(size=32)
    with pytest.raises(ValueError, match="no_change_ratio"):
        SynthLEVIRConfig(no_change_ratio=1.5)
