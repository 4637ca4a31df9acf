"""Evaluate stage: a trained model on the fixed test split -> confusion matrix and segmentation metrics.

Metrics come from one confusion matrix accumulated over every labelled test pixel (the ignore index is
excluded). Per class: IoU = TP / (TP + FP + FN), precision, recall and F1. **Macro mIoU** is the mean IoU over
the classes that occur in the test labels or the predictions (a class with neither has no defined IoU and is
left out, as in mmsegmentation); a class present but never predicted counts with IoU 0, so rare classes weigh
as much as common ones. Pixel accuracy is reported beside it, and so is the same evaluation for a
majority-class baseline (every pixel predicted as the most frequent training class), the floor any model must
clear.

**Two modes** (``evaluate.mode``), recorded in ``metrics.json`` (``evaluation``: mode, crop, stride, evaluated
pixels):

* ``chips`` (the default): every test chip on its own, as the model saw chips in training.
* ``sliding_window``: the test split is made of spatial blocks (:mod:`lulc.splits`); each test block is
  predicted as a whole, as the reference recipe evaluates its test areas (mmsegmentation's ``slide`` mode):
  ``crop x crop`` windows start every ``stride`` pixels along both axes, the last window of a row or column
  aligned to the region's edge (:func:`lulc.tiling.tile_origins`), and the logits of overlapping windows are
  summed and divided by the number of windows that cover each pixel (:func:`slide_logits`).

**Evaluated pixels** (both modes): the labelled pixels of the test chips, i.e. pixels inside the footprint
of a chip of the ``test`` split of ``splits.csv`` whose label in the chip store is not the ignore index
(IO LULC nodata, or no clear frame). Chips that the buffer or balancing excluded, and pixels of a test block
outside every test chip (a partial chip at the grid edge, a chip below ``chips.min_valid_fraction``), are not
evaluated: they are not labelled test pixels of the split. The labels are those of the chip store, so both
modes score the same pixels with the same labels whatever the crop and stride; ``sliding_window`` counts a
pixel that overlapping test chips share (``chips.stride < chips.size``) once, ``chips`` once per chip.

**The region of a test block** (``sliding_window``) is the bounding box of its test chips' windows on the
AOI's downloaded image (``results/download/{aoi}/image.tif``, the grid the chips were cut from; the manifest
gives each chip's window), widened to one crop where it is smaller (within the image; an image smaller than a
crop is padded with nodata at the bottom and right, as mmsegmentation pads). Its imagery outside the test chips
is context only, never scored. Blocks are predicted one at a time (memory: one region's pixels and logits). The
image is checked against the chip store first: every test chip's pixels must be the image's pixels at its
window, so a chip store cut from another image stops the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassConfusionMatrix
from tqdm import tqdm

from lulc import hls
from lulc.chips import ChipStore, chip_legend, pixel_columns
from lulc.coords import batch_coords, frame_dates_from_tags, temporal_coords, window_latlon
from lulc.dataset import ChipStoreDataset
from lulc.io import atomic_path, write_json
from lulc.legends import IGNORE_INDEX
from lulc.metrics import confusion_frame, majority_confusion, metrics_from_confusion
from lulc.models import batch_coords_of
from lulc.schema import section
from lulc.split_table import SPLITS_CSV, load_split
from lulc.tiling import require_crs, tile_origins

log = logging.getLogger(__name__)


@torch.no_grad()
def confusion_matrix(
    model: torch.nn.Module,
    dataset: ChipStoreDataset,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    num_classes: int | None = None,
) -> np.ndarray:
    """Accumulate the confusion matrix of ``model`` over ``dataset`` (raw int16 chips in, logits out), over
    ``num_classes`` classes (default: as many as the model predicts)."""
    metric: MulticlassConfusionMatrix | None = None
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    model = model.to(device).eval()
    for batch in tqdm(loader, desc="evaluating", unit="batch", leave=False):
        coords = batch_coords_of(batch)
        logits = model(batch["image"].to(device), coords) if coords is not None else model(batch["image"].to(device))
        if metric is None:
            classes = int(num_classes or logits.shape[1])
            metric = MulticlassConfusionMatrix(classes, ignore_index=IGNORE_INDEX).to(device)
        metric.update(logits.argmax(dim=1), batch["mask"].to(device).long())
    if metric is None:
        raise ValueError("no chips to evaluate")
    return metric.compute().cpu().numpy().astype(np.int64)


@dataclass(frozen=True)
class RunToEvaluate:
    """One trained run: its checkpoint, its run.json content, and where its three outputs go."""

    checkpoint: Path
    out_json: Path
    out_confusion: Path
    out_classes: Path
    run_info: Mapping[str, Any] | None = None


# --------------------------------------------------------------------------------------- sliding window


@dataclass(frozen=True)
class ChipWindow:
    """A test chip: its row in the AOI's chip store and its window on the AOI's image grid."""

    chip_id: str
    index: int
    row: int
    col: int
    height: int
    width: int

    def overlap(self, row0: int, col0: int, height: int, width: int) -> tuple[slice, slice] | None:
        """This chip's part of the region ``(row0, col0, height, width)`` in region coordinates, or None."""
        top, bottom = max(self.row, row0), min(self.row + self.height, row0 + height)
        left, right = max(self.col, col0), min(self.col + self.width, col0 + width)
        if top >= bottom or left >= right:
            return None
        return slice(top - row0, bottom - row0), slice(left - col0, right - col0)


