"""The training recipe: loss and class weights, augmentation, learning-rate schedules and chip geometry.

What a run is trained with, independent of how the run is driven: the train stage (:mod:`lulc.train`), the
tune stage through it, and masked-autoencoder pretraining (:mod:`lulc.pretrain`) share these pieces, and none of
them imports another stage for them.

* Loss: class-weighted cross-entropy, :data:`~lulc.legends.IGNORE_INDEX` ignored (:func:`weighted_cross_entropy`).
  Weights come from the run's training pixel counts (:func:`class_weights`).
* Augmentation on the device, per sample: flips and 90-degree rotations of image and mask together
  (:func:`augment_batch`).
* Learning rate per step (:func:`lr_multiplier`): linear warm-up, then cosine or poly decay.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lulc.chips import ChipStore
from lulc.dataset import ChipStoreDataset
from lulc.legends import IGNORE_INDEX


def class_pixel_counts(dataset: ChipStoreDataset, num_classes: int) -> np.ndarray:
    """Labelled pixels per class over a dataset's chips (ignore index excluded)."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for aoi, index in zip(dataset.aois, dataset.indices, strict=True):
        _, labels = dataset.arrays(aoi)
        counts += np.bincount(np.asarray(labels[index]).ravel(), minlength=256)[:num_classes]
    return counts


def class_weights(
    counts: np.ndarray, method: str = "inverse_sqrt", cap: float = 10.0, scale: str = "mean_pixel"
) -> np.ndarray:
    """Per-class loss weights from pixel counts: ``f ** -p`` (p = 0.5 or 1), scaled, then capped at ``cap``.

    ``scale``: ``"mean_pixel"`` makes the mean per-pixel weight 1 (``sum_c f_c w_c = 1``); ``"sum"`` makes the
    present classes' weights shares that sum to 1. Classes absent from the counts get the largest present
    weight (they only matter for validation loss). ``method="none"``: all ones, whatever the scale.
    """
    if method == "none" or counts.sum() == 0:
        return np.ones(len(counts))
    frequency = counts / counts.sum()
    present = frequency > 0
    power = 0.5 if method == "inverse_sqrt" else 1.0
    weights = np.zeros(len(counts))
    weights[present] = frequency[present] ** -power
    if scale == "sum":
        weights /= float(weights[present].sum())
    elif scale == "mean_pixel":
        weights /= float((frequency * weights).sum())
    else:
        raise ValueError(f"class weight scale {scale!r} is not mean_pixel or sum")
    weights = np.minimum(weights, cap)
    weights[~present] = weights[present].max()
    return weights


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Class-weighted cross-entropy with the ignore index; 0 (not NaN) for a batch without labelled pixels."""
    total = F.cross_entropy(logits.float(), target, weight=weights, ignore_index=IGNORE_INDEX, reduction="sum")
    valid = target != IGNORE_INDEX
    norm = (weights[target.masked_fill(~valid, 0)] * valid).sum()
    return total / norm.clamp_min(1e-12)


def augment_batch(
    image: torch.Tensor, mask: torch.Tensor, hflip: bool = True, vflip: bool = True, rot90: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips and 90-degree rotations, drawn per sample, applied to image ``(B, ..., H, W)`` and mask.

    ``hflip``: left-right flips (the last axis) with probability 0.5; ``vflip``: top-bottom flips (the axis
    before it), 0.5; ``rot90``: 0, 90, 180 or 270 degrees, equally likely (square chips only).
    """
    batch = image.shape[0]
    expand_image = (batch,) + (1,) * (image.dim() - 1)
    expand_mask = (batch,) + (1,) * (mask.dim() - 1)
    for dim, enabled in ((-1, hflip), (-2, vflip)):
        if enabled:
            chosen = torch.rand(batch, device=image.device) < 0.5
            image = torch.where(chosen.view(expand_image), image.flip(dim), image)
            mask = torch.where(chosen.view(expand_mask), mask.flip(dim), mask)
    if rot90 and image.shape[-1] == image.shape[-2]:
        turns = torch.randint(0, 4, (batch,), device=image.device)
        rotated_image, rotated_mask = image, mask
        for k in (1, 2, 3):
            chosen = turns == k
            rotated_image = torch.where(chosen.view(expand_image), image.rot90(k, (-2, -1)), rotated_image)
            rotated_mask = torch.where(chosen.view(expand_mask), mask.rot90(k, (-2, -1)), rotated_mask)
        image, mask = rotated_image, rotated_mask
    return image, mask


SCHEDULES = ("cosine", "poly")


def lr_multiplier(
    step: int,
    warmup_steps: int,
    total_steps: int,
    min_ratio: float,
    schedule: str = "cosine",
    power: float = 1.0,
    warmup_start_ratio: float | None = None,
) -> float:
    """The learning-rate multiplier after ``step`` optimiser steps (``lr x multiplier``; LambdaLR's lambda).

    Warm-up, ``step < W`` (``W = warmup_steps``): linear from ``s`` at step 0 to 1 at step ``W``, i.e.
    ``s + (1 - s) * step / W``; ``s = warmup_start_ratio``, or where None ``(step + 1) / (W + 1)`` (starting
    at ``1 / (W + 1)``). Then, with ``p = min(1, (step - W) / max(1, total_steps - W))`` and ``m = min_ratio``:
    ``cosine``: ``m + (1 - m) * (1 + cos(pi * p)) / 2``; ``poly``: ``m + (1 - m) * (1 - p) ** power``. Both
    are 1 at step ``W`` and ``m`` from step ``total_steps`` on (the decay starts after the warm-up, as in
    Hugging Face's schedules; mmcv's poly instead decays from step 0 and scales the warm-up by it).
    """
    if step < warmup_steps:
        if warmup_start_ratio is None:
            return (step + 1) / (warmup_steps + 1)
        return warmup_start_ratio + (1.0 - warmup_start_ratio) * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "cosine":
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "poly":
        return min_ratio + (1.0 - min_ratio) * (1.0 - progress) ** power
    raise ValueError(f"learning-rate schedule {schedule!r} is not one of {', '.join(SCHEDULES)}")


def chip_geometry(stores: Mapping[str, Path]) -> tuple[int, int]:
    """Frames ``T`` and chip size of the chip stores (which must agree)."""
    shapes = {aoi: np.load(ChipStore(Path(path)).images, mmap_mode="r").shape for aoi, path in stores.items()}
    geometry = {(s[1], s[3]) for s in shapes.values()}
    if len(geometry) != 1 or any(s[2] != 6 or s[3] != s[4] for s in shapes.values()):
        raise ValueError(f"chip stores disagree or are not (N, T, 6, S, S): {shapes}")
    frames, size = geometry.pop()
    return int(frames), int(size)


__all__ = [
    "SCHEDULES",
    "augment_batch",
    "chip_geometry",
    "class_pixel_counts",
    "class_weights",
    "lr_multiplier",
    "weighted_cross_entropy",
]
