"""Mosaics of a map region's tile cores, and the class transitions between two maps of one region.

**Mosaic** (:func:`mosaic`). Each processing tile of a map region is a tiled GeoTIFF of its core: uint8 class
indices (or confidence in percent), nodata 255. Tiles of one UTM zone share one pixel lattice (same CRS and
resolution, origins on multiples of the resolution), so they abut exactly. The mosaic is one COG in one target
CRS, and no pixel is resampled more than once:

* tiles in the target CRS are *copied* (a VRT ``ComplexSource`` at an integer pixel offset); a tile of the
  target CRS whose origin is off the lattice, or whose resolution differs, is refused (copying it would be a
  second resampling);
* a tile in another CRS is warped once, nearest neighbour, onto the mosaic's lattice into a temporary GeoTIFF
  (one tile, at most ~4400 x 4400 px, is warped in memory; the mosaic never is).

The sources of the VRT (its XML is written here; GDAL's Python bindings are not needed) are painted in order,
each with ``NODATA 255``, so a tile's nodata never overwrites another tile's valid pixels: warped tiles first (in
the order given), then the target-CRS tiles, which therefore win wherever both have a valid pixel (the overlap
of two zones along their border). GDAL's COG driver (:func:`lulc.io.copy_to_cog`) streams the VRT into the
COG; the class pixel counts are read from the VRT in windows before that (the COG's tags cannot be changed
afterwards without breaking its layout). Neither step holds the region in memory.

The output is deterministic: no temporary path, time or host ends up in the COG, so the same tiles give the
same bytes.

**Transitions** (:func:`transition_table`). Two maps on one grid are read window by window; the counts of
(class before, class after) over the pixels valid in both go into a CSV (pixels, km2, share of the "from"
class) and a figure (the transition matrix in km2 and the net change per class).
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import logging
import math
import os
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window

from lulc.io import atomic_path, copy_to_cog
from lulc.legends import IGNORE_INDEX, Legend, LegendError, dataset_legend, read_legend
from lulc.tiling import area_km2, check_same_grid, require_crs

log = logging.getLogger(__name__)

#: Nodata of the class and confidence rasters (= the ignore index of the labels).
NODATA = IGNORE_INDEX
#: Block size of the mosaic COG (as the per-AOI maps).
COG_BLOCK = 256
#: A target-CRS tile is on the lattice when its origin is within this fraction of a pixel of a lattice point.
LATTICE_TOLERANCE = 1e-6
#: Points per edge when tile bounds are transformed to another CRS (edges are curves there).
DENSIFY_POINTS = 21
#: Window of the streaming reads (rows x columns): at most 4 MiB of uint8 per read.
READ_ROWS, READ_COLS = 256, 16384

Kind = Literal["classes", "confidence"]
_BAND_DESCRIPTION = {"classes": "class_index", "confidence": "confidence_percent"}
_OVERVIEW_RESAMPLING = {"classes": "mode", "confidence": "average"}
#: The ``VALUES`` tag of a confidence mosaic (that of :mod:`lulc.predict`'s confidence COG).
CONFIDENCE_VALUES = "max softmax probability of the blended logits, percent (0-100); 255 nodata"


@dataclass(frozen=True)
class _Tile:
    """What the mosaic needs of one tile (read once, before any work)."""

    path: str
    crs: CRS
    transform: Affine
    width: int
    height: int
    block: tuple[int, int]
    legend: Legend | None = None  # a class tile's (its tags and colour table)


def _is_local(path: str) -> bool:
    return not (path.startswith("/vsi") or "://" in path)


def _tile_name(path: str | os.PathLike[str]) -> str:
    """A tile's path for GDAL: absolute for local files (the VRT lives elsewhere), as given for /vsi paths."""
    text = os.fspath(path)
    return str(Path(text).resolve()) if _is_local(text) else text


def _read_tile(path: str | os.PathLike[str]) -> _Tile:
    """Open a tile's header and refuse what cannot be mosaicked: missing, no CRS, not one uint8 band, a nodata
    value other than 255 (its nodata pixels would be painted as a class)."""
    name = _tile_name(path)
    if _is_local(name) and not Path(name).is_file():
        raise FileNotFoundError(f"mosaic tile {path} does not exist")
    with rasterio.open(name) as src:
        require_crs(path, src)
        if src.count != 1 or src.dtypes[0] != "uint8":
            raise ValueError(f"mosaic tile {path}: {src.count} band(s) of {src.dtypes[0]}; expected one uint8 band")
        if src.nodata is not None and src.nodata != NODATA:
            raise ValueError(f"mosaic tile {path}: nodata {src.nodata:g}; expected {NODATA} (or none)")
        try:  # a class tile's legend (read with its header; a confidence tile has none)
            legend: Legend | None = dataset_legend(src, str(path))
        except LegendError:
            legend = None
        return _Tile(name, src.crs, src.transform, src.width, src.height, tuple(src.block_shapes[0]), legend)


