"""Change-detection decoder, paper Sec. III-D, Eq. 6 (``M = Phi_cd-decode(F_cd)``).

Eq. 6::

    {F_i} = Phi_sampling(cat_c(F_cd^1, F_cd^2))      # SimpleFPN: 1/4, 1/8, 1/16, 1/32 of the input
    F_i   = Phi_resize(Phi_conv(F_i))                # conv, then bilinear resize to one scale
    M     = Phi_proj(cat_c({F_i}))                   # 1x1 conv to the class number

``Phi_sampling`` follows ViTDet's SimpleFPN on the stride-16 map: 1/4 by two stride-2 transposed
convolutions (LayerNorm + GELU between), 1/8 by one, 1/16 identity, 1/32 by 2x2 max-pooling; each level
then gets ``Phi_conv`` = 1x1 conv + LayerNorm + 3x3 conv + LayerNorm to ``fpn_channels`` (paper: 512,
"F_i in R^{H/2^{i+1} x W/2^{i+1} x 512}"). The levels are resized to the 1/4 scale, concatenated,
projected by a 1x1 conv and the logits are bilinearly upsampled to the input size.

Beyond the paper, ``fusion="cat_diff"``: the absolute difference ``|F_cd^1 - F_cd^2|`` joins the concatenation and a
1x1 convolution takes the three maps back to the width of two before ``Phi_sampling`` (so the SimpleFPN costs the
same). A linear layer on ``cat_c(F_cd^1, F_cd^2)`` can form the difference but not its magnitude, which is what a
change mask asks where either date may be the brighter; change-detection networks commonly feed it. ``"cat"`` (the
default) is Eq. 6 as written.

Beyond the paper, ``image_detail=d > 0``: a convolutional stem reads the two dates' pixels and their absolute
difference (9 channels) down to a quarter of the input size (two stride-2 3x3 convolutions, each followed by a GELU,
``d`` channels); with the four levels at 1/4 they feed a refinement (1x1 conv to ``fpn_channels``, LayerNorm, GELU,
3x3 conv to the classes) whose output is added to ``Phi_proj``'s logits. Its last convolution starts at zero, so the
head starts as Eq. 6's and learns what the pixels correct. Everything else the head sees comes from the stride-16 ViT
grid, and a tiny model finds the 2-pixel rim of a change about half as often as its inside
(``benchmarks/mask_errors.py``). The head then needs the images: ``forward(f_cd_1, f_cd_2, images=(image_a,
image_b))``, the normalised pairs as the encoder read them (radiometry matched as the encoder matched it:
:meth:`semcc.models.SemanticCC.mask_logits`). ``0`` (the default) is Eq. 6 without it. On tiny it moved val CD F1
within the spread of seeds and made the masks less robust to look-alike changes, so tiny leaves it off
(``benchmarks/README.md``, "Where the change masks go wrong").

Speed (same weights, same outputs to float rounding): the LayerNorms run as one fused ``F.layer_norm`` over the channels
(:class:`ChannelLayerNorm`, SAM's ``LayerNorm2d`` written out in eight element-wise operations before) and the bilinear
resizes as two small matrix products (:func:`resize_bilinear`, ``F.interpolate``'s ``align_corners=False`` weights),
whose backward is a matrix product too where ``F.interpolate``'s scatters on a CPU: the head's forward and backward
at tiny's sizes (8 pairs) took 0.101 s instead of 0.162 on 2 CPU cores (`benchmarks/README.md`, "The CD head's speed
(0.15)").

Classes (Eq. 9 uses binary cross-entropy): ``num_classes=1`` gives one binary change logit per pixel
(train with BCE-with-logits, change = logit > 0); ``num_classes > 1`` gives class logits for
cross-entropy (LEVIR-MCI: 3 = none / road / building).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from semcc.models._sam import LayerNorm2d

__all__ = ["ChangeDetectionHead", "ChannelLayerNorm", "SimpleFPN", "class_mask", "resize_bilinear"]


class ChannelLayerNorm(LayerNorm2d):
    """SAM's ``LayerNorm2d`` (a LayerNorm over the channels of ``[B, C, H, W]``, same parameters and ``eps``) computed
    by the fused ``F.layer_norm`` on a channels-last view."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


