"""Evaluate stage: a trained model on the fixed test split -> confusion matrix and segmentation metrics.

Metrics come from one confusion matrix accumulated with torchmetrics over every labelled test pixel (the
ignore index is excluded). Per class: IoU = TP / (TP + FP + FN), precision, recall and F1. **Macro mIoU**
is the mean IoU over the classes that occur in the test labels or the predictions (a class with neither
has no defined IoU and is left out, as in mmsegmentation); a class present but never predicted counts
with IoU 0, so rare classes weigh as much as common ones. Pixel accuracy is reported beside it, and so is
the same evaluation for a majority-class baseline (every pixel predicted as the most frequent training
class), the floor any model must clear.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassConfusionMatrix
from tqdm import tqdm

from lulc import classes
from lulc.dataset import ChipStoreDataset
from lulc.io import atomic_path, write_json
from lulc.split_table import load_split

log = logging.getLogger(__name__)


def metrics_from_confusion(confusion: np.ndarray) -> dict[str, Any]:
    """Macro mIoU, per-class IoU / precision / recall / F1 and pixel accuracy from a confusion matrix.

    ``confusion[i, j]`` counts pixels of true class ``i`` predicted as ``j``. Undefined per-class values
    (a class absent from labels and predictions) are ``None`` and excluded from the macro means.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
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
            for name, v in zip(classes.CLASS_NAMES, values, strict=True)
        }

    return {
        "miou": round(float(np.nanmean(iou)), 6) if np.isfinite(iou).any() else None,
        "macro_f1": round(float(np.nanmean(f1)), 6) if np.isfinite(f1).any() else None,
        "pixel_accuracy": round(float(tp.sum() / total), 6) if total else None,
        "iou": per_class(iou),
        "f1": per_class(f1),
        "precision": per_class(precision),
        "recall": per_class(recall),
        "support": {name: int(n) for name, n in zip(classes.CLASS_NAMES, support, strict=True)},
        "pixels": int(total),
    }


def majority_confusion(confusion: np.ndarray, majority_class: int) -> np.ndarray:
    """The confusion matrix of a model that predicts ``majority_class`` for every labelled pixel."""
    baseline = np.zeros_like(confusion)
    baseline[:, majority_class] = np.asarray(confusion).sum(axis=1)
    return baseline


@torch.no_grad()
def confusion_matrix(
    model: torch.nn.Module, dataset: ChipStoreDataset, batch_size: int = 16, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Accumulate the confusion matrix of ``model`` over ``dataset`` (raw int16 chips in, logits out)."""
    metric = MulticlassConfusionMatrix(classes.NUM_CLASSES, ignore_index=classes.IGNORE_INDEX).to(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    model = model.to(device).eval()
    for batch in tqdm(loader, desc="evaluating", unit="batch", leave=False):
        logits = model(batch["image"].to(device))
        metric.update(logits.argmax(dim=1), batch["mask"].to(device).long())
    return metric.compute().cpu().numpy().astype(np.int64)


def confusion_frame(confusion: np.ndarray) -> pd.DataFrame:
    """A labelled confusion-matrix table: rows true classes, columns predicted classes."""
    return pd.DataFrame(
        confusion,
        index=pd.Index(classes.CLASS_NAMES, name="true"),
        columns=pd.Index(classes.CLASS_NAMES, name="predicted"),
    )


@dataclass(frozen=True)
class RunToEvaluate:
    """One trained run: its checkpoint, its run.json content, and where its three outputs go."""

    checkpoint: Path
    out_json: Path
    out_confusion: Path
    out_classes: Path
    run_info: Mapping[str, Any] | None = None


def evaluate_runs(
    runs: Sequence[RunToEvaluate],
    stores: Mapping[str, Path],
    splits_table: Path,
    batch_size: int = 16,
) -> list[dict[str, Any]]:
    """Evaluate trained runs on the test split; write each run's metrics JSON, confusion CSV, per-class CSV.

    The test split, its chips and the training majority class are the same for every run: they are read once.
    """
    from lulc.models import load_trained_model

    device = "cuda" if torch.cuda.is_available() else "cpu"
    test = load_split(splits_table, "test")
    dataset = ChipStoreDataset(dict(stores), test)
    majority = _training_majority_class(stores, load_split(splits_table, "train"))
    results = []
    for run in runs:
        start = time.perf_counter()
        model, record = load_trained_model(run.checkpoint)
        matmul_precision = torch.get_float32_matmul_precision()  # set by every TerraTorch import (build_model)
        confusion = confusion_matrix(model, dataset, batch_size, device)
        result = {
            **metrics_from_confusion(confusion),
            "majority_baseline": {
                "class": classes.CLASS_NAMES[majority],
                **{
                    k: v
                    for k, v in metrics_from_confusion(majority_confusion(confusion, majority)).items()
                    if k in ("miou", "macro_f1", "pixel_accuracy")
                },
            },
            "test_chips": len(test),
            "checkpoint": str(run.checkpoint),
            "run": dict(run.run_info or {}),
            "model": record.get("info", {}).get("name"),
            "matmul_precision": matmul_precision,
            "seconds": round(time.perf_counter() - start, 2),
        }
        log.info(
            "%s: test mIoU %.4f (majority baseline %.4f), pixel accuracy %.4f",
            run.checkpoint,
            result["miou"] or float("nan"),
            result["majority_baseline"]["miou"] or float("nan"),
            result["pixel_accuracy"] or float("nan"),
        )
        with atomic_path(run.out_confusion) as tmp:
            confusion_frame(confusion).to_csv(tmp)
        per_class = pd.DataFrame({key: result[key] for key in ("iou", "f1", "precision", "recall", "support")})
        per_class.index.name = "class"
        with atomic_path(run.out_classes) as tmp:
            per_class.to_csv(tmp)
        write_json(result, run.out_json)
        results.append(result)
    return results


def _training_majority_class(stores: Mapping[str, Path], train: pd.DataFrame) -> int:
    """The most frequent labelled class over the training pool's pixels (from the chip manifests)."""
    counts = np.zeros(classes.NUM_CLASSES, dtype=np.int64)
    columns = [f"px_{name}" for name in classes.CLASS_NAMES]
    for aoi, store in stores.items():
        manifest = pd.read_parquet(Path(store) / "manifest.parquet", columns=["index", *columns])
        chosen = manifest[manifest["index"].isin(train.loc[train["aoi"] == aoi, "index"])]
        counts += chosen[columns].to_numpy().sum(axis=0)
    return int(np.argmax(counts))
