"""Predict stage: a trained model over a whole AOI -> a land-cover map (COG), a PNG preview and a comparison.

**Sliding window.** Tiles of ``tile x tile`` pixels start every ``stride`` pixels along both axes; the last
tile of a row or column is aligned to the scene edge (:func:`tile_origins`). The scene is mirrored by a margin
of half the overlap on every side (:class:`TileGrid`), so that its outermost pixels are not at a tile edge,
and a scene smaller than a tile is padded further by mirroring (padding is never written). Each tile's logits
are weighted by a
separable 2-D window (:func:`blend_window`): 1 in the interior, a raised-cosine ramp over the ``tile -
stride`` overlap at each side (two neighbouring ramps add up to 1), never below :data:`BLEND_FLOOR`, so
pixels that only one tile covers (scene edges) still count. The map is the argmax of the weighted sum of
logits; the normaliser (the sum of weights, a positive factor per pixel) does not change the argmax and is
only applied for the confidence. Tile-edge artefacts of the network (zero padding, missing context) get
near-zero weight wherever another tile covers the pixel, so there are no seams at tile edges.

**Bounded memory.** The scene is read in row strips of one tile height (a background thread reads the next
strip while the model runs), tiles are batched in raster order (a batch may span two strips), and the
weighted logits go into a float32 accumulator of ``(classes, tile, padded width)`` on the device: the rows
that tiles still in flight can touch. When the first tile of a new tile row arrives, the rows above it are
final: they are normalised, turned into class indices (and confidence), written window by window into a
tiled GeoTIFF, and the accumulator shifts up. Neither the scene's logits nor its pixels are ever held
whole. The tiled GeoTIFF is then copied to a COG by GDAL's COG driver (overviews with ``mode`` resampling).

**Nodata rule.** A frame is *valid* at a pixel when none of its six bands is nodata (HLS -9999; the download
stage sets every band of a cloud-masked frame to nodata). A pixel with fewer than ``min_valid_frames``
valid frames (default 1: no valid frame at all) is nodata (255) in the map and the confidence raster. The
model still sees the other pixels' missing frames as zeros after normalisation, as in training.

**Outputs.** ``landcover.tif``: uint8 class indices (:mod:`lulc.classes`), nodata 255, the IO LULC colour
table, tags ``CLASSES`` (``0=water,1=trees,...``), ``CLASS_PIXELS`` and the settings, one band described
``class_index``: QGIS opens it with the IO colours (paletted renderer). ``confidence.tif`` (optional): uint8
max softmax probability of the blended logits in percent (0-100), nodata 255. It is a separate file, not a
second band: GDAL's COG driver marks the second band of a paletted image as alpha, and QGIS then either
draws it as transparency (alpha) or, were it grey, ignores the colour table (multiband renderer).

**Speed.** :func:`prepare_model` (in place): eval mode, the device, channels-last convolutions,
TerraTorch's ``Norm2d`` without its memory copy (same arithmetic). ``precision: auto`` runs the
model under bf16 autocast on CUDA GPUs with bf16 (fp16 otherwise) and on CPUs with native bf16 (AVX512-BF16
or AMX), fp32 elsewhere; the tag ``PRECISION`` records it. The input stays int16 until the model, which
normalises it on the device.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import rasterio
import torch
from matplotlib.collections import PatchCollection
from matplotlib.patches import Patch, Rectangle
from rasterio.enums import Resampling
from rasterio.windows import Window
from torch import nn
from tqdm import tqdm

from lulc import classes, hls
from lulc.config import PREDICT_RUNTIME_KEYS
from lulc.io import atomic_path, copy_to_cog
from lulc.models import auto_precision, channels_last_convolutions

log = logging.getLogger(__name__)

#: Map nodata (= the ignore index of the labels), and nodata of the confidence raster.
NODATA = classes.IGNORE_INDEX
CONFIDENCE_NODATA = 255
#: Smallest weight of a pixel inside a tile: edge pixels count wherever no other tile covers them.
BLEND_FLOOR = 0.01
#: Block size of the COGs.
COG_BLOCK = 256

#: Defaults of the ``predict`` config section (mirrors workflow/schemas/config.schema.yaml).
DEFAULTS: dict[str, Any] = {
    "runs": None,
    "tile": None,
    "stride": None,
    "batch_size": 8,
    "device": "auto",
    "precision": "auto",
    "confidence": True,
    "min_valid_frames": 1,
    "threads": 4,
}
#: Keys that do not change the map: not part of the rule's params (:data:`lulc.config.PREDICT_RUNTIME_KEYS`).
RUNTIME_KEYS = PREDICT_RUNTIME_KEYS
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")


# ----------------------------------------------------------------------------------------- geometry


def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of the tiles along one axis: every ``stride`` pixels, the last one aligned to the edge.

    A scene no longer than a tile gets a single tile at 0 (padded by the caller).
    """
    if tile < 1 or stride < 1 or stride > tile:
        raise ValueError(f"need 1 <= stride <= tile, got tile {tile}, stride {stride}")
    if length <= tile:
        return [0]
    return [*range(0, length - tile, stride), length - tile]


