"""Predict stage: a trained model over a whole AOI -> a land-cover map (COG), a PNG preview and a comparison.

**Sliding window.** Tiles of ``tile x tile`` pixels start every ``stride`` pixels along both axes; the last tile
of a row or column is aligned to the scene edge (:func:`lulc.tiling.tile_origins`). The scene is mirrored by a
margin of half the overlap on every side (:class:`lulc.tiling.TileGrid`), so that its outermost pixels are not at
a tile edge, and a scene smaller than a tile is padded further by mirroring (padding is never written). Each
tile's logits are weighted by a separable 2-D window (:func:`lulc.tiling.blend_window`): 1 in the interior, a
raised-cosine ramp over the ``tile - stride`` overlap at each side (two neighbouring ramps add up to 1), never
below :data:`BLEND_FLOOR`, so pixels that only one tile covers (scene edges) still count. The map is the argmax of
the weighted sum of logits; the normaliser (the sum of weights, a positive factor per pixel) does not change the
argmax and is only applied for the confidence. Tile-edge artefacts of the network (zero padding, missing context)
get near-zero weight wherever another tile covers the pixel, so there are no seams at tile edges.

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

**Inputs are checked before any work** (:func:`check_image`, :func:`check_inputs`): the image must have a CRS,
be HLS v2.0 int16 reflectance x 10000 (float reflectance or uint16 is refused, never cast:
:func:`lulc.hls.check_reflectance`) and have ``T x 6`` bands; ``predict_run`` also checks that the label lies on
the image's grid (equal CRS and shape, transforms within :data:`lulc.tiling.GRID_TOLERANCE` of a pixel) before it
loads the model. The record's ``area_km2`` is the true area in any CRS (:func:`lulc.tiling.area_km2`).

The geometry lives in :mod:`lulc.tiling`, the preview and comparison figures in :mod:`lulc.map_figures`;
this module runs the model and streams the map to disk.

**Outputs.** ``landcover.tif``: uint8 class indices of the checkpoint's legend (:mod:`lulc.legends`), nodata 255,
the legend's colour table, tags ``CLASSES`` (``0=water,1=trees,...``), ``LEGEND``, ``CLASS_PIXELS`` and the
settings, one band described ``class_index``: QGIS opens it with the legend's colours (paletted renderer).
``confidence.tif`` (optional): uint8 max softmax probability of the blended logits in percent (0-100), nodata 255.
It is a separate file, not a second band: GDAL's COG driver marks the second band of a paletted image as alpha, and
QGIS then either draws it as transparency (alpha) or, were it grey, ignores the colour table (multiband renderer).

**Speed.** :func:`prepare_model` (in place): eval mode, the device, channels-last convolutions,
TerraTorch's ``Norm2d`` without its memory copy (same arithmetic). ``precision: auto`` runs the
model under bf16 autocast only where bf16 maps were measured faster for its family on this hardware class
(:func:`lulc.models.precision.choose_precision`), and on CUDA GPUs with bf16 (fp16 on older ones); fp32
elsewhere. The tags ``PRECISION`` and ``PRECISION_REASON`` record it. The input stays int16 until the model, which
normalises it on the device.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import rasterio
import torch
from rasterio.windows import Window
from torch import nn
from tqdm import tqdm

from lulc import hls
from lulc.coords import batch_coords, frame_dates_from_tags, temporal_coords, window_latlon
from lulc.io import atomic_path, copy_to_cog
from lulc.legends import IGNORE_INDEX, Legend, read_legend
from lulc.map_figures import test_windows, write_comparison, write_preview
from lulc.models import PrecisionChoice, channels_last_convolutions, enforce_fp32_matmul_precision, resolve_precision
from lulc.schema import PREDICT_RUNTIME_KEYS, section
from lulc.tiling import BLEND_FLOOR, TileGrid, axis_weight_sum, blend_window, check_same_grid, require_crs
from lulc.tiling import area_km2 as scene_area_km2

log = logging.getLogger(__name__)

#: Map nodata (= the ignore index of the labels), and nodata of the confidence raster.
NODATA = IGNORE_INDEX
CONFIDENCE_NODATA = 255
#: Block size of the COGs.
COG_BLOCK = 256

#: Keys that do not change the map: not part of the rule's params (:data:`lulc.schema.PREDICT_RUNTIME_KEYS`).
RUNTIME_KEYS = PREDICT_RUNTIME_KEYS
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")


# ----------------------------------------------------------------------------------------- geometry


# ------------------------------------------------------------------------------------------- device


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``: the first CUDA GPU when there is one, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"config key predict.device: {device!r}, but PyTorch sees no CUDA GPU")
    return resolved


def inference_precision_choice(precision: str, device: torch.device, family: str | None = None) -> PrecisionChoice:
    """``auto``: :func:`lulc.models.precision.choose_precision` for maps of ``family`` on the device; an explicit
    setting is checked and kept."""
    if precision not in PRECISIONS:
        raise ValueError(f"config key predict.precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("config key predict.precision: fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    choice = resolve_precision(precision, "predict", family, device.type)
    if precision != "auto":
        return PrecisionChoice(precision, "set in the config (predict.precision)", choice.hardware)
    return choice


def inference_precision(precision: str, device: torch.device, family: str | None = None) -> str:
    """The precision of :func:`inference_precision_choice`."""
    return inference_precision_choice(precision, device, family).precision


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
                setattr(module, name, _ChannelsLastNorm2d(cast(nn.LayerNorm, child.ln)))
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


def check_image(path: str | os.PathLike[str], src: rasterio.io.DatasetReader) -> int:
    """Refuse an image the map cannot be made of, before any work; return its number of frames.

    It must have a CRS (:func:`lulc.tiling.require_crs`), be HLS int16 reflectance x 10000
    (:func:`lulc.hls.check_reflectance`) and have ``T x 6`` bands.
    """
    require_crs(path, src)
    hls.check_reflectance(path, src)
    if not src.count or src.count % len(hls.PRITHVI_BANDS):
        raise ValueError(
            f"{path}: {src.count} bands is not T x {len(hls.PRITHVI_BANDS)} (time-major HLS stack); "
            f"rerun the download stage, which writes this layout"
        )
    return src.count // len(hls.PRITHVI_BANDS)


def check_inputs(image: str | os.PathLike[str], label: str | os.PathLike[str]) -> int:
    """:func:`check_image` of the image, and the label on its grid (:func:`lulc.tiling.check_same_grid`);
    return the image's number of frames."""
    with rasterio.open(image) as src, rasterio.open(label) as label_src:
        frames = check_image(image, src)
        check_same_grid(image, src, label, label_src)
    return frames


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


