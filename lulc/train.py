"""Train stage: fine-tune one model on one training subset (fraction x seed) with Lightning.

One run = one config entry ``models.<name>`` x one nested training subset of ``results/splits/splits.csv``
(:func:`lulc.split_table.load_split`) x one seed. Validation is the same fixed split for every run.

* Loss: class-weighted cross-entropy, :data:`~lulc.legends.IGNORE_INDEX` ignored. Weights come from the
  run's training pixel counts (``inverse_sqrt``: ``f_c ** -0.5``, ``inverse``: ``1 / f_c``; scaled to a mean
  per-pixel weight of 1, or with ``class_weights.scale: sum`` to shares summing to 1; then capped at
  ``class_weights.cap``). With ``aux_head.enabled`` the auxiliary head's weighted cross-entropy is added,
  times ``aux_head.loss_weight`` (:meth:`SegmentationTask.training_loss`).
* Optimiser: AdamW (betas 0.9, 0.999; no weight decay on 1-D parameters: biases, norm weights; fused), the
  parameters of a ``freeze_encoder`` encoder left out, and with ``layer_decay`` per-layer learning rates
  (:func:`parameter_groups`). Learning rate per step (:func:`lr_multiplier`): linear warm-up (``warmup_epochs``
  or ``warmup_iters`` steps, from ``warmup_start_ratio``), then cosine or poly decay to ``min_lr_ratio x lr``.
* Model selection: validation macro mIoU (torchmetrics ``MulticlassJaccardIndex``, ignore index excluded,
  classes absent from both prediction and truth skipped), mode ``"max"``, for both the best checkpoint and
  early stopping, every ``val_every_epochs`` epochs and after the last one (:class:`ValidateFinalEpoch`).
* Augmentation on the device, per sample: horizontal / vertical flips and 90-degree rotations of image and
  mask together, each switchable (``augment.hflip`` / ``vflip`` / ``rot90``; the chips stay int16 until the
  model normalises them).
* Reproducibility: ``seed_everything``, deterministic algorithms on CPU, a seeded generator for the
  DataLoader and sampler; the RNG states are checkpointed, so an interrupted run resumes where it stopped
  (from ``work/last.ckpt``, only if the config, data and weights are unchanged) and ends with the same result.
  Resume state is written atomically with a checksum record beside it (:class:`VerifiedCheckpointIO`); a
  state whose checksum does not match (a full disk, a killed copy) is discarded with a warning, and it is
  loaded with ``weights_only=True`` (tensors and plain types only: no code runs from ``results/``).
* Matmul precision: fp32 matmuls run in full fp32 in every training process
  (:data:`lulc.models.precision.FP32_MATMUL_PRECISION`, recorded in run.json as ``matmul_precision``).
* Precision (``train.precision: auto``): ``bf16-mixed`` (with channels-last convolutions) where bf16 was measured
  faster than fp32 for the model's family on this hardware class (:func:`lulc.models.precision.choose_precision`:
  e.g. AVX512-BF16 CPUs for Prithvi, U-Net and ViT; not Intel AMX for U-Net) and on GPUs with bf16; ``32-true``
  elsewhere. run.json's ``precision_choice`` records the choice and its reason.
* Devices: ``train.devices`` GPUs (on CPU: processes) per run, data-parallel (DDP, spawned processes); each
  process draws ``samples_per_epoch / devices`` samples per epoch, so the effective batch is
  ``devices x batch_size``. Only global rank 0 writes outputs.

Outputs in the run directory (``results/train/{model}/f{fraction}_s{seed}/``): ``best.ckpt`` (the best
epoch's weights, self-contained: :func:`lulc.models.checkpoint.load_trained_model`), ``curve.csv`` (epoch, step,
train loss, val loss, val mIoU, lr, seconds; NaN validation columns on epochs without validation) and
``run.json`` (what was trained on what, the weights and normalisation statistics used, the optimiser, schedule
and auxiliary head, best epoch and val mIoU, wall time, samples/s). They are written
atomically once training has finished; ``work/`` holds the resume state until then.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import lightning
import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.plugins.environments import LightningEnvironment
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader, RandomSampler
from torchmetrics.classification import MulticlassJaccardIndex

from lulc.checkpoint_io import VerifiedCheckpointIO, verified_checkpoint
from lulc.chips import ChipStore, chip_legend, chip_periods
from lulc.dataset import ChipStoreDataset
from lulc.io import atomic_path
from lulc.legends import IGNORE_INDEX, Legend
from lulc.models import (
    HPARAM_KEYS,
    BuiltModel,
    PrecisionChoice,
    batch_coords_of,
    build_model,
    channels_last_convolutions,
    choose_precision,
    encoder_layer_id,
    enforce_fp32_matmul_precision,
    freeze_encoder,
    hardware_class,
    save_trained_model,
    sha256_file,
    vit_encoder,
)
from lulc.recipe import (
    augment_batch,
    chip_geometry,
    class_pixel_counts,
    class_weights,
    lr_multiplier,
    weighted_cross_entropy,
)
from lulc.schema import TRAIN_RUNTIME_KEYS, model_entry, section
from lulc.split_table import fraction_label, load_split
from lulc.tuned import apply_tuned, load_tuned

logger = logging.getLogger(__name__)

#: Keys of ``train:`` that change how a run executes, not its result (:data:`lulc.schema.TRAIN_RUNTIME_KEYS`).
RUNTIME_KEYS = TRAIN_RUNTIME_KEYS

CURVE_COLUMNS = ("epoch", "step", "train_loss", "val_loss", "val_miou", "lr", "time_s")
#: AdamW's betas (PyTorch's defaults, and the reference study's), recorded in run.json.
ADAMW_BETAS = (0.9, 0.999)


# ---------------------------------------------------------------------------------- data and loss


def parameter_groups(
    model: torch.nn.Module, lr: float, weight_decay: float, layer_decay: float | None = None
) -> list[dict[str, Any]]:
    """AdamW parameter groups of the parameters that require gradients (frozen ones are left out).

    Weight decay applies to parameters with more than one dimension; 1-D ones (biases, norm weights) get none.
    ``layer_decay`` None: two groups (decay, no decay) at ``lr``. Otherwise one group per encoder layer and
    decay kind at ``lr * layer_decay ** (depth + 1 - layer)`` (:func:`lulc.models.core.encoder_layer_id`: the
    embeddings are layer 0, block ``i`` layer ``i + 1``; the final norm, decoder and heads ``depth + 1``, so
    ``lr``); each group carries its ``lr_scale`` and ``layer``.
    """
    if layer_decay is None:
        decay: list[torch.nn.Parameter] = []
        no_decay: list[torch.nn.Parameter] = []
        for param in model.parameters():
            if param.requires_grad:
                (decay if param.dim() > 1 else no_decay).append(param)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    encoder = vit_encoder(model)
    if encoder is None:
        raise ValueError(f"layer_decay needs a Prithvi or ViT encoder, {type(model).__name__} has none")
    depth = len(cast(Any, encoder).blocks)
    layer_of = {id(param): encoder_layer_id(name, depth) for name, param in encoder.named_parameters()}
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for param in model.parameters():
        if not param.requires_grad:
            continue
        layer, decays = layer_of.get(id(param), depth + 1), param.dim() > 1
        scale = float(layer_decay) ** (depth + 1 - layer)
        group = groups.setdefault((layer, decays), {
            "params": [], "weight_decay": weight_decay if decays else 0.0, "lr": lr * scale, "lr_scale": scale,
            "layer": layer,
        })
        group["params"].append(param)
    return [groups[key] for key in sorted(groups)]


# ----------------------------------------------------------------------------------------- module


class SegmentationTask(pl.LightningModule):
    """Lightning wrapper: weighted CE (+ the auxiliary head's), AdamW (optionally layer-wise lr decay) + warm-up
    and cosine / poly decay per step, on-device augmentation, val macro mIoU."""

    class_weights: torch.Tensor

    def __init__(
        self,
        model: torch.nn.Module,
        weights: torch.Tensor,
        lr: float,
        weight_decay: float,
        warmup_steps: int,
        total_steps: int,
        min_lr_ratio: float = 0.01,
        hflip: bool = True,
        vflip: bool = True,
        rot90: bool = True,
        num_classes: int | None = None,
        schedule: str = "cosine",
        poly_power: float = 1.0,
        warmup_start_ratio: float | None = None,
        layer_decay: float | None = None,
        aux_loss_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("class_weights", weights.float())
        self.lr, self.weight_decay, self.layer_decay = lr, weight_decay, layer_decay
        self.warmup_steps, self.total_steps, self.min_lr_ratio = warmup_steps, total_steps, min_lr_ratio
        self.schedule, self.poly_power, self.warmup_start_ratio = schedule, poly_power, warmup_start_ratio
        self.hflip, self.vflip, self.rot90 = hflip, vflip, rot90
        self.aux_loss_weight = aux_loss_weight
        classes = len(weights) if num_classes is None else num_classes
        self.val_miou = MulticlassJaccardIndex(classes, ignore_index=IGNORE_INDEX, average="macro")

    def forward(self, image: torch.Tensor, coords: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        return self.model(image, coords)

    def training_loss(
        self, image: torch.Tensor, mask: torch.Tensor, coords: Mapping[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The loss a training step minimises, and the auxiliary head's part of it (None without one):
        ``CE(logits) + aux_loss_weight * CE(aux logits)``, both class-weighted. ``coords``: the batch's frame
        dates and chip centres, for a model with time / location inputs (:mod:`lulc.coords`)."""
        if not self.aux_loss_weight:
            return weighted_cross_entropy(self.model(image, coords), mask, self.class_weights), None
        logits, aux_logits = cast(Any, self.model).forward_with_aux(image, coords)
        if aux_logits is None:
            raise RuntimeError("aux_loss_weight is set, but the model has no auxiliary head")
        aux_loss = weighted_cross_entropy(aux_logits, mask, self.class_weights)
        return weighted_cross_entropy(logits, mask, self.class_weights) + self.aux_loss_weight * aux_loss, aux_loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        image, mask = augment_batch(batch["image"], batch["mask"].long(), hflip=self.hflip, vflip=self.vflip,
                                    rot90=self.rot90)
        loss, aux_loss = self.training_loss(image, mask, batch_coords_of(batch))
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=image.shape[0],
                 sync_dist=True)
        if aux_loss is not None:
            self.log("train_aux_loss", aux_loss, on_step=False, on_epoch=True, batch_size=image.shape[0],
                     sync_dist=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        mask = batch["mask"].long()
        logits = self.model(batch["image"], batch_coords_of(batch))
        loss = weighted_cross_entropy(logits, mask, self.class_weights)
        self.val_miou.update(logits.argmax(1), mask)
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=mask.shape[0], sync_dist=True)
        self.log("val_miou", self.val_miou, on_step=False, on_epoch=True, prog_bar=True)

    def configure_optimizers(self) -> Any:  # Lightning's optimizer + scheduler config dict
        groups = parameter_groups(self.model, self.lr, self.weight_decay, self.layer_decay)
        fused = self.device.type in ("cuda", "cpu") or None  # one kernel for all parameters
        optimizer = torch.optim.AdamW(groups, lr=self.lr, betas=ADAMW_BETAS, fused=fused)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            functools.partial(
                lr_multiplier, warmup_steps=self.warmup_steps, total_steps=self.total_steps,
                min_ratio=self.min_lr_ratio, schedule=self.schedule, power=self.poly_power,
                warmup_start_ratio=self.warmup_start_ratio,
            ),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def optimizer_record(task: SegmentationTask, frozen_parameters: int = 0) -> dict[str, Any]:
    """run.json's record of the optimiser: AdamW's settings, layer-wise decay with the learning-rate scale of
    each encoder layer (embeddings, blocks, the rest), and the trainable / frozen parameter counts."""
    groups = parameter_groups(task.model, task.lr, task.weight_decay, task.layer_decay)
    trainable = sum(p.numel() for group in groups for p in group["params"])
    record: dict[str, Any] = {
        "name": "AdamW", "lr": task.lr, "betas": list(ADAMW_BETAS), "weight_decay": task.weight_decay,
        "no_weight_decay": "parameters with one dimension (biases, norm weights)",
        "layer_decay": task.layer_decay, "param_groups": len(groups),
        "trainable_parameters": trainable, "frozen_parameters": frozen_parameters,
    }
    encoder = vit_encoder(task.model)
    if task.layer_decay is not None and encoder is not None:
        depth = len(cast(Any, encoder).blocks)
        names = {0: "embeddings", depth + 1: "after_blocks"} | {i + 1: f"block_{i}" for i in range(depth)}
        record["lr_scales"] = {names[layer]: float(task.layer_decay) ** (depth + 1 - layer) for layer in sorted(names)}
    return record


