"""The frozen-feature cache: the image encoder's output (F_cd and F_cc of Eq. 1-3) kept per training pair while a
phase leaves the encoder frozen (phases ii and iii of Sec. III-F), so each pair is encoded once per phase run.

A pair is recognised by its name and the sums of its two images' pixels (an augmented copy is a new entry). A pair
the batch flags ``transient`` (a one-off draw of the training augmentations, ``data.augment``, that will not be read
again) is encoded at every read and never kept: neither served another version's features nor stored to fill the
memory; the fixed augmented ``views`` of a pair are kept like any pair (:class:`~semcc.data.options.AugmentConfig`).
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
        and added, except ``transient`` ones (``batch["transient"]``, bool ``[B]``), which are encoded, not kept.

        ``sharded``: the encoder is sharded (FSDP2): every rank must then call its units when any rank does (their
        all-gathers must match), so a rank with nothing to encode runs one cached pair and drops it.
        """
        image_a, image_b = batch["image_a"], batch["image_b"]
        sums = torch.stack([image_a.flatten(1).sum(1), image_b.flatten(1).sum(1)], 1).double().tolist()
        keys = [(name, *s) for name, s in zip(batch["name"], sums, strict=True)]
        flags = batch.get("transient")
        transient = {i for i, t in enumerate(flags.tolist()) if t} if flags is not None else set()
        missing = [i for i, k in enumerate(keys) if i in transient or k not in self._store]
        fresh: dict[int, tuple[torch.Tensor, ...]] = {}
        if any_rank(bool(missing), image_a.device) if sharded else missing:
            rows = missing or [0]
            with torch.no_grad():
                f = encoder(image_a[rows], image_b[rows])
            for j, i in enumerate(missing):
                tiers_i = (f.cd_1[j], f.cd_2[j], f.cc_1[j], f.cc_2[j])
                if i in transient:
                    fresh[i] = tiers_i
                else:
                    self._store[keys[i]] = tiers_i
        tiers = [torch.stack(t) for t in zip(*(fresh.get(i) or self._store[k] for i, k in enumerate(keys)),
                                             strict=True)]
        return BiTemporalFeatures(*tiers)
