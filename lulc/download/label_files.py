"""Labels from files: a categorical raster (GeoTIFF / COG, local or http(s)) or vector features (GeoPackage,
GeoJSON, shapefile) put on the output :class:`~lulc.grid.Grid` as class indices of a :class:`Legend`.

The two label sources besides STAC label items (:mod:`lulc.download.labels`):

* :func:`raster_labels` reprojects a raster of source codes with mode resampling (the most frequent code of the
  source pixels under an output pixel, as for STAC labels), counts the codes it finds, refuses codes the legend
  does not cover (naming the file) and remaps them to class indices.
* :func:`vector_labels` burns polygons (the pixels whose centres fall inside) and points (the pixel under the
  point, or a square around it) of sparse reference data; every other pixel is :data:`IGNORE_INDEX`, so only
  labelled pixels count in training and scoring. Features of different classes that share a pixel are refused:
  which class wins would otherwise depend on the order of the file.

Problems with the file itself are :class:`LabelFileError` (a ``ValueError``) naming the file; codes the legend
does not cover are the legend's :class:`~lulc.legends.LegendCodeError`.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from lulc.access import redact_url
from lulc.download.environment import gdal_env
from lulc.grid import Grid
from lulc.legends import IGNORE_INDEX, Legend, LegendError, class_slug

log = logging.getLogger(__name__)

#: What pixels that are nodata (the file's, or outside the file) hold while an integer raster is warped: an
#: int32 value no 8/16-bit code can take. Wider integer and float rasters are warped as float64 with NaN.
_INT_FILL = int(np.iinfo(np.int32).min)

#: Pixels of the label raster read at a time (rows of the grid): bounds the memory of a large grid.
_BLOCK_PIXELS = 1 << 22

#: Geometry types burnt as areas and as points; every other type (lines, collections) is refused.
_POLYGONS = ("Polygon", "MultiPolygon")
_POINTS = ("Point", "MultiPoint")


class LabelFileError(ValueError):
    """A label raster or vector file that cannot be used as it is (the file, and the feature, named)."""


# -- rasters ---------------------------------------------------------------------------------------------------
def raster_labels(
    source: str, grid: Grid, legend: Legend, nodata: int | None = None
) -> tuple[np.ndarray, dict[int, int]]:
    """Class indices (uint8, ``(grid.height, grid.width)``) of a categorical raster on ``grid``, and the pixel
    count of each source code found there.

    ``source`` is a local path or an http(s) URL of a GeoTIFF / COG of integer codes in any CRS (a WKT-only
    one too). Band 1 is read. ``nodata`` overrides the file's nodata value. Pixels that are nodata (or outside
    the file) become :data:`IGNORE_INDEX` and are not counted; a code the legend does not cover stops the run
    (``unknown: stop``) naming the file, since a silently dropped class would bias what the model learns.
    """
    shown = redact_url(source) if source.startswith(("http://", "https://")) else source
    where = f"label raster {shown}"
    # the download stage's GDAL settings: HTTP retries and timeouts, no directory listing of the URL's folder
    with gdal_env("none") as env, env.open:
        try:
            src = rasterio.open(source)
        except (RasterioError, OSError) as error:
            raise LabelFileError(
                f"{where}: cannot be opened ({str(error).replace(source, shown)}); is the path or URL right?"
            ) from None
        with src:
            src_nodata = src.nodata if nodata is None else nodata
            dtype, fill = _warp_type(src, where, src_nodata)
            _check_overlap(src, grid, where)
            try:
                with WarpedVRT(
                    src,
                    crs=grid.crs,
                    transform=grid.transform,
                    width=grid.width,
                    height=grid.height,
                    resampling=Resampling.mode,
                    src_nodata=src_nodata,
                    nodata=fill,
                    dtype=dtype,
                ) as vrt:
                    indices, code_counts = _read_codes(vrt, fill, legend, where)
            except (RasterioError, ValueError) as error:
                if isinstance(error, LabelFileError):
                    raise
                raise LabelFileError(
                    f"{where}: cannot be read onto the grid ({str(error).replace(source, shown)})"
                ) from None
    if not code_counts:
        log.warning("%s: every pixel over the grid is nodata; the labels are all 'no class'", where)
    legend.check_codes(code_counts.keys(), where=where)
    return indices, code_counts


def _warp_type(src: Any, where: str, src_nodata: float | None) -> tuple[str, float]:
    """The working type and nodata fill of the warp: int32 with :data:`_INT_FILL` for integer codes that fit,
    float64 with NaN for wider integers and floats (exact for codes below 2**53). Refuses files with no CRS."""
    if src.count > 1:
        log.warning("%s has %d bands; band 1 is read as the labels", where, src.count)
    if src.crs is None:
        raise LabelFileError(f"{where} has no CRS (coordinate reference system); set one (gdal_edit.py -a_srs)")
    dtype = np.dtype(src.dtypes[0])
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise LabelFileError(f"{where}: data type {dtype} is not an integer type; class codes are integers")
    if src_nodata is not None and not math.isnan(src_nodata) and not _is_integer(src_nodata):
        log.warning("%s: nodata value %s is not an integer", where, src_nodata)
    small = (np.issubdtype(dtype, np.integer) and dtype.itemsize <= 2) or dtype == np.int32
    return ("int32", float(_INT_FILL)) if small else ("float64", math.nan)


def _check_overlap(src: Any, grid: Grid, where: str) -> None:
    """Refuse a raster whose footprint misses the grid, naming both (a wrong file or a wrong AOI)."""
    try:
        left, bottom, right, top = transform_bounds(src.crs, grid.crs, *src.bounds, densify_pts=21)
    except (RasterioError, ValueError):  # bounds that do not project (a world file and a polar grid): read anyway
        return
    g_left, g_bottom, g_right, g_top = grid.bounds
    if not all(map(math.isfinite, (left, bottom, right, top))):
        return
    if left >= g_right or right <= g_left or bottom >= g_top or top <= g_bottom:
        raise LabelFileError(
            f"{where} does not overlap the output grid: its bounds are {_box(src.bounds)} in its CRS "
            f"({_box((left, bottom, right, top))} in EPSG:{grid.epsg}), the grid's {_box(grid.bounds)} "
            f"(EPSG:{grid.epsg}); is it the raster of this AOI?"
        )


def _read_codes(vrt: Any, fill: float, legend: Legend, where: str) -> tuple[np.ndarray, dict[int, int]]:
    """Class indices of the warped raster and the pixel count of each code, read in blocks of rows so that a
    large grid needs memory for its uint8 indices only. Uncovered codes are left to the caller to refuse."""
    indices = np.full((vrt.height, vrt.width), IGNORE_INDEX, dtype=np.uint8)
    counts: dict[int, int] = {}
    step = max(1, _BLOCK_PIXELS // max(vrt.width, 1))
    for row in range(0, vrt.height, step):
        window = Window(0, row, vrt.width, min(step, vrt.height - row))
        codes, valid = _integer_codes(vrt.read(1, window=window), fill, where)
        found, numbers = np.unique(codes[valid], return_counts=True)
        for code, number in zip(found.tolist(), numbers.tolist(), strict=True):
            counts[code] = counts.get(code, 0) + number
        indices[row : row + window.height] = legend.remap(np.where(valid, codes, _INT_FILL))
    return indices, dict(sorted(counts.items()))


def _integer_codes(values: np.ndarray, fill: float, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The warped values as int64 codes and the mask of pixels that are not nodata; non-integer values refused."""
    valid = ~np.isnan(values) if np.isnan(fill) else values != fill
    if np.issubdtype(values.dtype, np.floating):
        present = values[valid]
        fraction = present[~np.isfinite(present) | (present != np.round(present))]
        if fraction.size:
            raise LabelFileError(
                f"{where} holds non-integer values ({', '.join(f'{v:g}' for v in np.unique(fraction)[:5])}); "
                "class codes must be integers: is it a continuous raster rather than a class raster?"
            )
        return np.where(valid, values, 0).astype(np.int64), valid
    return values.astype(np.int64), valid


