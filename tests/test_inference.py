"""Inference on a user's pair (paper Eq. 1 at inference): Predictor, sliding-window masks, pictures, commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from semcc.data.inputs import InputImageError, to_rgb
from semcc.data.levir import LEVIR_CC_MEAN, LEVIR_CC_STD, LevirDataError
from semcc.inference import PairPrediction, Predictor, sliding_window_logits, window_starts
from semcc.main import main
from semcc.visualize import FigureSample, overlay_figure, results_figure

PAIR = "train_000016.png"


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint: Path) -> Predictor:
    return Predictor.from_checkpoint(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def real_pair(real_levir_dir: Path) -> tuple[Path, Path]:
    folder = real_levir_dir / "images" / "train"
    return folder / "A" / PAIR, folder / "B" / PAIR


def _normalize(rgb: np.ndarray, p: Predictor) -> torch.Tensor:
    x = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    return (x - torch.tensor(p.mean).view(3, 1, 1)) / torch.tensor(p.std).view(3, 1, 1)


def _direct(p: Predictor, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
    """The model called directly on a batch at its input size (one encoder pass), the dates' radiometry matched as
    the predictor does."""
    n = a.shape[0]
    with p.radiometry():
        mask, captions = p.model.predict(a, b, instructions=[p.instructions[0]] * n, max_new_tokens=p.max_new_tokens)
    return mask, captions


# ------------------------------------------------------------------------------------------- predictor
def test_from_checkpoint_reads_the_run(predictor: Predictor) -> None:
    assert predictor.input_size == 64 and predictor.num_classes == 2
    assert predictor.max_new_tokens == 6  # the run's --model.evaluation.max_new_tokens
    assert predictor.mean == pytest.approx(LEVIR_CC_MEAN) and predictor.std == pytest.approx(LEVIR_CC_STD)
    bare = Predictor(predictor.model)  # a bare SemanticCC: LEVIR-CC statistics, the model's own caption length
    assert bare.task is None and bare.max_new_tokens is None and bare.mean == pytest.approx(LEVIR_CC_MEAN)
    task = predictor.task
    saved = task.run_config
    try:  # data.loader.mean / std come from the stored run configuration when present
        config = yaml.safe_load(saved)
        data = config["data"].get("init_args", config["data"])
        assert data["loader"]["mean"] == pytest.approx(LEVIR_CC_MEAN)  # where the run configuration keeps them
        data["loader"]["mean"] = [0.5, 0.5, 0.5]
        task.run_config = yaml.safe_dump(config)
        assert Predictor(task).mean == (0.5, 0.5, 0.5)
        assert Predictor(task, mean=(0.1, 0.2, 0.3)).mean == (0.1, 0.2, 0.3)
        del data["loader"]
        data["mean"] = [0.25, 0.25, 0.25]  # the layout of older runs: data.mean
        task.run_config = yaml.safe_dump(config)
        assert Predictor(task).mean == (0.25, 0.25, 0.25)
        task.run_config = None
        assert Predictor(task).mean == pytest.approx(LEVIR_CC_MEAN)
    finally:
        task.run_config = saved


def test_radiometry_matching_of_the_predictor(predictor: Predictor, real_pair) -> None:
    """``match_radiometry``: the task's ``evaluation.match_radiometry`` unless given (a bare model: its encoder's
    own); every model call of ``predict`` runs with it, the model is left as it was, and a matched prediction is the
    model's own on the matched pair (``semcc.models.radiometry.match_radiometry``)."""
    from semcc.models.radiometry import match_radiometry

    encoder = predictor.model.encoder
    assert predictor.match_radiometry is True and encoder.match_radiometry is False  # tiny.yaml: evaluation only
    plain = Predictor(predictor.task, match_radiometry=False, mask_tta="none")
    bare = Predictor(predictor.model)
    assert plain.match_radiometry is False and bare.match_radiometry is False
    a, b = (to_rgb(Image.open(p)) for p in real_pair)
    small = [np.array(Image.fromarray(x).resize((64, 64))) for x in (a, b)]
    x, y = (_normalize(im, predictor)[None] for im in small)
    one_view = Predictor(predictor.task, mask_tta="none")  # tiny's run averages the mask over views: not here
    matched, unmatched = one_view.predict(*small, logits=True), plain.predict(*small, logits=True)
    assert encoder.match_radiometry is False  # restored after the calls
    mask, _ = predictor.model.predict(*match_radiometry(x, y), instructions=[predictor.instructions[0]],
                                      max_new_tokens=predictor.max_new_tokens)  # the model as it is: not matching
    assert np.allclose(matched.logits, mask[0].numpy(), atol=1e-5)
    assert not np.allclose(matched.logits, unmatched.logits, atol=1e-3)
    encoder.match_radiometry = True
    try:
        assert Predictor(predictor.model).match_radiometry is True  # a bare model: as its encoder does
        assert np.allclose(bare.predict(*small, logits=True).logits, unmatched.logits)  # bare's own setting: off
    finally:
        encoder.match_radiometry = False


