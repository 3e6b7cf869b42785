"""semcc.data: the data of the paper's experiments (Sec. IV-A), pure torch and PIL below the data module.

* LEVIR-CC / LEVIR-MCI / LEVIR-CD readers (``levir``), plain folders of pairs (``folder``), the caption text and
  word tokenizer (``text``), SynthLEVIR, a generator of LEVIR-like data (``synthetic``);
* the phase sampler of the training strategies (``sampler``, over :mod:`semcc.strategies`);
* :class:`SemanticCCDataModule` (``datamodule``, the one Lightning module here), imported on first use so that
  the readers never load Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["SemanticCCDataModule"]

if TYPE_CHECKING:
    from semcc.data.datamodule import SemanticCCDataModule


def __getattr__(name: str) -> Any:
    if name == "SemanticCCDataModule":
        return importlib.import_module("semcc.data.datamodule").SemanticCCDataModule
    raise AttributeError(f"module 'semcc.data' has no attribute {name!r}")