# -------------------------------------------------------------------------------------- callbacks


def _metric(trainer: pl.Trainer, name: str) -> float:
    value = trainer.callback_metrics.get(name)
    return float(value) if value is not None else float("nan")


class TrainingCurve(Callback):
    """Per-epoch curve rows and training throughput; checkpointed, so a resumed run continues the curve.

    Every epoch gets a row; an epoch without validation (``train.val_every_epochs``) has NaN validation columns.
    ``lr`` is the peak learning rate of the epoch's last step (that of the decoder under layer-wise decay).
    """

    def __init__(self, live_csv: Path | None = None) -> None:
        self.rows: list[dict[str, float]] = []
        self.train_seconds = 0.0
        self.train_samples = 0
        self.elapsed_before = 0.0  # wall seconds of earlier (interrupted) attempts
        self.live_csv = live_csv
        self._start = time.perf_counter()
        self._epoch_start = 0.0
        self._timed = False  # this epoch's training time is counted
        self._validated = False  # this epoch was validated

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()
        self._timed = self._validated = False

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.train_samples += int(batch["image"].shape[0]) * trainer.world_size  # all processes' samples

    def _count_train_time(self) -> None:
        if not self._timed:
            self.train_seconds += time.perf_counter() - self._epoch_start
            self._timed = True

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._count_train_time()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._count_train_time()
        validated = self._validated
        self.rows.append(
            {
                "epoch": trainer.current_epoch,
                "step": trainer.global_step,
                "train_loss": _metric(trainer, "train_loss"),
                "val_loss": _metric(trainer, "val_loss") if validated else float("nan"),
                "val_miou": _metric(trainer, "val_miou") if validated else float("nan"),
                "lr": max(group["lr"] for group in trainer.optimizers[0].param_groups),
                "time_s": round(self.elapsed(), 3),
            }
        )
        row = self.rows[-1]
        if not trainer.is_global_zero:
            return
        logger.info(
            "epoch %d: train loss %.4f, val loss %.4f, val mIoU %.4f, lr %.3g, %.1f s",
            row["epoch"], row["train_loss"], row["val_loss"], row["val_miou"], row["lr"], row["time_s"],
        )
        if self.live_csv is not None:
            write_curve(self.rows, self.live_csv)

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self._start

    def state_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "train_seconds": self.train_seconds,
            "train_samples": self.train_samples,
            "elapsed": self.elapsed(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict["rows"])
        self.train_seconds = float(state_dict["train_seconds"])
        self.train_samples = int(state_dict["train_samples"])
        self.elapsed_before = float(state_dict["elapsed"])
        self._start = time.perf_counter()


