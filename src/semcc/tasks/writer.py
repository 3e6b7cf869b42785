"""Writes what ``semcc predict`` makes: ``captions.json`` and one change-mask PNG per pair.

The predictions are those of :meth:`SemanticCCTask.predict_step` (paper Eq. 1: the mask M of Eq. 6 and
the caption T of Eq. 7). Captions of every rank are gathered and written once by rank 0, one entry per
pair name (``DistributedSampler`` padding repeats are dropped), with the references when the data has them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from semcc.data.inputs import mask_to_png

__all__ = ["CaptionMaskWriter"]


class CaptionMaskWriter(BasePredictionWriter):
    """Write ``output_dir/captions.json`` (name, prediction, references) and ``output_dir/masks/NAME.png``.

    Masks are 8-bit PNGs (:func:`semcc.data.inputs.mask_to_png`): 0 / 255 for binary change, the class index
    times ``255 // (classes - 1)`` for multi-class masks.
    """

    def __init__(self, output_dir: str = "predictions", write_masks: bool = True) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.write_masks = write_masks
        self._items: dict[str, dict[str, Any]] = {}

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._items = {}

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Any,
        batch: dict[str, Any],
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        names = prediction["name"]
        captions = prediction.get("caption") or [None] * len(names)
        refs = batch.get("captions") or [[] for _ in names]
        for name, caption, ref in zip(names, captions, refs, strict=True):
            self._items[name] = {"name": name, "prediction": caption, "references": list(ref)}
        masks = prediction.get("mask")
        if self.write_masks and masks is not None:
            folder = self.output_dir / "masks"
            folder.mkdir(parents=True, exist_ok=True)
            head = getattr(getattr(pl_module, "model", None), "cd_head", None)
            classes = max(2, int(getattr(head, "num_classes", 1)))  # one binary logit = two classes
            for name, mask in zip(names, masks, strict=True):
                png = Path(str(name).replace(":", "_")).with_suffix(".png").name
                mask_to_png(mask, classes).save(folder / png)

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        items = self._items
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            parts: list[dict] = [None] * torch.distributed.get_world_size()  # type: ignore[list-item]
            torch.distributed.all_gather_object(parts, items)
            items = {k: v for part in parts for k, v in part.items()}
        if trainer.is_global_zero:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            path = self.output_dir / "captions.json"
            path.write_text(json.dumps([items[k] for k in sorted(items)], indent=1))
            print(f"semcc: {len(items)} captions in {path}" + (f", masks in {self.output_dir / 'masks'}"
                                                                if self.write_masks else ""))