@dataclass(frozen=True)
class _TileJob:
    """What the tile loop needs besides the model, the image and the writer: the tiling, the batching, the
    device and precision, the blending weights (on the device) and the nodata rule."""

    grid: TileGrid
    frames: int
    batch_size: int
    device: torch.device
    precision: str
    window_2d: torch.Tensor  # (tile, tile): the weight of each tile's logits
    row_weight: torch.Tensor  # per padded row: the sum of the tiles' weights (the normaliser, with col_weight)
    col_weight: torch.Tensor  # per scene column: the sum of the tiles' weights
    min_valid_frames: int
    #: A model with time / location inputs: a batch's coords from its tiles' padded origins (each its own centre).
    window_coords: Callable[[list[tuple[int, int]]], dict[str, torch.Tensor]] | None = None


def tile_coords(
    src: rasterio.io.DatasetReader, image_path: str | os.PathLike[str], grid: TileGrid
) -> Callable[[list[tuple[int, int]]], dict[str, torch.Tensor]]:
    """The time / location inputs of a batch of tiles at padded origins ``(row, col)`` of ``grid`` over ``src``:
    the frames' dates from its ``FRAME_<t>`` tags, and each tile's own centre (its window on the scene, the
    mirrored margin included) in latitude / longitude."""
    temporal = temporal_coords(frame_dates_from_tags(src.tags(), str(image_path)), str(image_path))

    def coords(origins: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        rows = [row - grid.margin for row, _ in origins]
        cols = [col - grid.margin for _, col in origins]
        return batch_coords(temporal, window_latlon(src.transform, src.crs, rows, cols, grid.tile, grid.tile))

    return coords


def _blend_weights(
    grid: TileGrid, window_1d: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """On the device: a tile's 2-D weight window (the outer product of ``window_1d``), and the sums of the
    tiles' 1-D weights per padded row and per scene column, whose product normalises the blended logits."""
    m = grid.margin
    window_2d = torch.from_numpy(np.outer(window_1d, window_1d)).to(device)
    row_weight = axis_weight_sum(grid.padded_height, grid.rows, window_1d)
    col_weight = axis_weight_sum(grid.padded_width, grid.cols, window_1d)[m : m + grid.width]
    return window_2d, torch.from_numpy(row_weight).to(device), torch.from_numpy(col_weight).to(device)


def _map_profile(src: rasterio.io.DatasetReader) -> dict[str, Any]:
    """The rasterio profile of the tiled GeoTIFF streams (class map and confidence): uint8 on the image's
    grid, nodata 255, blocks of :data:`COG_BLOCK`, fast deflate (the COG conversion compresses again)."""
    return {
        "driver": "GTiff",
        "width": src.width,
        "height": src.height,
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


def _map_settings(
    image_path: str | os.PathLike[str],
    *,
    tile: int,
    stride: int,
    blend: bool,
    precision: str,
    precision_reason: str,
    matmul_precision: str,
    min_valid_frames: int,
    tags: Mapping[str, str] | None,
) -> dict[str, str]:
    """The tags that record how the map was made, on both COGs; the caller's ``tags`` come last and win."""
    return {
        "TILE": str(tile),
        "STRIDE": str(stride),
        "BLENDING": f"raised-cosine ramp over the {tile - stride} px overlap, floor {BLEND_FLOOR}"
        if blend
        else "uniform (no blending)",
        "PRECISION": precision,
        "PRECISION_REASON": precision_reason,
        "FP32_MATMUL_PRECISION": matmul_precision,
        "MIN_VALID_FRAMES": str(min_valid_frames),
        "NODATA_RULE": f"255 where fewer than {min_valid_frames} frame(s) have all 6 bands valid",
        "SOURCE_IMAGE": Path(image_path).name,
        **(tags or {}),
    }


def _finish_class_map(
    stream: Path, final: Path, class_pixels: np.ndarray, settings: Mapping[str, str], threads: int, legend: Legend
) -> None:
    """Give the class-map stream its colour table and tags (the legend, pixels per class, settings), then copy it
    to the COG ``final`` (overviews by ``mode``, the right resampling for class indices)."""
    with rasterio.open(stream, "r+") as dst:
        dst.write_colormap(1, legend.colormap())
        dst.update_tags(
            **legend.tags(),
            CLASS_PIXELS=",".join(f"{name}={int(class_pixels[i])}" for i, name in enumerate(legend.names)),
            NODATA_PIXELS=str(int(class_pixels[NODATA])),
            **settings,
        )
    copy_to_cog(stream, final, "mode", threads=threads, block_size=COG_BLOCK)


def _finish_confidence(stream: Path, final: Path, settings: Mapping[str, str], threads: int) -> None:
    """Tag the confidence stream (what its values mean, the settings), then copy it to the COG ``final``."""
    with rasterio.open(stream, "r+") as dst:
        dst.update_tags(
            VALUES="max softmax probability of the blended logits, percent (0-100); 255 nodata",
            **settings,
        )
    copy_to_cog(stream, final, "average", threads=threads, block_size=COG_BLOCK)


def _write_maps(
    net: nn.Module,
    src: rasterio.io.DatasetReader,
    job: _TileJob,
    out_path: str | os.PathLike[str],
    confidence_path: str | os.PathLike[str] | None,
    settings: Mapping[str, str],
    threads: int,
    progress: bool,
    legend: Legend | None,
) -> tuple[tuple[int, ...], float, np.ndarray, Legend]:
    """Run the tile loop into tiled GeoTIFF streams beside the outputs, then tag them and convert them to COGs.

    The outputs appear atomically (all or none) and the streams are removed whatever happens. Returns the
    accumulator shape, the :func:`time.perf_counter` at the end of the tile loop, the pixels per class and the
    legend written (``legend``, or :meth:`Legend.generic` of as many classes as the model predicts).
    """
    with contextlib.ExitStack() as stack:
        final = stack.enter_context(atomic_path(out_path))
        final_confidence = stack.enter_context(atomic_path(confidence_path)) if confidence_path is not None else None
        streams = [final.with_name(final.name + ".stream.tif")]
        if final_confidence is not None:
            streams.append(final_confidence.with_name(final_confidence.name + ".stream.tif"))
        try:
            writer = _MapWriter(_map_profile(src), streams[0], streams[1] if final_confidence is not None else None)
            try:
                accumulator_shape = _run_tiles(net, src, job, writer, progress, final_confidence is not None)
            finally:
                writer.close()
            model_done = time.perf_counter()
            class_pixels = writer.class_pixels
            legend = legend or Legend.generic(int(accumulator_shape[0]))
            _finish_class_map(streams[0], final, class_pixels, settings, threads, legend)
            if final_confidence is not None:
                _finish_confidence(streams[1], final_confidence, settings, threads)
        finally:
            for stream in streams:
                stream.unlink(missing_ok=True)
    return accumulator_shape, model_done, class_pixels, legend


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
    legend: Legend | None = None,
) -> dict[str, Any]:
    """Predict a whole ``image.tif`` (int16, ``T x 6`` time-major bands) and write the land-cover COG.

    ``model`` maps raw int16 ``(B, T, 6, tile, tile)`` to logits ``(B, C, tile, tile)`` (a
    :class:`lulc.models.core.LULCModel`); it is prepared in place (:func:`prepare_model`). ``stride`` defaults
    to ``tile - tile // 4``. The image is checked first (:func:`check_image`): a bad one raises a
    ``ValueError`` before the model is prepared or anything is written.
    ``confidence_path``: also write the confidence COG there. ``blend=False`` averages overlapping tiles
    with uniform weights (for comparison only). ``precision``: ``auto``, ``fp32``, ``bf16`` or ``fp16``
    (:func:`inference_precision`). ``threads``: GDAL's threads for the COG conversion (torch's own thread
    count is the caller's). Outputs appear atomically (all written or none). Returns a record: tiles,
    ``seconds`` (everything: reading, model, writing and the COG conversion) and ``tiles_seconds`` (up to
    the tiled GeoTIFF), km2 and km2/s, device, precision, the accumulator shape, pixels per class.
    ``legend``: the classes the model predicts (its checkpoint's), recorded in the map's tags and colour table;
    without one the classes are ``class_0``... (:meth:`Legend.generic`).
    """
    started = time.perf_counter()
    stride = int(stride) if stride else tile - tile // 4
    tile, batch_size = int(tile), int(batch_size)
    if batch_size < 1:
        raise ValueError(f"config key predict.batch_size: expected a positive integer, got {batch_size}")
    torch_device = resolve_device(device)
    precision_setting = precision
    precision_choice = inference_precision_choice(precision, torch_device, getattr(model, "family", None))
    precision = precision_choice.precision
    threads = int(threads or torch.get_num_threads())

    with rasterio.open(image_path) as src:
        frames = check_image(image_path, src)  # before any work: the model is not touched, nothing written
        if not 1 <= min_valid_frames <= frames:
            raise ValueError(f"config key predict.min_valid_frames: expected 1..{frames}, got {min_valid_frames}")
        net = prepare_model(model, torch_device)
        matmul_precision = enforce_fp32_matmul_precision()  # whatever an import of TerraTorch set before
        window_1d = blend_window(tile, stride, blend=blend)
        height, width = src.height, src.width
        grid = TileGrid.of(height, width, tile, stride)
        window_2d, row_weight, col_weight = _blend_weights(grid, window_1d, torch_device)
        job = _TileJob(
            grid=grid, frames=frames, batch_size=batch_size, device=torch_device, precision=precision,
            window_2d=window_2d, row_weight=row_weight, col_weight=col_weight, min_valid_frames=min_valid_frames,
            window_coords=tile_coords(src, image_path, grid) if getattr(model, "time_location", False) else None,
        )  # fmt: skip
        area_km2 = scene_area_km2(src.crs, src.transform, height, width, image_path)
        record: dict[str, Any] = {
            "image": str(image_path),
            "height": height,
            "width": width,
            "frames": frames,
            "tile": tile,
            "stride": stride,
            "margin": grid.margin,
            "tiles": grid.tiles,
            "batch_size": batch_size,
            "device": str(torch_device),
            "precision": precision,
            "precision_choice": precision_choice.record(precision_setting),
            "matmul_precision": matmul_precision,
            "blend": blend,
            "threads": threads,
        }
        settings = _map_settings(
            image_path, tile=tile, stride=stride, blend=blend, precision=precision,
            precision_reason=precision_choice.reason, matmul_precision=matmul_precision,
            min_valid_frames=min_valid_frames, tags=tags,
        )  # fmt: skip
        accumulator_shape, model_done, class_pixels, legend = _write_maps(
            net, src, job, out_path, confidence_path, settings, threads, progress, legend
        )
    seconds = time.perf_counter() - started
    record |= {
        "accumulator_shape": list(accumulator_shape),
        "area_km2": round(area_km2, 3),
        "seconds": round(seconds, 3),
        "tiles_seconds": round(model_done - started, 3),
        "km2_per_s": round(area_km2 / seconds, 3),
        "class_pixels": {name: int(class_pixels[i]) for i, name in enumerate(legend.names)},
        "nodata_pixels": int(class_pixels[NODATA]),
    }
    log.info(
        "%s: %d x %d px (%.1f km2), %d tiles of %d px (stride %d) on %s (%s): %.1f s, %.2f km2/s",
        out_path, height, width, area_km2, grid.tiles, tile, stride, torch_device, precision, seconds,
        record["km2_per_s"],
    )  # fmt: skip
    return record


class _Accumulator:
    """The weighted logits of the padded rows ``[base, base + tile)``, the rows that tiles still in flight can
    touch: ``(classes, tile, padded width)`` float32 on the device, created at the first batch (when the
    number of classes is known). ``valid`` holds the valid-frame counts of the strips read and not yet final.

    Coordinates are those of the padded scene (:class:`lulc.tiling.TileGrid`); scene row ``y`` is padded row
    ``y + margin``.
    """

    def __init__(self, job: _TileJob, writer: _MapWriter, confidence: bool) -> None:
        self.job = job
        self.writer = writer
        self.confidence = confidence
        self.logits: torch.Tensor | None = None
        self.base = 0  # padded row of accumulator row 0 (the row origin of the tiles being accumulated)
        self.valid: dict[int, np.ndarray] = {}

    def add(self, batch: list[tuple[int, int, torch.Tensor]], weighted: torch.Tensor) -> None:
        """Add a batch's weighted logits at its tiles' places; a tile of a new tile row first flushes the rows
        above it, which no later tile touches."""
        tile = self.job.grid.tile
        if self.logits is None:
            self.logits = torch.zeros((weighted.shape[1], tile, self.job.grid.padded_width), device=self.job.device)
        for (row, col, _), tile_logits in zip(batch, weighted, strict=True):
            if row > self.base:
                self.flush(row)
            self.logits[:, :, col : col + tile] += tile_logits

    def flush(self, upto: int) -> None:
        """Padded rows ``[base, upto)`` are final: the scene rows among them are normalised, turned into
        classes (and confidence), masked where nodata and handed to the writer; the accumulator shifts."""
        accumulator = self.logits
        assert accumulator is not None, "flush before the first tile"
        job, grid, base = self.job, self.job.grid, self.base
        tile, m = grid.tile, grid.margin
        n = upto - base
        first, last = max(base, m), min(upto, m + grid.height)  # padded rows that are scene rows
        if last > first:
            block = accumulator[:, first - base : last - base, m : m + grid.width]
            valid_frames = self.valid[base][first - base : last - base]
            nodata = torch.from_numpy(valid_frames < job.min_valid_frames).to(job.device)
            class_rows = block.argmax(dim=0).to(torch.uint8).masked_fill_(nodata, NODATA).cpu().numpy()
            confidence_rows = None
            if self.confidence:
                logits = block / (job.row_weight[first:last, None] * job.col_weight[None, :])
                scores = torch.softmax(logits, dim=0).amax(dim=0).mul_(100).round_().to(torch.uint8)
                confidence_rows = scores.masked_fill_(nodata, CONFIDENCE_NODATA).cpu().numpy()
            self.writer.write(first - m, class_rows, confidence_rows)
        # shift the accumulator up by n rows; the freed rows at the bottom start from zero
        if n < tile:
            accumulator[:, : tile - n] = accumulator[:, n:].clone()
        accumulator[:, max(tile - n, 0) :] = 0
        for row in [r for r in self.valid if r < upto]:
            del self.valid[row]
        self.base = upto


def _tiles(
    src: rasterio.io.DatasetReader, grid: TileGrid, frames: int, valid: dict[int, np.ndarray]
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Every tile as (padded row, padded column, pixels), in raster order, strip by strip; each strip's
    valid-frame counts go into ``valid`` when it is read, before its first tile."""
    for strip in _strips(src, grid, frames):
        valid[strip.row] = strip.valid_frames
        for col in grid.cols:
            yield strip.row, col, strip.pixels[..., col : col + grid.tile]


def _batches(
    tiles: Iterator[tuple[int, int, torch.Tensor]], batch_size: int
) -> Iterator[list[tuple[int, int, torch.Tensor]]]:
    """The tiles in consecutive batches of ``batch_size`` (the last one may be shorter)."""
    batch: list[tuple[int, int, torch.Tensor]] = []
    for item in tiles:
        batch.append(item)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _predict_batch(
    net: nn.Module, x: torch.Tensor, job: _TileJob, first: bool, origins: list[tuple[int, int]]
) -> torch.Tensor:
    """The model's logits of a batch, checked to be ``(B, C, tile, tile)``. A failure of the ``first`` batch
    is reported as a tile size / frame count the model cannot take (a ViT needs its training chip size).
    ``origins``: the tiles' padded origins (the time / location inputs of a model that takes them)."""
    tile = job.grid.tile
    coords = job.window_coords(origins) if job.window_coords is not None else None
    try:
        logits = net(x, coords) if coords is not None else net(x)
    except Exception as error:
        if not first:  # an earlier batch went through: not a question of tile size
            raise
        raise ValueError(
            f"the model cannot predict tiles of {tile} x {tile} px with {job.frames} frames "
            f"(config keys predict.tile / predict.stride; a ViT needs its training chip size): "
            f"{type(error).__name__}: {error}"
        ) from error
    if logits.dim() != 4 or tuple(logits.shape[-2:]) != (tile, tile) or logits.shape[0] != len(x):
        raise ValueError(f"the model returned {tuple(logits.shape)} for input {tuple(x.shape)}")
    return logits


def _run_tiles(
    net: nn.Module,
    src: rasterio.io.DatasetReader,
    job: _TileJob,
    writer: _MapWriter,
    progress: bool,
    confidence: bool,
) -> tuple[int, ...]:
    """The tile loop: batches in raster order, the strip accumulator, finished rows to ``writer``; return the
    accumulator's shape."""
    accumulator = _Accumulator(job, writer, confidence)
    bar = tqdm(total=job.grid.tiles, desc=f"predicting {Path(src.name).name}", unit="tile", leave=False,
               disable=not progress)  # fmt: skip
    with torch.inference_mode(), autocast(job.device, job.precision):  # one autocast context: weights cast once
        for batch in _batches(_tiles(src, job.grid, job.frames, accumulator.valid), job.batch_size):
            x = torch.stack([pixels for _, _, pixels in batch]).to(job.device, non_blocking=True)
            logits = _predict_batch(net, x, job, accumulator.logits is None, [(r, c) for r, c, _ in batch])
            accumulator.add(batch, logits.float().mul_(job.window_2d))
            bar.update(len(batch))
        accumulator.flush(job.grid.padded_height)
    bar.close()
    assert accumulator.logits is not None
    return tuple(accumulator.logits.shape)


# -------------------------------------------------------------------------------------------- figures


# ------------------------------------------------------------------------------------------ the stage


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
    output is removed. The image and the label are checked (:func:`check_inputs`) before the model is loaded.
    Returns :func:`predict_scene`'s record plus the agreement figures.
    """
    from lulc.models import checkpoint_legend, load_trained_model, sha256_file

    cfg = section("predict", cfg)
    if threads:
        torch.set_num_threads(int(threads))
    outputs = [Path(p) for p in (landcover, preview, comparison, confidence) if p is not None]
    try:
        if confidence is not None and not cfg["confidence"]:
            raise ValueError("a confidence output was requested but config key predict.confidence is false")
        frames = check_inputs(image, label)  # before the model is loaded or run: bad inputs cost nothing
        model, checkpoint_record = load_trained_model(checkpoint)
        info = checkpoint_record["info"]
        if frames != info["frames"]:
            raise ValueError(
                f"{image} has {frames * len(hls.PRITHVI_BANDS)} bands ({frames} frames of 6) "
                f"but {checkpoint} was trained on {info['frames']} frames (download.frames)"
            )
        legend = checkpoint_legend(checkpoint_record, checkpoint)
        legend.require_same(read_legend(label), f"checkpoint {checkpoint}", f"the labels {label}")
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
            threads=threads or cfg["threads"], legend=legend,
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
