"""The imagery of one acquisition on the output grid: a lazy HLS stack, its Fmask mask and clear fraction.

:func:`stack_acquisition` mosaics an acquisition's tiles into a lazy (7, H, W) dask array (six Prithvi bands,
then Fmask), one asset per chunk, so the clear fraction (:func:`clear_share`) reads Fmask alone;
:func:`masked_frame` turns a chosen acquisition into reflectance with nodata and a mask code; :func:`region_coverage`
counts a map region's clear pixels among those that have imagery, and :func:`nodata_stack` stands for a date with
no item over a tile.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import dask.array as da
import numpy as np
import stackstac
from rasterio.enums import Resampling

from lulc import hls
from lulc.download.frames import Acquisition
from lulc.download.items import plain, sensor_assets
from lulc.grid import Grid

log = logging.getLogger(__name__)


class NoOverlap(ValueError):
    """None of the HLS items of one acquisition overlaps the output grid (a ValueError, as it always was)."""


def stack_acquisition(
    acq: Acquisition, grid: Grid, block_size: int, env: stackstac.rio_env.LayeredEnv | None = None
) -> da.Array:
    """A lazy (7, H, W) int16 array: the six Prithvi bands then Fmask, mosaicked over tiles.

    Band chunks are single assets, so computing Fmask alone reads only the Fmask assets."""
    layers = []
    for item in acq.items:
        assets = sensor_assets(item)
        keys = [assets[band] for band in hls.PRITHVI_BANDS] + [assets[hls.FMASK_ASSET]]
        stack = stackstac.stack(
            [plain(item)],
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
            gdal_env=env,
            errors_as_nodata=(),  # stackstac's default turns an HTTP 404 into nodata: a missing asset is an error
        )
        if stack.shape[0] == 0 or stack.shape[1] != len(keys):
            log.info("HLS item %s does not overlap the AOI grid: skipped", item.id)
            continue
        if stack.shape[-2:] != (grid.height, grid.width):
            raise RuntimeError(
                f"stackstac returned shape {stack.shape[-2:]} for item {item.id!r}, expected "
                f"{(grid.height, grid.width)}"
            )
        layers.append(stack.data[0])
    if not layers:
        raise NoOverlap(
            f"none of the HLS items {[i.id for i in acq.items]} of {acq.date} {acq.sensor} overlaps the AOI grid "
            f"(EPSG:{grid.epsg}, bounds {grid.bounds}) according to its footprint metadata"
        )
    mosaic = layers[0]
    for layer in layers[1:]:
        # First tile wins; later tiles fill where it has no Fmask (outside its footprint: the fill value;
        # inside it but outside the satellite's swath: Fmask nodata).
        missing = (mosaic[-1:] == hls.REFLECTANCE_NODATA) | (mosaic[-1:] == hls.FMASK_NODATA)
        mosaic = da.where(missing, layer, mosaic)
    return mosaic


def _fmask_code(fmask: da.Array, mask_flags: Sequence[str]) -> da.Array:
    """(H, W) uint8 from an int16 Fmask layer: 0 clear, 1 flagged by ``mask_flags``, 255 no Fmask."""
    fmask_missing = (fmask == hls.REFLECTANCE_NODATA) | (fmask == hls.FMASK_NODATA)
    fmask_u8 = da.where(fmask_missing, hls.FMASK_NODATA, fmask).astype(np.uint8)
    flagged = fmask_u8.map_blocks(hls.fmask_flags, tuple(mask_flags), dtype=bool)
    return da.where(fmask_missing, np.uint8(255), da.where(flagged, np.uint8(1), np.uint8(0))).astype(np.uint8)


def masked_frame(stack: da.Array, mask_flags: Sequence[str]) -> tuple[da.Array, da.Array]:
    """Apply Fmask to a (7, H, W) stack: (6, H, W) reflectance with nodata, (H, W) uint8 mask code."""
    bands = stack[:6]
    band_missing = (bands == hls.REFLECTANCE_NODATA).any(axis=0)
    code = da.where(band_missing, np.uint8(255), _fmask_code(stack[6], mask_flags)).astype(np.uint8)
    clean = da.where((code != 0)[None], np.int16(hls.REFLECTANCE_NODATA), bands).astype(np.int16)
    return clean, code


def clear_share(stack: da.Array, mask_flags: Sequence[str]) -> da.Array:
    """Lazy share of the AOI grid's pixels whose Fmask is valid and carries none of ``mask_flags`` (reads
    only the Fmask assets of a (7, H, W) acquisition stack)."""
    return (_fmask_code(stack[6], mask_flags) == 0).mean()


def region_coverage(stack: da.Array, mask_flags: Sequence[str], inside: np.ndarray) -> tuple[da.Array, da.Array]:
    """Lazy (clear pixels inside the region, (H, W) bool: pixels inside the region that have imagery) of a
    (7, H, W) acquisition stack; ``inside`` is the region's (H, W) mask. Reads only the Fmask assets. A pixel has
    imagery where its Fmask is valid (inside the item's footprint and the satellite's swath)."""
    code = _fmask_code(stack[6], mask_flags)
    inside_lazy = da.from_array(inside, chunks=code.chunks)
    return ((code == 0) & inside_lazy).sum(), (code != 255) & inside_lazy


def nodata_stack(grid: Grid, block_size: int) -> da.Array:
    """A lazy (7, H, W) stack with no imagery at all: the frame of a date chosen for a map region that has no
    item over this grid (every pixel nodata, mask code 255)."""
    return da.full(
        (7, grid.height, grid.width), hls.REFLECTANCE_NODATA, dtype=np.int16, chunks=(1, block_size, block_size)
    )


def clear_fraction(stack: da.Array, mask_flags: Sequence[str]) -> float:
    """The clear fraction of one acquisition (see :func:`clear_share`)."""
    return float(clear_share(stack, mask_flags).compute())
