"""SemanticCCDataModule: sources, batches of any size, SynthLEVIR generated once, the tokenizer."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest
import torch

from semcc.data.datamodule import TOKENIZER_STAMP, SemanticCCDataModule, collate_change_samples
from semcc.data.levir import LevirCCDataset
from semcc.data.options import CDCropConfig, EvalDataConfig, LoaderConfig, PhaseConfig
from semcc.data.text import load_tokenizer, tokenize_caption


def _module(synth_root: Path, synth_config, *, samples_per_tile: int = 4, **kw) -> SemanticCCDataModule:
    cd = CDCropConfig(crop_size=64, samples_per_tile=samples_per_tile)
    return SemanticCCDataModule(synth_root=str(synth_root), synth=synth_config, cd=cd, **kw)


@pytest.mark.parametrize("source", ["cd", "cc", "joint"])
def test_training_batch_of_four_from_each_source(synth_root: Path, synth_config, source: str) -> None:
    dm = _module(synth_root, synth_config, batch_size=4)
    dm.setup("fit")
    assert dm.sources == ["cd", "cc", "joint"]
    batch = next(iter(dm.dataloader(source, "train")))
    assert batch["source"] == source
    assert batch["image_a"].shape == batch["image_b"].shape == (4, 3, 64, 64)
    assert batch["changed"].shape == (4,) and batch["changed"].dtype == torch.bool
    assert len(batch["name"]) == 4
    if source == "cd":
        assert batch["mask"].shape == (4, 64, 64) and batch["captions"] == [[]] * 4
    else:
        assert all(len(refs) == 5 for refs in batch["captions"])
    if source == "joint":
        assert batch["mask"].shape == (4, 64, 64)
        assert set(batch["mask"].unique().tolist()) <= {0, 1}
    if source == "cc":
        assert "mask" not in batch


def test_eval_loaders_and_batch_sizes(synth_root: Path, synth_config) -> None:
    dm = _module(synth_root, synth_config, batch_size=4, eval_data=EvalDataConfig(batch_size=5))
    dm.setup("validate")
    (val,) = dm.val_dataloader()  # joint by default
    sizes = [len(b["name"]) for b in val]
    assert sizes == [5, 1]  # six val pairs, nothing dropped
    dm2 = _module(synth_root, synth_config, eval_data=EvalDataConfig(sources=["cc", "cd"]), batch_size=3)
    dm2.setup("test")
    cc, cd = dm2.test_dataloader()
    assert sum(len(b["name"]) for b in cc) == 6
    assert sum(len(b["name"]) for b in cd) == 16  # one 256 px tile as 4 x 4 crops of 64
    assert len({n for b in cd for n in b["name"]}) == 16
    assert dm2.detection_protocol("test") == (
        f"LEVIR-CD test ({synth_root / 'LEVIR-CD'}): 1 tiles of 256x256 px, scored as 16 crops of 64x64 px on a grid "
        "covering each tile (non-overlapping); each crop is predicted on its own and the pixels are pooled over the "
        "split")
    names = [n for b in dm2.predict_dataloader() for n in b["name"]]
    assert names == LevirCCDataset(synth_root / "LEVIR-CC", "test").names


def test_collate_keeps_every_reference(synth_root: Path, synth_config) -> None:
    ds = _module(synth_root, synth_config).dataset("cc", "train")
    batch = collate_change_samples([ds[0], ds[1], ds[2]], "cc")
    assert batch["captions"] == [ds.captions(i) for i in range(3)]
    with pytest.raises(ValueError, match="mixes samples with and without masks"):
        collate_change_samples([ds[0], _module(synth_root, synth_config).dataset("joint", "train")[0]])


def test_option_groups_reach_the_datasets_and_the_hparams(synth_root: Path, synth_config) -> None:
    dm = SemanticCCDataModule(
        synth_root=str(synth_root), synth=synth_config, batch_size=2,
        eval_data=EvalDataConfig(sources=["cc", "cd"], predict_split="val"),
        loader=LoaderConfig(pin_memory=False, cache_images=True, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                            joint_mask_mode="classes"),
        cd=CDCropConfig(crop_size=32, samples_per_tile=3, flip=False, rotate=True, positive_fraction=0.5,
                        cache_images=True),
    )
    assert dm.eval_batch_size == 2 and dm.pin_memory is False and dm.val_sources == ["cc", "cd"]
    cc, joint = dm.dataset("cc", "train"), dm.dataset("joint", "train")
    assert cc.cache_images and joint.cache_images and joint.mask_mode == "classes"
    assert cc.normalize.mean.flatten().tolist() == [0.0, 0.0, 0.0] and cc.normalize.std.flatten().tolist() == [1.0] * 3
    train, test = dm.dataset("cd", "train"), dm.dataset("cd", "test")
    assert (train.mode, train.crop_size, train.samples_per_tile, train.flip, train.positive_fraction) == (
        "random", 32, 3, False, 0.5)
    assert (train.rotate, train.swap) == (True, False)
    assert (test.mode, test.crop_size, test.samples_per_tile, test.positive_fraction) == ("grid", 32, 1, 0.0)
    assert not test.rotate  # evaluation crops are never turned
    assert train.cache_images and test.cache_images
    assert [n for b in dm.predict_dataloader() for n in b["name"]] == LevirCCDataset(
        synth_root / "LEVIR-CC", "val").names  # joint, the predict source, reads the same pairs as cc
    # Checkpoints and logs keep the groups as plain mappings, as in YAML.
    assert dm.hparams["cd"] == {"crop_size": 32, "samples_per_tile": 3, "flip": False, "rotate": True, "swap": False,
                                "positive_fraction": 0.5, "cache_images": True}
    assert dm.hparams_initial["phases"] == {"seed": 0, "repeats": {}, "batch_size": {}, "allow_missing": False}
    assert dm.hparams["eval_data"]["sources"] == ["cc", "cd"] and dm.hparams["loader"]["joint_mask_mode"] == "classes"
    assert dm.hparams["synth"]["size"] == synth_config.size


def test_phases_allow_missing_runs_the_phases_that_have_data(synth_root: Path, synth_config) -> None:
    def loader(**kw):
        dm = _module(synth_root, synth_config, sources=["cd", "cc"], batch_size=4, samples_per_tile=2, **kw)
        dm.setup("fit")
        return dm.train_dataloader()

    with pytest.raises(ValueError, match=r"\['joint'\] is not configured"):
        loader()
    with pytest.warns(UserWarning, match=r"running only the phases \['cd', 'cc'\]"):
        batches = list(loader(phases=PhaseConfig(allow_missing=True)))
    assert batches[0]["phase"] == "cd" and {b["phase"] for b in batches} == {"cd", "cc"}


def test_synthlevir_generated_once_then_reused(synth_config, tmp_path: Path) -> None:
    root = tmp_path / "data"
    dm = SemanticCCDataModule(synth_root=str(root), synth=synth_config, tokenizer_dir=str(tmp_path / "tok"))
    assert not root.exists()
    dm.prepare_data()
    marker = root / "synthlevir.json"
    assert marker.is_file() and (root / "LEVIR-CC/LevirCCcaptions.json").is_file()
    stamp = marker.stat().st_mtime_ns
    files = sorted(p.relative_to(root) for p in root.rglob("*.png"))
    assert len(files) == (12 + 6 + 6) * 3 + (2 + 1 + 1) * 3
    # A second module (e.g. another DDP rank or a later run) reuses the data and the tokenizer.
    dm2 = SemanticCCDataModule(synth_root=str(root), synth=synth_config, tokenizer_dir=str(tmp_path / "tok"))
    dm2.prepare_data()
    assert marker.stat().st_mtime_ns == stamp
    tok = load_tokenizer(dm2.tokenizer_path)
    ds = dm2.dataset("cc", "train")
    words = {w for i in range(len(ds)) for c in ds.captions(i) for w in c.split()}
    assert words <= set(tok.get_vocab())


def test_tokenizer_path_prepares_data_first(synth_config, tmp_path: Path) -> None:
    dm = SemanticCCDataModule(synth_root=str(tmp_path / "d"), synth=synth_config, tokenizer_dir=str(tmp_path / "t"))
    path = dm.tokenizer_path  # what a config links to the model at instantiation
    assert path is not None and os.path.isfile(os.path.join(path, "tokenizer.json"))
    assert (tmp_path / "d/synthlevir.json").is_file()
    assert SemanticCCDataModule(cc_root=str(tmp_path / "d/LEVIR-CC")).tokenizer_path is None


def test_tokenizer_is_rebuilt_when_the_training_captions_change(synth_config, tmp_path: Path) -> None:
    tok_dir = tmp_path / "tok"
    dm = SemanticCCDataModule(synth_root=str(tmp_path / "d"), synth=synth_config, tokenizer_dir=str(tok_dir))
    first = (Path(dm.tokenizer_path) / "tokenizer.json").read_bytes()
    built = (tok_dir / "tokenizer.json").stat().st_mtime_ns
    # The same captions (another rank, a later run): the tokenizer is reused as it is.
    again = SemanticCCDataModule(synth_root=str(tmp_path / "d"), synth=synth_config, tokenizer_dir=str(tok_dir))
    assert again.tokenizer_path == str(tok_dir)
    assert (tok_dir / "tokenizer.json").stat().st_mtime_ns == built
    # SynthLEVIR regenerated with other arguments: other captions, so the vocabulary is rebuilt from them.
    other = dataclasses.replace(synth_config, seed=synth_config.seed + 1)
    dm2 = SemanticCCDataModule(synth_root=str(tmp_path / "d"), synth=other, tokenizer_dir=str(tok_dir))
    tok = load_tokenizer(dm2.tokenizer_path)
    assert (tok_dir / "tokenizer.json").read_bytes() != first
    assert (tok_dir / TOKENIZER_STAMP).read_text().strip() != ""
    words = {w for c in dm2.training_captions() for w in tokenize_caption(c)}
    assert words <= set(tok.get_vocab())


def test_interrupted_generation_is_redone(synth_config, synth_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    (root / "synthlevir.json").unlink()  # as if the generator had been killed before finishing
    next((root / "LEVIR-CC/images/train/A").iterdir()).unlink()
    dm = SemanticCCDataModule(synth_root=str(root), synth=synth_config)
    dm.prepare_data()
    assert len(dm.dataset("cc", "train")) == 12  # every file is back


def test_configuration_errors(synth_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no data"):
        SemanticCCDataModule()
    with pytest.raises(ValueError, match=r"sources \['cd'\] have no root: set cd_root"):
        SemanticCCDataModule(cc_root=str(synth_root / "LEVIR-CC"), sources=["cd"])
    with pytest.raises(ValueError, match="unknown sources"):
        SemanticCCDataModule(cc_root=str(synth_root / "LEVIR-CC"), sources=["seg"])
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        SemanticCCDataModule(cc_root=str(synth_root / "LEVIR-CC"), batch_size=0)
    dm = SemanticCCDataModule(cc_root=str(synth_root / "LEVIR-CC"))
    with pytest.raises(ValueError, match=r"source 'cd' is not configured \(configured: \['cc'\]\)"):
        dm.dataset("cd", "train")


@pytest.mark.parametrize(
    ("strategy", "phases"),
    [("three_stage", ["cd", "cc", "joint"]), ("two_stage", ["cd", "cc"]), ("one_stage", ["all"])],
)
def test_train_loader_yields_phases_in_order(synth_root: Path, synth_config, strategy: str, phases: list) -> None:
    dm = _module(synth_root, synth_config, batch_size=4, strategy=strategy, samples_per_tile=2)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    seen = [b["phase"] for b in batches]
    assert [p for i, p in enumerate(seen) if i == 0 or seen[i - 1] != p] == phases  # contiguous, in order
    counts = {p: sum(len(b["name"]) for b in batches if b["phase"] == p) for p in phases}
    if strategy == "one_stage":
        assert counts == {"all": 4 + 12 + 12}
        assert {b["source"] for b in batches} == {"cd", "cc", "joint"}
    else:
        assert counts == {p: {"cd": 4, "cc": 12, "joint": 12}[p] for p in phases}
        assert all(b["source"] == b["phase"] for b in batches)
    for b in batches:
        assert ("mask" in b) == (b["source"] != "cc")


def test_phase_sampler_shards_ranks_equally_and_resumes() -> None:
    from semcc.data.sampler import PhaseBatchSampler
    from semcc.strategies import phases_for

    phases = phases_for("three_stage", ["cd", "cc", "joint"])
    lengths = {"cd": 7, "cc": 10, "joint": 5}
    ranks = [list(PhaseBatchSampler(lengths, phases, 2, seed=3, rank=r, world_size=2)) for r in range(2)]
    # Same number of batches and the same phase at every step on both ranks.
    assert len(ranks[0]) == len(ranks[1])
    assert [b[0][2] for b in ranks[0]] == [b[0][2] for b in ranks[1]]
    for source, n in lengths.items():
        seen = {i for r in ranks for b in r for (s, i, _) in b if s == source}
        assert seen == set(range(n))  # every sample of every phase is covered
    one = PhaseBatchSampler(lengths, phases, 2, seed=3, rank=0, world_size=1)
    full = list(one)
    one.skip = 5
    assert list(one) == full[5:] and len(one) == len(full)
    one.set_epoch(1)  # a new epoch reshuffles and forgets the skip
    assert one.skip == 0 and list(one) != full
    with pytest.raises(ValueError, match="reads source 'joint', which has no samples"):
        PhaseBatchSampler({"cd": 1, "cc": 1, "joint": 0}, phases, 2)
    with pytest.raises(ValueError, match="unknown strategy"):
        phases_for("four_stage", ["cd"])


def _three_stage_sampler(lengths: dict[str, int], **options):
    """A three-stage ``PhaseBatchSampler`` of batch size 4 and seed 3 over sources of these ``lengths``."""
    from semcc.data.sampler import PhaseBatchSampler
    from semcc.strategies import phases_for

    return PhaseBatchSampler(lengths, phases_for("three_stage", ["cd", "cc", "joint"]), 4, seed=3, **options)


def test_train_repeats_pass_over_a_source_several_times(synth_root: Path, synth_config) -> None:
    lengths = {"cd": 7, "cc": 10, "joint": 5}
    plain = list(_three_stage_sampler(lengths))
    sampler = _three_stage_sampler(lengths, repeats={"cc": 3})
    batches = list(sampler)
    assert len(batches) == len(sampler) == sampler.phase_batches()[0][1] + 8 + sampler.phase_batches()[2][1]
    cc = [i for b in batches for (s, i, _) in b if s == "cc"]
    assert sorted(cc) == sorted(list(range(10)) * 3) and cc[:10] != cc[10:20]  # each pass reshuffled
    # Other phases are untouched, and so is the cc phase's first pass.
    assert [b for b in batches if b[0][0] != "cc"] == [b for b in plain if b[0][0] != "cc"]
    assert cc[:8] == [i for b in plain for (s, i, _) in b if s == "cc"][:8]
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        _three_stage_sampler(lengths, repeats={"cc": 0})
    dm = _module(synth_root, synth_config, batch_size=4, samples_per_tile=2, phases=PhaseConfig(repeats={"cc": 2}))
    dm.setup("fit")
    counts = {}
    for b in dm.train_dataloader():
        counts[b["phase"]] = counts.get(b["phase"], 0) + len(b["name"])
    assert counts == {"cd": 4, "cc": 24, "joint": 12}
    with pytest.raises(ValueError, match=r"phases\.repeats has unknown sources"):
        _module(synth_root, synth_config, phases=PhaseConfig(repeats={"seg": 2}))


def test_per_source_batch_sizes_change_the_steps_not_the_samples(synth_root: Path, synth_config) -> None:
    lengths = {"cd": 9, "cc": 10, "joint": 5}
    plain = list(_three_stage_sampler(lengths))
    sampler = _three_stage_sampler(lengths, batch_sizes={"cd": 2})
    batches = list(sampler)
    cd = [b for b in batches if b[0][0] == "cd"]
    assert [len(b) for b in cd] == [2, 2, 2, 2, 1]  # 9 crops in batches of 2
    assert sampler.phase_batches() == [("cd", 5), ("cc", 3), ("joint", 2)] and len(sampler) == len(batches) == 10
    # The same samples in the same order; the other phases' batches untouched.
    assert [i for b in cd for (_, i, _) in b] == [i for b in plain if b[0][0] == "cd" for (_, i, _) in b]
    assert [b for b in batches if b[0][0] != "cd"] == [b for b in plain if b[0][0] != "cd"]
    ranks = [list(_three_stage_sampler(lengths, rank=r, world_size=2, batch_sizes={"cd": 2})) for r in range(2)]
    assert [b[0][2] for b in ranks[0]] == [b[0][2] for b in ranks[1]]  # ranks stay in step
    with pytest.raises(ValueError, match="batch sizes must be at least 1"):
        _three_stage_sampler(lengths, batch_sizes={"cd": 0})
    dm = _module(synth_root, synth_config, batch_size=4, samples_per_tile=2, phases=PhaseConfig(batch_size={"cd": 1}))
    dm.setup("fit")
    sizes: dict[str, list[int]] = {}
    for b in dm.train_dataloader():
        sizes.setdefault(b["phase"], []).append(len(b["name"]))
    assert sizes["cd"] == [1, 1, 1, 1] and sum(sizes["cc"]) == 12 and max(sizes["cc"]) == 4
    assert dm.hparams["phases"]["batch_size"] == {"cd": 1}
    with pytest.raises(ValueError, match=r"phases\.batch_size has unknown sources"):
        PhaseConfig(batch_size={"seg": 2})
    with pytest.raises(ValueError, match=r"phases\.batch_size must be at least 1"):
        PhaseConfig(batch_size={"cd": 0})


def test_a_strategy_without_data_for_a_phase_stops_unless_allowed() -> None:
    from semcc.strategies import phases_for

    with pytest.raises(ValueError, match=r"\['joint'\] is not configured \(set data.joint_root\)"):
        phases_for("three_stage", ["cd", "cc"])
    with pytest.raises(ValueError, match=r"data\.phases\.allow_missing: true"):
        phases_for("two_stage", ["cc"])
    with pytest.warns(UserWarning, match=r"running only the phases \['cd', 'cc'\]"):
        assert [p.name for p in phases_for("three_stage", ["cd", "cc"], allow_missing=True)] == ["cd", "cc"]
    assert [(p.name, p.sources) for p in phases_for("caption_only", ["cc"])] == [("caption", ("cc",))]
    assert [p.name for p in phases_for("caption_only", ["cd", "cc", "joint"])] == ["caption"]
