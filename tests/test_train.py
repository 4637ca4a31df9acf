"""Training and pretraining on tiny synthetic chip stores: outputs, learning, resume, reproducibility."""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from synthetic_chips import make_dataset
from torchmetrics.classification import MulticlassJaccardIndex

from lulc.classes import IGNORE_INDEX, NUM_CLASSES
from lulc.models import load_trained_model
from lulc.pretrain import pretrain
from lulc.train import (
    augment_batch,
    class_weights,
    resolve_precision,
    resolve_train_config,
    run_directory,
    train,
    warmup_cosine,
    weighted_cross_entropy,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
FAST = {"samples_per_epoch": 16, "progress_bar": False, "patience": 10}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[dict[str, Path], Path]:
    return make_dataset(tmp_path_factory.mktemp("chips"))


def curve(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


class Crash(Callback):
    """Simulates a run killed after ``epoch`` epochs (their checkpoint is already on disk)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated interruption")


@pytest.mark.parametrize("name", ["prithvi", "unet", "vit"])
def test_each_model_trains_and_writes_its_outputs(name, data, tmp_path):
    stores, splits = data
    out = run_directory(tmp_path, name, 1.0, 0)
    model_cfg = {"epochs": 4} | ({"weights": "none"} if name == "prithvi" else {})
    run = train(name, model_cfg, FAST, stores, splits, 1.0, 0, out)

    assert out == tmp_path / name / "f1_s0"
    assert sorted(p.name for p in out.iterdir()) == ["best.ckpt", "curve.csv", "run.json"]  # work/ cleaned up
    rows = curve(out / "curve.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < losses[0], losses  # it learns
    assert float(rows[-1]["lr"]) < float(rows[1]["lr"])  # cosine decay after the warm-up epoch

    saved = json.loads((out / "run.json").read_text())
    assert saved == json.loads(json.dumps(run, default=str))
    assert saved["model"] == name and saved["fraction"] == 1.0 and saved["seed"] == 0
    assert saved["train_chips"] == 12 and saved["val_chips"] == 6 and saved["epochs_run"] == 4
    assert saved["weights"]["source"] == "none" and saved["normalization"]["mean"]
    assert 0 <= saved["best_val_miou"] <= 1 and saved["samples_per_s"] > 0 and saved["wall_time_s"] > 0
    assert saved["best_val_miou"] == pytest.approx(max(float(r["val_miou"]) for r in rows), abs=1e-6)
    assert saved["precision"] == resolve_precision("auto", "cpu") and saved["accelerator"] == "cpu"

    model, checkpoint = load_trained_model(out / "best.ckpt")
    assert checkpoint["epoch"] == saved["best_epoch"] and checkpoint["info"]["name"] == name
    images = torch.from_numpy(np.load(stores["aoi_a"] / "images.npy")[:2])
    with torch.no_grad():
        assert model.eval()(images).shape == (2, NUM_CLASSES, 32, 32)


def test_a_fixed_seed_reproduces_the_run_and_another_seed_does_not(data, tmp_path):
    stores, splits = data
    runs = [train("vit", {"epochs": 3}, FAST, stores, splits, 0.5, seed, tmp_path / f"{i}")
            for i, seed in enumerate((1, 1, 0))]
    first, again, other = (curve(tmp_path / f"{i}" / "curve.csv") for i in range(3))
    drop_time = [{k: v for k, v in row.items() if k != "time_s"} for row in first]
    assert drop_time == [{k: v for k, v in row.items() if k != "time_s"} for row in again]
    assert runs[0]["best_val_miou"] == runs[1]["best_val_miou"]
    assert drop_time != [{k: v for k, v in row.items() if k != "time_s"} for row in other]


def test_an_interrupted_run_resumes_from_its_last_epoch(data, tmp_path):
    stores, splits = data
    cfg = {"epochs": 4}
    reference = train("vit", cfg, FAST, stores, splits, 1.0, 0, tmp_path / "reference")

    out = tmp_path / "interrupted"
    with pytest.raises(RuntimeError, match="simulated interruption"):
        train("vit", cfg, FAST, stores, splits, 1.0, 0, out, callbacks=[Crash(epoch=2)])
    assert (out / "work" / "last.ckpt").is_file() and not (out / "run.json").exists()
    resumed = train("vit", cfg, FAST, stores, splits, 1.0, 0, out)

    assert resumed["resumed_from_epoch"] == 1 and resumed["epochs_run"] == 4
    rows = curve(out / "curve.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    # RNG and loader states are checkpointed too: the resumed run ends exactly where an uninterrupted one does
    assert [r["val_miou"] for r in rows] == [r["val_miou"] for r in curve(tmp_path / "reference" / "curve.csv")]
    assert resumed["best_val_miou"] == reference["best_val_miou"]


def test_resume_state_of_another_configuration_is_discarded(data, tmp_path):
    stores, splits = data
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        train("vit", {"epochs": 3}, FAST, stores, splits, 1.0, 0, out, callbacks=[Crash(epoch=1)])
    run = train("vit", {"epochs": 3, "lr": 5e-4}, FAST, stores, splits, 1.0, 0, out)
    assert run["resumed_from_epoch"] is None and run["epochs_run"] == 3


def test_pretrain_writes_a_checkpoint_the_prithvi_loader_accepts(data, tmp_path):
    stores, splits = data
    summary = pretrain("prithvi", {}, {"epochs": 2, "batch_size": 8}, stores, tmp_path / "pretrain", progress=False)
    checkpoint = tmp_path / "pretrain" / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=True)
    assert any(k.startswith("encoder.blocks.") for k in state) and any(k.startswith("decoder.") for k in state)
    assert summary["chips"] == 24 and len(summary["curve"]) == 2 and summary["normalization"]["name"] == "prithvi_v2"
    assert json.loads((tmp_path / "pretrain" / "pretrain.json").read_text())["tensors"]["encoder"] > 0

    run = train("prithvi", {"epochs": 1}, FAST, stores, splits, 0.5, 0, tmp_path / "finetune",
                pretrain_checkpoint=checkpoint)
    assert run["weights"]["source"] == "pretrain" and run["weights"]["path"] == str(checkpoint)
    assert run["weights"]["tensors_rebuilt"] == [] and run["weights"]["tensors_loaded"] == summary["tensors"]["encoder"]


def test_pretrain_refuses_a_model_that_is_not_prithvi(data, tmp_path):
    with pytest.raises(ValueError, match="pretraining 'unet': it is a unet model"):
        pretrain("unet", {}, {}, data[0], tmp_path)


def test_class_weights_are_inverse_sqrt_frequency_with_mean_one_and_capped():
    counts = np.array([900, 100, 0, 1, 0, 0, 0, 0, 0])
    weights = class_weights(counts, "inverse_sqrt", cap=10.0)
    frequency = counts / counts.sum()
    assert weights[1] / weights[0] == pytest.approx(3.0)
    assert weights[3] == 10.0 and weights[2] == weights.max()  # capped; absent classes take the largest weight
    uncapped = class_weights(counts, "inverse_sqrt", cap=1e9)
    assert float((frequency * uncapped).sum()) == pytest.approx(1.0)
    assert np.all(class_weights(counts, "none") == 1)


def test_weighted_cross_entropy_ignores_the_ignore_index():
    logits = torch.randn(2, NUM_CLASSES, 4, 4)
    target = torch.randint(0, NUM_CLASSES, (2, 4, 4))
    weights = torch.rand(NUM_CLASSES) + 0.5
    reference = torch.nn.functional.cross_entropy(logits, target, weight=weights)
    assert weighted_cross_entropy(logits, target, weights) == pytest.approx(float(reference), rel=1e-5)
    ignored = target.clone()
    ignored[0] = IGNORE_INDEX
    reference = torch.nn.functional.cross_entropy(logits, ignored, weight=weights, ignore_index=IGNORE_INDEX)
    assert weighted_cross_entropy(logits, ignored, weights) == pytest.approx(float(reference), rel=1e-5)
    all_ignored = torch.full_like(target, IGNORE_INDEX)
    assert weighted_cross_entropy(logits, all_ignored, weights) == 0  # not NaN


def test_validation_miou_is_macro_and_excludes_the_ignore_index():
    metric = MulticlassJaccardIndex(NUM_CLASSES, ignore_index=IGNORE_INDEX, average="macro")
    target = torch.tensor([[0, 0, 1, IGNORE_INDEX]])
    prediction = torch.tensor([[0, 0, 1, 5]])  # the wrong prediction sits on an ignored pixel
    metric.update(prediction, target)
    assert float(metric.compute()) == 1.0


def test_augmentation_moves_image_and_mask_together():
    torch.manual_seed(0)
    mask = torch.randint(0, NUM_CLASSES, (16, 8, 8))
    image = mask[:, None, None].repeat(1, 3, 6, 1, 1).to(torch.int16)
    new_image, new_mask = augment_batch(image, mask)
    assert torch.equal(new_image[:, 2, 4].long(), new_mask)
    assert not torch.equal(new_mask, mask)  # something moved
    assert torch.equal(new_mask.flatten(1).sort(1).values, mask.flatten(1).sort(1).values)  # pixels permuted only


def test_auto_precision_is_bf16_only_where_the_hardware_computes_it(monkeypatch):
    import lulc.models
    from lulc import predict

    cpu = torch.device("cpu")
    monkeypatch.setattr(lulc.models, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16-mixed"
    assert predict.resolve_precision("auto", cpu) == "bf16"  # prediction follows the same rule
    monkeypatch.setattr(lulc.models, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "32-true"
    assert predict.resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"  # an explicit setting is kept


def test_learning_rate_warms_up_then_decays():
    values = [warmup_cosine(step, 4, 20, 0.01) for step in range(21)]
    assert values[0] == pytest.approx(0.2) and values[3] < values[4] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(values[4:])) and values[-1] == pytest.approx(0.01)


def test_train_config_errors_name_the_key():
    with pytest.raises(ValueError, match="config key train.epochs: unknown key"):
        resolve_train_config({"epochs": 3})
    with pytest.raises(ValueError, match="config key train.class_weights"):
        resolve_train_config({"class_weights": {"method": "median"}})
    assert resolve_train_config({"augment": {"rot90": False}})["augment"] == {"flips": True, "rot90": False}


REPO = Path(__file__).resolve().parents[1]


def test_rules_and_package_share_the_runtime_keys():
    from lulc import config, predict, train

    rules = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert not re.search(r"^(TRAIN|PREDICT)_RUNTIME_KEYS = ", rules, flags=re.MULTILINE)  # no copy to drift
    assert re.search(r"^from lulc.config import .*\bTRAIN_RUNTIME_KEYS\b", rules, flags=re.MULTILINE)
    assert train.RUNTIME_KEYS is config.TRAIN_RUNTIME_KEYS and predict.RUNTIME_KEYS is config.PREDICT_RUNTIME_KEYS


def test_schema_defaults_mirror_the_python_defaults():
    """The schema fills the same defaults that lulc.models / lulc.train / lulc.pretrain resolve."""
    import yaml

    from lulc import models, pretrain, train
    from lulc.config import validate_config

    schema_path = REPO / "workflow" / "schemas" / "config.schema.yaml"
    if "models" not in yaml.safe_load(schema_path.read_text())["properties"]:
        pytest.skip("the models / train / pretrain sections are not in the config schema yet")
    config = yaml.safe_load((REPO / "tests" / "config" / "tiny.yaml").read_text())
    for section in ("models", "train", "pretrain"):
        config.pop(section, None)
    config["models"] = {"scratch": {"type": "prithvi", "weights": "none"}}
    validate_config(config, schema_path)
    for name in ("prithvi", "unet", "vit"):
        assert config["models"][name] == models.DEFAULTS[name], name
    assert config["models"]["scratch"] == models.resolve_model_config("scratch", {"type": "prithvi", "weights": "none"})
    assert config["train"] == train.DEFAULTS
    assert config["pretrain"] == pretrain.DEFAULTS
