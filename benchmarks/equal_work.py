"""Equal work: the checks that our side and TerraTorch's compute the same thing, printed beside the speed figures.

* **Maps** (``predict_speed.py``, ``gpu_check.py``): TerraTorch's ``tiled_inference`` by default puts its tiles
  8 px before the scene edge (``delta`` 8, reflect padding) and drops each tile's outer 8 px, while
  :func:`lulc.predict.predict_scene` mirrors a margin of half the overlap (16 px at tile 224, stride 192) and
  keeps the whole tile. The two tilings are 8 px apart everywhere, and what a ViT predicts for a pixel depends
  on where in the tile (which patch, which position embedding) it falls, so on random weights the two maps
  agreed on only 27-31 % of pixels. :func:`terratorch_same_tiling` configures TerraTorch to compute our map:
  the scene mirrored by our margin (as :class:`lulc.tiling.TileGrid` pads it), ``padding=False``, ``delta=0``,
  the same crop and stride, so its tiles start where ours do; both blend overlaps with a raised-cosine ramp.
* **Training** (``train_speed.py``): the loss of both tasks on the same first batch, from the same weights,
  within :func:`loss_tolerance` (the rounding of fp32 summation).
* **A trained checkpoint** (:func:`train_small_model`): a model trained for seconds on the synthetic scene's
  classes, so the agreement is measured where a map means something (a random model's logits are nearly tied
  everywhere, and any rounding flips its argmax).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import rasterio
import torch
import torch.nn.functional as F

from lulc.legends import IGNORE_INDEX, preset
from lulc.tiling import TileGrid

NUM_CLASSES = preset("io-lulc-9").num_classes
FRAMES = 3
BANDS = ["BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2"]

#: Unit roundoff of fp32 (half the machine epsilon): one rounding moves a value by at most this fraction.
FP32_UNIT_ROUNDOFF = float(torch.finfo(torch.float32).eps) / 2


def loss_tolerance(terms: int, mean_abs_term: float) -> float:
    """How far two fp32 means of the same ``terms`` per-pixel losses may differ when they are summed in different
    orders: each sum of K terms is within ``(K - 1) u sum|l|`` of the exact one (the classical bound for
    recursive summation, u the fp32 unit roundoff), so two of them differ by at most twice that, divided by K."""
    return 2 * (terms - 1) * FP32_UNIT_ROUNDOFF * mean_abs_term


def padded_scene(scene: torch.Tensor, grid: TileGrid) -> torch.Tensor:
    """``(..., H, W)`` scene mirrored as :func:`lulc.predict.predict_scene` pads it: ``margin`` px on every side
    and further at the bottom / right up to the padded size (``np.pad`` mode ``symmetric``)."""
    m = grid.margin
    bottom = grid.padded_height - grid.height - m
    right = grid.padded_width - grid.width - m
    array = scene.numpy()
    pad = [(0, 0)] * (array.ndim - 2) + [(m, bottom), (m, right)]
    return torch.from_numpy(np.pad(array, pad, mode="symmetric"))


def terratorch_same_tiling(
    model: torch.nn.Module, scene: torch.Tensor, tile: int, stride: int, batch_size: int, device: str
) -> torch.Tensor:
    """TerraTorch's ``tiled_inference`` configured to compute our map: the scene ``(1, T, 6, H, W)`` mirrored by
    our margin, tiles from the padded origin every ``stride`` px (the last one at the edge, as ours), no padding
    or cropping of its own (``padding=False``, ``delta=0``), blended overlaps. Returns ``(1, C, H, W)`` logits."""
    from terratorch.tasks.tiled_inference import tiled_inference

    height, width = scene.shape[-2:]
    grid = TileGrid.of(height, width, tile, stride)
    padded = padded_scene(scene, grid)
    logits = tiled_inference(model, padded, crop=tile, stride=stride, delta=0, padding=False,
                             batch_size=batch_size, device=device, blend_overlaps=True)  # fmt: skip
    m = grid.margin
    return logits[..., m : m + height, m : m + width]


def interior_agreement(a: np.ndarray, b: np.ndarray, border: int) -> float:
    """Share of pixels with the same class in two maps, ``border`` px from every scene edge excluded (where the
    two tools mirror the scene differently)."""
    inner = (slice(border, -border or None), slice(border, -border or None))
    return round(float((a[inner] == b[inner]).mean()), 5)


def read_map(path: Any) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def random_crops(
    image: np.ndarray, classes: np.ndarray, size: int, count: int, generator: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` random ``size`` px crops of a ``(T, 6, H, W)`` int16 scene and its class raster."""
    height, width = classes.shape
    rows = generator.integers(0, height - size + 1, count)
    cols = generator.integers(0, width - size + 1, count)
    x = np.stack([image[..., r : r + size, c : c + size] for r, c in zip(rows, cols, strict=True)])
    y = np.stack([classes[r : r + size, c : c + size] for r, c in zip(rows, cols, strict=True)])
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))


