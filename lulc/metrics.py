"""Segmentation metrics from a confusion matrix: per-class IoU, precision, recall, F1, macro means, pixel
accuracy, and the majority-class baseline.

Pure numpy, nothing else (class names come from the caller, read from the artefact scored): the evaluate stage,
with the same definitions, and a rule that only compares two rasters needs no training environment for them.
``confusion[i, j]`` counts pixels of true class ``i`` predicted as ``j``; the ignore index is never counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


def metrics_from_confusion(confusion: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Macro mIoU, per-class IoU / precision / recall / F1 and pixel accuracy from a confusion matrix.

    Undefined per-class values (a class absent from labels and predictions) are ``None`` and excluded from the
    macro means. ``names`` are the classes of the rows and columns (the legend's, in index order).
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    if confusion.shape != (len(names), len(names)):
        raise ValueError(f"a confusion matrix of shape {confusion.shape} for {len(names)} classes")
    tp = np.diag(confusion)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    union = support + predicted - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        precision = np.where(predicted > 0, tp / predicted, np.where(support > 0, 0.0, np.nan))
        recall = np.where(support > 0, tp / support, np.nan)
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), np.nan)
    total = confusion.sum()

    def per_class(values: np.ndarray) -> dict[str, float | None]:
        return {
            name: (None if np.isnan(v) else round(float(v), 6))
            for name, v in zip(names, values, strict=True)
        }

    return {
        "miou": round(float(np.nanmean(iou)), 6) if np.isfinite(iou).any() else None,
        "macro_f1": round(float(np.nanmean(f1)), 6) if np.isfinite(f1).any() else None,
        "pixel_accuracy": round(float(tp.sum() / total), 6) if total else None,
        "iou": per_class(iou),
        "f1": per_class(f1),
        "precision": per_class(precision),
        "recall": per_class(recall),
        "support": {name: int(n) for name, n in zip(names, support, strict=True)},
        "pixels": int(total),
    }


def majority_confusion(confusion: np.ndarray, majority_class: int) -> np.ndarray:
    """The confusion matrix of a model that predicts ``majority_class`` for every labelled pixel."""
    baseline = np.zeros_like(confusion)
    baseline[:, majority_class] = np.asarray(confusion).sum(axis=1)
    return baseline


def pixel_confusion(pred: np.ndarray, label: np.ndarray, n: int) -> np.ndarray:
    """Confusion matrix of two class-index arrays of one shape over ``n`` classes; pixels where either is outside
    the legend (the ignore index, map nodata) are not counted."""
    keep = (label < n) & (pred < n)
    return np.bincount(label[keep].astype(np.int64) * n + pred[keep], minlength=n * n).reshape(n, n)


def confusion_frame(confusion: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """A labelled confusion-matrix table: rows true classes, columns predicted classes."""
    return pd.DataFrame(
        confusion,
        index=pd.Index(list(names), name="true"),
        columns=pd.Index(list(names), name="predicted"),
    )


__all__ = ["confusion_frame", "majority_confusion", "metrics_from_confusion", "pixel_confusion"]
