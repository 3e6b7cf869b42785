"""Sliding-window change masks (paper Eq. 6 at any image size): windows of the model's input size walk over a
full-resolution pair with an overlap, go through encoder, neck and CD head a batch at a time, and their logits are
averaged (cosine or flat weights) and stitched back. Used by :class:`semcc.inference.Predictor` and the GeoTIFF scenes
of :mod:`semcc.geo` (which re-import these names from :mod:`semcc.inference`, their public home).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from semcc.models.semantic_cc import SemanticCC

__all__ = ["cd_window_logits", "sliding_window_logits", "window_starts", "window_weight"]


def window_starts(length: int, window: int, overlap: float) -> list[int]:
    """Start offsets of windows of ``window`` px that cover ``[0, length)`` with at least ``overlap``.

    Windows are ``round(window * (1 - overlap))`` apart; the last one is moved inward to end at ``length``.
    A length not above the window gives ``[0]`` (the image is padded to the window).
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if length <= window:
        return [0]
    stride = max(1, round(window * (1 - overlap)))
    starts = list(range(0, length - window, stride))
    return [*starts, length - window]


def window_weight(size: int, kind: Literal["cosine", "flat"] = "cosine") -> torch.Tensor:
    """``[size, size]`` weights of one window's logits when overlapping windows are averaged.

    ``cosine``: a 2-D Hann window (high in the centre, low at the edges, where a window sees least context),
    floored at 1e-3 so that every pixel a window covers has a positive weight; ``flat``: ones.
    """
    if kind == "flat":
        return torch.ones(size, size)
    if kind != "cosine":
        raise ValueError(f"window weight must be 'cosine' or 'flat', got {kind!r}")
    ramp = torch.sin(math.pi * (torch.arange(size, dtype=torch.float64) + 0.5) / size) ** 2
    return torch.outer(ramp, ramp).clamp_min(1e-3).float()


@torch.no_grad()
def cd_window_logits(model: SemanticCC, image_a: torch.Tensor, image_b: torch.Tensor,
                     mask_tta: str = "none") -> torch.Tensor:
    """Mask logits (Eq. 6) of a batch of normalised windows at the model's input size: encoder, neck and CD head
    (no caption), ``float32 [B, K, S, S]``, averaged over the views of ``mask_tta`` (:mod:`semcc.models.tta`). The
    forward of :func:`sliding_window_logits` and of :func:`semcc.geo.caption_scene`'s strips."""
    if model.cd_head is None:
        raise ValueError("this model has no cd_head: it cannot predict change masks")
    return model.mask_logits_tta(image_a, image_b, mask_tta)


@torch.no_grad()
def sliding_window_logits(
    model: SemanticCC,
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    window: int | None = None,
    overlap: float = 0.25,
    batch_size: int = 8,
    weight: Literal["cosine", "flat"] = "cosine",
    mask_tta: str = "none",
) -> list[torch.Tensor]:
    """Change-mask logits (Eq. 6) of full-size pairs by a sliding window at the model's input size.

    ``pairs``: normalised ``([3, H_i, W_i], [3, H_i, W_i])`` tensors, sizes may differ between pairs. The
    windows of all pairs are cut first and sent through encoder, neck and CD head ``batch_size`` windows per
    forward; each pair's ``[K, H_i, W_i]`` logits are the weighted average of the windows covering a pixel.
    Sides shorter than the window are padded with zeros (the mean colour) and cropped back. ``mask_tta``: each
    window's logits averaged over its views (:func:`cd_window_logits`).
    """
    if model.cd_head is None:
        raise ValueError("this model has no cd_head: it cannot predict change masks")
    window = int(window or model.encoder.img_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = next(model.parameters()).device
    w = window_weight(window, weight).to(device)
    crops: list[tuple[int, int, int]] = []  # (pair, top, left)
    padded: list[tuple[torch.Tensor, torch.Tensor]] = []
    for i, (a, b) in enumerate(pairs):
        h, wd = a.shape[-2:]
        ph, pw = max(0, window - h), max(0, window - wd)
        if ph or pw:
            a, b = F.pad(a, (0, pw, 0, ph)), F.pad(b, (0, pw, 0, ph))
        padded.append((a, b))
        rows, cols = window_starts(h, window, overlap), window_starts(wd, window, overlap)
        crops += [(i, t, left) for t in rows for left in cols]
    acc: list[torch.Tensor | None] = [None] * len(pairs)
    total = [torch.zeros(a.shape[-2:], device=device) for a, _ in padded]
    for start in range(0, len(crops), batch_size):
        chunk = crops[start : start + batch_size]
        image_a = torch.stack([padded[i][0][:, t : t + window, x : x + window] for i, t, x in chunk]).to(device)
        image_b = torch.stack([padded[i][1][:, t : t + window, x : x + window] for i, t, x in chunk]).to(device)
        logits = cd_window_logits(model, image_a, image_b, mask_tta)
        for (i, t, x), logit in zip(chunk, logits, strict=True):
            if acc[i] is None:
                acc[i] = torch.zeros((logit.shape[0], *padded[i][0].shape[-2:]), device=device)
            acc[i][:, t : t + window, x : x + window] += logit * w  # type: ignore[index]
            total[i][t : t + window, x : x + window] += w
    out = []
    for (a, _), s, z in zip(pairs, acc, total, strict=True):
        h, wd = a.shape[-2:]
        assert s is not None
        out.append(s[:, :h, :wd] / z[:h, :wd])
    return out