def train_small_model(
    model: torch.nn.Module, image: np.ndarray, classes: np.ndarray, size: int, steps: int, batch: int = 4,
    lr: float = 1e-3, seed: int = 0,
) -> dict[str, Any]:
    """Train ``model`` (raw int16 in, logits out) for ``steps`` AdamW steps on random crops of the synthetic scene
    ``image`` ``(T, 6, H, W)`` with its class raster, in fp32; returns the first and last loss and the time."""
    generator = np.random.default_rng(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    start, losses = time.perf_counter(), []
    for _ in range(steps):
        x, y = random_crops(image, classes, size, batch, generator)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    model.eval()
    return {"steps": steps, "batch": batch, "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4),
            "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip


def same_loss(ours: float, theirs: float, terms: int, mean_abs_term: float) -> dict[str, Any]:
    """The two first-batch losses, their difference and :func:`loss_tolerance`; ``equal``: within it."""
    tolerance = loss_tolerance(terms, mean_abs_term)
    difference = abs(ours - theirs)
    return {"ours": ours, "terratorch": theirs, "abs_difference": difference, "tolerance": tolerance,
            "labelled_pixels": terms, "equal": bool(difference <= tolerance and math.isfinite(ours))}  # fmt: skip


def terratorch_task(kind: str, cfg: dict[str, Any], size: int) -> Any:
    """TerraTorch's ``SemanticSegmentationTask`` on the architecture of our entry ``cfg`` (random weights)."""
    from terratorch.tasks import SemanticSegmentationTask

    common = {"loss": "ce", "ignore_index": IGNORE_INDEX, "lr": 1e-4, "optimizer": "AdamW",
              "optimizer_hparams": {"weight_decay": 0.05}}  # fmt: skip
    if kind == "prithvi":
        args = {"backbone": cfg["backbone"], "backbone_pretrained": False, "backbone_num_frames": FRAMES,
                "backbone_img_size": size, "backbone_bands": BANDS, "decoder": "FCNDecoder",
                "decoder_channels": cfg["decoder_channels"], "num_classes": NUM_CLASSES,
                "necks": [{"name": "SelectIndices", "indices": [-1]},
                          {"name": "ReshapeTokensToImage", "effective_time_dim": FRAMES}]}  # fmt: skip
        return SemanticSegmentationTask(model_factory="EncoderDecoderFactory", model_args=args, **common)
    if kind == "unet":
        args = {"backbone": cfg["encoder"], "model": "Unet", "bands": list(range(FRAMES * 6)),
                "in_channels": FRAMES * 6, "num_classes": NUM_CLASSES, "pretrained": False}  # fmt: skip
        return SemanticSegmentationTask(model_factory="SMPModelFactory", model_args=args, **common)
    args = {"backbone": f"timm_{cfg['arch']}", "backbone_pretrained": False, "backbone_in_chans": FRAMES * 6,
            "backbone_img_size": size, "decoder": "FCNDecoder", "decoder_channels": cfg["decoder_channels"],
            "num_classes": NUM_CLASSES,
            "necks": [{"name": "SelectIndices", "indices": [-1]},
                      {"name": "ReshapeTokensToImage", "remove_cls_token": True}]}  # fmt: skip
    return SemanticSegmentationTask(model_factory="EncoderDecoderFactory", model_args=args, **common)
