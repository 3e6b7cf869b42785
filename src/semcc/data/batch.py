"""Batches of the data module (Sec. III-F's D_cd, D_cc, D_cd-cc): :class:`ChangeBatch` and its collate function.

A batch is a dictionary of any size from one source: ``image_a``/``image_b`` ``[B, 3, H, W]``, ``mask``
``[B, H, W]`` where the source has masks, ``captions`` (all references of each pair), ``name``, ``changed`` ``[B]``
bool and ``source``; augmented training batches also carry ``transient`` ``[B]`` bool, and the phase sampler's a
``phase`` tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NotRequired, TypedDict

import torch

from semcc.data.levir import ChangeSample

__all__ = ["ChangeBatch", "SourceCollate", "collate_change_samples"]


class ChangeBatch(TypedDict):
    """A collated batch from one source."""

    image_a: torch.Tensor
    image_b: torch.Tensor
    mask: NotRequired[torch.Tensor]
    captions: list[list[str]]
    name: list[str]
    changed: torch.Tensor
    source: str
    phase: NotRequired[str]
    transient: NotRequired[torch.Tensor]


def collate_change_samples(samples: Sequence[ChangeSample], source: str = "") -> ChangeBatch:
    """Stack samples into a :class:`ChangeBatch`, keeping every reference caption of every pair.

    ``source`` defaults to the samples' own ``source`` tag; a ``phase`` tag is carried over too.
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    first = samples[0]
    source = source or str(first.get("source", ""))
    with_mask = ["mask" in s for s in samples]
    if any(with_mask) and not all(with_mask):
        raise ValueError("a batch mixes samples with and without masks; keep one source per loader")
    batch = ChangeBatch(
        image_a=torch.stack([s["image_a"] for s in samples]),
        image_b=torch.stack([s["image_b"] for s in samples]),
        captions=[list(s["captions"]) for s in samples],
        name=[s["name"] for s in samples],
        changed=torch.tensor([bool(s["changed"]) for s in samples]),
        source=source,
    )
    if all(with_mask):
        batch["mask"] = torch.stack([s["mask"] for s in samples])
    if any("transient" in s for s in samples):
        batch["transient"] = torch.tensor([bool(s.get("transient", False)) for s in samples])
    if "phase" in first:
        batch["phase"] = str(first["phase"])
    return batch


class SourceCollate:
    """Picklable collate function that tags batches with their source (for worker processes)."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self, samples: Sequence[ChangeSample]) -> ChangeBatch:
        return collate_change_samples(samples, self.source)
