"""Look-alike change augmentations (semcc.data.augment; beyond the paper, issue 13 part 3): independent draws per
date, labels untouched, determinism, each nuisance on its own, misregistration, option errors, train-only use by
the data module, and how the frozen-feature cache treats augmented pairs."""

from __future__ import annotations

import contextlib
from dataclasses import fields, replace
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from semcc.data import augment
from semcc.data.augment import NUISANCES, DateDraw, PairAugment, _one_blas_thread, shift_image
from semcc.data.datamodule import SemanticCCDataModule, collate_change_samples
from semcc.data.images import Normalizer
from semcc.data.options import AugmentConfig, CDCropConfig
from semcc.main import main
from semcc.models import build_semantic_cc
from semcc.tasks.evaluator import EvalConfig
from semcc.tasks.module import SemanticCCTask

TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml")
#: Every nuisance off: the base each test switches one on from.
OFF = AugmentConfig(enabled=True, p=1.0, illumination=0.0, colour=0.0, season=0.0, haze=0.0, shift=0, noise=0.0)
ONLY = {"illumination": 0.3, "colour": 0.1, "season": 0.5, "haze": 0.4, "shift": 2, "noise": 0.05}
ALL_ON = replace(OFF, **ONLY)
ZERO_ONE = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # "normalised" = the 0-1 image, easy to check


def _image(seed: int = 0, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(20, 236, (size, size, 3), dtype=np.uint8)


def _data(synth_root: Path, synth_config, tmp_path: Path, augment: AugmentConfig | None, **kw) -> SemanticCCDataModule:
    return SemanticCCDataModule(synth_root=str(synth_root), synth=synth_config, tokenizer_dir=str(tmp_path / "tok"),
                                cd=CDCropConfig(crop_size=64, samples_per_tile=2), batch_size=4, augment=augment, **kw)


# ------------------------------------------------------------------------------------------------ the draws
def test_the_two_dates_get_independent_draws() -> None:
    aug = PairAugment(ALL_ON, **ZERO_ONE, salt=0)
    rng = np.random.default_rng(0)
    draws = [aug.draw(rng) for _ in range(300)]
    gains = np.array([(a.gain, b.gain) for a, b in draws])
    assert all(a != b for a, b in draws)
    assert np.all(gains[:, 0] != gains[:, 1])
    assert abs(np.corrcoef(gains.T)[0, 1]) < 0.2  # independent, not one draw used twice
    assert gains.min() >= 0.7 and gains.max() <= 1.3 and gains.std() > 0.1
    # The same image as A and B comes out different: each date has its own nuisances.
    image = _image()
    torch.manual_seed(0)
    out_a, out_b, transient = aug(image, image)
    assert transient and out_a.shape == out_b.shape == (3, 32, 32)
    assert not torch.equal(out_a, out_b)
    # Exactly one date of a pair is misregistered.
    shifted = [(a.shift != (0, 0)) + (b.shift != (0, 0)) for a, b in draws]
    assert set(shifted) == {1}


def test_same_seed_same_pair_other_seed_other_pair() -> None:
    image_a, image_b = _image(1), _image(2)
    aug = PairAugment(ALL_ON, salt=0)
    runs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        runs.append(aug(image_a, image_b))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][0], runs[2][0])
    draw = PairAugment(ALL_ON).draw
    assert draw(np.random.default_rng(7)) == draw(np.random.default_rng(7))


def test_views_are_a_fixed_set_per_pair() -> None:
    image_a, image_b = _image(1), _image(2)
    aug = PairAugment(replace(ALL_ON, views=2), salt=5)
    torch.manual_seed(0)
    outs = [aug(image_a, image_b, "pair.png") for _ in range(20)]
    assert not any(t for _, _, t in outs)  # views are not one-offs: the cache may keep them
    distinct = {(float(a.sum()), float(b.sum())) for a, b, _ in outs}
    assert len(distinct) == 2
    other = {(float(a.sum()), float(b.sum())) for a, b, _ in (aug(image_a, image_b, "other.png") for _ in range(20))}
    assert other.isdisjoint(distinct)  # another pair name, other versions
    # Without a key (a LEVIR-CD crop) every draw is a one-off.
    assert aug(image_a, image_b, None)[2] is True


# ------------------------------------------------------------------------------------------------ each nuisance
def test_everything_off_is_the_plain_normalisation() -> None:
    image_a, image_b = _image(1), _image(2)
    norm = Normalizer((0.4, 0.4, 0.35), (0.2, 0.2, 0.18))
    for config in (OFF, replace(ALL_ON, p=0.0)):
        aug = PairAugment(config, (0.4, 0.4, 0.35), (0.2, 0.2, 0.18), salt=0)
        for seed in range(5):
            torch.manual_seed(seed)
            out_a, out_b, _ = aug(image_a, image_b)
            assert torch.equal(out_a, norm(image_a)) and torch.equal(out_b, norm(image_b))
    assert DateDraw().identity


