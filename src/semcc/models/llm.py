"""The LLM decoder of Eq. 7 (``Phi_llm-decoder``, paper Sec. III-E) and its tokenizer, built from an
:class:`~semcc.models.configs.LLMConfig`: a local Hugging Face causal-LM directory (Vicuna-7B; nothing is
downloaded) or a random-init ``LlamaForCausalLM`` of the config's sizes. LoRA is added by the caption head
(:mod:`semcc.models.cc_head`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from semcc.models.checkpoints import CheckpointError
from semcc.models.configs import LLMConfig

__all__ = ["build_llm", "load_tokenizer"]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_llm(config: LLMConfig, tokenizer: PreTrainedTokenizerBase | None = None) -> PreTrainedModel:
    """The LLM of ``config``: ``config.path``'s weights (on ``config.device``), or a random Llama of its sizes
    whose vocabulary is ``config.vocab_size`` or the tokenizer's length (special token ids from the tokenizer).
    """
    dtype = _DTYPES[config.dtype] if config.dtype else torch.float32
    if config.path is not None:
        path = Path(config.path).expanduser()
        if not path.is_dir():
            raise CheckpointError(f"{path}: LLM directory not found")
        device = _llm_device(config.device)
        llm = AutoModelForCausalLM.from_pretrained(
            str(path), local_files_only=True, dtype=dtype,
            device_map={"": device} if device is not None else None,
        )
        llm.train()  # from_pretrained returns eval mode: LoRA dropout would be off in training
        return llm
    vocab_size = config.vocab_size
    if vocab_size is None:
        if tokenizer is None:
            raise ValueError("a random-init LLM needs llm.vocab_size or a tokenizer")
        vocab_size = len(tokenizer)
    llama = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        num_key_value_heads=config.kv_heads or config.heads,
        max_position_embeddings=config.max_positions,
        pad_token_id=getattr(tokenizer, "pad_token_id", None),
        bos_token_id=getattr(tokenizer, "bos_token_id", None),
        eos_token_id=getattr(tokenizer, "eos_token_id", None),
    )
    # Built in its dtype (no float32 copy first); on the meta device under ``with torch.device("meta")``.
    return LlamaForCausalLM._from_config(llama, dtype=dtype)


def _llm_device(spec: str | None) -> str | None:
    """``llm.device`` resolved: ``"local_rank"`` -> ``cuda:$LOCAL_RANK`` with CUDA, else ``None`` (the CPU)."""
    if spec is None or spec == "cpu":
        return None
    if spec == "local_rank":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else None
    return spec


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """A Hugging Face tokenizer from a local directory (``FileNotFoundError`` naming it when missing)."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: tokenizer directory not found")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