def test_real_pair_caption_is_resized_and_mask_is_full_size(predictor: Predictor, real_pair) -> None:
    result = predictor.predict(*real_pair, probability=True, logits=True)
    assert isinstance(result, PairPrediction)
    assert result.name == PAIR and result.size == (256, 256)
    assert isinstance(result.caption, str) and result.caption
    assert result.mask.shape == (256, 256) and result.mask.dtype == np.uint8
    assert set(np.unique(result.mask)) <= {0, 1}
    assert result.logits.shape == (1, 256, 256)
    assert np.array_equal(result.mask, (result.logits[0] > 0).astype(np.uint8))
    assert result.probability.shape == (256, 256) and 0 <= result.probability.min() <= result.probability.max() <= 1
    # caption: the pair resized (bilinear, antialiased) to the model's 64 px, one encoder pass
    a, b = (_normalize(to_rgb(p), predictor) for p in real_pair)
    small = [F.interpolate(x[None], size=(64, 64), mode="bilinear", antialias=True) for x in (a, b)]
    greedy = _direct(predictor, *small)[1][0]
    assert Predictor(predictor.task, decoding="greedy").predict(*real_pair).caption == greedy
    if predictor.decoding == "consistent":  # tiny's: the greedy caption is a candidate, the mask may prefer another
        assert greedy in result.candidates and result.caption == result.candidates[0]
    else:
        assert result.caption == greedy
    # mask: with overlap 0 the 4 x 4 windows tile the pair and each pixel is its window's direct logit
    tiled = Predictor(predictor.task, overlap=0.0, mask_tta="none").predict(*real_pair, logits=True)
    windows = [(t, x) for t in range(0, 256, 64) for x in range(0, 256, 64)]
    crops_a = torch.stack([a[:, t : t + 64, x : x + 64] for t, x in windows])
    crops_b = torch.stack([b[:, t : t + 64, x : x + 64] for t, x in windows])
    direct = _direct(predictor, crops_a, crops_b)[0]
    expected = torch.zeros(1, 256, 256)
    for (t, x), logit in zip(windows, direct, strict=True):
        expected[:, t : t + 64, x : x + 64] = logit
    assert torch.allclose(torch.from_numpy(tiled.logits), expected, atol=1e-5)
    # overlapping windows average to something close to, but not exactly, the tiled logits
    assert window_starts(256, 64, 0.25) == [0, 48, 96, 144, 192]


def test_1024_pair_gives_a_1024_mask(predictor: Predictor, real_pair) -> None:
    big = [Image.open(p).convert("RGB").resize((1024, 1024), Image.Resampling.BICUBIC) for p in real_pair]
    fast = Predictor(predictor.task, overlap=0.0, batch_size=32)  # 16 x 16 windows of 64 px
    result = fast.predict(*big)
    assert result.size == (1024, 1024) and result.mask.shape == (1024, 1024)
    assert isinstance(result.caption, str) and result.name == "pair0"