@pytest.mark.parametrize("nuisance", NUISANCES)
def test_each_nuisance_alone(nuisance: str) -> None:
    image = _image(3)
    plain = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    alone = PairAugment(replace(OFF, **{nuisance: ONLY[nuisance]}), **ZERO_ONE, salt=0)
    rng = np.random.default_rng(11)
    changed = 0
    for _ in range(10):
        first, second = alone.draw(rng)
        for draw in (first, second):
            neutral = {f.name for f in fields(DateDraw) if getattr(draw, f.name) == getattr(DateDraw(), f.name)}
            # Only the fields of this nuisance may leave their neutral value.
            own = {"illumination": {"gain", "contrast"}, "colour": {"channel_gain", "channel_offset"},
                   "season": {"season"}, "haze": {"haze", "haze_level"}, "shift": {"shift"},
                   "noise": {"noise", "noise_seed"}}[nuisance]
            assert {f.name for f in fields(DateDraw)} - own <= neutral
            out = alone.apply(image, draw)
            assert out.min() >= 0 and out.max() <= 1
            changed += not torch.allclose(out, plain, atol=1e-6)
    assert changed >= 10  # p=1: every date (shift: one date per pair)
    # Switching the nuisance off (strength 0) gives the image back; the other draws stay as they were.
    assert all(d.identity for d in PairAugment(OFF, salt=0).draw(np.random.default_rng(11)))
    without = PairAugment(replace(ALL_ON, **{nuisance: 0}), salt=0).draw(np.random.default_rng(11))
    with_all = PairAugment(ALL_ON, salt=0).draw(np.random.default_rng(11))
    for a, b in zip(without, with_all, strict=True):
        assert a.gain == b.gain or nuisance == "illumination"
        assert a.haze == b.haze or nuisance == "haze"


def test_colour_nuisances_move_the_colours_the_documented_way() -> None:
    grey = np.full((8, 8, 3), 128, np.uint8)
    aug = PairAugment(OFF, **ZERO_ONE, salt=0)
    mean_rgb = lambda t: t.mean((1, 2)).numpy()  # noqa: E731
    assert np.allclose(mean_rgb(aug.apply(grey, DateDraw(gain=1.2))), 128 * 1.2 / 255, atol=1 / 255)
    dry, green = mean_rgb(aug.apply(grey, DateDraw(season=1.0))), mean_rgb(aug.apply(grey, DateDraw(season=-1.0)))
    assert dry[0] > dry[1] > dry[2] and green[1] > green[0] and green[1] > green[2]
    hazy = aug.apply(_image(4), DateDraw(haze=0.5, haze_level=0.8))
    assert hazy.std() < aug.apply(_image(4), DateDraw()).std() * 0.6 and hazy.mean() > 0.6
    low = aug.apply(_image(4), DateDraw(contrast=0.5))
    assert float(low.std()) == pytest.approx(float(aug.apply(_image(4), DateDraw()).std()) * 0.5, rel=0.02)
    noisy = aug.apply(grey, DateDraw(noise=0.05, noise_seed=3))
    assert float((noisy - 128 / 255).std()) == pytest.approx(0.05, rel=0.2)


def test_the_colour_map_runs_on_one_blas_thread_with_the_same_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy's BLAS threads fought torch's on 2 cores (10 ms an image instead of 0.65): the colour map's products
    run on one BLAS thread, restored afterwards, and give the numbers of numpy's default threading."""
    blas = lambda: [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]  # noqa: E731
    before = blas()
    with _one_blas_thread():
        assert blas() and set(blas()) == {1}
    assert blas() == before
    image = np.random.default_rng(7).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    draw = DateDraw(gain=1.1, contrast=0.8, channel_gain=(1.05, 0.9, 1.0), channel_offset=(0.02, 0.0, -0.01))
    aug = PairAugment(OFF, salt=0)
    one_thread = aug.apply(image, draw)
    monkeypatch.setattr(augment, "_one_blas_thread", contextlib.nullcontext)  # numpy's default threading (0.5.0)
    assert torch.equal(one_thread, aug.apply(image, draw))


