"""Change-detection metrics of Sec. IV-B (torchmetrics): precision, recall, F1, IoU of the change class, OA.

The masks the CD head of Eq. 6 predicts are scored per pixel over the whole split (torchmetrics keeps the
counts, and sums them over ranks under DDP). Binary masks (LEVIR-CD, change vs no change) give
``precision``, ``recall``, ``f1``, ``iou`` of the change class and the overall accuracy ``oa``. Multi-class
masks (LEVIR-MCI: none / building / road) give the same metrics per class (``f1_building`` ...), their mean
over the change classes (``f1`` = mean of ``f1_building`` and ``f1_road``; class 0 is "no change"), the
mean over all classes (``miou_all``) and ``oa``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryF1Score,
    BinaryJaccardIndex,
    BinaryPrecision,
    BinaryRecall,
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassJaccardIndex,
    MulticlassPrecision,
    MulticlassRecall,
)

__all__ = ["DEFAULT_CLASS_NAMES", "detection_metrics", "flatten_detection_scores"]

#: LEVIR-MCI's classes (label 0 / 255 building / 128 road).
DEFAULT_CLASS_NAMES = ("none", "building", "road")


def detection_metrics(num_classes: int = 1) -> MetricCollection:
    """A :class:`MetricCollection` for masks of ``num_classes`` (1: binary logits; >= 2: class indices).

    Binary: update with ``(pred, target)`` of 0/1 per pixel. Multi-class: class indices per pixel; the
    per-class metrics are vectors (``average=None``) that :func:`flatten_detection_scores` names.
    """
    if num_classes <= 2:
        return MetricCollection(
            {
                "precision": BinaryPrecision(),
                "recall": BinaryRecall(),
                "f1": BinaryF1Score(),
                "iou": BinaryJaccardIndex(),
                "oa": BinaryAccuracy(),
            }
        )
    kw = {"num_classes": num_classes, "average": "none"}
    return MetricCollection(
        {
            "precision": MulticlassPrecision(**kw),
            "recall": MulticlassRecall(**kw),
            "f1": MulticlassF1Score(**kw),
            "iou": MulticlassJaccardIndex(**kw),
            "oa": MulticlassAccuracy(num_classes=num_classes, average="micro"),
        }
    )


def flatten_detection_scores(
    scores: Mapping[str, torch.Tensor], class_names: Sequence[str] | None = None, prefix: str = ""
) -> dict[str, float]:
    """Scalar scores from :func:`detection_metrics`' ``compute()`` (keys may carry a collection prefix).

    Vectors (multi-class) become ``<metric>_<class>`` per class, ``<metric>`` the mean over the change
    classes (all but class 0) and ``miou_all`` the IoU averaged over every class.
    """
    out: dict[str, float] = {}
    for key, value in scores.items():
        name = key[len(prefix):] if prefix and key.startswith(prefix) else key
        value = value.detach().float().cpu()
        if value.ndim == 0:
            out[prefix + name] = float(value)
            continue
        names = list(class_names) if class_names is not None else list(DEFAULT_CLASS_NAMES[: len(value)])
        names += [f"class{i}" for i in range(len(names), len(value))]
        for i, v in enumerate(value.tolist()):
            out[f"{prefix}{name}_{names[i]}"] = float(v)
        out[prefix + name] = float(value[1:].mean())
        if name == "iou":
            out[prefix + "miou_all"] = float(value.mean())
    return out
