"""Caption generation with a causal LLM from ``transformers``, paper Sec. III-E (Eq. 7's ``Phi_llm-decoder`` at
inference) and Sec. IV-C (greedy decoding): ``llm.generate`` on left-padded prompt embeddings with the KV cache,
stopped at the caption's end marker and cut there.

The end marker may be several tokens (``"###"`` for Vicuna / MiniGPT-4): a one-token marker is the LLM's
``eos_token_id``, a longer one stops each row through :class:`StopOnSequence`. ``options`` of
:func:`generate_captions` choose the search (greedy, beams with their ``length_penalty``, sampling) and the number of
returned sequences per row; :class:`~semcc.models.cc_head.ChangeCaptionHead` builds the inputs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import GenerationConfig, PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList

__all__ = ["StopOnSequence", "decode_captions", "find_sequence", "generate_captions"]


class StopOnSequence(StoppingCriteria):
    """Per-row stop when the generated ids end with ``stop_ids`` (multi-token end markers such as ``###``)."""

    def __init__(self, stop_ids: list[int]) -> None:
        self.stop_ids = stop_ids

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        n = len(self.stop_ids)
        if input_ids.shape[1] < n:
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        tail = input_ids[:, -n:]
        return (tail == torch.tensor(self.stop_ids, device=input_ids.device)).all(dim=1)


def find_sequence(seq: list[int], sub: list[int]) -> int:
    """The first index of ``sub`` in ``seq``, or -1."""
    n = len(sub)
    for i in range(len(seq) - n + 1):
        if seq[i : i + n] == sub:
            return i
    return -1


def decode_captions(tokenizer: PreTrainedTokenizerBase, out: torch.Tensor, end_ids: list[int]) -> list[str]:
    """Generated ids ``[N, L]`` -> captions, each cut at its first end marker."""
    captions = []
    for row in out.tolist():
        cut = find_sequence(row, end_ids)
        if cut >= 0:
            row = row[:cut]
        captions.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return captions


def generate_captions(
    llm: nn.Module, tokenizer: PreTrainedTokenizerBase, embeds: torch.Tensor, mask: torch.Tensor, *,
    end_ids: list[int], pad_id: int, max_new_tokens: int, **options: Any,
) -> list[str]:
    """``llm.generate`` on left-padded ``embeds`` / ``mask``, stopping at ``end_ids``; the decoded captions."""
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        use_cache=True,
        pad_token_id=pad_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=end_ids[0] if len(end_ids) == 1 else None,
        **options,
    )
    stopping = StoppingCriteriaList([StopOnSequence(end_ids)]) if len(end_ids) > 1 else None
    out = llm.generate(inputs_embeds=embeds, attention_mask=mask, generation_config=config, stopping_criteria=stopping)
    return decode_captions(tokenizer, out, end_ids)
