"""Summary stage: every run's test metrics -> per-run and aggregate tables and the study's figures.

* ``runs.csv``: one row per model x fraction x seed (metrics, weights used, normalisation, wall time).
* ``aggregate.csv``: per model x fraction: runs, mean and standard deviation of mIoU, the interquartile
  mean (IQM, the mean of the middle 50 % of seeds: robust to one lucky or unlucky seed) with a
  percentile-bootstrap 95 % interval, and the same for pixel accuracy.
* ``figure1_miou_vs_fraction.png``: mIoU against training fraction, mean and a +-1 sd band per model,
  with the majority-class baseline (the seed's Figure 1).
* ``per_class_iou.png``: per-class IoU per model at the largest fraction (mean +- sd over seeds).
* ``confusion_matrices.png``: row-normalised confusion matrices per model at the largest fraction,
  summed over seeds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lulc import classes
from lulc.io import atomic_path

log = logging.getLogger(__name__)

MODEL_COLOURS = {"prithvi": "#1f77b4", "vit": "#ff7f0e", "unet": "#2ca02c"}
#: Colours for other model entries (e.g. an ablation such as ``prithvi_scratch``), in order of appearance.
EXTRA_COLOURS = ("#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def model_colours(models: Sequence[str]) -> dict[str, str]:
    """A distinct colour per model: the fixed ones for prithvi / vit / unet, then :data:`EXTRA_COLOURS`."""
    others = [m for m in models if m not in MODEL_COLOURS]
    extra = {m: EXTRA_COLOURS[i % len(EXTRA_COLOURS)] for i, m in enumerate(others)}
    return {m: MODEL_COLOURS.get(m) or extra[m] for m in models}


def interquartile_mean(values: Sequence[float]) -> float:
    """Mean of the values between the 25th and 75th percentile (by rank; all of them for n < 4)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0:
        return float("nan")
    cut = int(np.floor(n * 0.25))
    return float(x[cut : n - cut].mean())


def bootstrap_interval(
    values: Sequence[float], statistic=interquartile_mean, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``statistic`` over resampled values (seeded, so reproducible)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(x[rng.integers(0, len(x), len(x))]) for _ in range(n_boot)])
    alpha = (1 - level) / 2
    return (float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha)))


def runs_table(metric_files: Sequence[Path]) -> pd.DataFrame:
    """One row per run from the evaluate stage's JSON files, sorted by model, fraction, seed."""
    rows = []
    for path in metric_files:
        result = json.loads(Path(path).read_text())
        run = result.get("run", {})
        row: dict[str, Any] = {
            "model": run.get("model", result.get("model")),
            "fraction": float(run["fraction"]),
            "seed": int(run["seed"]),
            "miou": result["miou"],
            "macro_f1": result["macro_f1"],
            "pixel_accuracy": result["pixel_accuracy"],
            "majority_miou": result["majority_baseline"]["miou"],
            "majority_pixel_accuracy": result["majority_baseline"]["pixel_accuracy"],
            "train_chips": run.get("train_chips"),
            "best_epoch": run.get("best_epoch"),
            "epochs": run.get("epochs_run"),
            "best_val_miou": run.get("best_val_miou"),
            "weights": _describe(run.get("weights")),
            "normalization": _describe(run.get("normalization")),
            "wall_time_s": run.get("wall_time_s"),
            "samples_per_s": run.get("samples_per_s"),
            "device": run.get("device"),
        }
        row.update({f"iou_{name}": value for name, value in result["iou"].items()})
        rows.append(row)
    if not rows:
        raise ValueError("the summary needs at least one evaluated run")
    return pd.DataFrame(rows).sort_values(["model", "fraction", "seed"]).reset_index(drop=True)


def _describe(value: Any) -> str | None:
    """A compact one-line description of a run's weights or normalisation record."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        keep = {k: v for k, v in value.items() if not isinstance(v, list | dict)}
        return json.dumps(keep, sort_keys=True)
    return json.dumps(value)


def aggregate_table(runs: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per model x fraction: mean, sd, IQM and its bootstrap 95 % interval of mIoU and pixel accuracy."""
    rows = []
    for (model, fraction), group in runs.groupby(["model", "fraction"], sort=True):
        row: dict[str, Any] = {"model": model, "fraction": fraction, "runs": len(group)}
        for metric in ("miou", "pixel_accuracy"):
            values = group[metric].astype(float).to_numpy()
            low, high = bootstrap_interval(values, seed=seed)
            row.update(
                {
                    f"{metric}_mean": values.mean(),
                    f"{metric}_sd": values.std(ddof=1) if len(values) > 1 else float("nan"),
                    f"{metric}_iqm": interquartile_mean(values),
                    f"{metric}_iqm_ci_low": low,
                    f"{metric}_iqm_ci_high": high,
                }
            )
        row["majority_miou"] = group["majority_miou"].mean()
        rows.append(row)
    return pd.DataFrame(rows).round(6)


def _model_order(models: Sequence[str]) -> list[str]:
    known = [m for m in ("prithvi", "vit", "unet") if m in models]
    return known + sorted(set(models) - set(known))


