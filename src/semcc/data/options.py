"""The option groups of :class:`~semcc.data.datamodule.SemanticCCDataModule`, one small typed config each.

The data module keeps the options most runs set at its top level (the roots, ``synth``, ``sources``,
``batch_size``, ``tokenizer_dir``, ``strategy``); the rest are grouped here, each documented once. In YAML
(LightningCLI) a group is a nested mapping under ``data:``, e.g.::

    data:
      batch_size: 8
      eval_data: {batch_size: 16}
      loader: {num_workers: 4, cache_images: true}
      cd: {crop_size: 256, samples_per_tile: 160, positive_fraction: 0.5}
      phases: {repeats: {cc: 8, joint: 2}}

and on the command line ``--data.cd.crop_size 64``. A group left out takes its defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from semcc.data.levir import LEVIR_CC_MEAN, LEVIR_CC_STD
from semcc.strategies import SOURCES

__all__ = ["CDCropConfig", "EvalDataConfig", "LoaderConfig", "PhaseConfig", "Source"]

#: A data source (:data:`semcc.strategies.SOURCES`): LEVIR-CD (D_cd), LEVIR-CC (D_cc), LEVIR-MCI (D_cd-cc).
Source = Literal["cd", "cc", "joint"]


@dataclass(frozen=True)
class EvalDataConfig:
    """What validation, test and prediction read.

    Args:
        sources: sources evaluated in validation and test (default: ``joint`` if configured, else ``cc`` and
            ``cd``), one loader each.
        batch_size: validation / test / predict batch size (default: the training ``batch_size``).
        predict_split: the split that ``predict_dataloader`` serves (from ``joint``, else ``cc``).
        predict_root: a plain folder of pairs (``A/NAME``, ``B/NAME``, no captions) that ``predict_dataloader``
            serves instead (:class:`~semcc.data.folder.PairFolderDataset`), resized to ``cd.crop_size`` (the
            model's input size): ``semcc predict --data.eval_data.predict_root DIR``.
    """

    sources: list[Source] | None = None
    batch_size: int | None = None
    predict_split: str = "test"
    predict_root: str | None = None


@dataclass(frozen=True)
class LoaderConfig:
    """How every loader reads samples.

    Args:
        num_workers: DataLoader worker processes.
        pin_memory: pin host memory (default: when CUDA is available).
        cache_images: keep the decoded LEVIR-CC / LEVIR-MCI pairs (and labels) in memory after their first read
            (small data sets read for many epochs; per worker process). LEVIR-CD tiles: ``cd.cache_images``.
        mean: RGB normalisation mean on the 0-1 scale (default: LEVIR-CC statistics), every source.
        std: RGB normalisation standard deviation on the 0-1 scale (default: LEVIR-CC statistics).
        joint_mask_mode: how LEVIR-MCI labels map to classes (``building``, ``change`` or ``classes``; see
            :class:`~semcc.data.levir.LevirMCIDataset`).
    """

    num_workers: int = 0
    pin_memory: bool | None = None
    cache_images: bool = False
    mean: tuple[float, float, float] = LEVIR_CC_MEAN
    std: tuple[float, float, float] = LEVIR_CC_STD
    joint_mask_mode: Literal["building", "change", "classes"] = "building"


@dataclass(frozen=True)
class CDCropConfig:
    """How LEVIR-CD tiles are cut into the model's input (:class:`~semcc.data.levir.LevirCDDataset`).

    Training draws random crops; validation and test read a grid of crops covering each tile.

    Args:
        crop_size: crop size (the model's input size); also the size pairs of ``eval_data.predict_root`` are
            resized to.
        samples_per_tile: random crops per tile and epoch in training.
        flip: random horizontal / vertical flips of training crops.
        positive_fraction: share of training crops placed around a changed pixel (default 0: all uniform).
        cache_images: keep decoded tiles in memory (each tile is read for many crops).
    """

    crop_size: int = 256
    samples_per_tile: int = 4
    flip: bool = True
    positive_fraction: float = 0.0
    cache_images: bool = False


@dataclass(frozen=True)
class PhaseConfig:
    """How the training loader draws the phases of the strategy (:class:`~semcc.data.sampler.PhaseBatchSampler`).

    Args:
        seed: seed of the per-epoch shuffling of the training phases (the same on every rank).
        repeats: passes over each training source per epoch (default 1), e.g. ``{"cc": 4}`` makes phase ii of
            ``three_stage`` read D_cc four times per epoch.
        allow_missing: run a strategy without the phases whose source is not configured (e.g. three-stage
            without LEVIR-MCI); a warning names them. Default: such a configuration is an error, so that an
            experiment never changes silently.
    """

    seed: int = 0
    repeats: dict[str, int] = field(default_factory=dict)
    allow_missing: bool = False

    def __post_init__(self) -> None:
        if unknown := [s for s in self.repeats if s not in SOURCES]:
            raise ValueError(f"phases.repeats has unknown sources {unknown}; choose from {list(SOURCES)}")
