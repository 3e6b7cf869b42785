"""How SemanticCCTask trains through the strategies of Sec. III-F: AdamW, the warm-up + cosine learning rate, and
DDP fitted to phase-wise training.

Which phases a strategy runs, which data each reads and which parts each trains is one table,
:mod:`semcc.strategies`. This module holds what the task adds to it: the optimiser (AdamW over the parameters
that train in some phase, with per-part learning-rate factors; Sec. IV-C uses lr 1e-4), the learning-rate
schedule (linear warm-up, then cosine decay to a floor) and the DDP setting that each phase training a subset
of the model needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["OptimConfig", "build_optimizer", "fit_ddp_to_phases", "warmup_cosine"]


@dataclass(frozen=True)
class OptimConfig:
    """AdamW and its learning-rate schedule.

    Args:
        lr: AdamW learning rate (paper 1e-4).
        weight_decay: AdamW weight decay (only ever applied to parameters that train in the step; none on
            biases and norms, the parameters of fewer than 2 dimensions).
        warmup_steps: linear warm-up steps (an int) or fraction of all steps (a float below 1).
        min_lr_ratio: the cosine decay ends at ``lr * min_lr_ratio``.
        lr_scale: per-part factors on ``lr`` (keys ``encoder``, ``neck``, ``cd_head``, ``cc_head``; default 1).
        fused: ``torch.optim.AdamW(fused=...)``: one kernel updates every parameter (CPU and CUDA; the same update
            rule, rounded differently in the last bit, so a run's weights differ from the unfused run's after a few
            steps). ``None``: torch's default (unfused; on CUDA the multi-tensor ``foreach`` form).
    """

    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int | float = 0.05
    min_lr_ratio: float = 0.01
    lr_scale: dict[str, float] | None = None
    fused: bool | None = None


def warmup_cosine(total: int, warmup: int | float, floor: float) -> Callable[[int], float]:
    """The factor on the learning rate at each step: ``(step + 1) / (warmup + 1)`` during the warm-up, then a
    cosine from 1 down to ``floor`` at step ``total``. ``warmup`` below 1 (a float) is a fraction of ``total``."""
    steps = int(warmup * total) if isinstance(warmup, float) and warmup < 1 else int(warmup)

    def factor(step: int) -> float:
        if step < steps:
            return (step + 1) / (steps + 1)
        progress = min(1.0, (step - steps) / max(1, total - steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def build_optimizer(
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]], trainable: set[str], config: OptimConfig, total: int
) -> dict[str, Any]:
    """AdamW over the ``trainable`` parameters (model-relative names; the part is the name's first component)
    and its per-step schedule, as ``configure_optimizers`` returns them.

    One parameter group per (lr factor, decay or not); without ``lr_scale``: [decay, no decay].
    """
    scale = config.lr_scale or {}
    groups: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
    for n, p in named_parameters:
        if n in trainable:
            groups.setdefault((float(scale.get(n.split(".", 1)[0], 1.0)), p.ndim < 2), []).append(p)
    optimizer = torch.optim.AdamW(
        [
            {"params": ps, "lr": config.lr * f, "weight_decay": 0.0 if no_decay else config.weight_decay}
            for (f, no_decay), ps in sorted(groups.items())
        ],
        lr=config.lr,
        fused=config.fused,
    )
    factor = warmup_cosine(max(1, int(total)), config.warmup_steps, config.min_lr_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def fit_ddp_to_phases(strategy: Any) -> None:
    """Each phase trains a subset of the model, so DDP must look for parameters without gradients
    (``find_unused_parameters``); the plain strategy names (``ddp``, ``ddp_spawn``) leave it off, and their
    second step would fail. Turn it on for them; refuse an explicit ``False`` with the setting to use."""
    if not isinstance(strategy, DDPStrategy):
        return
    kwargs = strategy._ddp_kwargs
    if kwargs.get("find_unused_parameters") is False:
        raise ValueError(
            "SemanticCCTask trains a different subset of the model in each phase (Sec. III-F): DDP needs "
            "find_unused_parameters=True (trainer.strategy: ddp_find_unused_parameters_true, or DDPStrategy "
            "with find_unused_parameters: true)"
        )
    if "find_unused_parameters" not in kwargs:
        kwargs["find_unused_parameters"] = True
        rank_zero_info("semcc: DDP set to find_unused_parameters=True (each phase trains a subset)")
