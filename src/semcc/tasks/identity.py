"""What a semcc checkpoint stores besides trainable weights (paper Eq. 1 parts frozen in Sec. IV-C): the identity of
the frozen base weights and the caption tokenizer's files.

A checkpoint keeps only the trainable weights; the frozen ones come back from their files (or a seeded random
build), so a SHA-256 of them is stored and checked on load (:func:`hash_frozen`). The task computes it once per
process, before any sharding: a save costs no hash, whatever the size of the frozen model.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["FINGERPRINT_VERSION", "hash_frozen", "tokenizer_files"]


def tokenizer_files(tokenizer: Any) -> dict[str, bytes]:
    """The files of ``tokenizer.save_pretrained`` as ``{name: bytes}`` (kept in checkpoints)."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}


#: Version of :func:`_hash_frozen`'s digest stored in checkpoints (2: raw bytes in the stored dtype).
FINGERPRINT_VERSION = 2


def hash_frozen(model: torch.nn.Module, trainable: set[str], *, legacy: bool = False) -> str:
    """SHA-256 over the frozen weights of ``model`` (everything in its state dict but ``trainable``).

    Each tensor is hashed as its raw bytes in its stored dtype (no float32 copy; ``legacy``: the float32 copy
    that checkpoints without a ``fingerprint_version`` were hashed with). Meta tensors are skipped.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name in trainable or tensor.device.type == "meta":
            continue
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        t = tensor.detach().cpu()
        if legacy:
            h.update(t.float().contiguous().numpy().tobytes())
        else:
            h.update(str(t.dtype).encode())
            h.update(t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
