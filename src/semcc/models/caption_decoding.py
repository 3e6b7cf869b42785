"""Caption generation strategies of the change-caption head (paper Sec. IV-C: greedy decoding and the test-time
multi-output ensemble over the instructions of Eq. 7; beyond the paper: beams, captions opened by given words, and
sampled captions, the candidates of consistency-aware decoding, :mod:`semcc.metrics.consistency`).

:class:`CaptionDecoding` is a mixin of :class:`~semcc.models.cc_head.ChangeCaptionHead`, which lays out the LLM
input (``_sequences``: prompt, visual tokens of Eq. 7-8, tail) and owns the tokenizer (``_tok``, ``end_marker_ids``,
``pad_id``), the visual tokens (``visual_tokens``), the LLM (``llm``) and ``max_new_tokens``; the search itself is
:func:`semcc.models.generation.generate_captions`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from semcc.models.ensemble import consensus_index
from semcc.models.generation import generate_captions
from semcc.models.prompts import DEFAULT_INSTRUCTIONS

__all__ = ["CaptionDecoding"]


class CaptionDecoding:
    """Generation from a caption head's visual tokens: greedy, beams, prefixed, sampled, ensembled captions."""

    @torch.no_grad()
    def generate_from_visual(
        self, vis: torch.Tensor, instructions: Sequence[str], max_new_tokens: int | None = None, beams: int = 1,
        length_penalty: float = 1.0, prefixes: Sequence[str] | None = None,
    ) -> list[str]:
        """Greedy captions for visual tokens ``[N, T, H]`` and one instruction per row (left padding); with
        ``beams > 1``, the ``beams`` best of a beam search per row (``N * beams`` captions, row by row), ranked
        by the sum of their token log-probabilities divided by ``length ** length_penalty`` (transformers' beam
        score: 1, its default, ranks by the mean and so favours longer captions than 0, the sum).

        ``prefixes`` (one per row): each caption starts with its row's prefix, placed after the prompt as the
        caption's first words, and the model writes the rest (the prefix counts towards ``max_new_tokens``); the
        prefix is returned as the tokenizer reads it back (a word tokenizer lowercases it)."""
        if beams < 1:
            raise ValueError(f"beams must be >= 1, got {beams}")
        tails = heads = None
        if prefixes is not None:
            if len(prefixes) != len(instructions):
                raise ValueError(f"{len(prefixes)} prefixes for {len(instructions)} rows")
            tok = self._tok()
            tails = [tok(p, add_special_tokens=False).input_ids for p in prefixes]
            heads = [tok.decode(ids, skip_special_tokens=True).strip() for ids in tails]
        embeds, mask, _ = self._sequences(vis, instructions, tails, left_pad=True)
        search = {"num_beams": beams, "length_penalty": float(length_penalty)} if beams > 1 else {"num_beams": 1}
        new_tokens = max_new_tokens or self.max_new_tokens
        if tails is not None:
            new_tokens = max(1, new_tokens - max(len(t) for t in tails))
        out = self._generate(embeds, mask, new_tokens, do_sample=False, num_return_sequences=beams, **search)
        if heads is None:
            return out
        return [f"{heads[i // beams]} {caption}".strip() for i, caption in enumerate(out)]

    def _generate(self, embeds: torch.Tensor, mask: torch.Tensor, max_new_tokens: int | None,
                  **options: Any) -> list[str]:
        """Captions generated from left-padded inputs, stopped at the end marker
        (:func:`~semcc.models.generation.generate_captions`); ``options`` choose the search and the number of
        returned sequences per row."""
        return generate_captions(self.llm, self._tok(), embeds, mask, end_ids=self.end_marker_ids, pad_id=self.pad_id,
                                 max_new_tokens=max_new_tokens or self.max_new_tokens, **options)

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

    @staticmethod
    def _per_prompt(vis: torch.Tensor, prompts: Sequence[str]) -> tuple[torch.Tensor, list[str]]:
        """Each pair's visual tokens once per prompt, and the matching instructions (pair by pair)."""
        return vis.repeat_interleave(len(prompts), dim=0), [p for _ in range(vis.shape[0]) for p in prompts]

    def generate_candidates(
        self,
        f_cc_1: torch.Tensor,
        f_cc_2: torch.Tensor,
        prompts: Sequence[str] | None = None,
        max_new_tokens: int | None = None,
        beams: int = 1,
        length_penalty: float = 1.0,
        prefixes: Sequence[Sequence[str]] | None = None,
    ) -> list[list[str]]:
        """Multi-output ensemble candidates: ``[B][K * beams]``, the greedy caption of each prompt (``beams=1``)
        or its ``beams`` best beams (ranked with ``length_penalty``, see :meth:`generate_from_visual`), prompt by
        prompt, in one batched generate. ``prefixes`` (a list per pair): each pair's :meth:`prefixed_candidates` of
        the first prompt follow, from the same visual tokens (the mask-guided candidates)."""
        prompts = list(prompts or DEFAULT_INSTRUCTIONS)
        with torch.no_grad():
            vis = self.visual_tokens(f_cc_1, f_cc_2)
        b, k = vis.shape[0], len(prompts) * beams
        flat = self.generate_from_visual(*self._per_prompt(vis, prompts), max_new_tokens, beams=beams,
                                         length_penalty=length_penalty)
        out = [flat[i * k : (i + 1) * k] for i in range(b)]
        if prefixes is None:
            return out
        guided = self._prefixed_from_visual(vis, prefixes, prompts[0], max_new_tokens)
        return [[*more, *g] for more, g in zip(out, guided, strict=True)]

    def prefixed_candidates(
        self,
        f_cc_1: torch.Tensor,
        f_cc_2: torch.Tensor,
        prefixes: Sequence[Sequence[str]],
        instruction: str | None = None,
        max_new_tokens: int | None = None,
    ) -> list[list[str]]:
        """Captions that open with given words, ``[B][len(prefixes[b])]``: for each pair, the greedy caption of
        ``instruction`` (default: the first of ``DEFAULT_INSTRUCTIONS``) continued from each of its prefixes
        (:meth:`generate_from_visual`), all pairs in one batched generate. Beyond the paper: the mask-guided
        candidates of consistency-aware decoding (:func:`semcc.metrics.consistency.mask_prefixes`).

        A prefix with a word the tokenizer does not know (its unknown token: a word tokenizer built on other
        captions) gives no caption: the model was never trained to continue it."""
        if len(prefixes) != f_cc_1.shape[0]:
            raise ValueError(f"{len(prefixes)} prefix lists for a batch of {f_cc_1.shape[0]}")
        if not any(prefixes):
            return [[] for _ in prefixes]
        with torch.no_grad():
            vis = self.visual_tokens(f_cc_1, f_cc_2)
        return self._prefixed_from_visual(vis, prefixes, instruction or DEFAULT_INSTRUCTIONS[0], max_new_tokens)

    def _prefixed_from_visual(self, vis: torch.Tensor, prefixes: Sequence[Sequence[str]], instruction: str,
                              max_new_tokens: int | None) -> list[list[str]]:
        """:meth:`prefixed_candidates` from the pairs' visual tokens ``[B, T, H]``."""
        if len(prefixes) != vis.shape[0]:
            raise ValueError(f"{len(prefixes)} prefix lists for a batch of {vis.shape[0]}")
        tok = self._tok()
        if tok.unk_token_id is not None:
            prefixes = [[p for p in pair if tok.unk_token_id not in tok(p, add_special_tokens=False).input_ids]
                        for pair in prefixes]
        rows = [i for i, pair in enumerate(prefixes) for _ in pair]
        if not rows:
            return [[] for _ in prefixes]
        flat = self.generate_from_visual(vis[torch.tensor(rows, device=vis.device)], [instruction] * len(rows),
                                         max_new_tokens, prefixes=[p for pair in prefixes for p in pair])
        out, start = [], 0
        for pair in prefixes:
            out.append(flat[start : start + len(pair)])
            start += len(pair)
        return out

    @torch.no_grad()
    def sample_candidates(
        self,
        f_cc_1: torch.Tensor,
        f_cc_2: torch.Tensor,
        prompts: Sequence[str] | None = None,
        samples: int = 16,
        temperature: float = 0.5,
        max_new_tokens: int | None = None,
        seed: int = 0,
    ) -> list[list[str]]:
        """Captions drawn from the model, ``[B][samples]``: ancestral sampling at ``temperature`` (no top-k or top-p
        cut), the prompts of ``prompts`` (default: the four paper prompts) in turn, ``ceil(samples / K)`` each.

        Beyond the paper: the evidence of minimum-Bayes-risk choice in consistency-aware decoding
        (:func:`semcc.metrics.consistency.choose_consistent`). The batch is drawn in one ``generate`` under a forked
        random state seeded with ``seed`` (the global random state is left as it was): the same batch gives the same
        samples. (Seeding each pair alike instead would draw the same random numbers for every pair, and pairs of
        similar caption distributions would get the same samples.)"""
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        prompts = list(prompts or DEFAULT_INSTRUCTIONS)
        per_prompt = -(-samples // len(prompts))
        vis = self.visual_tokens(f_cc_1, f_cc_2)
        embeds, mask, _ = self._sequences(*self._per_prompt(vis, prompts), None, left_pad=True)
        devices = [vis.device] if vis.device.type != "cpu" else []
        with torch.random.fork_rng(devices=devices, device_type=vis.device.type):
            torch.manual_seed(seed)
            flat = self._generate(embeds, mask, max_new_tokens, do_sample=True, temperature=float(temperature),
                                  top_k=0, top_p=1.0, num_beams=1, num_return_sequences=per_prompt)
        per_pair = len(prompts) * per_prompt
        return [flat[i * per_pair : i * per_pair + samples] for i in range(vis.shape[0])]

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
