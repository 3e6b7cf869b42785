"""SynthLEVIR configuration: :class:`SynthLEVIRConfig` (how many LEVIR-CC / LEVIR-MCI pairs and LEVIR-CD tiles
per split, their size, seed and nuisance strength) and the split names and random-stream ids every pair and tile
is seeded with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["SPLITS", "SynthLEVIRConfig"]

SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_ID = {"train": 0, "val": 1, "test": 2}
_STREAM_CC, _STREAM_CD = 0, 1


@dataclass(frozen=True)
class SynthLEVIRConfig:
    """Arguments of a SynthLEVIR data set.

    Attributes:
        pairs: LEVIR-CC / LEVIR-MCI pairs per split (splits with 0 are left out).
        cd_tiles: LEVIR-CD tiles per split.
        size: side of a pair in pixels (at least 64; object sizes scale with ``size / 256``).
        cd_scale: a LEVIR-CD tile is ``cd_scale * size`` pixels wide, at the same ground resolution.
        seed: base seed.
        nuisance: strength of the non-change nuisances, 0 (none) to 1 (strong): illumination and colour
            shift, seasonal tint, misregistration (0-2 px), sensor noise.
        no_change_ratio: share of unchanged pairs.
        workers: worker processes; 0 = ``os.cpu_count()``, 1 = in this process. Does not change the output.
    """

    pairs: dict[str, int] = field(default_factory=lambda: {"train": 400, "val": 100, "test": 100})
    cd_tiles: dict[str, int] = field(default_factory=lambda: {"train": 16, "val": 4, "test": 4})
    size: int = 256
    cd_scale: int = 4
    seed: int = 0
    nuisance: float = 0.5
    no_change_ratio: float = 0.5
    workers: int = 0

    def __post_init__(self) -> None:
        for name in ("pairs", "cd_tiles"):
            counts = getattr(self, name)
            bad = [k for k in counts if k not in SPLITS]
            if bad:
                raise ValueError(f"SynthLEVIRConfig.{name}: unknown split(s) {bad}; use {list(SPLITS)}")
            if any(int(v) < 0 for v in counts.values()):
                raise ValueError(f"SynthLEVIRConfig.{name}: counts must be >= 0, got {counts}")
        if self.size < 64:
            raise ValueError(f"SynthLEVIRConfig.size must be >= 64, got {self.size}")
        if self.cd_scale < 1:
            raise ValueError(f"SynthLEVIRConfig.cd_scale must be >= 1, got {self.cd_scale}")
        if not 0.0 <= self.nuisance <= 2.0:
            raise ValueError(f"SynthLEVIRConfig.nuisance must be in [0, 2], got {self.nuisance}")
        if not 0.0 <= self.no_change_ratio <= 1.0:
            raise ValueError(f"SynthLEVIRConfig.no_change_ratio must be in [0, 1], got {self.no_change_ratio}")
        if self.workers < 0:
            raise ValueError(f"SynthLEVIRConfig.workers must be >= 0, got {self.workers}")

    def content_dict(self) -> dict[str, Any]:
        """The fields that determine the files (everything but ``workers``), JSON-ready."""
        d = asdict(self)
        d.pop("workers")
        d["pairs"] = {k: int(d["pairs"][k]) for k in SPLITS if int(d["pairs"].get(k, 0)) > 0}
        d["cd_tiles"] = {k: int(d["cd_tiles"][k]) for k in SPLITS if int(d["cd_tiles"].get(k, 0)) > 0}
        return d
