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
      augment: {enabled: true, views: 2}

and on the command line ``--data.cd.crop_size 64`` or ``--data.augment.haze 0.3``. A group left out takes its defaults.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from semcc.data.levir import LEVIR_CC_MEAN, LEVIR_CC_STD
from semcc.strategies import SOURCES

__all__ = [
    "AugmentConfig",
    "CDCropConfig",
    "EvalDataConfig",
    "LoaderConfig",
    "PhaseConfig",
    "Source",
    "binary_mask_class",
]

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
        rotate: beyond the paper: random 90-degree rotations of training crops (with ``flip``, the eight symmetries).
        swap: beyond the paper: the two dates of half of the training crops exchanged (the binary change mask is
            the same either way).
        positive_fraction: share of training crops placed around a changed pixel (default 0: all uniform).
        cache_images: keep decoded tiles in memory (each tile is read for many crops).
    """

    crop_size: int = 256
    samples_per_tile: int = 4
    flip: bool = True
    rotate: bool = False
    swap: bool = False
    positive_fraction: float = 0.0
    cache_images: bool = False


@dataclass(frozen=True)
class PhaseConfig:
    """How the training loader draws the phases of the strategy (:class:`~semcc.data.sampler.PhaseBatchSampler`).

    Args:
        seed: seed of the per-epoch shuffling of the training phases (the same on every rank).
        repeats: passes over each training source per epoch (default 1), e.g. ``{"cc": 4}`` makes phase ii of
            ``three_stage`` read D_cc four times per epoch.
        batch_size: beyond the paper: per-source batch sizes that replace ``data.batch_size`` in training, e.g.
            ``{"cd": 4}``: phase i takes twice the steps of half the crops (its crops per epoch do not change;
            the learning-rate schedule counts the steps of every phase).
        allow_missing: run a strategy without the phases whose source is not configured (e.g. three-stage
            without LEVIR-MCI); a warning names them. Default: such a configuration is an error, so that an
            experiment never changes silently.
    """

    seed: int = 0
    repeats: dict[str, int] = field(default_factory=dict)
    batch_size: dict[str, int] = field(default_factory=dict)
    allow_missing: bool = False

    def __post_init__(self) -> None:
        for name in ("repeats", "batch_size"):
            if unknown := [s for s in getattr(self, name) if s not in SOURCES]:
                raise ValueError(f"phases.{name} has unknown sources {unknown}; choose from {list(SOURCES)}")
        if bad := {s: b for s, b in self.batch_size.items() if int(b) < 1}:
            raise ValueError(f"phases.batch_size must be at least 1, got {bad}")


@dataclass(frozen=True)
class AugmentConfig:
    """Look-alike (non-)change augmentations of the training pairs (:mod:`semcc.data.augment`; beyond the paper:
    issue 13, "3. Robustness to look-alike changes").

    The two dates of a pair get independent draws of illumination, colour shift, season, haze, misregistration
    (one date shifted) and sensor noise; masks and captions are kept, so the model learns that these are not
    changes. Applied to the training split of ``sources`` only (validation, test and prediction read the pairs as
    they are), on top of the nuisance SynthLEVIR renders itself (``synth.nuisance``). Off by default (the paper
    has none); ``configs/tiny.yaml`` turns it on with these default strengths: gain, colour shift, tint and noise
    about as SynthLEVIR renders them at ``nuisance`` 1 (twice tiny's 0.5), misregistration up to 2 px (as it renders
    from 0.75 on), plus haze, which SynthLEVIR does not render.

    The frozen-feature cache (``model.cache_frozen_features``, :mod:`semcc.tasks.feature_cache`), which keeps the
    encoder's output per pair while phases ii and iii leave the encoder frozen, recognises a pair by its name and
    pixel sums. An augmented pair is never served the features of another version of itself, and augmentation
    is never switched off for it: a one-off draw (``views: 0``, and every LEVIR-CD crop) is flagged
    ``transient`` and encoded at every read without being stored; with ``views: N`` each LEVIR-CC / LEVIR-MCI
    pair has N fixed augmented versions (seeded by its name and the view), one picked at random per read, which
    the cache stores like any pair: the encoder then runs N times per pair and phase run instead of once, and
    the cache holds N times the pairs. ``configs/tiny.yaml`` augments every source with ``views: 2`` (phase i's
    LEVIR-CD crops fresh at every read, two fixed versions of each caption and joint pair).

    Args:
        enabled: apply the augmentations (default: off).
        sources: the training sources augmented (default: every configured one of ``cd``, ``cc``, ``joint``).
        p: probability that a nuisance is applied to a date (``shift``: to the pair), each drawn on its own.
        illumination: brightness gain and contrast, each ``1 + U(-s, s)`` (in [0, 1)).
        colour: per-channel gain ``1 + U(-s, s)`` and offset ``U(-s, s)`` on the 0-1 scale (in [0, 1)).
        season: blend weight ``U(0, s)`` toward a dry yellow-brown or a green tone of the pixel's grey (in [0, 1]).
        haze: blend weight ``U(0, s)`` toward a bright grey (in [0, 1]).
        shift: misregistration, ONE date shifted by up to this many whole pixels per axis, edges replicated
            (0 to 64).
        noise: Gaussian noise of standard deviation ``U(0, s)`` on the 0-1 scale (in [0, 1]).
        views: 0 (default): a fresh draw at every read; N > 0: N fixed augmented versions per LEVIR-CC /
            LEVIR-MCI pair (LEVIR-CD crops are always fresh), so that the frozen-feature cache can keep them.
        scale: per-source factors on the strengths (``illumination``, ``colour``, ``season``, ``haze``, ``noise``;
            ``shift`` rounded to whole pixels), e.g. ``{joint: 2.0}``: phase iii's joint pairs, where the caption
            branch learns what is no change, drawn twice as strong while phase i's crops keep the strengths above.
            A source left out takes factor 1; a scaled strength must stay within its bounds. A scaled source gets
            its own draws (with ``views``, its own fixed versions).
    """

    enabled: bool = False
    sources: list[Source] | None = None
    p: float = 0.5
    illumination: float = 0.2
    colour: float = 0.05
    season: float = 0.3
    haze: float = 0.3
    shift: int = 2
    noise: float = 0.03
    views: int = 0
    scale: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sources is not None and (unknown := [s for s in self.sources if s not in SOURCES]):
            raise ValueError(f"augment.sources has unknown sources {unknown}; choose from {list(SOURCES)}")
        if unknown := [s for s in self.scale if s not in SOURCES]:
            raise ValueError(f"augment.scale has unknown sources {unknown}; choose from {list(SOURCES)}")
        for source, factor in self.scale.items():
            if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor >= 0:
                raise ValueError(f"augment.scale.{source} must be a number of at least 0, got {factor!r}")
        bounds = {"p": (0.0, 1.0, True), "illumination": (0.0, 1.0, False), "colour": (0.0, 1.0, False),
                  "season": (0.0, 1.0, True), "haze": (0.0, 1.0, True), "noise": (0.0, 1.0, True)}
        for name, (low, high, closed) in bounds.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    low <= value <= high if closed else low <= value < high):
                raise ValueError(f"augment.{name} must be a number in [{low:g}, {high:g}{']' if closed else ')'}, "
                                 f"got {value!r}")
        for name, high in (("shift", 64), ("views", None)):
            value = getattr(self, name)
            whole = isinstance(value, int) and not isinstance(value, bool)
            if not whole or value < 0 or (high is not None and value > high):
                limit = f"0 to {high}" if high is not None else "at least 0"
                raise ValueError(f"augment.{name} must be a whole number, {limit}, got {value!r}")
        for source in self.scale:
            try:
                self.for_source(source)
            except ValueError as err:
                raise ValueError(f"augment.scale.{source}: {err}") from None

    def for_source(self, source: str) -> AugmentConfig:
        """The strengths ``source`` is augmented with: these, times ``scale[source]`` (itself when unscaled)."""
        factor = float(self.scale.get(source, 1.0))
        if factor == 1.0:
            return self
        strengths = {name: getattr(self, name) * factor for name in ("illumination", "colour", "season", "haze",
                                                                      "noise")}
        return replace(self, **strengths, shift=round(self.shift * factor), scale={})


def binary_mask_class(sources: Iterable[str], joint_mask_mode: str = "building") -> str:
    """What a binary mask trained on ``sources`` marks: ``"building"`` when every mask source labels building change
    (LEVIR-CD always; LEVIR-MCI, ``joint``, with ``joint_mask_mode: building``), else ``"change"`` (any change)."""
    return "change" if "joint" in sources and joint_mask_mode != "building" else "building"
