"""The offline demo region: synthetic HLS v2.0 scenes and IO-LULC-like labels in a static STAC catalog.

Without network (CI, laptops, the default config) the workflow runs on regions that this module generates
deterministically from a seed, with the file formats, asset keys and STAC structure of the real sources
(Microsoft Planetary Computer ``hls2-s30``, ``hls2-l30`` and ``io-lulc-annual-v02``), so search, download
and chipping run exactly the code path real data takes.

How a region is made, and why:

* A latent land-cover map at 10 m (IO class codes) is drawn from smoothed noise fields, survey-grid or
  Voronoi field parcels, a meandering river with a reservoir, towns and farmsteads. ``agricultural``
  regions (Iowa-like) are dominated by crops; ``valley`` regions by trees and rangeland around a valley
  floor with crops, a town, a lake, rocky ridges and a little permanent snow. Class imbalance is
  realistic: rare classes (flooded vegetation, bare ground, snow, clouds) cover well under 2 %.
* Labels are that map on their own 10 m grid, whose origin is offset by :data:`LABEL_GRID_OFFSET_M`
  from the 30 m imagery grid (so mode resampling onto the imagery grid is real work), with label noise at
  class edges and a few nodata pixels, like a model-made product.
* Each 30 m HLS pixel is the mean of its 3 x 3 sub-pixels' class spectra (mixed pixels at edges), with
  crop phenology and vigour per field (green in the growing season, bare soil otherwise), seasonal trees,
  rangeland and snow, a varying share of a partner cover in every class (:data:`CLASS_MIXING`: open
  woodland, shrubby pasture, marsh with open water, leafy towns), per-field and smoothly varying
  brightness, per-pixel noise, a small S30/L30 gain difference, cloud blobs with shadows cast away from
  the sun, adjacent rings, thin cirrus, and an Fmask with HLS bit semantics. ``eo:cloud_cover`` is
  computed from that Fmask the way NASA does (:func:`lulc.hls.cloud_coverage`).

Per region (config ``demo.regions.<name>``), besides ``center``, ``size_px`` and ``landscape``:

* ``labels`` (default ``true``): ``false`` makes an imagery-only region, a place to map that has no
  labels: its granules are written, but ``io-lulc-annual-v02`` gets no item for it. The label collection
  then holds the other regions' items only; when no region has labels it is still written, empty (its
  extent is the regions' tiles and the year), so the catalog always has the same three collections and a
  label search over it finds nothing rather than failing on a missing collection.
* ``years`` (default ``null``: ``[year]``): imagery is generated for every listed year, each year with
  its own dates (item ids and datetimes in that year, e.g. ``HLS.S30.T15TVG.2022080T164412.v2.0``),
  clouds and noise, drawn from ``(seed, region, year)``. ``year``'s draws are keyed exactly as for a
  region without ``years``, so adding years never changes that year's files. Labels (when ``labels``
  is true) are written for ``year`` only.

Between years the landscape changes a little (:func:`landscape_in_year`), so that a change table
between two years is not all zero: ``year``'s landscape is the one drawn (and labelled). In every later
year another :data:`CHANGE_SHARE_PER_YEAR` of the region's crop fields (cumulative, drawn among the
fields within :data:`CHANGE_BUFFER_M` of built area) are built over; in every earlier year another
such share (drawn among all crop fields) was still rangeland, broken to cropland later. Changed fields
change whole (the parcel's crop pixels), keep their brightness and take the new class's spectrum,
phenology and partner-cover mix.

Layout under ``out_dir`` (every href relative, so the folder can be moved)::

    catalog.json
    hls2-s30/collection.json
    hls2-s30/HLS.S30.T15TVG.2023080T164412.v2.0/HLS.S30.T15TVG.2023080T164412.v2.0.json
    hls2-s30/HLS.S30.T15TVG.2023080T164412.v2.0/HLS.S30.T15TVG.2023080T164412.v2.0.B02.tif  (and so on)
    hls2-l30/...
    io-lulc-annual-v02/15T-2023/15T-2023.json
    io-lulc-annual-v02/15T-2023/15T_20230101-20240101.tif

Item JSON carries both ``proj:epsg`` and ``proj:code``; note that pystac, when it reads an item, migrates
``proj:epsg`` away (as it does for the real Planetary Computer items), so readers should use
``proj:code`` or the rasters' own CRS.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import shutil
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import rasterio
from rasterio.transform import Affine
from rasterio.warp import transform as warp_transform

from lulc.classes import IO_CLASSES, IO_COLOURS, IO_NODATA
from lulc.hls import (
    FMASK_ASSET,
    FMASK_BITS,
    FMASK_NODATA,
    PRITHVI_BANDS,
    REFLECTANCE_NODATA,
    REFLECTANCE_SCALE,
    SENSOR_ASSETS,
    cloud_coverage,
    utm_epsg,
)
from lulc.io import cog_options

# ---------------------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------------------

#: Collection ids of the demo catalog, the same as on Planetary Computer.
HLS_COLLECTIONS: dict[str, str] = {"S30": "hls2-s30", "L30": "hls2-l30"}
LABEL_COLLECTION = "io-lulc-annual-v02"
DEMO_COLLECTIONS: tuple[str, ...] = (*HLS_COLLECTIONS.values(), LABEL_COLLECTION)
#: Asset key of the label raster in IO LULC items.
LABEL_ASSET = "data"

#: Pixel sizes: HLS imagery and IO labels.
HLS_PIXEL_M = 30
LABEL_PIXEL_M = 10
_SUB = HLS_PIXEL_M // LABEL_PIXEL_M  # 10 m sub-pixels per 30 m pixel and axis
#: HLS tiles extend this many 30 m pixels beyond the region on every side (swath edges live there).
TILE_MARGIN_PX = 32
#: Label rasters extend this many 30 m pixels beyond the region on every side.
LABEL_MARGIN_PX = 16
#: The label grid origin is shifted by this much (east and south) from the 30 m imagery grid.
LABEL_GRID_OFFSET_M = 7
#: Smallest and largest region side accepted, in 30 m pixels.
MIN_REGION_PX, MAX_REGION_PX = 32, 2048
#: Heavily clouded dates get at least this much cloud + shadow (so a max_cloud_cover of 80 drops them).
CLOUDY_MIN_COVER = 88.0
#: Other dates get at most this much cloud + shadow.
MODERATE_MAX_COVER = 38.0
#: Reflectance values are clipped to this range before they become int16.
REFLECTANCE_RANGE = (-100, 16000)
#: Landscape kinds a region can be drawn as (config key ``landscape``; default the first). A region's kind never
#: depends on the other regions: the workflow passes the regions sorted by name, so a default that alternated by
#: position would change a region's landscape whenever a region with an earlier name was added.
LANDSCAPES: tuple[str, ...] = ("agricultural", "valley")
#: Imagery years a region may list (config key ``years``).
YEAR_RANGE = (1980, 2100)
#: Share of a region's crop fields that change per year away from ``demo.year`` (built over later,
#: still rangeland earlier); cumulative, at least one field per year where there is a candidate.
CHANGE_SHARE_PER_YEAR = 0.015
#: Crop fields within this distance of built area are the candidates for being built over.
CHANGE_BUFFER_M = 300

_CODE = {name: code for code, name in IO_CLASSES.items()}
WATER, TREES, FLOODED = _CODE["water"], _CODE["trees"], _CODE["flooded_vegetation"]
CROPS, BUILT, BARE = _CODE["crops"], _CODE["built_area"], _CODE["bare_ground"]
SNOW, CLOUDS, RANGELAND = _CODE["snow_ice"], _CODE["clouds"], _CODE["rangeland"]

#: Typical surface reflectance x 10000 in :data:`lulc.hls.PRITHVI_BANDS` order (BRIEF.md, section 3).
CLASS_REFLECTANCE: dict[str, tuple[float, ...]] = {
    "water": (500, 600, 400, 200, 100, 50),
    "trees": (300, 500, 300, 3000, 1500, 700),
    "crops_green": (400, 700, 500, 3500, 2200, 1200),
    "crops_bare": (900, 1200, 1500, 2200, 2800, 2300),
    "rangeland": (500, 800, 900, 2500, 2600, 1700),
    "flooded_vegetation": (300, 500, 400, 1800, 800, 400),
    "built_area": (1100, 1200, 1300, 2000, 2300, 2100),
    "bare_ground": (1400, 1800, 2200, 2800, 3400, 2900),
    "snow_ice": (8500, 8300, 8000, 7000, 1000, 800),
    "cloud": (5200, 5100, 5000, 5300, 3700, 2600),
}
#: Sub-pixel mixing: each class's surfaces hold a varying fraction (lo..hi, from a smooth field) of a
#: partner cover (open woodland has grass, pastures have shrubs, marshes open water, towns trees, ...):
#: the continuum between classes that makes real land cover hard to separate pixel by pixel.
CLASS_MIXING: dict[str, tuple[str, float, float]] = {
    "trees": ("rangeland", 0.0, 0.45),
    "rangeland": ("trees", 0.0, 0.4),
    "flooded_vegetation": ("water", 0.1, 0.6),
    "built_area": ("trees", 0.05, 0.5),
    "bare_ground": ("rangeland", 0.0, 0.4),
    "water": ("flooded_vegetation", 0.0, 0.2),
    "crops": ("rangeland", 0.0, 0.25),
}
#: Systematic per-band gain of each sensor (L30 differs from S30 by 1.5-3 %, as after HLS harmonisation).
SENSOR_GAIN: dict[str, tuple[float, ...]] = {
    "S30": (1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
    "L30": (1.025, 1.015, 0.985, 0.975, 1.02, 1.03),
}
#: Shadow darkening per band (diffuse sky light keeps the visible bands brighter than NIR / SWIR).
_SHADOW_FACTOR = np.array([0.55, 0.5, 0.45, 0.35, 0.3, 0.3], dtype=np.float32)

_PLATFORMS = {"S30": ("sentinel-2a", "sentinel-2b"), "L30": ("landsat-8", "landsat-9")}
_INSTRUMENTS = {"S30": ["msi"], "L30": ["oli", "tirs"]}
#: Local solar time of the overpass, hours (Sentinel-2 10:30, Landsat about 10:10).
_OVERPASS_HOUR = {"S30": 10.5, "L30": 10.17}
_COG_MEDIA_TYPE = pystac.MediaType.COG  # "image/tiff; application=geotiff; profile=cloud-optimized"

#: Asset title and eo:bands per sensor and key, copied from the real Planetary Computer ``item_assets``.
_BAND_INFO: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "S30": {
        "B02": ("Blue", {"common_name": "blue", "center_wavelength": 0.4966, "full_width_half_max": 0.098}),
        "B03": ("Green", {"common_name": "green", "center_wavelength": 0.56, "full_width_half_max": 0.045}),
        "B04": ("Red", {"common_name": "red", "center_wavelength": 0.6645, "full_width_half_max": 0.038}),
        "B8A": ("NIR Narrow", {"center_wavelength": 0.8648, "full_width_half_max": 0.033}),
        "B11": (
            "SWIR 1",
            {"common_name": "swir16", "center_wavelength": 1.6137, "full_width_half_max": 0.143},
        ),
        "B12": (
            "SWIR 2",
            {"common_name": "swir22", "center_wavelength": 2.22024, "full_width_half_max": 0.242},
        ),
        FMASK_ASSET: ("Fmask", {}),
    },
    "L30": {
        "B02": ("Blue", {"common_name": "blue", "center_wavelength": 0.44, "full_width_half_max": 0.06}),
        "B03": ("Green", {"common_name": "green", "center_wavelength": 0.56, "full_width_half_max": 0.06}),
        "B04": ("Red", {"common_name": "red", "center_wavelength": 0.65, "full_width_half_max": 0.04}),
        "B05": ("NIR Narrow", {"common_name": "nir", "center_wavelength": 0.86, "full_width_half_max": 0.03}),
        "B06": ("SWIR 1", {"common_name": "swir16", "center_wavelength": 1.6, "full_width_half_max": 0.08}),
        "B07": ("SWIR 2", {"common_name": "swir22", "center_wavelength": 2.2, "full_width_half_max": 0.2}),
        FMASK_ASSET: ("Fmask", {}),
    },
}
_FILE_VALUES = [{"values": [IO_NODATA], "summary": "No Data"}] + [
    {"values": [code], "summary": summary}
    for code, summary in zip(
        IO_CLASSES,
        (
            "Water",
            "Trees",
            "Flooded vegetation",
            "Crops",
            "Built area",
            "Bare ground",
            "Snow/ice",
            "Clouds",
            "Rangeland",
        ),
        strict=True,
    )
]
_FMASK_DESCRIPTION = (
    "Bits are listed from the MSB (bit 7) to the LSB (bit 0): \n7-6    aerosol:\n"
    "       00 - climatology\n       01 - low\n       10 - average\n       11 - high\n"
    "5      water\n4      snow/ice\n3      cloud shadow\n2      adjacent to cloud\n1      cloud\n"
    "0      cirrus cloud\n"
)
_HLS_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.2.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/view/v1.0.0/schema.json",
]
_LABEL_EXTENSIONS = [
    "https://stac-extensions.github.io/projection/v1.2.0/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
]
_LAT_BANDS = "CDEFGHJKLMNPQRSTUVWX"


# ---------------------------------------------------------------------------------------------------------
# Grids
# ---------------------------------------------------------------------------------------------------------


def mgrs_tile(lon: float, lat: float) -> str:
    """MGRS 100 km grid square of a point, e.g. ``"15TVG"`` (HLS tiles are named after it)."""
    epsg = utm_epsg(lon, lat)
    zone = epsg % 100
    band = _LAT_BANDS[min(max(int((lat + 80.0) // 8.0), 0), len(_LAT_BANDS) - 1)]
    (x,), (y,) = warp_transform("EPSG:4326", f"EPSG:{epsg}", [lon], [lat])
    letter_set = zone % 6 or 6
    columns = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")[(letter_set - 1) % 3]
    column = columns[min(max(int(x // 100_000) - 1, 0), 7)]
    rows = "ABCDEFGHJKLMNPQRSTUV"
    row = rows[(int(y // 100_000) + (0 if zone % 2 else 5)) % len(rows)]
    return f"{zone:02d}{band}{column}{row}"


@dataclass(frozen=True)
class RegionGrid:
    """Where one demo region lies: its UTM zone, the HLS tile grid (30 m) and the label grid (10 m).

    The latent 10 m class map covers the HLS tile exactly (3 x 3 sub-pixels per 30 m pixel); the label
    grid is a window of it shifted by :data:`LABEL_GRID_OFFSET_M`, sampled at label pixel centres.
    """

    name: str
    center: tuple[float, float]
    size_px: int
    epsg: int
    mgrs: str
    hls_transform: Affine
    hls_shape: tuple[int, int]
    region_window: tuple[int, int, int, int]  # row_off, col_off, height, width in HLS pixels
    label_transform: Affine
    label_shape: tuple[int, int]
    label_offset: tuple[int, int]  # latent (row, col) of the label raster's first pixel

    @property
    def utm_zone(self) -> str:
        """UTM zone and latitude band, e.g. ``"15T"``: the IO LULC tile name."""
        return self.mgrs[:3]

    @property
    def latent_shape(self) -> tuple[int, int]:
        """Shape of the 10 m latent class map covering the HLS tile."""
        return self.hls_shape[0] * _SUB, self.hls_shape[1] * _SUB

    def region_bounds(self) -> tuple[float, float, float, float]:
        """UTM bounds (left, bottom, right, top) of the region itself."""
        row, col, height, width = self.region_window
        left, top = self.hls_transform * (col, row)
        right, bottom = self.hls_transform * (col + width, row + height)
        return left, bottom, right, top


def region_grid(name: str, center: Sequence[float], size_px: int) -> RegionGrid:
    """The grids of a region centred on ``center`` (lon, lat) with ``size_px`` 30 m pixels a side."""
    lon, lat = float(center[0]), float(center[1])
    epsg = utm_epsg(lon, lat)
    (x,), (y,) = warp_transform("EPSG:4326", f"EPSG:{epsg}", [lon], [lat])
    half = size_px * HLS_PIXEL_M / 2.0
    left = math.floor((x - half) / HLS_PIXEL_M) * HLS_PIXEL_M
    top = math.ceil((y + half) / HLS_PIXEL_M) * HLS_PIXEL_M
    margin_m = TILE_MARGIN_PX * HLS_PIXEL_M
    hls_transform = Affine(HLS_PIXEL_M, 0.0, left - margin_m, 0.0, -HLS_PIXEL_M, top + margin_m)
    tile = size_px + 2 * TILE_MARGIN_PX
    label_margin_m = LABEL_MARGIN_PX * HLS_PIXEL_M
    label_left = left - label_margin_m + LABEL_GRID_OFFSET_M
    label_top = top + label_margin_m - LABEL_GRID_OFFSET_M
    label_transform = Affine(LABEL_PIXEL_M, 0.0, label_left, 0.0, -LABEL_PIXEL_M, label_top)
    label_side = (size_px + 2 * LABEL_MARGIN_PX) * _SUB
    # Latent pixel holding the centre of the first label pixel (nearest-neighbour sampling).
    offset_col = math.floor((label_left + LABEL_PIXEL_M / 2 - hls_transform.c) / LABEL_PIXEL_M)
    offset_row = math.floor((hls_transform.f - (label_top - LABEL_PIXEL_M / 2)) / LABEL_PIXEL_M)
    return RegionGrid(
        name=name,
        center=(lon, lat),
        size_px=size_px,
        epsg=epsg,
        mgrs=mgrs_tile(lon, lat),
        hls_transform=hls_transform,
        hls_shape=(tile, tile),
        region_window=(TILE_MARGIN_PX, TILE_MARGIN_PX, size_px, size_px),
        label_transform=label_transform,
        label_shape=(label_side, label_side),
        label_offset=(offset_row, offset_col),
    )


def _footprint(epsg: int, transform: Affine, shape: tuple[int, int]) -> tuple[dict[str, Any], list[float]]:
    """GeoJSON polygon (lon/lat, rounded for stable JSON) and bbox of a UTM raster footprint."""
    height, width = shape
    corners = [
        transform * (0, 0),
        transform * (width, 0),
        transform * (width, height),
        transform * (0, height),
    ]
    lons, lats = warp_transform(f"EPSG:{epsg}", "EPSG:4326", [c[0] for c in corners], [c[1] for c in corners])
    ring = [[round(lo, 7), round(la, 7)] for lo, la in zip(lons, lats, strict=True)]
    ring.append(ring[0])
    bbox = [
        min(p[0] for p in ring),
        min(p[1] for p in ring),
        max(p[0] for p in ring),
        max(p[1] for p in ring),
    ]
    return {"type": "Polygon", "coordinates": [ring]}, bbox


def _utm_bbox(transform: Affine, shape: tuple[int, int]) -> list[float]:
    """``proj:bbox`` of a north-up raster: left, bottom, right, top."""
    height, width = shape
    return [transform.c, transform.f + height * transform.e, transform.c + width * transform.a, transform.f]


# ---------------------------------------------------------------------------------------------------------
# Random fields and shapes (numpy only)
# ---------------------------------------------------------------------------------------------------------


def _child_rng(seed: int, region: str, purpose: str, index: int = 0) -> np.random.Generator:
    """An independent generator per (seed, region, purpose, index), so adding a region or date changes
    nothing else."""
    keys = [int(seed) & 0xFFFFFFFF, zlib.crc32(region.encode()), zlib.crc32(purpose.encode()), int(index)]
    return np.random.default_rng(np.random.SeedSequence(keys))


def _upsample(coarse: np.ndarray, factor: float, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of ``coarse`` by ``factor`` onto ``shape`` (pixel-centre aligned)."""

    def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
        pos = (np.arange(n_out) + 0.5) / factor - 0.5
        i0 = np.clip(np.floor(pos).astype(np.int64), 0, n_in - 2)
        weight = np.clip(pos - i0, 0.0, 1.0).astype(np.float32)
        return i0, weight

    r0, wr = axis(shape[0], coarse.shape[0])
    c0, wc = axis(shape[1], coarse.shape[1])
    rows = coarse[r0] * (1 - wr)[:, None] + coarse[r0 + 1] * wr[:, None]
    return (rows[:, c0] * (1 - wc) + rows[:, c0 + 1] * wc).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Gaussian-smoothed white noise with zero mean and unit standard deviation (float32).

    Large scales are drawn on a coarse grid and upsampled: same look, a fraction of the FFT work.
    """
    height, width = shape
    if sigma_px >= 6:
        factor = max(int(sigma_px // 3), 2)
        coarse_shape = (height // factor + 3, width // factor + 3)
        coarse = _smooth_noise(rng, coarse_shape, sigma_px / factor)
        return _upsample(coarse, factor, shape)
    noise = rng.standard_normal(shape)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    kernel = np.exp(-2.0 * (np.pi * max(sigma_px, 0.3)) ** 2 * (fy**2 + fx**2))
    field = np.fft.irfft2(np.fft.rfft2(noise) * kernel, s=shape)
    field -= field.mean()
    field /= field.std() + 1e-12
    return field.astype(np.float32)


def _box_sum(mask: np.ndarray, radius: int) -> np.ndarray:
    """Sum over the (2r+1)^2 window around every pixel (zero outside), via an integral image."""
    padded = np.pad(mask.astype(np.int32), radius)
    integral = np.zeros((padded.shape[0] + 1, padded.shape[1] + 1), dtype=np.int32)
    np.cumsum(np.cumsum(padded, axis=0), axis=1, out=integral[1:, 1:])
    k = 2 * radius + 1
    return integral[k:, k:] - integral[:-k, k:] - integral[k:, :-k] + integral[:-k, :-k]


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Square dilation of a boolean mask."""
    return _box_sum(mask, radius) > 0 if radius > 0 else mask.copy()


