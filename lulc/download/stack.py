"""Orchestration of the download stage: the checks before any request, then every output of one place.

:func:`write_aoi_stack` (an AOI with labels), :func:`write_region_frames` (the frames of a whole map region),
:func:`write_imagery_stack` (a map tile's imagery on a given grid, from the region's frames) and
:func:`write_label_raster` (a map tile's labels) check what needs no download first, open one GDAL
environment per source, and remove every output again when anything fails. The work itself is done by the
modules below: :mod:`~lulc.download.items`, :mod:`~lulc.download.imagery`, :mod:`~lulc.download.frames`,
:mod:`~lulc.download.labels` and :mod:`~lulc.download.cog`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, cast

import dask
import dask.array as da
import numpy as np
import pystac
import rasterio
import stackstac
from tqdm import tqdm

from lulc import hls
from lulc.access import check_reachable, check_signing, sign_item
from lulc.aoi import AOI, parse_season_windows
from lulc.download.cog import write_cog
from lulc.download.environment import AssetIndex, asset_errors, gdal_env
from lulc.download.frames import Acquisition, group_acquisitions, select_frames
from lulc.download.imagery import (
    NoOverlap,
    clear_share,
    masked_frame,
    nodata_stack,
    region_coverage,
    stack_acquisition,
)
from lulc.download.items import check_local_assets, first_http_href, offline_item, with_projection
from lulc.download.label_files import raster_labels, vector_labels
from lulc.download.labels import (
    CodeCounter,
    checked_labels,
    label_dtype_and_fill,
    label_stack,
)
from lulc.grid import Grid, aoi_grid
from lulc.io import atomic_path, write_json
from lulc.legends import IGNORE_INDEX, LabelSource
from lulc.schema import section

log = logging.getLogger(__name__)

#: Acquisitions whose clear fraction is computed together (their Fmask windows are read concurrently).
CLEAR_FRACTION_BATCH = 8

#: The files the download stage writes in its output folder (all removed when it fails).
OUTPUT_NAMES: tuple[str, ...] = ("image.tif", "mask.tif", "label.tif", "frames.json", "dates.csv")
#: The files :func:`write_imagery_stack` writes (no labels; all removed when it fails).
IMAGERY_OUTPUT_NAMES: tuple[str, ...] = ("image.tif", "mask.tif", "frames.json", "dates.csv")


@dataclass(frozen=True)
class _Settings:
    """The ``download`` config values the stage works with (``resolution`` and ``crs`` only make an AOI's grid)."""

    block_size: int
    frames: int
    mask_flags: tuple[str, ...]
    min_clear: float
    seasons: list[tuple[str, str]]


def _download_settings(cfg: dict[str, Any]) -> tuple[dict[str, Any], _Settings]:
    """The validated ``download`` section (defaults filled) and the values the stage works with."""
    cfg = section("download", cfg)
    frames = int(cfg["frames"])
    settings = _Settings(
        block_size=int(cfg["block_size"]),
        frames=frames,
        mask_flags=tuple(cfg["mask_flags"]),
        min_clear=float(cfg["min_clear_fraction"]),
        seasons=parse_season_windows(cfg["season_windows"], frames),
    )
    return cfg, settings


@dataclass(frozen=True)
class _Place:
    """What is downloaded: ``where`` names it in messages (``AOI tiny``), ``name`` in the record and the
    progress bars; ``start``..``end`` (inclusive) is the period the frames are chosen from."""

    where: str
    name: str
    start: date
    end: date


def write_aoi_stack(
    aoi: AOI,
    imagery: pystac.ItemCollection,
    labels: pystac.ItemCollection,
    cfg: dict[str, Any],
    out_dir: Path,
    imagery_signing: str = "none",
    labels_signing: str = "none",
    label_source: LabelSource | None = None,
) -> dict[str, Any]:
    """Build ``image.tif``, ``mask.tif``, ``label.tif``, ``frames.json`` and ``dates.csv`` for one AOI.

    ``cfg`` is the ``download`` config section; ``label_source`` the ``labels`` section resolved (default: the
    STAC ``labels`` in the IO LULC 9-class legend). Returns the frames record written to ``frames.json``.
    Everything that can fail without downloading (config, asset keys, missing local files, the label items'
    declared classes, credentials, an offline host) is checked first; if anything fails once writing has
    begun, every output is removed again.

    Only the items' assets are used: their links (``root``, ``self``, ``parent``, ...) are dropped, so the
    stage needs the cached search results and the asset hosts, never the STAC API.
    """
    cfg, settings = _download_settings(cfg)
    grid = aoi_grid(aoi, float(cfg["resolution"]), cfg["crs"])
    place = _Place(where=f"AOI {aoi.name}", name=aoi.name, start=aoi.start, end=aoi.end)
    return _write_stack(place, grid, imagery, labels, settings, Path(out_dir), imagery_signing, labels_signing,
                        source=label_source)  # fmt: skip


def write_imagery_stack(
    name: str,
    start: date,
    end: date,
    grid: Grid,
    imagery: pystac.ItemCollection,
    cfg: dict[str, Any],
    out_dir: Path,
    imagery_signing: str = "none",
    frames: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build ``image.tif``, ``mask.tif``, ``frames.json`` and ``dates.csv`` (:data:`IMAGERY_OUTPUT_NAMES`, no
    labels) on ``grid`` exactly as given: a tile of a map region that has no labels, say.

    ``frames``: the record of :func:`write_region_frames` (a map region's ``frames.json``). The tile is then built
    from exactly those dates, whatever their clear fraction over this grid; a date with no item over the grid
    is a frame of nodata there. ``frames.json`` and ``dates.csv`` then hold the region's choice and clear
    fractions. Without ``frames``, the frames are chosen over ``grid`` as below.

    ``name`` is what messages call the place (``map region iowa_big 2023 tile 32615_r000_c001``) and the
    record's ``aoi``; frames are chosen from ``start``..``end`` (inclusive) as for an AOI. ``cfg`` is the
    ``download`` config section (its ``resolution`` and ``crs`` are not used: ``grid`` is). Files, tags, the
    checks before any download (asset keys, local files, signing, whether the imagery host answers), the
    removal of every output on failure and the returned record are those of :func:`write_aoi_stack`; no label
    source and no STAC API is contacted. Only ``grid``'s window of each asset is read, on the same pixel
    lattice, so tiles of a region line up pixel for pixel with a download of the whole region (for the same
    frames). Dates of which no item overlaps ``grid`` are not candidates (a region's imagery may hold tiles
    that miss this one); none at all is an error.
    """
    _, settings = _download_settings(cfg)
    _check_grid(grid, name)
    if not isinstance(start, date) or not isinstance(end, date) or end < start:
        raise ValueError(f"{name}: the period must be two dates, start <= end; got {start!r} .. {end!r}")
    place = _Place(where=name, name=name, start=start, end=end)
    return _write_stack(place, grid, imagery, None, settings, Path(out_dir), imagery_signing, "none", frames)


def write_label_raster(
    name: str,
    grid: Grid,
    labels: pystac.ItemCollection,
    cfg: dict[str, Any],
    out_dir: Path,
    labels_signing: str = "none",
    label_source: LabelSource | None = None,
) -> None:
    """Build ``label.tif`` alone on ``grid`` exactly as given (a tile core of a map region with labels): the
    labels reprojected with mode resampling (or rasterised) and remapped to class indices, as :func:`write_aoi_stack`
    writes an AOI's, after the same checks (asset key, local files, declared classes, signing, reachability).
    Only ``grid``'s window of each label COG is read; no imagery host and no STAC API is contacted. On failure
    no ``label.tif`` is left."""
    _, settings = _download_settings(cfg)
    _check_grid(grid, name)
    source = label_source or LabelSource()
    if source.kind == "stac":
        labels = checked_labels(labels, name, source.legend, source.legend_given, source.asset)
        check_signing(labels_signing, "stac.labels.signing")
        href = first_http_href(list(labels))
        if href is not None:
            check_reachable(href, "the stac.labels assets, e.g.")
    place = _Place(where=name, name=name, start=date.min, end=date.max)
    out = Path(out_dir) / "label.tif"
    try:
        with gdal_env(labels_signing) as labels_env, dask.config.set(scheduler="threads"):
            items: list[pystac.Item] = []
            if source.kind == "stac":
                with asset_errors(f"{name}: labels"):
                    items = with_projection([sign_item(i, labels_signing) for i in labels], labels_env, source.asset)
            _write_label_cog(place, labels, items, grid, Path(out_dir), settings.block_size, labels_env,
                             AssetIndex(items), source)  # fmt: skip
    except BaseException:
        out.unlink(missing_ok=True)
        raise


def _check_grid(grid: Grid, name: str) -> None:
    """Refuse a grid without pixels, a resolution that is not a positive number or an unknown EPSG code."""
    if not isinstance(grid, Grid):
        raise TypeError(f"{name}: the grid must be a lulc.grid.Grid, got {type(grid).__name__}")
    for key in ("width", "height"):
        value = getattr(grid, key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name}: the grid's {key} must be a positive number of pixels, got {value!r}")
    if not (isinstance(grid.resolution, (int, float)) and math.isfinite(grid.resolution) and grid.resolution > 0):
        raise ValueError(f"{name}: the grid's resolution must be a positive number of metres, got {grid.resolution!r}")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (grid.left, grid.top)):
        raise ValueError(f"{name}: the grid's left and top must be finite numbers, got {grid.left!r}, {grid.top!r}")
    try:
        grid.crs  # noqa: B018  # parses the EPSG code
    except rasterio.errors.CRSError as exc:
        raise ValueError(f"{name}: the grid's EPSG code {grid.epsg!r} is not a known CRS: {exc}") from None


def _write_stack(
    place: _Place,
    grid: Grid,
    imagery: pystac.ItemCollection,
    labels: pystac.ItemCollection | None,
    settings: _Settings,
    out_dir: Path,
    imagery_signing: str,
    labels_signing: str,
    frames: Mapping[str, Any] | None = None,
    source: LabelSource | None = None,
) -> dict[str, Any]:
    """The checks before any download, then :func:`_write_aoi_stack` (or, with a region's ``frames``,
    :func:`_write_region_tile`), removing every output when it fails. Without ``labels`` (None) the label source
    is neither checked nor contacted and no ``label.tif`` is made."""
    if not len(imagery):
        raise ValueError(f"{place.where}: the imagery ItemCollection is empty")
    # before any download: asset keys and local files, the labels' class tables, credentials, then whether
    # the asset hosts can be reached at all
    source = source or LabelSource()
    stac_labels = labels is not None and source.kind == "stac"
    if stac_labels:
        labels = checked_labels(cast(pystac.ItemCollection, labels), place.where, source.legend, source.legend_given,
                                source.asset)  # fmt: skip
    imagery = pystac.ItemCollection([offline_item(i) for i in imagery], clone_items=False)
    check_local_assets(imagery, None, f"{place.where}: imagery")
    check_signing(imagery_signing, "stac.imagery.signing")
    if stac_labels:
        check_signing(labels_signing, "stac.labels.signing")
    sources: list[tuple[str, pystac.ItemCollection]] = [("imagery", imagery)]
    if stac_labels and labels is not None:
        sources.append(("labels", labels))
    for kind, items in sources:
        href = first_http_href(list(items))
        if href is not None:
            check_reachable(href, f"the stac.{kind} assets, e.g.")
    log.info(
        "%s: grid EPSG:%d, %d x %d pixels of %g m", place.where, grid.epsg, grid.width, grid.height, grid.resolution
    )
    outputs = [out_dir / name for name in (OUTPUT_NAMES if labels is not None else IMAGERY_OUTPUT_NAMES)]
    try:
        # one GDAL environment per source (credentials go to their own host only); none for absent labels
        with (
            gdal_env(imagery_signing) as imagery_env,
            gdal_env(labels_signing) if stac_labels else contextlib.nullcontext(None) as labels_env,
        ):
            if frames is not None:
                return _write_region_tile(place, imagery, grid, out_dir, settings, imagery_signing, imagery_env, frames)
            return _write_aoi_stack(
                place, imagery, labels, grid, out_dir, settings, imagery_signing, labels_signing, imagery_env,
                labels_env, source,
            )  # fmt: skip
    except BaseException:
        for path in outputs:
            path.unlink(missing_ok=True)
        raise


def _checked_imagery(place: _Place, imagery: pystac.ItemCollection, signing: str) -> pystac.ItemCollection:
    """The imagery items as offline copies, after the checks that need no download (those of :func:`_write_stack`
    without labels): not empty, local asset files there, credentials for ``signing``, the asset host answering."""
    if not len(imagery):
        raise ValueError(f"{place.where}: the imagery ItemCollection is empty")
    imagery = pystac.ItemCollection([offline_item(i) for i in imagery], clone_items=False)
    check_local_assets(imagery, None, f"{place.where}: imagery")
    check_signing(signing, "stac.imagery.signing")
    href = first_http_href(list(imagery))
    if href is not None:
        check_reachable(href, "the stac.imagery assets, e.g.")
    return imagery


def _region_frames(place: _Place, frames: Mapping[str, Any], acquisitions: Sequence[Acquisition],
                   settings: _Settings) -> list[Acquisition]:  # fmt: skip
    """The acquisitions a region's ``frames`` record chose, with the region's clear fractions; refused where the
    record does not fit the imagery or the settings (a ``frames.json`` older than them)."""
    rerun = "the region's frames.json does not fit its imagery.json or download settings: rerun rule map_frames"
    if list(frames.get("mask_flags", [])) != list(settings.mask_flags):
        raise ValueError(f"{place.where}: frames chosen with mask flags {frames.get('mask_flags')}, but "
                         f"download.mask_flags is {list(settings.mask_flags)}; {rerun}")  # fmt: skip
    by_key = {a.key: a for a in acquisitions}
    chosen = []
    for frame in frames["frames"]:
        acq = by_key.get(f"{frame['date']}_{frame['sensor']}")
        if acq is None or [i.id for i in acq.items] != list(frame["items"]):
            raise ValueError(f"{place.where}: frame {frame['date']} {frame['sensor']} (items {frame['items']}) is "
                             f"not in the imagery; {rerun}")  # fmt: skip
        acq.clear_fraction = float(frame["clear_fraction"])
        chosen.append(acq)
    if len(chosen) != settings.frames:
        raise ValueError(f"{place.where}: {len(chosen)} frames chosen for the region, but download.frames = "
                         f"{settings.frames}; {rerun}")  # fmt: skip
    return chosen


def _write_region_tile(
    place: _Place,
    imagery: pystac.ItemCollection,
    grid: Grid,
    out_dir: Path,
    settings: _Settings,
    imagery_signing: str,
    imagery_env: stackstac.rio_env.LayeredEnv,
    frames: Mapping[str, Any],
) -> dict[str, Any]:
    """A map tile from its region's frames (:func:`write_region_frames`): the image and mask COGs of exactly those
    dates on ``grid`` (nodata where a date has no item over it), ``dates.csv`` and ``frames.json`` with the
    region's choice and clear fractions, and the dates without imagery over this grid."""
    with asset_errors(f"{place.where}: imagery"):
        hls_items = with_projection([sign_item(i, imagery_signing) for i in imagery], imagery_env)
    assets = AssetIndex(hls_items)
    chosen = _region_frames(place, frames, group_acquisitions(hls_items), settings)
    stacks: dict[str, da.Array] = {}
    without = []
    with dask.config.set(scheduler="threads"):
        for acq in chosen:
            try:
                stacks[acq.key] = stack_acquisition(acq, grid, settings.block_size, imagery_env)
            except NoOverlap:
                log.info("%s: no item of frame %s %s overlaps the grid: nodata there", place.where, acq.date,
                         acq.sensor)  # fmt: skip
                stacks[acq.key] = nodata_stack(grid, settings.block_size)
                without.append(acq.key)
        _write_imagery_cogs(place, chosen, stacks, grid, out_dir, settings, assets)
    log.info("%s: the region's frames %s", place.where, [a.key for a in chosen])
    records = list(frames["candidates"])
    record = _frames_record(place, grid, settings, chosen, records)
    record |= {"chosen_for": "the map region: clear fractions over the region, not this tile",
               "frames_without_imagery": without}  # fmt: skip
    _write_dates_csv(records, out_dir / "dates.csv")
    write_json(record, out_dir / "frames.json")
    return record


def write_region_frames(
    name: str,
    start: date,
    end: date,
    grids: Sequence[tuple[Grid, np.ndarray]],
    imagery: pystac.ItemCollection,
    cfg: dict[str, Any],
    out_path: str | os.PathLike[str],
    imagery_signing: str = "none",
) -> dict[str, Any]:
    """Choose the frames of a whole map region and period once (the ``map_frames`` rule) and write them to
    ``out_path`` (``frames.json``), so that every tile of the region is built from the same dates.

    ``grids``: where the region's clear fractions are measured, one grid per UTM zone with the (H, W) mask of
    the region's pixels on it (:func:`lulc.maps.frame_grids`). A date's clear fraction is its clear pixels
    (valid Fmask with none of ``download.mask_flags``) inside the region, over the pixels of the region that
    have imagery (valid Fmask) on at least one candidate date: a coast or the edge of the imagery is not cloud.
    The frames are then chosen by :func:`select_frames`, the rule of an AOI (``download.frames``,
    ``download.season_windows``, ``download.min_clear_fraction``). Dates of which no item overlaps any grid are
    not candidates. Only Fmask is read. Returns the record written: the grids, the settings, the chosen frames
    (date, sensor, items, clear fraction) and every candidate with its clear fraction and what became of it.
    """
    _, settings = _download_settings(cfg)
    if not grids:
        raise ValueError(f"{name}: no grid to measure the region's clear fractions on")
    for grid, inside in grids:
        _check_grid(grid, name)
        if np.shape(inside) != (grid.height, grid.width):
            raise ValueError(f"{name}: a region mask of {np.shape(inside)} on a {grid.height} x {grid.width} grid")
    if not isinstance(start, date) or not isinstance(end, date) or end < start:
        raise ValueError(f"{name}: the period must be two dates, start <= end; got {start!r} .. {end!r}")
    place = _Place(where=name, name=name, start=start, end=end)
    imagery = _checked_imagery(place, imagery, imagery_signing)
    with gdal_env(imagery_signing) as env, dask.config.set(scheduler="threads"):
        with asset_errors(f"{name}: imagery"):
            hls_items = with_projection([sign_item(i, imagery_signing) for i in imagery], env)
        acquisitions = group_acquisitions(hls_items)
        stacks = [_candidate_stacks(place, acquisitions, g, settings.block_size, env, True) for g, _ in grids]
        acquisitions = [a for a in acquisitions if any(a.key in by_key for by_key in stacks)]
        if not acquisitions:
            raise ValueError(f"{name}: none of the {len(hls_items)} imagery items overlaps the region according to "
                             "its footprint metadata")  # fmt: skip
        imaged = _measure_region_clear_fractions(place, acquisitions, stacks, grids, settings.mask_flags,
                                                 AssetIndex(hls_items))  # fmt: skip
        chosen, records = _choose_frames(place, acquisitions, settings)
    record = _region_frames_record(place, grids, imaged, settings, chosen, records)
    write_json(record, out_path)
    return record


def _measure_region_clear_fractions(
    place: _Place,
    acquisitions: Sequence[Acquisition],
    stacks: Sequence[dict[str, da.Array]],
    grids: Sequence[tuple[Grid, np.ndarray]],
    mask_flags: Sequence[str],
    assets: AssetIndex,
) -> list[np.ndarray]:
    """Set each acquisition's clear fraction over the region (see :func:`write_region_frames`),
    :data:`CLEAR_FRACTION_BATCH` dates per dask computation; returns, per grid, the region's pixels that have
    imagery on some candidate date."""
    imaged = [np.zeros(np.shape(inside), dtype=bool) for _, inside in grids]
    clear = {a.key: 0 for a in acquisitions}
    with tqdm(total=len(acquisitions), desc=f"{place.name}: clear fraction per date", unit="date") as bar:
        for first in range(0, len(acquisitions), CLEAR_FRACTION_BATCH):
            batch = acquisitions[first : first + CLEAR_FRACTION_BATCH]
            tasks = [(a.key, g) for a in batch for g in range(len(grids)) if a.key in stacks[g]]
            with asset_errors(f"{place.where}: Fmask of {batch[0].date}..{batch[-1].date}", assets):
                results = dask.compute(
                    *[region_coverage(stacks[g][key], mask_flags, np.asarray(grids[g][1], bool)) for key, g in tasks]
                )
            for (key, g), (count, has_imagery) in zip(tasks, results, strict=True):
                clear[key] += int(count)
                imaged[g] |= has_imagery
            bar.update(len(batch))
    total = sum(int(m.sum()) for m in imaged)
    if total == 0:
        raise ValueError(f"{place.where}: none of the {len(acquisitions)} candidate dates has imagery (a valid Fmask) "
                         "over the region")  # fmt: skip
    for acq in acquisitions:
        acq.clear_fraction = clear[acq.key] / total
        log.info("%s %s: clear fraction %.3f over the region", acq.date, acq.sensor, acq.clear_fraction)
    return imaged


def _region_frames_record(
    place: _Place,
    grids: Sequence[tuple[Grid, np.ndarray]],
    imaged: Sequence[np.ndarray],
    settings: _Settings,
    chosen: Sequence[Acquisition],
    records: list[dict[str, Any]],
) -> dict[str, Any]:
    """A region's ``frames.json``: where the clear fractions were measured, the settings, the frames, every
    candidate (as the ``frames.json`` of an AOI, with the measuring grids in place of the output grid)."""
    record = _frames_record(place, grids[0][0], settings, chosen, records)
    del record["grid"], record["aoi"]
    measured = [
        {"epsg": g.epsg, "resolution": g.resolution, "bounds": list(g.bounds), "width": g.width, "height": g.height,
         "region_pixels": int(np.count_nonzero(inside)), "imaged_pixels": int(m.sum())}
        for (g, inside), m in zip(grids, imaged, strict=True)
    ]  # fmt: skip
    clear_rule = (
        "clear pixels (valid Fmask, none of mask_flags) inside the region / the region's pixels that have imagery "
        "on at least one candidate date, on the grids below (Fmask read nearest neighbour)"
    )
    return {"region": place.name, "start": place.start.isoformat(), "end": place.end.isoformat(),
            "clear_fraction": clear_rule, "grids": measured, **record}  # fmt: skip


def _write_aoi_stack(
    place: _Place,
    imagery: pystac.ItemCollection,
    labels: pystac.ItemCollection | None,
    grid: Grid,
    out_dir: Path,
    settings: _Settings,
    imagery_signing: str,
    labels_signing: str,
    imagery_env: stackstac.rio_env.LayeredEnv,
    labels_env: stackstac.rio_env.LayeredEnv | None,
    source: LabelSource,
) -> dict[str, Any]:
    """Write the outputs of one place on ``grid``: the label COG (only with ``labels``), then the clear fraction
    of every date, the frame choice, the image and mask COGs, ``dates.csv`` and ``frames.json``.

    Without labels, dates of which no item overlaps ``grid`` are left out of the candidates (with labels, i.e.
    an AOI whose items were searched by its own bbox, such a date is an error as it always was)."""
    with asset_errors(f"{place.where}: imagery"):
        hls_items = with_projection([sign_item(i, imagery_signing) for i in imagery], imagery_env)
    label_items: list[pystac.Item] = []
    if labels is not None and source.kind == "stac":
        with asset_errors(f"{place.where}: labels"):
            label_items = with_projection([sign_item(i, labels_signing) for i in labels], labels_env, source.asset)
    assets = AssetIndex([*hls_items, *label_items])
    acquisitions = group_acquisitions(hls_items)

    with dask.config.set(scheduler="threads"):
        if labels is not None:
            # labels first (one band, and refused outright when they hold codes the workflow does not map)
            _write_label_cog(place, labels, label_items, grid, out_dir, settings.block_size, labels_env, assets,
                             source)  # fmt: skip
        stacks = _candidate_stacks(
            place, acquisitions, grid, settings.block_size, imagery_env, skip_no_overlap=labels is None
        )
        if not stacks:
            raise ValueError(
                f"{place.where}: none of the {len(hls_items)} imagery items overlaps the grid (EPSG:{grid.epsg}, "
                f"bounds {grid.bounds}) according to its footprint metadata"
            )
        acquisitions = [a for a in acquisitions if a.key in stacks]
        _measure_clear_fractions(place, acquisitions, stacks, settings.mask_flags, assets)
        chosen, records = _choose_frames(place, acquisitions, settings)
        _write_imagery_cogs(place, chosen, stacks, grid, out_dir, settings, assets)
    record = _frames_record(place, grid, settings, chosen, records)
    _write_dates_csv(records, out_dir / "dates.csv")
    write_json(record, out_dir / "frames.json")
    return record


def _candidate_stacks(
    place: _Place,
    acquisitions: Sequence[Acquisition],
    grid: Grid,
    block_size: int,
    imagery_env: stackstac.rio_env.LayeredEnv,
    skip_no_overlap: bool,
) -> dict[str, da.Array]:
    """The lazy stack of every acquisition on ``grid``, by :attr:`Acquisition.key`. An acquisition none of whose
    items overlaps the grid raises :class:`NoOverlap`, or with ``skip_no_overlap`` is left out (not a candidate)."""
    stacks: dict[str, da.Array] = {}
    for acq in acquisitions:
        try:
            stacks[acq.key] = stack_acquisition(acq, grid, block_size, imagery_env)
        except NoOverlap:
            if not skip_no_overlap:
                raise
            log.info("%s: no item of %s %s overlaps the grid: not a candidate", place.where, acq.date, acq.sensor)
    return stacks


def _measure_clear_fractions(
    place: _Place,
    acquisitions: Sequence[Acquisition],
    stacks: dict[str, da.Array],
    mask_flags: Sequence[str],
    assets: AssetIndex,
) -> None:
    """Set the clear fraction of every acquisition, :data:`CLEAR_FRACTION_BATCH` dates per dask computation (the
    Fmask windows of remote dates are read concurrently)."""
    with tqdm(total=len(acquisitions), desc=f"{place.name}: clear fraction per date", unit="date") as bar:
        for first in range(0, len(acquisitions), CLEAR_FRACTION_BATCH):
            batch = acquisitions[first : first + CLEAR_FRACTION_BATCH]
            with asset_errors(f"{place.where}: Fmask of {batch[0].date}..{batch[-1].date}", assets):
                shares = dask.compute(*[clear_share(stacks[a.key], mask_flags) for a in batch])
            for acq, share in zip(batch, shares, strict=True):
                acq.clear_fraction = float(share)
                log.info("%s %s: clear fraction %.3f", acq.date, acq.sensor, acq.clear_fraction)
            bar.update(len(batch))


def _choose_frames(
    place: _Place, acquisitions: Sequence[Acquisition], settings: _Settings
) -> tuple[list[Acquisition], list[dict[str, Any]]]:
    """The frames of ``place`` (:func:`select_frames` over its period) and the record of every candidate, logged."""
    start, end = place.start.isoformat(), place.end.isoformat()
    chosen, records = select_frames(acquisitions, settings.frames, settings.min_clear, start, end, settings.seasons)
    log.info("%s: frames %s", place.where, [a.key for a in chosen])
    for record in records:
        if record["status"].startswith("dropped"):
            log.info("%s: %s %s %s", place.where, record["date"], record["sensor"], record["status"])
    return chosen, records


def _write_imagery_cogs(
    place: _Place,
    chosen: Sequence[Acquisition],
    stacks: dict[str, da.Array],
    grid: Grid,
    out_dir: Path,
    settings: _Settings,
    assets: AssetIndex,
) -> None:
    """``image.tif`` (the chosen frames' reflectance, Fmask-flagged pixels as nodata) and ``mask.tif``."""
    block_size, mask_flags = settings.block_size, settings.mask_flags
    masked = [masked_frame(stacks[a.key], mask_flags) for a in chosen]
    image = da.concatenate([m[0] for m in masked], axis=0)
    mask = da.stack([m[1] for m in masked], axis=0)
    frame_tags = {f"FRAME_{t}": f"{a.date} {a.sensor} {','.join(i.id for i in a.items)}" for t, a in enumerate(chosen)}
    order_tag = {"BAND_ORDER": "time-major: band t*6+b = frame t, Prithvi band b (" + ",".join(hls.PRITHVI_BANDS) + ")"}
    with asset_errors(f"{place.where}: imagery", assets):
        write_cog(
            image,
            out_dir / "image.tif",
            grid,
            hls.REFLECTANCE_NODATA,
            hls.band_names(len(chosen)),
            block_size,
            tags={**frame_tags, **order_tag, "SCALE": str(1 / hls.REFLECTANCE_SCALE)},
            overview_resampling="average",
        )
        write_cog(
            mask,
            out_dir / "mask.tif",
            grid,
            255,
            [f"t{t}_fmask_{'+'.join(mask_flags)}" for t in range(len(chosen))],
            block_size,
            tags={**frame_tags, "VALUES": "0 clear, 1 masked by Fmask flags, 255 no data"},
        )


def _frames_record(
    place: _Place,
    grid: Grid,
    settings: _Settings,
    chosen: Sequence[Acquisition],
    records: list[dict[str, Any]],
) -> dict[str, Any]:
    """The record written to ``frames.json``: the grid, the band order, the selection settings, the chosen
    frames and every candidate (the dropped ones again on their own)."""
    return {
        "aoi": place.name,
        "grid": {
            "epsg": grid.epsg,
            "resolution": grid.resolution,
            "bounds": list(grid.bounds),
            "width": grid.width,
            "height": grid.height,
        },
        "band_order": hls.band_names(len(chosen)),
        "mask_flags": list(settings.mask_flags),
        "min_clear_fraction": settings.min_clear,
        "selection": "season_windows" if settings.seasons else "equal_windows",
        "season_windows": [list(w) for w in settings.seasons] or None,
        "frames": [
            {
                "date": a.date,
                "sensor": a.sensor,
                "items": [i.id for i in a.items],
                "clear_fraction": round(a.clear_fraction, 6),
            }
            for a in chosen
        ],
        "candidates": records,
        "dropped": [r for r in records if r["status"].startswith("dropped")],
    }


def _write_label_cog(
    place: _Place,
    labels: pystac.ItemCollection,
    label_items: Sequence[pystac.Item],
    grid: Grid,
    out_dir: Path,
    block_size: int,
    labels_env: stackstac.rio_env.LayeredEnv | None,
    assets: AssetIndex,
    source: LabelSource,
) -> None:
    """``label.tif`` on ``grid`` in the source's legend (recorded in its tags and colour table); raises
    :class:`LabelCodeError` when the labels hold codes the legend does not cover (counted while it is written)."""
    legend = source.legend
    tags = {**legend.tags(), "LABEL_SOURCE": source.kind}
    if source.year is not None or place.start != date.min:  # a map tile's labels: the period is its region's
        period = f"{source.year}" if source.year is not None else f"{place.start.isoformat()}/{place.end.isoformat()}"
        tags["LABEL_PERIOD"] = period
    if source.kind == "stac":
        counter = CodeCounter()
        label = label_stack(label_items, grid, block_size, source.asset, env=labels_env, code_counter=counter,
                            legend=legend)[None]  # fmt: skip
        tags |= {"SOURCE_ITEMS": ",".join(i.id for i in labels), "RESAMPLING": "mode"}
    else:
        log.info("%s: labels from %s (%s)", place.where, source.path, source.kind)
        path = str(source.path)
        if source.kind == "raster":
            indices, _ = raster_labels(path, grid, legend, nodata=source.nodata)
            tags |= {"SOURCE_FILE": path, "RESAMPLING": "mode"}
        else:
            indices, stats = vector_labels(path, grid, legend, source.attribute, source.point_size_px, source.layer,
                                           require_labels=place.start != date.min)  # a map tile may have none
            tags |= {"SOURCE_FILE": path, "RASTERISED": "pixel centres inside polygons; points "
                     f"{source.point_size_px} px", "FEATURES": json.dumps(stats, sort_keys=True)}  # fmt: skip
        label = da.from_array(indices[None], chunks=(1, block_size, block_size))
    with asset_errors(f"{place.where}: labels", assets):
        write_cog(label, out_dir / "label.tif", grid, IGNORE_INDEX, ["class_index"], block_size,
                  colormap=legend.colormap(), tags=tags, overview_resampling="mode")  # fmt: skip
    if source.kind == "stac":
        counter.check(grid.resolution, legend, label_dtype_and_fill(legend)[1])


def _write_dates_csv(records: Sequence[dict[str, Any]], path: Path) -> None:
    """The per-date report: every candidate acquisition, its clear fraction and what became of it."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["date", "sensor", "clear_fraction", "window", "status", "items"])
    for r in records:
        writer.writerow(
            [r["date"], r["sensor"], f"{r['clear_fraction']:.6f}", r["window"] or "", r["status"], " ".join(r["items"])]
        )
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())