class RNGState(Callback):
    """Checkpoints the torch (CPU, CUDA) and DataLoader-generator RNG states, so a resume is exact."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"torch": torch.get_rng_state(), "loader": self.generator.get_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        self.generator.set_state(state_dict["loader"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class EpochSampler(torch.utils.data.Sampler[int]):
    """A seeded ``RandomSampler`` of ``num_samples`` per epoch, hidden from Lightning's RandomSampler check.

    Under DDP Lightning replaces a ``RandomSampler`` with a plain ``DistributedSampler`` over the whole dataset
    (losing ``samples_per_epoch`` and the generator); any other sampler it splits across the processes.
    """

    def __init__(self, sampler: RandomSampler) -> None:
        self.sampler = sampler

    def __iter__(self) -> Iterator[int]:
        return iter(self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class Threads(Callback):
    """Sets torch's intra-op threads in every training process (spawned DDP processes start with the default)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        # A spawned process imports TerraTorch again when it unpickles a Prithvi model, which lowers the flag.
        enforce_fp32_matmul_precision()


class ValidateFinalEpoch(Callback):
    """With ``train.val_every_epochs`` > 1, validate the last epoch too, whatever its number (Lightning validates
    only epochs whose number + 1 divides by ``check_val_every_n_epoch``)."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.max_epochs is not None and trainer.current_epoch == trainer.max_epochs - 1:
            trainer.check_val_every_n_epoch = 1


# ---------------------------------------------------------------------------------------- outputs


def write_curve(rows: Sequence[Mapping[str, float]], path: Path) -> None:
    """Write the training curve CSV atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CURVE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def run_directory(root: str | os.PathLike[str], model: str, fraction: float | str, seed: int | str) -> Path:
    """``<root>/{model}/f{fraction}_s{seed}``, with the fraction written as in splits.csv (``0.125``, ``1``)."""
    return Path(root) / model / f"f{fraction_label(fraction)}_s{int(seed)}"