def blend_window(tile: int, stride: int, floor: float = BLEND_FLOOR, blend: bool = True) -> np.ndarray:
    """1-D weights of a tile (the 2-D window is their outer product).

    1 in the interior; over the ``tile - stride`` overlap at each side a raised-cosine ramp
    ``0.5 - 0.5 cos(pi (i + 0.5) / overlap)``, which adds up to exactly 1 with the neighbour's mirrored ramp;
    never below ``floor``. ``blend=False`` gives uniform weights (plain averaging, for comparison).
    """
    weights = np.ones(tile, dtype=np.float64)
    overlap = tile - stride
    if blend and overlap > 0:
        i = np.arange(tile, dtype=np.float64)
        rise = 0.5 - 0.5 * np.cos(np.pi * np.minimum(i + 0.5, overlap) / overlap)
        weights = np.minimum(rise, rise[::-1])
    return np.maximum(weights, floor).astype(np.float32)


def _axis_weight_sum(length: int, origins: Sequence[int], window: np.ndarray) -> np.ndarray:
    """Sum of the 1-D windows of every tile over an axis of ``length`` (padded to at least one tile)."""
    total = np.zeros(max(length, len(window)), dtype=np.float64)
    for origin in origins:
        total[origin : origin + len(window)] += window
    return total.astype(np.float32)


@dataclass(frozen=True)
class TileGrid:
    """The tiling of a ``height x width`` scene, in the coordinates of the scene padded by ``margin``.

    The scene is mirrored by ``margin = (tile - stride) // 2`` pixels on every side (and further on the
    bottom / right where it is smaller than a tile), so its outermost pixels are not at a tile edge, where
    a network's padding artefacts are strongest and no other tile could blend them away. Tiles start at
    :func:`tile_origins` of the padded size; the margin is never written.
    """

    height: int
    width: int
    tile: int
    stride: int
    margin: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    @classmethod
    def of(cls, height: int, width: int, tile: int, stride: int) -> TileGrid:
        margin = (tile - stride) // 2
        rows = tile_origins(height + 2 * margin, tile, stride)
        cols = tile_origins(width + 2 * margin, tile, stride)
        return cls(height, width, tile, stride, margin, tuple(rows), tuple(cols))

    @property
    def padded_height(self) -> int:
        return max(self.height + 2 * self.margin, self.tile)

    @property
    def padded_width(self) -> int:
        return max(self.width + 2 * self.margin, self.tile)

    @property
    def tiles(self) -> int:
        return len(self.rows) * len(self.cols)


# ------------------------------------------------------------------------------------------- device


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``: the first CUDA GPU when there is one, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"config key predict.device: {device!r}, but PyTorch sees no CUDA GPU")
    return resolved


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: :func:`lulc.models.auto_precision` of the device; an explicit setting is checked and kept."""
    if precision not in PRECISIONS:
        raise ValueError(f"config key predict.precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        if precision == "fp16" and device.type != "cuda":
            raise ValueError("config key predict.precision: fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
        return precision
    return auto_precision(device.type)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of a precision (``fp32``: none)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


class _ChannelsLastNorm2d(nn.Module):
    """TerraTorch's ``Norm2d`` (LayerNorm over channels) without its ``.contiguous()`` copy.

    On a channels-last tensor both permutes are free, so the decoder's 224 x 224 x 256 activations are not
    copied twice per block; the arithmetic (and the state-dict key ``ln.*``) is unchanged.
    """

    def __init__(self, ln: nn.LayerNorm) -> None:
        super().__init__()
        self.ln = ln

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Prepare ``model`` for inference on ``device``, **in place**, and return it: eval mode, no gradients,
    channels-last 2-D convolutions and copy-free channel LayerNorms (same arithmetic, same state-dict keys).

    In place because a copy cannot be made safely: TerraTorch's Prithvi encoders replace their ``forward``
    with a closure over the original module, so a ``copy.deepcopy`` would still run (and, on a GPU, fail on)
    the original encoder's weights.
    """
    model.eval().to(device)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            kind = type(child)
            if kind.__name__ == "Norm2d" and kind.__module__.startswith("terratorch") and hasattr(child, "ln"):
                setattr(module, name, _ChannelsLastNorm2d(child.ln))
    channels_last_convolutions(model)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


# -------------------------------------------------------------------------------------------- input


@dataclass
class _Strip:
    """Padded rows ``[row, row + tile)``: ``pixels`` (T, 6, tile, padded width) int16 and, per pixel of those
    rows and the scene's columns, the number of valid frames (uint8)."""

    row: int
    pixels: torch.Tensor
    valid_frames: np.ndarray


