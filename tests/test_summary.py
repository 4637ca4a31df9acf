"""Summary: one row per run, interquartile mean with bootstrap intervals, Figure 1 and the other figures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lulc.metrics import metrics_from_confusion
from lulc.summary import (
    answer_markdown,
    answer_sentence,
    answer_table,
    best_baselines,
    bootstrap_interval,
    interquartile_mean,
    make_summary,
    model_role,
    paired_differences,
    per_class_differences,
    plain_mean,
    plot_difference_curve,
    run_model_type,
    run_weights_source,
    runs_table,
    verdict,
    write_answer,
)
from tests import io_legend as classes

C = classes.NUM_CLASSES
#: What a run's record (run.json) says about its weights, per model of the test fixture.
WEIGHTS = {"prithvi": {"source": "pretrain"}, "unet": {"source": "none", "note": "U-Net trained from scratch"}}


def _metric_files(tmp_path, models=("prithvi", "unet"), fractions=(1.0, 0.5), seeds=(0, 1, 2, 3, 4)):
    rng = np.random.default_rng(0)
    metric_files, confusion_files = [], []
    for model in models:
        for fraction in fractions:
            for seed in seeds:
                base = {"prithvi": 0.6, "unet": 0.4}[model] * (0.7 + 0.3 * fraction)
                confusion = np.diag(rng.integers(50, 100, C)) + rng.integers(0, 10, (C, C))
                result = metrics_from_confusion(confusion, classes.CLASS_NAMES)
                result["miou"] = base + rng.normal(0, 0.02)
                result["majority_baseline"] = {"miou": 0.05, "pixel_accuracy": 0.3, "macro_f1": 0.04}
                result["run"] = {
                    "model": model,
                    "model_type": model,
                    "fraction": fraction,
                    "seed": seed,
                    "weights": WEIGHTS[model],
                }
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
    from lulc.families import FAMILIES
    from lulc.summary import model_colours

    others = [f for f in FAMILIES if f not in ("prithvi", "unet", "vit")]
    models = ["prithvi", "prithvi_scratch", "unet", "vit", "my_model", *others]
    colours = model_colours(models)
    assert len(set(colours.values())) == len(models)  # an extra entry never reuses a colour of another model
    for family in FAMILIES:  # an entry named after its family has the family's colour, from its record
        assert colours[family] == FAMILIES[family].colour


# ------------------------------------------------------------------ the study's question, with its uncertainty


def _runs(rows, classes_iou=None):
    """A hand-made runs table: (model, fraction, seed, mIoU) rows; roles from the model names."""
    roles = {
        "prithvi": ("prithvi", "pretrain"),
        "prithvi_frozen": ("prithvi", "huggingface_cache"),
        "prithvi_scratch": ("prithvi", "none"),
        "unet": ("unet", "none"),
        "vit": ("vit", "none"),
    }
    frame = pd.DataFrame(rows, columns=["model", "fraction", "seed", "miou"])
    frame["model_type"] = [roles[m][0] for m in frame["model"]]
    frame["weights_source"] = [roles[m][1] for m in frame["model"]]
    frame["role"] = [model_role(*roles[m]) for m in frame["model"]]
    for name, values in (classes_iou or {}).items():
        frame[f"iou_{name}"] = values
    return frame


@pytest.mark.parametrize(
    ("model_type", "source", "role"),
    [
        ("prithvi", "pretrain", "foundation"),
        ("prithvi", "huggingface_cache", "foundation"),
        ("prithvi", "file", "foundation"),
        ("prithvi", "none", "scratch"),
        ("prithvi", None, "other"),
        ("unet", "none", "baseline"),
        ("vit", "none", "baseline"),
        ("vit", "file", "baseline"),
        ("segformer", "pretrain", "other"),
        (None, None, "other"),
    ],
)
def test_model_role(model_type, source, role):
    assert model_role(model_type, source) == role


def test_model_type_and_weights_come_from_the_run_record():
    # the record written by training: model_type and the weights record
    run = {"model": "ablation", "model_type": "prithvi", "weights": {"source": "huggingface_cache", "repo": "r"}}
    assert (run_model_type(run), run_weights_source(run)) == ("prithvi", "huggingface_cache")
    # older records: the model config carries the type and the weights spec
    run = {"model": "ablation", "model_config": {"type": "prithvi", "weights": "none"}}
    assert (run_model_type(run), run_weights_source(run)) == ("prithvi", "none")
    assert run_weights_source({"model_config": {"weights": "/data/prithvi.pt"}}) == "file"
    assert run_weights_source({"model_config": {"weights": "hf"}}) == "huggingface_cache"
    # a models entry's type defaults to its name; an unknown name without a type has none
    assert run_model_type({"model": "vit"}) == "vit" and run_model_type({"model": "mine"}) is None
    assert run_weights_source({"model": "unet"}) is None


def test_paired_difference_and_interval_match_a_direct_computation():
    unet = [0.40, 0.42, 0.38, 0.41, 0.45]
    prithvi = [0.45, 0.44, 0.43, 0.47, 0.46]
    runs = _runs(
        [("unet", 0.5, s, v) for s, v in enumerate(unet)] + [("prithvi", 0.5, s, v) for s, v in enumerate(prithvi)]
    )
    diffs = (np.array(prithvi) - np.array(unet)) * 100  # points: 5, 2, 5, 6, 1
    got = paired_differences(runs, "prithvi", "unet", 0.5)
    np.testing.assert_allclose(got.to_numpy(), diffs)
    answer = answer_table(runs)
    assert len(answer) == 1
    row = answer.iloc[0]
    assert (row["model"], row["reference"], row["reference_role"], row["n_pairs"]) == ("prithvi", "unet", "baseline", 5)
    assert row["mean_diff"] == pytest.approx(19 / 5, abs=1e-6)
    assert row["model_miou"] == pytest.approx(np.mean(prithvi) * 100, abs=1e-6)
    # an independent percentile bootstrap: resample the 5 seeds with replacement, 2000 times, seed 0
    rng = np.random.default_rng(0)
    draws = [diffs[rng.integers(0, 5, 5)].mean() for _ in range(2000)]
    assert row["ci_low"] == pytest.approx(np.quantile(draws, 0.025), abs=1e-6)
    assert row["ci_high"] == pytest.approx(np.quantile(draws, 0.975), abs=1e-6)
    assert 1 <= row["ci_low"] < row["mean_diff"] < row["ci_high"] <= 6
    assert row["verdict"] == "better"
    assert bootstrap_interval(diffs, statistic=plain_mean) == pytest.approx((row["ci_low"], row["ci_high"]), abs=1e-6)
    assert answer_table(runs).equals(answer)  # seeded: the same interval every time


def test_the_best_baseline_is_chosen_per_fraction():
    rows = []
    for seed in range(3):
        rows += [("unet", 1.0, seed, 0.50 + 0.01 * seed), ("vit", 1.0, seed, 0.45)]
        rows += [("unet", 0.25, seed, 0.30), ("vit", 0.25, seed, 0.33 + 0.01 * seed)]
        rows += [("prithvi", f, seed, 0.4) for f in (1.0, 0.25)]
    runs = _runs(rows)
    assert best_baselines(runs) == {0.25: "vit", 1.0: "unet"}
    answer = answer_table(runs).set_index("fraction")
    assert answer.loc[1.0, "reference"] == "unet" and answer.loc[0.25, "reference"] == "vit"
    assert answer.loc[1.0, "verdict"] == "worse" and answer.loc[0.25, "verdict"] == "better"


def test_pairing_is_by_seed():
    # seed 2 of the baseline and seed 3 of the foundation model are missing: only seeds 0, 1 and 4 pair
    unet = {0: 0.40, 1: 0.50, 3: 0.45, 4: 0.30}
    prithvi = {0: 0.41, 1: 0.52, 2: 0.90, 4: 0.34}
    runs = _runs([("unet", 1.0, s, v) for s, v in unet.items()] + [("prithvi", 1.0, s, v) for s, v in prithvi.items()])
    got = paired_differences(runs, "prithvi", "unet", 1.0)
    assert list(got.index) == [0, 1, 4]
    np.testing.assert_allclose(got.to_numpy(), [1.0, 2.0, 4.0])
    row = answer_table(runs).iloc[0]
    assert row["n_pairs"] == 3 and row["mean_diff"] == pytest.approx(7 / 3, abs=1e-6)
    # the paired means are over the paired seeds only
    assert row["model_miou"] == pytest.approx((0.41 + 0.52 + 0.34) / 3 * 100, abs=1e-6)
    # one pair: no interval, not distinguishable
    one = _runs([("unet", 1.0, 0, 0.4), ("prithvi", 1.0, 0, 0.6), ("prithvi", 1.0, 1, 0.6)])
    row = answer_table(one).iloc[0]
    assert row["n_pairs"] == 1 and np.isnan(row["ci_low"]) and np.isnan(row["ci_high"])
    assert row["verdict"] == "not distinguishable"


def test_the_foundation_model_is_compared_with_its_scratch_control():
    rows = []
    for seed in range(4):
        rows += [("unet", 0.5, seed, 0.5), ("prithvi", 0.5, seed, 0.45 + 0.01 * seed)]
        rows += [("prithvi_scratch", 0.5, seed, 0.40), ("prithvi_frozen", 0.5, seed, 0.50 + (-1) ** seed * 0.01)]
    answer = answer_table(_runs(rows))
    pairs = {(r.model, r.reference, r.reference_role): r.verdict for r in answer.itertuples()}
    assert pairs == {
        ("prithvi", "unet", "baseline"): "worse",
        ("prithvi", "prithvi_scratch", "scratch"): "better",
        ("prithvi_frozen", "unet", "baseline"): "not distinguishable at 4 seeds",
        ("prithvi_frozen", "prithvi_scratch", "scratch"): "better",
    }


def test_a_scratch_control_of_another_encoder_is_not_paired():
    """Prithvi-100M against a from-scratch Prithvi-tiny says nothing about pretraining: no such comparison."""
    rows = [(m, 1.0, seed, 0.4) for seed in range(3) for m in ("prithvi", "prithvi_scratch", "unet")]
    runs = _runs(rows)
    runs["encoder"] = runs["model"].map({"prithvi": '{"backbone": "prithvi_eo_v1_100"}',
                                         "prithvi_scratch": '{"backbone": "prithvi_eo_tiny"}', "unet": "unet"})
    assert {r.reference for r in answer_table(runs).itertuples()} == {"unet"}
    runs["encoder"] = runs["model"].map({"prithvi": "tiny", "prithvi_scratch": "tiny", "unet": "unet"})
    assert {r.reference for r in answer_table(runs).itertuples()} == {"unet", "prithvi_scratch"}


@pytest.mark.parametrize(
    ("low", "high", "n", "expected"),
    [
        (0.5, 2.0, 5, "better"),
        (-3.0, -0.1, 5, "worse"),
        (-1.0, 2.0, 5, "not distinguishable at 5 seeds"),
        (0.0, 2.0, 3, "not distinguishable at 3 seeds"),
        (float("nan"), float("nan"), 1, "not distinguishable"),
    ],
)
def test_verdict(low, high, n, expected):
    assert verdict(low, high, n) == expected


def test_answer_sentences():
    row = {"model": "prithvi", "reference": "unet", "reference_role": "baseline", "fraction": 0.125, "n_pairs": 5}
    better = {**row, "mean_diff": 3.14, "ci_low": 1.2, "ci_high": 5.04, "verdict": "better"}
    assert answer_sentence(better) == (
        "At 12.5 % of the training data, prithvi is 3.1 mIoU points better than the best baseline (unet) "
        "(95 % CI 1.2 to 5.0, 5 paired seeds)."
    )
    worse = {**row, "mean_diff": -2.0, "ci_low": -3.0, "ci_high": -1.0, "verdict": "worse"}
    assert "prithvi is 2.0 mIoU points worse than the best baseline (unet)" in answer_sentence(worse)
    same = {**row, "reference": "prithvi_scratch", "reference_role": "scratch", "fraction": 1.0}
    same |= {"mean_diff": -0.8, "ci_low": -2.9, "ci_high": 1.1, "verdict": "not distinguishable at 5 seeds"}
    assert answer_sentence(same) == (
        "At 100 % of the training data, prithvi is not distinguishable from its from-scratch control "
        "(prithvi_scratch) at 5 seeds (difference -0.8, 95 % CI -2.9 to 1.1)."
    )


def test_per_class_differences():
    iou = {"water": [0.5, 0.6, 0.7, 0.2, 0.4], "trees": [0.1, None, 0.3, 0.2, 0.2]}
    # rows: prithvi seeds 0, 1, then unet seeds 0, 1, 2 (unet's seed 2 has no pair)
    rows = [("prithvi", 1.0, 0, 0.5), ("prithvi", 1.0, 1, 0.5), ("unet", 1.0, 0, 0.4), ("unet", 1.0, 1, 0.4)]
    runs = _runs([*rows, ("unet", 1.0, 2, 0.4)], iou)
    table = per_class_differences(runs, answer_table(runs)).set_index("class")
    assert list(table.index) == ["water", "trees"]  # in the class order, only classes in the runs
    water, trees = table.loc["water"], table.loc["trees"]
    # water: seed 0 0.5 - 0.7, seed 1 0.6 - 0.2, in points: mean of -20 and +40
    assert water["n_pairs"] == 2 and water["mean_diff"] == pytest.approx(10.0, abs=1e-6)
    assert water["model_iou"] == pytest.approx(55.0) and water["reference_iou"] == pytest.approx(45.0)
    # trees: prithvi's seed 1 is undefined, so only seed 0 counts (0.1 - 0.3)
    assert trees["n_pairs"] == 1 and trees["mean_diff"] == pytest.approx(-20.0, abs=1e-6)
    assert trees["reference_iou"] == pytest.approx(30.0)


def test_difference_figure_and_answer_without_a_foundation_model(tmp_path):
    runs = _runs([(m, f, s, 0.4) for m in ("prithvi", "unet") for f in (1.0, 0.5) for s in range(3)])
    plot_difference_curve(answer_table(runs), tmp_path / "figure2.png")
    assert (tmp_path / "figure2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # only baselines and a from-scratch control: every file is written, with a sentence saying why
    alone = _runs([(m, 1.0, s, 0.4) for m in ("prithvi_scratch", "unet") for s in range(3)])
    answer = write_answer(alone, tmp_path / "none")
    assert answer.empty
    text = (tmp_path / "none" / "answer.md").read_text()
    assert "No foundation model" in text
    assert pd.read_csv(tmp_path / "none" / "answer.csv").empty
    assert pd.read_csv(tmp_path / "none" / "answer_per_class.csv").empty
    assert (tmp_path / "none" / "figure2_difference_vs_fraction.png").read_bytes()[:4] == b"\x89PNG"
    # a foundation model and its control but no baseline: the control is compared, the baseline question is not
    nobase = _runs([(m, 1.0, s, 0.4) for m in ("prithvi", "prithvi_scratch") for s in range(3)])
    answer = write_answer(nobase, tmp_path / "nobase")
    assert list(answer["reference"]) == ["prithvi_scratch"]
    assert "No baseline" in (tmp_path / "nobase" / "answer.md").read_text()
    assert "No foundation model" in answer_markdown(answer_table(alone), ["No foundation model here."])


def test_summary_answers_the_question_per_fraction(tmp_path):
    metric_files, confusion_files = _metric_files(tmp_path)
    make_summary(metric_files, confusion_files, tmp_path / "summary")
    out = tmp_path / "summary"
    runs = pd.read_csv(out / "runs.csv")
    assert dict(zip(runs["model"], runs["role"], strict=False)) == {"prithvi": "foundation", "unet": "baseline"}
    answer = pd.read_csv(out / "answer.csv")
    assert list(answer.columns[:9]) == [
        "model",
        "reference",
        "reference_role",
        "fraction",
        "n_pairs",
        "mean_diff",
        "ci_low",
        "ci_high",
        "verdict",
    ]
    assert sorted(answer["fraction"]) == [0.5, 1.0] and (answer["reference"] == "unet").all()
    assert (answer["n_pairs"] == 5).all() and (answer["verdict"] == "better").all()
    for fraction in (0.5, 1.0):
        direct = paired_differences(runs, "prithvi", "unet", fraction).mean()
        assert answer.set_index("fraction").loc[fraction, "mean_diff"] == pytest.approx(direct, abs=1e-5)
    text = (out / "answer.md").read_text()
    for percent in ("50 %", "100 %"):
        assert f"At {percent} of the training data, prithvi is " in text
        assert text.count(f"At {percent} of the training data") == 1
    assert "better than the best baseline (unet)" in text
    per_class = pd.read_csv(out / "answer_per_class.csv")
    assert len(per_class) == 2 * C and set(per_class["class"]) == set(classes.CLASS_NAMES)
    assert (out / "figure2_difference_vs_fraction.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
