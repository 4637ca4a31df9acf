"""Where a demo region lies: its UTM zone and MGRS tile, the 30 m HLS tile grid, the 10 m label grid, and the
lon/lat footprints of rasters on them.

The lowest layer of :mod:`lulc.demo`, apart because every other part sizes its arrays from a :class:`RegionGrid`
(the latent 10 m map, the rendered 30 m bands, the label window) and the STAC items take their geometry, bbox
and ``proj:`` fields from it: grid arithmetic only, no randomness.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rasterio.transform import Affine
from rasterio.warp import transform as warp_transform

from lulc.hls import utm_epsg

#: Pixel sizes: HLS imagery and IO labels.
HLS_PIXEL_M = 30
LABEL_PIXEL_M = 10
SUB = HLS_PIXEL_M // LABEL_PIXEL_M  # 10 m sub-pixels per 30 m pixel and axis
#: HLS tiles extend this many 30 m pixels beyond the region on every side (swath edges live there).
TILE_MARGIN_PX = 32
#: Label rasters extend this many 30 m pixels beyond the region on every side.
LABEL_MARGIN_PX = 16
#: The label grid origin is shifted by this much (east and south) from the 30 m imagery grid.
LABEL_GRID_OFFSET_M = 7
_LAT_BANDS = "CDEFGHJKLMNPQRSTUVWX"


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
        return self.hls_shape[0] * SUB, self.hls_shape[1] * SUB

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
    label_side = (size_px + 2 * LABEL_MARGIN_PX) * SUB
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


def footprint(epsg: int, transform: Affine, shape: tuple[int, int]) -> tuple[dict[str, Any], list[float]]:
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


def utm_bbox(transform: Affine, shape: tuple[int, int]) -> list[float]:
    """``proj:bbox`` of a north-up raster: left, bottom, right, top."""
    height, width = shape
    return [transform.c, transform.f + height * transform.e, transform.c + width * transform.a, transform.f]
