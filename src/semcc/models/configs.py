"""Typed sub-configs of Semantic-CC's parts (paper Sec. III-B and III-E; sizes of Sec. IV-C).

Each argument of a part is documented once, here, in its dataclass; validation is in ``__post_init__``.

* :class:`SAMViTConfig`: SAM's ViT image encoder (``Phi_sam-enc`` of Eq. 1, Sec. III-B), ViT-L by default;
* :class:`LoRAConfig`: LoRA adapters, used by the encoder (on SAM's ``qkv``) and the LLM;
* :class:`QFormerConfig`: the Q-Former of Eq. 7 (MiniGPT-4's by default);
* :class:`EnhancerConfig`: the change enhancer of Eq. 8 (where it sits, which variant of Table III);
* :class:`LLMConfig`: the LLM decoder of Eq. 7 (Vicuna-7B's sizes by default).

In a LightningCLI YAML each is a nested mapping of ``init_args`` (e.g. ``qformer: {hidden_size: 64, layers: 2}``);
a mapping given for a part is merged onto the part's default (later ``--config`` files and command-line
overrides such as ``--model.model.init_args.cc_head.init_args.llm.path /x`` change single fields). In Python,
the constructors take an instance or a mapping of fields, merged onto the same default (:func:`as_config`).

The configs are frozen: the module-level defaults below are shared by every constructor call.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "ENHANCER_CONCATS",
    "ENHANCER_MODES",
    "ENHANCER_POSITIONS",
    "FLAT_NAMES",
    "LLM_DTYPES",
    "LLM_FINETUNE",
    "LLM_LORA",
    "MINIGPT4_QFORMER",
    "PAPER_ENHANCER",
    "SAM_LORA",
    "SAM_VIT_L",
    "VICUNA_7B",
    "EnhancerConfig",
    "LLMConfig",
    "LoRAConfig",
    "QFormerConfig",
    "SAMViTConfig",
    "as_config",
    "upgrade_model_config",
]

ENHANCER_POSITIONS = ("after", "before", "none")
ENHANCER_MODES = ("both", "activation", "subtraction")
ENHANCER_CONCATS = ("channel", "token")
LLM_FINETUNE = ("lora", "full", "frozen")
LLM_DTYPES = ("float32", "bfloat16", "float16")

C = TypeVar("C")


def _check(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}")


def _positive(owner: str, **values: int | float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{owner}.{name} must be positive, got {value!r}")


def _divisible(owner: str, width: str, width_value: int, heads: str, heads_value: int) -> None:
    if width_value % heads_value:
        raise ValueError(f"{owner}.{width} ({width_value}) must be a multiple of {heads} ({heads_value})")


@dataclass(frozen=True)
class SAMViTConfig:
    """SAM's ViT image encoder (``segment_anything``'s ``ImageEncoderViT``); defaults: ViT-L.

    Attributes:
        patch_size: patch side in pixels; the token grid is ``img_size / patch_size`` (16 x 16 at 256 px).
        embed_dim: token width ``c`` (ViT-L 1024), the width of ``F_cc``.
        depth: number of transformer blocks (ViT-L 24).
        num_heads: attention heads per block (ViT-L 16).
        mlp_ratio: MLP width relative to ``embed_dim``.
        window_size: side of the windowed-attention blocks' windows (14).
        global_attn_indexes: blocks with global attention (ViT-L 5, 11, 17, 23); BCSF follows them by default.
        out_chans: width of SAM's neck output, ``F_cd`` (256).
    """

    patch_size: int = 16
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (5, 11, 17, 23)
    out_chans: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(self, "global_attn_indexes", tuple(int(i) for i in self.global_attn_indexes))
        _positive("vit", patch_size=self.patch_size, embed_dim=self.embed_dim, depth=self.depth,
                  num_heads=self.num_heads, mlp_ratio=self.mlp_ratio, out_chans=self.out_chans)
        _divisible("vit", "embed_dim", self.embed_dim, "num_heads", self.num_heads)


@dataclass(frozen=True)
class LoRAConfig:
    """LoRA adapters (``peft``, no bias; paper Sec. IV-C: r 16, alpha 32, dropout 0.05), base weights frozen.

    Attributes:
        r: rank; ``0`` adds no adapters (the encoder's ViT is then fully frozen unless ``train_vit``).
        alpha: LoRA scaling numerator (``alpha / r``).
        dropout: dropout on the adapters' input.
        targets: names of the adapted modules. Default: Vicuna's attention projections (the LLM's default,
            :data:`LLM_LORA`); the encoder's default :data:`SAM_LORA` targets SAM's ``qkv``.
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            raise ValueError(f"lora.targets must be a list of module names, got the string {self.targets!r}")
        object.__setattr__(self, "targets", tuple(self.targets))
        if self.r < 0:
            raise ValueError(f"lora.r must be >= 0, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if self.r > 0 and not self.targets:
            raise ValueError("lora.targets is empty")


@dataclass(frozen=True)
class QFormerConfig:
    """The Q-Former of Eq. 7 (``transformers.Blip2QFormerModel``); defaults: MiniGPT-4's (BERT-base).

    Attributes:
        hidden_size: Q-Former width ``d`` (768), the width of its query outputs and of the enhancer after it.
        layers: transformer layers (12).
        heads: attention heads (12).
        intermediate_size: FFN width (3072).
        encoder_width: width of the features it cross-attends to (1408, EVA-CLIP's); ``F_cc`` is projected
            to it by ``vision_proj`` and normalised by ``ln_vision``.
        num_query_tokens: learnable queries, the visual tokens per image (32).
        cross_attention_frequency: cross-attention to the image in every n-th layer (2).
        checkpoint: a BLIP-2 / MiniGPT-4 ``.pth`` with LAVIS keys (``Qformer.*``, ``query_tokens``,
            ``ln_vision``); ``None``: random init. Not read on the meta device.
        freeze: keep the Q-Former and its query tokens frozen (Sec. IV-C).
    """

    hidden_size: int = 768
    layers: int = 12
    heads: int = 12
    intermediate_size: int = 3072
    encoder_width: int = 1408
    num_query_tokens: int = 32
    cross_attention_frequency: int = 2
    checkpoint: str | None = None
    freeze: bool = True

    def __post_init__(self) -> None:
        _positive("qformer", hidden_size=self.hidden_size, layers=self.layers, heads=self.heads,
                  intermediate_size=self.intermediate_size, encoder_width=self.encoder_width,
                  num_query_tokens=self.num_query_tokens, cross_attention_frequency=self.cross_attention_frequency)
        _divisible("qformer", "hidden_size", self.hidden_size, "heads", self.heads)


@dataclass(frozen=True)
class EnhancerConfig:
    """The change enhancer of Eq. 8 (:class:`~semcc.models.enhancer.ChangeEnhancer`).

    Attributes:
        position: ``"after"`` the Q-Former (paper, Table III "post."), ``"before"`` it (on the projected
            ``F_cc`` tokens; the Q-Former then runs once on ``Delta F_cc``, Table III "pre.") or ``"none"``
            (the two times' query outputs concatenated along the token axis).
        mode: ``"both"`` (Eq. 8), ``"activation"`` (gates only) or ``"subtraction"`` (difference only),
            the Table III variants.
        concat: ``"channel"`` (paper: ``[N, k*d] -> [N, d]``) or ``"token"`` (the authors' code: ``[k*N, d]``).
    """

    position: str = "after"
    mode: str = "both"
    concat: str = "channel"

    def __post_init__(self) -> None:
        _check("enhancer.position", self.position, ENHANCER_POSITIONS)
        _check("enhancer.mode", self.mode, ENHANCER_MODES)
        _check("enhancer.concat", self.concat, ENHANCER_CONCATS)


@dataclass(frozen=True)
class LLMConfig:
    """The causal LLM of Eq. 7: a local Hugging Face directory, or a random-init Llama of the sizes below.

    Attributes:
        path: local Hugging Face causal-LM directory (Vicuna-7B); ``None`` builds a random ``LlamaForCausalLM``
            from the sizes below. With a path the sizes are the directory's and those below are unused.
        hidden_size: Llama width (Vicuna-7B 4096).
        layers: decoder layers (32).
        heads: attention heads (32).
        kv_heads: key/value heads (``None``: ``heads``).
        intermediate_size: MLP width (11008).
        vocab_size: vocabulary (``None``: the tokenizer's length; Vicuna 32000).
        max_positions: ``max_position_embeddings`` (2048).
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"`` for the LLM weights (``None``: float32); trainable
            weights (LoRA adapters, or all with ``finetune="full"``) are kept in float32.
        device: where ``path``'s weights are loaded: ``None`` (the CPU; Lightning moves the model to the device
            later), ``"local_rank"`` (``cuda:$LOCAL_RANK`` when CUDA is available, else the CPU: under DDP each
            rank loads straight to its own GPU, and host memory holds one tensor at a time instead of a copy of
            the LLM per rank) or a device name. The weights are read through safetensors' memory map either
            way, so no rank keeps a second host copy.
        finetune: ``"lora"`` (paper: LoRA adapters of the head's ``lora`` config, base frozen), ``"full"``
            (every LLM weight trainable) or ``"frozen"``.
    """

    path: str | None = None
    hidden_size: int = 4096
    layers: int = 32
    heads: int = 32
    kv_heads: int | None = None
    intermediate_size: int = 11008
    vocab_size: int | None = None
    max_positions: int = 2048
    dtype: str | None = None
    device: str | None = None
    finetune: str = "lora"

    def __post_init__(self) -> None:
        _check("llm.finetune", self.finetune, LLM_FINETUNE)
        if self.dtype is not None:
            _check("llm.dtype", self.dtype, LLM_DTYPES)
        _positive("llm", hidden_size=self.hidden_size, layers=self.layers, heads=self.heads,
                  intermediate_size=self.intermediate_size, max_positions=self.max_positions)
        _divisible("llm", "hidden_size", self.hidden_size, "heads", self.heads)


#: SAM ViT-L, the paper's encoder (the :class:`SAMViTConfig` defaults).
SAM_VIT_L = SAMViTConfig()
#: The encoder's LoRA: on every block's ``attn.qkv`` (Sec. IV-C: r 16, alpha 32, dropout 0.05).
SAM_LORA = LoRAConfig(targets=("qkv",))
#: The LLM's LoRA: on the attention projections (Sec. IV-C).
LLM_LORA = LoRAConfig()
#: MiniGPT-4's Q-Former (BERT-base, 32 queries, vision width 1408), frozen.
MINIGPT4_QFORMER = QFormerConfig()
#: The paper's enhancer: after the Q-Former, Eq. 8 in full, concatenation along channels.
PAPER_ENHANCER = EnhancerConfig()
#: Vicuna-7B's sizes (random init unless ``path`` is given), LoRA fine-tuning.
VICUNA_7B = LLMConfig()


def as_config(cls: type[C], value: C | Mapping[str, Any] | None, default: C | None = None) -> C:
    """``value`` as a ``cls`` instance: an instance as is; a mapping of fields merged onto ``default``
    (the part's default, as jsonargparse merges a YAML mapping); ``None``: ``default`` (or ``cls()``).

    Raises ``ValueError`` naming the unknown fields of a mapping.
    """
    base = default if default is not None else cls()
    if value is None:
        return base
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(value) - fields)
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {unknown}; fields: {sorted(fields)}")
        return dataclasses.replace(base, **dict(value))  # type: ignore[type-var]
    raise TypeError(f"expected a {cls.__name__} or a mapping of its fields, got {type(value).__name__}")