def _block_mean(values: np.ndarray) -> np.ndarray:
    """Mean over each 3 x 3 block of 10 m sub-pixels: the 30 m pixel value (float32)."""
    rows = values[0::_SUB].astype(np.float32)
    for offset in range(1, _SUB):
        rows += values[offset::_SUB]
    total = rows[:, 0::_SUB].copy()
    for offset in range(1, _SUB):
        total += rows[:, offset::_SUB]
    return total * np.float32(1.0 / _SUB**2)


def _smoothstep(x: np.ndarray | float) -> np.ndarray:
    """Cubic ease from 0 (x <= 0) to 1 (x >= 1)."""
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _blob(
    rng: np.random.Generator,
    shape: tuple[int, int],
    centre: tuple[float, float],
    radii: tuple[float, float],
    angle: float = 0.0,
    roughness: float = 0.35,
) -> np.ndarray:
    """A natural-looking blob (lake, town, pond): a noisy ellipse, computed only in its bounding box."""
    height, width = shape
    mask = np.zeros(shape, dtype=bool)
    reach = 1.6 * max(radii)
    r0, r1 = int(max(centre[0] - reach, 0)), int(min(centre[0] + reach + 1, height))
    c0, c1 = int(max(centre[1] - reach, 0)), int(min(centre[1] + reach + 1, width))
    if r1 <= r0 or c1 <= c0:
        return mask
    rows = np.arange(r0, r1, dtype=np.float32)[:, None] - centre[0]
    cols = np.arange(c0, c1, dtype=np.float32)[None, :] - centre[1]
    along = rows * math.sin(angle) + cols * math.cos(angle)
    across = rows * math.cos(angle) - cols * math.sin(angle)
    distance = (along / radii[0]) ** 2 + (across / radii[1]) ** 2
    noise = _smooth_noise(rng, (r1 - r0, c1 - c0), max(min(radii) / 3.0, 1.0))
    mask[r0:r1, c0:c1] = distance < 1.0 + roughness * noise
    return mask


