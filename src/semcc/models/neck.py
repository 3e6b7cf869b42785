"""Multi-task semantic aggregation neck, paper Sec. III-C, Eq. 4-5 (``F_cd, F_cc = Phi_agg-neck(F_1, F_2)``).

Eq. 4 (for CC; CD is symmetric)::

    F_cc = cat_batch(F_1, F_2)                      # the two times as one batch of 2B
    F_cc^intra = Phi_att^intra(F_cc)                # a multi-head self-attention Transformer layer
    F_cc = F_cc + Phi_att^inter(F_cc^intra, F_cd^intra)

Eq. 5, ``Phi_att^inter(X_1, X_2)`` bringing task 2 into task 1::

    S = X_1^T W X_2,   Delta X_2 = X_2 * sigmoid(S),   X_1 = sigmoid(Phi_proj(cat_c(X_1, Delta X_2)))

Reading implemented (:class:`InterTaskAttention`, bilinear): ``X_1`` is ``[N, d_1]`` and ``X_2`` is
``[N, d_2]`` on the same token grid (CD: ``d = 256``, CC: ``d = c``). ``*`` is defined as *pixel-wise*
multiplication, so ``S`` must have one value per pixel: ``S_n = x_{1,n}^T W x_{2,n}`` with
``W in R^{d_1 x d_2}`` -- the diagonal of the ``N x N`` matrix ``X_1^T W X_2``. (The full ``N x N``
matrix cannot multiply ``X_2`` pixel-wise.) This bilinear form is what lets two tasks of different
widths be compared. ``Phi_proj`` is the 1x1 convolution ``d_1 + d_2 -> d_1`` ("to its original channel
dimensions"), implemented as a per-token ``Linear``; the final ``sigmoid`` is kept as written, and its
output is the residual added in Eq. 4. The gate runs in both directions (CD -> CC and CC -> CD), each
with its own ``W`` and ``Phi_proj``.

Eq. 4 is implemented as written: the residual base is the unit's input ``F_cc`` (``F_cd``), and the
intra-task layer's output reaches the unit's output through the inter-task attention (both as its
``X_1`` and, for the other task, as its ``X_2``).

Variant ``inter="cross"`` (Table II, Neck_cs): ``Phi_att^inter`` is Transformer cross-attention (pre-norm
multi-head attention, queries from task 1, keys/values from task 2 of width ``d_2``, then an FFN).
``SemanticCC(neck=None)`` is the no-neck ablation.

Inputs/outputs are per-time feature maps ``[B, d, h, w]``; inside, tokens are ``[2B, hw, d]``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CrossTaskAttention", "InterTaskAttention", "MultiTaskNeck", "NeckUnit"]


class InterTaskAttention(nn.Module):
    """Eq. 5 bilinear similarity gate: ``[M, N, d_1]``, ``[M, N, d_2]`` -> ``[M, N, d_1]``.

    ``normalize`` (beyond the paper): ``S`` is taken between the layer-normalised ``x_1`` and ``x_2`` (no affine
    weights), so that it does not grow with the features' norms; ``Delta X_2`` still gates the raw ``X_2``.
    """

    def __init__(self, dim_1: int, dim_2: int, normalize: bool = False) -> None:
        super().__init__()
        self.normalize = normalize
        self.weight = nn.Parameter(torch.empty(dim_1, dim_2))
        nn.init.normal_(self.weight, std=(dim_1 * dim_2) ** -0.5)
        self.proj = nn.Linear(dim_1 + dim_2, dim_1)

    def similarity(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """``S``, one value per pixel: ``[M, N, d_1]``, ``[M, N, d_2]`` -> ``[M, N]``."""
        if self.normalize:
            x1 = nn.functional.layer_norm(x1, x1.shape[-1:])
            x2 = nn.functional.layer_norm(x2, x2.shape[-1:])
        return torch.einsum("mni,ij,mnj->mn", x1, self.weight, x2)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        s = self.similarity(x1, x2).unsqueeze(-1)
        delta_x2 = x2 * torch.sigmoid(s)
        return torch.sigmoid(self.proj(torch.cat([x1, delta_x2], dim=-1)))


class CrossTaskAttention(nn.Module):
    """Neck_cs of Table II: task-1 tokens attend to task-2 tokens (widths may differ)."""

    def __init__(self, dim_1: int, dim_2: int, num_heads: int = 8, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim_1)
        self.norm_kv = nn.LayerNorm(dim_2)
        self.attn = nn.MultiheadAttention(dim_1, num_heads, kdim=dim_2, vdim=dim_2, batch_first=True)
        self.norm_ffn = nn.LayerNorm(dim_1)
        hidden = int(dim_1 * mlp_ratio)
        self.ffn = nn.Sequential(nn.Linear(dim_1, hidden), nn.GELU(), nn.Linear(hidden, dim_1))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(x2)
        y = self.attn(self.norm_q(x1), kv, kv, need_weights=False)[0]
        return y + self.ffn(self.norm_ffn(x1 + y))


def _intra(dim: int, num_heads: int, mlp_ratio: float, dropout: float) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(
        dim, num_heads, int(dim * mlp_ratio), dropout=dropout, activation="gelu", batch_first=True,
        norm_first=True,
    )


class NeckUnit(nn.Module):
    """One multi-task semantic aggregation unit (Eq. 4): intra-task layers, inter-task both ways."""

    def __init__(
        self, cd_dim: int, cc_dim: int, num_heads: int, mlp_ratio: float, inter: str, dropout: float,
        normalize_similarity: bool = False,
    ) -> None:
        super().__init__()
        self.intra_cd = _intra(cd_dim, num_heads, mlp_ratio, dropout)
        self.intra_cc = _intra(cc_dim, num_heads, mlp_ratio, dropout)
        if inter == "bilinear":
            self.inter_cd = InterTaskAttention(cd_dim, cc_dim, normalize_similarity)  # CC -> CD
            self.inter_cc = InterTaskAttention(cc_dim, cd_dim, normalize_similarity)  # CD -> CC
        elif inter == "cross":
            self.inter_cd = CrossTaskAttention(cd_dim, cc_dim, num_heads, mlp_ratio)
            self.inter_cc = CrossTaskAttention(cc_dim, cd_dim, num_heads, mlp_ratio)
        else:
            raise ValueError(f"inter must be 'bilinear' or 'cross', got {inter!r}")

    def forward(self, f_cd: torch.Tensor, f_cc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cd_intra = self.intra_cd(f_cd)
        cc_intra = self.intra_cc(f_cc)
        return f_cd + self.inter_cd(cd_intra, cc_intra), f_cc + self.inter_cc(cc_intra, cd_intra)


class MultiTaskNeck(nn.Module):
    """``num_units`` units of Eq. 4-5 (paper: 3).

    Args:
        cd_dim: width of F_cd (SAM's neck output, 256).
        cc_dim: width of F_cc (the ViT width ``c``).
        num_units: N of Sec. III-C.
        num_heads: heads of the intra-task (and cross) attention; must divide both widths.
        mlp_ratio: FFN width of the Transformer layers.
        inter: ``"bilinear"`` (Eq. 5, paper) or ``"cross"`` (Table II Neck_cs).
        dropout: dropout of the intra-task Transformer layers.
        normalize_similarity: beyond the paper: Eq. 5's ``S`` between layer-normalised features
            (:class:`InterTaskAttention`). As written (False), ``S`` grows with the features' norms in training
            and the gates saturate into switches (``benchmarks/neck_gates.py``).
    """

    def __init__(
        self,
        cd_dim: int = 256,
        cc_dim: int = 1024,
        num_units: int = 3,
        num_heads: int = 8,
        mlp_ratio: float = 2.0,
        inter: str = "bilinear",
        dropout: float = 0.0,
        normalize_similarity: bool = False,
    ) -> None:
        super().__init__()
        self.inter = inter
        self.cd_dim, self.cc_dim = cd_dim, cc_dim
        self.units = nn.ModuleList(
            NeckUnit(cd_dim, cc_dim, num_heads, mlp_ratio, inter, dropout, normalize_similarity)
            for _ in range(num_units)
        )

    def forward(
        self, cd: tuple[torch.Tensor, torch.Tensor], cc: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """``cd = (F_cd^1, F_cd^2)``, ``cc = (F_cc^1, F_cc^2)``, each ``[B, d, h, w]``; same structure out."""
        b, _, h, w = cd[0].shape

        def tokens(pair: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:  # Phi_cat along the batch
            return torch.cat(pair, dim=0).flatten(2).transpose(1, 2)  # [2B, hw, d]

        def maps(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = x.transpose(1, 2).reshape(2 * b, -1, h, w)
            return x[:b], x[b:]

        f_cd, f_cc = tokens(cd), tokens(cc)
        for unit in self.units:
            f_cd, f_cc = unit(f_cd, f_cc)
        return maps(f_cd), maps(f_cc)
