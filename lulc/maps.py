"""Map regions: land-cover maps of any place, size and year, from imagery alone.

A map region (``maps.regions.<name>``) needs no labels, chips or splits: its imagery is searched once per
region and period (a year, or a date range), cached, and then processed as **processing tiles** so that a
county or a state runs as many small jobs (``--cores N`` or a SLURM profile runs them in parallel) whose
memory does not grow with the region.

**Tiling** (:func:`plan_tiles`, run by the ``map_tiles`` checkpoint). The region's bbox is cut at the UTM
zone borders (every 6 degrees of longitude); each part gets the grid the download stage would give it on its
own (its bbox projected to its zone and snapped outward to the pixel size), and that grid is cut into square
tile *cores* of ``maps.tile_km`` (default 109.8 km, the side of an HLS / MGRS tile) rounded to a whole number
of predict strides. Tiles that miss the region (the parts of a zone's rectangle outside the zone, or outside
every feature of a vector file) are skipped. Tile ids are ``<EPSG>_r<row>_c<col>``.

**Halo.** Every tile is downloaded and predicted with a halo of ``maps.halo_px`` pixels beyond its core on
every side (clipped at the region's edge), and only the core is kept. With a halo of whole strides, at least
one predict tile wide (the default), the predictor's sliding windows over a tile are exactly the windows of a
single prediction of the whole region (they start on the same lattice of strides), and every window that
touches a core pixel lies inside the tile's image: each core pixel sees the same windows, the same pixels and
the same blending weights as in one big job. The mosaic therefore has no seams and equals the single-job map
(up to floating-point differences between batch compositions). What the halo costs: ``((core + 2 halo) /
core)^2`` - 1 extra pixels, about 40 % at the defaults with 224-pixel tiles.

**Zones.** A region that spans UTM zones is processed per zone in its own CRS (no reprojection of the imagery
beyond what the download does to every asset), and the mosaic (:mod:`lulc.mosaic`) reprojects the tiles of
the other zones once, nearest neighbour, into the region's CRS (``maps.regions.<name>.crs``, default the zone
of the region's centre).

**Frames** are chosen once per region and period (the ``map_frames`` rule, :func:`frame_grids`): the same rule as
for an AOI (:func:`lulc.download.select_frames`: the clearest acquisition in each window), with each date's
clear fraction measured over the region (inside its features, for a vector file) on a coarse grid, and every
tile of the region is built from exactly those dates. The map therefore does not depend on how the region was
cut into tiles.

**The region's features** (a vector file) bound the map: a tile core's pixels whose centre lies outside every
feature are nodata (:func:`region_mask`, applied by :mod:`lulc.map_predict`), so the mosaics, change tables and
anything counted from them cover the region only. A bbox region is its whole bbox grid.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.warp import transform_bounds

from lulc.aoi import AOI
from lulc.hls import utm_epsg
from lulc.io import atomic_path

log = logging.getLogger(__name__)

#: Width of a UTM zone in degrees of longitude.
ZONE_WIDTH_DEG = 6.0
#: Largest side, in pixels, of each zone's grid on which a region's clear fractions are measured (:func:`frame_grids`).
FRAMES_MAX_SIDE = 1024
#: More processing tiles than this in one region is said at start-up (:func:`tile_count`).
MANY_TILES = 1000
#: Columns of ``tiles.csv`` (the checkpoint's output), in order.
TILE_COLUMNS: tuple[str, ...] = (
    "tile", "epsg", "resolution", "left", "top", "width", "height",
    "core_row", "core_col", "core_height", "core_width",
)  # fmt: skip


class MapConfigError(ValueError):
    """A ``maps.regions.<name>`` entry that cannot be mapped; the message names the key."""


# ----------------------------------------------------------------------------------------------- regions


@dataclass(frozen=True)
class Period:
    """One map's time span: a year (label ``2023``) or a date range (label ``2023-03-01_2023-10-31``)."""

    label: str
    start: date
    end: date


@dataclass(frozen=True)
class MapRegion:
    """A region to map: its WGS84 bbox, an optional vector file (tiles that miss its features are skipped, pixels
    outside them are nodata), its periods."""

    name: str
    bbox: tuple[float, float, float, float]
    periods: tuple[Period, ...]
    file: str | None = None

    def aoi(self, period: Period) -> AOI:
        """The region in one period, as the search and download stages take it."""
        return AOI(name=f"{self.name} {period.label}", bbox=self.bbox, start=period.start, end=period.end)

    def period(self, label: str) -> Period:
        for period in self.periods:
            if period.label == label:
                return period
        raise KeyError(f"maps.regions.{self.name}: no period {label!r} (periods: {[p.label for p in self.periods]})")


