"""The change-detection loss L_cd of paper Eq. 9 (L = L_cc + lambda L_cd; L_cc is the caption head's own)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["cd_loss"]


def cd_loss(logits: torch.Tensor, mask: torch.Tensor, *, dice: bool = False) -> torch.Tensor:
    """L_cd of Eq. 9: per-pixel binary cross-entropy of ``logits`` ``[B, 1, H, W]`` (or cross-entropy of
    ``[B, K, H, W]`` for multi-class masks) against ``mask`` ``[B, H, W]``; ``dice`` adds a soft Dice loss of
    the change class(es), computed over the batch."""
    logits = logits.float()
    binary = logits.shape[1] == 1
    if binary:
        loss = F.binary_cross_entropy_with_logits(logits[:, 0], mask.float())
    else:
        loss = F.cross_entropy(logits, mask.long())
    if dice:
        if binary:
            probs, target = torch.sigmoid(logits), mask.float().unsqueeze(1)
        else:
            probs = logits.softmax(1)[:, 1:]
            target = F.one_hot(mask.long(), logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].float()
        dims = (0, 2, 3)
        overlap = (2 * (probs * target).sum(dims) + 1) / (probs.sum(dims) + target.sum(dims) + 1)
        loss = loss + (1 - overlap).mean()
    return loss
