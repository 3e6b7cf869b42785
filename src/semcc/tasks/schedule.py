"""Training strategies of Sec. III-F and Table IV: which parts of SemanticCC train in each phase.

``three_stage`` (the paper's): every epoch runs (i) ``cd``: CD on D_cd, training the encoder's trainable
parts, the neck and the CD head; (ii) ``cc``: CC on D_cc with the image encoder frozen (neck and caption
head train); (iii) ``joint``: the neck alone on D_cd-cc with the joint loss L = L_cc + lambda L_cd of
Eq. 9. ``two_stage``: (i) then (ii). ``one_stage``: one phase ``all`` in which everything trains on every
source, each batch giving the losses its labels allow. The order of the batches comes from
:class:`semcc.data.sampler.PhaseBatchSampler`.
"""

from __future__ import annotations

from semcc.data.sampler import STRATEGIES

__all__ = ["PHASE_LOSSES", "PHASE_PARTS", "STRATEGIES"]

#: Parts of SemanticCC (attribute names) that train in each phase, as Sec. III-F describes.
PHASE_PARTS: dict[str, tuple[str, ...]] = {
    "cd": ("encoder", "neck", "cd_head"),
    "cc": ("neck", "cc_head"),
    "joint": ("neck",),
    "all": ("encoder", "neck", "cd_head", "cc_head"),
}
#: Losses each phase computes (``cd``: L_cd, ``cc``: L_cc).
PHASE_LOSSES: dict[str, tuple[str, ...]] = {"cd": ("cd",), "cc": ("cc",), "joint": ("cd", "cc"), "all": ("cd", "cc")}
