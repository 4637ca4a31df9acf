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

The study's question, with its uncertainty (:func:`answer_table`): each run's record gives its model a role
(:func:`model_role`, from its family's record in :mod:`lulc.families`): a *foundation model* is an entry of a
foundation family (Prithvi, TerraMind, Clay, DOFA, ...) with pretrained weights, a *scratch control* the same
encoder from random weights, a *baseline* an entry of any other family (U-Net, ViT). Per training fraction, each
foundation model, of any family, is compared with the best baseline at that fraction and with each scratch control
of its encoder, by the paired difference in
test mIoU over seeds (the same seed is the same training subset and split) and a percentile-bootstrap 95 %
interval of its mean over seeds (the test chips are fixed, not resampled).

* ``answer.csv``: one row per comparison x fraction: mean paired difference, interval, pairs, verdict.
* ``answer.md``: the same as a Markdown table and one plain sentence per comparison and fraction.
* ``answer_per_class.csv``: per-class IoU differences of the same comparisons (mean over paired seeds).
* ``figure2_difference_vs_fraction.png``: the difference against training fraction with its interval.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lulc import families
from lulc.figures import save_png
from lulc.io import atomic_path

log = logging.getLogger(__name__)

#: Colours for model entries not named after a family (e.g. an ablation such as ``prithvi_scratch``), in order of
#: appearance; those that a family's own colour already takes are skipped.
EXTRA_COLOURS = ("#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def model_colours(models: Sequence[str]) -> dict[str, str]:
    """A distinct colour per model: an entry named after its family gets the family's colour (its record in
    :mod:`lulc.families`), any other the next of :data:`EXTRA_COLOURS` that no family entry here uses."""
    own = {m: families.FAMILIES[m].colour for m in models if m in families.FAMILIES}
    free = [c for c in EXTRA_COLOURS if c not in own.values()] or list(EXTRA_COLOURS)
    others = [m for m in models if m not in own]
    return {m: own.get(m) or free[others.index(m) % len(free)] for m in models}


def interquartile_mean(values: Sequence[float]) -> float:
    """Mean of the values between the 25th and 75th percentile (by rank; all of them for n < 4)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0:
        return float("nan")
    cut = int(np.floor(n * 0.25))
    return float(x[cut : n - cut].mean())


def plain_mean(values: Sequence[float]) -> float:
    """The plain mean (NaN for no values): the statistic of the paired differences' interval."""
    x = np.asarray(values, dtype=float)
    return float(x.mean()) if len(x) else float("nan")


def bootstrap_interval(
    values: Sequence[float],
    statistic: Callable[[Any], float] = interquartile_mean,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``statistic`` over resampled values (seeded, so reproducible).

    Each of ``n_boot`` draws resamples the values with replacement (``rng.integers(0, n, n)`` from
    ``numpy.random.default_rng(seed)``); NaN for fewer than 2 values, where no interval is meaningful."""
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
    classes: dict[tuple[str, ...], str] = {}
    for path in metric_files:
        result = json.loads(Path(path).read_text())
        names = result.get("classes") or list(result["iou"])  # the legend's order; sorted keys in older files
        classes.setdefault(tuple(names), str(path))
        run = result.get("run", {})
        model = run.get("model", result.get("model"))
        model_type, weights_source = run_model_type({"model": model, **run}), run_weights_source(run)
        row: dict[str, Any] = {
            "model": model,
            "model_type": model_type,
            "weights_source": weights_source,
            "role": model_role(model_type, weights_source),
            "encoder": run_encoder(run),
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
        row.update({f"iou_{name}": result["iou"][name] for name in names})
        rows.append(row)
    if not rows:
        raise ValueError("the summary needs at least one evaluated run")
    if len(classes) > 1:
        (first, first_file), (other, other_file) = list(classes.items())[:2]
        raise ValueError(f"runs of different legends cannot be summarised together: {first_file} has classes "
                         f"{list(first)}, {other_file} has {list(other)}")  # fmt: skip
    return pd.DataFrame(rows).sort_values(["model", "fraction", "seed"]).reset_index(drop=True)


#: Model roles in the study's question (:func:`model_role`).
FOUNDATION, SCRATCH, BASELINE, OTHER = families.FOUNDATION, families.SCRATCH, families.BASELINE, families.OTHER
#: ``models.<name>.weights`` specs as the run record's ``weights.source`` names them (any other is a file).
_WEIGHTS_SOURCES = {"none": "none", "pretrain": "pretrain", "hf": "huggingface_cache", "standin": "standin"}


def model_role(model_type: str | None, weights_source: str | None) -> str:
    """A model's role from its family and weights (:func:`lulc.families.role`): ``foundation`` (a foundation
    family with pretrained weights), ``scratch`` (the same from random weights: the control that says whether
    pretraining helps), ``baseline`` (any other family) or ``other`` (an unknown family, or a foundation entry
    whose weights are not recorded: not compared rather than guessed)."""
    return families.role(model_type, weights_source)


def run_model_type(run: Mapping[str, Any]) -> str | None:
    """The model type of a run record (run.json, carried in metrics.json as ``run``).

    ``model_type``, else the build record's or the model config's ``type``, else the model's name where it
    is a known type (a ``models`` entry's type defaults to its name)."""
    for value in (run.get("model_type"), _field(run, "model_info", "type"), _field(run, "model_config", "type")):
        if isinstance(value, str):
            return value
    name = run.get("model")
    return name if name in families.FAMILIES else None


def run_weights_source(run: Mapping[str, Any]) -> str | None:
    """Where a run's initial weights came from: ``none``, ``pretrain``, ``huggingface_cache``, ``file``...

    The record's ``weights.source`` (or the build record's), else the model config's ``weights`` spec."""
    for value in (run.get("weights"), _field(run, "model_info", "weights")):
        if isinstance(value, Mapping) and isinstance(value.get("source"), str):
            return str(value["source"])
        if isinstance(value, str):
            return value
    spec = _field(run, "model_config", "weights")
    return _WEIGHTS_SOURCES.get(spec, "file") if isinstance(spec, str) else None


def run_encoder(run: Mapping[str, Any]) -> str | None:
    """The encoder a run trained: its family's encoder keys (:attr:`lulc.families.ModelFamily.encoder_keys`: a
    foundation model and its from-scratch control must agree on them; decoder settings may differ, e.g. when
    tuned separately) of its model config, as sorted JSON; None if unrecorded."""
    config = run.get("model_config")
    if not isinstance(config, Mapping):
        return None
    record = families.FAMILIES.get(str(config.get("type")))
    keys = record.encoder_keys if record is not None else ("type", "backbone", "backbone_kwargs")
    return json.dumps({key: config.get(key) for key in keys}, sort_keys=True)


def _field(record: Mapping[str, Any], key: str, name: str) -> Any:
    value = record.get(key)
    return value.get(name) if isinstance(value, Mapping) else None


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
    known = [m for m in families.FAMILIES if m in models]
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


def class_names(runs: pd.DataFrame) -> list[str]:
    """The classes of the runs (their legend's, in index order), from the ``iou_<class>`` columns."""
    return [str(c)[4:] for c in runs.columns if str(c).startswith("iou_")]


def plot_per_class_iou(runs: pd.DataFrame, path: Path) -> None:
    """Per-class IoU per model at the largest training fraction (mean +- sd over seeds)."""
    full = runs[runs["fraction"] == runs["fraction"].max()]
    models = _model_order(full["model"].unique())
    colours = model_colours(models)
    fig, ax = plt.subplots(figsize=(8.5, 4.2), dpi=120)
    width = 0.8 / max(len(models), 1)
    names = class_names(runs)
    x = np.arange(len(names))
    for i, model in enumerate(models):
        rows = full[full["model"] == model]
        values = rows[[f"iou_{n}" for n in names]].astype(float)
        ax.bar(
            x + (i - (len(models) - 1) / 2) * width,
            values.mean() * 100,
            width,
            yerr=np.nan_to_num(values.std(ddof=1) * 100) if len(rows) > 1 else None,
            color=colours[model],
            label=model,
            capsize=2,
        )
    ax.set_xticks(x, [n.replace("_", " ") for n in names], rotation=30, ha="right")
    ax.set_ylabel("test IoU (%)")
    ax.set_title(f"Per-class IoU at {runs['fraction'].max() * 100:g} % of the training data")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(frameon=False)
    _save(fig, path)


def plot_confusions(confusions: dict[str, np.ndarray], path: Path, class_names: Sequence[str]) -> None:
    """Row-normalised confusion matrices (recall per true class), one panel per model."""
    models = _model_order(list(confusions))
    fig, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models), 4.4), dpi=110, squeeze=False)
    names = [n.replace("_", " ") for n in class_names]
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
    save_png(fig, path)


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


