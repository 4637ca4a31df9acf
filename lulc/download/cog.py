"""Writing a lazy (bands, H, W) dask array as a Cloud Optimized GeoTIFF on a :class:`~lulc.grid.Grid`.

The array is streamed window by window (:class:`_WindowWriter`) into a tiled GeoTIFF, so a whole HLS tile never
sits in memory, then converted to a COG atomically (:func:`write_cog`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import rasterio
from tqdm import tqdm

from lulc.grid import Grid
from lulc.io import atomic_path, copy_to_cog


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


def write_cog(
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
            da.store(chunked, _WindowWriter(dst, bar), lock=True)  # type: ignore[arg-type]  # any __setitem__ target
    with rasterio.open(stream, "r+") as dst:
        if colormap is not None:
            dst.write_colormap(1, colormap)
        if tags:
            dst.update_tags(**tags)
    copy_to_cog(stream, final, overview_resampling, predictor=colormap is None)