def _read_strip(src: rasterio.io.DatasetReader, grid: TileGrid, row: int, frames: int) -> _Strip:
    """Read the scene rows under padded rows ``[row, row + tile)``, count valid frames, mirror the margin."""
    first = max(row - grid.margin, 0)
    last = min(row - grid.margin + grid.tile, grid.height)
    raw = src.read(window=Window(0, first, grid.width, last - first))
    if src.nodata is not None and src.nodata != hls.REFLECTANCE_NODATA:
        raw = np.where(raw == src.nodata, hls.REFLECTANCE_NODATA, raw)
    raw = raw.astype(np.int16, copy=False).reshape(frames, len(hls.PRITHVI_BANDS), last - first, grid.width)
    top = first - (row - grid.margin)  # mirrored rows above the scene (first strip only)
    bottom = grid.tile - top - (last - first)
    right = grid.padded_width - grid.width - grid.margin
    if top or bottom or grid.margin or right:
        raw = np.pad(raw, ((0, 0), (0, 0), (top, bottom), (grid.margin, right)), mode="symmetric")
    valid = (raw[..., grid.margin : grid.margin + grid.width] != hls.REFLECTANCE_NODATA).all(axis=1)
    return _Strip(row, torch.from_numpy(np.ascontiguousarray(raw)), valid.sum(axis=0, dtype=np.uint8))