def _is_integer(value: float) -> bool:
    return math.isfinite(value) and float(value).is_integer()


def _box(bounds: Any) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in bounds) + ")"


# -- vectors ---------------------------------------------------------------------------------------------------
def vector_labels(
    path: str,
    grid: Grid,
    legend: Legend,
    attribute: str = "class",
    point_size_px: int = 1,
    layer: str | None = None,
    require_labels: bool = True,
) -> tuple[np.ndarray, dict[str, int]]:
    """Class indices (uint8, ``(grid.height, grid.width)``) of the polygons and points of a vector file on
    ``grid``, and counts of what was burnt (``features``, ``polygons``, ``points``, ``skipped_empty``,
    ``outside``, ``no_pixel``, ``labelled_pixels``).

    Each feature's class is its ``attribute``: a source code of the legend or a class name. Polygons label the
    pixels whose centres fall inside (``all_touched=False``); points the pixel they fall in, or a
    ``point_size_px`` square centred on it (an even size centres the square on the pixel corner nearest the
    point, so the point lies in its central 2 x 2 pixels). Every other pixel is :data:`IGNORE_INDEX`. Lines,
    unknown classes and features of different classes sharing a pixel are refused, naming the feature(s).
    ``require_labels=False`` (a map region's processing tile) allows a grid no feature labels.
    """
    if point_size_px < 1:
        raise LabelFileError(f"label file {path}: point_size_px must be at least 1, got {point_size_px}")
    frame = _read_vector(path, grid, attribute, layer)
    out = np.full((grid.height, grid.width), IGNORE_INDEX, dtype=np.uint8)
    owner = np.full((grid.height, grid.width), -1, dtype=np.int32)
    stats = {"features": len(frame), "polygons": 0, "points": 0, "skipped_empty": 0, "outside": 0, "no_pixel": 0}
    for position, (geometry, value) in enumerate(zip(frame.geometry, frame[attribute], strict=True)):
        if geometry is None or geometry.is_empty:
            stats["skipped_empty"] += 1
            continue
        kind = geometry.geom_type
        if kind not in _POLYGONS + _POINTS:
            raise LabelFileError(
                f"label file {path}: {_feature(frame, position)} is a {kind}; only polygons and points label "
                "pixels (buffer lines into polygons first)"
            )
        index = _class_index(value, legend, path, _feature(frame, position))
        stats["polygons" if kind in _POLYGONS else "points"] += 1
        burnt = 0
        for row, col, mask in _footprints(geometry, grid, point_size_px):
            _burn(out, owner, row, col, mask, index, position, frame, path, legend, grid)
            burnt += int(mask.sum())
        if burnt == 0:
            stats["outside" if not _touches(geometry, grid) else "no_pixel"] += 1
    stats["labelled_pixels"] = int((out != IGNORE_INDEX).sum())
    if stats["no_pixel"]:
        log.warning("label file %s: %d polygon(s) cover no pixel centre of the grid", path, stats["no_pixel"])
    if stats["labelled_pixels"] == 0 and require_labels:
        raise LabelFileError(
            f"label file {path}: no feature labels a pixel of the output grid {_box(grid.bounds)} "
            f"(EPSG:{grid.epsg}) ({stats['features']} features, {stats['outside']} outside it, "
            f"{stats['skipped_empty']} with no geometry); is it the file of this AOI?"
        )
    return out, stats


