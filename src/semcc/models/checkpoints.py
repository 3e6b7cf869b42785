"""Shared checkpoint plumbing: safe ``torch.load`` and clear key-mismatch errors.

Every pretrained part of Semantic-CC (SAM image encoder, Sec. III-B; BLIP-2 / MiniGPT-4 Q-Former and
``llama_proj``, Sec. III-E) is read from a local file with ``torch.load(weights_only=True, mmap=True)`` on the
CPU; problems are raised as :class:`CheckpointError` naming the file and the keys involved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = ["CheckpointError", "assign_tensors", "format_keys", "is_meta", "load_state_file"]


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