def _file_identity(path: Path) -> list[Any]:
    stat = path.stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


def _fingerprint(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


# ---------------------------------------------------------------------------------------- training


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo on Linux), for run.json's hardware record."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


#: Lightning's names for the precisions of :func:`lulc.models.precision.choose_precision`.
LIGHTNING_PRECISION = {"bf16": "bf16-mixed", "fp16": "16-mixed", "fp32": "32-true"}


def training_precision_choice(setting: str, accelerator: str, family: str | None = None) -> PrecisionChoice:
    """``auto``: :func:`lulc.models.precision.choose_precision` for training ``family`` on the accelerator, in
    Lightning's names; else ``setting``, as set."""
    device_type = "cuda" if accelerator == "gpu" else "cpu"
    if setting != "auto":
        return PrecisionChoice(setting, "set in the config (train.precision)", hardware_class(device_type))
    choice = choose_precision("train", family, device_type)
    return PrecisionChoice(LIGHTNING_PRECISION[choice.precision], choice.reason, choice.hardware)


def training_precision(setting: str, accelerator: str, family: str | None = None) -> str:
    """The Lightning precision of :func:`training_precision_choice`."""
    return training_precision_choice(setting, accelerator, family).precision


@dataclass
class RunSettings:
    """A run's resolved settings: the model entry and ``train:`` with tuned values in, and where each came from."""

    model_cfg: dict[str, Any]
    cfg: dict[str, Any]
    hparams: dict[str, Any]
    hparam_sources: dict[str, str]
    tuned_record: dict[str, Any] | None


def run_settings(
    model_name: str,
    model_cfg: Mapping[str, Any] | None,
    train_cfg: Mapping[str, Any] | None,
    tuned: str | os.PathLike[str] | None,
) -> RunSettings:
    """Defaults filled from the schema, then the tune stage's values (:func:`lulc.tuned.apply_tuned`)."""
    entry = model_entry(model_name, model_cfg)
    cfg = section("train", train_cfg)
    tuned_record = load_tuned(tuned) if tuned is not None else None
    entry, cfg, sources = apply_tuned(model_name, entry, cfg, tuned_record)
    hparams = {key: entry[key] for key in HPARAM_KEYS}
    return RunSettings(entry, cfg, hparams, sources, tuned_record)


def run_identity(
    model_name: str,
    settings: RunSettings,
    fraction: float,
    seed: int,
    splits: str | os.PathLike[str],
    store_paths: Mapping[str, Path],
    pretrain_checkpoint: str | os.PathLike[str] | None,
    dataset_stats: str | os.PathLike[str] | None,
) -> dict[str, Any]:
    """What a run's resume state must match: the settings (without runtime keys), the data and the weights."""
    return {
        "model": model_name,
        "model_cfg": settings.model_cfg,
        "train_cfg": {k: v for k, v in settings.cfg.items() if k not in RUNTIME_KEYS},
        "fraction": fraction,
        "seed": seed,
        "splits": hashlib.sha256(Path(splits).read_bytes()).hexdigest(),
        "store_paths": {aoi: _file_identity(ChipStore(p).images) + _file_identity(ChipStore(p).labels)
                        for aoi, p in store_paths.items()},
        "pretrain": _file_identity(Path(pretrain_checkpoint)) if pretrain_checkpoint else None,
        **({"dataset_stats": _file_identity(Path(dataset_stats))} if dataset_stats else {}),
    }


