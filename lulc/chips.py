"""Chips stage: cut an AOI's image / mask / label rasters into chips, a manifest and a packed chip store.

The chip store is two NumPy ``.npy`` files that a PyTorch DataLoader memory-maps (no per-chip file
opens, no decoding): ``images.npy`` int16 ``(N, T, 6, size, size)`` in the time-major order of
:mod:`lulc.hls`, and ``labels.npy`` uint8 ``(N, size, size)`` with contiguous class indices and
:data:`lulc.legends.IGNORE_INDEX`. Pixels stay int16 until they reach the model.

The manifest (``manifest.parquet``, GeoParquet in the AOI's CRS) has one row per kept chip: ``chip_id``,
``aoi``, ``index`` (row in the chip store), the window (``row_off``, ``col_off``, ``height``,
``width``), the footprint ``geometry``, ``valid_fraction`` (labelled pixels clear in every frame),
``cloud_fraction`` (pixels masked by Fmask in at least one frame), ``labelled_pixels`` and ``px_<class>`` pixel
counts, one column per class of the label raster's legend (:func:`pixel_columns`).

The summary (``summary.json``) records the legend (read from the label raster's tags, :func:`chip_legend` reads it
back), the chips kept and those dropped for a low valid fraction or too few labelled pixels (sparse labels).

Only strips of ``size`` rows are read at a time, so memory stays bounded for full-size HLS tiles.

The inputs are checked before anything is written (:func:`check_inputs`): image, mask and label each have a CRS,
lie on one grid (equal CRS and shape, transforms within :data:`lulc.tiling.GRID_TOLERANCE` of a pixel) and the
image is HLS int16 reflectance x 10000.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
from rasterio.windows import Window
from shapely.geometry import box
from tqdm import tqdm

from lulc import hls
from lulc.io import atomic_path, write_json
from lulc.legends import IGNORE_INDEX, Legend, dataset_legend
from lulc.schema import section
from lulc.tiling import GridError, check_same_grid, require_crs

log = logging.getLogger(__name__)


def pixel_columns(names: Sequence[str]) -> list[str]:
    """Manifest columns with the per-class pixel counts, in class-index order."""
    return [f"px_{name}" for name in names]


@dataclass(frozen=True)
class ChipStore:
    """Paths of one AOI's chip store."""

    directory: Path

    @property
    def images(self) -> Path:
        return self.directory / "images.npy"

    @property
    def labels(self) -> Path:
        return self.directory / "labels.npy"

    @property
    def manifest(self) -> Path:
        return self.directory / "manifest.parquet"

    @property
    def summary(self) -> Path:
        return self.directory / "summary.json"


def chip_offsets(length: int, size: int, stride: int) -> list[int]:
    """Offsets of the full chips along one axis (partial chips at the far edge are not cut)."""
    if size <= 0 or stride <= 0:
        raise ValueError(f"chips.size and chips.stride must be positive, got {size} and {stride}")
    return list(range(0, length - size + 1, stride))


def _row_strips(
    image: rasterio.DatasetReader | None,
    mask: rasterio.DatasetReader,
    label: rasterio.DatasetReader,
    size: int,
    stride: int,
) -> Iterator[tuple[int, np.ndarray | None, np.ndarray, np.ndarray]]:
    """Yield (row offset, image strip, mask strip, label strip) for every chip row."""
    for row in chip_offsets(label.height, size, stride):
        window = Window(0, row, label.width, size)
        strip = image.read(window=window) if image is not None else None
        yield row, strip, mask.read(window=window), label.read(1, window=window)


