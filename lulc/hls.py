"""HLS v2.0 facts: band names, the one documented frame/band order, and Fmask decoding.

Every image array in this project is ordered **time-major**: frame ``t`` (oldest first) holds the six
Prithvi bands in :data:`PRITHVI_BANDS` order, so band ``b`` of frame ``t`` sits at flat index
``t * 6 + b``. The downloaded COG, the chip store (``(N, T, 6, H, W)``) and the models all use it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

#: The six bands Prithvi was pretrained on, in its order.
PRITHVI_BANDS: tuple[str, ...] = ("BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2")

#: HLS asset key for each Prithvi band, per product (S30 = Sentinel-2, L30 = Landsat).
SENSOR_ASSETS: dict[str, tuple[str, ...]] = {
    "S30": ("B02", "B03", "B04", "B8A", "B11", "B12"),
    "L30": ("B02", "B03", "B04", "B05", "B06", "B07"),
}

#: The quality asset, identical in both products.
FMASK_ASSET = "Fmask"

#: HLS reflectance: int16, reflectance x 10000, this nodata value.
REFLECTANCE_NODATA = -9999
REFLECTANCE_SCALE = 10000
#: Scale / offset metadata (GDAL's per-band scale and offset, netCDF-style ``scale_factor`` / ``add_offset``
#: tags) that mean "the stored integer is reflectance x 10000": no scale (1) or HLS's own 0.0001, offset 0.
REFLECTANCE_SCALES: tuple[float, ...] = (1.0, 1.0 / REFLECTANCE_SCALE)
#: What an image stack must be, for error messages.
REFLECTANCE_EXPECTED = (
    f"HLS v2.0 surface reflectance: int16, reflectance x {REFLECTANCE_SCALE} (no scale/offset, or scale "
    f"{1 / REFLECTANCE_SCALE:g} and offset 0), nodata {REFLECTANCE_NODATA}"
)
#: Fmask is uint8 with this nodata value.
FMASK_NODATA = 255

#: Fmask bit positions (HLS v2.0 user guide, table 9). Bits 6-7 are the aerosol level.
FMASK_BITS: dict[str, int] = {
    "cirrus": 0,
    "cloud": 1,
    "adjacent": 2,
    "shadow": 3,
    "snow": 4,
    "water": 5,
}

#: Flags that make a pixel unusable by default (config ``download.mask_flags``).
DEFAULT_MASK_FLAGS: tuple[str, ...] = ("cloud", "adjacent", "shadow")

#: Collection names that identify the sensor of an HLS item, for every STAC source we support.
COLLECTION_SENSOR: dict[str, str] = {
    "hls2-s30": "S30",
    "hls2-l30": "L30",
    "HLSS30_2.0": "S30",
    "HLSL30_2.0": "L30",
    "HLSS30.v2.0": "S30",
    "HLSL30.v2.0": "L30",
}


class ReflectanceError(ValueError):
    """An image stack that is not HLS int16 reflectance x 10000 (a float 0-1 or uint16 product, say)."""


def check_reflectance(path: str | os.PathLike[str], src: Any) -> None:
    """Refuse an image stack that is not int16 reflectance x 10000, before any work reads its pixels.

    ``src``: the open rasterio dataset of ``path``. Reads its bands' dtypes, GDAL scales and offsets, and the
    ``scale_factor`` / ``add_offset`` tags (dataset and bands) that netCDF and HDF products carry. Nothing
    is converted: a cast of float reflectance 0-1 to int16 makes every pixel 0, one of uint16 above 32767
    wraps, and either would give a plausible-looking, wrong map.
    """
    dtypes: Sequence[str] = src.dtypes
    scales: Iterable[float | None] = src.scales
    offsets: Iterable[float | None] = src.offsets
    tags: list[Mapping[str, str]] = [src.tags(), *(src.tags(band) for band in src.indexes)]
    problems = []
    kinds = sorted(set(dtypes))
    if kinds != ["int16"]:
        problems.append(f"its bands are {', '.join(kinds) or 'missing'}")
    found_scales = {float(v) for v in scales if v is not None}
    found_offsets = {float(v) for v in offsets if v is not None}
    for mapping in tags:
        for key, value in mapping.items():
            target = {"scale_factor": found_scales, "add_offset": found_offsets}.get(key.lower())
            if target is not None:
                try:
                    target.add(float(value))
                except ValueError:
                    problems.append(f"its {key} tag is {value!r}")
    bad_scales = sorted(v for v in found_scales if not any(math.isclose(v, ok) for ok in REFLECTANCE_SCALES))
    if bad_scales:
        problems.append(f"its scale is {', '.join(f'{v:g}' for v in bad_scales)}")
    bad_offsets = sorted(v for v in found_offsets if v != 0)
    if bad_offsets:
        problems.append(f"its offset is {', '.join(f'{v:g}' for v in bad_offsets)}")
    if problems:
        raise ReflectanceError(
            f"{path}: {'; '.join(problems)}, but the workflow expects {REFLECTANCE_EXPECTED}. Convert it first "
            f"(float reflectance 0-1: round(x * {REFLECTANCE_SCALE}) as int16, nodata {REFLECTANCE_NODATA}), or "
            f"rerun the download stage, which writes this format"
        )


def sensor_of(collection: str | None, item_id: str = "") -> str:
    """Return ``"S30"`` or ``"L30"`` for an HLS item, from its collection or, failing that, its id."""
    if collection in COLLECTION_SENSOR:
        return COLLECTION_SENSOR[collection]
    for sensor in SENSOR_ASSETS:
        if f".{sensor}." in item_id or item_id.startswith(f"{sensor}"):
            return sensor
    raise ValueError(
        f"STAC item {item_id!r} (collection {collection!r}) is not an HLS S30 or L30 item; "
        f"known collections: {sorted(COLLECTION_SENSOR)}"
    )


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS84 UTM zone containing (lon, lat): the grid HLS tiles (MGRS) are cut on."""
    zone = min(math.floor((lon + 180.0) / 6.0) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone


def band_names(frames: int) -> list[str]:
    """Descriptions of a ``frames x 6`` time-major stack: ``t0_BLUE, t0_GREEN, ..., t{T-1}_SWIR_2``."""
    return [f"t{t}_{band}" for t in range(frames) for band in PRITHVI_BANDS]


def fmask_flags(fmask: np.ndarray, flags: tuple[str, ...] | list[str]) -> np.ndarray:
    """Boolean mask of pixels where any of ``flags`` is set (nodata pixels are never flagged)."""
    unknown = set(flags) - set(FMASK_BITS)
    if unknown:
        raise ValueError(f"unknown Fmask flag(s) {sorted(unknown)}; known: {sorted(FMASK_BITS)}")
    bits = 0
    for flag in flags:
        bits |= 1 << FMASK_BITS[flag]
    fmask = np.asarray(fmask)
    return ((fmask & bits) != 0) & (fmask != FMASK_NODATA)


def fmask_valid(fmask: np.ndarray) -> np.ndarray:
    """Boolean mask of pixels that carry a quality value (not Fmask nodata)."""
    return np.asarray(fmask) != FMASK_NODATA


def cloud_coverage(fmask: np.ndarray) -> float:
    """Percentage of valid pixels flagged cloud or cloud shadow: NASA's ``CLOUD_COVERAGE`` definition."""
    valid = fmask_valid(fmask)
    n_valid = int(valid.sum())
    if n_valid == 0:
        return 100.0
    cloudy = fmask_flags(fmask, ("cloud", "shadow"))
    return 100.0 * float(cloudy.sum()) / n_valid
