"""semcc.tasks: the Lightning layer (paper Eq. 9 and Sec. III-F) over the pure-torch model and data.

* :class:`SemanticCCTask` (``module``): the LightningModule; its helpers ``schedule`` (AdamW, warm-up + cosine,
  DDP for phase-wise training), ``feature_cache``, ``evaluator`` and ``checkpointing``;
* :func:`load_task` (``loading``): a trained task from a ``semcc fit`` checkpoint alone;
* ``losses`` (L_cd), ``identity`` (frozen-weight fingerprint), ``sharding`` (FSDP2), ``preemption`` and
  ``writer`` (Lightning callbacks).
"""

from semcc.tasks.evaluator import EvalConfig
from semcc.tasks.loading import load_task
from semcc.tasks.module import SemanticCCTask
from semcc.tasks.schedule import OptimConfig

__all__ = ["EvalConfig", "OptimConfig", "SemanticCCTask", "load_task"]
