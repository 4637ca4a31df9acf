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
from synthetic_chips import FAST
from torchmetrics.classification import MulticlassJaccardIndex

from lulc.classes import IGNORE_INDEX, NUM_CLASSES
from lulc.models import load_trained_model
from lulc.train import (
    VerifiedCheckpointIO,
    augment_batch,
    class_weights,
    run_directory,
    train,
    training_precision,
    verified_checkpoint,
    warmup_cosine,
    weighted_cross_entropy,
    write_checksum_record,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
def test_each_model_trains_and_writes_its_outputs(name, chip_data, tmp_path):
    stores, splits = chip_data
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
    assert saved["precision"] == training_precision("auto", "cpu") and saved["accelerator"] == "cpu"
    assert saved["matmul_precision"] == "highest"  # fp32 matmuls in fp32, whatever TerraTorch's import set

    model, checkpoint = load_trained_model(out / "best.ckpt")
    assert checkpoint["epoch"] == saved["best_epoch"] and checkpoint["info"]["name"] == name
    images = torch.from_numpy(np.load(stores["aoi_a"] / "images.npy")[:2])
    with torch.no_grad():
        assert model.eval()(images).shape == (2, NUM_CLASSES, 32, 32)


def test_a_fixed_seed_reproduces_the_run_and_another_seed_does_not(chip_data, tmp_path):
    stores, splits = chip_data
    runs = [train("vit", {"epochs": 3}, FAST, stores, splits, 0.5, seed, tmp_path / f"{i}")
            for i, seed in enumerate((1, 1, 0))]
    first, again, other = (curve(tmp_path / f"{i}" / "curve.csv") for i in range(3))
    drop_time = [{k: v for k, v in row.items() if k != "time_s"} for row in first]
    assert drop_time == [{k: v for k, v in row.items() if k != "time_s"} for row in again]
    assert runs[0]["best_val_miou"] == runs[1]["best_val_miou"]
    assert drop_time != [{k: v for k, v in row.items() if k != "time_s"} for row in other]


def test_an_interrupted_run_resumes_from_its_last_epoch(chip_data, tmp_path):
    stores, splits = chip_data
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


def test_resume_state_of_another_configuration_is_discarded(chip_data, tmp_path):
    stores, splits = chip_data
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        train("vit", {"epochs": 3}, FAST, stores, splits, 1.0, 0, out, callbacks=[Crash(epoch=1)])
    run = train("vit", {"epochs": 3, "lr": 5e-4}, FAST, stores, splits, 1.0, 0, out)
    assert run["resumed_from_epoch"] is None and run["epochs_run"] == 3


def interrupted_run(chip_data, out: Path, epochs: int, crash_epoch: int) -> Path:
    """Train a ViT that is killed when epoch ``crash_epoch`` starts; return its resume state (work/last.ckpt)."""
    stores, splits = chip_data
    with pytest.raises(RuntimeError, match="simulated interruption"):
        train("vit", {"epochs": epochs}, FAST, stores, splits, 1.0, 0, out, callbacks=[Crash(epoch=crash_epoch)])
    return out / "work" / "last.ckpt"


def test_a_truncated_resume_state_is_discarded_and_training_restarts(chip_data, tmp_path, caplog):
    """A full disk or a killed copy leaves a short last.ckpt: it is refused by its checksum record, with a
    warning naming it, and the run trains from the start (to the same result as a run never interrupted)."""
    stores, splits = chip_data
    cfg = {"epochs": 3}
    out = tmp_path / "run"
    last = interrupted_run(chip_data, out, epochs=3, crash_epoch=2)
    assert verified_checkpoint(last) is None, "a complete resume state must verify"
    with open(last, "r+b") as handle:
        handle.truncate(last.stat().st_size // 2)
    assert "truncated" in verified_checkpoint(last)

    with caplog.at_level("WARNING", logger="lulc.train"):
        run = train("vit", cfg, FAST, stores, splits, 1.0, 0, out)
    assert any("discarding damaged resume state" in r.getMessage() and str(last) in r.getMessage()
               for r in caplog.records), caplog.text
    assert run["resumed_from_epoch"] is None and run["epochs_run"] == 3
    reference = train("vit", cfg, FAST, stores, splits, 1.0, 0, tmp_path / "reference")
    assert run["best_val_miou"] == reference["best_val_miou"]


class _RunsCodeWhenUnpickled:
    """An object whose unpickling creates a file: what a tampered checkpoint could do to the next train job."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_resume_state_holding_a_pickled_object_is_refused(chip_data, tmp_path, caplog):
    stores, splits = chip_data
    cfg = {"epochs": 2}
    out = tmp_path / "run"
    last = interrupted_run(chip_data, out, epochs=2, crash_epoch=1)
    marker = tmp_path / "code-ran"
    state = torch.load(last, weights_only=True)
    state["callbacks"]["tampered"] = _RunsCodeWhenUnpickled(marker)
    torch.save(state, last)
    write_checksum_record(last)  # a consistent record: only the weights-only load can refuse it

    with pytest.raises(Exception, match="Weights only load failed|Unsupported global"):
        VerifiedCheckpointIO().load_checkpoint(last)
    with caplog.at_level("WARNING", logger="lulc.train"):
        run = train("vit", cfg, FAST, stores, splits, 1.0, 0, out)
    assert not marker.exists(), "unpickling the resume state ran code"
    assert run["resumed_from_epoch"] is None and run["epochs_run"] == 2
    assert "discarding damaged resume state" in caplog.text


def test_checkpoints_are_written_atomically_with_a_checksum_record(tmp_path):
    path = tmp_path / "work" / "last.ckpt"
    VerifiedCheckpointIO().save_checkpoint({"epoch": 3, "weights": torch.ones(4)}, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt", "last.ckpt.sha256"]
    assert verified_checkpoint(path) is None
    assert VerifiedCheckpointIO().load_checkpoint(path)["epoch"] == 3
    path.write_bytes(path.read_bytes()[:-1] + b"x")  # same size, one byte changed
    assert "does not match its checksum record" in verified_checkpoint(path)
    VerifiedCheckpointIO().remove_checkpoint(path)
    assert list(path.parent.iterdir()) == []


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
    assert training_precision("auto", "cpu") == "bf16-mixed"
    assert predict.inference_precision("auto", cpu) == "bf16"  # prediction follows the same rule
    monkeypatch.setattr(lulc.models, "cpu_has_native_bf16", lambda: False)
    assert training_precision("auto", "cpu") == "32-true"
    assert predict.inference_precision("auto", cpu) == "fp32"
    assert training_precision("bf16-mixed", "cpu") == "bf16-mixed"  # an explicit setting is kept


def test_learning_rate_warms_up_then_decays():
    values = [warmup_cosine(step, 4, 20, 0.01) for step in range(21)]
    assert values[0] == pytest.approx(0.2) and values[3] < values[4] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(values[4:])) and values[-1] == pytest.approx(0.01)


REPO = Path(__file__).resolve().parents[1]


def test_rules_and_package_share_the_runtime_keys():
    from lulc import config, predict, train

    rules = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert not re.search(r"^(TRAIN|PREDICT)_RUNTIME_KEYS = ", rules, flags=re.MULTILINE)  # no copy to drift
    assert re.search(r"^from lulc.config import \(?[^)]*?\bTRAIN_RUNTIME_KEYS\b", rules, flags=re.MULTILINE)
    assert train.RUNTIME_KEYS is config.TRAIN_RUNTIME_KEYS and predict.RUNTIME_KEYS is config.PREDICT_RUNTIME_KEYS