# ------------------------------------------------------------------ the study's question, with its uncertainty

#: Columns of ``answer.csv``; differences and mIoU in points (x 100), as in aggregate.md.
ANSWER_COLUMNS = [
    "model",
    "reference",
    "reference_role",
    "fraction",
    "n_pairs",
    "mean_diff",
    "ci_low",
    "ci_high",
    "verdict",
    "model_miou",
    "reference_miou",
]
#: Columns of ``answer_per_class.csv`` (IoU and differences in points).
PER_CLASS_COLUMNS = [
    "model",
    "reference",
    "reference_role",
    "fraction",
    "class",
    "n_pairs",
    "mean_diff",
    "model_iou",
    "reference_iou",
]


def model_roles(runs: pd.DataFrame) -> dict[str, str]:
    """Each model's role from its runs' ``role`` column (``other`` where its runs disagree, with a warning)."""
    roles = {}
    for model, group in runs.groupby("model", sort=True):
        found = set(group["role"])
        if len(found) > 1:
            log.warning("runs of %s have different roles %s: left out of the comparisons", model, sorted(found))
        roles[str(model)] = found.pop() if len(found) == 1 else OTHER
    return roles


def best_baselines(runs: pd.DataFrame) -> dict[float, str]:
    """Per training fraction, the baseline with the highest mean test mIoU over its seeds (ties: by name).

    Chosen per fraction because the strongest baseline can change with the amount of training data."""
    baselines = [m for m, role in model_roles(runs).items() if role == BASELINE]
    means = runs[runs["model"].isin(baselines)].groupby(["fraction", "model"])["miou"].mean().dropna()
    best: dict[float, str] = {}
    for (fraction, model), _ in sorted(means.items(), key=lambda item: (item[0][0], -item[1], item[0][1])):
        best.setdefault(float(fraction), str(model))
    return best


