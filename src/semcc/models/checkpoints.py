"""Shared checkpoint plumbing: safe ``torch.load`` and clear key-mismatch errors.

Every pretrained part of Semantic-CC (SAM image encoder, Sec. III-B; BLIP-2 / MiniGPT-4 Q-Former and
``llama_proj``, Sec. III-E) is read from a local file with ``torch.load(weights_only=True, mmap=True)`` on the
CPU; problems are raised as :class:`CheckpointError` naming the file and the keys involved.

Loaders here: the BLIP-2 / MiniGPT-4 (LAVIS) Q-Former (:func:`load_qformer_checkpoint`, key names mapped by
:func:`map_lavis_qformer_keys`) and MiniGPT-4's ``llama_proj`` (:func:`load_llama_proj`), both into a
:class:`~semcc.models.cc_head.ChangeCaptionHead` (Eq. 7). SAM's image encoder is read by
:func:`semcc.models.encoder.load_sam_image_encoder` (it resizes SAM's position tables to the input grid), the
LLM and its tokenizer from a local Hugging Face directory by ``transformers``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # the head imports this module: no runtime import back
    from semcc.models.cc_head import ChangeCaptionHead

__all__ = [
    "CheckpointError",
    "assign_tensors",
    "format_keys",
    "is_meta",
    "load_llama_proj",
    "load_qformer_checkpoint",
    "load_state_file",
    "map_lavis_qformer_keys",
]


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or does not fit the module; the message names the file."""


def format_keys(keys: Iterable[str], limit: int = 12) -> str:
    """``a, b, c ... (+N more)`` for error messages."""
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_state_file(path: str | Path, *, unwrap: tuple[str, ...] = ("model", "state_dict")) -> dict:
    """``torch.load(path, map_location="cpu", weights_only=True)``, unwrapping ``{"model": {...}}``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        # mmap: tensors stay in the file's pages until copied into the module (no second host copy).
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # pickle errors, truncated files, non-tensor payloads
        raise CheckpointError(f"{path}: cannot read as a torch checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    for key in unwrap:
        if key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    return dict(state)


def is_meta(module: nn.Module) -> bool:
    """True when the module's parameters live on the meta device (a shape-only build: nothing is loaded)."""
    return any(p.is_meta for p in module.parameters())


def assign_tensors(
    own: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    *,
    path: str | Path,
    what: str,
    optional: Iterable[str] = (),
    unexpected_extra: Iterable[str] = (),
    prefix: str = "",
) -> None:
    """Copy ``state[k]`` into ``own[k]`` (parameters/buffers by name), checking keys and shapes first.

    ``optional``: names of ``own`` the file may lack (new modules, optional parts). ``unexpected_extra``:
    file keys already known to be unusable. ``prefix`` is put before key names in the message (the file's
    own naming). Raises :class:`CheckpointError` naming the file and the missing, unexpected and
    shape-mismatched keys; nothing is copied then.
    """
    skip = set(optional)
    missing = [prefix + k for k in own if k not in state and k not in skip]
    unexpected = [prefix + k for k in state if k not in own] + list(unexpected_extra)
    mismatched = [
        f"{prefix}{k} (file {tuple(state[k].shape)} vs model {tuple(own[k].shape)})"
        for k in state
        if k in own and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = [f"{path}: {what} does not match the model"]
        found = (("missing keys", missing), ("unexpected keys", unexpected), ("mismatched shapes", mismatched))
        for label, keys in found:
            if keys:
                parts.append(f"{label}: {format_keys(keys)}")
        raise CheckpointError("; ".join(parts))
    with torch.no_grad():
        for key, value in state.items():
            own[key].copy_(value.to(dtype=own[key].dtype))


# ------------------------------------------------------------------------------ BLIP-2 / MiniGPT-4 (LAVIS)

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