def _bounds_in(tile: _Tile, crs: CRS) -> tuple[float, float, float, float]:
    """The tile's bounds (left, bottom, right, top) in ``crs``: exact in its own CRS, densified elsewhere."""
    t = tile.transform
    xs = (t.c, t.c + t.a * tile.width + t.b * tile.height, t.c + t.b * tile.height, t.c + t.a * tile.width)
    ys = (t.f, t.f + t.d * tile.width + t.e * tile.height, t.f + t.e * tile.height, t.f + t.d * tile.width)
    left, bottom, right, top = min(xs), min(ys), max(xs), max(ys)
    if tile.crs == crs:
        return left, bottom, right, top
    return transform_bounds(tile.crs, crs, left, bottom, right, top, densify_pts=DENSIFY_POINTS)


def _snap_out(bounds: tuple[float, float, float, float], resolution: float) -> tuple[int, int, int, int]:
    """Bounds snapped outward to the lattice, in lattice units: (first column, first row from the top as
    ``-top / resolution``, last column, last row); floating-point hairs below the tolerance are not a pixel."""
    left, bottom, right, top = (v / resolution for v in bounds)
    eps = LATTICE_TOLERANCE
    return math.floor(left + eps), math.floor(-top + eps), math.ceil(right - eps), math.ceil(-bottom - eps)


def _check_on_lattice(tile: _Tile, resolution: float) -> None:
    """Refuse a target-CRS tile that could only be placed by resampling it: rotated, another resolution, or an
    origin off the lattice of multiples of ``resolution``."""
    t = tile.transform
    fix = "reproject it onto the mosaic lattice first, or rerun the tile with the region's grid"
    if t.b != 0 or t.d != 0 or t.e >= 0:
        raise ValueError(f"mosaic tile {tile.path} is not north-up (transform {tuple(t)[:6]}): {fix}")
    if not (math.isclose(t.a, resolution, rel_tol=1e-9) and math.isclose(-t.e, resolution, rel_tol=1e-9)):
        raise ValueError(
            f"mosaic tile {tile.path} has {t.a:g} x {-t.e:g} pixels, the mosaic {resolution:g}: copying it would "
            f"resample it; {fix}"
        )
    for value in (t.c, t.f):
        offset = value / resolution - round(value / resolution)
        if abs(offset) > LATTICE_TOLERANCE:
            raise ValueError(
                f"mosaic tile {tile.path} is off the mosaic lattice by {offset:+.3g} px (origin {t.c}, {t.f}; "
                f"lattice: multiples of {resolution:g}): copying it would resample it; {fix}"
            )


def _resolve(tiles: Sequence[_Tile], crs: str | CRS | None, resolution: float | None) -> tuple[CRS, float]:
    """The target CRS (the first tile's where None) and resolution (that of the first tile in the target CRS,
    else of the first tile, where None)."""
    if not tiles:
        raise ValueError("mosaic: no tiles")
    target = tiles[0].crs if crs is None else CRS.from_user_input(crs)
    if resolution is None:
        reference = next((t for t in tiles if t.crs == target), tiles[0])
        resolution = abs(reference.transform.a)
    if not resolution > 0:
        raise ValueError(f"mosaic: resolution must be positive, got {resolution}")
    return target, float(resolution)


def _grid(tiles: Sequence[_Tile], crs: CRS, resolution: float) -> tuple[Affine, int, int]:
    """The union of the tiles' bounds in ``crs``, snapped outward to the lattice: transform, width, height."""
    spans = []
    for tile in tiles:
        if tile.crs == crs:
            _check_on_lattice(tile, resolution)
        spans.append(_snap_out(_bounds_in(tile, crs), resolution))
    col0, row0 = min(s[0] for s in spans), min(s[1] for s in spans)
    col1, row1 = max(s[2] for s in spans), max(s[3] for s in spans)
    transform = Affine(resolution, 0.0, col0 * resolution, 0.0, -resolution, -row0 * resolution)
    return transform, col1 - col0, row1 - row0


