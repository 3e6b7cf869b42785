"""Change-caption decoder, paper Sec. III-E, Eq. 7-8 (``T = Phi_cc-decode(F_cc, P)`` of Eq. 1).

Eq. 7::

    F_cc^{1,2} = Phi_q-former(F_cc^{1,2}, P)          # one Q-Former, shared by both times
    Delta F_cc = Phi_enhancer(F_cc^1, F_cc^2)          # Eq. 8, semcc/models/enhancer.py
    T = Phi_llm-decoder(Phi_prompter(Delta F_cc, P))

Pipeline implemented (MiniGPT-4 structure, whose weights the paper inherits); the sizes of each part are
typed sub-configs (:mod:`semcc.models.configs`):

1. ``vision_proj``: ``Linear(c -> qformer.encoder_width)`` + ``ln_vision`` LayerNorm. The MiniGPT-4 /
   BLIP-2 Q-Former cross-attends to EVA-CLIP features of width 1408; F_cc (``c`` = 1024 for SAM ViT-L)
   is projected to that width (new, trainable) and normalised by ``ln_vision`` (loaded from the BLIP-2
   file when present).
2. Q-Former (:class:`~semcc.models.configs.QFormerConfig`): ``transformers.Blip2QFormerModel`` with
   ``num_query_tokens`` (32) learnable queries and cross-attention every 2nd layer, run once on the ``2B``
   batch of both times. MiniGPT-4's Q-Former has no text input, so the instruction ``P`` of Eq. 7 reaches
   the model through the prompter (step 5).
3. :class:`~semcc.models.enhancer.ChangeEnhancer` (Eq. 8, :class:`~semcc.models.configs.EnhancerConfig`)
   after the Q-Former (default; ``position="before"`` applies it to the projected F_cc tokens and runs the
   Q-Former once on Delta F_cc; ``"none"`` concatenates the two times' query outputs along the token axis).
4. ``llama_proj``: MiniGPT-4's ``Linear(qformer_hidden -> llm_hidden)`` (with the enhancer's ``Phi_proj``,
   the projection of Eq. 8 to the LLM's width).
5. Prompter (MiniGPT-4 template ``###Human: <Img><ImageHere></Img> {instruction} ###Assistant: ``): the
   visual tokens replace ``<ImageHere>`` in the embedding sequence; in training the caption tokens and
   the end marker follow (``"###"`` for Vicuna / MiniGPT-4, the tokenizer's ``eos_token`` by default).
6. Causal LLM from ``transformers`` (:class:`~semcc.models.configs.LLMConfig`: Vicuna-7B from a local
   directory, or a random-init ``LlamaForCausalLM``) with LoRA (``peft``, :class:`~semcc.models.configs.LoRAConfig`)
   on the attention projections (``q_proj, k_proj, v_proj, o_proj`` by default; paper Sec. IV-C: r 16,
   alpha 32, dropout 0.05, no bias) and the base frozen.

Loss: cross-entropy over the caption (and end-marker) tokens only (labels ``-100`` on the prompt, the
visual tokens and the padding); batches of any size, right padding. Beyond the paper, ``change_loss_weight > 0`` adds a
linear change/no-change classifier on the mean of the Q-Former's outputs (with ``change_loss_detach``, of a second
pass over ``F_cc`` detached, so that only the caption head learns from it) and its binary cross-entropy, weighted, to
Eq. 9 (labels: whether each target caption says change): a random-init Q-Former can otherwise settle on averaging
its input tokens, where a small change is lost, and the LLM then says "no change" for every pair
(``benchmarks/change_probe.py`` measures it). Generation (:mod:`semcc.models.caption_decoding`, a mixin of the head):
greedy (Sec. IV-C),
batched with left padding and the KV cache (``llm.generate(inputs_embeds=..., attention_mask=...)``),
stopping at the end marker (:mod:`semcc.models.generation`). Test-time multi-output ensemble: one caption per
instruction of ``DEFAULT_INSTRUCTIONS`` (or those given), the consensus of :mod:`semcc.models.ensemble`.

Checkpoints (:mod:`semcc.models.checkpoints`): :func:`~semcc.models.checkpoints.load_qformer_checkpoint`
(LAVIS BLIP-2 / MiniGPT-4 key names), :func:`~semcc.models.checkpoints.load_llama_proj` (MiniGPT-4
``llama_proj.weight/bias``), the LLM and tokenizer from a local Hugging Face directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn
from transformers import Blip2QFormerConfig, Blip2QFormerModel, PreTrainedTokenizerBase

from semcc.models.caption_decoding import CaptionDecoding
from semcc.models.checkpoints import is_meta, load_llama_proj, load_qformer_checkpoint
from semcc.models.configs import (
    LLM_LORA,
    MINIGPT4_QFORMER,
    PAPER_ENHANCER,
    VICUNA_7B,
    EnhancerConfig,
    LLMConfig,
    LoRAConfig,
    QFormerConfig,
    as_config,
)
from semcc.models.enhancer import ChangeEnhancer
from semcc.models.llm import build_llm, load_tokenizer
from semcc.models.precision import trainable_to_float32
from semcc.models.prompts import DEFAULT_INSTRUCTIONS, IMAGE_PLACEHOLDER, PROMPT_TEMPLATE

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "PROMPT_TEMPLATE",
    "CaptionOutput",
    "ChangeCaptionHead",
]



@dataclass
class CaptionOutput:
    """Caption branch outputs: ``loss`` (Eq. 9 L_cc, mean over caption tokens), ``logits`` ``[B, L, V]``,
    ``labels`` ``[B, L]``, and ``change_loss``: the weighted auxiliary change/no-change loss of the visual tokens
    (``change_loss_weight`` times its binary cross-entropy; ``None`` without it)."""

    loss: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor
    change_loss: torch.Tensor | None = None


# ------------------------------------------------------------------------------------------------- head

class ChangeCaptionHead(CaptionDecoding, nn.Module):
    """Q-Former + ChangeEnhancer + ``llama_proj`` + LLM with LoRA (Eq. 7-8).

    Args:
        vision_width: width ``c`` of F_cc.
        tokenizer: a Hugging Face tokenizer directory (or a tokenizer object); ``None`` with ``llm.path``
            loads the LLM directory's tokenizer. Without one, only shape-level use (e.g. meta builds).
        qformer: the Q-Former's sizes, checkpoint and freezing (:class:`~semcc.models.configs.QFormerConfig`).
        enhancer: where the Eq. 8 enhancer sits and which variant (:class:`~semcc.models.configs.EnhancerConfig`).
        llm: the LLM: a directory or random-init sizes, dtype, device, fine-tuning
            (:class:`~semcc.models.configs.LLMConfig`; a random LLM's vocabulary: ``llm.vocab_size`` or the
            tokenizer's length).
        lora: LoRA on the LLM, used with ``llm.finetune="lora"`` (:class:`~semcc.models.configs.LoRAConfig`).
        llama_proj_checkpoint: MiniGPT-4 ``.pth`` with ``llama_proj.*`` (``None``: random init).
        prompt_template: must contain ``<ImageHere>`` and ``{instruction}``.
        end_marker: text that ends a caption (``"###"`` for Vicuna / MiniGPT-4); ``None``: ``eos_token``.
        max_new_tokens: default generation length.
        change_loss_weight: beyond the paper: > 0 adds a linear change/no-change classifier on the mean of the
            Q-Former's outputs and, when :meth:`forward` is given ``changed``, its binary cross-entropy times this
            weight (``CaptionOutput.change_loss``), so that the queries learn to read the change (0, the paper: no
            classifier; generation never uses it).
        change_loss_detach: the classifier reads a second Q-Former pass over ``F_cc`` detached, so that its loss
            trains the caption head and not the neck before it (and the CD stream behind the neck's Eq. 5 gate);
            ``False`` (default): it reads the caption's own pass, and its gradient reaches the neck too.

    ``qformer``, ``enhancer``, ``llm`` and ``lora`` take their config or a mapping of its fields, merged onto
    the default (MiniGPT-4's Q-Former, the paper's enhancer, Vicuna-7B's sizes, the paper's LoRA).
    """

    def __init__(
        self,
        vision_width: int = 1024,
        tokenizer: str | PreTrainedTokenizerBase | None = None,
        qformer: QFormerConfig = MINIGPT4_QFORMER,
        enhancer: EnhancerConfig = PAPER_ENHANCER,
        llm: LLMConfig = VICUNA_7B,
        lora: LoRAConfig = LLM_LORA,
        llama_proj_checkpoint: str | None = None,
        prompt_template: str = PROMPT_TEMPLATE,
        end_marker: str | None = None,
        max_new_tokens: int = 40,
        change_loss_weight: float = 0.0,
        change_loss_detach: bool = False,
    ) -> None:
        super().__init__()
        if change_loss_weight < 0:
            raise ValueError(f"change_loss_weight must be >= 0, got {change_loss_weight}")
        qformer = as_config(QFormerConfig, qformer, MINIGPT4_QFORMER)
        enhancer = as_config(EnhancerConfig, enhancer, PAPER_ENHANCER)
        llm = as_config(LLMConfig, llm, VICUNA_7B)
        lora = as_config(LoRAConfig, lora, LLM_LORA)
        if IMAGE_PLACEHOLDER not in prompt_template or "{instruction}" not in prompt_template:
            raise ValueError(f"prompt_template needs {IMAGE_PLACEHOLDER} and {{instruction}}: {prompt_template!r}")
        self.qformer_config, self.enhancer_config, self.llm_config, self.lora_config = qformer, enhancer, llm, lora
        self.prompt_template = prompt_template
        self.max_new_tokens = max_new_tokens
        self.enhancer_position = enhancer.position
        self._end_marker = end_marker

        # tokenizer
        if isinstance(tokenizer, (str, Path)):
            tokenizer = load_tokenizer(tokenizer)
        elif tokenizer is None and llm.path is not None:
            tokenizer = load_tokenizer(llm.path)
        self.tokenizer: PreTrainedTokenizerBase | None = tokenizer

        # 1. F_cc -> Q-Former vision width
        self.vision_width = vision_width
        self.vision_proj = nn.Linear(vision_width, qformer.encoder_width)
        self.ln_vision = nn.LayerNorm(qformer.encoder_width)

        # 2. Q-Former
        qconfig = Blip2QFormerConfig(
            hidden_size=qformer.hidden_size,
            num_hidden_layers=qformer.layers,
            num_attention_heads=qformer.heads,
            intermediate_size=qformer.intermediate_size,
            encoder_hidden_size=qformer.encoder_width,
            cross_attention_frequency=qformer.cross_attention_frequency,
            use_qformer_text_input=False,
        )
        self.qformer = Blip2QFormerModel(qconfig)
        self.query_tokens = nn.Parameter(torch.zeros(1, qformer.num_query_tokens, qformer.hidden_size))
        nn.init.normal_(self.query_tokens, std=0.02)

        # 3. enhancer (Eq. 8)
        if enhancer.position == "none":
            self.enhancer: ChangeEnhancer | None = None
        else:
            width = qformer.hidden_size if enhancer.position == "after" else qformer.encoder_width
            self.enhancer = ChangeEnhancer(width, enhancer.mode, enhancer.concat)

        # 4. projector; 6. LLM
        self.llm = build_llm(llm, tokenizer)
        self.llm_hidden_size = self.llm.config.hidden_size
        self.llama_proj = nn.Linear(qformer.hidden_size, self.llm_hidden_size)
        self.change_loss_weight, self.change_loss_detach = float(change_loss_weight), bool(change_loss_detach)
        self.change_classifier = nn.Linear(qformer.hidden_size, 1) if change_loss_weight > 0 else None

        # checkpoints (never on the meta device: a shape-only build reads nothing)
        if not is_meta(self.qformer):
            if qformer.checkpoint is not None:
                load_qformer_checkpoint(self, qformer.checkpoint)
            if llama_proj_checkpoint is not None:
                load_llama_proj(self, llama_proj_checkpoint)

        # trainable / frozen (Sec. IV-C)
        if qformer.freeze:
            self.qformer.requires_grad_(False)
            self.query_tokens.requires_grad_(False)
        self.llm.requires_grad_(llm.finetune == "full")
        if llm.finetune == "lora":
            config = LoraConfig(
                r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias="none",
                target_modules=list(lora.targets),
            )
            inject_adapter_in_model(config, self.llm)
            for name, p in self.llm.named_parameters():
                p.requires_grad_("lora_" in name)
        # peft makes the adapters of a bf16 LLM bf16 too (and "full" trains bf16 weights): master weights in fp32.
        trainable_to_float32(self)

    # ------------------------------------------------------------------------------------ tokens

    def _tok(self) -> PreTrainedTokenizerBase:
        if self.tokenizer is None:
            raise ValueError("ChangeCaptionHead has no tokenizer: pass tokenizer=<dir> or llm.path=<dir>")
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
        return self._project(self.query_features(f_cc_1, f_cc_2))

    def _project(self, q: torch.Tensor) -> torch.Tensor:
        return self.llama_proj(q).to(self.llm.get_input_embeddings().weight.dtype)

    def vision_inputs(self, f_cc_1: torch.Tensor, f_cc_2: torch.Tensor) -> torch.Tensor:
        """Both dates' F_cc tokens projected to the Q-Former's vision width and normalised (``vision_proj``,
        ``ln_vision``): ``[2B, hw, encoder_width]``, date 1's rows first."""
        x = torch.cat([f_cc_1, f_cc_2], dim=0).flatten(2).transpose(1, 2)  # [2B, hw, c]
        return self.ln_vision(self.vision_proj(x))

    def query_features(self, f_cc_1: torch.Tensor, f_cc_2: torch.Tensor) -> torch.Tensor:
        """``F_cc^{1,2}`` -> the Q-Former's (and the enhancer's) outputs ``[B, T, qformer_hidden]`` before
        ``llama_proj`` (Eq. 7-8)."""
        b = f_cc_1.shape[0]
        x = self.vision_inputs(f_cc_1, f_cc_2)
        if self.enhancer_position == "before":
            assert self.enhancer is not None
            q = self._qformer(self.enhancer(x[:b], x[b:]))
        else:
            q = self._qformer(x)
            q1, q2 = q[:b], q[b:]
            q = torch.cat([q1, q2], dim=1) if self.enhancer is None else self.enhancer(q1, q2)
        return q

    # ------------------------------------------------------------------------------------ training

    def forward(
        self,
        f_cc_1: torch.Tensor,
        f_cc_2: torch.Tensor,
        captions: Sequence[str],
        instructions: Sequence[str] | None = None,
        changed: torch.Tensor | None = None,
    ) -> CaptionOutput:
        """Teacher-forced caption loss (CE over caption + end-marker tokens only), right padding; with
        ``changed`` (``[B]``, whether each pair's target says change) and ``change_loss_weight > 0``, the
        auxiliary change loss too."""
        b = f_cc_1.shape[0]
        if len(captions) != b:
            raise ValueError(f"{len(captions)} captions for a batch of {b}")
        tok = self._tok()
        instructions = self._instructions(instructions, b)
        q = self.query_features(f_cc_1, f_cc_2)
        vis = self._project(q)
        change_loss = None
        if self.change_classifier is not None and changed is not None:
            if changed.shape != (b,):
                raise ValueError(f"changed has shape {tuple(changed.shape)}; expected ({b},)")
            if self.change_loss_detach:  # a second pass of the (small) Q-Former, over F_cc detached
                q = self.query_features(f_cc_1.detach(), f_cc_2.detach())
            logit = self.change_classifier(q.mean(dim=1).float()).squeeze(-1)
            change_loss = self.change_loss_weight * nn.functional.binary_cross_entropy_with_logits(
                logit, changed.to(logit.device, logit.dtype))
        end = self.end_marker_ids
        tails = [ids + end for ids in tok(list(captions), add_special_tokens=False).input_ids]
        embeds, mask, label_tensor = self._sequences(vis, instructions, tails, left_pad=False)
        out = self.llm(inputs_embeds=embeds, attention_mask=mask, labels=label_tensor, use_cache=False)
        return CaptionOutput(loss=out.loss, logits=out.logits, labels=label_tensor, change_loss=change_loss)
