"""Change-caption decoder, paper Sec. III-E, Eq. 7-8 (``T = Phi_cc-decode(F_cc, P)`` of Eq. 1).

Eq. 7::

    F_cc^{1,2} = Phi_q-former(F_cc^{1,2}, P)          # one Q-Former, shared by both times
    Delta F_cc = Phi_enhancer(F_cc^1, F_cc^2)
    T = Phi_llm-decoder(Phi_prompter(Delta F_cc, P))

Pipeline implemented (MiniGPT-4 structure, whose weights the paper inherits):

1. ``vision_proj``: ``Linear(c -> qformer_encoder_width)`` + ``ln_vision`` LayerNorm. The MiniGPT-4 /
   BLIP-2 Q-Former cross-attends to EVA-CLIP features of width 1408; F_cc (``c`` = 1024 for SAM ViT-L)
   is projected to that width (new, trainable) and normalised by ``ln_vision`` (loaded from the BLIP-2
   file when present).
2. Q-Former: ``transformers.Blip2QFormerModel`` with ``num_query_tokens`` (32) learnable queries and
   cross-attention every 2nd layer, run once on the ``2B`` batch of both times. MiniGPT-4's Q-Former has
   no text input, so the instruction ``P`` of Eq. 7 reaches the model through the prompter (step 5).
3. :class:`ChangeEnhancer` (Eq. 8) after the Q-Former (default; ``enhancer_position="before"`` applies it
   to the projected F_cc tokens and runs the Q-Former once on Delta F_cc; ``"none"`` concatenates the two
   times' query outputs along the token axis). Modes (Table III): ``"both"`` (Eq. 8), ``"activation"``
   (gates only) and ``"subtraction"`` (difference only).
4. ``llama_proj``: MiniGPT-4's ``Linear(qformer_hidden -> llm_hidden)``.
5. Prompter (MiniGPT-4 template ``###Human: <Img><ImageHere></Img> {instruction} ###Assistant: ``): the
   visual tokens replace ``<ImageHere>`` in the embedding sequence; in training the caption tokens and
   the end marker follow (``"###"`` for Vicuna / MiniGPT-4, the tokenizer's ``eos_token`` by default).
6. Causal LLM from ``transformers`` (Vicuna-7B from a local directory, or a random-init ``LlamaForCausalLM``)
   with LoRA (``peft``) on the attention projections (``q_proj, k_proj, v_proj, o_proj`` by default;
   paper Sec. IV-C: r 16, alpha 32, dropout 0.05, no bias) and the base frozen.

Eq. 8 reading (:class:`ChangeEnhancer`): ``Phi_proj-1/2`` are ``Linear(2d -> 1)`` giving one sigmoid gate
per token; ``Phi_cat`` is along channels (paper), so ``Delta F_cc`` is ``[N, 3d]`` and ``Phi_proj`` maps it
back to ``d``, the Q-Former width. The paper says ``Phi_proj`` projects "to that of the LLM's hidden
state"; here that projection is the composition of ``Phi_proj`` and MiniGPT-4's ``llama_proj``, so that
``llama_proj`` keeps its pretrained ``d -> 4096`` shape and loads from the MiniGPT-4 checkpoint.
``enhancer_concat="token"`` (the authors' public code) concatenates along the token axis instead.

Loss: cross-entropy over the caption (and end-marker) tokens only (labels ``-100`` on the prompt, the
visual tokens and the padding); batches of any size, right padding. Generation: greedy (Sec. IV-C),
batched with left padding and the KV cache (``llm.generate(inputs_embeds=..., attention_mask=...)``),
stopping at the end marker. Test-time multi-output ensemble: one caption per instruction of
``DEFAULT_INSTRUCTIONS`` (or those given); the consensus is the candidate with the highest mean
:func:`caption_similarity` to the other candidates (ties: the earliest prompt).

Checkpoints: :func:`load_qformer_checkpoint` (LAVIS BLIP-2 / MiniGPT-4 key names), :func:`load_llama_proj`
(MiniGPT-4 ``llama_proj.weight/bias``), the LLM and tokenizer from a local Hugging Face directory.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    Blip2QFormerConfig,
    Blip2QFormerModel,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)

from semcc.models.checkpoints import CheckpointError, assign_tensors, format_keys, is_meta, load_state_file
from semcc.models.precision import trainable_to_float32

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "PROMPT_TEMPLATE",
    "CaptionOutput",
    "ChangeCaptionHead",
    "ChangeEnhancer",
    "caption_similarity",
    "consensus_index",
    "load_llama_proj",
    "load_qformer_checkpoint",
    "map_lavis_qformer_keys",
]

#: The four instruction prompts of Sec. IV-C (the same strings as ``semcc.data.text.INSTRUCTIONS``; models/
#: does not import data/, a test keeps the two equal).
DEFAULT_INSTRUCTIONS: tuple[str, ...] = (
    "Describe the difference between the new remote sensing image and the old one in detail.",
    "What is the main change between the two remote sensing scenes? Describe it in detail.",
    "Please provide a detailed description of the difference between these two remote sensing pictures.",
    "Can you describe what has been changed between these two remote sensing pictures for me?",
)

#: MiniGPT-4's instruction template; ``<ImageHere>`` is replaced by the visual tokens.
PROMPT_TEMPLATE = "###Human: <Img><ImageHere></Img> {instruction} ###Assistant: "
IMAGE_PLACEHOLDER = "<ImageHere>"


@dataclass
class CaptionOutput:
    """Caption branch outputs: ``loss`` (Eq. 9 L_cc, mean over caption tokens), ``logits`` ``[B, L, V]``."""

    loss: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor


class ChangeEnhancer(nn.Module):
    """Eq. 8: gated bi-temporal tokens, their difference, concatenation and projection.

    ``F1' = F1 * sigmoid(proj_1(cat(F1, F2)))``, ``F2' = F2 * sigmoid(proj_2(cat(F2, F1)))``,
    ``Delta F = proj(cat(F1', F2', F1' - F2'))``.

    Args:
        dim: token width ``d`` (in and out).
        mode: ``"both"`` (Eq. 8), ``"activation"`` (``proj(cat(F1', F2'))``) or ``"subtraction"``
            (``proj(cat(F1, F2, F1 - F2))``), the Table III variants.
        concat: ``"channel"`` (paper: ``[N, k*d] -> [N, d]``) or ``"token"`` (authors' code: ``[k*N, d]``).
    """

    def __init__(self, dim: int, mode: str = "both", concat: str = "channel") -> None:
        super().__init__()
        if mode not in ("both", "activation", "subtraction"):
            raise ValueError(f"enhancer mode must be 'both', 'activation' or 'subtraction', got {mode!r}")
        if concat not in ("channel", "token"):
            raise ValueError(f"enhancer concat must be 'channel' or 'token', got {concat!r}")
        self.mode = mode
        self.concat = concat
        self.use_gates = mode in ("both", "activation")
        self.use_difference = mode in ("both", "subtraction")
        if self.use_gates:
            self.proj_1 = nn.Linear(2 * dim, 1)
            self.proj_2 = nn.Linear(2 * dim, 1)
        parts = 3 if self.use_difference else 2
        self.proj = nn.Linear(parts * dim if concat == "channel" else dim, dim)

    def forward(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        """``f1``, ``f2``: ``[B, N, d]`` -> ``[B, N, d]`` (channel) or ``[B, k*N, d]`` (token)."""
        if self.use_gates:
            f1, f2 = (
                f1 * torch.sigmoid(self.proj_1(torch.cat([f1, f2], dim=-1))),
                f2 * torch.sigmoid(self.proj_2(torch.cat([f2, f1], dim=-1))),
            )
        parts = [f1, f2, f1 - f2] if self.use_difference else [f1, f2]
        return self.proj(torch.cat(parts, dim=-1 if self.concat == "channel" else 1))


# --------------------------------------------------------------------------------------------- ensemble


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def caption_similarity(a: str, b: str) -> float:
    """Mean of the unigram and bigram F1 between two captions (lower-cased whitespace tokens).

    F1 of n-grams = ``2 * |common n-grams (multiset)| / (|n-grams of a| + |n-grams of b|)``; bigrams are
    left out when neither caption has one. Two empty captions are identical (1.0).
    """
    ta, tb = a.lower().split(), b.lower().split()
    scores = []
    for n in (1, 2):
        ga, gb = _ngrams(ta, n), _ngrams(tb, n)
        total = sum(ga.values()) + sum(gb.values())
        if total == 0:
            if n == 1:
                scores.append(1.0)
            continue
        scores.append(2.0 * sum((ga & gb).values()) / total)
    return sum(scores) / len(scores)


def consensus_index(candidates: Sequence[str]) -> int:
    """Index of the candidate with the highest mean :func:`caption_similarity` to the others (ties: first)."""
    if not candidates:
        raise ValueError("consensus of no candidates")
    if len(candidates) == 1:
        return 0
    best, best_score = 0, float("-inf")
    for i, ci in enumerate(candidates):
        score = sum(caption_similarity(ci, cj) for j, cj in enumerate(candidates) if j != i)
        score /= len(candidates) - 1
        if score > best_score + 1e-12:
            best, best_score = i, score
    return best


# ------------------------------------------------------------------------------------------ checkpoints

_LAVIS_TEXT_ONLY = re.compile(
    r"^Qformer\.(cls\..*|bert\.embeddings\.(word_embeddings|position_embeddings|position_ids).*"
    r"|bert\.encoder\.layer\.\d+\.(intermediate|output)\..*)$"
)


def map_lavis_qformer_keys(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """LAVIS BLIP-2 / MiniGPT-4 Q-Former keys -> ``ChangeCaptionHead`` names.

    ``Qformer.bert.encoder.layer.N.attention.self.*`` -> ``qformer.encoder.layer.N.attention.attention.*``
    (same for ``crossattention``), ``Qformer.bert.embeddings.LayerNorm`` -> ``qformer.layernorm``,
    ``...intermediate_query`` / ``...output_query`` / ``attention.output`` keep their names,
    ``query_tokens`` -> ``query_tokens``, ``ln_vision`` -> ``ln_vision``. The Q-Former's text branch
    (word/position embeddings, the text FFN ``intermediate``/``output``, ``cls``) is not used by the
    query path and is dropped. Returns ``(mapped, unused_qformer_keys)``; keys outside the Q-Former (the
    EVA ViT, ``llama_proj``, the LLM, ...) are ignored.
    """
    mapped: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    for key, value in state.items():
        if key == "query_tokens" or key.startswith("ln_vision."):
            mapped[key] = value
        elif key.startswith("Qformer."):
            if _LAVIS_TEXT_ONLY.match(key):
                continue
            if key.startswith("Qformer.bert.embeddings.LayerNorm."):
                mapped["qformer.layernorm." + key.rsplit(".", 1)[1]] = value
            elif key.startswith("Qformer.bert.encoder."):
                new = "qformer.encoder." + key[len("Qformer.bert.encoder.") :]
                new = new.replace(".attention.self.", ".attention.attention.")
                new = new.replace(".crossattention.self.", ".crossattention.attention.")
                mapped[new] = value
            else:
                unused.append(key)
    return mapped, unused


def load_qformer_checkpoint(head: ChangeCaptionHead, path: str | Path) -> None:
    """Load a BLIP-2 / MiniGPT-4 (LAVIS) ``.pth`` into ``head.qformer``, ``head.query_tokens``, ``ln_vision``.

    Every Q-Former parameter and the query tokens must be in the file; ``ln_vision`` is loaded when
    present. Raises :class:`CheckpointError` naming the file and missing / unexpected / mismatched keys.
    """
    raw = load_state_file(path)
    mapped, unused = map_lavis_qformer_keys(raw)
    if not any(k.startswith("qformer.") for k in mapped):
        raise CheckpointError(
            f"{path}: no LAVIS Q-Former keys ('Qformer.bert.*'); found e.g. {format_keys(list(raw)[:5], 5)}"
        )
    own = {f"qformer.{k}": v for k, v in head.qformer.state_dict(keep_vars=True).items()}
    own["query_tokens"] = head.query_tokens
    ln = {f"ln_vision.{k}": v for k, v in head.ln_vision.state_dict(keep_vars=True).items()}
    own.update(ln)
    assign_tensors(own, mapped, path=path, what="Q-Former checkpoint", optional=ln, unexpected_extra=unused)


def load_llama_proj(head: ChangeCaptionHead, path: str | Path, *, prefix: str = "llama_proj.") -> None:
    """Load MiniGPT-4's ``llama_proj.weight/bias`` (``{"model": {...}}`` or flat) into ``head.llama_proj``."""
    raw = load_state_file(path)
    state = {k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)}
    own = dict(head.llama_proj.state_dict(keep_vars=True))
    assign_tensors(own, state, path=path, what="llama_proj checkpoint", prefix=prefix)


