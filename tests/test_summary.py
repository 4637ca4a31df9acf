"""Summary: one row per run, interquartile mean with bootstrap intervals, Figure 1 and the other figures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lulc import classes
from lulc.evaluate import metrics_from_confusion
from lulc.summary import bootstrap_interval, interquartile_mean, make_summary, runs_table

C = classes.NUM_CLASSES


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
