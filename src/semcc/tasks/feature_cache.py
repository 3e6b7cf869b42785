"""The frozen-feature cache: the image encoder's output (F_cd and F_cc of Eq. 1-3) kept per training pair while a
phase leaves the encoder frozen (phases ii and iii of Sec. III-F), so each pair is encoded once per phase run.

A pair is recognised by its name and the sums of its two images' pixels (an augmented copy is a new entry).
Memory: both tiers of every cached pair, on the device that computed them. The encoder's LoRA dropout is then
drawn once per pair and phase run instead of once per step. The task clears the cache whenever the encoder may
change (a phase that trains it, a loaded checkpoint).
"""

from __future__ import annotations

import torch

from semcc.models.encoder import BiTemporalFeatures
from semcc.tasks.sharding import any_rank

__all__ = ["FrozenFeatureCache"]


class FrozenFeatureCache:
    """``{(pair name, pixel sums): encoder output tiers}`` for the pairs seen since the last :meth:`clear`."""

    def __init__(self) -> None:
        self._store: dict[tuple, tuple[torch.Tensor, ...]] = {}

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        """Forget every pair (the encoder is about to change)."""
        self._store.clear()

    def encode(self, encoder: torch.nn.Module, batch: dict, *, sharded: bool = False) -> BiTemporalFeatures:
        """The encoder's output for ``batch``: cached pairs from the cache, the others encoded (without autograd)
        and added.

        ``sharded``: the encoder is sharded (FSDP2): every rank must then call its units when any rank does (their
        all-gathers must match), so a rank with nothing to encode runs one cached pair and drops it.
        """
        image_a, image_b = batch["image_a"], batch["image_b"]
        sums = torch.stack([image_a.flatten(1).sum(1), image_b.flatten(1).sum(1)], 1).double().tolist()
        keys = [(name, *s) for name, s in zip(batch["name"], sums, strict=True)]
        missing = [i for i, k in enumerate(keys) if k not in self._store]
        if any_rank(bool(missing), image_a.device) if sharded else missing:
            rows = missing or [0]
            with torch.no_grad():
                f = encoder(image_a[rows], image_b[rows])
            for j, i in enumerate(missing):
                self._store[keys[i]] = (f.cd_1[j], f.cd_2[j], f.cc_1[j], f.cc_2[j])
        tiers = [torch.stack(t) for t in zip(*(self._store[k] for k in keys), strict=True)]
        return BiTemporalFeatures(*tiers)
