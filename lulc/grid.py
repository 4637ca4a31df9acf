"""The output pixel grid (:class:`Grid`) and the grid of an AOI (:func:`aoi_grid`).

A low module of its own, shared by the stages: the download stage writes its rasters on a :class:`Grid`, and the
map stage (:mod:`lulc.maps`) cuts a map region into tiles of such grids, without importing the download stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

from lulc.aoi import AOI
from lulc.hls import utm_epsg


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