def prepare_resume(work: Path, identity: Mapping[str, Any]) -> bool:
    """Whether the run resumes from ``work/last.ckpt``: only a verified state of exactly this configuration, data
    and weights (``identity``). Anything else in ``work`` is discarded; ``work`` then holds the fingerprint."""
    fingerprint = _fingerprint(identity)
    fingerprint_file = work / "fingerprint.txt"
    last = work / "last.ckpt"
    resume = last.is_file() and fingerprint_file.is_file() and fingerprint_file.read_text().strip() == fingerprint
    if resume and (problem := verified_checkpoint(last)) is not None:
        logger.warning("discarding damaged resume state in %s and training from the start: %s", work, problem)
        resume = False
    if work.exists() and not resume:
        logger.info("discarding stale or incomplete resume state in %s", work)
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    fingerprint_file.write_text(fingerprint + "\n")
    return resume


@dataclass
class RunData:
    """A run's datasets, loss weights, loaders and step counts."""

    train_set: ChipStoreDataset
    val_set: ChipStoreDataset
    legend: Legend
    store_paths: Mapping[str, Path]
    counts: np.ndarray
    weights: np.ndarray
    generator: torch.Generator
    train_loader: DataLoader
    val_loader: DataLoader
    batch_size: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int


def run_data(
    store_paths: Mapping[str, Path],
    train_chips: Any,
    val_chips: Any,
    settings: RunSettings,
    seed: int,
    accelerator: str,
    legend: Legend,
    time_location: bool = False,
) -> RunData:
    """Datasets in the chips' legend (with each chip's frame dates and centre for a model with time / location
    inputs), class weights from the training pixels, the seeded per-epoch sampler and the step counts."""
    cfg, hparams = settings.cfg, settings.hparams
    train_set = ChipStoreDataset(dict(store_paths), train_chips, coords=time_location)
    val_set = ChipStoreDataset(dict(store_paths), val_chips, coords=time_location)
    counts = class_pixel_counts(train_set, legend.num_classes)
    weights = class_weights(counts, cfg["class_weights"]["method"], float(cfg["class_weights"]["cap"]),
                            cfg["class_weights"]["scale"])
    generator = torch.Generator().manual_seed(seed)
    samples_per_epoch = cfg["samples_per_epoch"] or len(train_set)
    batch_size = int(hparams["batch_size"])
    devices = int(cfg["devices"])
    loader_kwargs: dict[str, Any] = {
        "num_workers": cfg["num_workers"],
        "pin_memory": accelerator == "gpu",
        "persistent_workers": cfg["num_workers"] > 0,
    }
    train_loader = DataLoader(
        train_set,
        batch_size=batch_size,
        sampler=EpochSampler(RandomSampler(train_set, num_samples=samples_per_epoch, generator=generator)),
        generator=generator,
        **loader_kwargs,
    )
    val_loader = DataLoader(val_set, batch_size=2 * batch_size, shuffle=False, **loader_kwargs)
    # Under DDP, Lightning wraps the sampler in a DistributedSampler: each process draws ceil(n / devices).
    steps_per_epoch = math.ceil(math.ceil(samples_per_epoch / devices) / batch_size)
    total_steps = steps_per_epoch * int(hparams["epochs"])
    warmup = cfg["warmup_iters"] if cfg["warmup_iters"] is not None else steps_per_epoch * cfg["warmup_epochs"]
    warmup_steps = min(int(warmup), max(0, total_steps - 1))
    return RunData(train_set, val_set, legend, store_paths, counts, weights, generator, train_loader, val_loader,
                   batch_size, steps_per_epoch, total_steps, warmup_steps)


def segmentation_task(built: BuiltModel, settings: RunSettings, data: RunData) -> SegmentationTask:
    """The Lightning module of a run: its loss weights, optimiser, schedule, augmentation and auxiliary head."""
    cfg, hparams, model_cfg = settings.cfg, settings.hparams, settings.model_cfg
    layer_decay = model_cfg.get("layer_decay")
    return SegmentationTask(
        built.model,
        torch.as_tensor(data.weights, dtype=torch.float32),
        lr=float(hparams["lr"]),
        weight_decay=float(hparams["weight_decay"]),
        warmup_steps=data.warmup_steps,
        total_steps=data.total_steps,
        min_lr_ratio=float(cfg["min_lr_ratio"]),
        hflip=bool(cfg["augment"]["hflip"]),
        vflip=bool(cfg["augment"]["vflip"]),
        rot90=bool(cfg["augment"]["rot90"]),
        schedule=cfg["schedule"],
        poly_power=float(cfg["poly_power"]),
        warmup_start_ratio=cfg["warmup_start_ratio"],
        layer_decay=None if layer_decay is None else float(layer_decay),
        aux_loss_weight=aux_loss_weight(model_cfg),
    )


def aux_loss_weight(model_cfg: Mapping[str, Any]) -> float:
    """The auxiliary head's loss weight, 0 where the model has none."""
    aux_head = model_cfg.get("aux_head", {})
    return float(aux_head["loss_weight"]) if aux_head.get("enabled") else 0.0


@dataclass
class RunCallbacks:
    """The callbacks whose state the run record reads after training."""

    curve: TrainingCurve
    best_checkpoint: ModelCheckpoint
    last_checkpoint: ModelCheckpoint
    early_stopping: EarlyStopping


