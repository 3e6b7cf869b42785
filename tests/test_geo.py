"""GeoTIFF scenes of any size (issue 14, part 1; beyond the paper): semcc.geo.caption_scene and `semcc caption` on
.tif pairs. Eq. 6 masks by the Predictor's sliding window, strip by strip; Eq. 7 captions of the scene and regions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

rasterio = pytest.importorskip("rasterio", reason="GeoTIFF scenes need rasterio: pip install 'semcc[geo]'")

from affine import Affine  # noqa: E402
from rasterio.crs import CRS  # noqa: E402
from rasterio.enums import ColorInterp  # noqa: E402
from rasterio.features import rasterize  # noqa: E402

from semcc.data.text import build_word_tokenizer  # noqa: E402
from semcc.geo import GeoSceneError, _area_unit, caption_scene, parse_bands, select_bands  # noqa: E402
from semcc.inference import Predictor  # noqa: E402
from semcc.main import main  # noqa: E402
from semcc.metrics.truth import connected_components  # noqa: E402
from semcc.models import build_semantic_cc  # noqa: E402

H, W = 128, 160  # 3 x 3 windows of the 64-px model (overlap 0.25)
PIXEL = 0.5  # metres
UTM50 = "EPSG:32650"


def from_origin(west: float, north: float, xsize: float, ysize: float) -> Affine:
    """rasterio.transform.from_origin without its deprecated Affine product."""
    return Affine(xsize, 0.0, west, 0.0, -ysize, north)


TRANSFORM = from_origin(500_000.0, 4_400_000.0, PIXEL, PIXEL)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    """A random-init mini model at 64 px; batch 3 = one row of windows, as Predictor.predict batches them here."""
    tok = tmp_path_factory.mktemp("tok")
    build_word_tokenizer(["the scene is the same as before", "many buildings are built on the bare land"], tok)
    torch.manual_seed(0)
    model = build_semantic_cc("mini", img_size=64, tokenizer=str(tok), cc_head={"max_new_tokens": 6})
    return Predictor(model, batch_size=3)


def pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An RGB pair ``uint8 [H, W, 3]``: blocky ground, a changed patch, and saturated corners (0 and 255 in every
    band, 2.8% of the pixels each) so that a 2-98% stretch of a x257 copy gives back these values."""
    rng = np.random.default_rng(seed)
    ground = np.kron(rng.integers(30, 220, (H // 8, W // 8, 3)), np.ones((8, 8, 1)))
    a = np.clip(ground + rng.normal(0, 6, (H, W, 3)), 1, 254).astype(np.uint8)
    b = a.copy()
    b[40:90, 50:120] = np.clip(rng.normal(200, 30, (50, 70, 3)), 1, 254).astype(np.uint8)
    for x in (a, b):
        x[:24, :24] = 0
        x[:24, -24:] = 255
    return a, b


def write_tif(path: Path, bands_hw: np.ndarray, *, crs: str | None = UTM50, transform=TRANSFORM, nodata=None,
              colorinterp=None, descriptions=None, **profile) -> Path:
    """``bands_hw``: ``[C, H, W]``."""
    c, h, w = bands_hw.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=c, dtype=bands_hw.dtype, crs=crs,
                       transform=transform, nodata=nodata, **profile) as ds:
        ds.write(bands_hw)
        if colorinterp is not None:
            ds.colorinterp = colorinterp
        for i, d in enumerate(descriptions or (), 1):
            ds.set_band_description(i, d)
    return path


def rgb_tifs(tmp_path: Path, a: np.ndarray, b: np.ndarray, **kw) -> tuple[Path, Path]:
    return (write_tif(tmp_path / "before.tif", np.moveaxis(a, -1, 0), **kw),
            write_tif(tmp_path / "after.tif", np.moveaxis(b, -1, 0), **kw))


def read_mask(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def reference_mask(predictor: Predictor, a: np.ndarray, b: np.ndarray, tmp_path: Path) -> np.ndarray:
    """``Predictor.predict`` on the pair saved as PNG files."""
    Image.fromarray(a).save(tmp_path / "a.png")
    Image.fromarray(b).save(tmp_path / "b.png")
    result = predictor.predict(tmp_path / "a.png", tmp_path / "b.png")
    assert not isinstance(result, list) and result.mask is not None
    return result.mask


# ---------------------------------------------------------------------------------------------------- outputs
def test_mask_keeps_the_georeference_and_equals_predict(predictor: Predictor, tmp_path: Path) -> None:
    a, b = pair()
    before, after = rgb_tifs(tmp_path, a, b)
    result = caption_scene(predictor, before, after, tmp_path / "out", progress=False, min_region_pixels=1)
    assert result.mask_path == tmp_path / "out" / "before_mask.tif"
    with rasterio.open(result.mask_path) as ds:
        assert ds.crs == CRS.from_string(UTM50) and ds.transform == TRANSFORM and (ds.height, ds.width) == (H, W)
        assert ds.profile["tiled"] and ds.block_shapes == [(256, 256)]
        assert ds.compression is not None and ds.compression.name == "deflate"
        assert ds.nodata == 255 and ds.dtypes == ("uint8",)
        mask = ds.read(1)
    expected = reference_mask(predictor, a, b, tmp_path)
    assert 0.05 < expected.mean() < 0.95  # the random model marks some change and some not: the test can fail
    np.testing.assert_array_equal(mask, expected)  # windowed strips == Predictor.predict on the same pair

    summary = json.loads(result.summary_path.read_text())
    assert summary == result.summary
    assert summary["size"] == {"height": H, "width": W} and summary["crs"] == UTM50
    assert summary["pixels"]["changed"] == int((mask == 1).sum()) and summary["pixels"]["nodata"] == 0
    assert summary["changed_area"] == pytest.approx((mask == 1).sum() * PIXEL**2) and summary["area_unit"] == "m2"
    assert summary["changed_share"] == pytest.approx((mask == 1).mean(), abs=1e-6)
    assert summary["regions_per_class"] == {"change": connected_components(mask == 1)[1]}  # 8-connected regions
    assert summary["windows"] == 9 and isinstance(summary["scene_caption"], str) and summary["scene_caption"]
    assert summary["scene_caption"] in summary["summary"]


def test_geojson_polygons_are_the_mask_regions_in_the_scene_crs(predictor: Predictor, tmp_path: Path) -> None:
    a, b = pair(1)
    before, after = rgb_tifs(tmp_path, a, b)
    result = caption_scene(predictor, before, after, tmp_path, name="scene", progress=False, min_region_pixels=1,
                           max_region_captions=2)
    mask = read_mask(result.mask_path)
    collection = json.loads(result.geojson_path.read_text())
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32650"
    features = collection["features"]
    assert len(features) == connected_components(mask == 1)[1] > 2
    left, bottom, right, top = rasterio.open(result.mask_path).bounds
    for f in features:
        xy = np.concatenate([np.asarray(r) for r in f["geometry"]["coordinates"]])
        assert (left <= xy[:, 0]).all() and (xy[:, 0] <= right).all()
        assert (bottom <= xy[:, 1]).all() and (xy[:, 1] <= top).all()
        p = f["properties"]
        assert p["class"] == "change" and p["area_unit"] == "m2" and p["area"] == pytest.approx(p["pixels"] * 0.25)
        one = rasterize([(f["geometry"], 1)], out_shape=(H, W), transform=TRANSFORM, dtype="uint8")
        assert int(one.sum()) == p["pixels"] and (mask[one == 1] == 1).all()  # the polygon covers its pixels only
    burnt = rasterize([(f["geometry"], 1) for f in features], out_shape=(H, W), transform=TRANSFORM, dtype="uint8")
    np.testing.assert_array_equal(burnt, mask == 1)  # together the polygons are exactly the change mask
    captioned = sorted((f for f in features if f["properties"]["caption"] is not None),
                       key=lambda f: f["properties"]["caption_rank"])
    assert [f["properties"]["caption_rank"] for f in captioned] == [1, 2]
    sizes = sorted((f["properties"]["pixels"] for f in features), reverse=True)
    assert [f["properties"]["pixels"] for f in captioned] == sizes[:2]  # the largest regions are captioned
    for f in captioned:
        col, row, w, h = f["properties"]["caption_window"]
        assert (w, h) == (64, 64) and 0 <= col <= W - 64 and 0 <= row <= H - 64
    rest = [f for f in features if f["properties"]["caption"] is None]
    assert rest and all("2 largest" in f["properties"]["caption_note"] for f in rest)
    assert result.summary["captioned_regions"] == 2


def test_specks_are_counted_not_written(predictor: Predictor, tmp_path: Path) -> None:
    a, b = pair(1)
    before, after = rgb_tifs(tmp_path, a, b)
    result = caption_scene(predictor, before, after, tmp_path, progress=False, min_region_pixels=40,
                           max_region_captions=0)
    labels, _ = connected_components(read_mask(result.mask_path) == 1)
    sizes = np.bincount(labels.ravel())[1:]
    features = json.loads(result.geojson_path.read_text())["features"]
    assert len(features) == int((sizes >= 40).sum()) and result.summary["specks_per_class"]["change"] == int(
        (sizes < 40).sum()) > 0
    assert all(f["properties"]["pixels"] >= 40 for f in features)


def test_area_units() -> None:
    assert _area_unit(CRS.from_string(UTM50), TRANSFORM) == (0.25, "m2")
    assert _area_unit(CRS.from_epsg(4326), from_origin(117.0, 40.0, 1e-5, 1e-5)) == (1.0, "pixel")
    assert _area_unit(None, TRANSFORM) == (1.0, "pixel")
    area, unit = _area_unit(CRS.from_epsg(2263), from_origin(0, 0, 1.0, 1.0))  # NY state plane, US survey feet
    assert unit == "m2" and area == pytest.approx(0.3048006**2, rel=1e-6)


# ---------------------------------------------------------------------------------------------------- inputs
def test_a_crs_or_grid_mismatch_names_both_files(predictor: Predictor, tmp_path: Path) -> None:
    a, b = pair()
    before = write_tif(tmp_path / "before.tif", np.moveaxis(a, -1, 0))
    other_crs = write_tif(tmp_path / "after_51.tif", np.moveaxis(b, -1, 0), crs="EPSG:32651")
    with pytest.raises(GeoSceneError) as err:
        caption_scene(predictor, before, other_crs, tmp_path / "out", progress=False)
    message = str(err.value)
    assert str(before) in message and str(other_crs) in message and "CRS EPSG:32650 vs EPSG:32651" in message
    moved = write_tif(tmp_path / "after_moved.tif", np.moveaxis(b, -1, 0),
                      transform=from_origin(500_004.0, 4_400_000.0, PIXEL, PIXEL))
    with pytest.raises(GeoSceneError, match="transform") as err:
        caption_scene(predictor, before, moved, tmp_path / "out", progress=False)
    assert str(before) in str(err.value) and str(moved) in str(err.value) and "--resample" in str(err.value)
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_resample_warps_the_after_raster_onto_the_before_grid(predictor: Predictor, tmp_path: Path) -> None:
    a, b = pair()
    shift = 8  # the after raster starts 8 px (4 m) east: the first 8 columns of the before grid are not covered
    shifted = np.zeros_like(b)
    shifted[:, : W - shift] = b[:, shift:]
    before = write_tif(tmp_path / "before.tif", np.moveaxis(a, -1, 0))
    after = write_tif(tmp_path / "after.tif", np.moveaxis(shifted, -1, 0),
                      transform=from_origin(500_000.0 + shift * PIXEL, 4_400_000.0, PIXEL, PIXEL))
    result = caption_scene(predictor, before, after, tmp_path / "out", resample=True, progress=False)
    mask = read_mask(result.mask_path)
    assert (mask[:, :shift] == 255).all()  # west of the after raster's footprint: nodata, never change
    assert (mask[:, shift:] != 255).all()
    assert result.summary["resampled"] and result.summary["pixels"]["nodata"] == H * shift


def test_nodata_is_never_change(predictor: Predictor, tmp_path: Path) -> None:
    a, b = pair(2)
    a[:, :, :] = np.maximum(a, 1)  # 0 is nodata now: keep it for the border only
    b[:, :, :] = np.maximum(b, 1)
    border = np.zeros((H, W), dtype=bool)
    border[:6], border[:, -10:] = True, True
    b[border] = 0  # the after raster has a nodata border; the before raster has valid pixels there
    before, after = rgb_tifs(tmp_path, a, b, nodata=0)
    unmasked = reference_mask(predictor, a, b, tmp_path)
    assert unmasked[border].any()  # without the nodata rule the border would be (partly) change
    result = caption_scene(predictor, before, after, tmp_path / "out", progress=False, min_region_pixels=1)
    mask = read_mask(result.mask_path)
    assert (mask[border] == 255).all() and (mask[~border] != 255).all()
    pixels = result.summary["pixels"]
    assert pixels["nodata"] == int(border.sum()) and pixels["valid"] == H * W - int(border.sum())
    assert pixels["changed"] == int((mask == 1).sum()) > 0
    assert result.summary["changed_share"] == pytest.approx(pixels["changed"] / pixels["valid"], abs=1e-6)
    features = json.loads(result.geojson_path.read_text())["features"]
    burnt = rasterize([(f["geometry"], 1) for f in features], out_shape=(H, W), transform=TRANSFORM, dtype="uint8")
    assert not burnt[border].any() and int(burnt.sum()) == pixels["changed"]


def test_16_bit_input_is_stretched_by_its_percentiles(predictor: Predictor, tmp_path: Path) -> None:
    a, b = pair()
    eight = caption_scene(predictor, *rgb_tifs(tmp_path, a, b), tmp_path / "u8", progress=False)
    wide = tmp_path / "u16"
    wide.mkdir()
    a16, b16 = a.astype(np.uint16) * 257, b.astype(np.uint16) * 257
    result = caption_scene(predictor, *rgb_tifs(wide, a16, b16), tmp_path / "out16", progress=False)
    scaling = result.summary["scaling"]["before"]
    assert scaling["dtype"] == "uint16" and scaling["low"] == [0.0] * 3 and scaling["high"] == [65535.0] * 3
    np.testing.assert_array_equal(read_mask(result.mask_path), read_mask(eight.mask_path))
    # a dark 16-bit scene (values 0-1000): stretched to the full range, not divided by 257 into black
    dark = tmp_path / "dark"
    dark.mkdir()
    result = caption_scene(predictor, *rgb_tifs(dark, (a16 // 66).astype(np.uint16), (b16 // 66).astype(np.uint16)),
                           tmp_path / "outdark", progress=False)
    assert result.summary["scaling"]["after"]["high"] == [float(65535 // 66)] * 3
    changed = read_mask(result.mask_path) == 1
    assert (changed == (read_mask(eight.mask_path) == 1)).mean() > 0.95  # nearly the 8-bit scene's mask


def test_band_selection(predictor: Predictor, tmp_path: Path) -> None:
    a, b = pair()
    nir_a, nir_b = np.full((H, W), 90, np.uint8), np.full((H, W), 10, np.uint8)

    def bgrn(x: np.ndarray, nir: np.ndarray) -> np.ndarray:
        return np.stack([x[..., 2], x[..., 1], x[..., 0], nir])

    plain = [write_tif(tmp_path / f"{n}.tif", bgrn(x, nir), photometric="minisblack")  # grey + 3 undefined
             for n, x, nir in (("a", a, nir_a), ("b", b, nir_b))]
    with rasterio.open(plain[0]) as ds:
        assert select_bands(ds) == (1, 2, 3)  # nothing says which band is which: the first three
        assert select_bands(ds, (3, 2, 1)) == (3, 2, 1) and select_bands(ds, (4,)) == (4, 4, 4)
        with pytest.raises(GeoSceneError, match=r"a\.tif: band 5 does not exist: the raster has 4 band"):
            select_bands(ds, (3, 2, 5), str(plain[0]))
    interp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]
    tagged = write_tif(tmp_path / "tagged.tif", bgrn(a, nir_a), colorinterp=interp, photometric="minisblack")
    described = write_tif(tmp_path / "described.tif", bgrn(a, nir_a), descriptions=["Blue", "Green", "Red", "NIR"])
    with rasterio.open(tagged) as t, rasterio.open(described) as d:
        assert select_bands(t) == (3, 2, 1) and select_bands(d) == (3, 2, 1)
        assert [c.name for c in d.colorinterp][:3] == ["red", "green", "blue"]  # GDAL's default; descriptions win
    rgb = caption_scene(predictor, *rgb_tifs(tmp_path, a, b), tmp_path / "rgb", progress=False)
    chosen = caption_scene(predictor, *plain, tmp_path / "bgrn", bands=(3, 2, 1), progress=False)
    default = caption_scene(predictor, *plain, tmp_path / "bgrn-default", progress=False)
    assert chosen.summary["bands"] == {"before": [3, 2, 1], "after": [3, 2, 1]}
    np.testing.assert_array_equal(read_mask(chosen.mask_path), read_mask(rgb.mask_path))
    assert (read_mask(default.mask_path) != read_mask(rgb.mask_path)).any()  # B and R swapped: another mask
    assert parse_bands("3,2,1") == (3, 2, 1) and parse_bands("2") == (2,)
    for bad in ("3,2", "a,b,c", "0,1,2"):
        with pytest.raises(ValueError, match="--bands"):
            parse_bands(bad)


# ---------------------------------------------------------------------------------------------------- command
def test_caption_command_errors_on_tif_pairs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a, b = pair()
    before = write_tif(tmp_path / "before.tif", np.moveaxis(a, -1, 0))
    after = write_tif(tmp_path / "after.tif", np.moveaxis(b, -1, 0), crs="EPSG:32651")
    missing = tmp_path / "no.ckpt"  # the pair is checked before the checkpoint is read
    assert main(["caption", str(before), str(after), "--ckpt", str(missing)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(before) in err and str(after) in err and "CRS" in err
    assert main(["caption", str(before), str(before), "--ckpt", str(missing), "--bands", "3,2,9"]) == 1
    assert f"{before}: band 9 does not exist" in capsys.readouterr().err
    assert main(["caption", str(before), str(before), "--ckpt", str(missing), "--bands", "3,2"]) == 1
    assert "--bands:" in capsys.readouterr().err
    Image.fromarray(a).save(tmp_path / "a.png")
    assert main(["caption", str(tmp_path / "a.png"), str(tmp_path / "a.png"), "--ckpt", str(missing),
                 "--resample"]) == 1
    assert "--resample: only for GeoTIFF pairs" in capsys.readouterr().err


def test_without_rasterio_the_command_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture) -> None:
    a, b = pair()
    before, after = rgb_tifs(tmp_path, a, b)
    monkeypatch.setitem(__import__("sys").modules, "rasterio", None)  # `import rasterio` fails as if not installed
    assert main(["caption", str(before), str(after), "--ckpt", str(tmp_path / "no.ckpt")]) == 1
    err = capsys.readouterr().err
    assert str(before) in err and "pip install 'semcc[geo]'" in err


def test_caption_command_on_a_tif_pair(tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a, b = pair()
    before, after = rgb_tifs(tmp_path, a, b)
    out = tmp_path / "out"
    assert main(["caption", str(before), str(after), "--ckpt", str(tiny_checkpoint), "--out", str(out),
                 "--max-region-captions", "1"]) == 0
    printed = capsys.readouterr().out
    for name in ("before_mask.tif", "before_changes.geojson", "before_summary.json"):
        assert str(out / name) in printed and (out / name).is_file()
    summary = json.loads((out / "before_summary.json").read_text())
    assert summary["scene_caption"] in printed and summary["max_region_captions"] == 1
    assert summary["captioned_regions"] == min(1, summary["regions"])


# ---------------------------------------------------------------------------------------------------- benchmark
def test_benchmark_mosaics_synthlevir_tiles_and_reports_each_size(tiny_checkpoint: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import geotiff_scene

    tiles = [(np.full((32, 32, 3), i, np.uint8), np.full((32, 32, 3), 100 + i, np.uint8)) for i in range(3)]
    before, after = tmp_path / "a.tif", tmp_path / "b.tif"
    geotiff_scene.write_scene_pair(tiles, before, after, 80)  # 3 x 3 blocks of 32 px, the last ones cut
    with rasterio.open(before) as da, rasterio.open(after) as db:
        assert (da.width, da.height, da.count) == (80, 80, 3) and da.crs == CRS.from_string(UTM50)
        assert da.transform == from_origin(500_000.0, 4_400_000.0, 0.5, 0.5) and da.profile["tiled"]
        assert set(np.unique(da.read(1))) == {0, 1, 2} and (db.read(1) == da.read(1) + 100).all()  # same tile
    rows = geotiff_scene.main(["--ckpt", str(tiny_checkpoint), "--sizes", "180", "--tile-size", "64",
                               "--work", str(tmp_path / "work"), "--max-region-captions", "2",
                               "--json", str(tmp_path / "g.json")])  # one size: a process per size costs seconds
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 1 and table[0].count("|") == len(geotiff_scene.COLUMNS) + 1
    assert [r["size"] for r in rows] == [180] and rows[0]["windows"] == 16  # 4 x 4 windows of 64 px
    assert rows[0]["peak_rss_mib"] > rows[0]["growth_mib"] >= 0 and rows[0]["band_mib"] > 0
    with rasterio.open(tmp_path / "work" / "scene180_64_before.tif") as ds:
        assert (ds.width, ds.height) == (180, 180) and ds.crs == CRS.from_string(UTM50)
    assert json.loads((tmp_path / "g.json").read_text())["rows"] == rows