def region_periods(name: str, entry: Mapping[str, Any], aois: Mapping[str, Any] | None = None) -> list[Period]:
    """The periods of ``maps.regions.<name>``: ``years`` / ``year`` (whole years), ``start`` + ``end`` (one
    range), or else the year of the training AOI named by ``aoi``."""
    where = f"maps.regions.{name}"
    years = list(entry.get("years") or [])
    if entry.get("year") is not None:
        years.append(int(entry["year"]))
    has_range = entry.get("start") is not None or entry.get("end") is not None
    if years and has_range:
        raise MapConfigError(f"config key '{where}': give years (or year) or start/end, not both")
    if has_range:
        if entry.get("start") is None or entry.get("end") is None:
            raise MapConfigError(f"config key '{where}': start and end go together")
        start, end = date.fromisoformat(str(entry["start"])), date.fromisoformat(str(entry["end"]))
        if end < start:
            raise MapConfigError(f"config key '{where}.end': {end} is before start {start}")
        return [Period(f"{start.isoformat()}_{end.isoformat()}", start, end)]
    if not years:
        aoi_name = entry.get("aoi")
        if aoi_name is None or aois is None or aoi_name not in aois:
            raise MapConfigError(f"config key '{where}': give years, year or start/end (or a training aoi)")
        aoi = aois[aoi_name]
        label = str(aoi.start.year) if (aoi.start, aoi.end) == _year_bounds(aoi.start.year) else None
        return [Period(label or f"{aoi.start.isoformat()}_{aoi.end.isoformat()}", aoi.start, aoi.end)]
    if len(set(years)) != len(years):
        raise MapConfigError(f"config key '{where}.years': {years} repeats a year")
    return [Period(str(year), *_year_bounds(year)) for year in sorted(years)]


def _year_bounds(year: int) -> tuple[date, date]:
    return date(year, 1, 1), date(year, 12, 31)


def parse_region(
    name: str, entry: Mapping[str, Any], aois: Mapping[str, Any] | None = None, base_dir: Path | None = None
) -> MapRegion:
    """``maps.regions.<name>`` -> :class:`MapRegion`: ``bbox``, ``file`` or ``aoi`` (a training AOI's extent)."""
    where = f"maps.regions.{name}"
    given = [key for key in ("bbox", "file", "aoi") if entry.get(key) is not None]
    if len(given) != 1:
        raise MapConfigError(f"config key '{where}': give exactly one of bbox, file or aoi (got {given or 'none'})")
    if given == ["aoi"] and (aois is None or entry["aoi"] not in aois):
        known = sorted(aois or {})
        raise MapConfigError(f"config key '{where}.aoi': {entry['aoi']!r} is not an AOI (aois: {known})")
    periods = tuple(region_periods(name, entry, aois))
    if given == ["aoi"]:
        assert aois is not None
        return MapRegion(name, aois[entry["aoi"]].bbox, periods)
    # the AOI parser checks a bbox / reads a vector file the same way for both sections
    probe = {key: entry[key] for key in ("bbox", "file") if entry.get(key) is not None}
    try:
        parsed = AOI.from_config(name, {**probe, "year": 2000}, base_dir=base_dir)
    except (ValueError, OSError) as error:
        raise MapConfigError(f"config key '{where}': " + str(error).replace(f"aois.{name}", where)) from error
    file = None
    if entry.get("file") is not None:
        path = Path(str(entry["file"])).expanduser()
        file = str(path if path.is_absolute() or base_dir is None else base_dir / path)
    return MapRegion(name, parsed.bbox, periods, file)


def parse_map_regions(config: Mapping[str, Any], base_dir: Path | None = None) -> dict[str, MapRegion]:
    """Every ``maps.regions`` entry of a validated config (training AOIs resolved), by name."""
    aois = {name: AOI.from_config(name, entry, base_dir=base_dir) for name, entry in config["aois"].items()}
    return {
        name: parse_region(name, entry, aois, base_dir) for name, entry in config["maps"]["regions"].items()
    }


def training_aois_overlapped(region: MapRegion, config: Mapping[str, Any], base_dir: Path | None = None) -> list[str]:
    """The training AOIs (``aois``) whose bbox intersects the region's: a comparison of the region's map with
    its labels then includes pixels the models were trained, tuned or tested on, and says so."""
    west, south, east, north = region.bbox
    names = []
    for name, entry in config["aois"].items():
        w, s, e, n = AOI.from_config(name, entry, base_dir=base_dir).bbox
        if w < east and west < e and s < north and south < n:
            names.append(name)
    return names


