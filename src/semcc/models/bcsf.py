"""Bi-temporal change semantic filter (BCSF), paper Sec. III-B, Eq. 2-3.

Eq. 2::

    F_1^sf = FFN^sf(Phi_sf(F_1, F_2))        F_2^sf = FFN^sf(Phi_sf(F_2, F_1))
    F_1^cf = FFN^cf-1(Phi_cf-1(F_1, F_2))    F_2^cf = FFN^cf-2(Phi_cf-2(F_2, F_1))
    F_k = F_k + F_k^sf + F_k^cf,  k in {1, 2}

Eq. 3: ``Phi(x, y) = x * sigmoid(Phi_proj(Phi_cat(x, y)))``.

* Spatial filter (one, shared by both times): ``cat`` along the channel axis gives ``H x W x 2c``,
  ``Phi_proj`` is ``Linear(2c -> 1)``, so the gate is one value per pixel, broadcast over channels.
* Channel filters (one per time): the paper transposes and flattens ``H x W x c -> c x (HW)`` and
  "mirrors" the spatial filter along the channel axis. Reading implemented (the one that type-checks with
  Eq. 3 literally): each of the ``c`` channels is a token whose feature is its ``HW`` responses; ``cat``
  of x and y along that feature axis gives ``c x 2HW`` and ``Phi_proj`` is ``Linear(2HW -> 1)``, one
  gate per channel. This ties the channel filter to the token grid ``HW``; that is no extra constraint
  here because the SAM encoder is built at the input size anyway (its ``pos_embed`` fixes the grid).
* FFNs (three, "parameterised differently"): ``LayerNorm -> Linear(c, r*c) -> GELU -> Linear(r*c, c)``
  applied per pixel on the ``H x W x c`` layout (after transposing the channel-filter output back), so
  that their size does not depend on the resolution.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BCSF", "ChannelFilter", "FeedForward", "SpatialFilter"]


class FeedForward(nn.Module):
    """Per-pixel FFN of Eq. 2 on ``[..., c]`` features."""

    def __init__(self, dim: int, mlp_ratio: float = 1.0) -> None:
        super().__init__()
        hidden = max(1, int(dim * mlp_ratio))
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SpatialFilter(nn.Module):
    """Eq. 3 along space: ``x * sigmoid(Linear(2c -> 1)(cat_c(x, y)))`` on ``[B, H, W, c]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * dim, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.proj(torch.cat([x, y], dim=-1)))


class ChannelFilter(nn.Module):
    """Eq. 3 along channels: ``[B, H, W, c] -> [B, c, HW]``, gate ``Linear(2HW -> 1)``, back to BHWC."""

    def __init__(self, num_tokens: int) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.proj = nn.Linear(2 * num_tokens, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        if h * w != self.num_tokens:
            raise ValueError(
                f"ChannelFilter was built for {self.num_tokens} tokens (the encoder's grid), got {h}x{w}"
            )
        xt = x.reshape(b, h * w, c).transpose(1, 2)  # [B, c, HW]
        yt = y.reshape(b, h * w, c).transpose(1, 2)
        gate = torch.sigmoid(self.proj(torch.cat([xt, yt], dim=-1)))  # [B, c, 1]
        return (xt * gate).transpose(1, 2).reshape(b, h, w, c)


class BCSF(nn.Module):
    """Eq. 2: spatial filter shared by both times, one channel filter per time, three FFNs, residual.

    Args:
        dim: channel width ``c`` of the ViT.
        num_tokens: ``H/16 * W/16``, the number of ViT tokens (for the channel filters' ``Linear(2HW, 1)``).
        mlp_ratio: hidden width of the FFNs relative to ``c``.
    """

    def __init__(self, dim: int, num_tokens: int, mlp_ratio: float = 1.0) -> None:
        super().__init__()
        self.spatial = SpatialFilter(dim)
        self.channel_1 = ChannelFilter(num_tokens)
        self.channel_2 = ChannelFilter(num_tokens)
        self.ffn_sf = FeedForward(dim, mlp_ratio)
        self.ffn_cf_1 = FeedForward(dim, mlp_ratio)
        self.ffn_cf_2 = FeedForward(dim, mlp_ratio)

    def forward(self, f1: torch.Tensor, f2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``f1``, ``f2``: ``[B, H, W, c]`` (SAM's block layout). Returns the filtered pair, same shapes."""
        f1_sf = self.ffn_sf(self.spatial(f1, f2))
        f2_sf = self.ffn_sf(self.spatial(f2, f1))
        f1_cf = self.ffn_cf_1(self.channel_1(f1, f2))
        f2_cf = self.ffn_cf_2(self.channel_2(f2, f1))
        return f1 + f1_sf + f1_cf, f2 + f2_sf + f2_cf
