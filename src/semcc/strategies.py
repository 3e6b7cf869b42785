"""The training strategies of Sec. III-F and Table IV, in one table: each phase's data, trained parts and losses.

``three_stage`` (the paper's) runs, every epoch, (i) ``cd``: CD on D_cd, training the encoder's trainable parts,
the neck and the CD head; (ii) ``cc``: CC on D_cc with the image encoder frozen (neck and caption head train);
(iii) ``joint``: the neck alone on D_cd-cc with the joint loss L = L_cc + lambda L_cd of Eq. 9. ``two_stage``
runs (i) then (ii). ``one_stage`` runs one phase ``all`` in which everything trains on every source, each batch
giving the losses its labels allow. ``caption_only`` (single-task CC: Table II rows 1-3 and Table III) runs one
phase ``caption`` in which the caption loss trains what the paper trains in that setting: the encoder's adapters
and BCSF (Eq. 2-3), the neck (when there is one) and the caption head.

This module is plain data (no torch): the data module's sampler (:mod:`semcc.data.sampler`) reads which
sources a phase reads, the task (:mod:`semcc.tasks.module`) which parts it trains and which losses it computes.
The part names are the attributes of :class:`semcc.models.SemanticCC` (:data:`PARTS`; a test checks them).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

__all__ = ["LOSSES", "PARTS", "PHASES", "SOURCES", "STRATEGIES", "Phase", "phases_for", "required_heads"]

#: The parts of SemanticCC (Eq. 1), by attribute name: what a phase can train.
PARTS: tuple[str, ...] = ("encoder", "neck", "cd_head", "cc_head")
#: The data sources: LEVIR-CD (D_cd), LEVIR-CC (D_cc) and LEVIR-MCI (D_cd-cc, masks and captions), in phase order.
SOURCES: tuple[str, ...] = ("cd", "cc", "joint")
#: The losses of Eq. 9 (``cd``: L_cd, ``cc``: L_cc), each computed by the head of that name.
LOSSES: tuple[str, ...] = ("cd", "cc")


@dataclass(frozen=True)
class Phase:
    """One phase of a strategy.

    Args:
        name: the phase's name (batches carry it, logs are keyed by it).
        sources: the data sources it reads (:data:`SOURCES`), interleaved when several.
        parts: the parts of SemanticCC it trains (:data:`PARTS`); every other part is frozen in it.
        losses: the losses it computes (:data:`LOSSES`; a batch gives those its labels allow).
    """

    name: str
    sources: tuple[str, ...]
    parts: tuple[str, ...]
    losses: tuple[str, ...]


#: Every phase, by name.
PHASES: dict[str, Phase] = {
    p.name: p
    for p in (
        Phase("cd", sources=("cd",), parts=("encoder", "neck", "cd_head"), losses=("cd",)),
        Phase("cc", sources=("cc",), parts=("neck", "cc_head"), losses=("cc",)),
        Phase("joint", sources=("joint",), parts=("neck",), losses=("cd", "cc")),
        Phase("all", sources=SOURCES, parts=PARTS, losses=LOSSES),
        Phase("caption", sources=("cc",), parts=("encoder", "neck", "cc_head"), losses=("cc",)),
    )
}

#: The phases of each strategy, in the order an epoch runs them.
STRATEGIES: dict[str, tuple[str, ...]] = {
    "three_stage": ("cd", "cc", "joint"),
    "two_stage": ("cd", "cc"),
    "one_stage": ("all",),
    "caption_only": ("caption",),
}

#: The data-module option that configures each source (for error messages).
_ROOT_OPTION = {"cd": "data.cd_root", "cc": "data.cc_root", "joint": "data.joint_root"}


def _check(strategy: str) -> tuple[Phase, ...]:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {list(STRATEGIES)}")
    return tuple(PHASES[name] for name in STRATEGIES[strategy])


def required_heads(strategy: str) -> tuple[str, ...]:
    """The heads (``cd_head``, ``cc_head``) a model needs for ``strategy``: one for each loss its phases compute."""
    losses = {loss for phase in _check(strategy) for loss in phase.losses}
    return tuple(f"{loss}_head" for loss in sorted(losses))


def phases_for(strategy: str, sources: Sequence[str], *, allow_missing: bool = False) -> list[Phase]:
    """The phases of ``strategy`` given the configured data ``sources`` (``cd``, ``cc``, ``joint``).

    Every source the strategy reads must be configured: a missing one is a ``ValueError`` naming it, unless
    ``allow_missing`` is set, and then the phases without data are left out (a phase that reads several sources
    keeps those it has) with a warning that names them (e.g. three-stage without LEVIR-MCI runs i and ii).
    Sources the strategy does not read are ignored. No phase at all is always an error.
    """
    wanted_phases = _check(strategy)
    wanted = [s for s in SOURCES if any(s in p.sources for p in wanted_phases)]
    available = set(sources)
    missing = [s for s in wanted if s not in available]
    if missing and not allow_missing:
        raise ValueError(
            f"strategy {strategy!r} reads sources {wanted} but {missing} "
            f"{'is' if len(missing) == 1 else 'are'} not configured (set "
            f"{', '.join(_ROOT_OPTION[m] for m in missing)}); to run only the phases that have data, set "
            "data.phases.allow_missing: true"
        )
    phases = [replace(p, sources=tuple(s for s in p.sources if s in available)) for p in wanted_phases]
    phases = [p for p in phases if p.sources]
    if not phases:
        raise ValueError(f"strategy {strategy!r} has no phase with the configured sources {sorted(available)}")
    if missing:
        warnings.warn(
            f"strategy {strategy!r} without the sources {missing} (data.phases.allow_missing): running only the "
            f"phases {[p.name for p in phases]} on {[list(p.sources) for p in phases]}",
            UserWarning,
            stacklevel=2,
        )
    return phases