def test_misregistration_shifts_one_date_by_the_drawn_pixels() -> None:
    image_a, image_b = _image(5, 16), _image(6, 16)
    aug = PairAugment(replace(OFF, shift=3), **ZERO_ONE, salt=0)
    seen = set()
    for seed in range(40):
        draw_a, draw_b = aug.draw(np.random.default_rng(seed))
        shifted_date = 0 if draw_a.shift != (0, 0) else 1
        dy, dx = (draw_a, draw_b)[shifted_date].shift
        assert (dy, dx) != (0, 0) and max(abs(dy), abs(dx)) <= 3 and isinstance(dy, int)
        seen.add((dy, dx))
        outs = [aug.apply(image_a, draw_a), aug.apply(image_b, draw_b)]
        source = (image_a, image_b)[shifted_date]
        rows = np.clip(np.arange(16) - dy, 0, 15)
        cols = np.clip(np.arange(16) - dx, 0, 15)
        expected = source[rows][:, cols]  # out[y, x] = in[clip(y - dy), clip(x - dx)]
        assert torch.equal(outs[shifted_date], torch.from_numpy(expected).permute(2, 0, 1).float() / 255)
        other = (image_a, image_b)[1 - shifted_date]
        assert torch.equal(outs[1 - shifted_date], torch.from_numpy(other).permute(2, 0, 1).float() / 255)
    assert len(seen) > 10  # many offsets of the 48 possible
    ramp = np.arange(5)[None, :, None].repeat(2, 0)  # [2, 5, 1] columns 0..4
    assert shift_image(ramp, 0, 2)[0, :, 0].tolist() == [0, 0, 0, 1, 2]
    assert shift_image(ramp, 0, -1)[0, :, 0].tolist() == [1, 2, 3, 4, 4]
    assert shift_image(ramp, 0, 0) is ramp