def _strips(src: rasterio.io.DatasetReader, grid: TileGrid, frames: int) -> Iterator[_Strip]:
    """The strips in order, each read in a background thread while the previous one is being predicted."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict-read") as pool:
        pending: Future[_Strip] | None = None
        for i, row in enumerate(grid.rows):
            current = pending or pool.submit(_read_strip, src, grid, row, frames)
            nxt = grid.rows[i + 1] if i + 1 < len(grid.rows) else None
            pending = pool.submit(_read_strip, src, grid, nxt, frames) if nxt is not None else None
            yield current.result()


# ------------------------------------------------------------------------------------------- output


class _MapWriter:
    """Finished rows -> tiled GeoTIFFs (class map, optional confidence), in a background thread."""

    def __init__(self, profile: dict[str, Any], class_path: Path, confidence_path: Path | None) -> None:
        self.class_dst = rasterio.open(class_path, "w", **profile)
        self.class_dst.set_band_description(1, "class_index")
        self.confidence_dst = None
        if confidence_path is not None:
            self.confidence_dst = rasterio.open(confidence_path, "w", **profile)
            self.confidence_dst.set_band_description(1, "confidence_percent")
        self.class_pixels = np.zeros(256, dtype=np.int64)
        self._queue: queue.Queue[tuple[int, np.ndarray, np.ndarray | None] | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="predict-write", daemon=True)
        self._thread.start()

    def write(self, row: int, class_rows: np.ndarray, confidence_rows: np.ndarray | None) -> None:
        if self._error is not None:
            raise RuntimeError("writing the land-cover map failed") from self._error
        self._queue.put((row, class_rows, confidence_rows))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue
            row, class_rows, confidence_rows = item
            try:
                window = Window(0, row, class_rows.shape[1], class_rows.shape[0])
                self.class_dst.write(class_rows, 1, window=window)
                self.class_pixels += np.bincount(class_rows.ravel(), minlength=256)
                if self.confidence_dst is not None and confidence_rows is not None:
                    self.confidence_dst.write(confidence_rows, 1, window=window)
            except BaseException as error:  # re-raised in the main thread
                self._error = error

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self.class_dst.close()
        if self.confidence_dst is not None:
            self.confidence_dst.close()
        if self._error is not None:
            raise RuntimeError("writing the land-cover map failed") from self._error


# ---------------------------------------------------------------------------------------- prediction


def predict_scene(
    model: nn.Module,
    image_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    tile: int,
    stride: int | None = None,
    batch_size: int = 8,
    device: str | torch.device = "auto",
    precision: str = "auto",
    confidence_path: str | os.PathLike[str] | None = None,
    min_valid_frames: int = 1,
    blend: bool = True,
    tags: Mapping[str, str] | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Predict a whole ``image.tif`` (int16, ``T x 6`` time-major bands) and write the land-cover COG.

    ``model`` maps raw int16 ``(B, T, 6, tile, tile)`` to logits ``(B, C, tile, tile)`` (a
    :class:`lulc.models.LULCModel`); it is prepared in place (:func:`prepare_model`). ``stride`` defaults
    to ``tile - tile // 4``.
    ``confidence_path``: also write the confidence COG there. ``blend=False`` averages overlapping tiles
    with uniform weights (for comparison only). ``precision``: ``auto``, ``fp32``, ``bf16`` or ``fp16``
    (:func:`resolve_precision`). ``threads``: GDAL's threads for the COG conversion (torch's own thread
    count is the caller's). Outputs appear atomically (all written or none). Returns a record: tiles,
    ``seconds`` (everything: reading, model, writing and the COG conversion) and ``tiles_seconds`` (up to
    the tiled GeoTIFF), km2 and km2/s, device, precision, the accumulator shape, pixels per class.
    """
    started = time.perf_counter()
    stride = int(stride) if stride else tile - tile // 4
    tile, batch_size = int(tile), int(batch_size)
    if batch_size < 1:
        raise ValueError(f"config key predict.batch_size: expected a positive integer, got {batch_size}")
    torch_device = resolve_device(device)
    precision = resolve_precision(precision, torch_device)
    threads = int(threads or torch.get_num_threads())
    net = prepare_model(model, torch_device)
    window_1d = blend_window(tile, stride, blend=blend)
    window_2d = torch.from_numpy(np.outer(window_1d, window_1d)).to(torch_device)

    with rasterio.open(image_path) as src:
        if src.count % len(hls.PRITHVI_BANDS):
            raise ValueError(
                f"{image_path}: {src.count} bands is not T x {len(hls.PRITHVI_BANDS)} (time-major HLS stack)"
            )
        frames = src.count // len(hls.PRITHVI_BANDS)
        if not 1 <= min_valid_frames <= frames:
            raise ValueError(f"config key predict.min_valid_frames: expected 1..{frames}, got {min_valid_frames}")
        height, width = src.height, src.width
        grid = TileGrid.of(height, width, tile, stride)
        m = grid.margin
        row_weight = _axis_weight_sum(grid.padded_height, grid.rows, window_1d)
        col_weight = _axis_weight_sum(grid.padded_width, grid.cols, window_1d)[m : m + width]
        profile = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": 1,
            "dtype": "uint8",
            "crs": src.crs,
            "transform": src.transform,
            "nodata": NODATA,
            "tiled": True,
            "blockxsize": COG_BLOCK,
            "blockysize": COG_BLOCK,
            "compress": "deflate",
            "zlevel": 1,
            "BIGTIFF": "IF_SAFER",
        }
        area_km2 = height * width * abs(src.transform.a * src.transform.e) / 1e6
        n_tiles = grid.tiles
        record: dict[str, Any] = {
            "image": str(image_path),
            "height": height,
            "width": width,
            "frames": frames,
            "tile": tile,
            "stride": stride,
            "margin": grid.margin,
            "tiles": n_tiles,
            "batch_size": batch_size,
            "device": str(torch_device),
            "precision": precision,
            "blend": blend,
            "threads": threads,
        }
        with contextlib.ExitStack() as stack:
            final = stack.enter_context(atomic_path(out_path))
            final_confidence = (
                stack.enter_context(atomic_path(confidence_path)) if confidence_path is not None else None
            )
            streams = [final.with_name(final.name + ".stream.tif")]
            if final_confidence is not None:
                streams.append(final_confidence.with_name(final_confidence.name + ".stream.tif"))
            try:
                writer = _MapWriter(profile, streams[0], streams[1] if final_confidence is not None else None)
                try:
                    accumulator_shape = _run_tiles(
                        net, src, grid, frames, batch_size, torch_device, precision, window_2d,
                        torch.from_numpy(row_weight).to(torch_device), torch.from_numpy(col_weight).to(torch_device),
                        min_valid_frames, writer, progress, final_confidence is not None,
                    )  # fmt: skip
                finally:
                    writer.close()
                model_done = time.perf_counter()
                class_pixels = writer.class_pixels
                settings = {
                    "TILE": str(tile),
                    "STRIDE": str(stride),
                    "BLENDING": f"raised-cosine ramp over the {tile - stride} px overlap, floor {BLEND_FLOOR}"
                    if blend
                    else "uniform (no blending)",
                    "PRECISION": precision,
                    "MIN_VALID_FRAMES": str(min_valid_frames),
                    "NODATA_RULE": f"255 where fewer than {min_valid_frames} frame(s) have all 6 bands valid",
                    "SOURCE_IMAGE": Path(image_path).name,
                    **(tags or {}),
                }
                with rasterio.open(streams[0], "r+") as dst:
                    dst.write_colormap(1, classes.index_colormap())
                    dst.update_tags(
                        **classes.class_tags(),
                        CLASS_PIXELS=",".join(
                            f"{name}={int(class_pixels[i])}" for i, name in enumerate(classes.CLASS_NAMES)
                        ),
                        NODATA_PIXELS=str(int(class_pixels[NODATA])),
                        **settings,
                    )
                copy_to_cog(streams[0], final, "mode", threads=threads, block_size=COG_BLOCK)
                if final_confidence is not None:
                    with rasterio.open(streams[1], "r+") as dst:
                        dst.update_tags(
                            VALUES="max softmax probability of the blended logits, percent (0-100); 255 nodata",
                            **settings,
                        )
                    copy_to_cog(streams[1], final_confidence, "average", threads=threads, block_size=COG_BLOCK)
            finally:
                for stream in streams:
                    stream.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    record |= {
        "accumulator_shape": list(accumulator_shape),
        "area_km2": round(area_km2, 3),
        "seconds": round(seconds, 3),
        "tiles_seconds": round(model_done - started, 3),
        "km2_per_s": round(area_km2 / seconds, 3),
        "class_pixels": {name: int(class_pixels[i]) for i, name in enumerate(classes.CLASS_NAMES)},
        "nodata_pixels": int(class_pixels[NODATA]),
    }
    log.info(
        "%s: %d x %d px (%.1f km2), %d tiles of %d px (stride %d) on %s (%s): %.1f s, %.2f km2/s",
        out_path, height, width, area_km2, n_tiles, tile, stride, torch_device, precision, seconds,
        record["km2_per_s"],
    )  # fmt: skip
    return record