def test_batched_predict_equals_one_at_a_time(predictor: Predictor, real_levir_dir: Path) -> None:
    folder = real_levir_dir / "images" / "train"
    names = ("train_000016.png", "train_000051.png", "train_000054.png", "train_000016.png")
    sizes = ((96, 80), (64, 64), (40, 50), (70, 64))  # windows, the exact model size, padded, windows
    befores, afters = [], []
    for name, (h, w) in zip(names, sizes, strict=True):
        befores.append(to_rgb(folder / "A" / name)[:h, -w:])
        afters.append(to_rgb(folder / "B" / name)[:h, -w:])
    batched = Predictor(predictor.task, batch_size=3).predict(befores, afters)
    single = [Predictor(predictor.task, batch_size=1).predict(a, b) for a, b in zip(befores, afters, strict=True)]
    assert [r.size for r in batched] == list(sizes)
    assert [r.name for r in batched] == ["pair0", "pair1", "pair2", "pair3"]
    for one, many in zip(single, batched, strict=True):
        assert one.caption == many.caption
        assert one.mask.shape == many.mask.shape
        assert np.array_equal(one.mask, many.mask)


def test_stitch_at_model_size_equals_direct_call(predictor: Predictor) -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 3, 64, 64, generator=gen), torch.randn(3, 3, 64, 64, generator=gen)
    direct_logits, direct_captions = _direct(predictor, a, b)
    with predictor.radiometry():  # as the predictor calls it (tiny's run matches the dates' radiometry)
        for weight in ("cosine", "flat"):
            stitched = sliding_window_logits(predictor.model, list(zip(a, b, strict=True)), batch_size=2,
                                             weight=weight)
            assert torch.allclose(torch.stack(stitched), direct_logits, atol=1e-6)
        # smaller than the window: padded with zeros (the mean colour), logits cropped back
        small = sliding_window_logits(predictor.model, [(a[0, :, :40, :50], b[0, :, :40, :50])])[0]
    padded = _direct(predictor, F.pad(a[:1, :, :40, :50], (0, 14, 0, 24)), F.pad(b[:1, :, :40, :50], (0, 14, 0, 24)))
    assert small.shape == (1, 40, 50) and torch.allclose(small, padded[0][0, :, :40, :50], atol=1e-6)
    # the Predictor on uint8 pairs of exactly the model size: the same as the model on the normalised pair (greedy:
    # the run's consistency-aware decoding may pick another candidate, tests/test_truth_consistency.py checks that)
    rgb_a = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    rgb_b = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    results = Predictor(predictor.task, decoding="greedy", mask_tta="none").predict(list(rgb_a), list(rgb_b),
                                                                                  logits=True)
    norm_a = torch.stack([_normalize(x, predictor) for x in rgb_a])
    norm_b = torch.stack([_normalize(x, predictor) for x in rgb_b])
    logits, captions = _direct(predictor, norm_a, norm_b)
    assert [r.caption for r in results] == captions
    for r, logit in zip(results, logits, strict=True):
        assert torch.equal(torch.from_numpy(r.logits), logit)
    assert len(direct_captions) == 3


def test_predictor_mask_tta_averages_the_views_on_both_paths(predictor: Predictor) -> None:
    """``Predictor(mask_tta="flips")``: a pair at the model's size gets ``mask_logits_tta``'s logits, a larger pair the
    sliding window over each window's averaged logits; the run's setting (tiny's: d4) is the default."""
    assert predictor.mask_tta == "d4"
    flips = Predictor(predictor.task, decoding="greedy", mask_tta="flips")
    rgb_a = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    rgb_b = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    got = flips.predict(rgb_a, rgb_b, logits=True)
    a, b = _normalize(rgb_a, predictor)[None], _normalize(rgb_b, predictor)[None]
    with flips.radiometry(), torch.no_grad():
        expected = predictor.model.mask_logits_tta(a, b, "flips")[0]
        big_a, big_b = torch.randn(3, 96, 80), torch.randn(3, 96, 80)
        stitched = sliding_window_logits(predictor.model, [(big_a, big_b)], mask_tta="flips")[0]
        plain = sliding_window_logits(predictor.model, [(big_a, big_b)])[0]
    assert torch.allclose(torch.from_numpy(got.logits), expected, atol=1e-5)
    plain_got = Predictor(predictor.task, decoding="greedy", mask_tta="none").predict(rgb_a, rgb_b, logits=True)
    assert not np.allclose(plain_got.logits, got.logits, atol=1e-4)
    assert stitched.shape == plain.shape == (1, 96, 80) and not torch.allclose(stitched, plain, atol=1e-4)
    with pytest.raises(ValueError, match="mask_tta must be one of"):
        Predictor(predictor.task, mask_tta="rot90")