def run_callbacks(work: Path, patience: int) -> RunCallbacks:
    """The curve, best (val mIoU, mode max) and last checkpoints, and early stopping on val mIoU."""
    return RunCallbacks(
        curve=TrainingCurve(live_csv=work / "curve.csv"),
        best_checkpoint=ModelCheckpoint(
            dirpath=work, filename="best", monitor="val_miou", mode="max", save_top_k=1, save_weights_only=True,
            save_on_train_epoch_end=True, enable_version_counter=False,
        ),
        last_checkpoint=ModelCheckpoint(  # the latest epoch, full state, overwritten every epoch
            dirpath=work, filename="last", monitor=None, save_top_k=1, save_on_train_epoch_end=True,
            enable_version_counter=False,
        ),
        early_stopping=EarlyStopping(monitor="val_miou", mode="max", patience=patience, check_finite=True),
    )


@contextlib.contextmanager
def quiet_lightning(val_every: int) -> Iterator[None]:
    """Lightning's warnings that say nothing about this workflow's runs, silenced while a run is set up and fits."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
        warnings.filterwarnings("ignore", message=".*`srun` command is available.*")
        warnings.filterwarnings("ignore", message=".*is not supported by the model summary.*")
        if val_every > 1:  # before the first validation, the best checkpoint has no val_miou to compare yet
            warnings.filterwarnings("ignore", message=".*could not find the monitored key.*")
        yield


def make_trainer(
    cfg: Mapping[str, Any],
    accelerator: str,
    precision: str,
    epochs: int,
    steps_per_epoch: int,
    callbacks: Sequence[Callback],
    work: Path,
) -> pl.Trainer:
    """The Lightning trainer of a run (call inside :func:`quiet_lightning`)."""
    devices = int(cfg["devices"])
    if devices > 1 and accelerator == "cpu":
        # Spawned processes get the model's tensors through shared memory; the default (file descriptor)
        # strategy fails in some containers ("unable to resize file"). Process-wide, but harmless.
        torch.multiprocessing.set_sharing_strategy("file_system")
    deterministic: bool | Literal["warn"] = bool(cfg["deterministic"]) if accelerator == "cpu" else "warn"
    return pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        # devices > 1: DDP with *spawned* processes ("ddp_spawn"). The default "ddp" launcher re-executes
        # sys.argv for ranks > 0, which is wrong from pytest or a Snakemake `script:` (the temporary script
        # would run the whole rule again); "ddp_fork" breaks once CUDA is initialised and is unsafe with
        # OpenMP thread pools. Spawn pickles the trainer and imports only the modules it needs (the main
        # script is imported as __mp_main__, so scripts/train.py keeps its work under a __main__ guard).
        # The fitted state comes back to this process through work/last.ckpt (see train).
        strategy="ddp_spawn" if devices > 1 else "auto",
        precision=cast(Any, precision),  # one of Lightning's names (training_precision)
        max_epochs=epochs,
        callbacks=list(callbacks),
        check_val_every_n_epoch=int(cfg["val_every_epochs"]),
        # Lightning launches its own processes, also inside a SLURM step. Without this plugin Lightning
        # detects SLURM (SLURM_NTASKS etc.), trusts srun to have started one process per device, and in a
        # step with one task trains with world size 1 on one device, silently, whatever `devices` says.
        plugins=[LightningEnvironment(), VerifiedCheckpointIO()],
        logger=False,
        deterministic=deterministic,
        benchmark=False,
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(50, steps_per_epoch)),
        enable_progress_bar=bool(cfg["progress_bar"]),
        default_root_dir=work,
    )


def train(
    model_name: str,
    model_cfg: Mapping[str, Any] | None,
    train_cfg: Mapping[str, Any] | None,
    stores: Mapping[str, str | os.PathLike[str]],
    splits: str | os.PathLike[str],
    fraction: float | str,
    seed: int | str,
    out_dir: str | os.PathLike[str],
    pretrain_checkpoint: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    callbacks: Sequence[Callback] = (),
    tuned: str | os.PathLike[str] | None = None,
    dataset_stats: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Train ``models.<model_name>`` on training subset (``fraction``, ``seed``); write the run's outputs.

    ``stores`` maps AOI -> chip store directory; ``splits`` is ``splits.csv``. ``pretrain_checkpoint`` is
    the ``pretrain`` rule's output, used where the model's weights are ``pretrain``. ``callbacks`` are
    extra Lightning callbacks (tests use one to simulate an interrupted run). ``tuned`` is the tune rule's
    ``best.yaml``: its values replace the entry's (:func:`lulc.tuned.apply_tuned`). ``dataset_stats`` is the
    stats rule's file, for ``normalization: dataset``. Returns run.json's content.
    """
    wall_start = time.perf_counter()
    settings = run_settings(model_name, model_cfg, train_cfg, tuned)
    cfg = settings.cfg
    seed, fraction = int(seed), float(fraction)
    out_dir = Path(out_dir)
    work = out_dir / "work"
    store_paths = {aoi: Path(path) for aoi, path in sorted(stores.items())}
    threads = threads or cfg["threads"]
    if threads:
        torch.set_num_threads(int(threads))

    train_chips = load_split(splits, "train", fraction, seed)
    val_chips = load_split(splits, "val")
    if train_chips.empty or val_chips.empty:
        raise ValueError(f"{splits}: the training subset (fraction {fraction:g}, seed {seed}) or validation is empty")
    frames, chip_size = chip_geometry(store_paths)
    legend = chip_legend(store_paths)

    resume = prepare_resume(work, run_identity(model_name, settings, fraction, seed, splits, store_paths,
                                               pretrain_checkpoint, dataset_stats))

    pl.seed_everything(seed, workers=True, verbose=False)
    accelerator = cfg["accelerator"]
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    precision_choice = training_precision_choice(cfg["precision"], accelerator, settings.model_cfg["type"])
    precision = precision_choice.precision
    built: BuiltModel = build_model(model_name, settings.model_cfg, frames, chip_size, legend.num_classes,
                                    pretrain_checkpoint=pretrain_checkpoint, dataset_stats=dataset_stats)
    if precision == "bf16-mixed":
        channels_last_convolutions(built.model)
    frozen_parameters = freeze_encoder(built.model) if settings.model_cfg.get("freeze_encoder") else 0
    data = run_data(store_paths, train_chips, val_chips, settings, seed, accelerator, legend,
                    built.model.time_location)
    task = segmentation_task(built, settings, data)
    val_every = int(cfg["val_every_epochs"])
    run_cbs = run_callbacks(work, cfg["patience"])
    last = work / "last.ckpt"
    with quiet_lightning(val_every):
        trainer = make_trainer(
            cfg, accelerator, precision, int(settings.hparams["epochs"]), data.steps_per_epoch,
            [run_cbs.curve, RNGState(data.generator), Threads(int(threads or 0)),
             *([ValidateFinalEpoch()] if val_every > 1 else []), run_cbs.early_stopping, run_cbs.best_checkpoint,
             run_cbs.last_checkpoint, *callbacks],
            work,
        )
        resumed_from, elapsed_before = None, 0.0
        if resume:
            resume_state = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
            resumed_from = int(resume_state["epoch"])
            elapsed_before = float(
                resume_state.get("callbacks", {}).get(run_cbs.curve.state_key, {}).get("elapsed", 0.0)
            )
            logger.info("resuming %s after epoch %d from %s", out_dir, resumed_from, last)
        logger.info(
            "training %s (%s, %.2f M parameters) on %d chips (fraction %g, seed %d), validating on %d; "
            "%d epochs x %d steps, batch %d, %s, %s",
            model_name, settings.model_cfg["type"], built.info["parameters"] / 1e6, len(data.train_set), fraction,
            seed, len(data.val_set), settings.hparams["epochs"], data.steps_per_epoch, data.batch_size, accelerator,
            precision,
        )
        try:
            trainer.fit(task, data.train_loader, data.val_loader, ckpt_path=str(last) if resume else None,
                        weights_only=True)
        except SIGTERMException:
            # Lightning turns SIGTERM (scancel, preemption, a killed job) into SystemExit with no code, which would
            # exit 0 with no outputs: fail as a terminated process does. work/last.ckpt stays for the retry.
            logger.error("%s: terminated (SIGTERM); the next attempt resumes from %s", out_dir, last)
            raise SystemExit(143) from None

    if not trainer.is_global_zero:  # processes started by an external launcher (torchrun): rank 0 writes
        return {}
    global_step = final_callback_state(trainer, run_cbs, last, int(cfg["devices"]))
    if not run_cbs.best_checkpoint.best_model_path or run_cbs.best_checkpoint.best_model_score is None:
        raise RuntimeError(f"{out_dir}: no best checkpoint was saved (val mIoU never finite?)")
    best_path = run_cbs.best_checkpoint.best_model_path
    task.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True)["state_dict"])
    run = run_record(
        model_name, settings, fraction, seed, built, data, task, run_cbs,
        frames=frames, chip_size=chip_size, tuned=tuned, frozen_parameters=frozen_parameters,
        global_step=global_step, resumed_from=resumed_from,
        wall=elapsed_before + time.perf_counter() - wall_start, accelerator=accelerator, precision=precision,
        precision_choice=precision_choice.record(cfg["precision"]), world_size=int(trainer.world_size),
    )
    write_run_outputs(out_dir, built, settings.model_cfg, run, run_cbs.curve.rows)
    shutil.rmtree(work, ignore_errors=True)
    logger.info(
        "%s: best val mIoU %.4f at epoch %d of %d; %.1f s, %.1f samples/s",
        out_dir, run["best_val_miou"], run["best_epoch"], run["epochs_run"], run["wall_time_s"],
        run["samples_per_s"] or 0.0,
    )
    return run


