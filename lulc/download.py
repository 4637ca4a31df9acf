"""Download stage: HLS items + label items -> one T x 6-band image, a cloud mask and a label raster per AOI.

Everything lands on one grid per AOI (CRS, resolution, bounds snapped to the resolution) through stackstac,
so imagery from several tiles, both sensors and labels on their own 10 m grid all line up pixel for pixel.
Work is done in dask chunks of ``block_size`` pixels, so a full 3660 x 3660 HLS tile never sits in memory
whole; the GeoTIFFs are written window by window and converted to COGs at the end.

Outputs (``write_aoi_stack``):

* ``image.tif``: int16 reflectance x 10000, nodata -9999, ``T * 6`` bands in the time-major order of
  :mod:`lulc.hls` (band descriptions ``t0_BLUE ... t{T-1}_SWIR_2``); Fmask-flagged pixels are nodata.
* ``mask.tif``: uint8, ``T`` bands, 0 clear, 1 masked by the Fmask flags, 255 no data.
* ``label.tif``: uint8 contiguous class indices (:mod:`lulc.classes`), 255 = ignore, IO colours embedded.
* ``frames.json``: every candidate date with its clear fraction, the chosen frames and the dropped ones.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pystac
import rasterio
import rasterio.shutil
import stackstac
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from tqdm import tqdm

from lulc import classes, hls
from lulc.io import atomic_path, write_json
from lulc.search import AOI, sensor_assets, sign_item

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Grid:
    """The output pixel grid of one AOI: a north-up raster in ``crs`` with square pixels."""

    epsg: int
    resolution: float
    left: float
    top: float
    width: int
    height: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid CRS."""
        return (
            self.left,
            self.top - self.height * self.resolution,
            self.left + self.width * self.resolution,
            self.top,
        )

    @property
    def transform(self) -> rasterio.Affine:
        return from_origin(self.left, self.top, self.resolution, self.resolution)

    @property
    def crs(self) -> rasterio.crs.CRS:
        return rasterio.crs.CRS.from_epsg(self.epsg)


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS84 UTM zone containing (lon, lat)."""
    zone = min(math.floor((lon + 180.0) / 6.0) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone


def aoi_grid(aoi: AOI, resolution: float, crs: str = "utm") -> Grid:
    """The grid of an AOI: its bbox projected to ``crs`` and snapped outward to ``resolution``.

    ``crs`` is ``"utm"`` (the UTM zone of the bbox centre) or ``"EPSG:<code>"``.
    """
    min_lon, min_lat, max_lon, max_lat = aoi.bbox
    if crs == "utm":
        epsg = utm_epsg((min_lon + max_lon) / 2.0, (min_lat + max_lat) / 2.0)
    elif crs.upper().startswith("EPSG:") and crs[5:].isdigit():
        epsg = int(crs[5:])
    else:
        raise ValueError(f"download.crs must be 'utm' or 'EPSG:<code>', got {crs!r}")
    left, bottom, right, top = transform_bounds("EPSG:4326", f"EPSG:{epsg}", *aoi.bbox, densify_pts=21)
    left = math.floor(left / resolution) * resolution
    bottom = math.floor(bottom / resolution) * resolution
    right = math.ceil(right / resolution) * resolution
    top = math.ceil(top / resolution) * resolution
    width = round((right - left) / resolution)
    height = round((top - bottom) / resolution)
    return Grid(epsg=epsg, resolution=resolution, left=left, top=top, width=width, height=height)


@dataclass
class Acquisition:
    """The HLS items of one sensor on one day over the AOI (several tiles are mosaicked)."""

    date: str
    sensor: str
    items: list[pystac.Item]
    clear_fraction: float = float("nan")

    @property
    def key(self) -> str:
        return f"{self.date}_{self.sensor}"


def group_acquisitions(items: Sequence[pystac.Item]) -> list[Acquisition]:
    """Group HLS items by (day, sensor), sorted by date then sensor."""
    groups: dict[tuple[str, str], list[pystac.Item]] = {}
    for item in items:
        if item.datetime is None:
            raise ValueError(f"HLS STAC item {item.id!r} has no datetime")
        sensor = hls.sensor_of(item.collection_id, item.id)
        groups.setdefault((item.datetime.strftime("%Y-%m-%d"), sensor), []).append(item)
    return [
        Acquisition(date, sensor, sorted(its, key=lambda i: i.id)) for (date, sensor), its in sorted(groups.items())
    ]


def _stack_acquisition(acq: Acquisition, grid: Grid, block_size: int) -> da.Array:
    """A lazy (7, H, W) int16 array: the six Prithvi bands then Fmask, mosaicked over tiles."""
    layers = []
    for item in acq.items:
        assets = sensor_assets(item)
        keys = [assets[band] for band in hls.PRITHVI_BANDS] + [assets[hls.FMASK_ASSET]]
        stack = stackstac.stack(
            [item],
            assets=keys,
            epsg=grid.epsg,
            resolution=grid.resolution,
            bounds=grid.bounds,
            snap_bounds=False,
            dtype="int16",
            fill_value=np.int16(hls.REFLECTANCE_NODATA),
            rescale=False,
            resampling=Resampling.nearest,
            chunksize=block_size,
            sortby_date=False,
            properties=False,
        )
        if stack.shape[-2:] != (grid.height, grid.width):
            raise RuntimeError(
                f"stackstac returned shape {stack.shape[-2:]} for item {item.id!r}, expected "
                f"{(grid.height, grid.width)}"
            )
        layers.append(stack.data[0])
    mosaic = layers[0]
    for layer in layers[1:]:
        # First tile wins; later tiles fill its nodata (reflectance nodata or Fmask outside the tile).
        mosaic = da.where(mosaic[-1:] == hls.REFLECTANCE_NODATA, layer, mosaic)
    return mosaic


def _masked_frame(stack: da.Array, mask_flags: Sequence[str]) -> tuple[da.Array, da.Array]:
    """Apply Fmask to a (7, H, W) stack: (6, H, W) reflectance with nodata, (H, W) uint8 mask code."""
    bands, fmask = stack[:6], stack[6]
    fmask_missing = (fmask == hls.REFLECTANCE_NODATA) | (fmask == hls.FMASK_NODATA)
    fmask_u8 = da.where(fmask_missing, hls.FMASK_NODATA, fmask).astype(np.uint8)
    flagged = fmask_u8.map_blocks(hls.fmask_flags, tuple(mask_flags), dtype=bool)
    band_missing = (bands == hls.REFLECTANCE_NODATA).any(axis=0)
    missing = fmask_missing | band_missing
    code = da.where(missing, np.uint8(255), da.where(flagged, np.uint8(1), np.uint8(0))).astype(np.uint8)
    clean = da.where((code != 0)[None], np.int16(hls.REFLECTANCE_NODATA), bands).astype(np.int16)
    return clean, code


def _timestamp(day: str) -> float:
    return datetime.fromisoformat(day).timestamp()


def select_frames(
    acquisitions: Sequence[Acquisition], frames: int, min_clear_fraction: float, start: str, end: str
) -> tuple[list[Acquisition], list[dict[str, Any]]]:
    """Pick ``frames`` acquisitions: the clearest eligible one in each of ``frames`` equal windows of
    the date range; windows without an eligible date are filled with the clearest remaining dates.

    Returns the chosen acquisitions in date order and a record of every candidate and why it was
    dropped. Raises if fewer than ``frames`` dates pass ``min_clear_fraction``.
    """
    t0, t1 = _timestamp(start), _timestamp(end)
    span = max(t1 - t0, 1.0)
    eligible = [a for a in acquisitions if a.clear_fraction >= min_clear_fraction]
    chosen: list[Acquisition] = []
    for window in range(frames):
        lo, hi = t0 + span * window / frames, t0 + span * (window + 1) / frames
        last = window == frames - 1
        in_window = [
            a for a in eligible if lo <= _timestamp(a.date) and (_timestamp(a.date) < hi or last) and a not in chosen
        ]
        if in_window:
            chosen.append(max(in_window, key=lambda a: (a.clear_fraction, a.date)))
    for acq in sorted(eligible, key=lambda a: (-a.clear_fraction, a.date)):
        if len(chosen) >= frames:
            break
        if acq not in chosen:
            chosen.append(acq)
    if len(chosen) < frames:
        raise ValueError(
            f"only {len(eligible)} of {len(acquisitions)} acquisitions have a clear fraction >= "
            f"{min_clear_fraction} (download.min_clear_fraction), but download.frames = {frames}; "
            "lower one of them, widen the AOI's dates or raise stac.imagery.max_cloud_cover"
        )
    chosen.sort(key=lambda a: (a.date, a.sensor))
    records = []
    for acq in acquisitions:
        if acq in chosen:
            status = f"frame {chosen.index(acq)}"
        elif acq.clear_fraction < min_clear_fraction:
            status = "dropped: clear fraction below download.min_clear_fraction"
        else:
            status = "dropped: a clearer date was chosen in its window"
        records.append(
            {
                "date": acq.date,
                "sensor": acq.sensor,
                "items": [i.id for i in acq.items],
                "clear_fraction": round(acq.clear_fraction, 6),
                "status": status,
            }
        )
    return chosen, records


class _WindowWriter:
    """A ``dask.array.store`` target that writes (bands, rows, cols) blocks into an open rasterio dataset."""

    def __init__(self, dataset: rasterio.io.DatasetWriter, progress: tqdm | None = None) -> None:
        self.dataset = dataset
        self.progress = progress
        self.shape = (dataset.count, dataset.height, dataset.width)
        self.dtype = np.dtype(dataset.dtypes[0])
        self.ndim = 3

    def __setitem__(self, key: tuple[slice, slice, slice], value: np.ndarray) -> None:
        bands, rows, cols = key
        indexes = list(range(bands.start + 1, bands.stop + 1))
        window = rasterio.windows.Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
        self.dataset.write(value, indexes=indexes, window=window)
        if self.progress is not None:
            self.progress.update(1)


def _write_cog(
    array: da.Array,
    path: Path,
    grid: Grid,
    nodata: float,
    descriptions: Sequence[str],
    block_size: int,
    colormap: dict[int, tuple[int, int, int, int]] | None = None,
    tags: dict[str, str] | None = None,
    overview_resampling: str = "nearest",
) -> None:
    """Stream a lazy (bands, H, W) array into a tiled GeoTIFF, then convert it to a COG atomically."""
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": array.shape[0],
        "dtype": array.dtype.name,
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "interleave": "band" if array.shape[0] > 1 else "pixel",
        "BIGTIFF": "IF_SAFER",
    }
    chunked = array.rechunk((array.shape[0], block_size, block_size))
    n_blocks = math.prod(len(c) for c in chunked.chunks)
    with atomic_path(path) as final:
        stream = final.with_name(final.name + ".stream.tif")
        try:
            _stream_and_convert(
                chunked, n_blocks, stream, final, profile, descriptions, colormap, tags, overview_resampling, path.name
            )
        finally:
            stream.unlink(missing_ok=True)


def _stream_and_convert(
    chunked: da.Array,
    n_blocks: int,
    stream: Path,
    final: Path,
    profile: dict[str, Any],
    descriptions: Sequence[str],
    colormap: dict[int, tuple[int, int, int, int]] | None,
    tags: dict[str, str] | None,
    overview_resampling: str,
    name: str,
) -> None:
    """Write ``chunked`` window by window into a tiled GeoTIFF at ``stream``, then copy it to a COG."""
    with rasterio.open(stream, "w", **profile) as dst:
        for band, description in enumerate(descriptions, start=1):
            dst.set_band_description(band, description)
        with tqdm(total=n_blocks, desc=f"writing {name}", unit="block", leave=False) as bar:
            da.store(chunked, _WindowWriter(dst, bar), lock=True)
    with rasterio.open(stream, "r+") as dst:
        if colormap is not None:
            dst.write_colormap(1, colormap)
        if tags:
            dst.update_tags(**tags)
    rasterio.shutil.copy(
        stream,
        final,
        driver="COG",
        compress="DEFLATE",
        predictor="2" if colormap is None else "NO",
        blocksize=256,
        overview_resampling=overview_resampling,
        bigtiff="IF_SAFER",
        num_threads="ALL_CPUS",
    )


def _label_item(item: pystac.Item) -> pystac.Item:
    """A copy of a label item with ``datetime`` filled from ``start_datetime`` (stackstac needs one)."""
    item = copy.deepcopy(item)
    if item.datetime is None:
        start = item.common_metadata.start_datetime
        if start is None:
            raise ValueError(f"label STAC item {item.id!r} has neither datetime nor start_datetime")
        item.datetime = start
    return item


def label_stack(items: Sequence[pystac.Item], grid: Grid, block_size: int, asset: str = "data") -> da.Array:
    """Lazy (H, W) uint8 class indices: label tiles reprojected onto ``grid`` with mode resampling,
    mosaicked (first tile wins), and remapped from IO codes to contiguous indices (255 = ignore)."""
    if not items:
        raise ValueError("no label items to download")
    stack = stackstac.stack(
        [_label_item(i) for i in items],
        assets=[asset],
        epsg=grid.epsg,
        resolution=grid.resolution,
        bounds=grid.bounds,
        snap_bounds=False,
        dtype="uint8",
        fill_value=np.uint8(classes.IO_NODATA),
        rescale=False,
        resampling=Resampling.mode,
        chunksize=block_size,
        properties=False,
    )
    codes = stack.data[:, 0]
    mosaic = codes[0]
    for layer in codes[1:]:
        mosaic = da.where(mosaic == classes.IO_NODATA, layer, mosaic)
    return mosaic.map_blocks(classes.remap_codes, dtype=np.uint8)


def write_aoi_stack(
    aoi: AOI,
    imagery: pystac.ItemCollection,
    labels: pystac.ItemCollection,
    cfg: dict[str, Any],
    out_dir: Path,
    imagery_signing: str = "none",
    labels_signing: str = "none",
) -> dict[str, Any]:
    """Build ``image.tif``, ``mask.tif``, ``label.tif`` and ``frames.json`` for one AOI in ``out_dir``.

    ``cfg`` is the ``download`` config section. Returns the frames record written to ``frames.json``.
    """
    out_dir = Path(out_dir)
    block_size = int(cfg.get("block_size", 1024))
    frames = int(cfg.get("frames", 3))
    mask_flags = tuple(cfg.get("mask_flags", hls.DEFAULT_MASK_FLAGS))
    grid = aoi_grid(aoi, float(cfg.get("resolution", 30)), cfg.get("crs", "utm"))
    log.info(
        "AOI %s: grid EPSG:%d, %d x %d pixels of %g m", aoi.name, grid.epsg, grid.width, grid.height, grid.resolution
    )
    hls_items = [sign_item(i, imagery_signing) for i in imagery]
    acquisitions = group_acquisitions(hls_items)
    if not acquisitions:
        raise ValueError(f"AOI {aoi.name}: the imagery ItemCollection is empty")

    with dask.config.set(scheduler="threads"):
        stacks = {a.key: _stack_acquisition(a, grid, block_size) for a in acquisitions}
        for acq in tqdm(acquisitions, desc=f"{aoi.name}: clear fraction per date", unit="date"):
            _, code = _masked_frame(stacks[acq.key], mask_flags)
            acq.clear_fraction = float((code == 0).mean().compute())
            log.info("%s %s: clear fraction %.3f", acq.date, acq.sensor, acq.clear_fraction)
        start, end = aoi.start.isoformat(), aoi.end.isoformat()
        chosen, records = select_frames(acquisitions, frames, float(cfg.get("min_clear_fraction", 0.6)), start, end)
        log.info("AOI %s: frames %s", aoi.name, [a.key for a in chosen])

        masked = [_masked_frame(stacks[a.key], mask_flags) for a in chosen]
        image = da.concatenate([m[0] for m in masked], axis=0)
        mask = da.stack([m[1] for m in masked], axis=0)
        frame_tags = {
            f"FRAME_{t}": f"{a.date} {a.sensor} {','.join(i.id for i in a.items)}" for t, a in enumerate(chosen)
        }
        order_tag = {
            "BAND_ORDER": "time-major: band t*6+b = frame t, Prithvi band b (" + ",".join(hls.PRITHVI_BANDS) + ")"
        }
        _write_cog(
            image,
            out_dir / "image.tif",
            grid,
            hls.REFLECTANCE_NODATA,
            hls.band_names(len(chosen)),
            block_size,
            tags={**frame_tags, **order_tag, "SCALE": str(1 / hls.REFLECTANCE_SCALE)},
            overview_resampling="average",
        )
        _write_cog(
            mask,
            out_dir / "mask.tif",
            grid,
            255,
            [f"t{t}_fmask_{'+'.join(mask_flags)}" for t in range(len(chosen))],
            block_size,
            tags={**frame_tags, "VALUES": "0 clear, 1 masked by Fmask flags, 255 no data"},
        )
        label_items = [sign_item(i, labels_signing) for i in labels]
        label = label_stack(label_items, grid, block_size)[None]
        _write_cog(
            label,
            out_dir / "label.tif",
            grid,
            classes.IGNORE_INDEX,
            ["class_index"],
            block_size,
            colormap=classes.index_colormap(),
            tags={
                "CLASSES": ",".join(f"{i}={n}" for i, n in enumerate(classes.CLASS_NAMES)),
                "IGNORE_INDEX": str(classes.IGNORE_INDEX),
                "SOURCE_ITEMS": ",".join(i.id for i in labels),
                "RESAMPLING": "mode",
            },
            overview_resampling="mode",
        )
    record = {
        "aoi": aoi.name,
        "grid": {
            "epsg": grid.epsg,
            "resolution": grid.resolution,
            "bounds": list(grid.bounds),
            "width": grid.width,
            "height": grid.height,
        },
        "band_order": hls.band_names(len(chosen)),
        "mask_flags": list(mask_flags),
        "frames": [
            {
                "date": a.date,
                "sensor": a.sensor,
                "items": [i.id for i in a.items],
                "clear_fraction": round(a.clear_fraction, 6),
            }
            for a in chosen
        ],
        "candidates": records,
        "dropped": [r for r in records if r["status"].startswith("dropped")],
    }
    write_json(record, out_dir / "frames.json")
    return record