@dataclass(frozen=True)
class EvaluationBlock:
    """The test chips of one spatial block of one AOI (sorted by window), and the ones of the AOI's earlier
    blocks (their pixels were scored there: a pixel is evaluated once)."""

    aoi: str
    block_id: str
    chips: tuple[ChipWindow, ...]
    earlier: tuple[ChipWindow, ...] = ()

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        """``(row0, col0, row1, col1)``: the bounding box of the chips' windows (end exclusive)."""
        return (
            min(c.row for c in self.chips),
            min(c.col for c in self.chips),
            max(c.row + c.height for c in self.chips),
            max(c.col + c.width for c in self.chips),
        )


def evaluation_blocks(splits_table: str | Path, stores: Mapping[str, Path]) -> list[EvaluationBlock]:
    """The test split's blocks (``block_id`` of ``splits.csv``) with their chips' windows (chip manifests),
    sorted by AOI and block."""
    path = Path(splits_table)
    path = path / SPLITS_CSV if path.is_dir() else path
    table = pd.read_csv(path, dtype={"chip_id": str, "aoi": str, "index": np.int64, "block_id": str, "split": str},
                        keep_default_na=False)  # fmt: skip
    test = table.loc[table["split"] == "test", ["chip_id", "aoi", "index", "block_id"]]
    blocks: list[EvaluationBlock] = []
    for aoi, rows in test.groupby("aoi", sort=True):
        if aoi not in stores:
            raise KeyError(f"no chip store given for AOI {aoi} of {path}")
        manifest_path = ChipStore(Path(stores[str(aoi)])).manifest
        manifest = pd.read_parquet(manifest_path, columns=["chip_id", "index", "row_off", "col_off", "height", "width"])
        merged = rows.merge(manifest, on="index", how="left", suffixes=("", "_manifest"), validate="one_to_one")
        wrong = merged[merged["chip_id"] != merged["chip_id_manifest"]]
        if len(wrong):
            raise ValueError(
                f"{manifest_path} does not hold the test chips of {path} (e.g. {wrong['chip_id'].iloc[0]} at store "
                f"index {int(wrong['index'].iloc[0])}): the splits were made from other chips; rerun the splits rule"
            )
        earlier: list[ChipWindow] = []
        for block_id, chips in merged.groupby("block_id", sort=True):
            windows = tuple(
                ChipWindow(str(r.chip_id), int(r.index), int(r.row_off), int(r.col_off), int(r.height), int(r.width))
                for r in chips.sort_values(["row_off", "col_off"]).itertuples()
            )
            blocks.append(EvaluationBlock(str(aoi), str(block_id), windows, tuple(earlier)))
            earlier.extend(windows)
    return blocks


