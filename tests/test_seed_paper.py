"""config/seed_paper.yaml, the reference study's recipe as a preset: valid once the released weights are cached,
refused early offline, and every one of its training and evaluation settings run through the real workflow on
the tiny demo data (architectures and epochs scaled down, nothing else changed)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lulc.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
PRESET = REPO / "config" / "seed_paper.yaml"
TINY = REPO / "tests" / "config" / "tiny.yaml"
RELEASE = ("ibm-nasa-geospatial/Prithvi-EO-1.0-100M", "Prithvi_EO_V1_100M.pt")


def hf_cache(root: Path, monkeypatch: pytest.MonkeyPatch, with_release: bool) -> Path:
    """A local Hugging Face cache (empty, or holding a placeholder of the Prithvi-100M release file)."""
    import huggingface_hub.constants as constants

    if with_release:
        repo = root / f"models--{RELEASE[0].replace('/', '--')}"
        (repo / "snapshots" / "0" / RELEASE[1]).parent.mkdir(parents=True)
        (repo / "snapshots" / "0" / RELEASE[1]).write_bytes(b"placeholder")
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("0")
    root.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    return root


def test_preset_is_valid_once_the_released_weights_are_cached(tmp_path, monkeypatch):
    hf_cache(tmp_path / "hf", monkeypatch, with_release=True)
    config = load_config(yaml.safe_load(PRESET.read_text()))
    assert config["stac"]["imagery"]["source"].startswith("https://planetarycomputer")
    assert config["stac"]["imagery"]["collections"] == ["hls2-l30"] and config["download"]["frames"] == 1
    assert config["models"]["prithvi"]["weights"] == "hf" and config["models"]["prithvi"]["normalization"] == "dataset"
    assert config["evaluate"]["mode"] == "sliding_window" and config["train"]["schedule"] == "poly"
    tuned = yaml.safe_load(PRESET.read_text())
    tuned["tune"]["enabled"] = True  # the README's "tuned" column: one key away
    assert load_config(tuned)["tune"]["search_space"]["prithvi"]["warmup_iters"]["choices"]


def test_preset_without_the_released_weights_stops_at_start_up(tmp_path, monkeypatch):
    hf_cache(tmp_path / "hf", monkeypatch, with_release=False)
    with pytest.raises(ConfigError, match=r"models.prithvi.weights.*hf download ibm-nasa-geospatial"):
        load_config(yaml.safe_load(PRESET.read_text()))


@pytest.mark.slow
def test_preset_fails_early_and_clearly_offline(tmp_path):
    """The real snakemake with the preset on a machine without the weights or network: no job starts."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "https_proxy")}
    env["HTTPS_PROXY"] = env["HTTP_PROXY"] = "http://127.0.0.1:9"  # a closed port: nothing leaves the machine
    env["HF_HUB_CACHE"] = str(tmp_path / "hf")
    command = [str(Path(sys.executable).parent / "snakemake"), "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(tmp_path), "--cores", "1", "--configfile", str(PRESET)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "hf download ibm-nasa-geospatial/Prithvi-EO-1.0-100M Prithvi_EO_V1_100M.pt" in output
    assert "Traceback" not in output
    assert not (tmp_path / "results").exists()


def scaled_down_preset() -> dict:
    """The tiny demo config with the preset's models, train and evaluate sections; only sizes scaled down."""
    preset = yaml.safe_load(PRESET.read_text())
    config = yaml.safe_load(TINY.read_text())
    config["download"]["frames"] = preset["download"]["frames"]
    config["splits"] |= {"train_fractions": [1.0], "seeds": [0]}
    config["tune"] = {"enabled": False}
    config["predict"] = {"runs": [{"model": "prithvi"}]}
    models = copy.deepcopy(preset["models"])
    small = {"epochs": 2, "batch_size": 4}
    models["prithvi"] |= small | {"backbone": "prithvi_eo_tiny", "backbone_kwargs": {"patch_size": [1, 8, 8]},
                                  "weights": "none"}  # the released weights are not offline
    models["vit"] |= small | {"arch": "vit_tiny_patch16_224", "patch_size": 8, "model_kwargs": {"depth": 2}}
    models["unet"] |= small
    config["models"] = models
    config["train"] = preset["train"] | {"samples_per_epoch": 16, "warmup_iters": 4}
    config["evaluate"] = preset["evaluate"] | {"crop": 32, "stride": 16}  # the 224 / 128 window, at chip size
    return config


@pytest.mark.slow
def test_every_preset_setting_runs_through_the_workflow_on_demo_data(tmp_path):
    from test_workflow import snakemake

    config = scaled_down_preset()
    configfile = tmp_path / "preset_small.yaml"
    configfile.write_text(yaml.safe_dump(config))
    snakemake(tmp_path, "results/summary/answer.md", "results/predict/tiny_iowa/prithvi_f1_s0/landcover.tif",
              configfile=configfile)
    stats = json.loads((tmp_path / "results/stats/normalization.json").read_text())
    assert len(stats["mean"]) == len(stats["std"]) == 6
    for name in ("prithvi", "unet", "vit"):
        run = json.loads((tmp_path / f"results/train/{name}/f1_s0/run.json").read_text())
        assert run["normalization"]["name"] == "dataset"
        assert run["normalization"]["mean"] == pytest.approx(stats["mean"])
        assert run["schedule"]["name"] == "poly" and run["schedule"]["warmup_steps"] == 4
        assert run["schedule"]["warmup_start_ratio"] == pytest.approx(1e-6)
        assert run["val_every_epochs"] == 5 and run["validated_epochs"] == [1], "the last epoch is validated"
        assert max(run["class_weights"].values()) <= 0.2 + 1e-6
        assert run["train_config"]["augment"] == {"hflip": True, "vflip": False, "rot90": False}
        metrics = json.loads((tmp_path / f"results/evaluate/{name}/f1_s0/metrics.json").read_text())
        assert metrics["evaluation"]["mode"] == "sliding_window"
        assert (metrics["evaluation"]["crop"], metrics["evaluation"]["stride"]) == (32, 16)
    for name in ("prithvi", "vit"):
        run = json.loads((tmp_path / f"results/train/{name}/f1_s0/run.json").read_text())
        assert run["optimizer"]["layer_decay"] == 0.9 and run["aux_head"]["loss_weight"] == 1.0
        assert run["model_config"]["decoder_norm"] == "batch" and run["model_config"]["decoder_dropout"] == 0.1
    assert "prithvi" in (tmp_path / "results/summary/answer.md").read_text()