def mosaic_grid(
    tiles: Sequence[str | os.PathLike[str]], crs: str | CRS, resolution: float
) -> tuple[CRS, Affine, int, int]:
    """The mosaic grid of ``tiles`` in ``crs``: (crs, transform, width, height).

    The union of the tiles' bounds (tiles in another CRS: their bounds transformed with densified edges),
    snapped outward to multiples of ``resolution``, so that tiles already in ``crs`` sit on it exactly (a tile
    of ``crs`` off that lattice raises ``ValueError``).
    """
    target = CRS.from_user_input(crs)
    transform, width, height = _grid([_read_tile(t) for t in tiles], target, float(resolution))
    return target, transform, width, height


# ------------------------------------------------------------------------------------------------- VRT


@dataclass(frozen=True)
class _Source:
    """One VRT source: a file copied 1:1 to the pixels ``(col, row)`` .. ``+ (width, height)`` of the mosaic."""

    path: str
    col: int
    row: int
    width: int
    height: int
    block: tuple[int, int]


def _tiles_legend(tiles: Sequence[_Tile]) -> Legend:
    """The legend of class tiles (read with their headers), the same for all: else an error naming the tiles."""
    for tile in tiles:
        if tile.legend is None:
            raise LegendError(f"mosaic tile {tile.path}: no LEGEND or CLASSES tag and colour table; not a class map")
    first = tiles[0]
    for tile in tiles[1:]:
        cast(Legend, first.legend).require_same(cast(Legend, tile.legend), f"tile {first.path}", f"tile {tile.path}")
    return cast(Legend, first.legend)


def _vrt_xml(
    crs: CRS,
    transform: Affine,
    width: int,
    height: int,
    sources: Sequence[_Source],
    kind: Kind,
    tags: Mapping[str, str],
    legend: Legend | None = None,
) -> str:
    """A VRT of ``sources`` painted in order (later ones win where they are valid), nodata 255 throughout."""
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    ET.SubElement(root, "SRS", dataAxisToSRSAxisMapping="1,2").text = crs.to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(float(v)) for v in transform.to_gdal())
    if tags:
        metadata = ET.SubElement(root, "Metadata")
        for key, value in tags.items():
            ET.SubElement(metadata, "MDI", key=key).text = value
    band = ET.SubElement(root, "VRTRasterBand", dataType="Byte", band="1")
    ET.SubElement(band, "Description").text = _BAND_DESCRIPTION[kind]
    ET.SubElement(band, "NoDataValue").text = str(NODATA)
    if kind == "classes":
        ET.SubElement(band, "ColorInterp").text = "Palette"
        table = ET.SubElement(band, "ColorTable")
        colours = (legend or Legend.generic(1)).colormap()
        for index in range(256):
            c1, c2, c3, c4 = colours.get(index, (0, 0, 0, 0))
            ET.SubElement(table, "Entry", c1=str(c1), c2=str(c2), c3=str(c3), c4=str(c4))
    else:
        ET.SubElement(band, "ColorInterp").text = "Gray"
    for source in sources:
        element = ET.SubElement(band, "ComplexSource")
        ET.SubElement(element, "SourceFilename", relativeToVRT="0").text = source.path
        ET.SubElement(element, "SourceBand").text = "1"
        ET.SubElement(
            element,
            "SourceProperties",
            RasterXSize=str(source.width),
            RasterYSize=str(source.height),
            DataType="Byte",
            BlockXSize=str(source.block[1]),
            BlockYSize=str(source.block[0]),
        )
        w, h = str(source.width), str(source.height)
        ET.SubElement(element, "SrcRect", xOff="0", yOff="0", xSize=w, ySize=h)
        ET.SubElement(element, "DstRect", xOff=str(source.col), yOff=str(source.row), xSize=w, ySize=h)
        ET.SubElement(element, "NODATA").text = str(NODATA)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _warp_tile(tile: _Tile, crs: CRS, grid: Affine, destination: Path, threads: int) -> _Source:
    """Warp one tile of another CRS onto the mosaic lattice (nearest neighbour, once) into ``destination``:
    a tiled GeoTIFF over the tile's footprint snapped outward to the lattice; returns its VRT source."""
    resolution = grid.a
    col0, row0, col1, row1 = _snap_out(_bounds_in(tile, crs), resolution)
    width, height = col1 - col0, row1 - row0
    transform = Affine(resolution, 0.0, col0 * resolution, 0.0, -resolution, -row0 * resolution)
    warped = np.full((height, width), NODATA, dtype=np.uint8)
    with rasterio.open(tile.path) as src:
        reproject(
            source=src.read(1),
            destination=warped,
            src_transform=src.transform,
            src_crs=src.crs,
            src_nodata=NODATA,
            dst_transform=transform,
            dst_crs=crs,
            dst_nodata=NODATA,
            resampling=Resampling.nearest,
            num_threads=threads,
        )
    profile = {
        "driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "uint8", "crs": crs,
        "transform": transform, "nodata": NODATA, "tiled": True, "blockxsize": COG_BLOCK, "blockysize": COG_BLOCK,
        "compress": "deflate", "zlevel": 1,
    }  # fmt: skip
    with rasterio.open(destination, "w", **profile) as dst:
        dst.write(warped, 1)
    return _Source(
        str(destination),
        col0 - round(grid.c / resolution),
        row0 + round(grid.f / resolution),
        width,
        height,
        (COG_BLOCK, COG_BLOCK),
    )