def _run_tiles(
    net: nn.Module,
    src: rasterio.io.DatasetReader,
    grid: TileGrid,
    frames: int,
    batch_size: int,
    device: torch.device,
    precision: str,
    window_2d: torch.Tensor,
    row_weight: torch.Tensor,
    col_weight: torch.Tensor,
    min_valid_frames: int,
    writer: _MapWriter,
    progress: bool,
    confidence: bool,
) -> tuple[int, ...]:
    """The tile loop: batches in raster order, the strip accumulator, finished rows to ``writer``.

    Coordinates are those of the padded scene (:class:`TileGrid`); scene row ``y`` is padded row
    ``y + margin``.
    """
    tile, m = grid.tile, grid.margin
    accumulator: torch.Tensor | None = None  # (classes, tile, padded width): the rows tiles can still touch
    base = 0  # padded row of accumulator row 0 (the row origin of the tiles being accumulated)
    valid: dict[int, np.ndarray] = {}
    bar = tqdm(total=grid.tiles, desc=f"predicting {Path(src.name).name}", unit="tile", leave=False,
               disable=not progress)  # fmt: skip

    def flush(upto: int) -> None:
        """Padded rows ``[base, upto)`` are final: the scene rows among them are normalised, turned into
        classes (and confidence), masked where nodata and handed to the writer; the accumulator shifts."""
        nonlocal base
        n = upto - base
        first, last = max(base, m), min(upto, m + grid.height)  # padded rows that are scene rows
        if last > first:
            block = accumulator[:, first - base : last - base, m : m + grid.width]
            class_rows = block.argmax(dim=0).to(torch.uint8)
            confidence_rows = None
            if confidence:
                logits = block / (row_weight[first:last, None] * col_weight[None, :])
                confidence_rows = torch.softmax(logits, dim=0).amax(dim=0).mul_(100).round_().to(torch.uint8)
            nodata = torch.from_numpy(valid[base][first - base : last - base] < min_valid_frames).to(device)
            class_rows = class_rows.masked_fill_(nodata, NODATA).cpu().numpy()
            if confidence_rows is not None:
                confidence_rows = confidence_rows.masked_fill_(nodata, CONFIDENCE_NODATA).cpu().numpy()
            writer.write(first - m, class_rows, confidence_rows)
        # shift the accumulator up by n rows; the freed rows at the bottom start from zero
        if n < tile:
            accumulator[:, : tile - n] = accumulator[:, n:].clone()
        accumulator[:, max(tile - n, 0) :] = 0
        for row in [r for r in valid if r < upto]:
            del valid[row]
        base = upto

    def tiles() -> Iterator[tuple[int, int, torch.Tensor]]:
        for strip in _strips(src, grid, frames):
            valid[strip.row] = strip.valid_frames
            for col in grid.cols:
                yield strip.row, col, strip.pixels[..., col : col + tile]

    def batches() -> Iterator[list[tuple[int, int, torch.Tensor]]]:
        batch: list[tuple[int, int, torch.Tensor]] = []
        for item in tiles():
            batch.append(item)
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    with torch.inference_mode(), autocast(device, precision):  # one autocast context: weights cast once
        for batch in batches():
            x = torch.stack([pixels for _, _, pixels in batch]).to(device, non_blocking=True)
            try:
                logits = net(x)
            except Exception as error:
                if accumulator is not None:  # the first batch went through: not a question of tile size
                    raise
                raise ValueError(
                    f"the model cannot predict tiles of {tile} x {tile} px with {frames} frames "
                    f"(config keys predict.tile / predict.stride; a ViT needs its training chip size): "
                    f"{type(error).__name__}: {error}"
                ) from error
            if logits.dim() != 4 or tuple(logits.shape[-2:]) != (tile, tile) or logits.shape[0] != len(batch):
                raise ValueError(f"the model returned {tuple(logits.shape)} for input {tuple(x.shape)}")
            weighted = logits.float().mul_(window_2d)
            if accumulator is None:
                accumulator = torch.zeros((logits.shape[1], tile, grid.padded_width), device=device)
            for (row, col, _), tile_logits in zip(batch, weighted, strict=True):
                if row > base:
                    flush(row)
                accumulator[:, :, col : col + tile] += tile_logits
            bar.update(len(batch))
        flush(grid.padded_height)
    bar.close()
    return tuple(accumulator.shape)


