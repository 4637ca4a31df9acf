"""Evaluation: macro mIoU, per-class IoU and F1 from the confusion matrix, ignore index excluded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lulc import classes
from lulc.evaluate import confusion_matrix, majority_confusion, metrics_from_confusion

C = classes.NUM_CLASSES


def test_metrics_from_a_hand_made_confusion_matrix():
    confusion = np.zeros((C, C), np.int64)
    confusion[0, 0], confusion[0, 1] = 8, 2  # water: 8 right, 2 called trees
    confusion[1, 1] = 10  # trees all right
    confusion[3, 1] = 5  # crops never predicted
    metrics = metrics_from_confusion(confusion)
    assert metrics["iou"]["water"] == pytest.approx(8 / 10)
    assert metrics["iou"]["trees"] == pytest.approx(10 / 17)
    assert metrics["iou"]["crops"] == 0.0
    assert metrics["iou"]["built_area"] is None  # absent from labels and predictions: undefined
    assert metrics["miou"] == pytest.approx((0.8 + 10 / 17 + 0.0) / 3)
    assert metrics["pixel_accuracy"] == pytest.approx(18 / 25)
    assert metrics["f1"]["water"] == pytest.approx(2 * 8 / (10 + 8))
    assert metrics["support"]["crops"] == 5


def test_majority_baseline_is_far_below_a_good_model():
    confusion = np.diag([100, 50, 0, 300, 20, 0, 0, 0, 80]).astype(np.int64)
    perfect = metrics_from_confusion(confusion)
    baseline = metrics_from_confusion(majority_confusion(confusion, 3))
    assert perfect["miou"] == 1.0
    assert baseline["pixel_accuracy"] == pytest.approx(300 / 550)
    assert baseline["miou"] == pytest.approx((300 / 550) / 5)


class _Constant(torch.nn.Module):
    """Predicts class index 1 everywhere except where the first band is above 1000."""

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(raw.shape[0], C, *raw.shape[-2:])
        high = raw[:, 0, 0] > 1000
        logits[:, 1] = 1.0
        logits[:, 0] = torch.where(high, 2.0, 0.0)
        return logits


def test_confusion_matrix_excludes_the_ignore_index():
    images = torch.zeros(2, 3, 6, 4, 4, dtype=torch.int16)
    images[0, 0, 0, :2] = 2000
    masks = torch.ones(2, 4, 4, dtype=torch.uint8)
    masks[0, :2] = 0
    masks[1, 0, 0] = classes.IGNORE_INDEX
    dataset = [{"image": images[i], "mask": masks[i]} for i in range(2)]
    confusion = confusion_matrix(_Constant(), dataset, batch_size=2)
    assert confusion.sum() == 31
    assert confusion[0, 0] == 8 and confusion[1, 1] == 23
