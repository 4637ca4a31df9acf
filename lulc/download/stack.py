"""Orchestration of the download stage: the checks before any request, then every output of one place.

:func:`write_aoi_stack` (an AOI with labels), :func:`write_imagery_stack` (a map tile's imagery on a given grid)
and :func:`write_label_raster` (a map tile's labels) check what needs no download first, open one GDAL
environment per source, and remove every output again when anything fails. The work itself is done by the
modules below: :mod:`~lulc.download.items`, :mod:`~lulc.download.imagery`, :mod:`~lulc.download.frames`,
:mod:`~lulc.download.labels` and :mod:`~lulc.download.cog`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import pystac
import rasterio
import stackstac
from tqdm import tqdm

from lulc import classes, hls
from lulc.access import check_reachable, check_signing, sign_item
from lulc.aoi import AOI, parse_season_windows
from lulc.download.cog import write_cog
from lulc.download.environment import AssetIndex, asset_errors, gdal_env
from lulc.download.frames import Acquisition, group_acquisitions, select_frames
from lulc.download.imagery import NoOverlap, clear_share, masked_frame, stack_acquisition
from lulc.download.items import check_local_assets, first_http_href, offline_item, with_projection
from lulc.download.labels import LABEL_ASSET, CodeCounter, checked_labels, label_stack
from lulc.grid import Grid, aoi_grid
from lulc.io import atomic_path, write_json
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
) -> dict[str, Any]:
    """Build ``image.tif``, ``mask.tif``, ``label.tif``, ``frames.json`` and ``dates.csv`` for one AOI.

    ``cfg`` is the ``download`` config section. Returns the frames record written to ``frames.json``.
    Everything that can fail without downloading (config, asset keys, missing local files, the label items'
    declared classes, credentials, an offline host) is checked first; if anything fails once writing has
    begun, every output is removed again.

    Only the items' assets are used: their links (``root``, ``self``, ``parent``, ...) are dropped, so the
    stage needs the cached search results and the asset hosts, never the STAC API.
    """
    cfg, settings = _download_settings(cfg)
    grid = aoi_grid(aoi, float(cfg["resolution"]), cfg["crs"])
    place = _Place(where=f"AOI {aoi.name}", name=aoi.name, start=aoi.start, end=aoi.end)
    return _write_stack(place, grid, imagery, labels, settings, Path(out_dir), imagery_signing, labels_signing)


def write_imagery_stack(
    name: str,
    start: date,
    end: date,
    grid: Grid,
    imagery: pystac.ItemCollection,
    cfg: dict[str, Any],
    out_dir: Path,
    imagery_signing: str = "none",
) -> dict[str, Any]:
    """Build ``image.tif``, ``mask.tif``, ``frames.json`` and ``dates.csv`` (:data:`IMAGERY_OUTPUT_NAMES`, no
    labels) on ``grid`` exactly as given: a tile of a map region that has no labels, say.

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
    return _write_stack(place, grid, imagery, None, settings, Path(out_dir), imagery_signing, "none")


def write_label_raster(
    name: str,
    grid: Grid,
    labels: pystac.ItemCollection,
    cfg: dict[str, Any],
    out_dir: Path,
    labels_signing: str = "none",
) -> None:
    """Build ``label.tif`` alone on ``grid`` exactly as given (a tile core of a map region with labels): the IO
    LULC items reprojected with mode resampling and remapped to class indices, as :func:`write_aoi_stack`
    writes an AOI's, after the same checks (asset key, local files, declared classes, signing, reachability).
    Only ``grid``'s window of each label COG is read; no imagery host and no STAC API is contacted. On failure
    no ``label.tif`` is left."""
    _, settings = _download_settings(cfg)
    _check_grid(grid, name)
    labels = checked_labels(labels, name)
    check_signing(labels_signing, "stac.labels.signing")
    href = first_http_href(list(labels))
    if href is not None:
        check_reachable(href, "the stac.labels assets, e.g.")
    place = _Place(where=name, name=name, start=date.min, end=date.max)
    out = Path(out_dir) / "label.tif"
    try:
        with gdal_env(labels_signing) as labels_env, dask.config.set(scheduler="threads"):
            with asset_errors(f"{name}: labels"):
                items = with_projection([sign_item(i, labels_signing) for i in labels], labels_env, LABEL_ASSET)
            _write_label_cog(place, labels, items, grid, Path(out_dir), settings.block_size, labels_env,
                             AssetIndex(items))  # fmt: skip
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
) -> dict[str, Any]:
    """The checks before any download, then :func:`_write_aoi_stack`, removing every output when it fails.
    Without ``labels`` (None) the label source is neither checked nor contacted and no ``label.tif`` is made."""
    if not len(imagery):
        raise ValueError(f"{place.where}: the imagery ItemCollection is empty")
    # before any download: asset keys and local files, the labels' class tables, credentials, then whether
    # the asset hosts can be reached at all
    if labels is not None:
        labels = checked_labels(labels, place.where)
    imagery = pystac.ItemCollection([offline_item(i) for i in imagery], clone_items=False)
    check_local_assets(imagery, None, f"{place.where}: imagery")
    check_signing(imagery_signing, "stac.imagery.signing")
    if labels is not None:
        check_signing(labels_signing, "stac.labels.signing")
    sources = [("imagery", imagery)] if labels is None else [("imagery", imagery), ("labels", labels)]
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
            gdal_env(labels_signing) if labels is not None else contextlib.nullcontext(None) as labels_env,
        ):
            return _write_aoi_stack(
                place, imagery, labels, grid, out_dir, settings, imagery_signing, labels_signing, imagery_env,
                labels_env,
            )  # fmt: skip
    except BaseException:
        for path in outputs:
            path.unlink(missing_ok=True)
        raise


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
) -> dict[str, Any]:
    """Write the outputs of one place on ``grid``: the label COG (only with ``labels``), then the clear fraction
    of every date, the frame choice, the image and mask COGs, ``dates.csv`` and ``frames.json``.

    Without labels, dates of which no item overlaps ``grid`` are left out of the candidates (with labels, i.e.
    an AOI whose items were searched by its own bbox, such a date is an error as it always was)."""
    with asset_errors(f"{place.where}: imagery"):
        hls_items = with_projection([sign_item(i, imagery_signing) for i in imagery], imagery_env)
    label_items: list[pystac.Item] = []
    if labels is not None:
        with asset_errors(f"{place.where}: labels"):
            label_items = with_projection([sign_item(i, labels_signing) for i in labels], labels_env, LABEL_ASSET)
    assets = AssetIndex([*hls_items, *label_items])
    acquisitions = group_acquisitions(hls_items)

    with dask.config.set(scheduler="threads"):
        if labels is not None:
            # labels first (one band, and refused outright when they hold codes the workflow does not map)
            _write_label_cog(place, labels, label_items, grid, out_dir, settings.block_size, labels_env, assets)
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
) -> None:
    """``label.tif`` on ``grid``; raises :class:`LabelCodeError` when the items hold codes the workflow does not
    map (counted while it is written)."""
    counter = CodeCounter()
    label = label_stack(label_items, grid, block_size, env=labels_env, code_counter=counter)[None]
    with asset_errors(f"{place.where}: labels", assets):
        write_cog(
            label,
            out_dir / "label.tif",
            grid,
            classes.IGNORE_INDEX,
            ["class_index"],
            block_size,
            colormap=classes.index_colormap(),
            tags={
                **classes.class_tags(),
                "SOURCE_ITEMS": ",".join(i.id for i in labels),
                "RESAMPLING": "mode",
            },
            overview_resampling="mode",
        )
    counter.check(grid.resolution)


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