def plot_fraction_curve(aggregate: pd.DataFrame, path: Path) -> None:
    """The seed's Figure 1: mIoU (%) against training fraction, mean +- 1 sd band per model."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    models = _model_order(aggregate["model"].unique())
    colours = model_colours(models)
    for model in models:
        rows = aggregate[aggregate["model"] == model].sort_values("fraction")
        x = rows["fraction"].to_numpy() * 100
        mean = rows["miou_mean"].to_numpy() * 100
        sd = np.nan_to_num(rows["miou_sd"].to_numpy() * 100)
        colour = colours[model]
        ax.plot(x, mean, marker="o", color=colour, label=f"{model} (n={int(rows['runs'].min())} seeds)")
        ax.fill_between(x, mean - sd, mean + sd, color=colour, alpha=0.2, linewidth=0)
    baseline = aggregate["majority_miou"].mean() * 100
    ax.axhline(baseline, color="grey", linestyle="--", linewidth=1, label="majority class")
    ax.set_xscale("log", base=2)
    fractions = sorted(aggregate["fraction"].unique() * 100)
    ax.set_xticks(fractions, [f"{f:g} %" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("training data used")
    ax.set_ylabel("test mIoU (%)")
    ax.set_title("mIoU against training fraction (mean ± 1 sd over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    _save(fig, path)


def plot_per_class_iou(runs: pd.DataFrame, path: Path) -> None:
    """Per-class IoU per model at the largest training fraction (mean +- sd over seeds)."""
    full = runs[runs["fraction"] == runs["fraction"].max()]
    models = _model_order(full["model"].unique())
    colours = model_colours(models)
    fig, ax = plt.subplots(figsize=(8.5, 4.2), dpi=120)
    width = 0.8 / max(len(models), 1)
    x = np.arange(classes.NUM_CLASSES)
    for i, model in enumerate(models):
        rows = full[full["model"] == model]
        values = rows[[f"iou_{n}" for n in classes.CLASS_NAMES]].astype(float)
        ax.bar(
            x + (i - (len(models) - 1) / 2) * width,
            values.mean() * 100,
            width,
            yerr=np.nan_to_num(values.std(ddof=1) * 100) if len(rows) > 1 else None,
            color=colours[model],
            label=model,
            capsize=2,
        )
    ax.set_xticks(x, [n.replace("_", " ") for n in classes.CLASS_NAMES], rotation=30, ha="right")
    ax.set_ylabel("test IoU (%)")
    ax.set_title(f"Per-class IoU at {runs['fraction'].max() * 100:g} % of the training data")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(frameon=False)
    _save(fig, path)


def plot_confusions(confusions: dict[str, np.ndarray], path: Path) -> None:
    """Row-normalised confusion matrices (recall per true class), one panel per model."""
    models = _model_order(list(confusions))
    fig, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models), 4.4), dpi=110, squeeze=False)
    names = [n.replace("_", " ") for n in classes.CLASS_NAMES]
    for ax, model in zip(axes[0], models, strict=True):
        matrix = confusions[model].astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            normalised = matrix / matrix.sum(axis=1, keepdims=True)
        ax.imshow(np.nan_to_num(normalised), vmin=0, vmax=1, cmap="Blues")
        for (i, j), value in np.ndenumerate(normalised):
            if np.isfinite(value) and value >= 0.01:
                ax.text(
                    j,
                    i,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if value > 0.6 else "black",
                )
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(model)
    fig.suptitle("Confusion matrices at the largest training fraction (rows sum to 1; summed over seeds)")
    _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)


def markdown_table(aggregate: pd.DataFrame) -> str:
    """The aggregate as a Markdown table (mIoU in %), for the README and the report."""
    lines = [
        "| model | fraction | runs | mIoU mean ± sd | IQM [95 % CI] | pixel accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for row in aggregate.sort_values(["model", "fraction"], ascending=[True, False]).itertuples():
        lines.append(
            f"| {row.model} | {row.fraction * 100:g} % | {row.runs} | {row.miou_mean * 100:.1f} ± "
            f"{0 if np.isnan(row.miou_sd) else row.miou_sd * 100:.1f} | {row.miou_iqm * 100:.1f} "
            f"[{row.miou_iqm_ci_low * 100:.1f}, {row.miou_iqm_ci_high * 100:.1f}] | "
            f"{row.pixel_accuracy_mean * 100:.1f} |"
        )
    majority = aggregate["majority_miou"].mean() * 100
    lines.append(f"| majority class | | | {majority:.1f} | | |")
    return "\n".join(lines) + "\n"


def make_summary(
    metric_files: Sequence[Path], confusion_files: Sequence[Path], out_dir: Path, seed: int = 0
) -> pd.DataFrame:
    """Write runs.csv, aggregate.csv, aggregate.md and the three figures into ``out_dir``."""
    out_dir = Path(out_dir)
    runs = runs_table(metric_files)
    aggregate = aggregate_table(runs, seed=seed)
    with atomic_path(out_dir / "runs.csv") as tmp:
        runs.to_csv(tmp, index=False)
    with atomic_path(out_dir / "aggregate.csv") as tmp:
        aggregate.to_csv(tmp, index=False)
    with atomic_path(out_dir / "aggregate.md") as tmp:
        tmp.write_text(markdown_table(aggregate))
    plot_fraction_curve(aggregate, out_dir / "figure1_miou_vs_fraction.png")
    plot_per_class_iou(runs, out_dir / "per_class_iou.png")
    largest = runs["fraction"].max()
    confusions: dict[str, np.ndarray] = {}
    for metrics_path, confusion_path in zip(metric_files, confusion_files, strict=True):
        run = json.loads(Path(metrics_path).read_text())["run"]
        if float(run["fraction"]) != largest:
            continue
        matrix = pd.read_csv(confusion_path, index_col=0).to_numpy()
        confusions[run["model"]] = confusions.get(run["model"], 0) + matrix
    plot_confusions(confusions, out_dir / "confusion_matrices.png")
    log.info("summary of %d runs written to %s", len(runs), out_dir)
    return aggregate
