"""Training and pretraining on tiny synthetic chip stores: outputs, learning, resume, reproducibility."""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from synthetic_chips import FAST
from torchmetrics.classification import MulticlassJaccardIndex

from lulc.checkpoint_io import VerifiedCheckpointIO, verified_checkpoint, write_checksum_record
from lulc.models import load_trained_model
from lulc.recipe import augment_batch, class_weights, lr_multiplier, weighted_cross_entropy
from lulc.train import SegmentationTask, parameter_groups, run_directory, train, training_precision
from tests.io_legend import IGNORE_INDEX, NUM_CLASSES

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
    assert saved["precision"] == training_precision("auto", "cpu", name) and saved["accelerator"] == "cpu"
    choice = saved["precision_choice"]  # what `auto` chose, and why (the measured table or its absence)
    assert choice["setting"] == "auto" and choice["chosen"] == saved["precision"]
    assert f"{name} training" in choice["reason"]
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


def test_learning_rate_warms_up_then_decays():
    values = [lr_multiplier(step, 4, 20, 0.01) for step in range(21)]
    assert values[0] == pytest.approx(0.2) and values[3] < values[4] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(values[4:])) and values[-1] == pytest.approx(0.01)


def _previous_warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """The schedule before lr_multiplier (linear warm-up from 1 / (W + 1), then cosine), kept for the test below."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def test_the_default_schedule_is_unchanged_to_the_last_bit():
    for warmup, total, min_ratio in ((0, 10, 0.01), (4, 20, 0.01), (16, 96, 0.0), (7, 8, 0.3)):
        for step in range(total + 3):
            assert lr_multiplier(step, warmup, total, min_ratio) == _previous_warmup_cosine(step, warmup, total,
                                                                                           min_ratio)


def test_poly_schedule_and_warm_up_give_the_documented_rates():
    """W = 10 warm-up steps from 1e-6, then poly (power 1) to 0 over the 100 steps after it (N = 110)."""
    def rate(step: int, power: float = 1.0, min_ratio: float = 0.0) -> float:
        return lr_multiplier(step, 10, 110, min_ratio, "poly", power, warmup_start_ratio=1e-6)

    assert rate(0) == pytest.approx(1e-6, abs=1e-12)  # step 0: the start ratio
    assert rate(5) == pytest.approx(1e-6 + (1 - 1e-6) * 0.5)  # mid warm-up: linear
    assert rate(9) == pytest.approx(1e-6 + (1 - 1e-6) * 0.9)
    assert rate(10) == 1.0  # the end of the warm-up: the peak
    assert rate(60) == pytest.approx(0.5)  # mid-decay: linear (power 1)
    assert rate(60, power=2.0) == pytest.approx(0.25)
    assert rate(60, min_ratio=0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert rate(109) == pytest.approx(0.01)  # the last step
    assert rate(110) == 0.0 and rate(110, min_ratio=0.1) == pytest.approx(0.1)  # after it: min_lr_ratio
    values = [rate(step) for step in range(111)]
    assert all(a < b for a, b in itertools.pairwise(values[:11])) and all(
        a > b for a, b in itertools.pairwise(values[10:]))
    # the cosine schedule takes the same warm-up
    assert lr_multiplier(5, 10, 110, 0.0, "cosine", warmup_start_ratio=1e-6) == rate(5)
    assert lr_multiplier(60, 10, 110, 0.0, "cosine") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="'step' is not one of cosine, poly"):
        lr_multiplier(60, 10, 110, 0.0, "step")


def test_the_scheduler_applies_the_schedule_to_every_parameter_group():
    from lulc.models import build_model

    model = build_model("vit", {}, 3, 32).model
    task = SegmentationTask(model, torch.ones(NUM_CLASSES), lr=6e-4, weight_decay=0.05, warmup_steps=10,
                            total_steps=110, min_lr_ratio=0.0, schedule="poly", warmup_start_ratio=1e-6,
                            layer_decay=0.9)
    configured = task.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert optimizer.defaults["betas"] == (0.9, 0.999)
    for step in range(61):
        for group in optimizer.param_groups:
            assert group["lr"] == pytest.approx(6e-4 * group["lr_scale"] * lr_multiplier(
                step, 10, 110, 0.0, "poly", 1.0, 1e-6), rel=1e-9, abs=1e-18)
        optimizer.step()
        scheduler.step()


REPO = Path(__file__).resolve().parents[1]


def test_rules_and_package_share_the_runtime_keys():
    from lulc import predict, schema, train

    for stage, keys in (("train", "TRAIN_RUNTIME_KEYS"), ("predict", "PREDICT_RUNTIME_KEYS")):
        rules = "".join(p.read_text() for p in (REPO / "workflow" / "rules").rglob("*.smk"))
        assert not re.search(rf"^{keys} = ", rules, flags=re.MULTILINE)  # no copy to drift
        functions = (REPO / "workflow" / "rules" / "functions" / f"{stage}.smk").read_text()
        assert re.search(rf"^from lulc.schema import \(?[^)]*?\b{keys}\b", functions, flags=re.MULTILINE)
    assert train.RUNTIME_KEYS is schema.TRAIN_RUNTIME_KEYS and predict.RUNTIME_KEYS is schema.PREDICT_RUNTIME_KEYS


# ------------------------------------------------------------------- recipe options (lulc/train.py, models)


def _raw_batch(batch: int = 4, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(100, 4000, (batch, 3, 6, size, size), generator=generator, dtype=torch.int16)
    mask = torch.randint(0, NUM_CLASSES, (batch, size, size), generator=generator)
    return image, mask


def test_layer_decay_gives_each_prithvi_layer_its_learning_rate():
    """BEiT / mmsegmentation convention on a real Prithvi-tiny (L blocks): block i at lr x d^(L - i), the
    embeddings at lr x d^(L + 1), the final norm, decoder and head at lr; no weight decay on 1-D parameters."""
    from lulc.models import build_model

    model = build_model("prithvi", {"weights": "none"}, 3, 32).model
    encoder = model.net.model.encoder
    depth, lr, decay = len(encoder.blocks), 6e-4, 0.9
    groups = parameter_groups(model, lr, 0.05, decay)
    rate = {id(p): group["lr"] for group in groups for p in group["params"]}
    wd = {id(p): group["weight_decay"] for group in groups for p in group["params"]}
    named = dict(model.named_parameters())
    assert len(rate) == len(named)  # every parameter, once
    block = [rate[id(encoder.blocks[i].attn.qkv.weight)] for i in range(depth)]
    assert block[-1] == pytest.approx(lr * decay)  # the last block: one factor
    assert block[0] == pytest.approx(lr * decay**depth)  # the first block: L factors
    assert all(b / a == pytest.approx(1 / decay) for a, b in itertools.pairwise(block))
    assert rate[id(encoder.patch_embed.proj.weight)] == pytest.approx(lr * decay ** (depth + 1))
    assert rate[id(encoder.cls_token)] == pytest.approx(lr * decay ** (depth + 1))
    assert rate[id(encoder.norm.weight)] == lr  # the encoder's final norm trains like the decoder
    decoder = [p for name, p in named.items() if ".decoder." in name or ".head." in name]
    assert decoder and all(rate[id(p)] == lr for p in decoder)
    assert block[0] / rate[id(decoder[0])] == pytest.approx(decay**depth)
    assert wd[id(encoder.blocks[0].attn.qkv.weight)] == 0.05 and wd[id(encoder.blocks[0].attn.qkv.bias)] == 0.0
    assert wd[id(encoder.norm.weight)] == 0.0
    # without layer decay: the two groups of before, every parameter at lr
    plain = parameter_groups(model, lr, 0.05)
    assert [g["weight_decay"] for g in plain] == [0.05, 0.0] and all("lr" not in g for g in plain)
    assert sum(len(g["params"]) for g in plain) == len(named)


def test_the_auxiliary_loss_is_added_with_its_weight():
    from lulc.models import build_model

    model = build_model("vit", {"aux_head": {"enabled": True, "channels": 32}}, 3, 32).model
    weights = torch.rand(NUM_CLASSES) + 0.5
    task = SegmentationTask(model, weights, lr=1e-3, weight_decay=0.0, warmup_steps=0, total_steps=10,
                            aux_loss_weight=0.4)
    image, mask = _raw_batch()
    loss, aux_loss = task.training_loss(image, mask)
    logits, aux_logits = model.forward_with_aux(image)
    main = weighted_cross_entropy(logits, mask, weights)
    aux = weighted_cross_entropy(aux_logits, mask, weights)
    assert float(aux_loss.detach()) == pytest.approx(float(aux.detach()))
    assert float(loss.detach()) == pytest.approx(float((main + 0.4 * aux).detach()), rel=1e-6)
    assert float(aux.detach()) > 0 and float(loss.detach()) > float(main.detach()) * 1.01
    loss.backward()
    assert model.net.aux_head.head.weight.grad is not None and model.net.aux_head.head.weight.grad.abs().sum() > 0
    without = SegmentationTask(model, weights, lr=1e-3, weight_decay=0.0, warmup_steps=0, total_steps=10)
    plain, none = without.training_loss(image, mask)
    assert none is None and float(plain.detach()) == pytest.approx(float(main.detach()))


def test_a_frozen_encoder_stays_unchanged_while_the_decoder_trains():
    from lulc.models import build_model, freeze_encoder

    model = build_model("vit", {"aux_head": {"enabled": True, "channels": 16}}, 3, 32).model
    encoder = model.net.vit
    frozen = freeze_encoder(model)
    assert frozen == sum(p.numel() for p in encoder.parameters()) > 0
    task = SegmentationTask(model, torch.ones(NUM_CLASSES), lr=1e-2, weight_decay=0.05, warmup_steps=0,
                            total_steps=10, aux_loss_weight=1.0)
    optimizer = task.configure_optimizers()["optimizer"]
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not in_optimizer & {id(p) for p in encoder.parameters()}
    assert in_optimizer == {id(p) for name, p in model.named_parameters() if not name.startswith("net.vit.")}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    image, mask = _raw_batch()
    task.training_loss(image, mask)[0].backward()
    optimizer.step()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("net.vit."))
    for prefix in ("net.decoder.", "net.aux_head."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix)), prefix


@pytest.mark.parametrize(("hflip", "vflip"), [(True, False), (False, True)])
def test_one_flip_alone_never_flips_the_other_way_nor_rotates(hflip, vflip):
    torch.manual_seed(0)
    grid = torch.arange(64).view(8, 8)
    mask = grid.repeat(256, 1, 1)
    image = mask[:, None, None].repeat(1, 2, 6, 1, 1).to(torch.int16)
    new_image, new_mask = augment_batch(image, mask, hflip=hflip, vflip=vflip, rot90=False)
    flipped = grid.flip(-1 if hflip else -2)
    same = (new_mask == grid).flatten(1).all(1)
    turned = (new_mask == flipped).flatten(1).all(1)
    assert bool((same | turned).all())  # each sample: unchanged or flipped the allowed way only
    assert 64 < int(turned.sum()) < 192  # about half flipped
    assert torch.equal(new_image[:, 1, 3].long(), new_mask)


def test_class_weights_as_shares_sum_to_one_before_the_cap():
    counts = np.array([700, 200, 0, 60, 40, 0, 0, 0, 0])
    present = counts > 0
    shares = class_weights(counts, "inverse", cap=1e9, scale="sum")
    assert shares[present].sum() == pytest.approx(1.0)
    inverse = 1 / counts[present]
    assert np.allclose(shares[present], inverse / inverse.sum())
    capped = class_weights(counts, "inverse", cap=0.2, scale="sum")
    assert capped.max() == pytest.approx(0.2) and np.all(capped <= 0.2 + 1e-12)
    kept = shares <= 0.2
    assert np.allclose(capped[present & kept], shares[present & kept])  # weights under the cap stay as shares
    assert np.all(capped[~present] == capped[present].max())
    # the default scale is unchanged: a mean per-pixel weight of 1
    frequency = counts / counts.sum()
    assert float((frequency * class_weights(counts, "inverse", cap=1e9)).sum()) == pytest.approx(1.0)


def test_validation_every_second_epoch_with_the_recipe_options_trains_end_to_end(chip_data, tmp_path):
    """Prithvi with batch norm, dropout, an auxiliary head and layer decay; poly schedule with a warm-up in
    steps; hflip only; share class weights; validation on epochs 2 and 3 (the last) of 3."""
    stores, splits = chip_data
    model_cfg = {"weights": "none", "epochs": 3, "decoder_norm": "batch", "decoder_dropout": 0.1,
                 "aux_head": {"enabled": True, "channels": 32}, "layer_decay": 0.9}
    train_cfg = FAST | {"val_every_epochs": 2, "schedule": "poly", "min_lr_ratio": 0.0, "warmup_iters": 3,
                        "warmup_start_ratio": 1e-6, "augment": {"hflip": True, "vflip": False, "rot90": False},
                        "class_weights": {"method": "inverse", "scale": "sum", "cap": 0.2}}
    out = tmp_path / "run"
    run = train("prithvi", model_cfg, train_cfg, stores, splits, 1.0, 0, out)

    assert sorted(p.name for p in out.iterdir()) == ["best.ckpt", "curve.csv", "run.json"]
    rows = curve(out / "curve.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2] and run["epochs_run"] == 3
    assert rows[0]["val_miou"] == "nan" and rows[0]["val_loss"] == "nan" and float(rows[0]["train_loss"]) > 0
    validated = [float(r["val_miou"]) for r in rows[1:]]
    assert all(math.isfinite(v) for v in validated)  # epoch 2 (every second) and 3 (the last)
    assert run["validated_epochs"] == [1, 2] and run["val_every_epochs"] == 2 and run["best_epoch"] in (1, 2)
    assert run["best_val_miou"] == pytest.approx(max(validated), abs=1e-6)
    assert float(rows[-1]["lr"]) == 0.0  # poly to min_lr_ratio 0 after the last step
    assert run["schedule"] == {"name": "poly", "steps_per_epoch": 2, "total_steps": 6, "warmup_steps": 3,
                               "warmup_start_ratio": 1e-6, "min_lr_ratio": 0.0, "poly_power": 1.0}
    optimizer = run["optimizer"]
    assert optimizer["layer_decay"] == 0.9 and optimizer["betas"] == [0.9, 0.999]
    assert optimizer["frozen_parameters"] == 0 and optimizer["trainable_parameters"] == run["model_info"]["parameters"]
    assert optimizer["lr_scales"]["block_3"] == pytest.approx(0.9) and optimizer["lr_scales"]["after_blocks"] == 1.0
    assert run["aux_head"] == {"enabled": True, "channels": 32, "num_convs": 2, "loss_weight": 1.0}
    present = [name for name, pixels in run["class_pixels"].items() if pixels > 0]
    assert sum(run["class_weights"][name] for name in present) <= 1 + 1e-5  # shares (<= 1 once capped)
    assert max(run["class_weights"].values()) <= 0.2
    assert run["model_info"]["decoder_implementation"] == "lulc"

    model, checkpoint = load_trained_model(out / "best.ckpt")
    assert checkpoint["epoch"] == run["best_epoch"]
    state = checkpoint["state_dict"]
    assert any(k.startswith("net.aux_head.") for k in state) and any(k.endswith("running_var") for k in state)
    images = torch.from_numpy(np.load(stores["aoi_a"] / "images.npy")[:2])
    with torch.no_grad():
        assert model.eval()(images).shape == (2, NUM_CLASSES, 32, 32)


def test_a_frozen_encoder_run_records_its_frozen_parameters(chip_data, tmp_path):
    stores, splits = chip_data
    run = train("vit", {"epochs": 1, "freeze_encoder": True}, FAST, stores, splits, 1.0, 0, tmp_path / "run")
    optimizer = run["optimizer"]
    assert optimizer["frozen_parameters"] == run["model_info"]["encoder_parameters"] > 0
    assert optimizer["trainable_parameters"] + optimizer["frozen_parameters"] == run["model_info"]["parameters"]
    assert optimizer["layer_decay"] is None and "lr_scales" not in optimizer
