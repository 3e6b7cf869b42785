"""Semantic-CC, the network of paper Eq. 1::

    F_1, F_2   = Phi_sam-enc(I_1, I_2)        BiTemporalSAMEncoder (Eq. 2-3)
    F_cd, F_cc = Phi_agg-neck(F_1, F_2)       MultiTaskNeck (Eq. 4-5), or identity when ``neck=None``
    M          = Phi_cd-decode(F_cd)          ChangeDetectionHead (Eq. 6)
    T          = Phi_cc-decode(F_cc, P)       ChangeCaptionHead (Eq. 7-8)

The four parts are injected as modules (``class_path``/``init_args`` in a LightningCLI config) and kept
under the attribute names ``encoder``, ``neck``, ``cd_head``, ``cc_head``, which the training code uses to
freeze per phase (Sec. III-F). ``forward`` computes only the tasks asked for (phase i needs only CD: the
LLM is skipped). ``predict`` returns the mask and the captions from one encoder pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from semcc.models.cc_head import ChangeCaptionHead
from semcc.models.cd_head import ChangeDetectionHead
from semcc.models.encoder import BiTemporalFeatures, BiTemporalSAMEncoder
from semcc.models.neck import MultiTaskNeck
from semcc.models.precision import trainable_to_float32
from semcc.models.tta import check_mask_tta, invert_view, view

__all__ = ["TASKS", "SemanticCC", "SemanticCCOutput", "check_widths"]

TASKS: tuple[str, ...] = ("cd", "cc")
Pair = tuple[torch.Tensor, torch.Tensor]


@dataclass
class SemanticCCOutput:
    """``mask_logits`` ``[B, K, H, W]`` (K = 1: binary change logit), ``cc_loss`` (scalar, Eq. 9 L_cc),
    ``cc_logits`` ``[B, L, V]`` and ``cc_labels`` ``[B, L]`` (-100 off the caption), ``cc_change_loss`` (the caption
    head's weighted auxiliary change loss, beyond the paper); ``None`` when not asked.
    """

    mask_logits: torch.Tensor | None = None
    cc_loss: torch.Tensor | None = None
    cc_logits: torch.Tensor | None = None
    cc_labels: torch.Tensor | None = None
    cc_change_loss: torch.Tensor | None = None


def check_widths(
    encoder: nn.Module,
    neck: nn.Module | None = None,
    cd_head: nn.Module | None = None,
    cc_head: nn.Module | None = None,
) -> None:
    """Raise ``ValueError`` naming every width that does not fit before a step runs into it.

    F_cd leaves the encoder ``vit.out_chans`` wide and F_cc ``vit.embed_dim`` wide (Sec. III-B); the neck keeps
    both widths, so its ``cd_dim`` / ``cc_dim``, the CD head's ``in_channels`` and the caption head's
    ``vision_width`` must equal them, and the CD head's ``patch_size`` the encoder's. Parts that do not
    declare a width (user modules) are not checked.
    """
    f_cd = ("the encoder's F_cd (encoder vit.out_chans)", getattr(encoder, "out_chans", None))
    f_cc = ("the encoder's F_cc (encoder vit.embed_dim)", getattr(encoder, "embed_dim", None))
    patch = ("the encoder's vit.patch_size", getattr(encoder, "patch_size", None))
    fits = [("neck", neck, "cd_dim", f_cd), ("neck", neck, "cc_dim", f_cc), ("cd_head", cd_head, "in_channels", f_cd),
            ("cc_head", cc_head, "vision_width", f_cc), ("cd_head", cd_head, "patch_size", patch)]
    wrong = [f"{name}.{attr} is {have} but {what} is {want}" for name, part, attr, (what, want) in fits
             if (have := getattr(part, attr, None)) is not None and want is not None and have != want]
    if wrong:
        raise ValueError("SemanticCC: the parts' widths do not fit: " + "; ".join(wrong)
                         + " (set them to the encoder's, in the config's model.model.init_args)")


class SemanticCC(nn.Module):
    """Eq. 1 wiring of the four parts; ``neck``, ``cd_head`` or ``cc_head`` may be ``None`` (ablations)."""

    def __init__(
        self,
        encoder: BiTemporalSAMEncoder,
        neck: MultiTaskNeck | None = None,
        cd_head: ChangeDetectionHead | None = None,
        cc_head: ChangeCaptionHead | None = None,
    ) -> None:
        super().__init__()
        if cd_head is None and cc_head is None:
            raise ValueError("SemanticCC needs at least one of cd_head and cc_head")
        check_widths(encoder, neck, cd_head, cc_head)
        self.encoder = encoder
        self.neck = neck
        self.cd_head = cd_head
        self.cc_head = cc_head
        trainable_to_float32(self)  # master weights of whatever trains are fp32 (models/precision.py)

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks this model has a head for."""
        return tuple(t for t, h in (("cd", self.cd_head), ("cc", self.cc_head)) if h is not None)

    def features(
        self,
        image_a: torch.Tensor,
        image_b: torch.Tensor,
        *,
        encoder_grad: bool = True,
        encoded: BiTemporalFeatures | None = None,
    ) -> tuple[Pair, Pair]:
        """Encoder + neck: ``((F_cd^1, F_cd^2), (F_cc^1, F_cc^2))``, each ``[B, C, H/16, W/16]``.

        ``encoder_grad=False`` runs the encoder without autograd (a phase that keeps it frozen, Sec. III-F:
        no activations are kept for it and none of its parameters can get a gradient). ``encoded``: the
        encoder's output for these images, computed before (e.g. cached while the encoder is frozen); the
        encoder is then skipped.
        """
        if encoded is not None:
            f = encoded
        else:
            with torch.set_grad_enabled(encoder_grad and torch.is_grad_enabled()):
                f = self.encoder(image_a, image_b)
        cd, cc = (f.cd_1, f.cd_2), (f.cc_1, f.cc_2)
        if self.neck is not None:
            cd, cc = self.neck(cd, cc)
        return cd, cc

    def mask_logits(self, cd: Pair, image_a: torch.Tensor, image_b: torch.Tensor) -> torch.Tensor:
        """Eq. 6: the CD head's mask logits ``[B, K, H, W]`` from ``cd = (F_cd^1, F_cd^2)`` of :meth:`features`. A head
        with ``image_detail`` reads the pair too, as the encoder reads it (radiometry matched when the encoder matches,
        :meth:`BiTemporalSAMEncoder.prepare`; the encoder does not hand back the pair it matched, so such a head
        matches it a second time)."""
        if self.cd_head is None:
            raise ValueError("this model has no cd_head: it cannot predict change masks")
        if not getattr(self.cd_head, "image_detail", 0):
            return self.cd_head(*cd)
        prepare = getattr(self.encoder, "prepare", None)
        images = prepare(image_a, image_b) if prepare is not None else (image_a, image_b)
        return self.cd_head(*cd, images=images)

    @torch.no_grad()
    def mask_logits_tta(self, image_a: torch.Tensor, image_b: torch.Tensor, tta: str = "flips",
                        logits: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 6's mask logits averaged over the views of ``tta`` (:mod:`semcc.models.tta`: ``none``, ``flips`` or
        ``d4``), each mapped back to the pair's frame; one encoder pass per view, no autograd. ``logits``: the mask
        logits of the pair as it is, when already computed (that view then costs nothing)."""
        views = check_mask_tta(tta)
        if any("t" in name for name in views) and image_a.shape[-1] != image_a.shape[-2]:
            size = tuple(image_a.shape[-2:])
            raise ValueError(f"mask_tta {tta!r} transposes the pair: it needs square images, got {size}")
        total = None
        for name in views:
            if name == "" and logits is not None:
                out = logits
            else:
                a, b = view(image_a, name), view(image_b, name)
                out = invert_view(self.mask_logits(self.features(a, b, encoder_grad=False)[0], a, b), name)
            total = out.float() if total is None else total + out.float()
        assert total is not None
        return total / len(views)

    @torch.no_grad()
    def encode(self, image_a: torch.Tensor, image_b: torch.Tensor) -> BiTemporalFeatures:
        """The encoder's output for a batch of pairs, without autograd: the ``encoded`` of :meth:`features`,
        :meth:`predict` and :meth:`caption_candidates`, for several passes over the same batch."""
        return self.encoder(image_a, image_b)

    def _check_tasks(self, tasks: Sequence[str]) -> None:
        for task in tasks:
            if task not in TASKS:
                raise ValueError(f"unknown task {task!r}; expected a subset of {TASKS}")
            if task not in self.tasks:
                raise ValueError(f"task {task!r} asked for but this model has no {task}_head")

    def forward(
        self,
        image_a: torch.Tensor,
        image_b: torch.Tensor,
        *,
        captions: Sequence[str] | None = None,
        instructions: Sequence[str] | None = None,
        tasks: Sequence[str] = TASKS,
        encoder_grad: bool = True,
        encoded: BiTemporalFeatures | None = None,
        changed: torch.Tensor | None = None,
    ) -> SemanticCCOutput:
        """Mask logits and/or the teacher-forced caption loss for a batch of any size.

        ``captions`` (one per pair) are required when ``"cc"`` is in ``tasks``; ``instructions`` (one per
        pair, default the first paper prompt) fill the prompt template. ``encoder_grad=False`` keeps the
        image encoder out of autograd and ``encoded`` skips it (see :meth:`features`). ``changed`` (``[B]``,
        whether each caption says change) feeds the caption head's auxiliary change loss, when it has one.
        """
        tasks = tuple(tasks)
        self._check_tasks(tasks)
        if "cc" in tasks and captions is None:
            raise ValueError("tasks include 'cc' but no captions were given")
        cd, cc = self.features(image_a, image_b, encoder_grad=encoder_grad, encoded=encoded)
        out = SemanticCCOutput()
        if "cd" in tasks:
            out.mask_logits = self.mask_logits(cd, image_a, image_b)
        if "cc" in tasks:
            assert self.cc_head is not None and captions is not None
            cap = self.cc_head(*cc, captions=captions, instructions=instructions, changed=changed)
            out.cc_loss, out.cc_logits, out.cc_labels = cap.loss, cap.logits, cap.labels
            out.cc_change_loss = cap.change_loss
        return out

    def _captions(
        self,
        cc: Pair,
        instructions: Sequence[str] | None,
        max_new_tokens: int | None,
        ensemble: bool,
    ) -> list[str]:
        if self.cc_head is None:
            raise ValueError("this model has no cc_head: it cannot caption")
        if ensemble:
            return self.cc_head.generate_ensemble(*cc, prompts=instructions, max_new_tokens=max_new_tokens)
        return self.cc_head.generate(*cc, instructions=instructions, max_new_tokens=max_new_tokens)

    @torch.no_grad()
    def generate(
        self,
        image_a: torch.Tensor,
        image_b: torch.Tensor,
        *,
        instructions: Sequence[str] | None = None,
        max_new_tokens: int | None = None,
        ensemble: bool = False,
    ) -> list[str]:
        """Greedy captions, one per pair.

        ``ensemble=False``: ``instructions`` is one prompt per pair (default: the first paper prompt).
        ``ensemble=True``: ``instructions`` is the list of ensemble prompts applied to every pair (default:
        the four paper prompts) and the consensus caption is returned (``ChangeCaptionHead``).
        """
        _, cc = self.features(image_a, image_b)
        return self._captions(cc, instructions, max_new_tokens, ensemble)

    @torch.no_grad()
    def caption_candidates(
        self,
        image_a: torch.Tensor,
        image_b: torch.Tensor,
        *,
        instructions: Sequence[str] | None = None,
        max_new_tokens: int | None = None,
        beams: int = 1,
        length_penalty: float = 1.0,
        encoded: BiTemporalFeatures | None = None,
        prefixes: Sequence[Sequence[str]] | None = None,
    ) -> list[list[str]]:
        """Candidate captions per pair (``[B][K * beams]``): for each prompt of ``instructions`` (default: the four
        paper prompts) its greedy caption, or its ``beams`` best beams, ranked with ``length_penalty``
        (``ChangeCaptionHead.generate_candidates``); with ``prefixes`` (a list per pair), then the pair's
        :meth:`prefixed_captions` of the first prompt, from the same visual tokens.
        ``encoded``: the encoder's output for these images, if already computed (see :meth:`features`)."""
        if self.cc_head is None:
            raise ValueError("this model has no cc_head: it cannot caption")
        _, cc = self.features(image_a, image_b, encoded=encoded)
        return self.cc_head.generate_candidates(*cc, prompts=instructions, max_new_tokens=max_new_tokens, beams=beams,
                                                length_penalty=length_penalty, prefixes=prefixes)

    @torch.no_grad()
    def caption_samples(
        self,
        image_a: torch.Tensor,
        image_b: torch.Tensor,
        *,
        instructions: Sequence[str] | None = None,
        samples: int = 16,
        temperature: float = 0.5,
        max_new_tokens: int | None = None,
        seed: int = 0,
        encoded: BiTemporalFeatures | None = None,
    ) -> list[list[str]]:
        """Sampled captions per pair (``[B][samples]``, the prompts of ``instructions`` in turn;
        ``ChangeCaptionHead.sample_candidates``). ``encoded``: the encoder's output for these images, if already
        computed (see :meth:`features`)."""
        if self.cc_head is None:
            raise ValueError("this model has no cc_head: it cannot caption")
        _, cc = self.features(image_a, image_b, encoded=encoded)
        return self.cc_head.sample_candidates(*cc, prompts=instructions, samples=samples, temperature=temperature,
                                              max_new_tokens=max_new_tokens, seed=seed)

    @torch.no_grad()
    def prefixed_captions(
        self,
        image_a: torch.Tensor,
        image_b: torch.Tensor,
        prefixes: Sequence[Sequence[str]],
        *,
        instruction: str | None = None,
        max_new_tokens: int | None = None,
        encoded: BiTemporalFeatures | None = None,
    ) -> list[list[str]]:
        """Per pair, its greedy caption continued from each of its ``prefixes`` (``[B][len(prefixes[b])]``;
        ``ChangeCaptionHead.prefixed_candidates``): the mask-guided candidates of consistency-aware decoding
        (:func:`semcc.metrics.consistency.mask_prefixes`). ``encoded``: the encoder's output for these images, if
        already computed (see :meth:`features`)."""
        if self.cc_head is None:
            raise ValueError("this model has no cc_head: it cannot caption")
        _, cc = self.features(image_a, image_b, encoded=encoded)
        return self.cc_head.prefixed_candidates(*cc, prefixes, instruction=instruction, max_new_tokens=max_new_tokens)

    @torch.no_grad()
    def predict(
        self,
        image_a: torch.Tensor,
        image_b: torch.Tensor,
        *,
        instructions: Sequence[str] | None = None,
        max_new_tokens: int | None = None,
        ensemble: bool = False,
        encoded: BiTemporalFeatures | None = None,
    ) -> tuple[torch.Tensor | None, list[str] | None]:
        """``(mask_logits, captions)`` from one encoder pass (none with ``encoded``, the encoder's output for these
        images if already computed); ``None`` for a part the model lacks."""
        cd, cc = self.features(image_a, image_b, encoded=encoded)
        mask = self.mask_logits(cd, image_a, image_b) if self.cd_head is not None else None
        captions = self._captions(cc, instructions, max_new_tokens, ensemble) if self.cc_head is not None else None
        return mask, captions
