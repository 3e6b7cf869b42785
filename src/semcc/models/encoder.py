"""Bi-temporal SAM encoder, paper Sec. III-B, Eq. 1 (``F_1, F_2 = Phi_sam-enc(I_1, I_2)``) and Eq. 2-3.

SAM's ViT image encoder (``segment-anything``'s ``ImageEncoderViT``) is built at the input size (256 px
for LEVIR-CC, a 16 x 16 token grid) and shared by both times: the two images run as one batch of ``2B``.
LoRA (``peft``; paper Sec. IV-C: r = 16, alpha = 32, dropout = 0.05, no bias) sits on every block's
``attn.qkv``; all SAM weights are frozen (the ViT's sizes and the LoRA settings are the typed sub-configs
:class:`~semcc.models.configs.SAMViTConfig` and :class:`~semcc.models.configs.LoRAConfig`). A
:class:`~semcc.models.bcsf.BCSF` (Eq. 2-3) follows each global-attention block (ViT-L: 5, 11, 17, 23), splitting the
``2B`` batch into the two times, filtering, and joining them again. Option ``bcsf_blocks="window"`` puts it
after the windowed blocks (the authors' public code), a list picks blocks, ``"none"`` switches it off
(Table II).

Two output tiers (end of Sec. III-B): ``F_cd`` after SAM's neck (``c -> 256``) for change detection and
``F_cc`` at the raw width ``c`` for captioning, both ``[B, C, H/16, W/16]`` per time.

Attention: ``attn_impl="sdpa"`` runs SAM's attention through PyTorch's ``scaled_dot_product_attention`` with
the decomposed relative-position terms as an additive bias (the same arithmetic as SAM's own ``Attention``,
which ``attn_impl="eager"`` keeps), so fused GPU kernels can serve it. ``"auto"`` (default) uses SDPA on CUDA
and SAM's code elsewhere: on the CPU the biased SDPA measured slower (tiny encoder, batch 8, forward and
backward: 1.18 s against 0.88 s on 2 cores).

Checkpoints: :func:`load_sam_image_encoder` reads an official ``sam_vit_{b,l,h}_*.pth`` (keys
``image_encoder.*``), resizes ``pos_embed`` (bicubic) and the global blocks' ``rel_pos_h/w`` (linear) from
the 1024 px pre-training grid to the input grid, and raises :class:`CheckpointError` naming the file and
keys when anything is missing, unexpected or mismatched (BCSF and LoRA are the only expected-missing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from semcc.models._sam import ImageEncoderViT, SAMAttention, get_rel_pos
from semcc.models.bcsf import BCSF
from semcc.models.checkpoints import CheckpointError, assign_tensors, format_keys, is_meta, load_state_file
from semcc.models.configs import SAM_LORA, SAM_VIT_L, LoRAConfig, SAMViTConfig, as_config
from semcc.models.radiometry import INVARIANT_SHARE, check_share, match_radiometry

__all__ = [
    "ATTN_IMPLS",
    "BiTemporalFeatures",
    "BiTemporalSAMEncoder",
    "SDPAAttention",
    "load_sam_image_encoder",
    "resolve_bcsf_blocks",
]

#: How SAM's attention runs: SDPA on CUDA and SAM's code elsewhere (default), SDPA always, or SAM's code.
ATTN_IMPLS = ("auto", "sdpa", "eager")


class SDPAAttention(SAMAttention):
    """SAM's ``Attention`` computed by ``F.scaled_dot_product_attention``; same parameters and state dict.

    SAM adds the decomposed relative positions (``rel_h`` over rows, ``rel_w`` over columns, both from the
    unscaled queries) to ``q k^T * scale`` before the softmax; here they are the ``attn_mask`` bias. With
    ``sdpa_on_cpu`` false, inputs off CUDA take SAM's own code.
    """

    sdpa_on_cpu = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (x.is_cuda or self.sdpa_on_cpu):
            return super().forward(x)
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # [B, heads, hw, d]
        bias = None
        if self.use_rel_pos:
            r_q = q.reshape(b * self.num_heads, h, w, -1)
            rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, get_rel_pos(h, h, self.rel_pos_h))
            rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, get_rel_pos(w, w, self.rel_pos_w))
            bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, self.num_heads, h * w, h * w)
            bias = bias.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        out = out.view(b, self.num_heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
        return self.proj(out)


@dataclass
class BiTemporalFeatures:
    """The two tiers of Sec. III-B for both times, each ``[B, C, h, w]`` (``h = H / patch``)."""

    cd_1: torch.Tensor  # F_cd^1: after SAM's neck, C = out_chans (256)
    cd_2: torch.Tensor
    cc_1: torch.Tensor  # F_cc^1: raw ViT width C = c
    cc_2: torch.Tensor


def resolve_bcsf_blocks(
    bcsf_blocks: str | Sequence[int], depth: int, global_attn_indexes: Sequence[int]
) -> tuple[int, ...]:
    """``"global"`` -> the global-attention blocks, ``"window"`` -> the others, ``"none"`` -> (), or a list."""
    if isinstance(bcsf_blocks, str):
        if bcsf_blocks == "global":
            return tuple(sorted(global_attn_indexes))
        if bcsf_blocks == "window":
            return tuple(i for i in range(depth) if i not in set(global_attn_indexes))
        if bcsf_blocks == "none":
            return ()
        raise ValueError(f"bcsf_blocks must be 'global', 'window', 'none' or a list of ints, got {bcsf_blocks!r}")
    blocks = tuple(sorted({int(i) for i in bcsf_blocks}))
    bad = [i for i in blocks if not 0 <= i < depth]
    if bad:
        raise ValueError(f"bcsf_blocks {bad} outside 0..{depth - 1}")
    return blocks


class BiTemporalSAMEncoder(nn.Module):
    """SAM ViT + LoRA on qkv + BCSF, shared by both times (Eq. 1-3).

    Args:
        img_size: input size (square); the ViT is built for it (``pos_embed`` at ``img_size / vit.patch_size``).
        vit: SAM ViT sizes (:class:`~semcc.models.configs.SAMViTConfig`; default ViT-L).
        bcsf_blocks: ``"global"`` (paper), ``"window"`` (authors' code), ``"none"`` or a list of block ids.
        bcsf_mlp_ratio: FFN width of the BCSF relative to ``c``.
        lora: LoRA on the ViT (:class:`~semcc.models.configs.LoRAConfig`; default r 16 on ``attn.qkv``;
            ``r=0``: no LoRA, ViT fully frozen).
        checkpoint: official SAM ``.pth`` to load (``None``: random init). Not read on the meta device.
        train_sam_neck: make SAM's neck (``c -> 256``) trainable (paper: frozen with the rest of SAM).
        train_vit: make every SAM weight trainable (neck included), LoRA or not. For random-init presets
            (tiny): a frozen random ViT carries little to adapt. Paper: ``False``.
        attn_impl: ``"auto"`` (SDPA on CUDA, SAM's code elsewhere), ``"sdpa"`` or ``"eager"``; same results.
        match_radiometry: beyond the paper: match the two dates' per-channel mean and standard deviation before the
            ViT, in training and inference (:func:`semcc.models.radiometry.match_radiometry`; relative radiometric
            normalisation against illumination, haze and sensor shifts). Paper: ``False``.
        invariant_share: the share of each pair's pixels whose statistics the matching uses, those on which the
            standardised dates differ least (pseudo-invariant pixels; ``1``: all pixels, 0.12.0's one pass). Not a
            weight: a run's configuration (or ``encoder.invariant_share``) may change it for any checkpoint.

    ``vit`` and ``lora`` take their config or a mapping of its fields, merged onto the default.
    """

    def __init__(
        self,
        img_size: int = 256,
        vit: SAMViTConfig = SAM_VIT_L,
        bcsf_blocks: str | list[int] = "global",
        bcsf_mlp_ratio: float = 1.0,
        lora: LoRAConfig = SAM_LORA,
        checkpoint: str | None = None,
        train_sam_neck: bool = False,
        train_vit: bool = False,
        attn_impl: str = "auto",
        match_radiometry: bool = False,
        invariant_share: float = INVARIANT_SHARE,
    ) -> None:
        super().__init__()
        vit = as_config(SAMViTConfig, vit, SAM_VIT_L)
        lora = as_config(LoRAConfig, lora, SAM_LORA)
        if img_size % vit.patch_size:
            raise ValueError(f"img_size {img_size} must be a multiple of vit.patch_size {vit.patch_size}")
        self.vit_config, self.lora_config = vit, lora
        self.img_size = img_size
        self.patch_size = vit.patch_size
        self.embed_dim = vit.embed_dim
        self.out_chans = vit.out_chans
        self.global_attn_indexes = vit.global_attn_indexes
        self.vit = ImageEncoderViT(
            img_size=img_size,
            patch_size=vit.patch_size,
            in_chans=3,
            embed_dim=vit.embed_dim,
            depth=vit.depth,
            num_heads=vit.num_heads,
            mlp_ratio=vit.mlp_ratio,
            out_chans=vit.out_chans,
            qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            act_layer=nn.GELU,
            use_abs_pos=True,
            use_rel_pos=True,
            rel_pos_zero_init=True,
            window_size=vit.window_size,
            global_attn_indexes=self.global_attn_indexes,
        )
        if attn_impl not in ATTN_IMPLS:
            raise ValueError(f"attn_impl must be one of {ATTN_IMPLS}, got {attn_impl!r}")
        self.attn_impl = attn_impl
        self.match_radiometry = bool(match_radiometry)
        self.invariant_share = check_share(invariant_share)
        if attn_impl != "eager":
            for block in self.vit.blocks:
                block.attn.__class__ = SDPAAttention  # same parameters, forward through SDPA
                block.attn.sdpa_on_cpu = attn_impl == "sdpa"
        if checkpoint is not None and not is_meta(self.vit):
            load_sam_image_encoder(self.vit, checkpoint)
        self.checkpoint = checkpoint
        grid = img_size // vit.patch_size
        self.bcsf_block_ids = resolve_bcsf_blocks(bcsf_blocks, vit.depth, self.global_attn_indexes)
        self.bcsf = nn.ModuleDict(
            {str(i): BCSF(vit.embed_dim, grid * grid, bcsf_mlp_ratio) for i in self.bcsf_block_ids}
        )
        for p in self.vit.parameters():
            p.requires_grad_(False)
        self.lora_r = lora.r
        if lora.r > 0:
            config = LoraConfig(
                r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias="none",
                target_modules=list(lora.targets),
            )
            inject_adapter_in_model(config, self.vit)
            for name, p in self.vit.named_parameters():
                p.requires_grad_("lora_" in name)
        if train_sam_neck or train_vit:
            for p in (self.vit if train_vit else self.vit.neck).parameters():
                p.requires_grad_(True)

    @property
    def grid_size(self) -> int:
        """Tokens per side, ``img_size / patch_size``."""
        return self.img_size // self.patch_size

    def prepare(self, image_a: torch.Tensor, image_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pair as the ViT reads it: shapes checked, radiometry matched when ``match_radiometry`` is on."""
        if image_a.shape != image_b.shape:
            raise ValueError(f"image_a {tuple(image_a.shape)} and image_b {tuple(image_b.shape)} differ")
        if image_a.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(
                f"the encoder was built for {self.img_size} px inputs, got {tuple(image_a.shape[-2:])}"
            )
        if self.match_radiometry:
            image_a, image_b = match_radiometry(image_a, image_b, self.invariant_share)
        return image_a, image_b

    def forward(self, image_a: torch.Tensor, image_b: torch.Tensor) -> BiTemporalFeatures:
        """``image_a``/``image_b``: normalised ``[B, 3, img_size, img_size]``; returns both tiers per time."""
        image_a, image_b = self.prepare(image_a, image_b)
        b = image_a.shape[0]
        x = self.vit.patch_embed(torch.cat([image_a, image_b], dim=0))  # [2B, h, w, c]
        if self.vit.pos_embed is not None:
            x = x + self.vit.pos_embed
        for i, block in enumerate(self.vit.blocks):
            x = block(x)
            key = str(i)
            if key in self.bcsf:
                f1, f2 = self.bcsf[key](x[:b], x[b:])
                x = torch.cat([f1, f2], dim=0)
        f_cc = x.permute(0, 3, 1, 2)  # [2B, c, h, w]
        f_cd = self.vit.neck(f_cc)  # [2B, 256, h, w]
        return BiTemporalFeatures(cd_1=f_cd[:b], cd_2=f_cd[b:], cc_1=f_cc[:b], cc_2=f_cc[b:])


def _resize_pos_embed(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``[1, Hs, Ws, C] -> [1, H, W, C]`` by bicubic interpolation (SAM-style)."""
    if tuple(pos.shape[1:3]) == grid:
        return pos
    x = F.interpolate(pos.permute(0, 3, 1, 2).float(), size=grid, mode="bicubic", align_corners=False)
    return x.permute(0, 2, 3, 1).to(pos.dtype)


def _resize_rel_pos(rel: torch.Tensor, length: int) -> torch.Tensor:
    """``[Ls, d] -> [length, d]`` by linear interpolation (as SAM's ``get_rel_pos`` does on the fly)."""
    if rel.shape[0] == length:
        return rel
    x = F.interpolate(rel.t().unsqueeze(0).float(), size=length, mode="linear", align_corners=False)
    return x.squeeze(0).t().to(rel.dtype)


def load_sam_image_encoder(vit: nn.Module, path: str | Path, *, prefix: str = "image_encoder.") -> None:
    """Load an official SAM checkpoint's image encoder into ``vit`` (an ``ImageEncoderViT``, LoRA or not).

    ``pos_embed`` is resized bicubically and the global blocks' ``rel_pos_h/w`` linearly to ``vit``'s grid.
    LoRA-wrapped layers are matched through peft's ``base_layer`` names; ``lora_*`` parameters are the
    only expected-missing entries. Raises :class:`CheckpointError` (file, missing/unexpected/mismatched).
    """
    raw = load_state_file(path)
    state = {k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)}
    if not state:
        raise CheckpointError(
            f"{path}: no '{prefix}*' keys (not a SAM checkpoint?); found e.g. {format_keys(list(raw)[:5], 5)}"
        )
    own = {}
    for name, tensor in vit.state_dict(keep_vars=True).items():
        if "lora_" in name:
            continue
        own[name.replace(".base_layer.", ".")] = (name, tensor)
    if "pos_embed" in state and "pos_embed" in own:
        target = own["pos_embed"][1]
        state["pos_embed"] = _resize_pos_embed(state["pos_embed"], tuple(target.shape[1:3]))
    for i, block in enumerate(getattr(vit, "blocks", [])):
        if getattr(block, "window_size", 0) != 0:
            continue
        for axis in ("h", "w"):
            key = f"blocks.{i}.attn.rel_pos_{axis}"
            if key in state and key in own and state[key].ndim == 2:
                target = own[key][1]
                if state[key].shape[1] == target.shape[1]:
                    state[key] = _resize_rel_pos(state[key], target.shape[0])
    tensors = {k: t for k, (_, t) in own.items()}
    assign_tensors(tensors, state, path=path, what="SAM image encoder", prefix=prefix)
