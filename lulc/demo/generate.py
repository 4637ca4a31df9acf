"""The entry point of the offline demo: :func:`generate_demo` validates ``demo.regions`` and writes every
region's labels and granules, and the catalog over them, into a static STAC catalog that replaces the old
one only when complete.

Apart because it is the one part that knows the config and the file layout: it draws each region's
landscape (:mod:`lulc.demo.landscape`), renders its acquisitions (:mod:`lulc.demo.render`) and writes them
(:mod:`lulc.demo.stac`), each from its own generator.

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
  is true) are written for ``year`` only; between years the landscape changes a little
  (:func:`lulc.demo.landscape.landscape_in_year`).

Layout under ``out_dir`` (every href relative, so the folder can be moved)::

    catalog.json
    hls2-s30/collection.json
    hls2-s30/HLS.S30.T15TVG.2023080T164412.v2.0/HLS.S30.T15TVG.2023080T164412.v2.0.json
    hls2-s30/HLS.S30.T15TVG.2023080T164412.v2.0/HLS.S30.T15TVG.2023080T164412.v2.0.B02.tif  (and so on)
    hls2-l30/...
    io-lulc-annual-v02/15T-2023/15T-2023.json
    io-lulc-annual-v02/15T-2023/15T_20230101-20240101.tif
    truth/{region}_{year}.tif      (every region and imagery year: the true classes, outside the catalog)

The truth rasters (:func:`lulc.demo.stac.write_truth`) are the landscape each year's imagery was rendered
from, without label noise, as class indices on the label grid: the reference of the demo's accuracy
assessment (``maps.regions.<name>.reference``). No STAC item points at them, so no search, download or model
ever sees them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pystac

from lulc.demo.arrays import block_mean, child_rng
from lulc.demo.geometry import SUB, RegionGrid, footprint, region_grid
from lulc.demo.labels import DEFAULT_LABEL_LEGEND, check_label_legend
from lulc.demo.landscape import LANDSCAPES, WATER, labels_from_latent, landscape_in_year, make_landscape
from lulc.demo.polygons import field_polygons, polygon_name, write_polygons
from lulc.demo.render import plan_acquisitions, render
from lulc.demo.stac import (
    HLS_COLLECTIONS,
    LABEL_COLLECTIONS,
    collection,
    demo_collections,
    hls_item_id,
    label_item_id,
    write_hls_granule,
    write_label_item,
    write_truth,
)

#: Smallest and largest region side accepted, in 30 m pixels.
MIN_REGION_PX, MAX_REGION_PX = 32, 2048
#: Imagery years a region may list (config key ``years``).
YEAR_RANGE = (1980, 2100)
#: Where the true land cover of every region and imagery year goes, under the demo folder (outside the catalog).
TRUTH_DIR = "truth"
#: Where the labelled field polygons of every labelled region go (``demo.label_polygons``), outside the catalog.
POLYGON_DIR = "polygons"


def truth_name(region: str, year: int) -> str:
    """The file name of a region's true land cover of ``year`` under :data:`TRUTH_DIR`."""
    return f"{region}_{year}.tif"