def _voronoi(rng: np.random.Generator, shape: tuple[int, int], spacing: float, warp: float = 0.0) -> np.ndarray:
    """Voronoi cell ids of jittered-grid seeds (cells about ``spacing`` px across), optionally with
    boundaries warped by smooth noise so they look less polygonal."""
    height, width = shape
    ny, nx = int(height // spacing) + 1, int(width // spacing) + 1
    seeds_r = np.full((ny + 2, nx + 2), -1e9, dtype=np.float32)
    seeds_c = np.full((ny + 2, nx + 2), -1e9, dtype=np.float32)
    seeds_r[1:-1, 1:-1] = (np.arange(ny)[:, None] + rng.uniform(0.1, 0.9, (ny, nx))) * spacing
    seeds_c[1:-1, 1:-1] = (np.arange(nx)[None, :] + rng.uniform(0.1, 0.9, (ny, nx))) * spacing
    rows = np.arange(height, dtype=np.float32)[:, None]
    cols = np.arange(width, dtype=np.float32)[None, :]
    if warp > 0:
        rows = (rows + warp * _smooth_noise(rng, shape, spacing / 4)).astype(np.float32)
        cols = (cols + warp * _smooth_noise(rng, shape, spacing / 4)).astype(np.float32)
    cell_r = np.minimum((np.arange(height) // spacing).astype(np.int64), ny - 1)[:, None]
    cell_c = np.minimum((np.arange(width) // spacing).astype(np.int64), nx - 1)[None, :]
    best = np.full(shape, np.inf, dtype=np.float32)
    label = np.zeros(shape, dtype=np.int32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            iy, ix = cell_r + dy + 1, cell_c + dx + 1
            distance = (rows - seeds_r[iy, ix]) ** 2 + (cols - seeds_c[iy, ix]) ** 2
            closer = distance < best
            best = np.where(closer, distance, best)
            label = np.where(closer, ((iy - 1) * nx + (ix - 1)).astype(np.int32), label)
    return label


def _survey_parcels(rng: np.random.Generator, shape: tuple[int, int], block: int) -> np.ndarray:
    """Rectangular fields of a survey grid (Midwest quarter sections): ``block``-px squares, each kept
    whole, halved or quartered at a random position."""
    height, width = shape
    off_r, off_c = (int(v) for v in rng.integers(0, block, 2))
    row_pos, col_pos = np.arange(height) + off_r, np.arange(width) + off_c
    n_rows, n_cols = row_pos[-1] // block + 1, col_pos[-1] // block + 1
    block_id = (row_pos // block)[:, None] * n_cols + (col_pos // block)[None, :]
    n_blocks = n_rows * n_cols
    split = rng.choice(3, size=n_blocks, p=[0.3, 0.4, 0.3])  # whole, halves, quarters
    horizontal = rng.random(n_blocks) < 0.5
    split_rows = (split == 2) | ((split == 1) & horizontal)
    split_cols = (split == 2) | ((split == 1) & ~horizontal)
    cut_r = rng.integers(int(0.3 * block), int(0.7 * block), n_blocks)
    cut_c = rng.integers(int(0.3 * block), int(0.7 * block), n_blocks)
    lower = split_rows[block_id] & ((row_pos % block)[:, None] >= cut_r[block_id])
    right = split_cols[block_id] & ((col_pos % block)[None, :] >= cut_c[block_id])
    return (block_id * 4 + 2 * lower + right).astype(np.int32)


def _quantiles(values: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """Quantiles of a large array, from a regular subsample (fast, deterministic)."""
    sample = values[::3, ::3] if values.ndim == 2 else values
    return np.quantile(sample, q)


# ---------------------------------------------------------------------------------------------------------
# Latent landscape (10 m, IO class codes)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Landscape:
    """The static truth of a region: what is where, and how each surface behaves through the year."""

    kind: str
    classes: np.ndarray  # uint8 IO codes on the latent 10 m grid
    parcels: np.ndarray  # int32 field id per latent pixel: crops follow their field's calendar
    elevation: np.ndarray  # float32 relief: seasonal snow lies above a date-dependent line
    emergence: np.ndarray  # per field: day of year its crop starts greening
    harvest: np.ndarray  # per field: day of year it is harvested
    vigour: np.ndarray  # per field: peak greenness of its crop (0..1)
    mixing: np.ndarray  # float32 per latent pixel: fraction of the class's partner cover (CLASS_MIXING)
    brightness: np.ndarray  # (6, H, W) multiplicative variation of the class spectra per latent pixel


def _river(
    rng: np.random.Generator, shape: tuple[int, int], half_width: tuple[float, float]
) -> tuple[np.ndarray, Callable[[float], tuple[float, float]], int, bool]:
    """A meandering river crossing the tile: signed distance (px) to its banks (negative in the water),
    the (row, col) of its centreline at an along-river position (for a reservoir on it), its length in
    pixels, and whether it runs north-south (``True``) or west-east."""
    height, width = shape
    transpose = bool(rng.random() < 0.5)
    across_n, along_n = (width, height) if transpose else (height, width)
    along = np.arange(along_n, dtype=np.float64)
    centre0 = rng.uniform(0.35, 0.65) * across_n
    slope = rng.uniform(-0.25, 0.25)
    centre = centre0 + slope * (along - along_n / 2)
    for wavelength_m, amplitude_m in ((3500, 250), (1500, 90), (700, 30)):
        centre = centre + amplitude_m / LABEL_PIXEL_M * np.sin(
            2 * np.pi * along / (wavelength_m / LABEL_PIXEL_M) + rng.uniform(0, 2 * np.pi)
        )
    steepness = np.sqrt(1.0 + np.gradient(centre) ** 2)
    half = rng.uniform(*half_width) * (1 + 0.25 * np.sin(along / 90.0 + rng.uniform(0, 6.3)))
    across = np.arange(across_n, dtype=np.float32)[:, None]
    bank = (np.abs(across - centre[None, :].astype(np.float32)) / steepness[None, :]).astype(np.float32)
    bank -= half[None, :].astype(np.float32)
    if transpose:
        bank = bank.T

    def centre_at(position: float) -> tuple[float, float]:
        """(row, col) of the river centreline at an along-river position."""
        index = int(np.clip(position, 0, along_n - 1))
        return (index, float(centre[index])) if transpose else (float(centre[index]), index)

    return np.ascontiguousarray(bank), centre_at, along_n, transpose


def _agricultural_landscape(rng: np.random.Generator, shape: tuple[int, int], core_side: int) -> tuple[np.ndarray, ...]:
    """Iowa-like: survey-grid crop fields, pastures and woodlots, a river with riparian forest and a
    reservoir, a town, farmsteads with shelterbelts and a highway."""
    height, width = shape
    parcels = _survey_parcels(rng, shape, block=80)
    n_parcels = int(parcels.max()) + 1
    parcel_class = rng.choice(
        np.array([CROPS, RANGELAND, TREES, BARE], dtype=np.uint8),
        size=n_parcels,
        p=[0.855, 0.11, 0.03, 0.005],
    )
    classes = parcel_class[parcels]
    from_parcel = np.ones(shape, dtype=bool)

    # Woodlots on rough ground, riparian forest and pasture along the river.
    rough = _smooth_noise(rng, shape, 45) + 0.4 * _smooth_noise(rng, shape, 8)
    woodlot = rough > _quantiles(rough, [0.965])[0]
    bank, centre_at, along_n, transpose = _river(rng, shape, half_width=(2.5, 4.0))
    corridor = _smooth_noise(rng, shape, 30)
    riparian = bank < 18 + 14 * corridor
    classes[riparian] = np.where(corridor[riparian] > -0.5, TREES, RANGELAND)
    classes[woodlot & ~riparian] = TREES
    from_parcel &= ~(riparian | woodlot)

    # A town and a village, mostly built with yards and parks.
    fine = _smooth_noise(rng, shape, 2.5)
    for radius in (rng.uniform(0.068, 0.088) * core_side, rng.uniform(0.025, 0.035) * core_side):
        centre = (rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width)
        town = _blob(rng, shape, centre, (radius, radius * rng.uniform(0.7, 1.0)), rng.uniform(0, np.pi), 0.5)
        classes[town] = np.where(fine[town] > -0.55, BUILT, np.where(fine[town] > -1.2, TREES, RANGELAND))
        from_parcel &= ~town

    # Farmsteads: a yard of buildings ringed by a shelterbelt, about one per 1.5 km2.
    n_farms = rng.poisson(height * width / 15000)
    for _ in range(n_farms):
        side = int(rng.integers(5, 9))
        r, c = int(rng.integers(4, height - side - 4)), int(rng.integers(4, width - side - 4))
        belt = int(rng.integers(2, 4))
        classes[r - belt : r + side + belt, c - belt : c + side + belt] = TREES
        classes[r : r + side, c : c + side] = BUILT
        from_parcel[r - belt : r + side + belt, c - belt : c + side + belt] = False

    # A straight highway along the survey grid.
    if rng.random() < 0.5:
        r = int(rng.integers(height // 5, 4 * height // 5))
        classes[r : r + 3, :] = BUILT
        from_parcel[r : r + 3, :] = False
    else:
        c = int(rng.integers(width // 5, 4 * width // 5))
        classes[:, c : c + 3] = BUILT
        from_parcel[:, c : c + 3] = False

    # Water: the river, a reservoir on it and farm ponds.
    water = bank < 0
    row, col = centre_at(rng.uniform(0.25, 0.75) * along_n)
    length = rng.uniform(0.12, 0.16) * along_n
    water |= _blob(rng, shape, (row, col), (length, length * 0.3), np.pi / 2 if transpose else 0.0, 0.45)
    for _ in range(rng.poisson(height * width / 250_000) + 1):
        centre = (rng.uniform(0, height), rng.uniform(0, width))
        water |= _blob(rng, shape, centre, (rng.uniform(4, 9), rng.uniform(4, 9)), 0.0, 0.3)
    classes[water] = WATER

    # Marshes on the water's edge, sand bars and a gravel pit.
    wet = _smooth_noise(rng, shape, 6)
    shore = _dilate(water, 8) & ~water
    classes[shore & (wet > 0.2)] = FLOODED
    classes[shore & (wet < -1.9)] = BARE
    pit = (rng.uniform(0.15, 0.85) * height, rng.uniform(0.15, 0.85) * width)
    classes[_blob(rng, shape, pit, (12, 8), rng.uniform(0, np.pi), 0.4)] = BARE
    from_parcel &= ~(water | shore)

    elevation = rough  # no permanent snow here; seasonal snow uses its own field
    return classes, parcels, from_parcel, elevation


def _valley_landscape(rng: np.random.Generator, shape: tuple[int, int], core_margin: int) -> tuple[np.ndarray, ...]:
    """Foothill valley: a floor with irrigated fields, a town, a river and a reservoir; hills of oak
    woodland and grass; rocky ridges with a little permanent snow."""
    height, width = shape
    side = min(height, width) - 2 * core_margin  # relief and towns scale with the core, not the tile
    theta = rng.uniform(0, np.pi)
    centre_r, centre_c = rng.uniform(0.4, 0.6) * height, rng.uniform(0.4, 0.6) * width
    rows = np.arange(height, dtype=np.float32)[:, None] - np.float32(centre_r)
    cols = np.arange(width, dtype=np.float32)[None, :] - np.float32(centre_c)
    across = rows * np.float32(math.cos(theta)) - cols * np.float32(math.sin(theta))
    along = rows * np.float32(math.sin(theta)) + cols * np.float32(math.cos(theta))
    meander = np.zeros_like(along)
    for wavelength_m, amplitude_m in ((3000, 200), (1200, 70)):
        k = np.float32(2 * np.pi * LABEL_PIXEL_M / wavelength_m)
        meander += np.float32(amplitude_m / LABEL_PIXEL_M) * np.sin(k * along + np.float32(rng.uniform(0, 6.3)))
    elevation = np.abs(across) / (0.5 * side) + 0.35 * _smooth_noise(rng, shape, 0.12 * side)
    elevation += 0.08 * _smooth_noise(rng, shape, 0.03 * side)
    # Thresholds from the core (the tile margin holds the highest ground).
    m = core_margin
    core = elevation[m:-m, m:-m] if m > 0 else elevation
    floor_q, rock_q, snow_q = _quantiles(core, [0.34, 0.992, 0.997])
    floor = elevation < floor_q

    # Hills: woodland where it is wetter (higher, noisier), grass and shrub elsewhere.
    classes = np.full(shape, RANGELAND, dtype=np.uint8)
    tree_score = _smooth_noise(rng, shape, 25) + 0.5 * _smooth_noise(rng, shape, 6) + 1.5 * elevation
    classes[~floor & (tree_score > _quantiles(np.where(floor, -9.0, tree_score), [0.66])[0])] = TREES
    classes[elevation > rock_q] = BARE
    classes[elevation > snow_q] = SNOW

    # Floor: irregular fields, orchards and pastures.
    parcels = _voronoi(rng, shape, spacing=42, warp=4.0)
    n_parcels = int(parcels.max()) + 1
    parcel_class = rng.choice(
        np.array([CROPS, RANGELAND, TREES, BARE], dtype=np.uint8), size=n_parcels, p=[0.66, 0.2, 0.12, 0.02]
    )
    classes[floor] = parcel_class[parcels[floor]]
    from_parcel = floor.copy()

    def on_axis(along_shift: float, across_shift: float) -> tuple[float, float]:
        """(row, col) of a point given by its offsets along and across the valley axis."""
        return (
            centre_r + along_shift * math.sin(theta) + across_shift * math.cos(theta),
            centre_c + along_shift * math.cos(theta) - across_shift * math.sin(theta),
        )

    # Town and suburb on the floor at one end of the valley, the reservoir at the other; a highway.
    end = float(rng.choice([-1.0, 1.0]))
    fine = _smooth_noise(rng, shape, 2.5)
    for radius, along_shift in ((0.1 * side, rng.uniform(0.0, 0.12)), (0.06 * side, rng.uniform(0.22, 0.3))):
        centre = on_axis(-end * along_shift * side, rng.uniform(-0.05, 0.05) * side)
        town = _blob(rng, shape, centre, (radius * 1.4, radius), theta, 0.55)
        classes[town] = np.where(fine[town] > -0.5, BUILT, np.where(fine[town] > -1.1, TREES, RANGELAND))
        from_parcel &= ~town
    road = np.abs(across - np.float32(rng.uniform(0.04, 0.1) * side) + 0.3 * meander) < 1.2
    classes[road] = BUILT
    from_parcel &= ~road

    # The river along the valley axis and a reservoir on it; marshes on the shore.
    bank = np.abs(across - meander) - np.float32(rng.uniform(3.0, 5.0))
    lake_centre = on_axis(end * rng.uniform(0.22, 0.3) * side, 0.0)
    lake = _blob(rng, shape, lake_centre, (0.17 * side, 0.07 * side), theta, 0.45)
    water = (bank < 0) | lake
    classes[water] = WATER
    wet = _smooth_noise(rng, shape, 6)
    shore = _dilate(water, 6) & ~water
    classes[shore & (wet > 0.3)] = FLOODED
    from_parcel &= ~(water | shore)
    return classes, parcels, from_parcel, elevation


def make_landscape(
    rng: np.random.Generator,
    shape: tuple[int, int],
    kind: str,
    core_margin: int = (TILE_MARGIN_PX - LABEL_MARGIN_PX) * _SUB,
) -> Landscape:
    """Draw the latent 10 m class map of a tile and the behaviour of its surfaces through the year.

    Sizes of towns, lakes and relief follow the core (the tile less ``core_margin`` latent pixels on
    every side: by default the label window), and class shares are calibrated on it, so small demo
    regions keep a realistic class mix.
    """
    core_side = min(shape) - 2 * core_margin
    if core_side < 32:
        raise ValueError(f"tile {shape} is too small for a core margin of {core_margin} px")
    if kind == "agricultural":
        classes, parcels, from_parcel, elevation = _agricultural_landscape(rng, shape, core_side)
        emergence = (125, 165, 70, 95)  # corn/soy; winter cereals
        harvest = (245, 300, 175, 200)
        winter_share = 0.06
    elif kind == "valley":
        classes, parcels, from_parcel, elevation = _valley_landscape(rng, shape, core_margin)
        emergence = (80, 150, 20, 60)  # irrigated summer crops; winter grain
        harvest = (200, 290, 140, 170)
        winter_share = 0.25
    else:
        raise ValueError(f"unknown landscape {kind!r}; choose one of {list(LANDSCAPES)}")

    # Rare "clouds" labels: a few small blobs where the label model saw persistent cloud.
    for _ in range(max(1, round(3 * (core_side / 1632) ** 2))):
        centre = (rng.uniform(0.1, 0.9) * shape[0], rng.uniform(0.1, 0.9) * shape[1])
        classes[_blob(rng, shape, centre, (rng.uniform(3, 8), rng.uniform(3, 8)), 0.0, 0.3)] = CLOUDS

    # Fields vary in brightness as a whole (soil, cultivar, management); natural surfaces vary smoothly.
    n_parcels = int(parcels.max()) + 1
    winter = rng.random(n_parcels) < winter_share
    emergence_day = np.where(winter, rng.uniform(*emergence[2:], n_parcels), rng.uniform(*emergence[:2], n_parcels))
    harvest_day = np.where(winter, rng.uniform(*harvest[2:], n_parcels), rng.uniform(*harvest[:2], n_parcels))
    vigour = rng.uniform(0.55, 1.0, n_parcels)
    field_log = rng.normal(0.0, 0.12, (n_parcels, 1)) + rng.normal(0.0, 0.06, (n_parcels, 6))
    natural_common = 0.1 * _smooth_noise(rng, shape, 25)
    texture = 0.04 * _smooth_noise(rng, shape, 1.5)
    brightness = np.empty((6, *shape), dtype=np.float32)
    for band in range(6):
        natural_log = natural_common + 0.06 * _smooth_noise(rng, shape, 15)
        field_band = field_log[:, band].astype(np.float32)[parcels]
        brightness[band] = np.exp(np.where(from_parcel, field_band, natural_log) + texture)
    share = 0.5 * (1.0 + np.tanh(0.8 * (_smooth_noise(rng, shape, 8) + 0.5 * _smooth_noise(rng, shape, 1.5))))
    low, high = np.zeros(256, dtype=np.float32), np.zeros(256, dtype=np.float32)
    for name, (_, lo, hi) in CLASS_MIXING.items():
        low[_CODE[name]], high[_CODE[name]] = lo, hi
    mixing = (low[classes] + (high[classes] - low[classes]) * share).astype(np.float32)
    return Landscape(
        kind=kind,
        classes=np.ascontiguousarray(classes, dtype=np.uint8),
        parcels=parcels,
        elevation=elevation.astype(np.float32),
        emergence=emergence_day.astype(np.float32),
        harvest=harvest_day.astype(np.float32),
        vigour=vigour.astype(np.float32),
        mixing=mixing,
        brightness=brightness,
    )


def _mixing_range(code: int) -> tuple[float, float]:
    """The (lo, hi) partner-cover fraction of an IO class (:data:`CLASS_MIXING`; (0, 0) if none)."""
    _, lo, hi = CLASS_MIXING.get(IO_CLASSES[code], ("", 0.0, 0.0))
    return lo, hi


def landscape_in_year(
    scene: Landscape, rng: np.random.Generator, years_after: int, core: tuple[slice, slice] | None = None
) -> Landscape:
    """The landscape ``years_after`` years after (negative: before) the year ``scene`` was drawn for.

    Later years: another :data:`CHANGE_SHARE_PER_YEAR` of the crop fields in ``core`` (the latent window
    whose fields count; default the whole tile) per year is built over, drawn among the fields within
    :data:`CHANGE_BUFFER_M` of built area (towns spreading, roads drawing houses). Earlier years: another
    such share, drawn among all crop fields, was still rangeland. ``rng`` must be a fresh generator of
    the region's (``_child_rng(seed, region, "change")``): the order in which fields change is drawn
    from it, so every year sees the same order and change accumulates. ``scene`` is not modified;
    ``years_after == 0`` returns it unchanged.
    """
    if years_after == 0:
        return scene
    classes = scene.classes
    crop = classes == CROPS
    if core is not None:
        in_core = np.zeros(classes.shape, dtype=bool)
        in_core[core] = True
        crop &= in_core
    crop_fields = np.unique(scene.parcels[crop])
    near_built = _dilate(classes == BUILT, max(round(CHANGE_BUFFER_M / LABEL_PIXEL_M), 1))
    growth_fields = np.unique(scene.parcels[crop & near_built])
    growth_order = rng.permutation(growth_fields)  # both drawn always: the order never depends on the year
    clearing_order = rng.permutation(crop_fields)
    count = math.ceil(CHANGE_SHARE_PER_YEAR * crop_fields.size * abs(years_after))
    changed, new_class = (growth_order[:count], BUILT) if years_after > 0 else (clearing_order[:count], RANGELAND)
    if changed.size == 0:
        return scene
    # All crop pixels of a changed field change (also those outside core: a field changes whole).
    mask = (classes == CROPS) & np.isin(scene.parcels, changed)
    new_classes = classes.copy()
    new_classes[mask] = new_class
    (old_lo, old_hi), (new_lo, new_hi) = _mixing_range(CROPS), _mixing_range(new_class)
    share = (scene.mixing[mask] - old_lo) / (old_hi - old_lo)  # the smooth share field behind the mix
    mixing = scene.mixing.copy()
    mixing[mask] = (new_lo + (new_hi - new_lo) * share).astype(np.float32)
    return dataclasses.replace(scene, classes=new_classes, mixing=mixing)


def _labels_from_latent(rng: np.random.Generator, latent: np.ndarray) -> np.ndarray:
    """IO-like labels from the latent map: some edge pixels take a neighbour's class (the label model's
    uncertainty at boundaries) and a few pixels are nodata."""
    labels = latent.copy()
    padded = np.pad(latent, 1, mode="edge")
    neighbours = np.stack([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
    direction = rng.integers(0, 4, latent.shape)
    neighbour = np.take_along_axis(neighbours, direction[None], axis=0)[0]
    flip = (neighbour != latent) & (rng.random(latent.shape) < 0.3)
    labels[flip] = neighbour[flip]
    height, width = labels.shape
    for _ in range(2):  # small nodata gaps, like tile seams in the real product
        h, w = int(rng.integers(3, 12)), int(rng.integers(10, 60))
        r, c = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        labels[r : r + h, c : c + w] = IO_NODATA
    labels[rng.random(labels.shape) < 2e-4] = IO_NODATA
    return labels


# ---------------------------------------------------------------------------------------------------------
# Acquisitions and rendering (30 m)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticGranule:
    """One HLS granule of a region: when, by which sensor, and how cloudy it is meant to be."""

    region: str
    index: int
    sensor: str
    platform: str
    datetime: dt.datetime
    cloudy: bool
    target_cover: float  # percent cloud + shadow
    swath_side: str | None  # "left" / "right": a nodata band along that edge, or None
    sun_elevation: float
    sun_azimuth: float
    southern: bool = False  # seasons are shifted by half a year south of the equator

    @property
    def doy(self) -> int:
        """Day of year (UTC)."""
        return self.datetime.timetuple().tm_yday

    @property
    def season_day(self) -> int:
        """The day of a northern-hemisphere year in the same season: drives phenology and snow."""
        return (self.doy + 182) % 365 + 1 if self.southern else self.doy


def _sun_position(lat: float, doy: int, local_hour: float) -> tuple[float, float]:
    """Approximate solar elevation and azimuth (degrees, azimuth clockwise from north)."""
    declination = math.radians(23.44) * math.sin(2 * math.pi * (284 + doy) / 365.0)
    hour_angle = math.radians(15.0 * (local_hour - 12.0))
    phi = math.radians(lat)
    sin_elev = math.sin(phi) * math.sin(declination) + math.cos(phi) * math.cos(declination) * math.cos(hour_angle)
    elevation = math.asin(max(min(sin_elev, 1.0), -1.0))
    azimuth = math.atan2(
        -math.sin(hour_angle), math.tan(declination) * math.cos(phi) - math.sin(phi) * math.cos(hour_angle)
    )
    return math.degrees(elevation), math.degrees(azimuth) % 360.0


def _plan_acquisitions(
    rng: np.random.Generator, grid: RegionGrid, year: int, dates_per_sensor: int, cloudy_dates: int
) -> list[SyntheticGranule]:
    """Dates spread over the year, interleaved between S30 and L30 (never the same day), of which
    ``cloudy_dates`` are heavily clouded and a few have a swath edge in the tile margin."""
    lon, lat = grid.center
    days_in_year = 366 if (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)) else 365
    step = (days_in_year - 20) / dates_per_sensor
    jitter = min(6.0, step / 5)
    days: dict[str, list[int]] = {}
    for sensor, shift in (("S30", 0.0), ("L30", step / 2)):
        days[sensor] = [
            int(np.clip(round(10 + (i + 0.5) * step + shift + rng.uniform(-jitter, jitter)), 2, days_in_year - 2))
            for i in range(dates_per_sensor)
        ]
    taken = set(days["S30"])
    for i, day in enumerate(days["L30"]):
        while day in taken:  # the next free day, wrapping to the start of the year
            day = day + 1 if day < days_in_year - 1 else 2
        days["L30"][i] = day
        taken.add(day)
    n_dates = 2 * dates_per_sensor
    cloudy = set(int(i) for i in rng.choice(n_dates, size=cloudy_dates, replace=False))
    swath = rng.random(n_dates) < 0.35
    if not swath.any():
        swath[int(rng.integers(n_dates))] = True
    plan = []
    for index in range(n_dates):
        sensor = "S30" if index < dates_per_sensor else "L30"
        day = days[sensor][index % dates_per_sensor]
        local_hour = _OVERPASS_HOUR[sensor] + rng.uniform(-0.1, 0.1)
        utc_seconds = round((local_hour - lon / 15.0) * 3600)
        when = dt.datetime(year, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=day - 1, seconds=utc_seconds)
        elevation, azimuth = _sun_position(lat, day, local_hour)
        is_cloudy = index in cloudy
        target = (
            rng.uniform(CLOUDY_MIN_COVER + 2, 97.0)
            if is_cloudy
            else (MODERATE_MAX_COVER - 4) * rng.uniform(0.0, 1.0) ** 2  # skewed clear, like most real dates
        )
        plan.append(
            SyntheticGranule(
                region=grid.name,
                index=index,
                sensor=sensor,
                platform=str(rng.choice(_PLATFORMS[sensor])),
                datetime=when,
                cloudy=is_cloudy,
                target_cover=float(target),
                swath_side=(("left", "right")[int(rng.integers(2))] if swath[index] else None),
                sun_elevation=round(elevation, 4),
                sun_azimuth=round(azimuth, 4),
                southern=lat < 0,
            )
        )
    return sorted(plan, key=lambda a: (a.datetime, a.sensor))


def hls_item_id(sensor: str, mgrs: str, when: dt.datetime) -> str:
    """HLS v2.0 granule id, e.g. ``HLS.S30.T15TVG.2023145T165901.v2.0``."""
    return f"HLS.{sensor}.T{mgrs}.{when:%Y}{when.timetuple().tm_yday:03d}T{when:%H%M%S}.v2.0"


def _class_tables(doy: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-IO-code reflectance on one date: ``base[code] + greenness * green_delta[code]`` (x 10000).

    Crops move between bare soil and green canopy with their field's greenness; deciduous trees lose
    some NIR in winter; rangeland browns in summer (strongly in a Mediterranean valley); flooded
    vegetation greens in summer. Snow pixels get their rock here; snow is mixed in separately.
    """
    spectra = {name: np.array(values, dtype=np.float32) for name, values in CLASS_REFLECTANCE.items()}
    summer = 0.5 * (1.0 + math.cos(2 * math.pi * (doy - 200) / 365.0))  # 1 mid-July, 0 mid-January
    winter = 1.0 - summer
    base = np.zeros((256, 6), dtype=np.float32)
    delta = np.zeros((256, 6), dtype=np.float32)
    base[WATER] = spectra["water"]
    leaf_loss = 0.22 if kind == "agricultural" else 0.08
    base[TREES] = spectra["trees"] * (1 + leaf_loss * winter * np.array([0.5, 0.3, 0.8, -1.0, 0.3, 0.5]))
    brown = (summer - 0.5) * (0.5 if kind == "agricultural" else 1.0)
    base[RANGELAND] = spectra["rangeland"] * (1 + brown * np.array([0.1, 0.05, 0.35, -0.3, 0.12, 0.2]))
    base[FLOODED] = spectra["flooded_vegetation"] * (1 + (summer - 0.5) * np.array([0, 0, -0.2, 0.3, 0, 0]))
    base[CROPS] = spectra["crops_bare"]
    delta[CROPS] = spectra["crops_green"] - spectra["crops_bare"]
    base[BUILT] = spectra["built_area"]
    base[BARE] = spectra["bare_ground"]
    base[SNOW] = spectra["bare_ground"] * 0.9
    base[CLOUDS] = 0.55 * spectra["cloud"] + 0.45 * spectra["rangeland"]
    return base, delta


def _snow_weight(scene: Landscape, doy: int, rng: np.random.Generator) -> np.ndarray | None:
    """Snow share of every latent pixel on a date: permanent snow (melting back in late summer) and
    seasonal snow on high ground (valley) or open fields in deep winter (agricultural)."""
    summer = 0.5 * (1.0 + math.cos(2 * math.pi * (doy - 200) / 365.0))
    weight: np.ndarray | None = None
    snow_class = scene.classes == SNOW
    if snow_class.any():
        melt = 0.55 * float(_smoothstep((summer - 0.6) / 0.3))
        weight = snow_class.astype(np.float32) * np.float32(1.0 - melt)
    cover = np.zeros(256, dtype=np.float32)  # how much of each class a snowfall covers
    cover[[CROPS, RANGELAND, BARE, FLOODED, SNOW]] = 1.0
    cover[TREES], cover[BUILT], cover[CLOUDS] = 0.35, 0.45, 0.0
    seasonal: np.ndarray | None = None
    if scene.kind == "valley":
        extent = 0.12 * float(_smoothstep((1.0 - summer - 0.55) / 0.4))
        if extent > 0.002:
            seasonal = scene.elevation > _quantiles(scene.elevation, [1.0 - extent])[0]
    elif doy <= 40 or doy >= 350:  # deep winter: snow on part of the open fields
        drift = _smooth_noise(rng, scene.classes.shape, 40)
        seasonal = drift > 0.3
    if seasonal is not None:
        seasonal_weight = seasonal * cover[scene.classes]
        weight = seasonal_weight if weight is None else np.maximum(weight, seasonal_weight)
    return weight


def _cloud_masks(
    rng: np.random.Generator, acq: SyntheticGranule, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cloud opacity, cloud, shadow and adjacent masks on the 30 m grid with cloud + shadow covering
    about ``acq.target_cover`` percent of the valid pixels. Shadows are the clouds cast away from the
    sun by a cloud-base height (clouds just outside the tile cast shadows into it); adjacent pixels
    ring both."""
    shape = valid.shape
    height, width = shape
    cloud_base_m = rng.uniform(800, 2000)
    reach_m = min(cloud_base_m / math.tan(math.radians(max(acq.sun_elevation, 15.0))), 3000.0)
    azimuth = math.radians(acq.sun_azimuth)
    shift_r = round(math.cos(azimuth) * reach_m / HLS_PIXEL_M)  # shadows fall away from the sun
    shift_c = round(-math.sin(azimuth) * reach_m / HLS_PIXEL_M)
    pad = max(abs(shift_r), abs(shift_c)) + 1
    padded = (height + 2 * pad, width + 2 * pad)
    field_ext = _smooth_noise(rng, padded, rng.uniform(12, 24)) + 0.25 * _smooth_noise(rng, padded, 2.5)
    field = field_ext[pad : pad + height, pad : pad + width]
    ordered = np.sort(field[valid])
    target = acq.target_cover / 100.0

    def masks(cloud_share: float) -> tuple[np.ndarray, np.ndarray, float]:
        if cloud_share <= 0:
            threshold = float(field_ext.max()) + 1.0
        else:
            threshold = float(ordered[min(int((1.0 - cloud_share) * ordered.size), ordered.size - 1)])
        cloud_ext = field_ext > threshold
        cloud = cloud_ext[pad : pad + height, pad : pad + width]
        cast = cloud_ext[pad - shift_r : pad - shift_r + height, pad - shift_c : pad - shift_c + width]
        shadow = cast & ~cloud
        return cloud, shadow, threshold

    low, high = 0.0, target
    cloud, shadow, threshold = masks(0.0)
    if target >= 0.005:
        for _ in range(14):  # bisection on the cloud share so that cloud + shadow hits the target
            mid = 0.5 * (low + high)
            cloud, shadow, threshold = masks(mid)
            cover = float((cloud | shadow)[valid].mean())
            if cover < target:
                low = mid
            else:
                high = mid
        cloud, shadow, threshold = masks(high)
    opacity = np.clip(0.35 + (field - threshold) / 0.5, 0.35, 1.0).astype(np.float32) * cloud
    adjacent = _dilate(cloud | shadow, 2) & ~(cloud | shadow)
    return opacity, cloud, shadow, adjacent


def _render(
    scene: Landscape, acq: SyntheticGranule, rng: np.random.Generator, water_share: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bands (6, H, W) int16 and Fmask (H, W) uint8 of one acquisition on the 30 m tile grid."""
    classes = scene.classes
    day = acq.season_day
    base, delta = _class_tables(day, scene.kind)
    green = scene.vigour * np.clip(
        _smoothstep((day - scene.emergence) / 45.0) * (1.0 - _smoothstep((day - scene.harvest) / 25.0)),
        0.0,
        1.0,
    ).astype(np.float32)
    greenness = green[scene.parcels]
    partner_delta = np.zeros_like(base)  # the partner cover's spectrum minus the class's own
    for name, (partner, _, _) in CLASS_MIXING.items():
        partner_spectrum = base[_CODE[partner]] + (0.5 * delta[CROPS] if partner == "crops" else 0.0)
        partner_delta[_CODE[name]] = partner_spectrum - base[_CODE[name]]
    snow = _snow_weight(scene, day, rng)
    snow_spectrum = np.array(CLASS_REFLECTANCE["snow_ice"], dtype=np.float32) * np.float32(rng.uniform(0.92, 1.05))
    shape30 = (classes.shape[0] // _SUB, classes.shape[1] // _SUB)
    surface = np.empty((6, *shape30), dtype=np.float32)
    for band in range(6):
        values = base[:, band][classes] + delta[:, band][classes] * greenness
        values += scene.mixing * partner_delta[:, band][classes]
        values *= scene.brightness[band]
        if snow is not None:
            values += (snow_spectrum[band] - values) * snow
        surface[band] = _block_mean(values)
    snow_share = _block_mean(snow) if snow is not None else np.zeros(shape30, dtype=np.float32)

    # Atmosphere and sensor: a smooth illumination field, per-pixel noise, the sensor's gains.
    illumination = 1.0 + 0.03 * _smooth_noise(rng, shape30, shape30[0] / 4)
    surface *= illumination[None]
    surface *= 1.0 + 0.04 * rng.standard_normal(surface.shape, dtype=np.float32)
    surface += 12.0 * rng.standard_normal(surface.shape, dtype=np.float32)
    surface *= np.array(SENSOR_GAIN[acq.sensor], dtype=np.float32)[:, None, None]

    # Swath edge: a slanted nodata band inside the tile margin.
    height, width = shape30
    valid = np.ones(shape30, dtype=bool)
    if acq.swath_side is not None:
        top, bottom = rng.uniform(4, TILE_MARGIN_PX - 4, 2)
        edge = (top + (bottom - top) * np.arange(height) / max(height - 1, 1))[:, None]
        cols = np.arange(width)[None, :]
        valid = ~(cols < edge) if acq.swath_side == "left" else ~(cols >= width - edge)

    # Clouds, shadows, adjacent haze and thin cirrus.
    opacity, cloud, shadow, adjacent = _cloud_masks(rng, acq, valid)
    cloud_spectrum = np.array(CLASS_REFLECTANCE["cloud"], dtype=np.float32) * np.float32(rng.uniform(0.95, 1.3))
    surface = np.where(shadow[None], surface * _SHADOW_FACTOR[:, None, None], surface)
    cirrus = np.zeros(shape30, dtype=bool)
    if rng.random() < 0.3:
        cirrus_field = _smooth_noise(rng, shape30, 15)
        cirrus = cirrus_field > _quantiles(cirrus_field, [rng.uniform(0.85, 0.95)])[0]
        surface += (cirrus * np.float32(0.06))[None] * (cloud_spectrum[:, None, None] - surface)
    haze = opacity + adjacent * np.float32(0.06)
    surface += haze[None] * (cloud_spectrum[:, None, None] - surface)

    bands = np.clip(np.rint(surface), *REFLECTANCE_RANGE).astype(np.int16)
    bands[:, ~valid] = REFLECTANCE_NODATA

    aerosol = np.where(_smooth_noise(rng, shape30, 20) > 0.5, 2, 1).astype(np.uint8)
    fmask = (aerosol << 6).astype(np.uint8)
    clear_surface = ~cloud
    flags = {
        "cirrus": cirrus,
        "cloud": cloud,
        "adjacent": adjacent,
        "shadow": shadow,
        "snow": (snow_share > 0.5) & clear_surface,
        "water": (water_share > 0.5) & clear_surface,
    }
    for name, mask in flags.items():
        fmask |= (mask.astype(np.uint8) << FMASK_BITS[name]).astype(np.uint8)
    fmask[~valid] = FMASK_NODATA
    return bands, fmask


# ---------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------


def _overview_count(shape: tuple[int, int]) -> int:
    """Internal overview levels: halve while the smaller side stays at least 64 px (at least one)."""
    count, side = 0, min(shape)
    while side // 2 >= 64:
        side //= 2
        count += 1
    return max(count, 1)


def _write_cog(
    path: Path,
    array: np.ndarray,
    transform: Affine,
    epsg: int,
    nodata: float,
    resampling: str,
    tags: Mapping[str, str],
    band_tags: Mapping[str, str] | None = None,
    scale: float | None = None,
    colormap: Mapping[int, tuple[int, int, int, int]] | None = None,
) -> None:
    """Write one single-band Cloud Optimized GeoTIFF in the workflow's COG profile (:func:`lulc.io.cog_options`)."""
    profile = {
        **cog_options(resampling, predictor=True, threads=1),
        "width": array.shape[1],
        "height": array.shape[0],
        "count": 1,
        "dtype": array.dtype.name,
        "crs": f"EPSG:{epsg}",
        "transform": transform,
        "nodata": nodata,
        "overview_count": _overview_count(array.shape),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)
        dst.update_tags(**tags)
        if band_tags:
            dst.update_tags(1, **band_tags)
        if scale is not None:
            dst.scales = (scale,)
            dst.offsets = (0.0,)
        if colormap is not None:
            dst.write_colormap(1, colormap)


def _hls_item(grid: RegionGrid, acq: SyntheticGranule, item_id: str, cover: int) -> pystac.Item:
    """The STAC item of one HLS granule, shaped like Planetary Computer's (assets added separately)."""
    geometry, bbox = _footprint(grid.epsg, grid.hls_transform, grid.hls_shape)
    properties: dict[str, Any] = {
        "platform": acq.platform,
        "instruments": _INSTRUMENTS[acq.sensor],
        "constellation": "sentinel-2" if acq.sensor == "S30" else "landsat",
        "gsd": HLS_PIXEL_M,
        "eo:cloud_cover": cover,
        "view:sun_azimuth": acq.sun_azimuth,
        "view:sun_elevation": acq.sun_elevation,
        "proj:epsg": grid.epsg,
        "proj:code": f"EPSG:{grid.epsg}",
        "proj:shape": list(grid.hls_shape),
        "proj:transform": list(grid.hls_transform)[:6],
        "proj:bbox": _utm_bbox(grid.hls_transform, grid.hls_shape),
    }
    return pystac.Item(
        id=item_id,
        geometry=geometry,
        bbox=bbox,
        datetime=acq.datetime,
        properties=properties,
        stac_extensions=list(_HLS_EXTENSIONS),
    )


def _hls_asset(sensor: str, key: str, href: str) -> pystac.Asset:
    """A band or Fmask asset with the real title, eo:bands and raster:bands."""
    title, band = _BAND_INFO[sensor][key]
    if key == FMASK_ASSET:
        raster = {"data_type": "uint8", "nodata": FMASK_NODATA, "spatial_resolution": HLS_PIXEL_M}
    else:
        raster = {
            "data_type": "int16",
            "nodata": REFLECTANCE_NODATA,
            "scale": 1.0 / REFLECTANCE_SCALE,
            "offset": 0.0,
            "spatial_resolution": HLS_PIXEL_M,
        }
    return pystac.Asset(
        href=href,
        title=title,
        media_type=_COG_MEDIA_TYPE,
        roles=["data"],
        extra_fields={"eo:bands": [{"name": key, **band}], "raster:bands": [raster]},
    )


def _write_hls_granule(
    item_dir: Path, grid: RegionGrid, acq: SyntheticGranule, bands: np.ndarray, fmask: np.ndarray
) -> pystac.Item:
    """Write the seven COGs of one granule and return its item (asset hrefs relative to the item)."""
    item_id = hls_item_id(acq.sensor, grid.mgrs, acq.datetime)
    item_dir.mkdir(parents=True, exist_ok=False)
    cover = round(cloud_coverage(fmask))
    valid_share = 100.0 * float((fmask != FMASK_NODATA).mean())
    common_tags = {
        "cloud_coverage": str(cover),
        "spatial_coverage": str(round(valid_share)),
        "SPACECRAFT_NAME": acq.platform.replace("sentinel", "Sentinel").replace("landsat", "Landsat"),
        "SENSING_TIME": acq.datetime.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
        "HORIZONTAL_CS_CODE": f"EPSG:{grid.epsg}",
        "SPATIAL_RESOLUTION": str(HLS_PIXEL_M),
        "MEAN_SUN_AZIMUTH_ANGLE": f"{acq.sun_azimuth:.4f}",
        "MEAN_SUN_ZENITH_ANGLE": f"{90.0 - acq.sun_elevation:.4f}",
        "DEMO": "synthetic scene generated by lulc.demo",
    }
    item = _hls_item(grid, acq, item_id, cover)
    for band_index, key in enumerate(SENSOR_ASSETS[acq.sensor]):
        name = f"{item_id}.{key}.tif"
        _write_cog(
            item_dir / name,
            bands[band_index],
            grid.hls_transform,
            grid.epsg,
            REFLECTANCE_NODATA,
            "average",
            common_tags,
            band_tags={
                "long_name": _BAND_INFO[acq.sensor][key][0],
                "prithvi_band": PRITHVI_BANDS[band_index],
                "scale_factor": str(1.0 / REFLECTANCE_SCALE),
                "add_offset": "0.0",
                "_FillValue": str(REFLECTANCE_NODATA),
            },
            scale=1.0 / REFLECTANCE_SCALE,
        )
        item.add_asset(key, _hls_asset(acq.sensor, key, f"./{name}"))
    name = f"{item_id}.{FMASK_ASSET}.tif"
    fmask_tags = {**common_tags, "Fmask description": _FMASK_DESCRIPTION, "_FillValue": str(FMASK_NODATA)}
    _write_cog(item_dir / name, fmask, grid.hls_transform, grid.epsg, FMASK_NODATA, "nearest", fmask_tags)
    item.add_asset(FMASK_ASSET, _hls_asset(acq.sensor, FMASK_ASSET, f"./{name}"))
    return item


def _write_label_item(item_dir: Path, grid: RegionGrid, year: int, labels: np.ndarray) -> pystac.Item:
    """Write the label COG and return its IO-LULC-like item (``datetime: null`` with start/end)."""
    item_id = f"{grid.utm_zone}-{year}"
    item_dir.mkdir(parents=True, exist_ok=False)
    name = f"{grid.utm_zone}_{year}0101-{year + 1}0101.tif"
    colormap = {code: (*rgb, 255) for code, rgb in IO_COLOURS.items()}
    colormap[IO_NODATA] = (0, 0, 0, 0)
    tags = {"DEMO": "synthetic labels generated by lulc.demo", "io:tile_id": grid.utm_zone}
    _write_cog(item_dir / name, labels, grid.label_transform, grid.epsg, IO_NODATA, "mode", tags, colormap=colormap)
    geometry, bbox = _footprint(grid.epsg, grid.label_transform, grid.label_shape)
    properties: dict[str, Any] = {
        "start_datetime": f"{year}-01-01T00:00:00Z",
        "end_datetime": f"{year + 1}-01-01T00:00:00Z",
        "io:tile_id": grid.utm_zone,
        "supercell": grid.utm_zone,
        "proj:epsg": grid.epsg,
        "proj:code": f"EPSG:{grid.epsg}",
        "proj:shape": list(grid.label_shape),
        "proj:transform": list(grid.label_transform)[:6],
        "proj:bbox": _utm_bbox(grid.label_transform, grid.label_shape),
    }
    item = pystac.Item(
        id=item_id,
        geometry=geometry,
        bbox=bbox,
        datetime=None,
        properties=properties,
        stac_extensions=list(_LABEL_EXTENSIONS),
    )
    item.add_asset(
        LABEL_ASSET,
        pystac.Asset(
            href=f"./{name}",
            title="Global land cover data",
            media_type=_COG_MEDIA_TYPE,
            roles=["data"],
            extra_fields={
                "file:size": (item_dir / name).stat().st_size,
                "raster:bands": [{"nodata": IO_NODATA, "spatial_resolution": LABEL_PIXEL_M, "data_type": "uint8"}],
                "file:values": _FILE_VALUES,
            },
        ),
    )
    return item


# ---------------------------------------------------------------------------------------------------------
# Catalog
# ---------------------------------------------------------------------------------------------------------


def _collection(
    collection_id: str, items: list[pystac.Item], year: int, tile_bboxes: Sequence[Sequence[float]]
) -> pystac.Collection:
    """A collection shaped like the real one, with ``item_assets`` for the assets we write only.

    Only the label collection can be empty (no region has labels): its spatial extent is then the
    regions' tiles (``tile_bboxes``), the area it was asked for.
    """
    if collection_id == LABEL_COLLECTION:
        title = "10m Annual Land Use Land Cover (9-class) V2"
        description = (
            "SYNTHETIC stand-in for Impact Observatory / Esri's 10 m annual land use / land cover maps "
            "(9 classes, IO codes 1 2 4 5 7 8 9 10 11, nodata 0), generated by lulc.demo for offline runs. "
            "Yearly items with datetime null and start/end datetimes, one per UTM zone and latitude band."
        )
        if not items:
            description += " No demo region has labels in this catalog: the collection is empty."
        start = dt.datetime(year, 1, 1, tzinfo=dt.UTC)
        end = dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC)
        item_assets = {
            LABEL_ASSET: pystac.ItemAssetDefinition.create(
                title="Global land cover data",
                description=None,
                media_type=_COG_MEDIA_TYPE,
                roles=["data"],
                extra_fields={"file:values": _FILE_VALUES},
            )
        }
        summaries: dict[str, Any] = {"raster:bands": [{"nodata": IO_NODATA, "spatial_resolution": LABEL_PIXEL_M}]}
        keywords = ["Global", "Land Cover", "Land Use", "Sentinel"]
        extensions = [
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            "https://stac-extensions.github.io/file/v2.1.0/schema.json",
        ]
    else:
        sensor = "S30" if collection_id == HLS_COLLECTIONS["S30"] else "L30"
        source = "Sentinel-2" if sensor == "S30" else "Landsat"
        title = f"Harmonized Landsat Sentinel-2 (HLS) Version 2.0, {source} Data"
        description = (
            f"SYNTHETIC stand-in for HLS v2.0 {sensor} ({source}) surface reflectance, generated by "
            "lulc.demo for offline runs: 30 m UTM tiles, int16 reflectance x 10000 (nodata -9999, "
            "scale 0.0001) and an Fmask quality band (uint8, nodata 255) with the HLS bit semantics; "
            "eo:cloud_cover is the cloud + cloud-shadow share of valid Fmask pixels, as NASA computes it."
        )
        datetimes = [item.datetime for item in items if item.datetime is not None]
        start, end = min(datetimes), max(datetimes)
        item_assets = {}
        for key in (*SENSOR_ASSETS[sensor], FMASK_ASSET):
            asset = _hls_asset(sensor, key, "")
            item_assets[key] = pystac.ItemAssetDefinition.create(
                title=asset.title,
                description=None,
                media_type=asset.media_type,
                roles=asset.roles,
                extra_fields={"eo:bands": asset.extra_fields["eo:bands"]},
            )
        summaries = {
            "gsd": [HLS_PIXEL_M],
            "platform": sorted({str(item.properties["platform"]) for item in items}),
            "instruments": _INSTRUMENTS[sensor],
        }
        keywords = ["Sentinel", "Landsat", "HLS", "Satellite", "Global", "Imagery"]
        extensions = [
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.2.0/schema.json",
            "https://stac-extensions.github.io/view/v1.0.0/schema.json",
        ]
    bboxes = [item.bbox for item in items if item.bbox is not None] or [list(b) for b in tile_bboxes]
    spatial = [
        min(b[0] for b in bboxes),
        min(b[1] for b in bboxes),
        max(b[2] for b in bboxes),
        max(b[3] for b in bboxes),
    ]
    collection = pystac.Collection(
        id=collection_id,
        description=description,
        extent=pystac.Extent(pystac.SpatialExtent([spatial]), pystac.TemporalExtent([[start, end]])),
        title=title,
        license="CC0-1.0",
        keywords=keywords,
        providers=[
            pystac.Provider(
                name="lulc.demo (synthetic data)",
                roles=[pystac.ProviderRole.PRODUCER, pystac.ProviderRole.PROCESSOR],
                description="Generated offline and deterministically from a seed by the LULC workflow.",
            )
        ],
        summaries=pystac.Summaries(summaries),
        stac_extensions=extensions,
    )
    collection.item_assets = dict(item_assets)
    for item in items:
        collection.add_item(item)
    return collection


# ---------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoRegion:
    """A validated ``demo.regions`` entry: where, what kind of landscape, whether it gets labels, and
    the years of its imagery (sorted)."""

    grid: RegionGrid
    kind: str
    labels: bool
    years: tuple[int, ...]


def _validated_regions(regions: Mapping[str, Mapping[str, Any]], year: int) -> list[DemoRegion]:
    """Regions from the config mapping (``year``: ``demo.year``, the default imagery year), with errors
    that name the bad key."""
    if not isinstance(regions, Mapping) or not regions:
        raise ValueError("demo.regions must be a non-empty mapping of region name -> {center, size_px}")
    validated: list[DemoRegion] = []
    for name, spec in regions.items():
        key = f"demo.regions.{name}"
        if not isinstance(spec, Mapping):
            raise ValueError(f"{key} must be a mapping with 'center' and 'size_px', got {spec!r}")
        center = spec.get("center")
        if (
            not isinstance(center, Sequence)
            or isinstance(center, str)
            or len(center) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in center)
        ):
            raise ValueError(f"{key}.center must be [lon, lat] in degrees, got {center!r}")
        lon, lat = float(center[0]), float(center[1])
        if not (-180.0 <= lon < 180.0 and -80.0 <= lat < 84.0):
            raise ValueError(f"{key}.center {center!r} is outside UTM coverage (lon -180..180, lat -80..84)")
        size = spec.get("size_px")
        if not isinstance(size, int) or isinstance(size, bool) or not MIN_REGION_PX <= size <= MAX_REGION_PX:
            raise ValueError(f"{key}.size_px must be an integer in [{MIN_REGION_PX}, {MAX_REGION_PX}], got {size!r}")
        kind = spec.get("landscape", LANDSCAPES[0])
        if kind not in LANDSCAPES:
            raise ValueError(f"{key}.landscape must be one of {list(LANDSCAPES)}, got {kind!r}")
        labels = spec.get("labels", True)
        if not isinstance(labels, bool):
            raise ValueError(f"{key}.labels must be true or false, got {labels!r}")
        years = spec.get("years")
        if years is None:
            years = [year]
        lo, hi = YEAR_RANGE
        if (
            not isinstance(years, Sequence)
            or isinstance(years, str)
            or not years
            or not all(isinstance(y, int) and not isinstance(y, bool) and lo <= y <= hi for y in years)
        ):
            raise ValueError(f"{key}.years must be null or a non-empty list of years in [{lo}, {hi}], got {years!r}")
        if len(set(years)) != len(years):
            raise ValueError(f"{key}.years lists a year twice: {years!r}")
        grid = region_grid(str(name), center, size)
        validated.append(DemoRegion(grid=grid, kind=kind, labels=labels, years=tuple(sorted(years))))
    seen_tiles: dict[str, str] = {}
    seen_zones: dict[str, str] = {}
    for region in validated:
        grid = region.grid
        checks = [(seen_tiles, grid.mgrs, "MGRS tile")]
        if region.labels:  # only labelled regions write an IO LULC item
            checks.append((seen_zones, grid.utm_zone, "IO LULC tile"))
        for seen, code, what in checks:
            if code in seen:
                raise ValueError(
                    f"demo.regions.{seen[code]} and demo.regions.{grid.name} fall in the same {what} "
                    f"{code!r}; their item ids would collide: move one region to another UTM zone / "
                    "latitude band"
                )
            seen[code] = grid.name
    return validated


def generate_demo(
    out_dir: Path,
    regions: dict[str, dict],
    year: int,
    seed: int,
    dates_per_sensor: int = 5,
    cloudy_dates: int = 2,
) -> Path:
    """Generate the offline demo (HLS S30 / L30 granules and IO-like labels per region) as a static,
    self-contained STAC catalog under ``out_dir``, deterministically from ``seed``.

    ``regions`` maps a name to ``{"center": [lon, lat], "size_px": n}`` (optionally ``"landscape":
    "agricultural" | "valley"``, by default alternating, the first agricultural; ``"labels": false`` for
    imagery only; ``"years": [...]`` for imagery of several years, by default ``[year]``: see the module
    docstring). Each region gets, per imagery year, ``dates_per_sensor`` S30 and as many L30 dates
    spread over that year, of which ``cloudy_dates`` are heavily clouded, and (unless ``labels`` is
    false) labels for ``year``. Everything is written to a temporary sibling folder that replaces
    ``out_dir`` only when complete, so a crash never leaves a half-written demo. Returns
    ``out_dir / "catalog.json"``.
    """
    out_dir = Path(out_dir).absolute()
    if not isinstance(year, int) or isinstance(year, bool) or not 1950 <= year <= 2200:
        raise ValueError(f"demo.year must be an integer year, got {year!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"demo.seed must be an integer, got {seed!r}")
    if not isinstance(dates_per_sensor, int) or not 1 <= dates_per_sensor <= 60:
        raise ValueError(f"dates_per_sensor must be an integer in [1, 60], got {dates_per_sensor!r}")
    if not isinstance(cloudy_dates, int) or not 0 <= cloudy_dates <= 2 * dates_per_sensor:
        raise ValueError(
            f"cloudy_dates must be an integer in [0, {2 * dates_per_sensor}] (2 x dates_per_sensor), "
            f"got {cloudy_dates!r}"
        )
    validated = _validated_regions(regions, year)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # No dot after the leading one: pystac takes a root href with a file extension for a file path and
    # would write the catalog into its parent folder.
    staging = out_dir.parent / f".{out_dir.name.replace('.', '_')}-staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        items: dict[str, list[pystac.Item]] = {collection_id: [] for collection_id in DEMO_COLLECTIONS}
        for region in validated:
            _generate_region(staging, region, year, seed, dates_per_sensor, cloudy_dates, items)
        description = (
            "Synthetic HLS v2.0 imagery and IO LULC-like labels for the workflow's offline demo regions "
            f"({', '.join(region.grid.name for region in validated)}; year {year}, seed {seed}). Same "
            "collections, asset keys and file formats as Planetary Computer; every href is relative."
        )
        other_years = [r for r in validated if r.years != (year,)]
        if other_years:
            listed = "; ".join(f"{r.grid.name} ({', '.join(map(str, r.years))})" for r in other_years)
            description += f" Imagery years, where not {year} alone: {listed}."
        unlabelled = [r.grid.name for r in validated if not r.labels]
        if unlabelled:
            description += f" Imagery only, without labels: {', '.join(unlabelled)}."
        catalog = pystac.Catalog(id="lulc-demo", title="LULC workflow offline demo", description=description)
        tile_bboxes = [_footprint(r.grid.epsg, r.grid.hls_transform, r.grid.hls_shape)[1] for r in validated]
        for collection_id in DEMO_COLLECTIONS:
            catalog.add_child(_collection(collection_id, items[collection_id], year, tile_bboxes))
        catalog.normalize_and_save(str(staging), catalog_type=pystac.CatalogType.SELF_CONTAINED)
        _replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir / "catalog.json"


def _generate_region(
    root: Path,
    region: DemoRegion,
    year: int,
    seed: int,
    dates_per_sensor: int,
    cloudy_dates: int,
    items: dict[str, list[pystac.Item]],
) -> None:
    """Draw one region's landscape, write its labels (for ``year``) and its granules (for each of its
    imagery years), and collect their items."""
    grid = region.grid
    scene = make_landscape(_child_rng(seed, grid.name, "landscape"), grid.latent_shape, region.kind)
    if region.labels:
        off_r, off_c = grid.label_offset
        latent_labels = scene.classes[off_r : off_r + grid.label_shape[0], off_c : off_c + grid.label_shape[1]]
        labels = _labels_from_latent(_child_rng(seed, grid.name, "labels"), latent_labels)
        label_id = f"{grid.utm_zone}-{year}"
        items[LABEL_COLLECTION].append(_write_label_item(root / LABEL_COLLECTION / label_id, grid, year, labels))

    water_share = _block_mean((scene.classes == WATER).astype(np.float32))  # water never changes
    row, col, height, width = grid.region_window
    core = (slice(row * _SUB, (row + height) * _SUB), slice(col * _SUB, (col + width) * _SUB))
    for imagery_year in region.years:
        # demo.year keeps the keys of a single-year region; other years get their own.
        suffix = "" if imagery_year == year else f"-{imagery_year}"
        year_scene = landscape_in_year(scene, _child_rng(seed, grid.name, "change"), imagery_year - year, core)
        plan = _plan_acquisitions(
            _child_rng(seed, grid.name, f"dates{suffix}"), grid, imagery_year, dates_per_sensor, cloudy_dates
        )
        for acq in plan:
            rng = _child_rng(seed, grid.name, f"acquisition{suffix}", acq.index)
            bands, fmask = _render(year_scene, acq, rng, water_share)
            collection_id = HLS_COLLECTIONS[acq.sensor]
            item_id = hls_item_id(acq.sensor, grid.mgrs, acq.datetime)
            items[collection_id].append(_write_hls_granule(root / collection_id / item_id, grid, acq, bands, fmask))


def _replace_dir(staging: Path, out_dir: Path) -> None:
    """Swap the finished staging folder into place; an older demo is removed only after the swap."""
    if out_dir.exists() or out_dir.is_symlink():
        retired = out_dir.parent / f".{out_dir.name.replace('.', '_')}-retired-{uuid.uuid4().hex[:8]}"
        os.replace(out_dir, retired)
        os.replace(staging, out_dir)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, out_dir)
