"""Every model family on the demo, end to end: the tiny workflow with the tiny configurations of
config/families.yaml (Prithvi-EO-2.0 with time and location, TerraMind, Clay, DOFA, from random weights standing in
for their releases) beside the U-Net, the same tune budget for each, trained, evaluated, mapped and in the answer."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lulc.families import FAMILIES
from tests.test_workflow import REPO, TINY, WORKFLOW_TIMEOUT_S, snakemake

pytestmark = [pytest.mark.slow, pytest.mark.timeout(WORKFLOW_TIMEOUT_S)]

FAMILIES_CONFIG = REPO / "config" / "families.yaml"


def _families_config(workdir: Path) -> tuple[Path, list[str]]:
    """The tiny config, one fraction and seed, with config/families.yaml's entries (2 epochs each) and the U-Net;
    2 tune trials of 1 epoch for every model; the _tl model mapped over a training AOI."""
    config = yaml.safe_load(TINY.read_text())
    overlay = yaml.safe_load(FAMILIES_CONFIG.read_text())
    config["demo"]["regions"].pop("tiny_beyond")
    config["splits"] |= {"train_fractions": [1.0], "seeds": [0]}
    entries = {name: entry | {"epochs": 2} for name, entry in overlay["models"].items()}
    config["models"] = {"unet": {"epochs": 2}, **entries}
    models = ["unet", *entries]
    config["train"] |= {"models": models}
    config["tune"] = {"enabled": True, "trials": 2, "epochs": 1, "startup_trials": 2, "pruning": "none",
                      "search_space": overlay["tune"]["search_space"]}  # fmt: skip
    config["predict"] = {"runs": [{"model": "prithvi_tl_standin"}]}
    config["maps"] = {"regions": {}}
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, models


def test_every_family_trains_on_the_demo_with_the_same_budget_and_is_in_the_answer(tmp_path):
    configfile, models = _families_config(tmp_path)
    snakemake(tmp_path, "all", configfile=configfile)
    budgets = set()
    for model in models:
        best = yaml.safe_load((tmp_path / f"results/tune/{model}/best.yaml").read_text())
        budgets.add(json.dumps(best["budget"], sort_keys=True))
        run = json.loads((tmp_path / f"results/train/{model}/f1_s0/run.json").read_text())
        assert run["hyperparameter_sources"]["lr"] == "tune"
        assert run["model_info"]["time_location"] is (model == "prithvi_tl_standin")
        if model != "unet":
            assert run["model_info"]["weights"]["source"] == "standin"
    assert len(budgets) == 1, "every model tuned with the same budget"
    runs = pd.read_csv(tmp_path / "results/summary/runs.csv")
    families = {m: json.loads((tmp_path / f"results/train/{m}/f1_s0/run.json").read_text())["model_info"]["type"]
                for m in models}  # fmt: skip
    assert set(families.values()) == {"unet", "prithvi", "terramind", "clay", "dofa"} <= set(FAMILIES)
    roles = runs.groupby("model")["role"].first().to_dict()
    assert roles == {m: "baseline" if m == "unet" else "foundation" for m in models}
    answer = pd.read_csv(tmp_path / "results/summary/answer.csv")
    assert set(answer["model"]) == set(models) - {"unet"} and set(answer["reference"]) == {"unet"}
    text = (tmp_path / "results/summary/answer.md").read_text()
    assert "standing in for a release" in text and "clay_standin" in text
    mapped = tmp_path / "results/predict/tiny_iowa/prithvi_tl_standin_f1_s0/landcover.tif"
    assert mapped.is_file()
