"""Test-time augmentation of the change mask (Eq. 6, beyond the paper): the CD head's logits averaged over views of
the pair.

A view is one of the eight symmetries of the square (flips and transposes), applied alike to both dates; the mask
logits of each view are mapped back by the inverse symmetry and averaged. A symmetry of the pixel grid is one of the
patch grid too (the image side is a multiple of the patch), so every view sees the same patches, rearranged.
``flips`` takes the four flips a CD model trained with flips has seen (tiny's ``data.cd.flip``); ``d4`` adds the
transposes (square inputs only). :meth:`semcc.models.semantic_cc.SemanticCC.mask_logits_tta` runs them.
"""

from __future__ import annotations

import torch

__all__ = ["MASK_TTA", "check_mask_tta", "invert_view", "view"]

#: Each ``mask_tta`` setting -> its views: ``t`` transposes (H <-> W), ``h`` flips left-right, ``v`` top-bottom,
#: applied in that order; ``""`` is the pair as it is.
MASK_TTA: dict[str, tuple[str, ...]] = {
    "none": ("",),
    "flips": ("", "h", "v", "hv"),
    "d4": ("", "h", "v", "hv", "t", "th", "tv", "thv"),
}


def check_mask_tta(setting: str, where: str = "mask_tta") -> tuple[str, ...]:
    """The views of ``setting``; a ``ValueError`` naming ``where`` and the choices if it is not one."""
    if setting not in MASK_TTA:
        raise ValueError(f"{where} must be one of {sorted(MASK_TTA)}, got {setting!r}")
    return MASK_TTA[setting]


def view(x: torch.Tensor, name: str) -> torch.Tensor:
    """``x`` (``[..., H, W]``) seen through view ``name`` (``t``, then ``h``, then ``v``)."""
    if "t" in name:
        x = x.transpose(-1, -2)
    if "h" in name:
        x = x.flip(-1)
    if "v" in name:
        x = x.flip(-2)
    return x


def invert_view(x: torch.Tensor, name: str) -> torch.Tensor:
    """The inverse of :func:`view`: ``invert_view(view(x, name), name)`` is ``x``."""
    if "v" in name:
        x = x.flip(-2)
    if "h" in name:
        x = x.flip(-1)
    if "t" in name:
        x = x.transpose(-1, -2)
    return x
