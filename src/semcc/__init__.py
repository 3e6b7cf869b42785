"""semcc: Semantic-CC, remote-sensing image change captioning guided by change detection.

The public API (imported on first use, so that ``import semcc`` stays light and the pure-torch parts never
load Lightning)::

    from semcc import SemanticCCTask, SemanticCCDataModule, Predictor, build_semantic_cc

* :class:`SemanticCCTask` (``semcc.tasks``): the LightningModule, loss of Eq. 9 and strategy of Sec. III-F;
  :func:`load_task` rebuilds one from a ``semcc fit`` checkpoint.
* :class:`SemanticCCDataModule` (``semcc.data``): LEVIR-CC / LEVIR-MCI / LEVIR-CD and SynthLEVIR.
* :class:`Predictor` (``semcc.inference``): captions and masks for a user's own image pairs.
* :func:`build_semantic_cc` and :class:`SemanticCC` (``semcc.models``): the network of Eq. 1, pure torch.

The layers, bottom up: ``semcc.strategies`` (the strategy table), ``semcc.data`` and ``semcc.models`` (pure
torch), ``semcc.metrics``, ``semcc.tasks`` (Lightning), ``semcc.inference`` / ``semcc.visualize``, and the
commands (``semcc.cli``, ``semcc.commands``, ``semcc.main``). ``docs/design.md`` describes them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.17.0"

#: Public name -> the module that defines it.
_API = {
    "SemanticCCTask": "semcc.tasks.module",
    "load_task": "semcc.tasks.loading",
    "SemanticCCDataModule": "semcc.data.datamodule",
    "SynthLEVIRConfig": "semcc.data.synthetic",
    "generate_synth_levir": "semcc.data.synthetic",
    "Predictor": "semcc.inference",
    "PairPrediction": "semcc.inference",
    "SemanticCC": "semcc.models.semantic_cc",
    "build_semantic_cc": "semcc.models.presets",
}

__all__ = [
    "PairPrediction",
    "Predictor",
    "SemanticCC",
    "SemanticCCDataModule",
    "SemanticCCTask",
    "SynthLEVIRConfig",
    "__version__",
    "build_semantic_cc",
    "generate_synth_levir",
    "load_task",
]

if TYPE_CHECKING:
    from semcc.data.datamodule import SemanticCCDataModule
    from semcc.data.synthetic import SynthLEVIRConfig, generate_synth_levir
    from semcc.inference import PairPrediction, Predictor
    from semcc.models.presets import build_semantic_cc
    from semcc.models.semantic_cc import SemanticCC
    from semcc.tasks.loading import load_task
    from semcc.tasks.module import SemanticCCTask


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'semcc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
