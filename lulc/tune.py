"""Tune stage: an equal-budget hyperparameter search per model (Optuna), on the validation split only.

A comparison in which every model gets one hand-picked recipe says as much about the recipes as about the
models. The ``tune`` rule gives every model the same search: ``tune.trials`` trials of ``tune.epochs``
epochs each, on the same training subset (``tune.fraction``, ``tune.seed``), each scored by its best
validation mIoU (:func:`lulc.train.train` reads the ``train`` and ``val`` splits only; the test split is
never read). The sampler is Optuna's TPE, seeded (``tune.sampler_seed``), after ``tune.startup_trials``
random trials; with ``tune.pruning: median`` a trial whose validation mIoU after an epoch of the second half of
its budget falls below the median of earlier trials at that epoch stops early (never in the first half: a trial
with a longer warm-up starts slower, not worse). Trials run in sequence in one job per model, so the
search is reproducible on CPU (each trial trains with the same seed; only the hyperparameters differ).

Search spaces are per model family (``tune.search_space.<type>``): a hyperparameter is a key of the family's
model entry (``lr``, ``weight_decay``, ``decoder_channels``, ...) or one of :data:`TRAIN_TUNABLE_KEYS`, each
a range ``{low, high, log}`` (integers for integer keys) or ``{choices: [...]}``. The budget keys
(:data:`BUDGET_KEYS`) cannot be searched.

Outputs (``results/tune/{model}/``): ``trials.csv``, ``best.yaml`` (:func:`lulc.tuned.load_tuned` reads it for
``train``) and ``history.png``. :func:`lulc.tuned.apply_tuned` merges the chosen values into a run's settings and says
where every hyperparameter came from.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import yaml

from lulc.io import atomic_path, remove_stale_folders
from lulc.schema import (
    ConfigError,
    is_integer_key,
    model_entry,
    search_space_rules,
    section,
    tunable_key_schema,
)
from lulc.tuned import TUNED_FORMAT, apply_tuned

logger = logging.getLogger(__name__)

#: Prefix of the trials' scratch folder in the tune job's output folder (only that job uses it).
TRIALS_PREFIX = ".trials-"

TRIAL_COLUMNS = ("number", "state", "val_miou", "epochs_run", "time_s")


# ------------------------------------------------------------------------------------ search space


def suggest(trial: Any, model_type: str, space: Mapping[str, Any]) -> dict[str, Any]:
    """Draw one value per hyperparameter of ``space`` from an Optuna trial (sorted keys: reproducible)."""
    values: dict[str, Any] = {}
    for key in sorted(space):
        spec = space[key]
        if "choices" in spec:
            values[key] = trial.suggest_categorical(key, list(spec["choices"]))
        elif is_integer_key(tunable_key_schema(model_type, key) or {}):
            values[key] = trial.suggest_int(key, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log")))
        else:
            values[key] = trial.suggest_float(key, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))
    return values


# ------------------------------------------------------------------------------------------- study


class _PruneOnValidation:
    """A Lightning callback reporting each validation mIoU to the trial; stops training once Optuna prunes."""

    def __new__(cls, trial: Any) -> Any:  # built lazily: Lightning is imported only where training runs
        from lightning.pytorch.callbacks import Callback

        class PruneOnValidation(Callback):
            def __init__(self) -> None:
                self.pruned = False

            def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
                if trainer.sanity_checking or self.pruned:
                    return
                value = trainer.callback_metrics.get("val_miou")
                if value is None:
                    return
                trial.report(float(value), step=int(trainer.current_epoch))
                if trial.should_prune():
                    self.pruned = True
                    trainer.should_stop = True

        return PruneOnValidation()


def _write_trials(rows: list[dict[str, Any]], keys: list[str], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*TRIAL_COLUMNS, *keys], lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in writer.fieldnames})


def plot_history(rows: list[dict[str, Any]], model_name: str, path: Path) -> None:
    """Validation mIoU per trial (filled: complete, hollow: pruned at its last value) and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    best, best_so_far = -math.inf, []
    for row in rows:
        value = row["val_miou"]
        if row["state"] == "complete":
            best = max(best, value)
        best_so_far.append(best * 100 if best > -math.inf else math.nan)
    complete = [r for r in rows if r["state"] == "complete"]
    pruned = [r for r in rows if r["state"] == "pruned" and math.isfinite(r["val_miou"])]
    ax.scatter([r["number"] for r in complete], [r["val_miou"] * 100 for r in complete], color="#1f77b4",
               label="complete", zorder=3)
    ax.scatter([r["number"] for r in pruned], [r["val_miou"] * 100 for r in pruned], facecolors="none",
               edgecolors="#7f7f7f", label="pruned (last value)", zorder=3)
    ax.step([r["number"] for r in rows], best_so_far, where="post", color="#d62728", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation mIoU (%)")
    ax.set_title(f"{model_name}: tuning history ({len(rows)} trials)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")  # the temporary name has no .png suffix
    plt.close(fig)


def make_study(model_name: str, cfg: Mapping[str, Any], devices: int) -> tuple[Any, str]:
    """The Optuna study of one model's search (seeded TPE after random start-up trials, optional median pruning),
    and the pruning it uses as run.json and best.yaml name it."""
    import optuna

    trials, epochs = int(cfg["trials"]), int(cfg["epochs"])
    sampler = optuna.samplers.TPESampler(seed=int(cfg["sampler_seed"]),
                                         n_startup_trials=min(int(cfg["startup_trials"]), trials))
    pruning = cfg["pruning"]
    if pruning == "median" and devices > 1:
        # spawned training processes report to a copy of the trial, which the study never sees
        logger.warning("tune %s: median pruning is off with train.devices > 1; every trial trains its budget",
                       model_name)
        pruning = "none (train.devices > 1)"
    pruner: optuna.pruners.BasePruner = (
        # never in the first half of a trial: a trial with a longer warm-up starts slower, not worse
        optuna.pruners.MedianPruner(n_startup_trials=min(int(cfg["startup_trials"]), trials),
                                    n_warmup_steps=epochs // 2)
        if pruning == "median" else optuna.pruners.NopPruner()
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner,
                                study_name=f"{model_name}-tune")
    return study, pruning


def best_record(
    study: Any,
    model_name: str,
    model_type: str,
    space: Mapping[str, Any],
    cfg: Mapping[str, Any],
    train_settings: Mapping[str, Any],
    seed: int,
    pruning: str,
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """best.yaml's content: the best trial's values, the budget, sampler and pruning, and the trial counts.

    No timings: the same search gives the same file (training records its digest); they are in trials.csv.
    """
    best_trial = study.best_trial
    trials = int(cfg["trials"])
    return {
        "format": TUNED_FORMAT,
        "model": model_name,
        "model_type": model_type,
        "params": {k: best_trial.params[k] for k in sorted(best_trial.params)},
        "val_miou": float(cast(float, best_trial.value)),  # a complete trial has a value
        "trial": int(best_trial.number),
        "budget": {
            "trials": trials,
            "epochs": int(cfg["epochs"]),
            "samples_per_epoch": train_settings["samples_per_epoch"],
            "fraction": float(cfg["fraction"]),
            "seed": int(seed),
        },
        "search_space": dict(space),
        "sampler": {"name": "TPESampler", "seed": int(cfg["sampler_seed"]),
                    "startup_trials": min(int(cfg["startup_trials"]), trials)},
        "pruning": pruning,
        "trials_complete": sum(r["state"] == "complete" for r in rows),
        "trials_pruned": sum(r["state"] == "pruned" for r in rows),
        "trials_failed": sum(r["state"] == "failed" for r in rows),
    }


def tune(
    model_name: str,
    model_cfg: Mapping[str, Any] | None,
    train_cfg: Mapping[str, Any] | None,
    tune_cfg: Mapping[str, Any] | None,
    stores: Mapping[str, str | os.PathLike[str]],
    splits: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    pretrain_checkpoint: str | os.PathLike[str] | None = None,
    seed: int = 0,
    threads: int | None = None,
    dataset_stats: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Search ``models.<model_name>``'s family space with ``tune.trials`` trials; write the tune outputs.

    ``seed`` is the training subset and training seed of every trial (the rule passes ``tune.seed`` or the
    first of ``splits.seeds``); ``dataset_stats`` is the stats rule's file where the model's normalisation is
    ``dataset``. Returns best.yaml's content.
    """
    import optuna

    from lulc.train import train

    started = time.perf_counter()
    entry = model_entry(model_name, model_cfg)
    cfg = section("tune", tune_cfg)
    train_settings = section("train", train_cfg)
    model_type = entry["type"]
    space = dict(cfg["search_space"][model_type])
    problems = search_space_rules(model_type, space, f"tune.search_space.{model_type}")
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trials, epochs = int(cfg["trials"]), int(cfg["epochs"])
    study, pruning = make_study(model_name, cfg, int(train_settings["devices"]))
    rows: list[dict[str, Any]] = []
    remove_stale_folders(out_dir, TRIALS_PREFIX)  # a killed run of this job left them; no other job writes here
    scratch = Path(tempfile.mkdtemp(prefix=TRIALS_PREFIX, dir=out_dir))

    def objective(trial: optuna.Trial) -> float:
        values = suggest(trial, model_type, space)
        trial_model, trial_train, _ = apply_tuned(model_name, entry, train_settings, {"params": values})
        trial_model["epochs"] = epochs  # the budget, the same for every model
        callback = _PruneOnValidation(trial)
        trial_dir = scratch / f"trial_{trial.number:03d}"
        start = time.perf_counter()
        row: dict[str, Any] = {"number": trial.number, **values}
        try:
            run = train(model_name, trial_model, {**trial_train, "progress_bar": False}, stores, splits,
                        float(cfg["fraction"]), seed, trial_dir, pretrain_checkpoint=pretrain_checkpoint,
                        threads=threads, callbacks=[callback], dataset_stats=dataset_stats)
        except Exception:
            row |= {"state": "failed", "val_miou": math.nan, "epochs_run": 0,
                    "time_s": round(time.perf_counter() - start, 3)}
            rows.append(row)
            logger.exception("trial %d of %s failed with %s", trial.number, model_name, values)
            raise
        finally:
            shutil.rmtree(trial_dir, ignore_errors=True)
        value = float(run["best_val_miou"])
        row |= {"val_miou": value, "epochs_run": run["epochs_run"], "time_s": round(time.perf_counter() - start, 3)}
        if callback.pruned:
            row["state"] = "pruned"
            rows.append(row)
            logger.info("trial %d/%d pruned after %d epochs (val mIoU %.4f): %s", trial.number + 1, trials,
                        run["epochs_run"], value, values)
            raise optuna.TrialPruned()
        row["state"] = "complete"
        rows.append(row)
        logger.info("trial %d/%d: val mIoU %.4f in %.1f s: %s", trial.number + 1, trials, value, row["time_s"],
                    values)
        return value

    logger.info("tuning %s (%s): %d trials x %d epochs on fraction %g, seed %d; search space %s", model_name,
                model_type, trials, epochs, cfg["fraction"], seed, space)
    try:
        study.optimize(objective, n_trials=trials, catch=(RuntimeError, ValueError, FloatingPointError))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"tune {model_name}: no trial completed ({len(rows)} failed or pruned); see the log")
    best = best_record(study, model_name, model_type, space, cfg, train_settings, seed, pruning, rows)
    with contextlib.ExitStack() as stack:
        trials_tmp, best_tmp, plot_tmp = (
            stack.enter_context(atomic_path(out_dir / name)) for name in ("trials.csv", "best.yaml", "history.png")
        )
        _write_trials(rows, sorted(space), trials_tmp)
        best_tmp.write_text(yaml.safe_dump(best, sort_keys=False))
        plot_history(rows, model_name, plot_tmp)
    logger.info("%s: best val mIoU %.4f (trial %d) of %d trials in %.1f s: %s", model_name, best["val_miou"],
                best["trial"], trials, time.perf_counter() - started, best["params"])
    return best


__all__ = ["suggest", "tune"]