# -------------------------------------------------------------------------------------------- figures


def _colour_lut() -> np.ndarray:
    """uint8 class index -> RGBA (the colour table of the map; nodata transparent)."""
    lut = np.zeros((256, 4), dtype=np.uint8)
    for index, rgba in classes.index_colormap().items():
        lut[index] = rgba
    return lut


def _read_small(
    path: str | os.PathLike[str], max_size: int
) -> tuple[np.ndarray, tuple[float, float, float, float], int]:
    """Band 1 decimated to at most ``max_size`` pixels a side (from the COG's overviews), the extent in km
    (left, right, bottom, top) and the decimation factor."""
    with rasterio.open(path) as src:
        factor = max(1, math.ceil(max(src.height, src.width) / max_size))
        shape = (math.ceil(src.height / factor), math.ceil(src.width / factor))
        data = src.read(1, out_shape=shape, resampling=Resampling.nearest)
        b = src.bounds
    return data, (b.left / 1000, b.right / 1000, b.bottom / 1000, b.top / 1000), factor


def _legend_handles(shares: Mapping[str, float] | None = None) -> list[Patch]:
    handles = []
    for index, name in enumerate(classes.CLASS_NAMES):
        colour = np.array(classes.IO_COLOURS[classes.CLASS_CODES[index]]) / 255
        label = name.replace("snow_ice", "snow / ice").replace("_", " ")
        if shares is not None:
            label += f" ({100 * shares.get(name, 0.0):.1f} %)"
        handles.append(Patch(facecolor=colour, edgecolor="0.3", linewidth=0.5, label=label))
    return handles


def _class_shares(path: str | os.PathLike[str]) -> tuple[dict[str, float], float]:
    """Share of each class among mapped pixels and the nodata share, from the map's ``CLASS_PIXELS`` tag."""
    with rasterio.open(path) as src:
        tags = src.tags()
        total = src.height * src.width
    counts = {k: int(v) for k, v in (item.split("=") for item in tags.get("CLASS_PIXELS", "").split(",") if item)}
    mapped = sum(counts.values())
    shares = {name: count / mapped for name, count in counts.items()} if mapped else {}
    return shares, (total - mapped) / total if total else 0.0


def _map_axes(ax: plt.Axes, data: np.ndarray, extent: tuple[float, float, float, float], title: str) -> None:
    ax.set_facecolor("0.85")  # nodata (transparent) shows as light grey
    ax.imshow(_colour_lut()[data], extent=extent, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("easting (km)")
    ax.set_ylabel("northing (km)")
    ax.ticklabel_format(useOffset=False, style="plain")


def _save_png(fig: plt.Figure, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def write_preview(
    landcover: str | os.PathLike[str], png: str | os.PathLike[str], title: str = "", max_size: int = 1024
) -> None:
    """A PNG of the map (read from its overviews) with a legend of the classes and their area shares."""
    data, extent, factor = _read_small(landcover, max_size)
    shares, nodata_share = _class_shares(landcover)
    with rasterio.open(landcover) as src:
        crs = src.crs.to_string() if src.crs else "no CRS"
    fig, ax = plt.subplots(figsize=(9.5, 7))
    _map_axes(ax, data, extent, title or Path(landcover).parent.name)
    handles = _legend_handles(shares)
    handles.append(
        Patch(
            facecolor="0.85", edgecolor="0.3", linewidth=0.5, label=f"no data ({100 * nodata_share:.1f} % of the AOI)"
        )
    )
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.02, 1),
        fontsize=8,
        frameon=False,
        title="class (share of mapped area)",
        title_fontsize=8,
    )
    ax.text(
        0,
        -0.12,
        f"{crs}; shown at 1/{factor} resolution" if factor > 1 else crs,
        transform=ax.transAxes,
        fontsize=7,
        color="0.4",
        va="top",
    )
    _save_png(fig, png)


def test_windows(splits: str | os.PathLike[str], manifest: str | os.PathLike[str], aoi: str) -> list[Window]:
    """The pixel windows of the AOI's test-split chips (``splits.csv`` + the chips stage's manifest)."""
    from lulc.splits import load_split

    test = load_split(splits, "test")
    test = test[test["aoi"] == aoi]
    chips = pd.read_parquet(manifest, columns=["chip_id", "row_off", "col_off", "height", "width"])
    merged = test.merge(chips, on="chip_id", how="inner")
    if len(merged) != len(test):
        raise ValueError(f"{manifest}: {len(test) - len(merged)} test chip(s) of {aoi} from {splits} are missing")
    return [Window(int(r.col_off), int(r.row_off), int(r.width), int(r.height)) for r in merged.itertuples()]


