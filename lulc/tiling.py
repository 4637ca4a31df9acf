"""Raster geometry: the predict stage's sliding window, and the grid checks and areas of the chips and predict stages.

Tiles of ``tile x tile`` pixels start every ``stride`` pixels along both axes; the last tile of a row or column
is aligned to the scene edge (:func:`tile_origins`). The scene is mirrored by a margin of half the overlap on
every side (:class:`TileGrid`), so that its outermost pixels are not at a tile edge. Each tile's logits are
weighted by a separable window (:func:`blend_window`): 1 in the interior, a raised-cosine ramp over the
overlap (two neighbouring ramps add up to 1), never below :data:`BLEND_FLOOR`.

The chips stage walks its rasters differently on purpose: it cuts only full chips and leaves a partial chip at
the far edge uncut (a training sample must be whole), while a map must cover every pixel, so its last tile is
aligned to the edge. One walker would have to choose one of the two edge rules.

**Grids.** Rasters that must line up (image, mask and label; image and label) are checked before any work
(:func:`require_crs`, :func:`check_same_grid`): each has a CRS, the CRSs are equal, the shapes are equal and
the transforms place every corner of the grid within :data:`GRID_TOLERANCE` of a pixel of each other. The
tolerance absorbs floating-point hairs (transforms computed from bounds by different tools differ by ~1e-11 of a
pixel) and refuses any real shift. **Areas** (:func:`area_km2`) are true areas for any CRS: pixel count x pixel
area in a projected CRS's linear unit converted to metres, the area on the CRS's ellipsoid in a geographic CRS.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from affine import Affine

#: Smallest weight of a pixel inside a tile: edge pixels count wherever no other tile covers them.
BLEND_FLOOR = 0.01


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


def axis_weight_sum(length: int, origins: Sequence[int], window: np.ndarray) -> np.ndarray:
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


# ------------------------------------------------------------------------------------------------ grids

#: Two grids are the same when every corner of one lies within this fraction of a pixel of the other's.
GRID_TOLERANCE = 1e-6


class GridError(ValueError):
    """A raster has no CRS, or rasters that must share one grid (CRS, shape, transform) do not."""


class _Raster(Protocol):
    """What the grid checks read of a raster (a ``rasterio`` dataset)."""

    @property
    def crs(self) -> Any: ...

    @property
    def transform(self) -> Affine: ...

    @property
    def shape(self) -> tuple[int, int]: ...


def require_crs(path: str | os.PathLike[str], raster: _Raster) -> None:
    """Refuse a raster without a CRS (not georeferenced, or a damaged GeoTIFF header)."""
    if raster.crs is None or not raster.crs.to_wkt():
        raise GridError(
            f"{path} has no CRS (not georeferenced, or a damaged GeoTIFF header): the workflow cannot place it. "
            f"Delete it and rerun the stage that wrote it (download), or assign the CRS of its source"
        )


def grid_offset(shape: tuple[int, int], transform: Affine, other: Affine) -> float:
    """Largest distance between the corners of a ``shape`` grid placed by ``transform`` and by ``other``, in
    pixels of ``transform`` (an affine map moves no point of the grid further than its farthest corner)."""
    pixel = min(math.hypot(transform.a, transform.d), math.hypot(transform.b, transform.e))
    height, width = shape
    offset = 0.0
    for col, row in ((0, 0), (width, 0), (0, height), (width, height)):
        x, y = transform * (col, row)
        x_other, y_other = other * (col, row)
        offset = max(offset, math.hypot(x - x_other, y - y_other))
    return offset / pixel if pixel > 0 else math.inf


def check_same_grid(
    reference_path: str | os.PathLike[str],
    reference: _Raster,
    path: str | os.PathLike[str],
    raster: _Raster,
    tolerance: float = GRID_TOLERANCE,
) -> None:
    """Refuse ``raster`` unless it has a CRS and lies on the grid of ``reference``: equal CRS, equal shape and
    transforms within ``tolerance`` of a pixel (:func:`grid_offset`)."""
    require_crs(reference_path, reference)
    require_crs(path, raster)
    fix = (
        f"resample {path} onto the grid of {reference_path} (same CRS, transform and size, e.g. "
        f"rasterio.warp.reproject or gdalwarp -t_srs/-te/-ts), or rerun the stage that wrote both"
    )
    if raster.crs != reference.crs:
        raise GridError(f"{path} is in {raster.crs}, {reference_path} in {reference.crs}: {fix}")
    if tuple(raster.shape) != tuple(reference.shape):
        raise GridError(
            f"{path} is {raster.shape[0]} x {raster.shape[1]} px, {reference_path} "
            f"{reference.shape[0]} x {reference.shape[1]} px (rows x columns): {fix}"
        )
    offset = grid_offset((reference.shape[0], reference.shape[1]), reference.transform, raster.transform)
    if not offset <= tolerance:
        raise GridError(
            f"{path} is shifted or scaled against {reference_path}: its grid corners are up to {offset:.3g} "
            f"pixel(s) away (transform {tuple(raster.transform)[:6]} vs {tuple(reference.transform)[:6]}; "
            f"tolerance {tolerance:g} px): {fix}"
        )


def _zone_area(latitude: np.ndarray, a: float, b: float) -> np.ndarray:
    """Area between the equator and ``latitude`` (radians) per radian of longitude on the ellipsoid with
    semi-axes ``a``, ``b`` (authalic formula; ``b ** 2 sin(latitude)`` on a sphere)."""
    sin = np.sin(latitude)
    e2 = 1.0 - (b / a) ** 2
    if e2 < 1e-15:
        return b * b * sin
    e = math.sqrt(e2)
    return b * b / 2 * (sin / (1 - e2 * sin**2) + np.arctanh(e * sin) / e)


def area_km2(crs: Any, transform: Affine, height: int, width: int, path: str | os.PathLike[str] = "") -> float:
    """Area of a ``height x width`` grid in km2: pixel count x pixel area in a projected CRS (its linear
    unit converted to metres), the area on the CRS's ellipsoid in a geographic CRS."""
    name = f"{path}: " if path else ""
    if crs is None:
        raise GridError(f"{name}no CRS: cannot compute the area")
    if not crs.is_geographic:
        try:
            _, metres = crs.linear_units_factor
        except Exception as error:
            raise GridError(f"{name}the linear unit of {crs} is unknown: cannot compute the area") from error
        return height * width * abs(transform.determinant) * metres**2 / 1e6
    import pyproj

    geographic = pyproj.CRS.from_user_input(crs.to_wkt())
    radians = geographic.axis_info[0].unit_conversion_factor
    geod = geographic.get_geod()
    if geod is None:
        raise GridError(f"{name}{crs} has no ellipsoid: cannot compute the area")
    if transform.b == 0 and transform.d == 0:  # north-up: a longitude x latitude rectangle
        lat = np.clip(np.array([transform.f, transform.f + transform.e * height]) * radians, -math.pi / 2, math.pi / 2)
        zones = _zone_area(lat, geod.a, geod.b)
        return float(abs(transform.a) * width * radians * abs(zones[1] - zones[0])) / 1e6
    # rotated: the footprint polygon on the ellipsoid, its edges densified (they are not geodesics)
    steps = np.linspace(0.0, 1.0, 257)
    cols = np.concatenate([steps * width, np.full(257, width), (1 - steps) * width, np.zeros(257)])
    rows = np.concatenate([np.zeros(257), steps * height, np.full(257, height), (1 - steps) * height])
    xs = transform.a * cols + transform.b * rows + transform.c
    ys = transform.d * cols + transform.e * rows + transform.f
    scale = radians / math.radians(1)
    area, _ = geod.polygon_area_perimeter(xs * scale, ys * scale)
    return abs(float(area)) / 1e6


__all__ = [
    "BLEND_FLOOR",
    "GRID_TOLERANCE",
    "GridError",
    "TileGrid",
    "area_km2",
    "axis_weight_sum",
    "blend_window",
    "check_same_grid",
    "grid_offset",
    "require_crs",
    "tile_origins",
]