# ------------------------------------------------------------------------------------------ bad inputs
def test_input_errors_name_the_files(predictor: Predictor, real_pair, tmp_path: Path) -> None:
    before, _ = real_pair
    small = tmp_path / "after_small.png"
    Image.open(before).resize((128, 96)).save(small)
    with pytest.raises(InputImageError, match=r"train_000016\.png is 256x256 but .*after_small\.png is 128x96"):
        predictor.predict(before, small)
    with pytest.raises(InputImageError, match=r"missing\.png: image file is missing"):
        predictor.predict(before, tmp_path / "missing.png")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(InputImageError, match=r"corrupt\.png: cannot decode image"):
        predictor.predict(corrupt, before)
    with pytest.raises(InputImageError, match=r"before\[1\] is 8x8 but after\[1\] is 64x64"):
        predictor.predict([np.zeros((8, 8, 3), np.uint8)] * 2, [np.zeros((8, 8, 3), np.uint8), np.zeros((64, 64, 3))])
    with pytest.raises(InputImageError, match="2 before images but 1 after"):
        predictor.predict([before, before], [before])
    with pytest.raises(InputImageError, match="both be single images or both be lists"):
        predictor.predict(before, [before])
    with pytest.raises(InputImageError, match=r"before\[0\]: float images must be RGB in \[0, 1\]"):
        predictor.predict(torch.randn(3, 64, 64) * 5, torch.rand(3, 64, 64))
    with pytest.raises(InputImageError, match=r"image: expected an image of shape"):
        to_rgb(np.zeros((5, 64, 64), np.uint8))
    with pytest.raises(InputImageError, match="expected a file path"):
        to_rgb(42)  # type: ignore[arg-type]


def test_non_rgb_inputs_are_converted(predictor: Predictor, real_pair, tmp_path: Path) -> None:
    rgb = to_rgb(real_pair[0])
    grey = rgb[..., 1]
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    assert np.array_equal(to_rgb(tmp_path / "grey.png"), np.repeat(grey[..., None], 3, axis=-1))
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 7, np.uint8)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(to_rgb(tmp_path / "rgba.png"), rgb)  # alpha dropped
    assert np.array_equal(to_rgb(rgba), rgb) and np.array_equal(to_rgb(grey), to_rgb(tmp_path / "grey.png"))
    assert np.array_equal(to_rgb(torch.from_numpy(rgb).permute(2, 0, 1)), rgb)  # CHW uint8 tensor
    assert np.array_equal(to_rgb(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255), rgb)  # CHW in [0, 1]
    assert np.array_equal(to_rgb(Image.fromarray(rgb).convert("P")), np.array(Image.fromarray(rgb).convert("P")
                                                                             .convert("RGB")))
    # through the predictor: a grey image is the RGB image with the grey value repeated
    crop = grey[:64, :64]
    from_grey = predictor.predict(Image.fromarray(crop, "L"), rgb[:64, :64])
    from_rgb = predictor.predict(np.repeat(crop[..., None], 3, axis=-1), rgb[:64, :64])
    assert from_grey.caption == from_rgb.caption and np.array_equal(from_grey.mask, from_rgb.mask)


# ---------------------------------------------------------------------------------------------- pictures
def test_pictures() -> None:
    before = np.zeros((32, 48, 3), np.uint8)
    after = np.full((32, 48, 3), 200, np.uint8)
    mask = np.zeros((32, 48), np.uint8)
    mask[8:16, 8:24] = 1
    fig = overlay_figure(before, after, mask, "two houses are built " * 20)
    px = np.array(fig)
    assert fig.width == 3 * 48 + 16 and fig.height > 32 + 3 * 20  # caption wrapped to several lines
    overlay = px[:, 2 * 48 + 12 :][:, :48]
    assert (overlay[..., 0] > overlay[..., 1] + 50).any()  # red where the mask is
    grid = results_figure([
        FigureSample(before, after, mask, "a caption", gt_mask=mask * 255, gt_caption="ref", name="x.png"),
        FigureSample(before, after, mask, "b caption"),
    ], panel_size=32)
    arr = np.array(grid)
    assert grid.width == 4 * 32 + 20
    assert (arr == 200).all(-1).any()  # the blank "no GT mask" panel of the second row