@dataclass(frozen=True)
class LabelOptions:
    """How labels are written: the legend of the label collection and truth (``demo.label_legend``) and the
    number of field polygons per labelled region (``demo.label_polygons``, 0 = none)."""

    legend: str = DEFAULT_LABEL_LEGEND
    polygons: int = 0


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
    label_legend: str = DEFAULT_LABEL_LEGEND,
    label_polygons: int = 0,
) -> Path:
    """Generate the offline demo (HLS S30 / L30 granules and IO- or WorldCover-like labels per region) as a static,
    self-contained STAC catalog under ``out_dir``, deterministically from ``seed``.

    ``regions`` maps a name to ``{"center": [lon, lat], "size_px": n}`` (optionally ``"landscape":
    "agricultural" | "valley"``, by default agricultural; ``"labels": false`` for
    imagery only; ``"years": [...]`` for imagery of several years, by default ``[year]``: see the module
    docstring). Each region gets, per imagery year, ``dates_per_sensor`` S30 and as many L30 dates
    spread over that year, of which ``cloudy_dates`` are heavily clouded, and (unless ``labels`` is
    false) labels for ``year``, in ``label_legend`` (``io-lulc-9``: an ``io-lulc-annual-v02`` collection;
    ``esa-worldcover``: an ``esa-worldcover`` collection, see :mod:`lulc.demo.labels`), and, when
    ``label_polygons`` > 0, that many labelled field polygons (:mod:`lulc.demo.polygons`). Everything is
    written to a temporary sibling folder that replaces ``out_dir`` only when complete, so a crash never
    leaves a half-written demo. Returns ``out_dir / "catalog.json"``.
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
    check_label_legend(label_legend)
    if not isinstance(label_polygons, int) or isinstance(label_polygons, bool) or label_polygons < 0:
        raise ValueError(f"demo.label_polygons must be an integer >= 0, got {label_polygons!r}")
    options = LabelOptions(label_legend, label_polygons)
    validated = _validated_regions(regions, year)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # No dot after the leading one: pystac takes a root href with a file extension for a file path and
    # would write the catalog into its parent folder.
    staging = out_dir.parent / f".{out_dir.name.replace('.', '_')}-staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        collections = demo_collections(label_legend)
        items: dict[str, list[pystac.Item]] = {collection_id: [] for collection_id in collections}
        for region in validated:
            _generate_region(staging, region, year, seed, dates_per_sensor, cloudy_dates, items, options)
        kind = "ESA WorldCover-like" if label_legend == "esa-worldcover" else "IO LULC-like"
        description = (
            f"Synthetic HLS v2.0 imagery and {kind} labels for the workflow's offline demo regions "
            f"({', '.join(region.grid.name for region in validated)}; year {year}, seed {seed}). Same "
            "collections, asset keys and file formats as Planetary Computer; every href is relative."
        )
        if label_legend == "esa-worldcover":
            description += " The esa-worldcover label asset is keyed 'data' (Planetary Computer: 'map')."
        other_years = [r for r in validated if r.years != (year,)]
        if other_years:
            listed = "; ".join(f"{r.grid.name} ({', '.join(map(str, r.years))})" for r in other_years)
            description += f" Imagery years, where not {year} alone: {listed}."
        unlabelled = [r.grid.name for r in validated if not r.labels]
        if unlabelled:
            description += f" Imagery only, without labels: {', '.join(unlabelled)}."
        catalog = pystac.Catalog(id="lulc-demo", title="LULC workflow offline demo", description=description)
        tile_bboxes = [footprint(r.grid.epsg, r.grid.hls_transform, r.grid.hls_shape)[1] for r in validated]
        for collection_id in collections:
            catalog.add_child(collection(collection_id, items[collection_id], year, tile_bboxes))
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
    options: LabelOptions = LabelOptions(),
) -> None:
    """Draw one region's landscape, write its labels and field polygons (for ``year``) and its granules (for
    each of its imagery years), and collect their items."""
    grid = region.grid
    scene = make_landscape(child_rng(seed, grid.name, "landscape"), grid.latent_shape, region.kind)
    if region.labels:
        off_r, off_c = grid.label_offset
        latent_labels = scene.classes[off_r : off_r + grid.label_shape[0], off_c : off_c + grid.label_shape[1]]
        labels = labels_from_latent(child_rng(seed, grid.name, "labels"), latent_labels)
        label_dir = root / LABEL_COLLECTIONS[options.legend] / label_item_id(grid, year, options.legend)
        items[LABEL_COLLECTIONS[options.legend]].append(write_label_item(label_dir, grid, year, labels, options.legend))
        if options.polygons:
            rng = child_rng(seed, grid.name, "polygons")
            frame = field_polygons(rng, grid, latent_labels, options.polygons, options.legend)
            write_polygons(root / POLYGON_DIR / polygon_name(grid.name), frame)

    water_share = block_mean((scene.classes == WATER).astype(np.float32))  # water never changes
    row, col, height, width = grid.region_window
    core = (slice(row * SUB, (row + height) * SUB), slice(col * SUB, (col + width) * SUB))
    for imagery_year in region.years:
        # demo.year keeps the keys of a single-year region; other years get their own.
        suffix = "" if imagery_year == year else f"-{imagery_year}"
        year_scene = landscape_in_year(scene, child_rng(seed, grid.name, "change"), imagery_year - year, core)
        off_r, off_c = grid.label_offset
        truth = year_scene.classes[off_r : off_r + grid.label_shape[0], off_c : off_c + grid.label_shape[1]]
        write_truth(root / TRUTH_DIR / truth_name(grid.name, imagery_year), grid, truth, options.legend)
        plan = plan_acquisitions(
            child_rng(seed, grid.name, f"dates{suffix}"), grid, imagery_year, dates_per_sensor, cloudy_dates
        )
        for acq in plan:
            rng = child_rng(seed, grid.name, f"acquisition{suffix}", acq.index)
            bands, fmask = render(year_scene, acq, rng, water_share)
            collection_id = HLS_COLLECTIONS[acq.sensor]
            item_id = hls_item_id(acq.sensor, grid.mgrs, acq.datetime)
            items[collection_id].append(write_hls_granule(root / collection_id / item_id, grid, acq, bands, fmask))


def _replace_dir(staging: Path, out_dir: Path) -> None:
    """Swap the finished staging folder into place; an older demo is removed only after the swap."""
    if out_dir.exists() or out_dir.is_symlink():
        retired = out_dir.parent / f".{out_dir.name.replace('.', '_')}-retired-{uuid.uuid4().hex[:8]}"
        os.replace(out_dir, retired)
        os.replace(staging, out_dir)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, out_dir)