def paired_runs(runs: pd.DataFrame, model: str, reference: str, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs of ``model`` and ``reference`` at ``fraction`` over the seeds both have, indexed by seed.

    A seed fixes the training subset (the split is the same for all), so a pair compares the two models on the
    same data and the seed-to-seed spread they share drops out of the difference. A seed on one side only drops
    out."""
    at = runs[runs["fraction"] == fraction]
    sides = [at[at["model"] == name].set_index("seed") for name in (model, reference)]
    for name, side in zip((model, reference), sides, strict=True):
        if side.index.has_duplicates:
            raise ValueError(f"{name} has more than one run per seed at fraction {fraction:g}")
    seeds = sides[0].index.intersection(sides[1].index).sort_values()
    return sides[0].loc[seeds], sides[1].loc[seeds]


def paired_differences(
    runs: pd.DataFrame, model: str, reference: str, fraction: float, metric: str = "miou"
) -> pd.Series:
    """Per paired seed: ``model`` minus ``reference`` in ``metric``, in points (x 100); undefined values drop."""
    mine, theirs = paired_runs(runs, model, reference, fraction)
    return ((mine[metric].astype(float) - theirs[metric].astype(float)) * 100).dropna()


def verdict(ci_low: float, ci_high: float, n_pairs: int) -> str:
    """``better`` if the interval lies above 0, ``worse`` if below, else not distinguishable (at n seeds)."""
    if n_pairs < 2 or not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return "not distinguishable"
    if ci_low > 0:
        return "better"
    if ci_high < 0:
        return "worse"
    return f"not distinguishable at {n_pairs} seeds"


def compare(
    runs: pd.DataFrame,
    model: str,
    reference: str,
    reference_role: str,
    fraction: float,
    seed: int = 0,
    n_boot: int = 2000,
) -> dict[str, Any]:
    """One row of ``answer.csv``: the mean paired mIoU difference, its bootstrap 95 % interval over seeds
    (resampling seeds with replacement, seeded), the number of pairs and the verdict."""
    diffs = paired_differences(runs, model, reference, fraction)
    low, high = bootstrap_interval(diffs.to_numpy(), statistic=plain_mean, n_boot=n_boot, seed=seed)
    mine, theirs = paired_runs(runs, model, reference, fraction)
    return {
        "model": model,
        "reference": reference,
        "reference_role": reference_role,
        "fraction": fraction,
        "n_pairs": len(diffs),
        "mean_diff": plain_mean(diffs.to_numpy()),
        "ci_low": low,
        "ci_high": high,
        "verdict": verdict(low, high, len(diffs)),
        "model_miou": plain_mean(mine.loc[diffs.index, "miou"].astype(float).to_numpy()) * 100,
        "reference_miou": plain_mean(theirs.loc[diffs.index, "miou"].astype(float).to_numpy()) * 100,
    }


def comparisons(runs: pd.DataFrame) -> list[tuple[str, str, str, float]]:
    """``(model, reference, reference role, fraction)`` for every foundation model and training fraction it ran:
    against the best baseline at that fraction, and against each scratch control of the same encoder (type,
    backbone and its arguments: its family's encoder keys) that ran there."""
    roles = model_roles(runs)
    if "encoder" not in runs:  # tables without the column: the model type stands for the encoder
        runs = runs.assign(encoder=runs["model_type"])
    encoders = runs.groupby("model")["encoder"].first().to_dict()
    best = best_baselines(runs)
    pairs = []
    for model in _model_order([m for m, role in roles.items() if role == FOUNDATION]):
        for fraction in sorted(runs.loc[runs["model"] == model, "fraction"].unique()):
            fraction = float(fraction)
            if fraction in best:
                pairs.append((model, best[fraction], BASELINE, fraction))
            ran = set(runs.loc[runs["fraction"] == fraction, "model"])
            for control in sorted(ran):
                if roles.get(control) == SCRATCH and encoders.get(control) == encoders.get(model):
                    pairs.append((model, control, SCRATCH, fraction))
    return pairs


def answer_table(runs: pd.DataFrame, seed: int = 0, n_boot: int = 2000) -> pd.DataFrame:
    """``answer.csv``: one row per comparison x fraction (:func:`comparisons`, :func:`compare`), in points."""
    rows = [compare(runs, *pair, seed=seed, n_boot=n_boot) for pair in comparisons(runs)]
    return pd.DataFrame(rows, columns=ANSWER_COLUMNS).round(6)


def per_class_differences(runs: pd.DataFrame, answer: pd.DataFrame) -> pd.DataFrame:
    """``answer_per_class.csv``: per comparison, fraction and class, the mean over paired seeds of the IoU
    difference (model minus reference, points), with the number of seeds where both IoUs are defined."""
    rows = []
    for row in answer.itertuples(index=False):
        mine, theirs = paired_runs(runs, str(row.model), str(row.reference), float(row.fraction))
        for name in class_names(runs):
            column = f"iou_{name}"
            if column not in mine or column not in theirs:
                continue
            a, b = mine[column].astype(float) * 100, theirs[column].astype(float) * 100
            diffs = (a - b).dropna()
            rows.append(
                {
                    "model": row.model,
                    "reference": row.reference,
                    "reference_role": row.reference_role,
                    "fraction": row.fraction,
                    "class": name,
                    "n_pairs": len(diffs),
                    "mean_diff": plain_mean(diffs.to_numpy()),
                    "model_iou": plain_mean(a.loc[diffs.index].to_numpy()),
                    "reference_iou": plain_mean(b.loc[diffs.index].to_numpy()),
                }
            )
    return pd.DataFrame(rows, columns=PER_CLASS_COLUMNS).round(6)


def missing_comparisons(runs: pd.DataFrame) -> list[str]:
    """Sentences for what cannot be compared: no foundation model, no baseline, or a fraction without one."""
    roles = model_roles(runs)
    foundation = [m for m, role in roles.items() if role == FOUNDATION]
    baselines = [m for m, role in roles.items() if role == BASELINE]
    notes = []
    if "weights_source" in runs:
        standins = sorted(set(runs.loc[runs["weights_source"] == families.WEIGHTS_STANDIN, "model"]))
        if standins:
            notes.append(
                f"{', '.join(standins)} {'runs' if len(standins) == 1 else 'run'} from random weights standing in "
                "for a release (weights: standin): what they show is the pipeline and the cost, not how the released "
                "model would do."
            )
    if not foundation:
        notes.append(
            "No foundation model (an entry of a foundation family, such as prithvi, with pretrained weights) is "
            "among the runs, so whether one "
            "beats the best baseline is not answered."
        )
    if not baselines:
        notes.append(
            "No baseline (an entry of a baseline family, such as unet or vit) is among the runs, so whether a "
            "foundation model beats the best "
            "baseline is not answered."
        )
    elif foundation:
        covered = set(best_baselines(runs))
        for fraction in sorted(set(runs.loc[runs["model"].isin(foundation), "fraction"]) - covered):
            notes.append(f"At {_percent(fraction)} of the training data no baseline ran, so there is no comparison.")
    return notes


def _percent(fraction: float) -> str:
    return f"{float(fraction) * 100:g} %"


def _points(value: float, spec: str = ".1f") -> str:
    return format(float(value), spec) if np.isfinite(value) else "–"


def _reference_phrase(reference: str, role: str) -> str:
    return f"the best baseline ({reference})" if role == BASELINE else f"its from-scratch control ({reference})"


def answer_sentence(row: Mapping[str, Any]) -> str:
    """One plain sentence for one row of ``answer.csv``."""
    start = f"At {_percent(row['fraction'])} of the training data, {row['model']}"
    than = _reference_phrase(str(row["reference"]), str(row["reference_role"]))
    n, diff = int(row["n_pairs"]), float(row["mean_diff"])
    if n == 0:
        return f"{start} shares no seed with {than}, so the two cannot be compared."
    if n == 1:
        return (
            f"{start} is not distinguishable from {than}: 1 paired seed (difference {diff:.1f} mIoU points) "
            "is too few for an interval."
        )
    interval = f"95 % CI {float(row['ci_low']):.1f} to {float(row['ci_high']):.1f}"
    if row["verdict"] in ("better", "worse"):
        return f"{start} is {abs(diff):.1f} mIoU points {row['verdict']} than {than} ({interval}, {n} paired seeds)."
    return f"{start} is not distinguishable from {than} at {n} seeds (difference {diff:.1f}, {interval})."


def answer_markdown(answer: pd.DataFrame, notes: Sequence[str] = ()) -> str:
    """``answer.md``: the comparisons as a Markdown table, then one sentence per comparison, by training fraction."""
    lines = [
        "# Does the foundation model beat the best baseline?",
        "",
        "Test mIoU difference in points, model minus reference, paired by seed (the same training subset and "
        "split); the 95 % interval is a percentile bootstrap over seeds only (the test chips are fixed and not "
        "resampled). Verdict: better if the interval lies above 0, worse if below, else not distinguishable.",
        "",
    ]
    if len(answer):
        lines += [
            "| fraction | model | reference | mIoU model / reference | difference [95 % CI] | paired seeds | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in answer.sort_values(["fraction", "model", "reference_role"], kind="stable").to_dict("records"):
            interval = f" [{row['ci_low']:.1f}, {row['ci_high']:.1f}]" if np.isfinite(row["ci_low"]) else ""
            role = "best baseline" if row["reference_role"] == BASELINE else "from scratch"
            lines.append(
                f"| {_percent(row['fraction'])} | {row['model']} | {row['reference']} ({role}) | "
                f"{_points(row['model_miou'])} / {_points(row['reference_miou'])} | "
                f"{_points(row['mean_diff'], '+.1f')}{interval} | {row['n_pairs']} | {row['verdict']} |"
            )
        lines.append("")
        for _, group in answer.groupby("fraction", sort=True):
            lines += [f"- {answer_sentence(row)}" for row in group.to_dict("records")]
            lines.append("")
    lines += [f"{note}\n" for note in notes]
    if not len(answer) and not notes:
        lines.append("There is nothing to compare among the runs.\n")
    return "\n".join(lines).rstrip("\n") + "\n"


def plot_difference_curve(answer: pd.DataFrame, path: Path, notes: Sequence[str] = ()) -> None:
    """Figure 2: the mean paired mIoU difference against training fraction, with its bootstrap 95 % interval as
    error bars and a zero line; one series per comparison (against the best baseline, named at each point)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    if not len(answer):
        ax.text(0.5, 0.5, "\n".join(notes) or "nothing to compare", ha="center", va="center", wrap=True, fontsize=9)
        ax.set_axis_off()
        _save(fig, path)
        return
    # one series per foundation model against the best baseline (whichever it is), and per scratch control
    key = answer["model"] + "|" + answer["reference"].where(answer["reference_role"] != BASELINE, "")
    series = list(dict.fromkeys(key))
    colours = model_colours(_model_order(answer["model"].unique()))
    for i, name in enumerate(series):
        rows = answer[key == name].sort_values("fraction")
        model, role, control = rows["model"].iloc[0], rows["reference_role"].iloc[0], rows["reference"].iloc[0]
        # a small horizontal offset per series (log axis) keeps the error bars apart
        x = rows["fraction"].to_numpy() * 100 * 2 ** ((i - (len(series) - 1) / 2) * 0.06)
        y = rows["mean_diff"].to_numpy(dtype=float)
        error = np.nan_to_num(np.vstack([y - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - y]))
        label = f"{model} − best baseline" if role == BASELINE else f"{model} − {control} (from scratch)"
        ax.errorbar(
            x,
            y,
            yerr=error,
            marker="o" if role == BASELINE else "s",
            linestyle="-" if role == BASELINE else "--",
            color=colours[model],
            capsize=3,
            label=label,
        )
        if role == BASELINE:
            for xi, yi, name in zip(x, y, rows["reference"], strict=True):
                ax.annotate(str(name), (xi, yi), textcoords="offset points", xytext=(5, 5), fontsize=7)
    ax.axhline(0, color="grey", linewidth=1)
    ax.set_xscale("log", base=2)
    fractions = sorted(answer["fraction"].unique() * 100)
    ax.set_xticks(fractions, [f"{f:g} %" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("training data used")
    ax.set_ylabel("test mIoU difference (points)")
    ax.set_title("Paired difference over seeds, with bootstrap 95 % interval")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    _save(fig, path)


def write_answer(runs: pd.DataFrame, out_dir: Path, seed: int = 0) -> pd.DataFrame:
    """Write answer.csv, answer.md, answer_per_class.csv and Figure 2 into ``out_dir``; return the answer."""
    answer = answer_table(runs, seed=seed)
    notes = missing_comparisons(runs)
    with atomic_path(out_dir / "answer.csv") as tmp:
        answer.to_csv(tmp, index=False)
    with atomic_path(out_dir / "answer_per_class.csv") as tmp:
        per_class_differences(runs, answer).to_csv(tmp, index=False)
    with atomic_path(out_dir / "answer.md") as tmp:
        tmp.write_text(answer_markdown(answer, notes))
    plot_difference_curve(answer, out_dir / "figure2_difference_vs_fraction.png", notes)
    for row in answer.to_dict("records"):
        log.info("%s", answer_sentence(row))
    for note in notes:
        log.info("%s", note)
    return answer


def make_summary(
    metric_files: Sequence[Path], confusion_files: Sequence[Path], out_dir: Path, seed: int = 0
) -> pd.DataFrame:
    """Write runs.csv, aggregate.csv, aggregate.md, the three figures and the answer (:func:`write_answer`)."""
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
    plot_confusions(confusions, out_dir / "confusion_matrices.png", class_names(runs))
    write_answer(runs, out_dir, seed=seed)
    log.info("summary of %d runs written to %s", len(runs), out_dir)
    return aggregate