def final_callback_state(trainer: pl.Trainer, run_cbs: RunCallbacks, last: Path, devices: int) -> int:
    """The optimiser steps taken; with spawned DDP processes, the callbacks' final state is loaded first.

    Spawned processes trained; this process only gets the best checkpoint's path back. The callbacks' final
    state (curve, best score, early stopping) and the step count are in the last epoch's checkpoint.
    """
    if devices <= 1:
        return int(trainer.global_step)
    final_state = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
    for callback in (run_cbs.curve, run_cbs.early_stopping, run_cbs.best_checkpoint):
        callback.load_state_dict(final_state["callbacks"][callback.state_key])
    return int(final_state["global_step"])


def run_record(
    model_name: str,
    settings: RunSettings,
    fraction: float,
    seed: int,
    built: BuiltModel,
    data: RunData,
    task: SegmentationTask,
    run_cbs: RunCallbacks,
    *,
    frames: int,
    chip_size: int,
    tuned: str | os.PathLike[str] | None,
    frozen_parameters: int,
    global_step: int,
    resumed_from: int | None,
    wall: float,
    accelerator: str,
    precision: str,
    precision_choice: dict[str, str],
    world_size: int,
) -> dict[str, Any]:
    """run.json's content: what was trained on what, with which weights, recipe and hardware, and how it went."""
    model_cfg, cfg, hparams, tuned_record = settings.model_cfg, settings.cfg, settings.hparams, settings.tuned_record
    curve, best_checkpoint = run_cbs.curve, run_cbs.best_checkpoint
    rows = curve.rows
    validated = [r for r in rows if math.isfinite(r["val_miou"])]  # val_every_epochs > 1: NaN between
    best_row = max(validated or rows, key=lambda r: (r["val_miou"], -r["epoch"]))
    warmup_steps, total_steps = data.warmup_steps, data.total_steps
    return {
        "model": model_name,
        "model_type": model_cfg["type"],
        "fraction": fraction,
        "seed": seed,
        "train_chips": len(data.train_set),
        "val_chips": len(data.val_set),
        "frames": frames,
        "chip_size": chip_size,
        "weights": built.info["weights"],
        "normalization": built.info["normalization"],
        "model_info": built.info,
        "hyperparameters": hparams,
        "hyperparameter_sources": settings.hparam_sources,
        "tuned": None if tuned_record is None else {
            "file": str(tuned), "sha256": sha256_file(Path(cast(str, tuned))), "trial": tuned_record["trial"],
            "val_miou": tuned_record["val_miou"], "params": tuned_record["params"],
        },
        "train_config": cfg,
        "model_config": model_cfg,
        "legend": data.legend.to_dict(),
        "labels": {"legend": data.legend.name, "periods": chip_periods(data.store_paths)},
        "class_pixels": dict(zip(data.legend.names, data.counts.tolist(), strict=True)),
        "class_weights": dict(zip(data.legend.names, [round(float(w), 6) for w in data.weights], strict=True)),
        "optimizer": optimizer_record(task, frozen_parameters),
        "schedule": {
            "name": task.schedule, "steps_per_epoch": data.steps_per_epoch, "total_steps": total_steps,
            "warmup_steps": warmup_steps,  # below: the multiplier at step 0 (None without a warm-up)
            "warmup_start_ratio": lr_multiplier(0, warmup_steps, total_steps, task.min_lr_ratio, task.schedule,
                                                task.poly_power, task.warmup_start_ratio) if warmup_steps else None,
            "min_lr_ratio": task.min_lr_ratio, "poly_power": task.poly_power if task.schedule == "poly" else None,
        },
        "aux_head": dict(model_cfg.get("aux_head", {})) if aux_loss_weight(model_cfg) else None,
        "val_every_epochs": int(cfg["val_every_epochs"]),
        "validated_epochs": [int(r["epoch"]) for r in validated],
        "epochs_run": len(rows),
        "epochs_max": int(hparams["epochs"]),
        "stopped_early": bool(run_cbs.early_stopping.stopped_epoch),
        "best_epoch": int(best_row["epoch"]),
        "best_val_miou": float(cast(torch.Tensor, best_checkpoint.best_model_score)),
        "best_val_loss": best_row["val_loss"],
        "steps": global_step,
        "resumed_from_epoch": resumed_from,
        "wall_time_s": round(wall, 3),
        "train_time_s": round(curve.train_seconds, 3),
        "train_samples": curve.train_samples,
        "samples_per_s": round(curve.train_samples / curve.train_seconds, 3) if curve.train_seconds else None,
        "device": torch.cuda.get_device_name(0) if accelerator == "gpu" else cpu_name(),
        "accelerator": accelerator,
        "precision": precision,
        "precision_choice": precision_choice,
        "matmul_precision": torch.get_float32_matmul_precision(),
        "devices": int(cfg["devices"]),
        "world_size": world_size,
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "lightning": lightning.__version__},
    }


def write_run_outputs(
    out_dir: Path, built: BuiltModel, model_cfg: Mapping[str, Any], run: Mapping[str, Any],
    rows: Sequence[Mapping[str, float]],
) -> None:
    """best.ckpt, curve.csv and run.json, each through a temporary name, renamed only once all three are written."""
    with contextlib.ExitStack() as stack:
        best_tmp, curve_tmp, run_tmp = (
            stack.enter_context(atomic_path(out_dir / name)) for name in ("best.ckpt", "curve.csv", "run.json")
        )
        save_trained_model(
            built, model_cfg, best_tmp,
            {"epoch": run["best_epoch"], "val_miou": run["best_val_miou"], "fraction": run["fraction"],
             "seed": run["seed"], "legend": run["legend"]},
        )
        write_curve(rows, curve_tmp)
        run_tmp.write_text(json.dumps(run, indent=2, sort_keys=True, default=str) + "\n")


__all__ = ["SegmentationTask", "parameter_groups", "run_directory", "train"]