def _widen(start: int, stop: int, crop: int, total: int) -> tuple[int, int]:
    """``[start, stop)`` widened to ``crop`` pixels (centred, within ``[0, total)``) where it is shorter."""
    length = stop - start
    if length >= crop or total <= length:
        return start, stop
    new = min(crop, total)
    begin = min(max(start - (new - length) // 2, 0), total - new)
    return begin, begin + new


@torch.no_grad()
def slide_logits(
    model: torch.nn.Module,
    raw: torch.Tensor,
    crop: int,
    stride: int,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    window_coords: Callable[[list[tuple[int, int]]], dict[str, torch.Tensor]] | None = None,
) -> torch.Tensor:
    """Average logits ``(C, H, W)`` of ``crop x crop`` windows every ``stride`` pixels over ``raw`` ``(T, 6, H, W)``.

    mmsegmentation's ``slide`` inference: window origins every ``stride`` pixels, the last aligned to the edge
    (:func:`lulc.tiling.tile_origins`); each window's logits are added where it lies and the sum is divided by
    the number of windows over each pixel. An input smaller than a crop is padded with nodata at the bottom and
    right. ``model`` maps raw int16 ``(B, T, 6, crop, crop)`` to logits ``(B, C, crop, crop)``; the result is
    float32 on ``device``. ``window_coords``: the time / location inputs of a batch of windows from their origins
    in ``raw`` (a model with time / location inputs: each window gets its own centre).
    """
    _, bands, height, width = raw.shape
    padded_h, padded_w = max(height, crop), max(width, crop)
    if (padded_h, padded_w) != (height, width):
        canvas = torch.full((raw.shape[0], bands, padded_h, padded_w), hls.REFLECTANCE_NODATA, dtype=raw.dtype)
        canvas[..., :height, :width] = raw
        raw = canvas
    origins = [(r, c) for r in tile_origins(padded_h, crop, stride) for c in tile_origins(padded_w, crop, stride)]
    total: torch.Tensor | None = None
    count = torch.zeros((padded_h, padded_w), dtype=torch.float32, device=device)
    for first in range(0, len(origins), batch_size):
        batch = origins[first : first + batch_size]
        x = torch.stack([raw[..., r : r + crop, c : c + crop] for r, c in batch]).to(device)
        coords = window_coords(batch) if window_coords is not None else None
        try:
            logits = model(x, coords) if coords is not None else model(x)
        except Exception as error:
            if total is not None:  # the first batch went through: not a question of the crop
                raise
            raise ValueError(
                f"the model cannot predict windows of {crop} x {crop} px (config keys evaluate.crop / "
                f"evaluate.stride; a ViT needs its training chip size): {type(error).__name__}: {error}"
            ) from error
        if logits.dim() != 4 or logits.shape[0] != len(batch) or tuple(logits.shape[-2:]) != (crop, crop):
            raise ValueError(f"the model returned {tuple(logits.shape)} for input {tuple(x.shape)}")
        if total is None:
            total = torch.zeros((logits.shape[1], padded_h, padded_w), dtype=torch.float32, device=device)
        for (r, c), window_logits in zip(batch, logits.float(), strict=True):
            total[:, r : r + crop, c : c + crop] += window_logits
            count[r : r + crop, c : c + crop] += 1
    assert total is not None and bool((count > 0).all()), "a pixel no window covers"
    return (total / count)[:, :height, :width]


def _window_coords(
    model: torch.nn.Module, src: Any, image_path: Path, row0: int, col0: int, crop: int
) -> Callable[[list[tuple[int, int]]], dict[str, torch.Tensor]] | None:
    """For a model with time / location inputs: the coords of windows at origins relative to ``(row0, col0)`` of
    ``src`` (its frames' dates from the ``FRAME_<t>`` tags, each window's centre); None for any other model."""
    if not getattr(model, "time_location", False):
        return None
    temporal = temporal_coords(frame_dates_from_tags(src.tags(), str(image_path)), str(image_path))

    def coords(origins: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        rows = [row0 + r for r, _ in origins]
        cols = [col0 + c for _, c in origins]
        return batch_coords(temporal, window_latlon(src.transform, src.crs, rows, cols, crop, crop))

    return coords


def sliding_window_confusion(
    model: torch.nn.Module,
    blocks: Sequence[EvaluationBlock],
    stores: Mapping[str, Path],
    images: Mapping[str, Path],
    crop: int,
    stride: int,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    progress: bool = True,
    num_classes: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The confusion matrix of ``model`` over the evaluated pixels of ``blocks`` (module docstring), each block's
    region predicted by :func:`slide_logits`; and a record (blocks, windows, evaluated pixels).

    ``images`` maps AOI -> its downloaded ``image.tif``; ``stores`` AOI -> chip store directory (labels, and
    the chips the image is checked against). ``num_classes``: as many as the model predicts by default.
    """
    import rasterio
    from rasterio.windows import Window

    if not 1 <= stride <= crop:
        raise ValueError(f"config key evaluate.stride: need 1 <= stride <= crop ({crop}), got {stride}")
    n = num_classes
    confusion: np.ndarray | None = None
    windows = 0
    model = model.to(device).eval()
    by_aoi: dict[str, list[EvaluationBlock]] = {}
    for block in blocks:
        by_aoi.setdefault(block.aoi, []).append(block)
    bar = tqdm(total=len(blocks), desc="evaluating blocks", unit="block", leave=False, disable=not progress)
    for aoi, aoi_blocks in sorted(by_aoi.items()):
        if aoi not in images:
            raise KeyError(f"no downloaded image given for AOI {aoi} (evaluate.mode: sliding_window)")
        store = ChipStore(Path(stores[aoi]))
        chip_images = np.load(store.images, mmap_mode="r")
        chip_labels = np.load(store.labels, mmap_mode="r")
        frames = int(chip_images.shape[1])
        image_path = Path(images[aoi])
        with rasterio.open(image_path) as src:
            require_crs(image_path, src)
            hls.check_reflectance(image_path, src)
            if src.count != frames * len(hls.PRITHVI_BANDS):
                raise ValueError(
                    f"{image_path} has {src.count} bands, but the chips of {store.directory} have {frames} frames "
                    f"of {len(hls.PRITHVI_BANDS)} bands: rerun the chips rule"
                )
            for block in aoi_blocks:
                row0, col0, row1, col1 = block.bounds
                if row1 > src.height or col1 > src.width:
                    raise ValueError(
                        f"test chips of block {block.block_id} reach row {row1}, column {col1}, beyond {image_path} "
                        f"({src.height} x {src.width} px): the chips were cut from another image; rerun the chips rule"
                    )
                row0, row1 = _widen(row0, row1, crop, src.height)
                col0, col1 = _widen(col0, col1, crop, src.width)
                height, width = row1 - row0, col1 - col0
                raw = src.read(window=Window(col0, row0, width, height))
                raw = raw.reshape(frames, len(hls.PRITHVI_BANDS), height, width)
                labels = np.full((height, width), IGNORE_INDEX, dtype=np.uint8)
                scored = np.zeros((height, width), dtype=bool)
                for chip in block.chips:
                    part = chip.overlap(row0, col0, height, width)
                    assert part is not None, "a block's region holds each of its chips"
                    rows, cols = part
                    if not np.array_equal(raw[..., rows, cols], chip_images[chip.index]):
                        raise ValueError(
                            f"{image_path} does not hold the pixels of chip {chip.chip_id} of {store.images} at its "
                            "window: the chip store was cut from another image; rerun the chips rule"
                        )
                    labels[rows, cols] = chip_labels[chip.index]
                    scored[rows, cols] = True
                for chip in block.earlier:  # scored with an earlier block (overlapping chips)
                    if (part := chip.overlap(row0, col0, height, width)) is not None:
                        scored[part] = False
                if src.nodata is not None and src.nodata != hls.REFLECTANCE_NODATA:
                    raw = np.where(raw == src.nodata, hls.REFLECTANCE_NODATA, raw)
                logits = slide_logits(
                    model, torch.from_numpy(raw.astype(np.int16, copy=False)), crop, stride, batch_size, device,
                    _window_coords(model, src, image_path, row0, col0, crop),
                )
                n = n or int(logits.shape[0])
                if logits.shape[0] != n:
                    raise ValueError(f"the model predicts {logits.shape[0]} classes, the labels have {n}")
                if confusion is None:
                    confusion = np.zeros((n, n), dtype=np.int64)
                predicted = logits.argmax(dim=0).cpu().numpy()
                keep = scored & (labels != IGNORE_INDEX)
                confusion += np.bincount(
                    labels[keep].astype(np.int64) * n + predicted[keep], minlength=n * n
                ).reshape(n, n)
                windows += len(tile_origins(max(height, crop), crop, stride)) * len(
                    tile_origins(max(width, crop), crop, stride)
                )
                bar.update(1)
    bar.close()
    if confusion is None:
        raise ValueError("no test blocks to evaluate")
    record = {"blocks": len(blocks), "windows": windows, "evaluated_pixels": int(confusion.sum())}
    return confusion, record


# -------------------------------------------------------------------------------------------- the stage


def evaluate_runs(
    runs: Sequence[RunToEvaluate],
    stores: Mapping[str, Path],
    splits_table: Path,
    batch_size: int | None = None,
    cfg: Mapping[str, Any] | None = None,
    images: Mapping[str, Path] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate trained runs on the test split; write each run's metrics JSON, confusion CSV, per-class CSV.

    ``cfg`` is the ``evaluate`` section (mode, crop, stride, batch_size; ``batch_size`` overrides its
    batch size). ``images`` (AOI -> downloaded ``image.tif``) is needed in ``sliding_window`` mode only. The
    test split, its chips (or blocks) and the training majority class are the same for every run: they are
    read once.
    """
    from lulc.models import checkpoint_legend, load_trained_model

    cfg = section("evaluate", cfg)
    batch_size = int(batch_size or cfg["batch_size"])
    mode = cfg["mode"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    test = load_split(splits_table, "test")
    legend = chip_legend(stores)
    names = legend.names
    majority = _training_majority_class(stores, load_split(splits_table, "train"), names)
    if mode == "sliding_window":
        if not images:
            raise ValueError("evaluate.mode: sliding_window needs the downloaded images (results/download/{aoi}/"
                             "image.tif) of the test chips' AOIs")
        blocks = evaluation_blocks(splits_table, stores)
    else:
        dataset = ChipStoreDataset(dict(stores), test)
        with_coords: ChipStoreDataset | None = None
    results = []
    for run in runs:
        start = time.perf_counter()
        model, record = load_trained_model(run.checkpoint)
        checkpoint_legend(record, run.checkpoint).require_same(legend, f"checkpoint {run.checkpoint}",
                                                                 "the test labels (chips)")  # fmt: skip
        matmul_precision = torch.get_float32_matmul_precision()  # set by every TerraTorch import (build_model)
        if mode == "sliding_window":
            crop = int(cfg["crop"] or record["info"]["chip_size"])
            stride = int(cfg["stride"] or max(1, crop // 2))
            confusion, details = sliding_window_confusion(
                model, blocks, stores, dict(images or {}), crop, stride, batch_size, device,
                num_classes=legend.num_classes,
            )
            evaluation = {"mode": mode, "crop": crop, "stride": stride, **details}
        else:
            time_location = bool(getattr(model, "time_location", False))
            if time_location and with_coords is None:  # the chips' dates and centres, read once
                with_coords = ChipStoreDataset(dict(stores), test, coords=True)
            chips = with_coords if time_location and with_coords is not None else dataset
            confusion = confusion_matrix(model, chips, batch_size, device, legend.num_classes)
            evaluation = {"mode": mode, "crop": None, "stride": None, "evaluated_pixels": int(confusion.sum())}
        result = {
            **metrics_from_confusion(confusion, names),
            "majority_baseline": {
                "class": names[majority],
                **{
                    k: v
                    for k, v in metrics_from_confusion(majority_confusion(confusion, majority), names).items()
                    if k in ("miou", "macro_f1", "pixel_accuracy")
                },
            },
            "evaluation": evaluation,
            "legend": legend.name,
            "classes": list(names),  # the legend's order (the JSON's keys are sorted)
            "test_chips": len(test),
            "checkpoint": str(run.checkpoint),
            "run": dict(run.run_info or {}),
            "model": record.get("info", {}).get("name"),
            "matmul_precision": matmul_precision,
            "seconds": round(time.perf_counter() - start, 2),
        }
        log.info(
            "%s: test mIoU %.4f (majority baseline %.4f), pixel accuracy %.4f (%s)",
            run.checkpoint,
            result["miou"] or float("nan"),
            result["majority_baseline"]["miou"] or float("nan"),
            result["pixel_accuracy"] or float("nan"),
            mode if mode == "chips" else f"{mode}, crop {evaluation['crop']}, stride {evaluation['stride']}",
        )
        with atomic_path(run.out_confusion) as tmp:
            confusion_frame(confusion, names).to_csv(tmp)
        per_class = pd.DataFrame({key: result[key] for key in ("iou", "f1", "precision", "recall", "support")})
        per_class.index.name = "class"
        with atomic_path(run.out_classes) as tmp:
            per_class.to_csv(tmp)
        write_json(result, run.out_json)
        results.append(result)
    return results


def _training_majority_class(stores: Mapping[str, Path], train: pd.DataFrame, names: Sequence[str]) -> int:
    """The most frequent labelled class over the training pool's pixels (from the chip manifests)."""
    counts = np.zeros(len(names), dtype=np.int64)
    columns = pixel_columns(names)
    for aoi, store in stores.items():
        manifest = pd.read_parquet(Path(store) / "manifest.parquet", columns=["index", *columns])
        chosen = manifest[manifest["index"].isin(train.loc[train["aoi"] == aoi, "index"])]
        counts += chosen[columns].to_numpy().sum(axis=0)
    return int(np.argmax(counts))
