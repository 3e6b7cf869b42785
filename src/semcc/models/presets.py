"""Named sizes of Semantic-CC (paper Eq. 1 with the parts of Sec. III) and a builder.

* ``tiny``: random init, trains on a CPU in minutes: SAM ViT 64 wide, 4 blocks (global 1 and 3), 4 x 4
  windows, F_cd 64 wide; 2 neck units; a 2-layer 64-wide Q-Former with 8 queries; a 2-layer 128-wide Llama
  whose vocabulary is the word-level tokenizer's (``tokenizer=<dir>``). Because nothing is pretrained, the
  tiny caption branch trains its Q-Former and the whole LLM (``freeze_qformer=False``,
  ``llm_finetune="full"``); pass ``cc_head={"freeze_qformer": True, "llm_finetune": "lora"}`` for the
  paper's freezing.
* ``paper`` (Sec. IV-C): SAM ViT-L at 256 px (1024 wide, 24 blocks, 16 heads, global 5/11/17/23, window
  14, LoRA r 16), 3 neck units, SimpleFPN 512, MiniGPT-4's Q-Former (BERT-base: 768, 12 layers, vision
  width 1408, 32 queries), Vicuna-7B (``llm_path``; random Llama-7B shape without it) stored in bf16 (its
  trainable LoRA adapters in float32), end marker ``###``.
  Checkpoint paths default to ``None`` (random init); give them through the part overrides, e.g.
  ``encoder={"checkpoint": "sam_vit_l_0b3195.pth"}``.

Any size between: override any part's keyword arguments. Widths that must agree between parts (F_cd and
F_cc widths, the patch stride) are derived from the encoder unless given explicitly.
"""

from __future__ import annotations

import copy
from typing import Any

from transformers import PreTrainedTokenizerBase

from semcc.models.cc_head import ChangeCaptionHead
from semcc.models.cd_head import ChangeDetectionHead
from semcc.models.encoder import BiTemporalSAMEncoder
from semcc.models.neck import MultiTaskNeck
from semcc.models.semantic_cc import SemanticCC

__all__ = ["PRESETS", "SAM_VIT_SIZES", "build_semantic_cc", "preset_kwargs"]

#: SAM ViT sizes (``segment_anything.build_sam``): width, depth, heads, global-attention blocks.
SAM_VIT_SIZES: dict[str, dict[str, Any]] = {
    "vit_b": {"embed_dim": 768, "depth": 12, "num_heads": 12, "global_attn_indexes": (2, 5, 8, 11)},
    "vit_l": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "global_attn_indexes": (5, 11, 17, 23)},
    "vit_h": {"embed_dim": 1280, "depth": 32, "num_heads": 16, "global_attn_indexes": (7, 15, 23, 31)},
}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "encoder": {
            "img_size": 256, "patch_size": 16, "embed_dim": 64, "depth": 4, "num_heads": 4, "mlp_ratio": 4.0,
            "window_size": 4, "global_attn_indexes": (1, 3), "out_chans": 64, "bcsf_blocks": "global",
            "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05,
        },
        "neck": {"num_units": 2, "num_heads": 4, "mlp_ratio": 2.0, "inter": "bilinear"},
        "cd_head": {"fpn_channels": 32, "num_classes": 1},
        "cc_head": {
            "qformer_hidden_size": 64, "qformer_layers": 2, "qformer_heads": 4, "qformer_intermediate_size": 128,
            "qformer_encoder_width": 64, "num_query_tokens": 8, "cross_attention_frequency": 2,
            "llm_hidden_size": 128, "llm_layers": 2, "llm_heads": 4, "llm_intermediate_size": 256,
            "llm_max_positions": 256, "lora_r": 8, "lora_alpha": 16, "freeze_qformer": False,
            "llm_finetune": "full", "max_new_tokens": 24,
        },
    },
    "paper": {
        "encoder": {
            "img_size": 256, "patch_size": 16, **SAM_VIT_SIZES["vit_l"], "mlp_ratio": 4.0, "window_size": 14,
            "out_chans": 256, "bcsf_blocks": "global", "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05,
        },
        "neck": {"num_units": 3, "num_heads": 8, "mlp_ratio": 2.0, "inter": "bilinear"},
        "cd_head": {"fpn_channels": 512, "num_classes": 1},
        "cc_head": {
            "qformer_hidden_size": 768, "qformer_layers": 12, "qformer_heads": 12,
            "qformer_intermediate_size": 3072, "qformer_encoder_width": 1408, "num_query_tokens": 32,
            "cross_attention_frequency": 2, "llm_hidden_size": 4096, "llm_layers": 32, "llm_heads": 32,
            "llm_intermediate_size": 11008, "vocab_size": 32000, "llm_max_positions": 2048, "lora_r": 16,
            "lora_alpha": 32, "lora_dropout": 0.05, "freeze_qformer": True, "llm_finetune": "lora",
            "llm_dtype": "bfloat16", "end_marker": "###", "max_new_tokens": 40,
        },
    },
}


def preset_kwargs(
    preset: str = "tiny",
    *,
    img_size: int | None = None,
    tokenizer: str | PreTrainedTokenizerBase | None = None,
    encoder: dict[str, Any] | None = None,
    neck: dict[str, Any] | bool = True,
    cd_head: dict[str, Any] | bool = True,
    cc_head: dict[str, Any] | bool = True,
) -> dict[str, dict[str, Any] | None]:
    """The keyword arguments of each part for ``preset`` with overrides (``None`` for a part left out).

    These are the ``init_args`` a YAML config would hold. ``neck``/``cd_head``/``cc_head``: ``False`` leaves
    the part out, ``True`` keeps the preset's, a dict updates it.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    base = copy.deepcopy(PRESETS[preset])
    enc = {**base["encoder"], **(encoder or {})}
    if img_size is not None:
        enc["img_size"] = img_size
    out: dict[str, dict[str, Any] | None] = {"encoder": enc}
    derived = {
        "neck": {"cd_dim": enc["out_chans"], "cc_dim": enc["embed_dim"]},
        "cd_head": {"in_channels": enc["out_chans"], "patch_size": enc["patch_size"]},
        "cc_head": {"vision_width": enc["embed_dim"], "tokenizer": tokenizer},
    }
    for name, override in (("neck", neck), ("cd_head", cd_head), ("cc_head", cc_head)):
        if override is False:
            out[name] = None
            continue
        out[name] = {**derived[name], **base[name], **(override if isinstance(override, dict) else {})}
    return out


def build_semantic_cc(preset: str = "tiny", **overrides: Any) -> SemanticCC:
    """Build :class:`SemanticCC` at a named size; ``overrides`` are :func:`preset_kwargs`'s keyword arguments
    (``img_size``, ``tokenizer``, ``encoder``, ``neck``, ``cd_head``, ``cc_head``).

    Example: ``build_semantic_cc("tiny", img_size=64, tokenizer=tok_dir, neck={"inter": "cross"})``.
    Under ``with torch.device("meta"):`` nothing is allocated and no checkpoint is read.
    """
    kw = preset_kwargs(preset, **overrides)
    assert kw["encoder"] is not None
    return SemanticCC(
        encoder=BiTemporalSAMEncoder(**kw["encoder"]),
        neck=MultiTaskNeck(**kw["neck"]) if kw["neck"] is not None else None,
        cd_head=ChangeDetectionHead(**kw["cd_head"]) if kw["cd_head"] is not None else None,
        cc_head=ChangeCaptionHead(**kw["cc_head"]) if kw["cc_head"] is not None else None,
    )
