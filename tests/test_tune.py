"""The tune stage: search spaces, an equal budget for every model, no test data, tuned values reaching train."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import yaml
from synthetic_chips import FAST

import lulc.train
import lulc.tune
from lulc.config import ConfigError, search_space_rules
from lulc.tune import suggest, tune
from lulc.tuned import TUNED_FORMAT, apply_tuned, load_tuned

SPACE = {"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "weight_decay": {"low": 0.0, "high": 0.1}}


def test_search_space_rules_name_the_key():
    problems = search_space_rules(
        "unet",
        {
            "epochs": {"low": 1, "high": 5},
            "dropout_rate": {"low": 0.0, "high": 0.5},
            "lr": {"low": 1e-2, "high": 1e-4},
            "weight_decay": {"low": 0.0, "high": 0.1, "log": True},
            "encoder_depth": {"low": 2.5, "high": 4},
        },
        "tune.search_space.unet",
    )
    text = "\n".join(problems)
    assert "tune.search_space.unet.epochs': epochs is the per-trial budget" in text
    assert "tune.search_space.unet.dropout_rate': not a hyperparameter of a unet model" in text
    assert "tune.search_space.unet.lr': low (0.01) must be below high (0.0001)" in text
    assert "tune.search_space.unet.weight_decay': a log range needs low > 0" in text
    assert "tune.search_space.unet.encoder_depth': encoder_depth is an integer" in text
    assert len(problems) == 5
    assert search_space_rules("prithvi", {"warmup_epochs": {"choices": [0, 1]}, "decoder_channels":
                                          {"low": 32, "high": 128}}, "x") == []


def test_suggest_draws_integers_for_integer_keys_and_stays_in_range():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    space = {"decoder_channels": {"low": 16, "high": 128, "log": True}, "lr": {"low": 1e-5, "high": 1e-3, "log": True},
             "warmup_epochs": {"choices": [0, 2]}}
    for _ in range(20):
        values = suggest(study.ask(), "vit", space)
        assert isinstance(values["decoder_channels"], int) and 16 <= values["decoder_channels"] <= 128
        assert isinstance(values["lr"], float) and 1e-5 <= values["lr"] <= 1e-3
        assert values["warmup_epochs"] in (0, 2)


def test_apply_tuned_overrides_and_names_every_source():
    model_cfg = lulc.config.model_entry("unet", {"epochs": 3, "lr": 5e-4})
    train_cfg = lulc.config.section("train", {})
    model_out, train_out, sources = apply_tuned(
        "unet", model_cfg, train_cfg, {"params": {"lr": 2e-3, "warmup_epochs": 2}}
    )
    assert model_out["lr"] == 2e-3 and train_out["warmup_epochs"] == 2
    assert model_cfg["lr"] == 5e-4 and train_cfg["warmup_epochs"] == 1, "inputs are not modified"
    assert sources == {"lr": "tune", "warmup_epochs": "tune", "epochs": "config", "weight_decay": "default",
                       "batch_size": "default", "warmup_iters": "default"}
    _, _, untuned = apply_tuned("unet", model_cfg, train_cfg, None)
    assert untuned["lr"] == "config" and untuned["warmup_epochs"] == "default"
    with pytest.raises(ValueError, match="neither a model nor a train key"):
        apply_tuned("unet", model_cfg, train_cfg, {"params": {"epochs": 9}})


def test_every_model_gets_the_same_budget(chip_data, tmp_path, monkeypatch):
    """Every trial of every model trains tune.epochs epochs on the same subset and samples per epoch."""
    stores, splits = chip_data
    calls: list[dict[str, Any]] = []

    def fake_train(name, model_cfg, train_cfg, stores_, splits_, fraction, seed, out_dir, **kwargs):
        calls.append({"model": name, "epochs": model_cfg["epochs"], "fraction": fraction, "seed": seed,
                      "samples_per_epoch": train_cfg["samples_per_epoch"], "lr": model_cfg["lr"]})
        return {"best_val_miou": model_cfg["lr"] * 100, "epochs_run": model_cfg["epochs"]}

    monkeypatch.setattr(lulc.train, "train", fake_train)
    settings = {"trials": 4, "epochs": 3, "fraction": 0.5, "startup_trials": 2, "pruning": "none",
                "search_space": {"unet": SPACE, "vit": SPACE, "prithvi": SPACE}}
    bests = {}
    for name, entry in (("unet", {"epochs": 40, "lr": 1e-3}), ("vit", {"epochs": 2}), ("prithvi", {"epochs": 7})):
        bests[name] = tune(name, entry, FAST, settings, stores, splits, tmp_path / name, seed=1)
    for name in bests:
        mine = [c for c in calls if c["model"] == name]
        assert len(mine) == 4
        assert {(c["epochs"], c["fraction"], c["seed"], c["samples_per_epoch"]) for c in mine} == {(3, 0.5, 1, 16)}
    assert len({json.dumps(b["budget"], sort_keys=True) for b in bests.values()}) == 1
    # the objective is the validation mIoU the trial returned: the best trial has the largest lr here
    for name, best in bests.items():
        assert best["params"]["lr"] == max(c["lr"] for c in calls if c["model"] == name)


def test_tune_reads_no_test_data_and_writes_its_outputs(chip_data, tmp_path, monkeypatch, one_torch_thread):
    """A real search (U-Net, 3 trials): the test split is never requested, and its chips cannot be read."""
    stores, splits = chip_data
    table = pd.read_csv(splits)
    assert (table["split"] == "test").any()
    table.loc[table["split"] == "test", "aoi"] = "no_such_aoi"  # reading a test chip would fail
    poisoned = tmp_path / "splits.csv"
    table.to_csv(poisoned, index=False)
    requested: list[str] = []
    scratch_folders: list[list[str]] = []
    real_load_split = lulc.train.load_split
    out = tmp_path / "tune" / "unet"
    stale = out / ".trials-k1ll3d"  # the scratch folder of a killed run of this job: removed before the trials
    (stale / "trial_000").mkdir(parents=True)
    (stale / "trial_000" / "last.ckpt").write_bytes(b"half a checkpoint")

    def recording_load_split(path, split, *args, **kwargs):
        requested.append(split)
        scratch_folders.append(sorted(p.name for p in out.glob(".trials-*")))
        return real_load_split(path, split, *args, **kwargs)

    monkeypatch.setattr(lulc.train, "load_split", recording_load_split)
    settings = {"trials": 3, "epochs": 2, "startup_trials": 2, "pruning": "median", "search_space": {"unet": SPACE}}
    best = tune("unet", {"encoder_depth": 2, "decoder_channels": [16, 8]}, FAST, settings, stores, poisoned, out)
    assert set(requested) == {"train", "val"}
    assert all(len(names) == 1 and ".trials-k1ll3d" not in names for names in scratch_folders), scratch_folders
    with open(out / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and {r["state"] for r in rows} <= {"complete", "pruned"}
    assert [int(r["number"]) for r in rows] == [0, 1, 2]
    complete = [r for r in rows if r["state"] == "complete"]
    assert best["val_miou"] == pytest.approx(max(float(r["val_miou"]) for r in complete))
    assert 1e-4 <= best["params"]["lr"] <= 1e-2 and 0.0 <= best["params"]["weight_decay"] <= 0.1
    assert load_tuned(out / "best.yaml")["params"] == best["params"]
    assert (out / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["best.yaml", "history.png", "trials.csv"], "no trial leftovers"


def test_tuned_values_reach_train_and_are_recorded(chip_data, tmp_path, one_torch_thread):
    stores, splits = chip_data
    best = tmp_path / "best.yaml"
    best.write_text(yaml.safe_dump({"format": TUNED_FORMAT, "params": {"lr": 0.0023, "decoder_channels": 48,
                                                                       "warmup_epochs": 0},
                                    "trial": 7, "val_miou": 0.5}))
    run = lulc.train.train("vit", {"epochs": 1, "lr": 1e-3}, FAST, stores, splits, 1.0, 0, tmp_path / "run",
                           tuned=best)
    assert run["hyperparameters"]["lr"] == 0.0023
    assert run["model_config"]["decoder_channels"] == 48
    assert run["train_config"]["warmup_epochs"] == 0
    assert run["hyperparameter_sources"]["lr"] == "tune" and run["hyperparameter_sources"]["epochs"] == "config"
    assert run["tuned"]["trial"] == 7 and len(run["tuned"]["sha256"]) == 64
    written = json.loads((tmp_path / "run" / "run.json").read_text())
    assert written["hyperparameter_sources"] == run["hyperparameter_sources"]
    _model, checkpoint = lulc.models.load_trained_model(tmp_path / "run" / "best.ckpt")
    assert checkpoint["config"]["decoder_channels"] == 48


def test_a_file_that_is_not_a_tune_result_is_refused(tmp_path):
    bad = tmp_path / "best.yaml"
    bad.write_text("params: {lr: 1}\n")
    with pytest.raises(ValueError, match="not a tune result"):
        load_tuned(bad)


def test_tune_refuses_an_invalid_search_space(chip_data, tmp_path):
    stores, splits = chip_data
    with pytest.raises(ConfigError, match="tune.search_space.unet.batch_size"):
        tune("unet", {}, FAST, {"search_space": {"unet": {"batch_size": {"choices": [2, 4]}}}}, stores, splits,
             tmp_path)
    assert not (tmp_path / "best.yaml").exists()


def test_tune_section_rules_at_start_up():
    from lulc.config import check_config, validate_config

    config = yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())
    config["tune"] = {"enabled": True, "models": ["unet", "segformer"], "fraction": 0.3, "seed": 9,
                      "search_space": {"vit": {"depth": {"low": 1, "high": 4}}}}
    validate_config(config)
    with pytest.raises(ConfigError) as error:
        check_config(config)
    message = str(error.value)
    for expected in ("'tune.models': 'segformer' is not trained", "'tune.fraction': 0.3 is not one of",
                     "'tune.seed': 9 is not one of", "'tune.search_space.vit.depth': not a hyperparameter"):
        assert expected in message


def test_unused_tune_settings_are_not_checked_and_searched_values_are():
    from lulc.config import check_config, validate_config

    config = yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())
    config["splits"]["train_fractions"] = [0.5, 0.25]  # tune.fraction's default 1.0 is not among them
    config["tune"] = {"enabled": False}
    config["maps"]["regions"] = {}  # their runs default to fraction 1 too (a clear error, tested elsewhere)
    check_config(validate_config(config))
    config = yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())
    config["tune"]["search_space"] = {"unet": {"encoder_depth": {"choices": [3, 7]},
                                               "decoder_channels": {"low": 16, "high": 64}},
                                      "vit": {"warmup_epochs": {"choices": [0, 1]}}}
    config["train"]["warmup_iters"] = 100
    validate_config(config)
    with pytest.raises(ConfigError) as error:
        check_config(config)
    message = str(error.value)
    assert "'tune.search_space.unet.encoder_depth.choices': 1 7 is not a valid value" in message
    assert "'tune.search_space.unet.decoder_channels': low 16 is not a valid value" in message
    assert "'tune.search_space.vit.warmup_epochs': train.warmup_iters (100) sets the warm-up" in message
