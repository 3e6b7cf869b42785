"""Relative radiometric normalisation of a bi-temporal pair, before the encoder of Eq. 1 (beyond the paper).

Two acquisitions of one place differ in illumination, sensor gain, haze and season far more than in what changed
(issue 13, "3. Robustness to look-alike changes"). Remote-sensing change detection has long matched the two dates'
radiometry before comparing them (relative radiometric normalisation: each band of one date rescaled to the other's
statistics). :func:`match_radiometry` does the simplest such matching, on the normalised images the encoder reads:
each date's channels get, per pair, the mean and standard deviation the two dates have on average, so a global gain,
offset or haze (an affine map of each band) is removed and what remains of the difference is local.

``BiTemporalSAMEncoder(match_radiometry=True)`` matches every pair it reads, in training and inference alike;
:func:`matching` switches it for a block of code, which is how evaluation and prediction match the pairs of a model
trained without it (``model.evaluation.match_radiometry``, ``Predictor(match_radiometry=)``). On tiny, matching at
evaluation only is the better use: the masks hold up under four times the training nuisance while a model trained
on matched pairs learns less (``benchmarks/README.md``, "Radiometric matching").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["match_radiometry", "matching"]

#: Standard deviations under this are treated as this (a flat band is left flat, not blown up).
MIN_STD = 1e-6


def match_radiometry(image_a: torch.Tensor, image_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, C, H, W]`` pairs -> the same pairs with each image's channels moved to the pair's average per-channel
    mean and standard deviation (computed over ``H, W`` in float32; the result has the inputs' dtype)."""
    if image_a.shape != image_b.shape:
        raise ValueError(f"image_a {tuple(image_a.shape)} and image_b {tuple(image_b.shape)} differ")
    dates = [x.float() for x in (image_a, image_b)]
    stats = [(x.mean((-2, -1), keepdim=True), x.std((-2, -1), keepdim=True).clamp_min(MIN_STD)) for x in dates]
    mean, std = (stats[0][0] + stats[1][0]) / 2, (stats[0][1] + stats[1][1]) / 2
    matched_a, matched_b = ((x - m) / s * std + mean for x, (m, s) in zip(dates, stats, strict=True))
    return matched_a.to(image_a.dtype), matched_b.to(image_b.dtype)


@contextmanager
def matching(encoder: nn.Module, on: bool | None) -> Iterator[None]:
    """Within the block, ``encoder.match_radiometry`` is ``on`` (``None``: left as it is); restored after it."""
    before = encoder.match_radiometry
    if on is not None:
        encoder.match_radiometry = bool(on)
    try:
        yield
    finally:
        encoder.match_radiometry = before
