"""Metrics from confusion matrices, the majority baseline, and the summary tables and figures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from lulc import classes
from lulc.evaluate import confusion_matrix, majority_confusion, metrics_from_confusion
from lulc.summary import bootstrap_interval, interquartile_mean, make_summary, runs_table

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


def _metric_files(tmp_path, models=("prithvi", "unet"), fractions=(1.0, 0.5), seeds=(0, 1, 2, 3, 4)):
    rng = np.random.default_rng(0)
    metric_files, confusion_files = [], []
    for model in models:
        for fraction in fractions:
            for seed in seeds:
                base = {"prithvi": 0.6, "unet": 0.4}[model] * (0.7 + 0.3 * fraction)
                confusion = np.diag(rng.integers(50, 100, C)) + rng.integers(0, 10, (C, C))
                result = metrics_from_confusion(confusion)
                result["miou"] = base + rng.normal(0, 0.02)
                result["majority_baseline"] = {"miou": 0.05, "pixel_accuracy": 0.3, "macro_f1": 0.04}
                result["run"] = {"model": model, "fraction": fraction, "seed": seed, "weights": "none"}
                name = f"{model}_{fraction}_{seed}"
                (tmp_path / f"{name}.json").write_text(json.dumps(result))
                pd.DataFrame(confusion).to_csv(tmp_path / f"{name}.csv")
                metric_files.append(tmp_path / f"{name}.json")
                confusion_files.append(tmp_path / f"{name}.csv")
    return metric_files, confusion_files


def test_interquartile_mean_and_bootstrap():
    assert interquartile_mean([1, 2, 3, 4, 100]) == pytest.approx(3.0)
    assert interquartile_mean([5.0]) == 5.0
    low, high = bootstrap_interval([0.50, 0.52, 0.48, 0.51, 0.49])
    assert 0.47 <= low <= 0.5 <= high <= 0.53
    assert bootstrap_interval([0.5, 0.52, 0.48, 0.51, 0.49]) == (low, high)  # seeded


def test_summary_tables_and_figures(tmp_path):
    metric_files, confusion_files = _metric_files(tmp_path)
    aggregate = make_summary(metric_files, confusion_files, tmp_path / "summary")
    runs = pd.read_csv(tmp_path / "summary" / "runs.csv")
    assert len(runs) == 20 and set(runs["model"]) == {"prithvi", "unet"}
    assert len(aggregate) == 4 and (aggregate["runs"] == 5).all()
    prithvi_full = aggregate[(aggregate["model"] == "prithvi") & (aggregate["fraction"] == 1.0)].iloc[0]
    expected = runs[(runs["model"] == "prithvi") & (runs["fraction"] == 1.0)]["miou"]
    assert prithvi_full["miou_mean"] == pytest.approx(expected.mean(), abs=1e-6)
    assert prithvi_full["miou_sd"] == pytest.approx(expected.std(ddof=1), abs=1e-6)
    assert prithvi_full["miou_iqm_ci_low"] <= prithvi_full["miou_iqm"] <= prithvi_full["miou_iqm_ci_high"]
    for name in ("figure1_miou_vs_fraction.png", "per_class_iou.png", "confusion_matrices.png"):
        assert (tmp_path / "summary" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "majority class" in (tmp_path / "summary" / "aggregate.md").read_text()


def test_summary_rejects_an_empty_run_list():
    with pytest.raises(ValueError, match="at least one"):
        runs_table([])


def test_every_model_gets_its_own_colour():
    from lulc.summary import MODEL_COLOURS, model_colours

    colours = model_colours(["prithvi", "prithvi_scratch", "unet", "vit", "my_model"])
    assert len(set(colours.values())) == 5  # an extra entry never reuses a colour of another model
    assert colours["prithvi"] == MODEL_COLOURS["prithvi"] and colours["unet"] == MODEL_COLOURS["unet"]