def _read_vector(path: str, grid: Grid, attribute: str, layer: str | None) -> Any:
    """The features of ``path`` in the grid CRS, with their ``attribute``; refuses an unreadable file, one with
    no CRS and one without the attribute, naming the columns it has."""
    import geopandas as gpd

    try:
        frame = gpd.read_file(path, layer=layer)
    except Exception as error:  # pyogrio / fiona raise their own types for missing, unreadable or bad layers
        raise LabelFileError(f"label file {path} cannot be read ({type(error).__name__}: {error})") from None
    if frame.empty:
        raise LabelFileError(f"label file {path} has no features")
    if frame.crs is None:
        raise LabelFileError(f"label file {path} has no CRS (coordinate reference system); set one and rerun")
    if attribute not in frame.columns:
        columns = [str(c) for c in frame.columns if c != frame.geometry.name]
        raise LabelFileError(
            f"label file {path} has no attribute {attribute!r} holding the class; its columns are {columns}"
        )
    return frame.to_crs(f"EPSG:{grid.epsg}")


def _feature(frame: Any, position: int) -> str:
    """``feature 3`` (its position in the file), with its ``id`` where the file has one."""
    label = frame.index[position]
    text = f"feature {position}" if label == position else f"feature {position} (index {label})"
    for column in ("id", "fid", "ID", "FID"):
        if column in frame.columns and frame[column].iloc[position] is not None:
            return f"{text} ({column} {frame[column].iloc[position]})"
    return text


def _class_index(value: Any, legend: Legend, path: str, feature: str) -> int:
    """The class index of a feature's attribute value: a source code of the legend or a class name."""
    import pandas as pd

    where = f"label file {path}: {feature}"
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        raise LabelFileError(f"{where} has no class (a null value)")
    code: int | None = None
    if isinstance(value, bool):  # a yes/no column is no class
        pass
    elif isinstance(value, numbers.Integral):
        code = int(value)
    elif isinstance(value, numbers.Real) and float(value).is_integer():  # codes read as floats (shapefiles)
        code = int(float(value))
    elif isinstance(value, str):
        try:
            slug = class_slug(value)
        except LegendError:
            slug = ""
        if slug in legend.names:
            return legend.names.index(slug)
        if value.strip().lstrip("-").isdigit():
            code = int(value.strip())
    index = legend.index_of(code) if code is not None else None
    if index is None:
        raise LabelFileError(
            f"{where} has class {value!r}, which is neither a code nor a class name of legend {legend.name!r} "
            f"(classes {legend.describe_codes()})"
        )
    return index


