"""Training strategies of Sec. III-F and Table IV: which parts of SemanticCC train in each phase.

``three_stage`` (the paper's): every epoch runs (i) ``cd``: CD on D_cd, training the encoder's trainable
parts, the neck and the CD head; (ii) ``cc``: CC on D_cc with the image encoder frozen (neck and caption
head train); (iii) ``joint``: the neck alone on D_cd-cc with the joint loss L = L_cc + lambda L_cd of
Eq. 9. ``two_stage``: (i) then (ii). ``one_stage``: one phase ``all`` in which everything trains on every
source, each batch giving the losses its labels allow. ``caption_only`` (single-task CC, Table II rows 1-3
and Table III): one phase ``caption`` in which the caption loss trains what the paper trains in that setting,
the encoder's adapters and BCSF (Eq. 2-3) with the neck (when there is one) and the caption head. The order of
the batches comes from :class:`semcc.data.sampler.PhaseBatchSampler`.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_info

from semcc.data.sampler import STRATEGIES

__all__ = ["PHASE_LOSSES", "PHASE_PARTS", "STRATEGIES", "STRATEGY_PHASES", "fit_ddp_to_phases", "required_heads"]

#: Parts of SemanticCC (attribute names) that train in each phase, as Sec. III-F describes.
PHASE_PARTS: dict[str, tuple[str, ...]] = {
    "cd": ("encoder", "neck", "cd_head"),
    "cc": ("neck", "cc_head"),
    "joint": ("neck",),
    "all": ("encoder", "neck", "cd_head", "cc_head"),
    "caption": ("encoder", "neck", "cc_head"),
}
#: Losses each phase computes (``cd``: L_cd, ``cc``: L_cc).
PHASE_LOSSES: dict[str, tuple[str, ...]] = {"cd": ("cd",), "cc": ("cc",), "joint": ("cd", "cc"), "all": ("cd", "cc"),
                                          "caption": ("cc",)}

#: The phases of each strategy, in order (the data each phase reads: :data:`semcc.data.sampler.STRATEGY_SOURCES`).
STRATEGY_PHASES: dict[str, tuple[str, ...]] = {
    "three_stage": ("cd", "cc", "joint"),
    "two_stage": ("cd", "cc"),
    "one_stage": ("all",),
    "caption_only": ("caption",),
}


def required_heads(strategy: str) -> tuple[str, ...]:
    """The heads (``cd_head``, ``cc_head``) a model needs for ``strategy``: one for each loss its phases compute."""
    losses = {loss for phase in STRATEGY_PHASES[strategy] for loss in PHASE_LOSSES[phase]}
    return tuple(f"{loss}_head" for loss in sorted(losses))


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
