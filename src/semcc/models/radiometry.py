"""Relative radiometric normalisation of a bi-temporal pair, before the encoder of Eq. 1 (beyond the paper).

Two acquisitions of one place differ in illumination, sensor gain, haze and season far more than in what changed
(issue 13, "3. Robustness to look-alike changes"). Remote-sensing change detection has long matched the two dates'
radiometry before comparing them (relative radiometric normalisation: each band of one date rescaled to the other's
statistics). :func:`match_radiometry` does such a matching on the normalised images the encoder reads: each date's
channels get, per pair, the mean and standard deviation the two dates have on average, so a global gain, offset or
haze (an affine map of each band) is removed and what remains of the difference is local. The statistics come from
the pair's pseudo-invariant pixels (the classic refinement of relative normalisation): a first pass standardises
each date on all its pixels, the share ``invariant_share`` of pixels on which the two standardised dates differ
least are taken as unchanged, and the second pass measures both dates' mean and standard deviation on those pixels
only, so that a large change (a new bright roof, a cleared field) does not shift the matching of the background.

``BiTemporalSAMEncoder(match_radiometry=True)`` matches every pair it reads, in training and inference alike;
:func:`matching` switches it for a block of code, which is how evaluation and prediction match the pairs of a model
trained without it (``model.evaluation.match_radiometry``, ``Predictor(match_radiometry=)``). On tiny, matching at
evaluation only is the better use: the masks hold up under four times the training nuisance while a model trained
on matched pairs learns less (``benchmarks/README.md``, "Radiometric matching (0.12)"), and the pseudo-invariant pass
keeps within 0.003 of unmatched CD F1 on val where one pass lost 0.006 to 0.014 ("Pseudo-invariant radiometric
matching (0.13)").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["check_share", "match_radiometry", "matching"]

#: Standard deviations under this are treated as this (a flat band is left flat, not blown up).
MIN_STD = 1e-6
#: The share of a pair's pixels whose statistics are matched: those on which the standardised dates differ least.
INVARIANT_SHARE = 0.8


def check_share(invariant_share: float) -> float:
    """``invariant_share`` as a float, or a ``ValueError`` naming it when it is not in ``(0, 1]``."""
    if not 0 < invariant_share <= 1:
        raise ValueError(f"invariant_share must be in (0, 1], got {invariant_share}")
    return float(invariant_share)


def _moments(x: torch.Tensor, weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation (correction 1) of ``[B, C, H, W]`` over ``H, W``, on the pixels where
    ``weight`` (``[B, 1, H, W]``, 0 or 1) is 1 if given."""
    if weight is None:
        return x.mean((-2, -1), keepdim=True), x.std((-2, -1), keepdim=True).clamp_min(MIN_STD)
    n = weight.sum((-2, -1), keepdim=True)
    mean = (x * weight).sum((-2, -1), keepdim=True) / n
    var = ((x - mean).square() * weight).sum((-2, -1), keepdim=True) / (n - 1).clamp_min(1)
    return mean, var.sqrt().clamp_min(MIN_STD)


def match_radiometry(image_a: torch.Tensor, image_b: torch.Tensor,
                     invariant_share: float = INVARIANT_SHARE) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, C, H, W]`` pairs -> the same pairs with each image's channels moved to the pair's average per-channel
    mean and standard deviation, measured on the pair's ``invariant_share`` of pixels on which the two dates,
    standardised, differ least (``1``: on all pixels, one pass). Statistics in float32; the result has the inputs'
    dtype."""
    if image_a.shape != image_b.shape:
        raise ValueError(f"image_a {tuple(image_a.shape)} and image_b {tuple(image_b.shape)} differ")
    check_share(invariant_share)
    dates = [x.float() for x in (image_a, image_b)]
    stats = [_moments(x) for x in dates]
    if invariant_share < 1:
        a, b = ((x - m) / s for x, (m, s) in zip(dates, stats, strict=True))
        distance = (a - b).square().sum(1).flatten(1)  # [B, H*W]
        k = max(1, round(invariant_share * distance.shape[1]))
        threshold = distance.kthvalue(k, dim=1, keepdim=True).values
        invariant = (distance <= threshold).to(a.dtype).view(a.shape[0], 1, *a.shape[-2:])
        stats = [_moments(x, invariant) for x in dates]
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