# ------------------------------------------------------------------------------------------- generation


class _StopOnSequence(StoppingCriteria):
    """Per-row stop when the generated ids end with ``stop_ids`` (multi-token end markers such as ``###``)."""

    def __init__(self, stop_ids: list[int]) -> None:
        self.stop_ids = stop_ids

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        n = len(self.stop_ids)
        if input_ids.shape[1] < n:
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        tail = input_ids[:, -n:]
        return (tail == torch.tensor(self.stop_ids, device=input_ids.device)).all(dim=1)


def _find(seq: list[int], sub: list[int]) -> int:
    n = len(sub)
    for i in range(len(seq) - n + 1):
        if seq[i : i + n] == sub:
            return i
    return -1


# ------------------------------------------------------------------------------------------------- head

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ChangeCaptionHead(nn.Module):
    """Q-Former + ChangeEnhancer + ``llama_proj`` + LLM with LoRA (Eq. 7-8).

    Args:
        vision_width: width ``c`` of F_cc.
        tokenizer: a Hugging Face tokenizer directory (or a tokenizer object); ``None`` with ``llm_path``
            loads the LLM directory's tokenizer. Without one, only shape-level use (e.g. meta builds).
        llm_path: local Hugging Face causal-LM directory (Vicuna-7B); ``None`` builds a random
            ``LlamaForCausalLM`` from the ``llm_*`` sizes below (vocabulary: ``vocab_size`` or the
            tokenizer's length).
        llm_hidden_size, llm_layers, llm_heads, llm_kv_heads, llm_intermediate_size, vocab_size,
            llm_max_positions: random-init Llama sizes (Vicuna-7B: 4096, 32, 32, 32, 11008, 32000, 2048).
        llm_dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"`` for the LLM weights (``None``: float32).
        llm_device: where ``llm_path``'s weights are loaded: ``None`` (the CPU; Lightning moves the model to the
            device later), ``"local_rank"`` (``cuda:$LOCAL_RANK`` when CUDA is available, else the CPU: under
            DDP each rank loads straight to its own GPU, and host memory holds one tensor at a time instead of
            a copy of the LLM per rank) or a device name. The weights are read through safetensors' memory map
            either way, so no rank keeps a second host copy.
        llm_finetune: ``"lora"`` (paper), ``"full"`` (every LLM weight trainable) or ``"frozen"``.
        lora_r, lora_alpha, lora_dropout, lora_targets: LoRA on the LLM's attention projections.
        qformer_hidden_size, qformer_layers, qformer_heads, qformer_intermediate_size,
            qformer_encoder_width, num_query_tokens, cross_attention_frequency: Q-Former sizes
            (MiniGPT-4: 768, 12, 12, 3072, 1408, 32, 2).
        qformer_checkpoint: BLIP-2 / MiniGPT-4 ``.pth`` with LAVIS keys (``None``: random init).
        llama_proj_checkpoint: MiniGPT-4 ``.pth`` with ``llama_proj.*`` (``None``: random init).
        freeze_qformer: keep the Q-Former and its query tokens frozen (Sec. IV-C).
        enhancer_position: ``"after"`` (paper) / ``"before"`` the Q-Former, or ``"none"``.
        enhancer_mode: ``"both"`` / ``"activation"`` / ``"subtraction"`` (Table III).
        enhancer_concat: ``"channel"`` (paper) or ``"token"`` (authors' code).
        prompt_template: must contain ``<ImageHere>`` and ``{instruction}``.
        end_marker: text that ends a caption (``"###"`` for Vicuna / MiniGPT-4); ``None``: ``eos_token``.
        max_new_tokens: default generation length.
    """

    def __init__(
        self,
        vision_width: int = 1024,
        tokenizer: str | PreTrainedTokenizerBase | None = None,
        llm_path: str | None = None,
        llm_hidden_size: int = 4096,
        llm_layers: int = 32,
        llm_heads: int = 32,
        llm_kv_heads: int | None = None,
        llm_intermediate_size: int = 11008,
        vocab_size: int | None = None,
        llm_max_positions: int = 2048,
        llm_dtype: str | None = None,
        llm_device: str | None = None,
        llm_finetune: str = "lora",
        lora_r: int = 16,
        lora_alpha: int = 32,
        lora_dropout: float = 0.05,
        lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj"),
        qformer_hidden_size: int = 768,
        qformer_layers: int = 12,
        qformer_heads: int = 12,
        qformer_intermediate_size: int = 3072,
        qformer_encoder_width: int = 1408,
        num_query_tokens: int = 32,
        cross_attention_frequency: int = 2,
        qformer_checkpoint: str | None = None,
        llama_proj_checkpoint: str | None = None,
        freeze_qformer: bool = True,
        enhancer_position: str = "after",
        enhancer_mode: str = "both",
        enhancer_concat: str = "channel",
        prompt_template: str = PROMPT_TEMPLATE,
        end_marker: str | None = None,
        max_new_tokens: int = 40,
    ) -> None:
        super().__init__()
        if enhancer_position not in ("after", "before", "none"):
            raise ValueError(f"enhancer_position must be 'after', 'before' or 'none', got {enhancer_position!r}")
        if llm_finetune not in ("lora", "full", "frozen"):
            raise ValueError(f"llm_finetune must be 'lora', 'full' or 'frozen', got {llm_finetune!r}")
        if IMAGE_PLACEHOLDER not in prompt_template or "{instruction}" not in prompt_template:
            raise ValueError(f"prompt_template needs {IMAGE_PLACEHOLDER} and {{instruction}}: {prompt_template!r}")
        self.prompt_template = prompt_template
        self.max_new_tokens = max_new_tokens
        self.enhancer_position = enhancer_position
        self._end_marker = end_marker

        # tokenizer
        llm_path = str(Path(llm_path).expanduser()) if llm_path is not None else None
        if isinstance(tokenizer, (str, Path)):
            tokenizer = _load_tokenizer(tokenizer)
        elif tokenizer is None and llm_path is not None:
            tokenizer = _load_tokenizer(llm_path)
        self.tokenizer: PreTrainedTokenizerBase | None = tokenizer

        # 1. F_cc -> Q-Former vision width
        self.vision_proj = nn.Linear(vision_width, qformer_encoder_width)
        self.ln_vision = nn.LayerNorm(qformer_encoder_width)

        # 2. Q-Former
        qconfig = Blip2QFormerConfig(
            hidden_size=qformer_hidden_size,
            num_hidden_layers=qformer_layers,
            num_attention_heads=qformer_heads,
            intermediate_size=qformer_intermediate_size,
            encoder_hidden_size=qformer_encoder_width,
            cross_attention_frequency=cross_attention_frequency,
            use_qformer_text_input=False,
        )
        self.qformer = Blip2QFormerModel(qconfig)
        self.query_tokens = nn.Parameter(torch.zeros(1, num_query_tokens, qformer_hidden_size))
        nn.init.normal_(self.query_tokens, std=0.02)

        # 3. enhancer
        if enhancer_position == "none":
            self.enhancer: ChangeEnhancer | None = None
        else:
            width = qformer_hidden_size if enhancer_position == "after" else qformer_encoder_width
            self.enhancer = ChangeEnhancer(width, enhancer_mode, enhancer_concat)

        # 4. projector; 6. LLM
        dtype = _DTYPES[llm_dtype] if llm_dtype else torch.float32
        if llm_path is not None:
            if not Path(llm_path).is_dir():
                raise CheckpointError(f"{llm_path}: LLM directory not found")
            device = _llm_device(llm_device)
            self.llm = AutoModelForCausalLM.from_pretrained(
                str(llm_path), local_files_only=True, dtype=dtype,
                device_map={"": device} if device is not None else None,
            )
            self.llm.train()  # from_pretrained returns eval mode: LoRA dropout would be off in training
        else:
            if vocab_size is None:
                if tokenizer is None:
                    raise ValueError("a random-init LLM needs vocab_size or a tokenizer")
                vocab_size = len(tokenizer)
            config = LlamaConfig(
                vocab_size=vocab_size,
                hidden_size=llm_hidden_size,
                intermediate_size=llm_intermediate_size,
                num_hidden_layers=llm_layers,
                num_attention_heads=llm_heads,
                num_key_value_heads=llm_kv_heads or llm_heads,
                max_position_embeddings=llm_max_positions,
                pad_token_id=getattr(tokenizer, "pad_token_id", None),
                bos_token_id=getattr(tokenizer, "bos_token_id", None),
                eos_token_id=getattr(tokenizer, "eos_token_id", None),
            )
            # Built in its dtype (no float32 copy first); on the meta device under ``with torch.device("meta")``.
            self.llm = LlamaForCausalLM._from_config(config, dtype=dtype)
        self.llm_hidden_size = self.llm.config.hidden_size
        self.llama_proj = nn.Linear(qformer_hidden_size, self.llm_hidden_size)

        # checkpoints (never on the meta device: a shape-only build reads nothing)
        if not is_meta(self.qformer):
            if qformer_checkpoint is not None:
                load_qformer_checkpoint(self, qformer_checkpoint)
            if llama_proj_checkpoint is not None:
                load_llama_proj(self, llama_proj_checkpoint)

        # trainable / frozen (Sec. IV-C)
        if freeze_qformer:
            self.qformer.requires_grad_(False)
            self.query_tokens.requires_grad_(False)
        self.llm.requires_grad_(llm_finetune == "full")
        if llm_finetune == "lora":
            lora = LoraConfig(
                r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, bias="none",
                target_modules=list(lora_targets),
            )
            inject_adapter_in_model(lora, self.llm)
            for name, p in self.llm.named_parameters():
                p.requires_grad_("lora_" in name)
        # peft makes the adapters of a bf16 LLM bf16 too (and "full" trains bf16 weights): master weights in fp32.
        trainable_to_float32(self)

    # ------------------------------------------------------------------------------------ tokens

    def _tok(self) -> PreTrainedTokenizerBase:
        if self.tokenizer is None:
            raise ValueError("ChangeCaptionHead has no tokenizer: pass tokenizer=<dir> or llm_path=<dir>")
        return self.tokenizer

    @property
    def end_marker_ids(self) -> list[int]:
        """Token ids of the end marker (the tokenizer's ``eos_token`` unless ``end_marker`` was given)."""
        tok = self._tok()
        if self._end_marker is None or self._end_marker == tok.eos_token:
            if tok.eos_token_id is None:
                raise ValueError("the tokenizer has no eos_token: pass end_marker")
            return [tok.eos_token_id]
        ids = tok(self._end_marker, add_special_tokens=False).input_ids
        if not ids:
            raise ValueError(f"end_marker {self._end_marker!r} tokenizes to nothing")
        return ids

    @property
    def pad_id(self) -> int:
        tok = self._tok()
        for cand in (tok.pad_token_id, tok.unk_token_id, tok.eos_token_id):
            if cand is not None:
                return int(cand)
        return 0

    def _prompt_ids(self, instruction: str) -> tuple[list[int], list[int]]:
        """Token ids before and after ``<ImageHere>`` (BOS first when the tokenizer has one)."""
        tok = self._tok()
        before, after = self.prompt_template.split(IMAGE_PLACEHOLDER, 1)
        ids_before = tok(before, add_special_tokens=False).input_ids
        if tok.bos_token_id is not None:
            ids_before = [tok.bos_token_id, *ids_before]
        ids_after = tok(after.format(instruction=instruction), add_special_tokens=False).input_ids
        return ids_before, ids_after

    def _embed(self, ids: list[int], device: torch.device) -> torch.Tensor:
        emb = self.llm.get_input_embeddings()
        return emb(torch.tensor(ids, dtype=torch.long, device=device))

    def _sequences(
        self, vis: torch.Tensor, instructions: Sequence[str], tails: Sequence[list[int]] | None, left_pad: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The LLM input of a batch in one embedding lookup: per row ``prompt-before | visual tokens (Eq. 8) |
        prompt-after + tail``, padded on the right (training) or the left (generation).

        Returns ``inputs_embeds [B, L, H]``, ``attention_mask [B, L]`` and ``labels [B, L]`` (the tail's ids,
        -100 elsewhere). Token rows are laid out as id lists (the tokenizer's work); the tensors are built
        once for the batch and the visual tokens are placed with one ``masked_scatter``.
        """
        b, t = vis.shape[:2]
        vis_id, pad_id = -1, -2  # sentinels in the id rows
        prompts = {ins: self._prompt_ids(ins) for ins in dict.fromkeys(instructions)}
        tails = tails if tails is not None else [[] for _ in range(b)]
        rows, label_rows = [], []
        for ins, tail in zip(instructions, tails, strict=True):
            before, after = prompts[ins]
            rows.append([*before, *([vis_id] * t), *after, *tail])
            label_rows.append([-100] * (len(before) + t + len(after)) + list(tail))
        length = max(len(r) for r in rows)

        def padded(row: list[int], fill: int) -> list[int]:
            extra = [fill] * (length - len(row))
            return extra + row if left_pad else row + extra

        ids = torch.tensor([padded(r, pad_id) for r in rows], dtype=torch.long, device=vis.device)
        labels = torch.tensor([padded(r, -100) for r in label_rows], dtype=torch.long, device=vis.device)
        is_vis, is_pad = ids == vis_id, ids == pad_id
        tokens = ids.masked_fill(is_vis | is_pad, self.pad_id)
        embeds = self.llm.get_input_embeddings()(tokens).masked_scatter(is_vis[..., None], vis.to(self._emb_dtype))
        return embeds, (~is_pad).long(), labels

    @property
    def _emb_dtype(self) -> torch.dtype:
        return self.llm.get_input_embeddings().weight.dtype

    @staticmethod
    def _instructions(instructions: Sequence[str] | None, n: int) -> list[str]:
        if instructions is None:
            return [DEFAULT_INSTRUCTIONS[0]] * n
        if isinstance(instructions, str):
            return [instructions] * n
        if len(instructions) != n:
            raise ValueError(f"{len(instructions)} instructions for a batch of {n}")
        return list(instructions)

    # ------------------------------------------------------------------------------------ visual

    def _qformer(self, x: torch.Tensor) -> torch.Tensor:
        queries = self.query_tokens.expand(x.shape[0], -1, -1)
        return self.qformer(query_embeds=queries, encoder_hidden_states=x).last_hidden_state

    def visual_tokens(self, f_cc_1: torch.Tensor, f_cc_2: torch.Tensor) -> torch.Tensor:
        """``F_cc^{1,2}`` ``[B, c, h, w]`` -> visual tokens ``[B, T, llm_hidden]`` (Eq. 7-8, ``llama_proj``)."""
        b = f_cc_1.shape[0]
        x = torch.cat([f_cc_1, f_cc_2], dim=0).flatten(2).transpose(1, 2)  # [2B, hw, c]
        x = self.ln_vision(self.vision_proj(x))
        if self.enhancer_position == "before":
            assert self.enhancer is not None
            q = self._qformer(self.enhancer(x[:b], x[b:]))
        else:
            q = self._qformer(x)
            q1, q2 = q[:b], q[b:]
            q = torch.cat([q1, q2], dim=1) if self.enhancer is None else self.enhancer(q1, q2)
        return self.llama_proj(q).to(self.llm.get_input_embeddings().weight.dtype)

    # ------------------------------------------------------------------------------------ training

    def forward(
        self,
        f_cc_1: torch.Tensor,
        f_cc_2: torch.Tensor,
        captions: Sequence[str],
        instructions: Sequence[str] | None = None,
    ) -> CaptionOutput:
        """Teacher-forced caption loss (CE over caption + end-marker tokens only), right padding."""
        b = f_cc_1.shape[0]
        if len(captions) != b:
            raise ValueError(f"{len(captions)} captions for a batch of {b}")
        tok = self._tok()
        instructions = self._instructions(instructions, b)
        vis = self.visual_tokens(f_cc_1, f_cc_2)
        end = self.end_marker_ids
        tails = [ids + end for ids in tok(list(captions), add_special_tokens=False).input_ids]
        embeds, mask, label_tensor = self._sequences(vis, instructions, tails, left_pad=False)
        out = self.llm(inputs_embeds=embeds, attention_mask=mask, labels=label_tensor, use_cache=False)
        return CaptionOutput(loss=out.loss, logits=out.logits, labels=label_tensor)

    # ------------------------------------------------------------------------------------ inference

    @torch.no_grad()
    def generate_from_visual(
        self, vis: torch.Tensor, instructions: Sequence[str], max_new_tokens: int | None = None
    ) -> list[str]:
        """Greedy captions for visual tokens ``[N, T, H]`` and one instruction per row (left padding)."""
        tok = self._tok()
        embeds, mask, _ = self._sequences(vis, instructions, None, left_pad=True)
        end = self.end_marker_ids
        config = GenerationConfig(
            max_new_tokens=max_new_tokens or self.max_new_tokens,
            do_sample=False,
            num_beams=1,
            use_cache=True,
            pad_token_id=self.pad_id,
            bos_token_id=tok.bos_token_id,
            eos_token_id=end[0] if len(end) == 1 else None,
        )
        stopping = StoppingCriteriaList([_StopOnSequence(end)]) if len(end) > 1 else None
        out = self.llm.generate(
            inputs_embeds=embeds, attention_mask=mask, generation_config=config, stopping_criteria=stopping
        )
        captions = []
        for row in out.tolist():
            cut = _find(row, end)
            if cut >= 0:
                row = row[:cut]
            captions.append(tok.decode(row, skip_special_tokens=True).strip())
        return captions

    def generate(
        self,
        f_cc_1: torch.Tensor,
        f_cc_2: torch.Tensor,
        instructions: Sequence[str] | None = None,
        max_new_tokens: int | None = None,
    ) -> list[str]:
        """One greedy caption per pair (instruction per pair; default the first of ``DEFAULT_INSTRUCTIONS``)."""
        with torch.no_grad():
            vis = self.visual_tokens(f_cc_1, f_cc_2)
        return self.generate_from_visual(vis, self._instructions(instructions, vis.shape[0]), max_new_tokens)

    def generate_candidates(
        self,
        f_cc_1: torch.Tensor,
        f_cc_2: torch.Tensor,
        prompts: Sequence[str] | None = None,
        max_new_tokens: int | None = None,
    ) -> list[list[str]]:
        """Multi-output ensemble candidates: ``[B][K]``, one caption per prompt, in one batched generate."""
        prompts = list(prompts or DEFAULT_INSTRUCTIONS)
        with torch.no_grad():
            vis = self.visual_tokens(f_cc_1, f_cc_2)
        b, k = vis.shape[0], len(prompts)
        flat = self.generate_from_visual(
            vis.repeat_interleave(k, dim=0), [p for _ in range(b) for p in prompts], max_new_tokens
        )
        return [flat[i * k : (i + 1) * k] for i in range(b)]

    def generate_ensemble(
        self,
        f_cc_1: torch.Tensor,
        f_cc_2: torch.Tensor,
        prompts: Sequence[str] | None = None,
        max_new_tokens: int | None = None,
    ) -> list[str]:
        """Test-time multi-output ensemble: the consensus (:func:`consensus_index`) of the candidates."""
        candidates = self.generate_candidates(f_cc_1, f_cc_2, prompts, max_new_tokens)
        return [cands[consensus_index(cands)] for cands in candidates]


def _llm_device(spec: str | None) -> str | None:
    """``llm_device`` resolved: ``"local_rank"`` -> ``cuda:$LOCAL_RANK`` with CUDA, else ``None`` (the CPU)."""
    if spec is None or spec == "cpu":
        return None
    if spec == "local_rank":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else None
    return spec


def _load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: tokenizer directory not found")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