# ------------------------------------------------------------------------------------------------ options
@pytest.mark.parametrize(("kwargs", "option"), [
    ({"p": 1.5}, "augment.p"), ({"p": -0.1}, "augment.p"), ({"illumination": 1.0}, "augment.illumination"),
    ({"colour": -0.1}, "augment.colour"), ({"season": 2.0}, "augment.season"), ({"haze": 1.5}, "augment.haze"),
    ({"noise": "a"}, "augment.noise"), ({"shift": 1.5}, "augment.shift"), ({"shift": 65}, "augment.shift"),
    ({"shift": -1}, "augment.shift"), ({"views": -1}, "augment.views"), ({"sources": ["cd", "xx"]}, "augment.sources"),
    ({"scale": {"xx": 2.0}}, "augment.scale"), ({"scale": {"joint": -1.0}}, "augment.scale.joint"),
    ({"scale": {"joint": "2"}}, "augment.scale.joint"), ({"scale": {"joint": 5.0}}, "augment.scale.joint"),
])
def test_bad_options_are_one_line_errors_naming_the_option(kwargs: dict, option: str) -> None:
    with pytest.raises(ValueError, match=option.replace(".", r"\.")) as err:
        AugmentConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_a_bad_option_on_the_command_line_is_one_line(capsys: pytest.CaptureFixture) -> None:
    assert main(["validate", "--config", TINY, "--data.augment.haze", "1.5"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "augment.haze must be a number in [0, 1], got 1.5" in err


def test_a_scaled_source_draws_the_same_numbers_times_its_factor() -> None:
    config = AugmentConfig(enabled=True, p=1.0, scale={"joint": 2.0, "cc": 1.0})
    assert config.for_source("cd") is config and config.for_source("cc") is config
    joint = config.for_source("joint")
    assert (joint.illumination, joint.colour, joint.season, joint.haze, joint.noise, joint.shift) == pytest.approx(
        (0.4, 0.1, 0.6, 0.6, 0.06, 4))
    assert joint.scale == {} and joint.p == 1.0
    plain, strong = PairAugment(config, salt=0), PairAugment(joint, salt=0)
    for seed in range(5):
        (a, b), (sa, sb) = plain.draw(np.random.default_rng(seed)), strong.draw(np.random.default_rng(seed))
        for d, sd in ((a, sa), (b, sb)):
            assert sd.gain - 1 == pytest.approx(2 * (d.gain - 1)) and sd.haze == pytest.approx(2 * d.haze)
            assert sd.season == pytest.approx(2 * d.season) and sd.noise == pytest.approx(2 * d.noise)
            assert sd.channel_offset == pytest.approx(tuple(2 * v for v in d.channel_offset))
    assert max(max(map(abs, strong.draw(np.random.default_rng(s))[i].shift)) for s in range(50) for i in (0, 1)) > 2


# ------------------------------------------------------------------------------------------------ the data module
def test_the_data_module_augments_training_splits_only(synth_root: Path, synth_config, tmp_path: Path) -> None:
    plain = _data(synth_root, synth_config, tmp_path, None)
    aug = _data(synth_root, synth_config, tmp_path, ALL_ON)
    assert plain.augment == AugmentConfig() and not plain.augment.enabled
    assert aug.hparams["augment"]["haze"] == ONLY["haze"]
    for source in ("cd", "cc", "joint"):
        assert aug.dataset(source, "train").augment is not None
        assert plain.dataset(source, "train").augment is None
        for split in ("val", "test"):
            assert aug.dataset(source, split).augment is None
            sample, reference = aug.dataset(source, split)[0], plain.dataset(source, split)[0]
            assert torch.equal(sample["image_a"], reference["image_a"]) and "transient" not in sample
    # Training pairs: the images change, the labels do not.
    for source in ("joint", "cc", "cd"):
        for index in range(3):
            torch.manual_seed(index)  # the same LEVIR-CD crop and flips in both
            sample = aug.dataset(source, "train")[index]
            torch.manual_seed(index)
            reference = plain.dataset(source, "train")[index]
            assert not torch.equal(sample["image_a"], reference["image_a"])
            assert not torch.equal(sample["image_b"], reference["image_b"])
            assert sample["captions"] == reference["captions"] and sample["changed"] == reference["changed"]
            assert sample["name"] == reference["name"] and sample["transient"] is True
            if source != "cc":
                assert torch.equal(sample["mask"], reference["mask"])
    batch = collate_change_samples([aug.dataset("joint", "train")[i] for i in range(3)])
    assert batch["transient"].tolist() == [True] * 3
    assert "transient" not in collate_change_samples([plain.dataset("joint", "train")[0]])
    # Off by default, and only the sources asked for.
    only_cd = _data(synth_root, synth_config, tmp_path, replace(ALL_ON, sources=["cd"]))
    assert only_cd.dataset("cd", "train").augment is not None and only_cd.dataset("cc", "train").augment is None
    assert _data(synth_root, synth_config, tmp_path, replace(ALL_ON, enabled=False)).dataset(
        "cd", "train").augment is None
    # A scaled source draws with its own strengths; the others share one augmenter.
    scaled = _data(synth_root, synth_config, tmp_path, replace(ALL_ON, scale={"joint": 2.0}))
    joint, cd, cc = (scaled.dataset(s, "train").augment for s in ("joint", "cd", "cc"))
    assert cd is cc and cd.config.haze == ALL_ON.haze and joint.config.haze == pytest.approx(2 * ALL_ON.haze)


def _fit_with_cache(dm: SemanticCCDataModule, tmp_path: Path) -> SemanticCCTask:
    torch.manual_seed(0)
    model = build_semantic_cc("mini", img_size=64, tokenizer=dm.tokenizer_path, cc_head={"max_new_tokens": 6})
    task = SemanticCCTask(model, evaluation=EvalConfig(log_samples=0), cache_frozen_features=True)
    trainer = L.Trainer(accelerator="cpu", devices=1, default_root_dir=str(tmp_path), logger=False, max_epochs=1,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, use_distributed_sampler=False, enable_checkpointing=False)
    trainer.fit(task, datamodule=dm)
    assert trainer.state.finished
    return task


def test_the_feature_cache_keeps_views_and_never_one_off_draws(synth_root: Path, synth_config, tmp_path: Path,
                                                                 ) -> None:
    pairs = synth_config.pairs["train"]
    # One-off draws: encoded at every read, never kept (nothing of phases ii and iii stays in the cache).
    task = _fit_with_cache(_data(synth_root, synth_config, tmp_path, ALL_ON), tmp_path)
    assert len(task.feature_cache) == 0
    # Two fixed views per pair (shared by cc and joint): kept, at most two entries per pair.
    task = _fit_with_cache(_data(synth_root, synth_config, tmp_path, replace(ALL_ON, views=2)), tmp_path)
    assert pairs <= len(task.feature_cache) <= 2 * pairs
    # A batch mixing both: only the kept rows enter the cache, and every row gets its own features.
    dm = _data(synth_root, synth_config, tmp_path, None)
    batch = next(iter(dm.dataloader("cc", "train", shuffle=False)))
    batch["transient"] = torch.tensor([True, False, True, False])
    task.feature_cache.clear()
    task.model.eval()
    out = task.feature_cache.encode(task.model.encoder, batch)
    assert len(task.feature_cache) == 2
    with torch.no_grad():
        fresh = task.model.encoder(batch["image_a"], batch["image_b"])
    assert torch.allclose(out.cc_2, fresh.cc_2, atol=1e-6) and torch.allclose(out.cd_1, fresh.cd_1, atol=1e-6)