def _chip_stats(mask_chip: np.ndarray, label_chip: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Training labels for one chip (ignore where no frame is clear) and its valid / cloud fractions."""
    clear = mask_chip == 0
    label_chip = np.where(clear.any(axis=0), label_chip, IGNORE_INDEX).astype(np.uint8)
    labelled = label_chip != IGNORE_INDEX
    valid_fraction = float((clear.all(axis=0) & labelled).mean())
    cloud_fraction = float((mask_chip == 1).any(axis=0).mean())
    return label_chip, valid_fraction, cloud_fraction


def check_inputs(
    aoi: str,
    image_path: Path,
    image: rasterio.DatasetReader,
    mask_path: Path,
    mask: rasterio.DatasetReader,
    label_path: Path,
    label: rasterio.DatasetReader,
) -> None:
    """Refuse inputs the chips cannot be cut from, before anything is written: each raster has a CRS, the
    mask and the label lie on the image's grid (:func:`lulc.tiling.check_same_grid`), the image is HLS int16
    reflectance x 10000 (:func:`lulc.hls.check_reflectance`). Errors name the AOI and the file."""
    try:
        for path, raster in ((image_path, image), (mask_path, mask), (label_path, label)):
            require_crs(path, raster)
        check_same_grid(image_path, image, mask_path, mask)
        check_same_grid(image_path, image, label_path, label)
        hls.check_reflectance(image_path, image)
    except GridError as error:
        raise GridError(f"AOI {aoi}: {error}") from None
    except hls.ReflectanceError as error:
        raise hls.ReflectanceError(f"AOI {aoi}: {error}") from None


@dataclass
class _Scan:
    """The first pass's result: the kept chips' manifest records, and what explains an empty result."""

    records: list[dict[str, Any]]
    windows: int
    labelled_pixels: int = 0  # labelled pixels in the whole AOI
    best_valid: float = 0.0  # the highest valid fraction of any chip
    dropped_low_valid: int = 0  # chips below chips.min_valid_fraction
    dropped_few_labelled: int = 0  # chips clear enough but with fewer labelled pixels than chips.min_labelled_pixels


def _check_chip_inputs(
    aoi: str,
    image_path: Path,
    image: rasterio.DatasetReader,
    mask_path: Path,
    mask: rasterio.DatasetReader,
    label_path: Path,
    label: rasterio.DatasetReader,
    size: int,
) -> None:
    """:func:`check_inputs`, then what the chips need besides: uint8 single-band label and uint8 mask, six
    image bands per mask frame, and an AOI grid at least one chip wide and high. Run before anything is written."""
    check_inputs(aoi, image_path, image, mask_path, mask, label_path, label)
    if label.count != 1 or label.dtypes[0] != "uint8" or mask.dtypes[0] != "uint8":
        raise ValueError(f"AOI {aoi}: expected a single-band uint8 label raster ({label_path}) and a uint8 mask")
    if image.count != 6 * mask.count:
        raise ValueError(f"AOI {aoi}: {image_path} has {image.count} bands, expected 6 x {mask.count} frames")
    if size > min(label.height, label.width):
        raise ValueError(
            f"AOI {aoi}: chips.size = {size} is larger than the AOI grid ({label.height} x {label.width} pixels)"
        )


def _chip_record(
    aoi: str,
    index: int,
    row: int,
    col: int,
    size: int,
    chip_labels: np.ndarray,
    valid_fraction: float,
    cloud_fraction: float,
    transform: Any,
    names: Sequence[str],
) -> dict[str, Any]:
    """The manifest row of one kept chip (see the module docstring): its window, footprint, fractions and
    per-class pixel counts."""
    counts = np.bincount(chip_labels.ravel(), minlength=256)[: len(names)]
    left, top = transform @ (col, row)
    right, bottom = transform @ (col + size, row + size)
    return {
        "chip_id": f"{aoi}_r{row:05d}_c{col:05d}",
        "aoi": aoi,
        "index": index,
        "row_off": row,
        "col_off": col,
        "height": size,
        "width": size,
        "valid_fraction": round(valid_fraction, 6),
        "cloud_fraction": round(cloud_fraction, 6),
        **{column: int(n) for column, n in zip(pixel_columns(names), counts, strict=True)},
        "geometry": box(left, bottom, right, top),
    }


def _scan_chips(
    aoi: str,
    mask: rasterio.DatasetReader,
    label: rasterio.DatasetReader,
    size: int,
    stride: int,
    min_valid: float,
    min_labelled: int,
    names: Sequence[str],
) -> _Scan:
    """First pass: read only the mask and label strips and keep the chips whose valid fraction reaches
    ``min_valid`` and that hold at least ``min_labelled`` labelled pixels, in raster order (their store index is
    their position)."""
    cols = chip_offsets(label.width, size, stride)
    rows = chip_offsets(label.height, size, stride)
    scan = _Scan(records=[], windows=len(rows) * len(cols))
    for row, _, mask_strip, label_strip in tqdm(
        _row_strips(None, mask, label, size, stride), total=len(rows), desc=f"{aoi}: scanning chips", unit="row"
    ):
        scan.labelled_pixels += int(np.count_nonzero(label_strip != IGNORE_INDEX))
        for col in cols:
            chip_labels, valid_fraction, cloud_fraction = _chip_stats(
                mask_strip[:, :, col : col + size], label_strip[:, col : col + size]
            )
            scan.best_valid = max(scan.best_valid, valid_fraction)
            if valid_fraction < min_valid:
                scan.dropped_low_valid += 1
                continue
            if min_labelled and np.count_nonzero(chip_labels != IGNORE_INDEX) < min_labelled:
                scan.dropped_few_labelled += 1
                continue
            scan.records.append(
                _chip_record(
                    aoi,
                    len(scan.records),
                    row,
                    col,
                    size,
                    chip_labels,
                    valid_fraction,
                    cloud_fraction,
                    label.transform,
                    names,
                )
            )
    return scan


def _require_kept_chips(aoi: str, label_path: Path, scan: _Scan, min_valid: float, min_labelled: int) -> None:
    """Refuse an AOI with no kept chip, saying why: no labelled pixel at all, or no chip clear enough."""
    if not scan.records and scan.labelled_pixels == 0:
        raise ValueError(
            f"AOI {aoi}: every pixel of {label_path} is nodata: the label source has no class here (check "
            f"stac.labels and the AOI's year or dates; the labels may not cover this AOI)"
        )
    if not scan.records and scan.dropped_few_labelled:
        raise ValueError(
            f"AOI {aoi}: every chip clear enough has fewer than chips.min_labelled_pixels = {min_labelled} labelled "
            f"pixels ({scan.dropped_few_labelled} such chips; {scan.labelled_pixels} labelled pixels in the AOI); "
            "lower the key, or add labels"
        )
    if not scan.records:
        raise ValueError(
            f"AOI {aoi}: none of the {scan.windows} chips reaches chips.min_valid_fraction = {min_valid} (the best "
            f"has {scan.best_valid:.2f} of its pixels labelled and clear in every frame); lower the key, or choose "
            "clearer dates (download.min_clear_fraction, download.season_windows)"
        )


def _pack_chips(
    aoi: str,
    image: rasterio.DatasetReader,
    mask: rasterio.DatasetReader,
    label: rasterio.DatasetReader,
    records: list[dict[str, Any]],
    size: int,
    store: ChipStore,
) -> None:
    """Second pass: copy the kept chips' pixels and training labels into the pre-sized memory-mapped chip
    store, reading only the strips that hold a kept chip; both files appear atomically."""
    frames = mask.count
    kept_by_row: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        kept_by_row.setdefault(record["row_off"], []).append(record)
    with atomic_path(store.images) as images_tmp, atomic_path(store.labels) as labels_tmp:
        images_out = np.lib.format.open_memmap(
            images_tmp, mode="w+", dtype=np.int16, shape=(len(records), frames, 6, size, size)
        )
        labels_out = np.lib.format.open_memmap(labels_tmp, mode="w+", dtype=np.uint8, shape=(len(records), size, size))
        for row in tqdm(sorted(kept_by_row), desc=f"{aoi}: packing chips", unit="row"):
            window = Window(0, row, label.width, size)
            image_strip = image.read(window=window).reshape(frames, 6, size, label.width)
            mask_strip = mask.read(window=window)
            label_strip = label.read(1, window=window)
            for record in kept_by_row[row]:
                col, index = record["col_off"], record["index"]
                images_out[index] = image_strip[..., col : col + size]
                labels_out[index], _, _ = _chip_stats(
                    mask_strip[:, :, col : col + size], label_strip[:, col : col + size]
                )
        images_out.flush()
        labels_out.flush()
        del images_out, labels_out


def _write_manifest(records: list[dict[str, Any]], crs: Any, store: ChipStore) -> gpd.GeoDataFrame:
    """Write the manifest (GeoParquet in the AOI's CRS) atomically and return it."""
    manifest = gpd.GeoDataFrame(pd.DataFrame.from_records(records), geometry="geometry", crs=crs)
    with atomic_path(store.manifest) as tmp:
        manifest.to_parquet(tmp, index=False)
    return manifest


def make_chips(
    aoi: str,
    image_path: Path,
    mask_path: Path,
    label_path: Path,
    cfg: dict[str, Any],
    out_dir: Path,
) -> dict[str, Any]:
    """Write the chip store, manifest and summary of one AOI into ``out_dir``; return the summary.

    ``cfg`` is the ``chips`` config section (``size``, ``stride``, ``min_valid_fraction``,
    ``min_labelled_pixels``); the classes are those of the label raster's legend (its ``LEGEND`` tag). Two passes
    over the rasters: the first reads only the small mask and label bands to decide which chips to keep,
    the second copies the kept chips' pixels into a pre-sized memory-mapped store. The inputs are checked
    first (:func:`check_inputs`, then bands and dtypes): a bad input raises a ``ValueError`` and writes nothing.
    """
    cfg = section("chips", cfg)
    size = int(cfg["size"])
    stride = int(cfg["stride"] or size)
    min_valid = float(cfg["min_valid_fraction"])
    min_labelled = int(cfg["min_labelled_pixels"])
    store = ChipStore(Path(out_dir))

    with rasterio.open(image_path) as image, rasterio.open(mask_path) as mask, rasterio.open(label_path) as label:
        _check_chip_inputs(aoi, image_path, image, mask_path, mask, label_path, label, size)
        legend = dataset_legend(label, str(label_path))
        frames = mask.count
        scan = _scan_chips(aoi, mask, label, size, stride, min_valid, min_labelled, legend.names)
        n_kept = len(scan.records)
        log.info("AOI %s: %d of %d chips kept (valid fraction >= %g, labelled pixels >= %d); legend %s", aoi,
                 n_kept, scan.windows, min_valid, min_labelled, legend.name)  # fmt: skip
        _require_kept_chips(aoi, label_path, scan, min_valid, min_labelled)
        _pack_chips(aoi, image, mask, label, scan.records, size, store)
        crs = label.crs
        periods = {
            "labels": label.tags().get("LABEL_PERIOD"),
            "imagery": [v.split()[0] for k, v in sorted(image.tags().items()) if k.startswith("FRAME_")],
        }

    manifest = _write_manifest(scan.records, crs, store)
    totals = manifest[pixel_columns(legend.names)].sum()
    summary = {
        "aoi": aoi,
        "chip_size": size,
        "stride": stride,
        "frames": frames,
        "band_order": hls.band_names(frames),
        "min_valid_fraction": min_valid,
        "windows": scan.windows,
        "kept": n_kept,
        "dropped_low_valid_fraction": scan.dropped_low_valid,
        "class_pixels": {name: int(totals[f"px_{name}"]) for name in legend.names},
        "crs": crs.to_string(),
        "legend": legend.to_dict(),
        "periods": periods,
        **(
            {"min_labelled_pixels": min_labelled, "dropped_few_labelled_pixels": scan.dropped_few_labelled}
            if min_labelled
            else {}
        ),
    }
    write_json(summary, store.summary)
    return summary


def chip_legend(stores: Mapping[str, str | os.PathLike[str]]) -> Legend:
    """The legend of the chip stores (AOI -> store directory), recorded in their summaries; stores of different
    legends are refused, naming them."""
    legends = {}
    for aoi, directory in sorted(stores.items()):
        summary = json.loads(ChipStore(Path(directory)).summary.read_text())
        if "legend" not in summary:
            raise ValueError(f"chip store {directory} (AOI {aoi}) records no legend: rerun rule chips")
        legends[aoi] = Legend.from_dict(summary["legend"], where=f"{directory}/summary.json")
    first_aoi, first = next(iter(legends.items()))
    for aoi, legend in legends.items():
        first.require_same(legend, f"the chips of AOI {first_aoi}", f"the chips of AOI {aoi}")
    return first


def chip_periods(stores: Mapping[str, str | os.PathLike[str]]) -> dict[str, Any]:
    """AOI -> the periods its chips' labels and imagery describe (the label period, the frames' dates)."""
    return {
        aoi: json.loads(ChipStore(Path(directory)).summary.read_text()).get("periods")
        for aoi, directory in sorted(stores.items())
    }


def read_manifest(path: Path) -> gpd.GeoDataFrame:
    """Read a chip manifest written by :func:`make_chips`."""
    return gpd.read_parquet(path)


def export_geotiff_chips(store_dir: Path, image_path: Path, out_dir: Path) -> int:
    """Write every chip of a store as an ``<id>_image.tif`` / ``<id>_label.tif`` GeoTIFF pair.

    The layout TerraTorch's generic segmentation datasets and QGIS read. Returns the number of pairs.
    """
    store = ChipStore(Path(store_dir))
    manifest = read_manifest(store.manifest)
    images = np.load(store.images, mmap_mode="r")
    labels = np.load(store.labels, mmap_mode="r")
    legend = Legend.from_dict(json.loads(store.summary.read_text())["legend"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with rasterio.open(image_path) as src:
        transform, crs, descriptions = src.transform, src.crs, src.descriptions
    for record in tqdm(manifest.itertuples(), total=len(manifest), desc="exporting GeoTIFF chips", unit="chip"):
        window = Window(record.col_off, record.row_off, record.width, record.height)
        chip_transform = rasterio.windows.transform(window, transform)
        image = np.asarray(images[record.index]).reshape(-1, record.height, record.width)
        common = {
            "driver": "GTiff",
            "height": record.height,
            "width": record.width,
            "crs": crs,
            "transform": chip_transform,
            "tiled": False,
        }
        with atomic_path(out_dir / f"{record.chip_id}_image.tif") as tmp:
            with rasterio.open(
                tmp, "w", count=image.shape[0], dtype="int16", nodata=hls.REFLECTANCE_NODATA, **common
            ) as dst:
                dst.write(image)
                for band, description in enumerate(descriptions, start=1):
                    dst.set_band_description(band, description or "")
        with atomic_path(out_dir / f"{record.chip_id}_label.tif") as tmp:
            with rasterio.open(tmp, "w", count=1, dtype="uint8", nodata=IGNORE_INDEX, **common) as dst:
                dst.write(np.asarray(labels[record.index])[None])
                dst.write_colormap(1, legend.colormap())
                dst.update_tags(**legend.tags())
    return len(manifest)