# ------------------------------------------------------------------------- configs written before these

_LORA = {"lora_r": "lora.r", "lora_alpha": "lora.alpha", "lora_dropout": "lora.dropout"}
#: The flat ``init_args`` names of each part before the sub-configs -> ``"sub_config.field"``.
FLAT_NAMES: dict[str, dict[str, str]] = {
    "BiTemporalSAMEncoder": {
        **{name: f"vit.{name}" for name in ("patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio",
                                             "window_size", "global_attn_indexes", "out_chans")},
        **_LORA,
    },
    "ChangeCaptionHead": {
        "llm_path": "llm.path", "llm_hidden_size": "llm.hidden_size", "llm_layers": "llm.layers",
        "llm_heads": "llm.heads", "llm_kv_heads": "llm.kv_heads", "llm_intermediate_size": "llm.intermediate_size",
        "vocab_size": "llm.vocab_size", "llm_max_positions": "llm.max_positions", "llm_dtype": "llm.dtype",
        "llm_device": "llm.device", "llm_finetune": "llm.finetune",
        **_LORA, "lora_targets": "lora.targets",
        "qformer_hidden_size": "qformer.hidden_size", "qformer_layers": "qformer.layers",
        "qformer_heads": "qformer.heads", "qformer_intermediate_size": "qformer.intermediate_size",
        "qformer_encoder_width": "qformer.encoder_width", "num_query_tokens": "qformer.num_query_tokens",
        "cross_attention_frequency": "qformer.cross_attention_frequency",
        "qformer_checkpoint": "qformer.checkpoint", "freeze_qformer": "qformer.freeze",
        "enhancer_position": "enhancer.position", "enhancer_mode": "enhancer.mode",
        "enhancer_concat": "enhancer.concat",
    },
}


def upgrade_model_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A ``model.model`` config (``SemanticCC``'s ``class_path`` / ``init_args``) as written before the typed
    sub-configs (e.g. stored in an older checkpoint), with each part's flat names (:data:`FLAT_NAMES`:
    ``qformer_layers``, ``llm_dtype``, ``lora_r``, ``embed_dim``, ...) moved into its sub-configs. A copy; a
    current config comes back equal.
    """
    out = copy.deepcopy(dict(config))
    for part in (out.get("init_args") or {}).values():
        if not isinstance(part, dict) or not isinstance(part.get("init_args"), dict):
            continue
        names = FLAT_NAMES.get(str(part.get("class_path", "")).rsplit(".", 1)[-1], {})
        args = part["init_args"]
        for old in [k for k in args if k in names]:
            sub, field = names[old].split(".")
            args.setdefault(sub, {})[field] = args.pop(old)
    return out