def _footprints(geometry: Any, grid: Grid, size: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """The pixels a geometry labels as (row0, col0, boolean mask) windows clipped to the grid."""
    if geometry.geom_type in _POINTS:
        points = geometry.geoms if geometry.geom_type == "MultiPoint" else [geometry]
        for point in points:
            window = _point_window(point.x, point.y, grid, size)
            if window is not None:
                row0, col0, rows, cols = window
                yield row0, col0, np.ones((rows, cols), dtype=bool)
        return
    from rasterio.features import rasterize
    from rasterio.transform import from_origin

    window = _bounds_window(geometry.bounds, grid)
    if window is None:
        return
    row0, col0, rows, cols = window
    res = grid.resolution
    transform = from_origin(grid.left + col0 * res, grid.top - row0 * res, res, res)
    mask = rasterize([(geometry, 1)], out_shape=(rows, cols), transform=transform, fill=0, dtype="uint8")
    yield row0, col0, mask.astype(bool)


def _point_window(x: float, y: float, grid: Grid, size: int) -> tuple[int, int, int, int] | None:
    """The ``size`` x ``size`` pixel square of a point, clipped to the grid, as (row0, col0, rows, cols)."""
    if not (math.isfinite(x) and math.isfinite(y)):
        return None
    fx, fy = (x - grid.left) / grid.resolution, (grid.top - y) / grid.resolution
    if size % 2:  # centred on the pixel the point falls in
        col0, row0 = math.floor(fx) - size // 2, math.floor(fy) - size // 2
    else:  # centred on the pixel corner nearest the point
        col0, row0 = round(fx) - size // 2, round(fy) - size // 2
    return _clip(row0, col0, row0 + size, col0 + size, grid)


def _bounds_window(bounds: Any, grid: Grid) -> tuple[int, int, int, int] | None:
    """The pixels whose centres may fall in ``bounds`` (minx, miny, maxx, maxy), clipped to the grid."""
    if not all(map(math.isfinite, bounds)):
        return None
    minx, miny, maxx, maxy = bounds
    res = grid.resolution
    col0, col1 = math.floor((minx - grid.left) / res), math.ceil((maxx - grid.left) / res)
    row0, row1 = math.floor((grid.top - maxy) / res), math.ceil((grid.top - miny) / res)
    return _clip(row0, col0, row1, col1, grid)


def _clip(row0: int, col0: int, row1: int, col1: int, grid: Grid) -> tuple[int, int, int, int] | None:
    row0, col0 = max(row0, 0), max(col0, 0)
    row1, col1 = min(row1, grid.height), min(col1, grid.width)
    if row1 <= row0 or col1 <= col0:
        return None
    return row0, col0, row1 - row0, col1 - col0


def _touches(geometry: Any, grid: Grid) -> bool:
    """Whether a geometry's bounds reach the grid (a polygon too small for a pixel centre vs one outside)."""
    minx, miny, maxx, maxy = geometry.bounds
    left, bottom, right, top = grid.bounds
    return bool(minx < right and maxx > left and miny < top and maxy > bottom)


def _burn(
    out: np.ndarray,
    owner: np.ndarray,
    row0: int,
    col0: int,
    mask: np.ndarray,
    index: int,
    position: int,
    frame: Any,
    path: str,
    legend: Legend,
    grid: Grid,
) -> None:
    """Label ``mask``'s pixels with class ``index`` for feature ``position``; a pixel an earlier feature of
    another class labelled is refused, naming both features and the pixel."""
    rows, cols = mask.shape
    classes = out[row0 : row0 + rows, col0 : col0 + cols]
    owners = owner[row0 : row0 + rows, col0 : col0 + cols]
    clash = mask & (owners >= 0) & (classes != index)
    if clash.any():
        r, c = (int(v) for v in np.argwhere(clash)[0])
        other = int(owners[r, c])
        x = grid.left + (col0 + c + 0.5) * grid.resolution
        y = grid.top - (row0 + r + 0.5) * grid.resolution
        raise LabelFileError(
            f"label file {path}: {_feature(frame, other)} (class {legend.names[int(classes[r, c])]}) and "
            f"{_feature(frame, position)} (class {legend.names[index]}) overlap at pixel row {row0 + r}, "
            f"column {col0 + c} (x={x:.2f}, y={y:.2f} in EPSG:{grid.epsg}); a pixel has one class: fix the "
            "features so that features of different classes do not share a pixel"
        )
    new = mask & (owners < 0)
    classes[new] = index
    owners[new] = position