def _windows(height: int, width: int, rows: int = READ_ROWS, cols: int = READ_COLS) -> Iterator[Window]:
    """Windows of at most ``rows x cols`` pixels over a ``height x width`` raster, in raster order."""
    for row in range(0, height, rows):
        for col in range(0, width, cols):
            yield Window(col, row, min(cols, width - col), min(rows, height - row))


def _count_values(path: str | os.PathLike[str]) -> np.ndarray:
    """Pixels per uint8 value of band 1, read window by window (never the whole raster)."""
    counts = np.zeros(256, dtype=np.int64)
    with rasterio.open(path) as src:
        for window in _windows(src.height, src.width):
            counts += np.bincount(src.read(1, window=window).ravel(), minlength=256)
    return counts


@contextlib.contextmanager
def _scratch(tmp: Path, work_dir: str | os.PathLike[str] | None) -> Iterator[Path]:
    """A prefix for the mosaic's temporaries: beside the atomic temporary (so a killed job's leftovers are
    removed by the next :func:`lulc.io.atomic_path`), or in a fresh folder under ``work_dir``; removed after."""
    if work_dir is None:
        prefix = tmp.with_name(tmp.name + ".mosaic")
        try:
            yield prefix
        finally:
            for leftover in tmp.parent.glob(glob.escape(prefix.name) + "*"):
                leftover.unlink(missing_ok=True)
    else:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=".mosaic.", dir=work_dir))
        try:
            yield folder / "mosaic"
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def mosaic(
    tiles: Sequence[str | os.PathLike[str]],
    out_path: str | os.PathLike[str],
    *,
    crs: str | CRS | None,
    resolution: float | None = None,
    kind: Kind = "classes",
    tags: Mapping[str, str] | None = None,
    threads: int | None = None,
    work_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Mosaic tile cores into one COG at ``out_path`` in ``crs`` (None: the first tile's CRS).

    ``resolution``: the mosaic's pixel size (None: that of the first tile in ``crs``). Tiles in ``crs`` are
    copied (they must lie on the lattice of multiples of ``resolution``: else ``ValueError`` naming the tile),
    tiles in another CRS are warped once, nearest neighbour; target-CRS tiles win where tiles overlap, and
    nodata (255) never overwrites a valid pixel. ``kind``: ``classes`` (colour table, ``class_index``,
    ``CLASS_PIXELS`` / ``NODATA_PIXELS`` tags, ``mode`` overviews) or ``confidence`` (``confidence_percent``,
    ``VALUES`` tag, ``average`` overviews). ``tags`` are added last. ``threads``: GDAL's threads (all CPUs
    where None). ``work_dir``: where the temporaries go (default: beside ``out_path``). The COG appears
    atomically and is byte-identical for identical inputs. Returns a record (size, CRS, tile counts, area,
    class pixels, seconds).
    """
    started = time.perf_counter()
    if kind not in _BAND_DESCRIPTION:
        raise ValueError(f"mosaic: kind must be 'classes' or 'confidence', got {kind!r}")
    infos = [_read_tile(t) for t in tiles]  # before any work: a missing or bad tile writes nothing
    legend = _tiles_legend(infos) if kind == "classes" else None
    target, res = _resolve(infos, crs, resolution)
    transform, width, height = _grid(infos, target, res)
    gdal_threads = (os.cpu_count() or 1) if threads is None else max(1, int(threads))
    col_origin, row_origin = round(transform.c / res), round(-transform.f / res)
    copied = [
        _Source(
            t.path,
            round(t.transform.c / res) - col_origin,
            round(-t.transform.f / res) - row_origin,
            t.width,
            t.height,
            t.block,
        )
        for t in infos
        if t.crs == target
    ]
    foreign = [t for t in infos if t.crs != target]
    counts: np.ndarray | None = None
    with atomic_path(out_path) as tmp, _scratch(tmp, work_dir) as prefix:
        warped = [
            _warp_tile(tile, target, transform, prefix.with_name(f"{prefix.name}.warp{i:05d}.tif"), gdal_threads)
            for i, tile in enumerate(foreign)
        ]
        sources = [*warped, *copied]  # painted in order: the target-CRS tiles last, so they win
        vrt = prefix.with_name(prefix.name + ".vrt")
        all_tags: dict[str, str] = {}
        if kind == "classes":
            assert legend is not None
            vrt.write_text(_vrt_xml(target, transform, width, height, sources, kind, {}, legend))
            counts = _count_values(vrt)
            all_tags |= legend.tags()
            all_tags["CLASS_PIXELS"] = ",".join(f"{name}={int(counts[i])}" for i, name in enumerate(legend.names))
            all_tags["NODATA_PIXELS"] = str(int(counts[NODATA]))
        else:
            all_tags["VALUES"] = CONFIDENCE_VALUES
        all_tags |= {"TILES": str(len(infos)), "TILES_WARPED": str(len(foreign)), **(tags or {})}
        vrt.write_text(_vrt_xml(target, transform, width, height, sources, kind, all_tags, legend))
        copy_to_cog(vrt, tmp, _OVERVIEW_RESAMPLING[kind], threads=threads, block_size=COG_BLOCK)
    km2 = area_km2(target, transform, height, width, out_path)
    seconds = time.perf_counter() - started
    record: dict[str, Any] = {
        "path": str(out_path),
        "kind": kind,
        "width": width,
        "height": height,
        "crs": target.to_string(),
        "resolution": res,
        "tiles": len(infos),
        "tiles_warped": len(foreign),
        "area_km2": round(km2, 3),
        "class_pixels": None
        if counts is None or legend is None
        else {name: int(counts[i]) for i, name in enumerate(legend.names)},
        "nodata_pixels": None if counts is None else int(counts[NODATA]),
        "seconds": round(seconds, 3),
        "km2_per_s": round(km2 / seconds, 3) if seconds > 0 else None,
    }
    log.info(
        "%s: %d tiles (%d warped) -> %d x %d px in %s (%.1f km2), %.1f s",
        out_path, len(infos), len(foreign), width, height, record["crs"], km2, seconds,
    )  # fmt: skip
    return record


# ----------------------------------------------------------------------------------------- transitions


def _label(name: str) -> str:
    return name.replace("snow_ice", "snow / ice").replace("_", " ")


def _pixel_km2_rows(crs: Any, transform: Affine, row: int, rows: int) -> np.ndarray:
    """Area in km2 of one pixel of each of ``rows`` rows from ``row`` (constant in a projected CRS; varies with
    latitude in a geographic one)."""
    if not crs.is_geographic:
        return np.full(rows, area_km2(crs, transform, 1, 1))
    return np.array([area_km2(crs, transform * Affine.translation(0, r), 1, 1) for r in range(row, row + rows)])


def transition_table(
    map_a: str | os.PathLike[str],
    map_b: str | os.PathLike[str],
    csv_path: str | os.PathLike[str],
    png_path: str | os.PathLike[str],
    *,
    label_a: str,
    label_b: str,
    title: str = "",
) -> dict[str, Any]:
    """The class transitions from ``map_a`` to ``map_b`` (two maps on one grid: else ``ValueError`` naming
    both), over the pixels valid in both, read window by window.

    Writes ``csv_path`` (``from_class,to_class,pixels,km2,share_of_from`` for every pair with pixels, in class
    index order) and ``png_path`` (the transition matrix in km2, log colour scale, and the net change per
    class), both atomically. Returns the matrix (pixels; rows: ``map_a``'s classes, columns: ``map_b``'s), its
    km2, and the changed / unchanged area.
    """
    legend = read_legend(map_a)
    legend.require_same(read_legend(map_b), f"the map {map_a}", f"the map {map_b}")
    names = legend.names
    n = legend.num_classes
    counts = np.zeros((n, n), dtype=np.int64)
    km2 = np.zeros((n, n), dtype=np.float64)
    with rasterio.open(map_a) as src_a, rasterio.open(map_b) as src_b:
        check_same_grid(map_a, src_a, map_b, src_b)
        crs, transform = src_a.crs, src_a.transform
        for window in _windows(src_a.height, src_a.width):
            a = src_a.read(1, window=window)
            b = src_b.read(1, window=window)
            valid = (a < n) & (b < n)
            pair = a.astype(np.int64) * n + b
            counts += np.bincount(pair[valid], minlength=n * n).reshape(n, n)
            rows = _pixel_km2_rows(crs, transform, int(window.row_off), int(window.height))
            weights = np.broadcast_to(rows[:, None], a.shape)
            km2 += np.bincount(pair[valid], weights=weights[valid], minlength=n * n).reshape(n, n)

    from_totals = counts.sum(axis=1)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["from_class", "to_class", "pixels", "km2", "share_of_from"])
    for i in range(n):
        for j in range(n):
            if counts[i, j] > 0:
                writer.writerow(
                    [names[i], names[j], int(counts[i, j]), f"{km2[i, j]:.6f}",
                     f"{counts[i, j] / from_totals[i]:.6f}"]
                )  # fmt: skip
    with atomic_path(csv_path) as tmp:
        tmp.write_text(text.getvalue())

    unchanged = float(np.trace(km2))
    changed = float(km2.sum() - unchanged)
    total = changed + unchanged
    _transition_figure(km2, png_path, label_a, label_b, title, changed, total, legend)
    return {
        "label_a": label_a,
        "label_b": label_b,
        "classes": list(names),
        "legend": legend.name,
        "matrix": counts.tolist(),
        "matrix_km2": km2.tolist(),
        "pixels": int(counts.sum()),
        "changed_km2": changed,
        "unchanged_km2": unchanged,
        "changed_share": changed / total if total > 0 else 0.0,
    }


def _transition_figure(
    km2: np.ndarray,
    png: str | os.PathLike[str],
    label_a: str,
    label_b: str,
    title: str,
    changed: float,
    total: float,
    legend: Legend,
) -> None:
    """Heat map of the transition matrix (km2, log scale, annotated) beside the net change per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    from lulc.figures import save_map_png

    names = [_label(name) for name in legend.names]
    positive = km2[km2 > 0]
    low, high = (float(positive.min()), float(positive.max())) if positive.size else (1.0, 1.0)
    fig, (ax_matrix, ax_net) = plt.subplots(
        1, 2, figsize=(16, 6.5), gridspec_kw={"width_ratios": [1.3, 1], "wspace": 0.55}
    )
    norm = LogNorm(vmin=low, vmax=max(high, low * 1.0001))
    image = ax_matrix.imshow(np.ma.masked_less_equal(km2, 0), cmap="viridis", norm=norm)
    ax_matrix.set_facecolor("0.92")
    fig.colorbar(image, ax=ax_matrix, label="km²", fraction=0.046, pad=0.04)
    ticks = range(len(names))
    ax_matrix.set_xticks(ticks, names, rotation=45, ha="right", fontsize=8)
    ax_matrix.set_yticks(ticks, names, fontsize=8)
    ax_matrix.set_xlabel(f"class in {label_b}")
    ax_matrix.set_ylabel(f"class in {label_a}")
    ax_matrix.set_title("transitions (km², diagonal: unchanged)", fontsize=10)
    for i in range(km2.shape[0]):
        for j in range(km2.shape[1]):
            if km2[i, j] > 0:
                colour = "black" if norm(km2[i, j]) > 0.6 else "white"  # readable on viridis' yellow end
                ax_matrix.text(j, i, f"{km2[i, j]:.3g}", ha="center", va="center", fontsize=6, color=colour)
    net = km2.sum(axis=0) - km2.sum(axis=1)
    colours = [tuple(c / 255 for c in rgb) for rgb in legend.colours]
    ax_net.barh(list(ticks), net, color=colours, edgecolor="0.3", linewidth=0.5)
    ax_net.axvline(0, color="0.3", linewidth=0.8)
    ax_net.set_yticks(ticks, names, fontsize=8)
    ax_net.invert_yaxis()
    ax_net.set_xlabel(f"net change {label_a} → {label_b} (km²)")
    ax_net.set_title("net change per class", fontsize=10)
    share = changed / total if total > 0 else 0.0
    heading = f"land-cover change {label_a} → {label_b}: {changed:,.2f} km² of {total:,.2f} km² changed ({share:.1%})"
    fig.suptitle((f"{title}\n" if title else "") + heading, fontsize=11)
    save_map_png(fig, png)


__all__ = ["mosaic", "mosaic_grid", "transition_table"]