@functools.lru_cache(maxsize=64)
def _bilinear_weights(n_in: int, n_out: int) -> torch.Tensor:
    """``[n_out, n_in]`` float64: row ``i`` holds the two weights ``F.interpolate(mode="bilinear",
    align_corners=False)`` gives output ``i`` (source ``(i + 0.5) * n_in / n_out - 0.5``, clamped at 0 and at the last
    input). Cached, so built outside inference mode: a first call under ``torch.inference_mode`` (prediction) must not
    cache a tensor that a later training step cannot save for its backward."""
    with torch.inference_mode(False):
        dst = torch.arange(n_out, dtype=torch.float64)
        src = ((dst + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
        lo = src.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        frac = src - lo
        rows = torch.arange(n_out)
        weights = torch.zeros(n_out, n_in, dtype=torch.float64)
        weights.index_put_((rows, lo), 1 - frac, accumulate=True)
        weights.index_put_((rows, hi), frac, accumulate=True)
    return weights


def resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)`` of ``[..., H, W]`` as ``A_h @ x @ A_w^T``."""
    rows = _bilinear_weights(x.shape[-2], int(size[0])).to(x.device, x.dtype)
    cols = _bilinear_weights(x.shape[-1], int(size[1])).to(x.device, x.dtype)
    return rows @ x @ cols.t()


def class_mask(logits: torch.Tensor) -> torch.Tensor:
    """Class indices from mask logits ``[..., K, H, W]``: ``K = 1`` -> 1 where the change logit is positive,
    else the argmax over the classes. Returns ``int64 [..., H, W]``."""
    if logits.shape[-3] == 1:
        return (logits.select(-3, 0) > 0).long()
    return logits.argmax(-3)


class SimpleFPN(nn.Module):
    """ViTDet SimpleFPN: a stride-16 map ``[B, C, h, w]`` -> four maps at strides 4, 8, 16, 32."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = max(in_channels // 2, 1)
        self.to_4 = nn.Sequential(
            nn.ConvTranspose2d(in_channels, mid, 2, stride=2),
            ChannelLayerNorm(mid),
            nn.GELU(),
            nn.ConvTranspose2d(mid, mid // 2 or 1, 2, stride=2),
        )
        self.to_8 = nn.ConvTranspose2d(in_channels, mid, 2, stride=2)
        self.to_16 = nn.Identity()
        self.to_32 = nn.MaxPool2d(2, stride=2)
        widths = (mid // 2 or 1, mid, in_channels, in_channels)
        self.convs = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(w, out_channels, 1, bias=False),
                ChannelLayerNorm(out_channels),
                nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                ChannelLayerNorm(out_channels),
            )
            for w in widths
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = (self.to_4(x), self.to_8(x), self.to_16(x), self.to_32(x))
        return [conv(level) for conv, level in zip(self.convs, levels, strict=True)]


class ChangeDetectionHead(nn.Module):
    """Eq. 6: ``(F_cd^1, F_cd^2)`` ``[B, in_channels, h, w]`` each -> mask logits ``[B, K, H, W]``.

    Args:
        in_channels: width of each F_cd (256, SAM's neck).
        fpn_channels: width of the SimpleFPN levels (paper 512).
        num_classes: 1 = binary change logit (BCE, Eq. 9); K > 1 = class logits (CE), e.g. 3 for LEVIR-MCI.
        patch_size: stride of F_cd relative to the input (16), used to upsample to the input size.
        fusion: how the two dates' maps enter the SimpleFPN: ``"cat"`` (Eq. 6) or ``"cat_diff"`` (beyond the paper:
            with their absolute difference, projected back to the width of two; see the module docstring).
        image_detail: width of a stride-4 convolutional stem over the two dates' pixels and their difference whose
            maps, with the 1/4 levels, feed a refinement added to the projection's logits (beyond the paper; see the
            module docstring); ``0``: none (Eq. 6), and ``forward`` ignores ``images``.
    """

    def __init__(
        self, in_channels: int = 256, fpn_channels: int = 512, num_classes: int = 1, patch_size: int = 16,
        fusion: str = "cat", image_detail: int = 0,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if fusion not in ("cat", "cat_diff"):
            raise ValueError(f"fusion must be 'cat' or 'cat_diff', got {fusion!r}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.fusion = fusion
        # cat_diff: the absolute difference joins the two maps, and a 1x1 convolution takes the three back to the
        # width of two, so that the SimpleFPN costs what it costs on cat
        self.diff_proj = nn.Conv2d(3 * in_channels, 2 * in_channels, 1) if fusion == "cat_diff" else None
        if image_detail < 0:
            raise ValueError(f"image_detail must be >= 0, got {image_detail}")
        if image_detail and patch_size % 4:
            raise ValueError(f"image_detail needs a patch_size divisible by 4 (the stem's stride), got {patch_size}")
        self.image_detail = image_detail
        self.fpn = SimpleFPN(2 * in_channels, fpn_channels)
        self.proj = nn.Conv2d(4 * fpn_channels, num_classes, 1)
        self.detail: nn.Module | None = None
        self.refine: nn.Module | None = None
        if image_detail:
            self.detail = nn.Sequential(  # no normalisation: a LayerNorm over the channels would scale away the size
                nn.Conv2d(9, image_detail, 3, stride=2, padding=1),  # of the dates' difference at each pixel
                nn.GELU(),
                nn.Conv2d(image_detail, image_detail, 3, stride=2, padding=1),
                nn.GELU(),
            )
            self.refine = nn.Sequential(
                nn.Conv2d(4 * fpn_channels + image_detail, fpn_channels, 1, bias=False),
                ChannelLayerNorm(fpn_channels),
                nn.GELU(),
                nn.Conv2d(fpn_channels, num_classes, 3, padding=1),
            )
            nn.init.zeros_(self.refine[-1].weight)  # a correction of Eq. 6's logits that starts at none
            nn.init.zeros_(self.refine[-1].bias)

    def forward(
        self, f_cd_1: torch.Tensor, f_cd_2: torch.Tensor, images: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Mask logits ``[B, K, patch * h, patch * w]``; ``images`` (the normalised pairs, ``[B, 3, H, W]`` each) are
        needed with ``image_detail`` and ignored without."""
        x = torch.cat([f_cd_1, f_cd_2], dim=1)
        if self.diff_proj is not None:
            x = self.diff_proj(torch.cat([x, (f_cd_1 - f_cd_2).abs()], dim=1))
        levels = self.fpn(x)
        size = levels[0].shape[-2:]
        levels = [levels[0]] + [resize_bilinear(level, size) for level in levels[1:]]
        out_size = (x.shape[-2] * self.patch_size, x.shape[-1] * self.patch_size)
        logits = self.proj(torch.cat(levels, dim=1))
        if self.detail is not None:
            assert self.refine is not None
            if images is None:
                raise ValueError("this CD head has image_detail: call it with images=(image_a, image_b)")
            image_a, image_b = images
            if image_a.shape[-2:] != out_size or image_b.shape != image_a.shape:
                raise ValueError(f"images {tuple(image_a.shape)} / {tuple(image_b.shape)} do not fit F_cd "
                                 f"{tuple(f_cd_1.shape)} (expected [B, 3, {out_size[0]}, {out_size[1]}] each)")
            detail = self.detail(torch.cat([image_a, image_b, (image_a - image_b).abs()], dim=1).to(x.dtype))
            logits = logits + self.refine(torch.cat([*levels, detail], dim=1))
        return resize_bilinear(logits, out_size)