def _confusion(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    n = classes.NUM_CLASSES
    keep = (label < n) & (pred < n)
    return np.bincount(label[keep].astype(np.int64) * n + pred[keep], minlength=n * n).reshape(n, n)


def agreement(
    landcover: str | os.PathLike[str],
    label: str | os.PathLike[str],
    windows: Sequence[Window] | None = None,
    rows_per_read: int = 1024,
) -> np.ndarray:
    """Confusion matrix (rows: label, columns: map) over labelled, mapped pixels at full resolution: inside
    ``windows`` only, or the whole scene (read in strips of ``rows_per_read`` rows)."""
    with rasterio.open(landcover) as pred_src, rasterio.open(label) as label_src:
        if (pred_src.shape, pred_src.transform, pred_src.crs) != (label_src.shape, label_src.transform, label_src.crs):
            raise ValueError(f"{landcover} and {label} are not on the same grid")
        if windows is None:
            windows = [
                Window(0, row, pred_src.width, min(rows_per_read, pred_src.height - row))
                for row in range(0, pred_src.height, rows_per_read)
            ]
        confusion = np.zeros((classes.NUM_CLASSES, classes.NUM_CLASSES), dtype=np.int64)
        for window in windows:
            confusion += _confusion(pred_src.read(1, window=window), label_src.read(1, window=window))
    return confusion


def _describe(confusion: np.ndarray) -> str:
    from lulc.evaluate import metrics_from_confusion

    if not confusion.sum():
        return "no labelled pixels"
    metrics = metrics_from_confusion(confusion)
    return (
        f"accuracy {100 * metrics['pixel_accuracy']:.1f} %, mIoU {100 * metrics['miou']:.1f} % "
        f"({metrics['pixels']:,} px)"
    )


def write_comparison(
    landcover: str | os.PathLike[str],
    label: str | os.PathLike[str],
    png: str | os.PathLike[str],
    windows: Sequence[Window] | None = None,
    title: str = "",
    max_size: int = 768,
) -> dict[str, Any]:
    """Prediction | label | agreement, side by side; the test chips (``windows``) outlined, and the agreement
    outside them faded. Accuracy and mIoU are computed at full resolution over the test chips (the only
    pixels no model trained or selected on) and, for reference, over the whole AOI. Returns both confusions."""
    pred, extent, factor = _read_small(landcover, max_size)
    truth, _, _ = _read_small(label, max_size)
    if pred.shape != truth.shape:
        raise ValueError(f"{landcover} and {label} are not on the same grid")
    whole = agreement(landcover, label)
    test = agreement(landcover, label, windows) if windows else None

    in_test = np.zeros(pred.shape, dtype=bool)
    rectangles = []
    with rasterio.open(landcover) as src:
        transform = src.transform
    for w in windows or []:
        r0, c0 = int(w.row_off) // factor, int(w.col_off) // factor
        in_test[r0 : math.ceil((w.row_off + w.height) / factor), c0 : math.ceil((w.col_off + w.width) / factor)] = True
        left, top = transform * (w.col_off, w.row_off)
        rectangles.append(
            Rectangle(
                (left / 1000, top / 1000 - w.height * abs(transform.e) / 1000),
                w.width * transform.a / 1000,
                w.height * abs(transform.e) / 1000,
            )
        )
    labelled = (truth < classes.NUM_CLASSES) & (pred < classes.NUM_CLASSES)
    colours = np.zeros((*pred.shape, 4), dtype=np.float32)
    colours[labelled & (pred == truth)] = (0.10, 0.60, 0.31, 1.0)
    colours[labelled & (pred != truth)] = (0.84, 0.19, 0.15, 1.0)
    if windows:
        colours[~in_test, 3] *= 0.3

    fig, axes = plt.subplots(1, 3, figsize=(16, 5.8), sharex=True, sharey=True)
    _map_axes(axes[0], pred, extent, "prediction")
    _map_axes(axes[1], truth, extent, "label (IO LULC, ignore = grey)")
    axes[2].set_facecolor("0.85")
    axes[2].imshow(colours, extent=extent, interpolation="nearest")
    axes[2].set_xlabel("easting (km)")
    axes[2].set_title(
        "agreement (green) / disagreement (red)" + ("; test chips outlined" if windows else ""), fontsize=10
    )
    for ax in axes:
        if rectangles:
            ax.add_collection(PatchCollection(rectangles, facecolor="none", edgecolor="black", linewidth=0.6))
    summary = [
        f"test chips: {_describe(test)}" if test is not None else "no test chips in this AOI",
        f"whole AOI (includes training areas): {_describe(whole)}",
    ]
    fig.suptitle((title + "\n" if title else "") + " | ".join(summary), fontsize=10)
    fig.legend(
        handles=_legend_handles(),
        loc="lower center",
        ncol=len(classes.CLASS_NAMES),
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, -0.02),
    )
    _save_png(fig, png)
    return {"whole": whole, "test": test}


# ------------------------------------------------------------------------------------------ the stage


