"""SemanticCCDataModule: the three training sets of Sec. III-F (D_cd, D_cc, D_cd-cc) as Lightning loaders.

Sources (any of which may be absent):

* ``cd``: LEVIR-CD layout (:class:`~semcc.data.levir.LevirCDDataset`), random crops for training and a
  covering grid of crops for evaluation; labels y_cd of Eq. 9.
* ``cc``: LEVIR-CC layout (:class:`~semcc.data.levir.LevirCCDataset`), captions y_cc of Eq. 9.
* ``joint``: LEVIR-MCI layout (:class:`~semcc.data.levir.LevirMCIDataset`), pairs with both labels.
* ``folder`` (prediction only, ``eval_data.predict_root``): a plain folder ``DIR/A/NAME``, ``DIR/B/NAME`` of
  pairs without labels (:class:`~semcc.data.folder.PairFolderDataset`), resized to ``cd.crop_size``.

When ``synth_root`` is set, missing roots default to the SynthLEVIR folders under it (``LEVIR-CC`` for cc
and joint, ``LEVIR-CD`` for cd) and the data set is generated there on first use (once; reused after;
a file lock makes concurrent processes, e.g. DDP ranks, wait for one generator).

Batches are :class:`~semcc.data.batch.ChangeBatch` dictionaries (:mod:`semcc.data.batch`); with ``augment``,
training batches also carry ``transient`` (a one-off augmented pair, which the frozen-feature cache encodes
without keeping).

The options beyond the roots, ``synth``, ``sources``, ``batch_size``, ``tokenizer_dir`` and ``strategy`` are
grouped in small typed configs (:mod:`semcc.data.options`): ``eval_data``, ``loader``, ``cd``, ``phases``,
``augment`` (look-alike change augmentations of the training pairs, :mod:`semcc.data.augment`; beyond the paper).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from semcc.data.augment import PairAugment
from semcc.data.batch import ChangeBatch, SourceCollate, collate_change_samples
from semcc.data.folder import PairFolderDataset
from semcc.data.levir import (
    LevirCCDataset,
    LevirCDDataset,
    LevirMCIDataset,
    load_levir_cc_captions,
    sentence_text,
)
from semcc.data.options import (
    AugmentConfig,
    CDCropConfig,
    EvalDataConfig,
    LoaderConfig,
    PhaseConfig,
    Source,
    binary_mask_class,
)
from semcc.data.sampler import MultiSourceDataset, PhaseBatchSampler
from semcc.data.synthetic import SynthLEVIRConfig, generate_synth_levir, is_generated
from semcc.data.text import build_word_tokenizer, most_frequent_changed_caption
from semcc.strategies import SOURCES, phases_for

__all__ = [
    "SOURCES",
    "TOKENIZER_STAMP",
    "AugmentConfig",
    "CDCropConfig",
    "ChangeBatch",
    "EvalDataConfig",
    "LoaderConfig",
    "PhaseConfig",
    "SemanticCCDataModule",
    "binary_mask_class",
    "collate_change_samples",
]

#: File in ``tokenizer_dir``: the SHA-256 of the training captions the tokenizer was built from.
TOKENIZER_STAMP = "semcc_captions.sha256"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class SemanticCCDataModule(L.LightningDataModule):
    """Loaders for CD, CC and joint (CD + CC) data; see the module docstring.

    Args:
        cc_root: LEVIR-CC folder (``LevirCCcaptions.json`` + ``images/``).
        cd_root: LEVIR-CD folder (``{train,val,test}/{A,B,label}``).
        joint_root: LEVIR-MCI folder (LEVIR-CC plus ``images/{split}/label``).
        synth_root: generate SynthLEVIR here when missing; unset roots default to its sub-folders.
        synth: the SynthLEVIR arguments (sizes, counts, seed, nuisance); only used with ``synth_root``.
        sources: which sources to use (default: every one whose root is set).
        batch_size: training batch size (every source).
        tokenizer_dir: where semcc builds the word-level tokenizer from the training captions (once; again
            when the training captions change, e.g. SynthLEVIR regenerated with other arguments).
        strategy: the training strategy whose phases ``train_dataloader`` yields (``three_stage``,
            ``two_stage``, ``one_stage``; the configs link it to the task's).
        eval_data: what validation, test and prediction read (:class:`~semcc.data.options.EvalDataConfig`:
            ``sources``, ``batch_size``, ``predict_split``, ``predict_root``).
        loader: how every loader reads samples (:class:`~semcc.data.options.LoaderConfig`: ``num_workers``,
            ``pin_memory``, ``cache_images``, ``mean``, ``std``, ``joint_mask_mode``).
        cd: how LEVIR-CD tiles are cropped (:class:`~semcc.data.options.CDCropConfig`: ``crop_size``,
            ``samples_per_tile``, ``flip``, ``rotate``, ``swap``, ``positive_fraction``, ``cache_images``).
        phases: how the training loader draws the phases (:class:`~semcc.data.options.PhaseConfig`: ``seed``,
            ``repeats``, ``batch_size``, ``allow_missing``).
        augment: look-alike change augmentations of the training pairs (:class:`~semcc.data.options.AugmentConfig`:
            ``enabled``, ``sources``, ``p``, one strength per nuisance, ``views``); training splits only.
    """

    def __init__(
        self,
        cc_root: str | None = None,
        cd_root: str | None = None,
        joint_root: str | None = None,
        *,
        synth_root: str | None = None,
        synth: SynthLEVIRConfig | None = None,
        sources: list[Source] | None = None,
        batch_size: int = 4,
        tokenizer_dir: str | None = None,
        strategy: str = "three_stage",
        eval_data: EvalDataConfig | None = None,
        loader: LoaderConfig | None = None,
        cd: CDCropConfig | None = None,
        phases: PhaseConfig | None = None,
        augment: AugmentConfig | None = None,
    ) -> None:
        super().__init__()
        self.augment = augment if augment is not None else AugmentConfig()
        self._pair_augment: dict[float, PairAugment] = {}  # by augment.scale's factor
        self.eval_data = eval_data if eval_data is not None else EvalDataConfig()
        self.loader = loader if loader is not None else LoaderConfig()
        self.cd = cd if cd is not None else CDCropConfig()
        self.phases = phases if phases is not None else PhaseConfig()
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.synth_root = Path(synth_root).expanduser() if synth_root else None
        self.synth = synth if synth is not None else (SynthLEVIRConfig() if synth_root else None)
        if self.synth_root is not None:
            cc_root = cc_root or str(self.synth_root / "LEVIR-CC")
            joint_root = joint_root or str(self.synth_root / "LEVIR-CC")
            cd_root = cd_root or str(self.synth_root / "LEVIR-CD")
        self.roots: dict[str, Path] = {
            k: Path(v).expanduser() for k, v in (("cd", cd_root), ("cc", cc_root), ("joint", joint_root)) if v
        }
        if sources is not None:
            if unknown := [s for s in sources if s not in SOURCES]:
                raise ValueError(f"unknown sources {unknown}; choose from {list(SOURCES)}")
            if missing := [s for s in sources if s not in self.roots]:
                raise ValueError(f"sources {missing} have no root: set {', '.join(m + '_root' for m in missing)}")
            self.roots = {k: v for k, v in self.roots.items() if k in sources}
        if self.eval_data.predict_root:  # not a training source: ``sources`` lists cd, cc and joint only
            self.roots["folder"] = Path(self.eval_data.predict_root).expanduser()
        if not self.roots:
            raise ValueError("no data: set at least one of cc_root, cd_root, joint_root or synth_root")
        val_sources = self.eval_data.sources
        if val_sources is None:
            val_sources = ["joint"] if "joint" in self.roots else [s for s in ("cc", "cd") if s in self.roots]
        if missing := [s for s in val_sources if s not in self.roots]:
            raise ValueError(
                f"eval_data.sources {missing} are not among the configured sources {list(self.roots)}"
            )
        self.val_sources = list(val_sources)
        self.batch_size = batch_size
        self.eval_batch_size = self.eval_data.batch_size or batch_size
        self.pin_memory = torch.cuda.is_available() if self.loader.pin_memory is None else self.loader.pin_memory
        self.tokenizer_dir = Path(tokenizer_dir).expanduser() if tokenizer_dir else None
        self._tokenizer_checked = False
        self.strategy = strategy
        self._resume: tuple[int, int] | None = None
        self._changed_caption: str | None = None
        self._truths: dict[str, dict[str, Any]] = {}
        self._datasets: dict[tuple[str, str], Dataset] = {}
        groups = {"eval_data": self.eval_data, "loader": self.loader, "cd": self.cd, "phases": self.phases,
                  "augment": self.augment}
        # The roots as resolved above; the option groups as plain mappings (as in YAML).
        self.save_hyperparameters({
            "cc_root": cc_root, "cd_root": cd_root, "joint_root": joint_root, "synth_root": synth_root,
            "sources": sources, "batch_size": batch_size, "tokenizer_dir": tokenizer_dir, "strategy": strategy,
            **{name: asdict(group) for name, group in groups.items()},
        })
        if self.synth is not None:
            self.hparams["synth"] = asdict(self.synth)

    # ------------------------------------------------------------------------------------ preparation
    @property
    def sources(self) -> list[str]:
        """The configured sources, in phase order (cd, cc, joint)."""
        return [s for s in SOURCES if s in self.roots]

    @property
    def binary_mask_class(self) -> str:
        """What a binary change mask of this data marks (the consistency report's name for it, beyond the paper):
        :func:`binary_mask_class` of the configured sources and ``loader.joint_mask_mode``."""
        return binary_mask_class(self.sources, self.loader.joint_mask_mode)

    def ensure_data(self) -> None:
        """Generate SynthLEVIR under ``synth_root`` unless a complete copy is there (safe across processes)."""
        if self.synth_root is None or self.synth is None:
            return
        if is_generated(self.synth_root, self.synth):
            return
        with _file_lock(self.synth_root.with_name(self.synth_root.name + ".lock")):
            if not is_generated(self.synth_root, self.synth):
                generate_synth_levir(self.synth_root, self.synth, overwrite=True)

    @property
    def tokenizer_path(self) -> str | None:
        """The word-level tokenizer directory, built from the training captions on first use and rebuilt when
        they change (``tokenizer_dir/semcc_captions.sha256`` records what it was built from).

        ``None`` when no ``tokenizer_dir`` is configured (the LLM's own tokenizer is used). Reading this
        property prepares the data first (so a config can link it to the model at instantiation).
        """
        if self.tokenizer_dir is None:
            return None
        if not self._tokenizer_checked:
            self.ensure_data()
            captions = self.training_captions()
            digest = hashlib.sha256("\n".join(captions).encode()).hexdigest()
            stamp = self.tokenizer_dir / TOKENIZER_STAMP
            with _file_lock(self.tokenizer_dir.with_name(self.tokenizer_dir.name + ".lock")):
                built = (self.tokenizer_dir / "tokenizer.json").is_file() and stamp.is_file()
                if not built or stamp.read_text().strip() != digest:
                    build_word_tokenizer(captions, self.tokenizer_dir)
                    stamp.write_text(digest + "\n")
            self._tokenizer_checked = True
        return str(self.tokenizer_dir)

    def training_references(self) -> list[list[str]]:
        """The reference captions of every training pair of the caption sources (cc, joint; each root once)."""
        refs: list[list[str]] = []
        seen: set[Path] = set()
        for source in ("cc", "joint"):
            root = self.roots.get(source)
            if root is None or root in seen:
                continue
            seen.add(root)
            for entry in load_levir_cc_captions(root / "LevirCCcaptions.json"):
                if entry["split"] == "train":
                    refs.append([sentence_text(s) for s in entry["sentences"]])
        return refs

    def training_captions(self) -> list[str]:
        """Every reference caption of the training split (for the vocabulary)."""
        captions = [c for refs in self.training_references() for c in refs]
        if not captions and ("cc" in self.roots or "joint" in self.roots):
            root = self.roots.get("cc") or self.roots["joint"]
            raise ValueError(f"{root}: no training captions to build a vocabulary from")
        return captions

    def most_frequent_changed_caption(self) -> str | None:
        """The most frequent training caption of changed pairs (the oracle-constant floor of the reports);
        ``None`` without caption data."""
        if self._changed_caption is None:
            refs = self.training_references()
            if not any(refs):
                return None
            self._changed_caption = most_frequent_changed_caption(refs)
        return self._changed_caption

    def semantic_truth(self, split: str) -> tuple[dict[str, Any], str] | None:
        """Ground-truth claims of the caption pairs of ``split`` and where they come from, for the semantic
        caption scores (:func:`semcc.metrics.truth.load_truth`: SynthLEVIR events or LEVIR-MCI masks); None
        when the caption source has neither."""
        from semcc.metrics.truth import load_truth, truth_source

        root = self.roots.get("joint") or self.roots.get("cc")
        if root is None or (source := truth_source(root, split)) is None:
            return None
        if split not in self._truths:
            self._truths[split] = load_truth(root, split) or {}
        return self._truths[split], source

    def prepare_data(self) -> None:
        self.ensure_data()
        _ = self.tokenizer_path

    # ---------------------------------------------------------------------------------------- datasets
    def dataset(self, source: str, split: str) -> Dataset:
        """The dataset of ``source`` (``cd``, ``cc``, ``joint``) for ``split`` (built once, then cached)."""
        if source not in self.roots:
            raise ValueError(f"source {source!r} is not configured (configured: {self.sources})")
        key = (source, split)
        if key not in self._datasets:
            self.ensure_data()
            loader, cd = self.loader, self.cd
            root, norm = self.roots[source], {"mean": tuple(loader.mean), "std": tuple(loader.std)}
            augment = self._augmenter(source, split)
            if source == "folder":
                ds: Dataset = PairFolderDataset(root, size=cd.crop_size, **norm)
            elif source == "cc":
                ds = LevirCCDataset(root, split, cache_images=loader.cache_images, augment=augment, **norm)
            elif source == "joint":
                ds = LevirMCIDataset(root, split, mask_mode=loader.joint_mask_mode, cache_images=loader.cache_images,
                                     augment=augment, **norm)
            else:
                train = split == "train"
                ds = LevirCDDataset(
                    root,
                    split,
                    crop_size=cd.crop_size,
                    mode="random" if train else "grid",
                    samples_per_tile=cd.samples_per_tile if train else 1,
                    flip=cd.flip and train,
                    rotate=cd.rotate and train,
                    swap=cd.swap and train,
                    positive_fraction=cd.positive_fraction if train else 0.0,
                    cache_images=cd.cache_images,
                    augment=augment,
                    **norm,
                )
            self._datasets[key] = ds
        return self._datasets[key]

    def _augmenter(self, source: str, split: str) -> PairAugment | None:
        """The training augmentation of ``source`` (one per strength, shared by the sources that draw with it, so
        that a pair read by ``cc`` and ``joint`` has the same views unless ``augment.scale`` sets them apart);
        ``None`` off the training split, for other sources, or when disabled."""
        config = self.augment
        wanted = config.sources if config.sources is not None else SOURCES
        if not config.enabled or split != "train" or source not in wanted:
            return None
        factor = float(config.scale.get(source, 1.0))
        if factor not in self._pair_augment:
            self._pair_augment[factor] = PairAugment(config.for_source(source), self.loader.mean, self.loader.std)
        return self._pair_augment[factor]

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"],
                  "predict": [self.eval_data.predict_split]}
        for split in splits.get(stage or "fit", ["train", "val"]):
            sources = self.sources if split == "train" else self.val_sources
            if stage == "predict":
                sources = [self._predict_source]
            for source in sources:
                self.dataset(source, split)

    # ----------------------------------------------------------------------------------------- loaders
    def dataloader(self, source: str, split: str, *, shuffle: bool | None = None) -> DataLoader:
        """A loader of one source and split; training loaders shuffle, none drops a sample.

        Evaluation loaders are sharded over ranks (``DistributedSampler`` without shuffling) when
        ``torch.distributed`` is initialised; the caption metric drops the padding duplicates by name.
        """
        train = split == "train"
        dataset = self.dataset(source, split)
        sampler = None
        if not train and torch.distributed.is_available() and torch.distributed.is_initialized():
            sampler = DistributedSampler(dataset, shuffle=False, drop_last=False)
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=(train if shuffle is None else shuffle) if sampler is None else False,
            sampler=sampler,
            num_workers=self.loader.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.loader.num_workers > 0,
            collate_fn=SourceCollate(source),
        )

    def detection_protocol(self, split: str) -> str | None:
        """How change detection is scored on ``split``: which data set, how many tiles or pairs, at what size.

        Published LEVIR-CD numbers differ by up to a point between scoring whole 1024 px tiles and 256 px
        crops, so reports say which. ``None`` when no evaluated source has masks.
        """
        parts = []
        for source in self.val_sources:
            if source == "cd":
                ds = self.dataset("cd", split)
                assert isinstance(ds, LevirCDDataset)
                (h, w), crop = ds.tile_size, ds.crop_size or max(ds.tile_size)
                overlap = "non-overlapping" if h % crop == 0 and w % crop == 0 else (
                    "the last row and column shifted inward, so overlapping pixels count twice")
                parts.append(
                    f"LEVIR-CD {split} ({self.roots['cd']}): {len(ds.tiles)} tiles of {w}x{h} px, scored as "
                    f"{len(ds)} crops of {crop}x{crop} px on a grid covering each tile ({overlap}); each crop is "
                    "predicted on its own and the pixels are pooled over the split"
                )
            elif source == "joint":
                ds = self.dataset("joint", split)
                parts.append(
                    f"LEVIR-MCI {split} ({self.roots['joint']}): {len(ds)} pairs, masks as "
                    f"{self.loader.joint_mask_mode!r}, each pair predicted whole, pixels pooled over the split"
                )
        return "; ".join(parts) or None

    def resume_at(self, epoch: int, batches: int) -> None:
        """Make the training loader of ``epoch`` skip its first ``batches`` batches (resuming mid-epoch)."""
        self._resume = (epoch, batches)

    def train_dataloader(self) -> DataLoader:
        """The phases of ``strategy`` in order, one source per batch (:class:`PhaseBatchSampler`).

        Batches carry ``phase`` (``cd``, ``cc``, ``joint`` or ``all``) besides ``source``. The sampler
        shards over ranks itself, so a distributed Trainer needs ``use_distributed_sampler=False``.
        """
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1 and trainer._accelerator_connector.use_distributed_sampler:
            raise ValueError(
                "SemanticCCDataModule shards its phase batches over ranks itself: set "
                "`trainer.use_distributed_sampler: false` (the shipped configs do)"
            )
        phases = phases_for(self.strategy, self.sources, allow_missing=self.phases.allow_missing)
        datasets = {s: self.dataset(s, "train") for p in phases for s in p.sources}
        sampler = PhaseBatchSampler(
            {s: len(d) for s, d in datasets.items()},
            phases,
            self.batch_size,
            shuffle=True,
            seed=self.phases.seed,
            repeats=dict(self.phases.repeats),
            batch_sizes=dict(self.phases.batch_size),
        )
        if trainer is not None:
            sampler.set_epoch(trainer.current_epoch)
        if self._resume is not None:
            epoch, batches = self._resume
            sampler.set_epoch(epoch)
            sampler.skip = batches
            self._resume = None
        return DataLoader(
            MultiSourceDataset(datasets),
            batch_sampler=sampler,
            num_workers=self.loader.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.loader.num_workers > 0,
            collate_fn=collate_change_samples,
        )

    def val_dataloader(self) -> list[DataLoader]:
        return [self.dataloader(source, "val") for source in self.val_sources]

    def test_dataloader(self) -> list[DataLoader]:
        return [self.dataloader(source, "test") for source in self.val_sources]

    @property
    def _predict_source(self) -> str:
        """``folder`` (``eval_data.predict_root``) if set, else ``joint`` (masks and captions), else ``cc``, else the
        first."""
        return next((s for s in ("folder", "joint", "cc") if s in self.roots), self.sources[0])

    def predict_dataloader(self) -> DataLoader:
        return self.dataloader(self._predict_source, self.eval_data.predict_split, shuffle=False)

    def __repr__(self) -> str:
        roots = ", ".join(f"{k}={os.fspath(v)}" for k, v in self.roots.items())
        return f"{type(self).__name__}({roots}, batch_size={self.batch_size})"
