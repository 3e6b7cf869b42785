"""The typed sub-configs of semcc.models.configs (validation, merging onto defaults) and the presets built on them."""

from __future__ import annotations

import dataclasses

import pytest

from semcc.models import (
    PRESETS,
    BiTemporalSAMEncoder,
    ChangeCaptionHead,
    EnhancerConfig,
    LLMConfig,
    LoRAConfig,
    QFormerConfig,
    SAMViTConfig,
    preset_kwargs,
)
from semcc.models.configs import LLM_LORA, MINIGPT4_QFORMER, SAM_LORA, SAM_VIT_L, VICUNA_7B, as_config


def test_defaults_are_the_papers() -> None:
    assert (SAM_VIT_L.embed_dim, SAM_VIT_L.depth, SAM_VIT_L.num_heads, SAM_VIT_L.global_attn_indexes) == (
        1024, 24, 16, (5, 11, 17, 23))
    assert (SAM_LORA.r, SAM_LORA.alpha, SAM_LORA.dropout, SAM_LORA.targets) == (16, 32, 0.05, ("qkv",))
    assert LLM_LORA.targets == ("q_proj", "k_proj", "v_proj", "o_proj") and LLM_LORA.r == 16
    assert (MINIGPT4_QFORMER.hidden_size, MINIGPT4_QFORMER.encoder_width, MINIGPT4_QFORMER.num_query_tokens) == (
        768, 1408, 32)
    assert MINIGPT4_QFORMER.freeze and VICUNA_7B.finetune == "lora" and VICUNA_7B.hidden_size == 4096
    assert EnhancerConfig() == EnhancerConfig(position="after", mode="both", concat="channel")
    with pytest.raises(dataclasses.FrozenInstanceError):
        SAM_LORA.r = 8  # type: ignore[misc]  # shared defaults cannot be changed by accident


@pytest.mark.parametrize(("build", "message"), [
    (lambda: EnhancerConfig(position="middle"), r"enhancer\.position must be one of 'after', 'before', 'none'"),
    (lambda: EnhancerConfig(mode="sum"), r"enhancer\.mode must be one of"),
    (lambda: EnhancerConfig(concat="stack"), r"enhancer\.concat must be one of"),
    (lambda: LLMConfig(finetune="half"), r"llm\.finetune must be one of 'lora', 'full', 'frozen'"),
    (lambda: LLMConfig(dtype="int8"), r"llm\.dtype must be one of"),
    (lambda: LLMConfig(hidden_size=100, heads=32), r"llm\.hidden_size \(100\) must be a multiple of heads"),
    (lambda: QFormerConfig(layers=0), r"qformer\.layers must be positive"),
    (lambda: QFormerConfig(hidden_size=64, heads=3), r"qformer\.hidden_size \(64\) must be a multiple"),
    (lambda: SAMViTConfig(embed_dim=30, num_heads=4), r"vit\.embed_dim \(30\) must be a multiple"),
    (lambda: LoRAConfig(r=-1), r"lora\.r must be >= 0"),
    (lambda: LoRAConfig(dropout=1.0), r"lora\.dropout must be in \[0, 1\)"),
    (lambda: LoRAConfig(targets="qkv"), r"lora\.targets must be a list"),
])
def test_configs_validate(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_as_config_merges_a_mapping_onto_the_default() -> None:
    lora = as_config(LoRAConfig, {"r": 4, "targets": ["qkv", "proj"]}, SAM_LORA)
    assert lora == LoRAConfig(r=4, alpha=32, dropout=0.05, targets=("qkv", "proj"))  # a list becomes a tuple
    assert as_config(LoRAConfig, {"alpha": 8}, SAM_LORA).targets == ("qkv",)
    assert as_config(LoRAConfig, None, SAM_LORA) is SAM_LORA and as_config(LoRAConfig, LLM_LORA) is LLM_LORA
    assert as_config(SAMViTConfig, {"global_attn_indexes": [1, 3]}).global_attn_indexes == (1, 3)
    with pytest.raises(ValueError, match=r"QFormerConfig has no field\(s\) \['qformer_layers'\]"):
        as_config(QFormerConfig, {"qformer_layers": 2})
    with pytest.raises(TypeError, match="expected a LLMConfig or a mapping"):
        as_config(LLMConfig, 7)


def test_constructors_take_configs_or_mappings() -> None:
    with pytest.raises(ValueError, match=r"enhancer\.position must be one of"):
        ChangeCaptionHead(enhancer={"position": "middle"})  # validated before anything is built
    with pytest.raises(ValueError, match=r"no field\(s\) \['lora_r'\]"):
        BiTemporalSAMEncoder(lora={"lora_r": 4})
    vit = SAMViTConfig(embed_dim=32, depth=2, num_heads=2, window_size=2, global_attn_indexes=(1,), out_chans=16)
    enc = BiTemporalSAMEncoder(img_size=64, vit=vit, lora=LoRAConfig(r=2, targets=("qkv",)))
    assert enc.vit_config is vit and enc.lora_config.r == 2 and enc.embed_dim == 32 and enc.patch_size == 16
    with pytest.raises(ValueError, match=r"img_size 72 must be a multiple of vit\.patch_size 16"):
        BiTemporalSAMEncoder(img_size=72, vit=vit)


def test_preset_overrides_merge_into_sub_configs() -> None:
    kw = preset_kwargs("mini", img_size=64, cc_head={"llm": {"dtype": "bfloat16"}, "qformer": {"freeze": True}},
                       encoder={"vit": {"depth": 2, "global_attn_indexes": (1,)}})
    head, enc = kw["cc_head"], kw["encoder"]
    assert head["llm"] == {**PRESETS["mini"]["cc_head"]["llm"], "dtype": "bfloat16"}
    assert head["qformer"]["freeze"] and head["qformer"]["hidden_size"] == 64
    assert enc["vit"]["depth"] == 2 and enc["vit"]["global_attn_indexes"] == [1] and enc["vit"]["embed_dim"] == 64
    assert enc["img_size"] == 64 and kw["neck"]["cc_dim"] == 64 and kw["cd_head"]["patch_size"] == 16
    assert PRESETS["mini"]["cc_head"]["llm"].get("dtype") is None  # the preset itself is untouched
    with pytest.raises(ValueError, match="unknown preset 'small'"):
        preset_kwargs("small")


def test_tiny_and_mini_differ_where_documented() -> None:
    """``tiny`` is configs/tiny.yaml (tests/test_configs.py); ``mini`` keeps the paper's layout at its widths."""
    tiny, mini = PRESETS["tiny"], PRESETS["mini"]
    assert tiny["encoder"]["vit"]["embed_dim"] == mini["encoder"]["vit"]["embed_dim"] == 64
    assert (tiny["neck"]["num_units"], mini["neck"]["num_units"]) == (1, 2)
    assert (tiny["cc_head"]["qformer"]["cross_attention_frequency"],
            mini["cc_head"]["qformer"]["cross_attention_frequency"]) == (1, 2)
    assert tiny["cc_head"]["enhancer"]["position"] == "before" and "enhancer" not in mini["cc_head"]  # after
    assert tiny["encoder"]["train_vit"] and not mini["encoder"].get("train_vit", False)
