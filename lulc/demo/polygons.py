"""Sparse labelled field polygons of a demo region (config ``demo.label_polygons``): what a field survey
brings back, for ``labels.source: vector``.

Each polygon is a rectangle of 10 m label pixels (:data:`MIN_SIDE_PX` to :data:`MAX_SIDE_PX` a side) inside one
patch of a single true class of the region's landscape in ``demo.year`` (the truth raster, without label noise):
every pixel of the rectangle and its eight neighbours hold that class, so a polygon never crosses a class boundary.
Polygons keep :data:`GAP_PX` pixels apart (they never overlap), lie in the central part of the region (a margin of
:data:`REGION_MARGIN` of its side on every side, so they fall inside an AOI drawn a little inside the region), and
cycle through the classes present (in an order drawn from the seed) so rare classes get some too. Clouds (IO 10)
are never surveyed. Written as a GeoPackage in EPSG:4326 with the attributes ``class`` (the class name of the
label legend, e.g. ``crops`` / ``cropland``) and ``code`` (its source code in that legend).

Apart because it is the one part of the demo that writes vectors (geopandas / shapely), outside the catalog.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lulc.demo.geometry import SUB, RegionGrid
from lulc.demo.labels import IO_CLASSES, class_indices, label_codes, label_legend, labelled_io_codes

if TYPE_CHECKING:
    import geopandas as gpd

#: Side of a polygon in label pixels (10 m): 60 m to 160 m, so it covers at least one 30 m imagery pixel.
MIN_SIDE_PX, MAX_SIDE_PX = 6, 16
#: Label pixels kept free between two polygons.
GAP_PX = 2
#: Share of the region's side left free of polygons on every side.
REGION_MARGIN = 0.1
#: The IO code never surveyed (not a land cover).
CLOUDS = next(code for code, name in IO_CLASSES.items() if name == "clouds")
#: Failed tries in a row after which no further polygon is looked for.
MAX_MISSES = 2000


def polygon_name(region: str) -> str:
    """The file name of a region's polygons (under the demo's ``polygons`` folder)."""
    return f"{region}.gpkg"


def _interior(classes: np.ndarray) -> np.ndarray:
    """Pixels whose 3 x 3 neighbourhood holds one class (image edges count as boundaries)."""
    height, width = classes.shape
    padded = np.pad(classes.astype(np.int16), 1, constant_values=-1)
    inside = np.ones(classes.shape, dtype=bool)
    for dr in (0, 1, 2):
        for dc in (0, 1, 2):
            inside &= padded[dr : dr + height, dc : dc + width] == classes
    return inside


def _region_window(grid: RegionGrid) -> tuple[int, int, int, int]:
    """The label-pixel window (row0, col0, row1, col1) polygons may lie in: the region less its margin."""
    row, col, height, width = grid.region_window
    inverse = ~grid.label_transform
    left, top = grid.hls_transform * (col, row)
    right, bottom = grid.hls_transform * (col + width, row + height)
    c0, r0 = inverse * (left, top)
    c1, r1 = inverse * (right, bottom)
    margin = REGION_MARGIN * height * SUB
    return (int(np.ceil(r0 + margin)), int(np.ceil(c0 + margin)), int(r1 - margin), int(c1 - margin))


def place_rectangles(
    rng: np.random.Generator, classes: np.ndarray, window: tuple[int, int, int, int], count: int, allowed: list[int]
) -> list[tuple[int, int, int, int]]:
    """Up to ``count`` non-touching rectangles (row0, col0, row1, col1; ends exclusive) inside ``window``, each
    of one class of ``allowed`` with a margin of one pixel of that class (module docstring)."""
    r0, c0, r1, c1 = window
    free = _interior(classes)
    outside = np.ones(classes.shape, dtype=bool)
    outside[r0:r1, c0:c1] = False
    free &= ~outside & np.isin(classes, allowed)
    blocked = np.zeros((classes.shape[0] + 1, classes.shape[1] + 1), dtype=np.int32)
    blocked[1:, 1:] = np.cumsum(np.cumsum(~free, axis=0, dtype=np.int32), axis=1)  # summed-area table
    present = [code for code in allowed if free[classes == code].any()]
    candidates = {code: np.flatnonzero(free & (classes == code)) for code in present}
    order = [int(c) for c in rng.permutation(present)] if present else []
    taken = np.zeros(classes.shape, dtype=bool)
    rectangles: list[tuple[int, int, int, int]] = []
    attempt = misses = 0
    while order and len(rectangles) < count and misses < MAX_MISSES:
        pixels = candidates[order[attempt % len(order)]]
        attempt, misses = attempt + 1, misses + 1
        row, col = divmod(int(pixels[rng.integers(pixels.size)]), classes.shape[1])
        height, width = (int(v) for v in rng.integers(MIN_SIDE_PX, MAX_SIDE_PX + 1, 2))
        while height >= MIN_SIDE_PX and width >= MIN_SIDE_PX:
            top, left = row - height // 2, col - width // 2
            bottom, right = top + height, left + width
            inside = top >= 0 and left >= 0 and bottom <= classes.shape[0] and right <= classes.shape[1]
            if inside and not (
                blocked[bottom, right] - blocked[top, right] - blocked[bottom, left] + blocked[top, left]
            ):
                if not taken[max(top - GAP_PX, 0) : bottom + GAP_PX, max(left - GAP_PX, 0) : right + GAP_PX].any():
                    taken[top:bottom, left:right] = True
                    rectangles.append((top, left, bottom, right))
                    misses = 0
                break
            height, width = height - 2, width - 2
    return rectangles


def field_polygons(
    rng: np.random.Generator, grid: RegionGrid, truth_io: np.ndarray, count: int, legend: str
) -> gpd.GeoDataFrame:
    """``count`` labelled polygons (a GeoDataFrame in EPSG:4326: ``class``, ``code``, ``geometry``) over the
    region's true IO classes on its label grid, ``truth_io``, named in ``legend`` (``demo.label_legend``)."""
    import geopandas as gpd
    from shapely.geometry import box

    allowed = [code for code in labelled_io_codes(legend) if code != CLOUDS]
    rectangles = place_rectangles(rng, truth_io, _region_window(grid), count, allowed)
    if len(rectangles) < count:
        raise ValueError(
            f"demo.label_polygons: only {len(rectangles)} of {count} polygons fit region {grid.name!r} "
            f"({MIN_SIDE_PX}-{MAX_SIDE_PX} px rectangles of one class, {GAP_PX} px apart); ask for fewer or "
            "make the region larger"
        )
    names = label_legend(legend).names
    io_codes = np.array([truth_io[r0, c0] for r0, c0, _, _ in rectangles], dtype=np.uint8)
    transform = grid.label_transform
    geometries = []
    for r0, c0, r1, c1 in rectangles:
        (x0, y0), (x1, y1) = transform * (c0, r1), transform * (c1, r0)
        geometries.append(box(x0, y0, x1, y1))
    frame = gpd.GeoDataFrame(
        {
            "class": [names[i] for i in class_indices(io_codes, legend)],
            "code": [int(c) for c in label_codes(io_codes, legend)],
        },
        geometry=geometries,
        crs=f"EPSG:{grid.epsg}",
    )
    return frame.to_crs("EPSG:4326")


def write_polygons(path: Path, frame: gpd.GeoDataFrame) -> None:
    """Write polygons as a single-layer GeoPackage (the layer named after the file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_file(path, driver="GPKG", layer=path.stem)