def map_predict_geometry(config: Mapping[str, Any]) -> tuple[int, int]:
    """(tile, stride) of the predictor for the runs of this config (:func:`predict_geometry`)."""
    return predict_geometry(config["predict"], int(config["chips"]["size"]))


def region_crs(region: MapRegion, crs: str | None) -> str:
    """The mosaic CRS: ``crs`` where given, else the UTM zone of the region's centre."""
    if crs:
        return str(crs)
    min_lon, min_lat, max_lon, max_lat = region.bbox
    return f"EPSG:{utm_epsg((min_lon + max_lon) / 2.0, (min_lat + max_lat) / 2.0)}"


_TILE_IDS: dict[tuple[str, float], list[str]] = {}


def map_tiles_in(path: str | os.PathLike[str]) -> list[str]:
    """The tile ids of a ``tiles.csv``, read once per file version (the DAG asks for them once per job)."""
    key = (str(path), os.stat(path).st_mtime)
    if key not in _TILE_IDS:
        with open(path, newline="", encoding="utf-8") as handle:
            _TILE_IDS[key] = [row["tile"] for row in csv.DictReader(handle)]
    return _TILE_IDS[key]


# ----------------------------------------------------------------------------------------------- tiling


def predict_geometry(predict: Mapping[str, Any], chip_size: int) -> tuple[int, int]:
    """(tile, stride) of the predictor: ``predict.tile`` (default the chip size the runs are trained on) and
    ``predict.stride`` (default ``tile - tile // 4``), as :func:`lulc.predict.predict_run` resolves them."""
    tile = int(predict.get("tile") or chip_size)
    stride = int(predict.get("stride") or tile - tile // 4)
    return tile, stride


def tile_sizes(tile_km: float, halo_px: int | None, resolution: float, tile: int, stride: int) -> tuple[int, int]:
    """(core, halo) in pixels: ``tile_km`` and ``halo_px`` rounded to whole strides (at least one stride of
    core; by default the smallest halo of at least one predict tile), see the module docstring."""
    core = max(1, round(tile_km * 1000.0 / resolution / stride)) * stride
    wanted = tile if halo_px is None else int(halo_px)
    halo = math.ceil(wanted / stride) * stride
    return core, halo


@dataclass(frozen=True)
class ProcessingTile:
    """One processing tile: the grid downloaded and predicted (core + halo, in its UTM zone) and where its core
    lies in it (rows / columns of that grid)."""

    tile: str
    epsg: int
    resolution: float
    left: float
    top: float
    width: int
    height: int
    core_row: int
    core_col: int
    core_height: int
    core_width: int

    @property
    def transform(self) -> Any:
        from rasterio.transform import from_origin

        return from_origin(self.left, self.top, self.resolution, self.resolution)

    def grid(self) -> Any:
        """The download grid (:class:`lulc.grid.Grid`) of the tile with its halo."""
        from lulc.grid import Grid

        return Grid(self.epsg, self.resolution, self.left, self.top, self.width, self.height)

    def core_grid(self) -> Any:
        """The download grid (:class:`lulc.grid.Grid`) of the core alone (where labels are compared)."""
        from lulc.grid import Grid

        left, _, _, top = self.core_bounds()
        return Grid(self.epsg, self.resolution, left, top, self.core_width, self.core_height)

    def core_bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of the core in the tile's CRS."""
        left = self.left + self.core_col * self.resolution
        top = self.top - self.core_row * self.resolution
        return (left, top - self.core_height * self.resolution, left + self.core_width * self.resolution, top)


def zone_parts(bbox: Sequence[float]) -> list[tuple[int, tuple[float, float, float, float]]]:
    """The bbox cut at UTM zone borders: (EPSG of the zone, the part's WGS84 bbox), west to east."""
    min_lon, min_lat, max_lon, max_lat = (float(v) for v in bbox)
    parts = []
    west = min_lon
    while west < max_lon:
        border = -180.0 + ZONE_WIDTH_DEG * (math.floor((west + 180.0) / ZONE_WIDTH_DEG) + 1)
        east = min(border, max_lon)
        if east - west > 1e-12:
            centre_lat = (min_lat + max_lat) / 2.0
            parts.append((utm_epsg((west + east) / 2.0, centre_lat), (west, min_lat, east, max_lat)))
        west = east
    return parts


def zone_grids(region: MapRegion, resolution: float) -> list[Any]:
    """The grid (:class:`lulc.grid.Grid`) of each zone part of the region: its bbox projected to its zone
    and snapped outward to ``resolution``, as the download stage grids an AOI of that extent."""
    from lulc.grid import Grid

    grids = []
    for epsg, part in zone_parts(region.bbox):
        left, bottom, right, top = transform_bounds("EPSG:4326", f"EPSG:{epsg}", *part, densify_pts=21)
        left = math.floor(left / resolution) * resolution
        top = math.ceil(top / resolution) * resolution
        width = round((math.ceil(right / resolution) * resolution - left) / resolution)
        height = round((top - math.floor(bottom / resolution) * resolution) / resolution)
        grids.append(Grid(epsg=epsg, resolution=resolution, left=left, top=top, width=width, height=height))
    return grids


def read_region_file(path: str | os.PathLike[str], crs: str = "EPSG:4326") -> Any:
    """The union of a vector file's features (GeoJSON, GeoPackage, ...; any CRS, none declared read as WGS84) as
    one shapely geometry in ``crs``: the one reader of a region's file (tiling, frame choice, the maps' masks)."""
    import geopandas as gpd

    frame = gpd.read_file(path)
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
    if frame.crs is None:
        frame = frame.set_crs("EPSG:4326")
    return frame.to_crs(crs).geometry.union_all()


def region_shape(region: MapRegion) -> Any:
    """The region's extent as a WGS84 shapely geometry: the vector file's features, else the bbox."""
    from shapely.geometry import box

    if region.file is None:
        return box(*region.bbox)
    return read_region_file(region.file)


def region_mask(geometry: Any, grid: Any, all_touched: bool = False) -> np.ndarray:
    """(H, W) bool on ``grid`` (a :class:`lulc.grid.Grid`): True where the pixel's centre lies inside ``geometry``
    (a shapely geometry in the grid's CRS), GDAL's rasterisation rule; with ``all_touched``, every pixel the
    geometry touches. The pixels of a region's map that count as the region's."""
    from rasterio.features import geometry_mask
    from shapely.geometry import mapping

    if geometry.is_empty:
        return np.zeros((grid.height, grid.width), dtype=bool)
    shape = (grid.height, grid.width)
    mask = geometry_mask([mapping(geometry)], out_shape=shape, transform=grid.transform, all_touched=all_touched,
                         invert=True)  # fmt: skip
    return np.asarray(mask)


def _zone_extents(region: MapRegion) -> list[tuple[int, Any, Any]]:
    """(EPSG, the part's WGS84 bbox, the region inside that part in the zone's CRS) of each zone part (west to
    east) that the region's extent reaches."""
    from rasterio.warp import transform_geom
    from shapely.geometry import box, mapping, shape

    extent = region_shape(region)
    parts = []
    for epsg, part in zone_parts(region.bbox):
        inside = extent.intersection(box(*part))
        if inside.is_empty:
            continue
        inside_utm = shape(transform_geom("EPSG:4326", f"EPSG:{epsg}", mapping(inside.segmentize(0.01))))
        parts.append((epsg, part, inside_utm))
    return parts


def _zone_tiles(grid: Any, inside: Any, core_px: int, halo_px: int) -> list[ProcessingTile]:
    """The tiles of one zone grid whose core meets ``inside`` (the region in the zone's CRS), row by row."""
    import shapely

    res, left, top, width, height = grid.resolution, grid.left, grid.top, grid.width, grid.height
    rows, cols = np.mgrid[0 : math.ceil(height / core_px), 0 : math.ceil(width / core_px)]
    r0, c0 = rows * core_px, cols * core_px
    r1, c1 = np.minimum(r0 + core_px, height), np.minimum(c0 + core_px, width)
    shapely.prepare(inside)
    cores = shapely.box(left + c0 * res, top - r1 * res, left + c1 * res, top - r0 * res)
    tiles = []
    for row, col in zip(*np.nonzero(shapely.intersects(cores, inside)), strict=True):
        cr0, cc0, cr1, cc1 = int(r0[row, col]), int(c0[row, col]), int(r1[row, col]), int(c1[row, col])
        hr0, hc0 = max(0, cr0 - halo_px), max(0, cc0 - halo_px)
        hr1, hc1 = min(height, cr1 + halo_px), min(width, cc1 + halo_px)
        tile = ProcessingTile(
            tile=f"{grid.epsg}_r{row:03d}_c{col:03d}", epsg=grid.epsg, resolution=res,
            left=left + hc0 * res, top=top - hr0 * res, width=hc1 - hc0, height=hr1 - hr0,
            core_row=cr0 - hr0, core_col=cc0 - hc0, core_height=cr1 - cr0, core_width=cc1 - cc0,
        )  # fmt: skip
        tiles.append(tile)
    return tiles


def plan_tiles(region: MapRegion, resolution: float, core_px: int, halo_px: int) -> list[ProcessingTile]:
    """The processing tiles of a region (see the module docstring), in zone, row, column order."""
    grids = {grid.epsg: grid for grid in zone_grids(region, resolution)}
    tiles: list[ProcessingTile] = []
    for epsg, _, inside in _zone_extents(region):
        tiles += _zone_tiles(grids[epsg], inside, core_px, halo_px)
    if not tiles:
        raise MapConfigError(f"config key 'maps.regions.{region.name}': the region covers no processing tile")
    return tiles


def tile_count(region: MapRegion, resolution: float, core_px: int, exact_below: int = 200_000) -> int:
    """How many processing tiles the region makes: exact (:func:`plan_tiles`) where its zone grids hold at most
    ``exact_below`` cores, else that bound (cheap; the start-up checks only compare it with :data:`MANY_TILES`)."""
    bound = sum(
        math.ceil(g.height / core_px) * math.ceil(g.width / core_px) for g in zone_grids(region, resolution)
    )
    if bound <= MANY_TILES or bound > exact_below:
        return bound
    return len(plan_tiles(region, resolution, core_px, 0))


def frame_grids(region: MapRegion, resolution: float) -> list[tuple[Any, np.ndarray]]:
    """The grids on which the region's clear fractions are measured, one per UTM zone it reaches, each with the
    mask of the region's pixels on it (:func:`region_mask`; all touched pixels where no centre is inside).

    The resolution is the smallest whole multiple of ``resolution`` at which every zone grid of the region
    (:func:`zone_grids`) is at most :data:`FRAMES_MAX_SIDE` pixels on a side: the full resolution for a region
    of up to ~30 km at 30 m, 120 m for an HLS tile (109.8 km), ~500 m for a state. Fmask is read at that
    resolution (nearest neighbour), so each date's clear fraction is that of a regular sample of the region's
    pixels."""
    from lulc.grid import Grid

    fine = zone_grids(region, resolution)
    factor = max(1, math.ceil(max(max(g.width, g.height) for g in fine) / FRAMES_MAX_SIDE))
    coarse = resolution * factor
    grids = {g.epsg: g for g in fine}
    result = []
    for epsg, _, inside in _zone_extents(region):
        left, bottom, right, top = grids[epsg].bounds
        left, top = math.floor(left / coarse) * coarse, math.ceil(top / coarse) * coarse
        width = math.ceil((right - left) / coarse - 1e-9)
        height = math.ceil((top - bottom) / coarse - 1e-9)
        grid = Grid(epsg=epsg, resolution=coarse, left=left, top=top, width=width, height=height)
        mask = region_mask(inside, grid)
        result.append((grid, mask if mask.any() else region_mask(inside, grid, all_touched=True)))
    return result


def core_mask(region_file: str | os.PathLike[str], tile: ProcessingTile) -> np.ndarray:
    """(core height, core width) bool: True where a pixel of ``tile``'s core has its centre inside the union of
    the region file's features (read in the tile's CRS, so a projected file's edges stay straight)."""
    return region_mask(read_region_file(region_file, f"EPSG:{tile.epsg}"), tile.core_grid())


def write_tiles(tiles: Iterable[ProcessingTile], path: str | os.PathLike[str]) -> None:
    """``tiles.csv``: one row per processing tile (:data:`TILE_COLUMNS`), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TILE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for tile in tiles:
        writer.writerow(asdict(tile))
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def read_tiles(path: str | os.PathLike[str]) -> list[ProcessingTile]:
    """The tiles of a ``tiles.csv`` written by :func:`write_tiles`."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        ProcessingTile(
            tile=row["tile"], epsg=int(row["epsg"]), resolution=float(row["resolution"]), left=float(row["left"]),
            top=float(row["top"]), width=int(row["width"]), height=int(row["height"]),
            core_row=int(row["core_row"]), core_col=int(row["core_col"]), core_height=int(row["core_height"]),
            core_width=int(row["core_width"]),
        )
        for row in rows
    ]


def find_tile(path: str | os.PathLike[str], tile_id: str) -> ProcessingTile:
    """The tile ``tile_id`` of a ``tiles.csv``; KeyError naming the file where it is not there."""
    for tile in read_tiles(path):
        if tile.tile == tile_id:
            return tile
    raise KeyError(f"{path}: no processing tile {tile_id!r}")
