"""Phase batches for the training strategies of Sec. III-F / Table IV, in the order an epoch runs them.

Which phases a strategy has and which data each reads is the table of :mod:`semcc.strategies`
(:func:`~semcc.strategies.phases_for` turns it into the phases of the configured sources).

:class:`PhaseBatchSampler` yields single-source batches in phase order; every rank gets the same number
of batches per phase in the same order (each rank's share of a phase's shuffled indices is padded to the
same length, like ``DistributedSampler``), so all ranks run the same phase at every step. It can skip the
batches already done in an epoch, so a resumed run continues at the same phase and step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Dataset, Sampler

from semcc.strategies import SOURCES, Phase

__all__ = ["MultiSourceDataset", "PhaseBatchSampler"]


class MultiSourceDataset(Dataset):
    """Several datasets behind one index: ``dataset[(source, index, phase)]`` -> sample tagged with both."""

    def __init__(self, datasets: dict[str, Dataset]) -> None:
        self.datasets = datasets

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets.values())  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[str, int, str]) -> dict:
        source, index, phase = key
        sample = dict(self.datasets[source][index])
        sample["source"], sample["phase"] = source, phase
        return sample


class PhaseBatchSampler(Sampler[list[tuple[str, int, str]]]):
    """Batches of ``(source, index, phase)`` keys: phase after phase, one source per batch.

    Args:
        lengths: number of samples of each source.
        phases: the phases in order (see :func:`phases_for`).
        batch_size: samples per batch (the last batch of a phase may be smaller, equally on all ranks).
        batch_sizes: per-source batch sizes that replace ``batch_size`` for those sources, e.g. ``{"cd": 4}``.
        shuffle: reshuffle every epoch (``set_epoch``) from ``seed``.
        rank, world_size: this process's share; ``None`` reads ``torch.distributed`` when iterating.
        repeats: passes over a source per epoch (default 1 each), e.g. ``{"cc": 4}``: a phase that reads
            that source yields its samples that many times, each pass in a fresh shuffled order.
    """

    def __init__(
        self,
        lengths: dict[str, int],
        phases: Sequence[Phase],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        repeats: dict[str, int] | None = None,
        batch_sizes: dict[str, int] | None = None,
    ) -> None:
        self.lengths, self.phases, self.batch_size = dict(lengths), list(phases), batch_size
        self.repeats = {s: int((repeats or {}).get(s, 1)) for s in self.lengths}
        if bad := {s: r for s, r in self.repeats.items() if r < 1}:
            raise ValueError(f"repeats must be at least 1, got {bad}")
        self.batch_sizes = {s: int((batch_sizes or {}).get(s, batch_size)) for s in self.lengths}
        if bad := {s: b for s, b in self.batch_sizes.items() if b < 1}:
            raise ValueError(f"batch sizes must be at least 1, got {bad}")
        self.shuffle, self.seed = shuffle, seed
        self._rank, self._world = rank, world_size
        self.epoch = 0
        self.skip = 0  # batches of the current epoch already done (resume)
        for phase in self.phases:
            for source in phase.sources:
                if self.lengths.get(source, 0) == 0:
                    raise ValueError(f"phase {phase.name!r} reads source {source!r}, which has no samples")
        self.sampler = self  # Lightning calls sampler.set_epoch through batch_sampler.sampler

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.skip = 0
        self.epoch = epoch

    def _dist(self) -> tuple[int, int]:
        if self._rank is not None and self._world is not None:
            return self._rank, self._world
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _source_batches(self, source: str, phase_index: int) -> list[list[int]]:
        rank, world = self._dist()
        n = self.lengths[source]
        order: list[int] = []
        # Same seed on every rank (no str hashing: it differs between processes).
        base = ((self.seed * 1_000_003 + self.epoch) * 101 + phase_index) * 7 + SOURCES.index(source)
        for r in range(self.repeats[source]):
            if self.shuffle:
                key = base * 1009 + r if r else base  # the first pass keeps the order it had without repeats
                g = torch.Generator().manual_seed(key % (2**62))
                order += torch.randperm(n, generator=g).tolist()
            else:
                order += list(range(n))
        n = len(order)
        per_rank = math.ceil(n / world)
        order += order[: per_rank * world - n]  # pad so every rank gets the same count
        mine = order[rank::world]
        size = self.batch_sizes[source]
        return [mine[i : i + size] for i in range(0, len(mine), size)]

    def phase_batches(self) -> list[tuple[str, int]]:
        """``(phase name, number of batches)`` for this rank, in order."""
        _, world = self._dist()
        per_rank = {s: math.ceil(self.lengths[s] * self.repeats[s] / world) for p in self.phases for s in p.sources}
        return [(p.name, sum(math.ceil(per_rank[s] / self.batch_sizes[s]) for s in p.sources)) for p in self.phases]

    def __iter__(self) -> Iterator[list[tuple[str, int, str]]]:
        produced = 0
        for k, phase in enumerate(self.phases):
            per_source = {s: self._source_batches(s, k) for s in phase.sources}
            # Interleave sources in proportion to their batch counts (one_stage reads several).
            total = sum(len(b) for b in per_source.values())
            cursor = dict.fromkeys(per_source, 0)
            for _ in range(total):
                source = min(
                    (s for s in per_source if cursor[s] < len(per_source[s])),
                    key=lambda s: ((cursor[s] + 0.5) / len(per_source[s]), s),
                )
                batch = per_source[source][cursor[source]]
                cursor[source] += 1
                produced += 1
                if produced <= self.skip:
                    continue
                yield [(source, i, phase.name) for i in batch]

    def __len__(self) -> int:
        """Batches of a whole epoch, skipped ones included: Lightning's loop counts the batches it did
        before a resume as done, so the epoch ends when the remaining ones have been yielded."""
        return sum(n for _, n in self.phase_batches())