def resolve_config(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``predict`` section merged over :data:`DEFAULTS` and checked; errors name the key."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"config key predict.{unknown[0]}: unknown key (known: {', '.join(sorted(DEFAULTS))})")
    resolved = {**DEFAULTS, **cfg}
    for key in ("tile", "stride"):
        value = resolved[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"config key predict.{key}: expected a positive integer or null, got {value!r}")
    for key in ("batch_size", "min_valid_frames", "threads"):
        value = resolved[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"config key predict.{key}: expected a positive integer, got {value!r}")
    if resolved["precision"] not in PRECISIONS:
        raise ValueError(
            f"config key predict.precision: expected one of {', '.join(PRECISIONS)}, got {resolved['precision']!r}"
        )
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(resolved["device"])):
        raise ValueError(f"config key predict.device: expected auto, cpu, cuda or cuda:N, got {resolved['device']!r}")
    if not isinstance(resolved["confidence"], bool):
        raise ValueError(f"config key predict.confidence: expected true or false, got {resolved['confidence']!r}")
    if resolved["tile"] and resolved["stride"] and resolved["stride"] > resolved["tile"]:
        raise ValueError(
            f"config key predict.stride: {resolved['stride']} is larger than predict.tile "
            f"{resolved['tile']} (pixels between tiles would get no prediction)"
        )
    return resolved


def predict_run(
    checkpoint: str | os.PathLike[str],
    image: str | os.PathLike[str],
    label: str | os.PathLike[str],
    landcover: str | os.PathLike[str],
    preview: str | os.PathLike[str],
    comparison: str | os.PathLike[str],
    cfg: Mapping[str, Any] | None = None,
    confidence: str | os.PathLike[str] | None = None,
    splits: str | os.PathLike[str] | None = None,
    manifest: str | os.PathLike[str] | None = None,
    aoi: str = "",
    run_name: str = "",
    threads: int | None = None,
) -> dict[str, Any]:
    """The ``predict`` rule: load a trained checkpoint, map the AOI, write the preview and the comparison.

    ``tile`` defaults to the chip size the model was trained on, ``stride`` to ``tile - tile // 4``. The
    test chips of ``aoi`` (from ``splits`` and ``manifest``) are outlined in the comparison. On failure every
    output is removed. Returns :func:`predict_scene`'s record plus the agreement figures.
    """
    from lulc.models import load_trained_model, sha256_file

    cfg = resolve_config(cfg)
    if threads:
        torch.set_num_threads(int(threads))
    outputs = [Path(p) for p in (landcover, preview, comparison, confidence) if p is not None]
    try:
        if confidence is not None and not cfg["confidence"]:
            raise ValueError("a confidence output was requested but config key predict.confidence is false")
        model, checkpoint_record = load_trained_model(checkpoint)
        info = checkpoint_record["info"]
        with rasterio.open(image) as src:
            frames = src.count // len(hls.PRITHVI_BANDS)
        if frames != info["frames"] or src.count % len(hls.PRITHVI_BANDS):
            raise ValueError(
                f"{image} has {src.count} bands ({src.count / len(hls.PRITHVI_BANDS):g} frames of 6) "
                f"but {checkpoint} was trained on {info['frames']} frames (download.frames)"
            )
        tile = cfg["tile"] or int(info["chip_size"])
        stride = cfg["stride"] or tile - tile // 4
        if stride > tile:
            raise ValueError(f"config key predict.stride: {stride} is larger than the tile ({tile} px)")
        tags = {
            "AOI": aoi,
            "MODEL_RUN": run_name,
            "MODEL": f"{info['name']} ({info['type']})",
            "CHECKPOINT": Path(checkpoint).name,
            "CHECKPOINT_SHA256": sha256_file(checkpoint),
            "NORMALIZATION": str(info.get("normalization", {}).get("name", "")),
            "TRAINED_FRACTION": str(checkpoint_record.get("fraction", "")),
            "TRAINED_SEED": str(checkpoint_record.get("seed", "")),
            "VAL_MIOU": str(checkpoint_record.get("val_miou", "")),
        }
        record = predict_scene(
            model, image, landcover, tile=tile, stride=stride, batch_size=cfg["batch_size"], device=cfg["device"],
            precision=cfg["precision"], confidence_path=confidence if cfg["confidence"] else None,
            min_valid_frames=cfg["min_valid_frames"], tags={k: v for k, v in tags.items() if v},
            threads=threads or cfg["threads"],
        )  # fmt: skip
        title = f"{aoi}: {run_name}" if aoi or run_name else ""
        write_preview(landcover, preview, title=f"{title} ({record['precision']}, tile {tile}, stride {stride})")
        windows = test_windows(splits, manifest, aoi) if splits is not None and manifest is not None else None
        figures = write_comparison(landcover, label, comparison, windows, title=title)
    except BaseException:
        for path in outputs:
            path.unlink(missing_ok=True)
        raise
    record["test_confusion"] = None if figures["test"] is None else figures["test"].tolist()
    record["whole_confusion"] = figures["whole"].tolist()
    return record
