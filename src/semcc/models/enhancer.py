"""Change enhancer, paper Sec. III-E, Eq. 8 (``Delta F_cc = Phi_enhancer(F_cc^1, F_cc^2)`` of Eq. 7).

Eq. 8::

    F_1' = F_1 * sigmoid(Phi_proj-1(Phi_cat(F_1, F_2)))
    F_2' = F_2 * sigmoid(Phi_proj-2(Phi_cat(F_2, F_1)))
    Delta F_cc = Phi_proj(Phi_cat(F_1', F_2', F_1' - F_2'))

Reading implemented: ``Phi_proj-1/2`` are ``Linear(2d -> 1)`` giving one sigmoid gate per token; ``Phi_cat`` is
along channels (paper), so the concatenation is ``[N, 3d]`` and ``Phi_proj`` maps it back to ``d``, the
Q-Former width. The paper says ``Phi_proj`` projects "to that of the LLM's hidden state"; here that projection
is the composition of ``Phi_proj`` and MiniGPT-4's ``llama_proj`` (in :mod:`semcc.models.cc_head`), so that
``llama_proj`` keeps its pretrained ``d -> 4096`` shape and loads from the MiniGPT-4 checkpoint.
``concat="token"`` (the authors' public code) concatenates along the token axis instead. Where the enhancer
sits (after or before the Q-Former) is the caption head's choice (:class:`~semcc.models.configs.EnhancerConfig`).
"""

from __future__ import annotations

import torch
from torch import nn

from semcc.models.configs import ENHANCER_CONCATS, ENHANCER_MODES

__all__ = ["ChangeEnhancer"]


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
        if mode not in ENHANCER_MODES:
            raise ValueError(f"enhancer mode must be 'both', 'activation' or 'subtraction', got {mode!r}")
        if concat not in ENHANCER_CONCATS:
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
