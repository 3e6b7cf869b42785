"""Named sizes of Semantic-CC (paper Eq. 1 with the parts of Sec. III) and a builder.

A preset holds each part's ``init_args`` as a YAML config would (sub-configs of :mod:`semcc.models.configs`
as nested mappings). ``tests/test_configs.py`` ties every shipped YAML to its preset, so the two cannot drift.

* ``tiny``: exactly the model of ``configs/tiny.yaml`` (the embedded default, trained on a CPU in minutes):
  random init; SAM ViT 64 wide, 4 blocks (global 1 and 3), 4 x 4 windows, F_cd 64 wide, LoRA r 8 and the
  whole ViT trained (``train_vit``); 1 neck unit; a 2-layer 64-wide Q-Former with 8 queries and
  cross-attention in every layer; the enhancer before the Q-Former; a 2-layer 128-wide Llama whose
  vocabulary is the word-level tokenizer's (``tokenizer=<dir>``). Because nothing is pretrained, it trains
  its Q-Former and the whole LLM (``qformer.freeze=False``, ``llm.finetune="full"``).
* ``mini``: the paper's layout at the tiny widths, the unit tests' model: the same widths as ``tiny`` but
  LoRA-adapted frozen ViT, 2 neck units, cross-attention every 2nd Q-Former layer, the enhancer after the
  Q-Former (as the paper), LoRA r 8 ready for the LLM; Q-Former and LLM trained in full as in ``tiny``.
  Pass ``cc_head={"qformer": {"freeze": True}, "llm": {"finetune": "lora"}}`` for the paper's freezing.
* ``paper`` (Sec. IV-C; ``configs/paper/levir.yaml``): SAM ViT-L at 256 px (1024 wide, 24 blocks, 16 heads,
  global 5/11/17/23, window 14, LoRA r 16), 3 neck units, SimpleFPN 512, MiniGPT-4's Q-Former (BERT-base:
  768, 12 layers, vision width 1408, 32 queries), Vicuna-7B (``llm.path``; random Llama-7B shape without
  it) stored in bf16 (its trainable LoRA adapters in float32), end marker ``###``.
  Checkpoint paths default to ``None`` (random init); give them through the part overrides, e.g.
  ``encoder={"checkpoint": "sam_vit_l_0b3195.pth"}``, ``cc_head={"llm": {"path": "vicuna-7b"}}``.

Any size between: override any part's keyword arguments (a mapping given for a sub-config is merged into the
preset's). Widths that must agree between parts (F_cd and F_cc widths, the patch stride) are derived from
the encoder unless given explicitly.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from transformers import PreTrainedTokenizerBase

from semcc.models.cc_head import ChangeCaptionHead
from semcc.models.cd_head import ChangeDetectionHead
from semcc.models.configs import SAM_VIT_L, SAMViTConfig, as_config
from semcc.models.encoder import BiTemporalSAMEncoder
from semcc.models.neck import MultiTaskNeck
from semcc.models.semantic_cc import SemanticCC

__all__ = ["PRESETS", "SAM_VIT_SIZES", "build_semantic_cc", "preset_kwargs"]

#: SAM ViT sizes (``segment_anything.build_sam``): width, depth, heads, global-attention blocks.
SAM_VIT_SIZES: dict[str, dict[str, Any]] = {
    "vit_b": {"embed_dim": 768, "depth": 12, "num_heads": 12, "global_attn_indexes": [2, 5, 8, 11]},
    "vit_l": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "global_attn_indexes": [5, 11, 17, 23]},
    "vit_h": {"embed_dim": 1280, "depth": 32, "num_heads": 16, "global_attn_indexes": [7, 15, 23, 31]},
}

_TINY_VIT = {"patch_size": 16, "embed_dim": 64, "depth": 4, "num_heads": 4, "window_size": 4,
             "global_attn_indexes": [1, 3], "out_chans": 64}
_TINY_QFORMER = {"hidden_size": 64, "layers": 2, "heads": 4, "intermediate_size": 128, "encoder_width": 64,
                 "num_query_tokens": 8}
_TINY_LLM = {"hidden_size": 128, "layers": 2, "heads": 4, "intermediate_size": 256, "max_positions": 256}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "encoder": {"img_size": 256, "vit": _TINY_VIT, "bcsf_blocks": "global", "lora": {"r": 8, "alpha": 16},
                    "train_vit": True},
        "neck": {"num_units": 1, "num_heads": 4, "inter": "bilinear"},
        "cd_head": {"fpn_channels": 32, "num_classes": 1, "fusion": "cat_diff"},
        "cc_head": {
            "qformer": {**_TINY_QFORMER, "cross_attention_frequency": 1, "freeze": False},
            "llm": {**_TINY_LLM, "finetune": "full"},
            "enhancer": {"position": "before"},
            "max_new_tokens": 24,
            "change_loss_weight": 0.5,
        },
    },
    "mini": {
        "encoder": {"img_size": 256, "vit": {**_TINY_VIT, "mlp_ratio": 4.0}, "bcsf_blocks": "global",
                    "lora": {"r": 8, "alpha": 16, "dropout": 0.05}},
        "neck": {"num_units": 2, "num_heads": 4, "mlp_ratio": 2.0, "inter": "bilinear"},
        "cd_head": {"fpn_channels": 32, "num_classes": 1},
        "cc_head": {
            "qformer": {**_TINY_QFORMER, "cross_attention_frequency": 2, "freeze": False},
            "llm": {**_TINY_LLM, "finetune": "full"},
            "lora": {"r": 8, "alpha": 16},
            "max_new_tokens": 24,
        },
    },
    "paper": {
        "encoder": {
            "img_size": 256,
            "vit": {"patch_size": 16, **SAM_VIT_SIZES["vit_l"], "mlp_ratio": 4.0, "window_size": 14,
                    "out_chans": 256},
            "bcsf_blocks": "global", "lora": {"r": 16, "alpha": 32, "dropout": 0.05},
        },
        "neck": {"num_units": 3, "num_heads": 8, "mlp_ratio": 2.0, "inter": "bilinear"},
        "cd_head": {"fpn_channels": 512, "num_classes": 1},
        "cc_head": {
            "qformer": {"hidden_size": 768, "layers": 12, "heads": 12, "intermediate_size": 3072,
                        "encoder_width": 1408, "num_query_tokens": 32, "cross_attention_frequency": 2,
                        "freeze": True},
            "llm": {"hidden_size": 4096, "layers": 32, "heads": 32, "intermediate_size": 11008, "vocab_size": 32000,
                    "max_positions": 2048, "dtype": "bfloat16", "finetune": "lora"},
            "lora": {"r": 16, "alpha": 32, "dropout": 0.05},
            "enhancer": {"position": "after", "mode": "both"},
            "end_marker": "###",
            "max_new_tokens": 40,
        },
    },
}


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``; a mapping given for a mapping (a sub-config) is merged into it."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively: the values a YAML config holds."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


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

    These are the ``init_args`` a YAML config would hold (sub-configs as nested dicts, sequences as lists).
    ``neck``/``cd_head``/``cc_head``: ``False`` leaves the part out, ``True`` keeps the preset's, a dict updates
    it (``encoder`` likewise); a dict given for a sub-config (``vit``, ``lora``, ``qformer``, ``llm``,
    ``enhancer``) is merged into the preset's, e.g. ``cc_head={"llm": {"dtype": "bfloat16"}}``.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    base = copy.deepcopy(PRESETS[preset])
    enc = _merge(base["encoder"], encoder or {})
    if img_size is not None:
        enc["img_size"] = img_size
    vit = as_config(SAMViTConfig, enc.get("vit"), SAM_VIT_L)
    out: dict[str, dict[str, Any] | None] = {"encoder": _plain(enc)}
    derived = {
        "neck": {"cd_dim": vit.out_chans, "cc_dim": vit.embed_dim},
        "cd_head": {"in_channels": vit.out_chans, "patch_size": vit.patch_size},
        "cc_head": {"vision_width": vit.embed_dim, "tokenizer": tokenizer},
    }
    for name, override in (("neck", neck), ("cd_head", cd_head), ("cc_head", cc_head)):
        if override is False:
            out[name] = None
            continue
        out[name] = _plain(_merge({**derived[name], **base[name]}, override if isinstance(override, dict) else {}))
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