# ---------------------------------------------------------------------------------------------- commands
def test_caption_command(tiny_checkpoint: Path, real_pair, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["caption", *map(str, real_pair), "--ckpt", str(tiny_checkpoint), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    mask_path, overlay_path = out / "train_000016_mask.png", out / "train_000016_overlay.png"
    json_path = out / "train_000016.json"
    at = lines.index(f"mask: {mask_path}")
    assert lines[at + 1] == f"overlay: {overlay_path}" and lines[at - 1].strip()
    assert lines[-1] == f"report: {json_path}"
    report = json.loads(json_path.read_text())
    assert report["caption"] == lines[at - 1] and report["decoding"] == "consistent"  # tiny.yaml's setting
    assert report["change_share"] == 0.005 and report["mask"]["changed"] == (report["mask"]["changed_share"] >= 0.005)
    assert set(report) >= {"claim", "mask", "disagreements", "consistent"}
    assert [f"disagreement ({k}): {d}" for k, d in zip(report["disagreement_kinds"], report["disagreements"],
                                                        strict=True)] == lines[at + 2 : -1]
    assert report["mask"]["changed_share"] == pytest.approx(
        (np.array(Image.open(mask_path)) > 0).mean(), abs=1e-6)
    mask = np.array(Image.open(mask_path))
    assert mask.shape == (256, 256) and set(np.unique(mask)) <= {0, 255}
    assert Image.open(overlay_path).width == 3 * 256 + 16
    assert report["samples"] == 0 and report["match_radiometry"] is True and report["mask_prefixes"] is True  # tiny's
    assert report["road_shapes"] is True and all("road_shaped" in r for r in report["mask"]["regions"])
    assert report["first_clauses"] is True  # tiny's
    plain = tmp_path / "plain"
    assert main(["caption", *map(str, real_pair), "--ckpt", str(tiny_checkpoint), "--out", str(plain),
                 "--no-match-radiometry", "--no-mask-prefixes", "--no-road-shapes", "--no-first-clauses"]) == 0
    capsys.readouterr()
    unguided = json.loads((plain / "train_000016.json").read_text())
    assert unguided["match_radiometry"] is False and unguided["mask_prefixes"] is False
    assert unguided["road_shapes"] is False and report["mask_tta"] == "d4"  # tiny's
    assert unguided["first_clauses"] is False
    tta = tmp_path / "tta"
    assert main(["caption", *map(str, real_pair), "--ckpt", str(tiny_checkpoint), "--out", str(tta),
                 "--mask-tta", "flips"]) == 0
    capsys.readouterr()
    assert json.loads((tta / "train_000016.json").read_text())["mask_tta"] == "flips"
    sampled = tmp_path / "sampled"
    assert main(["caption", *map(str, real_pair), "--ckpt", str(tiny_checkpoint), "--out", str(sampled),
                 "--samples", "4", "--temperature", "1.0"]) == 0
    capsys.readouterr()
    with_samples = json.loads((sampled / "train_000016.json").read_text())
    assert with_samples["samples"] == 4 and with_samples["caption"] == with_samples["candidates"][0]
    assert set(report["candidates"]) <= set(with_samples["candidates"])  # the samples join the beams


def test_caption_command_errors(tiny_checkpoint: Path, real_pair, tmp_path: Path, capsys) -> None:
    before, _ = real_pair
    small = tmp_path / "small.png"
    Image.open(before).resize((100, 100)).save(small)
    cases = [
        ([str(before), str(small)], "is 256x256 but"),
        ([str(before), str(tmp_path / "nope.png")], "nope.png: image file is missing"),
        ([str(before), str(before), "--overlap", "1.5"], "overlap must be in [0, 1)"),
        ([str(before), str(before), "--change-share", "0"], "change_share must be in (0, 1]"),
        ([str(before), str(before), "--samples", "-1"], "samples must be at least 0"),
        ([str(before), str(before), "--temperature", "0"], "temperature must be above 0"),
    ]
    for argv, message in cases:
        assert main(["caption", *argv, "--ckpt", str(tiny_checkpoint), "--out", str(tmp_path)]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert main(["caption", str(before), str(before), "--ckpt", str(tmp_path / "no.ckpt")]) == 1
    err = capsys.readouterr().err
    assert err == f"semcc caption: {tmp_path / 'no.ckpt'}: no such checkpoint file\n"  # one line, the file first
    assert main(["caption", str(before)]) == 2  # argparse: missing arguments
    capsys.readouterr()
    main(["--help"])
    assert "caption" in capsys.readouterr().out


def test_figure_command(tiny_checkpoint: Path, synth_root: Path, tmp_path: Path, capsys) -> None:
    import shutil

    root = tmp_path / "mci"  # the SynthLEVIR test split in the LEVIR-MCI layout, one label removed
    shutil.copy(synth_root / "LEVIR-CC" / "LevirCCcaptions.json", root.parent / "caps.json")
    shutil.copytree(synth_root / "LEVIR-CC" / "images" / "test", root / "images" / "test")
    (root.parent / "caps.json").rename(root / "LevirCCcaptions.json")
    labels = sorted((root / "images" / "test" / "label").glob("*.png"))
    labels[0].unlink()
    fig = tmp_path / "fig9.png"
    args = ["figure", "--ckpt", str(tiny_checkpoint), "--root", str(root), "--split", "test", "--panel-size", "64"]
    assert main([*args, "--n", "6", "--out", str(fig)]) == 0
    assert "6 test pairs (1 without a GT mask)" in capsys.readouterr().out
    image = np.array(Image.open(fig).convert("RGB"))
    assert image.shape[1] == 4 * 64 + 20
    gt_column = 2 * 68 + 6
    assert tuple(image[30, gt_column]) == (200, 200, 200)  # first row: the blank "no GT mask" panel
    grey_rows = int((image[:, gt_column] == 200).all(-1).sum())
    assert 0 < grey_rows <= 64  # one blank panel; the other rows hold GT masks from the label folder
    assert main([*args, "--split", "nosuch", "--out", str(fig)]) == 1
    err = capsys.readouterr().err
    assert "no pairs in split 'nosuch'" in err and err.startswith(f"semcc figure: {root}: ") and err.count("\n") == 1
    assert main([*args, "--n", "0"]) == 1
    assert capsys.readouterr().err == "semcc figure: --n must be at least 1, got 0\n"


def test_predict_folder(tiny_run: Path, tiny_cli_args, tiny_checkpoint: Path, real_levir_dir: Path,
                        tmp_path: Path) -> None:
    from semcc.data.folder import PairFolderDataset

    pairs = tmp_path / "pairs"
    for sub in ("A", "B"):
        (pairs / sub).mkdir(parents=True)
        for src in sorted((real_levir_dir / "images" / "train" / sub).glob("*.png")):
            (pairs / sub / src.name).write_bytes(src.read_bytes())
    out = tmp_path / "run"
    argv = ["predict", *tiny_cli_args(tiny_run), "--ckpt_path", str(tiny_checkpoint), "--data.eval_data.predict_root",
            str(pairs), f"--trainer.default_root_dir={out}", f"--trainer.logger.init_args.save_dir={out}"]
    assert main(argv) == 0
    captions = json.loads((out / "predictions" / "captions.json").read_text())
    names = sorted(p.name for p in (pairs / "A").iterdir())
    assert [c["name"] for c in captions] == names and all(isinstance(c["prediction"], str) for c in captions)
    masks = sorted((out / "predictions" / "masks").glob("*.png"))
    assert [m.name for m in masks] == names and Image.open(masks[0]).size == (64, 64)
    (pairs / "A" / "lonely.png").write_bytes((pairs / "A" / names[0]).read_bytes())
    with pytest.raises(LevirDataError, match=r"B/lonely\.png: file is missing"):
        PairFolderDataset(pairs)
