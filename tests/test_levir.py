"""LEVIR-CC / LEVIR-MCI / LEVIR-CD readers: real data, SynthLEVIR, and every bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REAL_PAIRS
from semcc.data.levir import (
    LEVIR_CC_MEAN,
    LEVIR_CC_STD,
    LevirCCDataset,
    LevirCDDataset,
    LevirDataError,
    LevirMCIDataset,
    load_levir_cc_captions,
)
from semcc.data.text import NO_CHANGE_SENTENCES


# ------------------------------------------------------------------------------------------ real data
def test_real_captions_file_loads_whole(real_levir_cc: Path) -> None:
    images = load_levir_cc_captions(real_levir_cc / "LevirCCcaptions.json")
    assert len(images) == 10077
    splits = {s: sum(e["split"] == s for e in images) for s in ("train", "val", "test")}
    assert splits == {"train": 6815, "val": 1333, "test": 1929}
    assert all(len(e["sentences"]) == 5 for e in images)


def test_real_pairs_load_through_levir_cc_reader(real_levir_cc: Path) -> None:
    ds = LevirCCDataset(real_levir_cc, "train", names=REAL_PAIRS)
    assert len(ds) == 3 and sorted(ds.names) == sorted(REAL_PAIRS)
    raw = json.loads((real_levir_cc / "LevirCCcaptions.json").read_text())["images"]
    refs = {e["filename"]: [" ".join(s["tokens"]) for s in e["sentences"]] for e in raw}
    for i in range(3):
        s = ds[i]
        assert s["image_a"].shape == s["image_b"].shape == (3, 256, 256)
        assert s["image"].shape == (2, 3, 256, 256) and s["image"].dtype == torch.float32
        assert torch.equal(s["image"][0], s["image_a"]) and torch.equal(s["image"][1], s["image_b"])
        assert s["captions"] == refs[s["name"]] and len(s["captions"]) == 5
        assert s["changed"] is True  # all three real pairs show new buildings
        assert not torch.equal(s["image_a"], s["image_b"])
        # Default normalisation is the LEVIR-CC statistics: undo it and compare with the PNG.
        png = np.asarray(Image.open(real_levir_cc / "images/train/A" / s["name"]).convert("RGB"))
        mean, std = torch.tensor(LEVIR_CC_MEAN).view(3, 1, 1), torch.tensor(LEVIR_CC_STD).view(3, 1, 1)
        back = ((s["image_a"] * std + mean) * 255).round().permute(1, 2, 0).numpy()
        np.testing.assert_allclose(back, png, atol=0.01)


def test_normalisation_is_configurable(real_levir_cc: Path) -> None:
    ds = LevirCCDataset(real_levir_cc, "train", names=REAL_PAIRS[:1], mean=(0, 0, 0), std=(1, 1, 1))
    x = ds[0]["image_a"]
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    with pytest.raises(ValueError, match="std values must be positive"):
        LevirCCDataset(real_levir_cc, "train", names=REAL_PAIRS[:1], std=(1, 0, 1))


def test_real_pair_missing_from_disk_is_named(real_levir_cc: Path) -> None:
    with pytest.raises(LevirDataError, match=r"train_000001\.png: image file is missing"):
        LevirCCDataset(real_levir_cc, "train")


# ------------------------------------------------------------------------------------------ bad input
@pytest.fixture()
def small_cc(real_levir_cc: Path, tmp_path: Path) -> Path:
    """A writable LEVIR-CC root with the three real pairs and only their captions."""
    root = tmp_path / "cc"
    shutil.copytree(real_levir_cc / "images", root / "images")
    images = json.loads((real_levir_cc / "LevirCCcaptions.json").read_text())["images"]
    keep = [e for e in images if e["filename"] in REAL_PAIRS]
    (root / "LevirCCcaptions.json").write_text(json.dumps({"images": keep}))
    return root


def test_missing_image(small_cc: Path) -> None:
    (small_cc / "images/train/B" / REAL_PAIRS[1]).unlink()
    with pytest.raises(LevirDataError, match=rf"B/{REAL_PAIRS[1]}: image file is missing"):
        LevirCCDataset(small_cc, "train")


def test_size_mismatch(small_cc: Path) -> None:
    path = small_cc / "images/train/B" / REAL_PAIRS[0]
    Image.open(path).resize((128, 128)).save(path)
    ds = LevirCCDataset(small_cc, "train")
    index = ds.names.index(REAL_PAIRS[0])
    with pytest.raises(LevirDataError, match=r"B/train_000016\.png: size 128x128 does not match .*A/train_000016"):
        ds[index]


def test_corrupt_png(small_cc: Path) -> None:
    path = small_cc / "images/train/A" / REAL_PAIRS[2]
    path.write_bytes(path.read_bytes()[:200])  # truncated file
    ds = LevirCCDataset(small_cc, "train")
    with pytest.raises(LevirDataError, match=rf"A/{REAL_PAIRS[2]}: cannot decode image"):
        ds[ds.names.index(REAL_PAIRS[2])]


def test_grey_and_rgba_are_converted(small_cc: Path) -> None:
    grey = small_cc / "images/train/A" / REAL_PAIRS[0]
    original = np.asarray(Image.open(grey).convert("L"))
    Image.fromarray(original, "L").save(grey)
    rgba = small_cc / "images/train/B" / REAL_PAIRS[0]
    rgb = np.asarray(Image.open(rgba).convert("RGB"))
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 77, np.uint8)]), "RGBA").save(rgba)
    ds = LevirCCDataset(small_cc, "train", mean=(0, 0, 0), std=(1, 1, 1))
    s = ds[ds.names.index(REAL_PAIRS[0])]
    a = (s["image_a"] * 255).round().numpy()
    assert a.shape == (3, 256, 256) and np.array_equal(a[0], a[1]) and np.array_equal(a[0], original)
    np.testing.assert_array_equal((s["image_b"] * 255).round().permute(1, 2, 0).numpy(), rgb)


def test_malformed_json(small_cc: Path) -> None:
    path = small_cc / "LevirCCcaptions.json"
    path.write_text(path.read_text()[:-40])
    with pytest.raises(LevirDataError, match=r"LevirCCcaptions\.json: malformed JSON at line 1, column \d+"):
        LevirCCDataset(small_cc, "train")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("images"), "expected an object with an 'images' list"),
        (lambda d: d["images"][1].pop("sentences"), r"images\[1\] has no 'sentences'"),
        (lambda d: d["images"][2].pop("filename"), r"images\[2\] has no 'filename'"),
        (lambda d: d["images"][0].update(sentences=[]), r"images\[0\] \(train_\d+\.png\) has no sentences"),
        (lambda d: d["images"][0]["sentences"][3].clear(), r"sentence 3 has neither 'tokens' nor 'raw'"),
    ],
)
def test_incomplete_json(small_cc: Path, edit, message: str) -> None:
    path = small_cc / "LevirCCcaptions.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(LevirDataError, match=message):
        LevirCCDataset(small_cc, "train")


def test_missing_captions_file(tmp_path: Path) -> None:
    with pytest.raises(LevirDataError, match=r"LevirCCcaptions\.json: captions file is missing"):
        LevirCCDataset(tmp_path, "train")


def test_unknown_split(small_cc: Path, synth_root: Path) -> None:
    with pytest.raises(LevirDataError, match=r"unknown split 'validation'; available: train"):
        LevirCCDataset(small_cc, "validation")
    with pytest.raises(LevirDataError, match=r"unknown split 'dev'; available: train, val, test"):
        LevirCDDataset(synth_root / "LEVIR-CD", "dev")


# ----------------------------------------------------------------------------------------- SynthLEVIR
def test_synth_cc_and_mci_read_same_pairs(synth_root: Path) -> None:
    cc = LevirCCDataset(synth_root / "LEVIR-CC", "train")
    mci = LevirMCIDataset(synth_root / "LEVIR-CC", "train", mask_mode="classes")
    assert len(cc) == len(mci) == 12 and cc.names == mci.names
    for i in range(len(cc)):
        a, b = cc[i], mci[i]
        assert torch.equal(a["image"], b["image"]) and a["captions"] == b["captions"]
        assert "mask" not in a and b["mask"].shape == (64, 64) and b["mask"].dtype == torch.int64
        assert set(b["mask"].unique().tolist()) <= {0, 1, 2}
        if not b["changed"]:
            assert b["captions"] == list(NO_CHANGE_SENTENCES) and not b["mask"].any()


def test_mci_mask_modes(synth_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "mci"
    shutil.copytree(synth_root / "LEVIR-CC", root)
    name = LevirMCIDataset(root, "train").names[0]
    label = np.zeros((64, 64), np.uint8)
    label[:10] = 255
    label[20:25] = 128
    Image.fromarray(np.dstack([label, label // 2, label // 3]), "RGB").save(root / "images/train/label" / name)
    masks = {m: LevirMCIDataset(root, "train", mask_mode=m, names=[name])[0]["mask"] for m in
             ("classes", "change", "building")}
    assert int((masks["classes"] == 2).sum()) == 640 and int((masks["classes"] == 1).sum()) == 320
    assert int(masks["change"].sum()) == 960 and int(masks["building"].sum()) == 640
    label[30, 30] = 7
    Image.fromarray(label, "L").save(root / "images/train/label" / name)
    with pytest.raises(LevirDataError, match=rf"label/{name}: label values \[7\] are not LEVIR-MCI classes"):
        LevirMCIDataset(root, "train", names=[name])[0]
    (root / "images/train/label" / name).unlink()
    with pytest.raises(LevirDataError, match=rf"label/{name}: image file is missing"):
        LevirMCIDataset(root, "train")


def test_cd_grid_covers_every_tile(synth_root: Path) -> None:
    ds = LevirCDDataset(synth_root / "LEVIR-CD", "train", crop_size=64, mode="grid", mean=(0, 0, 0), std=(1, 1, 1))
    assert len(ds) == 2 * 16  # two 256 px tiles, 4 x 4 crops each
    assert ds[5]["name"].endswith(":1:1")
    covered = torch.zeros(256, 256)
    label = torch.from_numpy(np.asarray(Image.open(synth_root / "LEVIR-CD/train/label" / ds.tiles[0])) > 0)
    rebuilt = torch.zeros(256, 256, dtype=torch.long)
    for k in range(16):
        s = ds[k]
        r, c = (int(x) for x in s["name"].split(":")[1:])
        covered[r * 64:(r + 1) * 64, c * 64:(c + 1) * 64] += 1
        rebuilt[r * 64:(r + 1) * 64, c * 64:(c + 1) * 64] = s["mask"]
        assert s["image"].shape == (2, 3, 64, 64) and s["captions"] == []
    assert torch.equal(covered, torch.ones(256, 256))
    assert torch.equal(rebuilt, label.long())


def test_cd_grid_with_remainder_and_random_crops(synth_root: Path) -> None:
    grid = LevirCDDataset(synth_root / "LEVIR-CD", "val", crop_size=100, mode="grid")
    assert len(grid) == 9  # starts 0, 100, 156 per axis
    assert grid[8]["image"].shape == (2, 3, 100, 100)
    rnd = LevirCDDataset(synth_root / "LEVIR-CD", "train", crop_size=64, mode="random", samples_per_tile=5,
                         flip=True)
    assert len(rnd) == 10
    torch.manual_seed(0)
    first = rnd[0]["image"]
    torch.manual_seed(0)
    assert torch.equal(rnd[0]["image"], first)  # reproducible under a seed
    torch.manual_seed(1)
    assert not torch.equal(rnd[0]["image"], first)
    assert first.shape == (2, 3, 64, 64)


def test_cd_random_rotations_and_date_swaps(synth_root: Path) -> None:
    """``rotate``: each training crop is the tile turned by a multiple of 90 degrees, images and mask together;
    ``swap``: the two dates of some crops are exchanged and the mask is kept. Crops of the whole tile, so only the
    options move them."""
    whole = LevirCDDataset(synth_root / "LEVIR-CD", "train", crop_size=256, mode="grid")[0]
    assert whole["image"].shape == (2, 3, 256, 256)
    kw = {"crop_size": 256, "mode": "random", "samples_per_tile": 12, "cache_images": True}
    turned = LevirCDDataset(synth_root / "LEVIR-CD", "train", rotate=True, **kw)
    torch.manual_seed(0)
    seen = set()
    for i in range(kw["samples_per_tile"]):  # the first tile's crops
        s = turned[i]
        k = [j for j in range(4) if torch.equal(s["image"], torch.rot90(whole["image"], j, dims=(-2, -1)))]
        assert len(k) == 1, "a rotated crop is one rotation of the tile"
        assert torch.equal(s["mask"], torch.rot90(whole["mask"], k[0]))  # the mask turns with the images
        seen.add(k[0])
    assert len(seen) > 1
    swapped = LevirCDDataset(synth_root / "LEVIR-CD", "train", swap=True, **kw)
    torch.manual_seed(0)
    orders = []
    for i in range(kw["samples_per_tile"]):
        s = swapped[i]
        assert torch.equal(s["mask"], whole["mask"])
        same = torch.equal(s["image"], whole["image"])
        assert same or torch.equal(s["image"], whole["image"].flip(0))
        assert torch.equal(s["image_a"], s["image"][0])
        orders.append(same)
    assert any(orders) and not all(orders)


def test_cd_missing_label_and_root(synth_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "cd"
    shutil.copytree(synth_root / "LEVIR-CD", root)
    name = sorted((root / "test/A").iterdir())[0].name
    (root / "test/label" / name).unlink()
    with pytest.raises(LevirDataError, match=rf"test/label/{name}: file is missing"):
        LevirCDDataset(root, "test")
    with pytest.raises(LevirDataError, match="LEVIR-CD root folder is missing"):
        LevirCDDataset(tmp_path / "nowhere", "test")


def test_cd_tile_cache_gives_the_same_samples(synth_root: Path) -> None:
    plain = LevirCDDataset(synth_root / "LEVIR-CD", "train", crop_size=64, mode="grid")
    cached = LevirCDDataset(synth_root / "LEVIR-CD", "train", crop_size=64, mode="grid", cache_images=True)
    for k in (0, 5, 17):
        a, b = plain[k], cached[k]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"]) and a["name"] == b["name"]
    assert len(cached._cache) == 2 and not plain._cache


def test_cc_and_mci_image_cache_reads_each_file_once(synth_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "cc"
    shutil.copytree(synth_root / "LEVIR-CC", root)
    plain = LevirMCIDataset(root, "val", mask_mode="classes")
    cached = LevirMCIDataset(root, "val", mask_mode="classes", cache_images=True)
    first = [cached[k] for k in range(len(cached))]
    shutil.rmtree(root / "images")  # the cache must serve every later read
    for k, sample in enumerate(first):
        again = cached[k]
        assert torch.equal(again["image"], sample["image"]) and torch.equal(again["mask"], sample["mask"])
        again["mask"].zero_()  # a caller changing its sample does not change the cache
        assert torch.equal(cached[k]["mask"], sample["mask"])
    with pytest.raises(LevirDataError, match="file is missing"):
        plain[0]


def test_cd_positive_fraction_crops_around_change(synth_root: Path) -> None:
    kw = {"crop_size": 32, "mode": "random", "samples_per_tile": 40, "cache_images": True}
    torch.manual_seed(0)
    plain = LevirCDDataset(synth_root / "LEVIR-CD", "train", **kw)
    torch.manual_seed(0)
    biased = LevirCDDataset(synth_root / "LEVIR-CD", "train", positive_fraction=1.0, **kw)
    tiles_with_change = sum(bool(biased._load(t)[2].any()) for t in biased.tiles)
    with_change = [bool(biased[i]["mask"].any()) for i in range(len(biased))]
    assert sum(with_change) >= tiles_with_change * kw["samples_per_tile"]  # every crop of a changed tile
    assert sum(with_change) > sum(bool(plain[i]["mask"].any()) for i in range(len(plain)))
    with pytest.raises(ValueError, match="positive_fraction must be in"):
        LevirCDDataset(synth_root / "LEVIR-CD", "train", positive_fraction=1.5)


def test_captions_reader_reads_gzipped_json(real_levir_dir: Path, real_levir_cc: Path, tmp_path: Path) -> None:
    packed = load_levir_cc_captions(real_levir_dir / "LevirCCcaptions.json.gz")
    assert packed == load_levir_cc_captions(real_levir_cc / "LevirCCcaptions.json") and len(packed) == 10077
    bad = tmp_path / "LevirCCcaptions.json.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(LevirDataError, match=r"LevirCCcaptions\.json\.gz: cannot read the captions file"):
        load_levir_cc_captions(bad)


def test_normalizer_is_the_formula_bit_for_bit() -> None:
    """``Normalizer`` computes ``(x / 255 - mean) / std`` per channel exactly as written (training reproducibility
    rests on it), channels first, in a contiguous tensor; it refuses a bad mean or std."""
    import numpy as np
    import torch

    from semcc.data.images import Normalizer

    mean, std = (0.39, 0.38, 0.33), (0.16, 0.15, 0.14)
    rgb = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    out = Normalizer(mean, std)(rgb)
    x = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
    expected = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    assert out.dtype == torch.float32 and out.shape == (3, 37, 53) and out.is_contiguous()
    assert torch.equal(out, expected)
    with pytest.raises(ValueError, match="std values must be positive"):
        Normalizer(mean, (0.1, 0.0, 0.1))
