"""Stratified random sampling of a class map for accuracy assessment, and reading the labelled sample back.

The response design of Olofsson et al. (2014), *Good practices for estimating area and assessing accuracy of
land change*, Remote Sens. Environ. 148, 42-57 (section 4): a stratified random sample of pixels, the strata
being the map's classes, each unit drawn without replacement so that its inclusion probability is exactly
``n_h / N_h``; :mod:`lulc.accuracy` estimates accuracy and area from it.

The map is never read whole: :func:`draw_stratified_sample` counts each stratum's pixels block by block (pass
1), draws ``n_h`` distinct ranks in ``[0, N_h)`` per stratum with its own seeded generator (adding a stratum or
changing its size leaves every other stratum's draw unchanged), maps each rank to a block through the
cumulative counts of the blocks in raster order, and reads only the blocks holding draws (pass 2), taking the
pixels of that stratum at those ranks in row-major order within the block. :func:`write_sample` writes the
sample as a GeoPackage and a CSV for labelling (e.g. in QGIS); :func:`read_reference` checks the labelled file
against the drawn sample and returns reference class indices; :func:`reference_from_raster` takes the
reference from a label raster instead.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
import rasterio.transform
import rasterio.warp

from lulc.io import atomic_path

#: Columns of a drawn sample, in order (:func:`write_sample` adds ``map_class_name`` after ``map_class``).
SAMPLE_COLUMNS = ("id", "stratum", "map_class", "inclusion_probability", "row", "col", "x", "y", "lon", "lat",
                  "reference")

#: Layer name of the sample GeoPackage.
SAMPLE_LAYER = "samples"

#: Reference value of a sample unit without a label (:func:`reference_from_raster`).
MISSING = -1


def _check_map(src: Any) -> None:
    if src.count < 1 or src.dtypes[0] != "uint8":
        raise ValueError(f"{src.name}: a class map must be a single-band uint8 raster, got {src.dtypes}")


def pixel_km2(map_path: str | os.PathLike[str]) -> float:
    """Area of one pixel of a map in km2 (a projected grid in metres, as every map of the workflow is)."""
    with rasterio.open(map_path) as src:
        return abs(src.transform.a * src.transform.e) / 1e6


def stratum_counts(map_path: str | os.PathLike[str], nodata: int | None = 255) -> np.ndarray:
    """Pixels per class value (256 entries, ``nodata`` set to 0) of a uint8 map, read block by block."""
    counts = np.zeros(256, dtype=np.int64)
    with rasterio.open(map_path) as src:
        _check_map(src)
        for _, window in src.block_windows(1):
            counts += np.bincount(src.read(1, window=window).ravel(), minlength=256)
    if nodata is not None:
        counts[nodata] = 0
    return counts


def _block_draws(per_block: np.ndarray, n: int, seed: int, stratum: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distinct ranks uniform in ``[0, N_h)`` from the stratum's own generator, as (block, rank within
    block) through the cumulative counts ``per_block`` of the stratum in the blocks, in raster order."""
    rng = np.random.default_rng([seed, stratum])
    ranks = np.sort(rng.choice(int(per_block.sum()), size=n, replace=False))
    ends = np.cumsum(per_block)
    blocks = np.searchsorted(ends, ranks, side="right")
    return blocks, ranks - (ends[blocks] - per_block[blocks])


def _checked_allocation(allocation: Mapping[int, int], nodata: int | None) -> dict[int, int]:
    sizes = {int(s): int(n) for s, n in allocation.items()}
    for s, n in sizes.items():
        if not 0 <= s <= 255 or s == nodata or n < 0:
            raise ValueError(f"allocation {s}: {n}: strata are map values 0-255 other than nodata ({nodata}), "
                             "sample sizes non-negative")
    return {s: n for s, n in sorted(sizes.items()) if n > 0}


def draw_stratified_sample(
    map_path: str | os.PathLike[str], allocation: Mapping[int, int], seed: int, nodata: int | None = 255
) -> pd.DataFrame:
    """A stratified random sample without replacement of a uint8 class map, strata = map values (module
    docstring for the two-pass algorithm); ``allocation``: stratum value -> sample units (:func:`lulc.accuracy.
    allocate`). Columns :data:`SAMPLE_COLUMNS`: ``x`` / ``y`` the pixel centre in the map's CRS, ``lon`` /
    ``lat`` in WGS84, ``reference`` empty. Rows by stratum, then row and column; ids ``s00001``, ... in that
    order. The same ``seed`` gives the same sample."""
    wanted = _checked_allocation(allocation, nodata)
    strata = list(wanted)
    with rasterio.open(map_path) as src:
        _check_map(src)
        if src.crs is None:
            raise ValueError(f"{map_path}: the map has no CRS")
        windows = [window for _, window in src.block_windows(1)]
        per_block = np.zeros((len(windows), len(strata)), dtype=np.int64)
        for b, window in enumerate(windows):
            values = np.bincount(src.read(1, window=window).ravel(), minlength=256)
            per_block[b] = values[strata]
        draws: dict[int, list[tuple[int, np.ndarray]]] = {}
        for k, s in enumerate(strata):
            available = int(per_block[:, k].sum())
            if wanted[s] > available:
                raise ValueError(f"stratum {s}: {wanted[s]} sample units asked for, {available} pixels mapped")
            blocks, within = _block_draws(per_block[:, k], wanted[s], seed, s)
            for b in np.unique(blocks):
                draws.setdefault(int(b), []).append((s, within[blocks == b]))
        picked: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for b in sorted(draws):
            window = windows[b]
            data = src.read(1, window=window)
            for s, ranks in draws[b]:
                flat = np.flatnonzero(data.ravel() == s)[ranks]
                rows, cols = np.divmod(flat, data.shape[1])
                picked.append((np.full(flat.size, s), rows + int(window.row_off), cols + int(window.col_off)))
        transform, crs = src.transform, src.crs
    stratum = np.concatenate([p[0] for p in picked]) if picked else np.zeros(0, np.int64)
    row = np.concatenate([p[1] for p in picked]) if picked else np.zeros(0, np.int64)
    col = np.concatenate([p[2] for p in picked]) if picked else np.zeros(0, np.int64)
    order = np.lexsort((col, row, stratum))
    stratum, row, col = stratum[order].astype(np.int64), row[order].astype(np.int64), col[order].astype(np.int64)
    x, y = (np.asarray(v, dtype=np.float64).reshape(-1) for v in rasterio.transform.xy(transform, row, col))
    lon, lat = rasterio.warp.transform(crs, "EPSG:4326", x.tolist(), y.tolist()) if len(x) else ([], [])
    size_of = {s: int(per_block[:, k].sum()) for k, s in enumerate(strata)}
    width = max(5, len(str(len(stratum))))
    return pd.DataFrame({
        "id": [f"s{i + 1:0{width}d}" for i in range(len(stratum))],
        "stratum": stratum,
        "map_class": stratum.copy(),
        "inclusion_probability": np.array([wanted[s] / size_of[s] for s in stratum.tolist()], dtype=np.float64),
        "row": row,
        "col": col,
        "x": x,
        "y": y,
        "lon": np.asarray(lon, dtype=np.float64),
        "lat": np.asarray(lat, dtype=np.float64),
        "reference": pd.Series([""] * len(stratum), dtype=object),
    })


def _labelling_frame(sample: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    missing = [c for c in SAMPLE_COLUMNS if c not in sample.columns]
    if missing:
        raise ValueError(f"the sample lacks columns {missing}")
    names = list(class_names)
    unknown = sorted({int(c) for c in sample["map_class"]} - set(range(len(names))))
    if unknown:
        raise ValueError(f"map classes {unknown} have no name in the legend {names}")
    frame = sample.loc[:, list(SAMPLE_COLUMNS)].copy()
    frame.insert(3, "map_class_name", [names[int(c)] for c in frame["map_class"]])
    frame["reference"] = frame["reference"].fillna("").astype(str)
    return frame.reset_index(drop=True)


def write_sample(
    sample: pd.DataFrame,
    class_names: Sequence[str],
    crs: Any,
    gpkg_path: str | os.PathLike[str],
    csv_path: str | os.PathLike[str],
) -> None:
    """Write the sample for labelling: a GeoPackage of points in the map's ``crs`` (layer
    :data:`SAMPLE_LAYER`) and a CSV, both with ``map_class_name`` and an empty ``reference`` string column to
    fill with legend names; atomically."""
    import geopandas as gpd

    frame = _labelling_frame(sample, class_names)
    points = gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(frame["x"], frame["y"]), crs=crs)
    with atomic_path(gpkg_path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The filename extension should be 'gpkg'")  # the temporary's
        tmp.unlink()  # the GeoPackage driver creates its own file
        points.to_file(tmp, layer=SAMPLE_LAYER, driver="GPKG")
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.17g")


def _read_labelled(path: Path) -> pd.DataFrame:
    """The labelled table, ``x`` / ``y`` from the point geometry for a GeoPackage (a moved point counts)."""
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path, dtype={"id": str, "reference": str}, keep_default_na=False)
    import geopandas as gpd

    points = gpd.read_file(path, layer=SAMPLE_LAYER)
    frame = pd.DataFrame(points.drop(columns="geometry"))
    frame["x"], frame["y"] = points.geometry.x.to_numpy(), points.geometry.y.to_numpy()
    return frame


def _ids(ids: Sequence[str] | pd.Index, limit: int = 10) -> str:
    shown = ", ".join(map(str, list(ids)[:limit]))
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def read_reference(path: str | os.PathLike[str], sample: pd.DataFrame, class_names: Sequence[str]) -> np.ndarray:
    """Reference class indices (in ``sample`` row order) from a labelled GeoPackage or CSV written by
    :func:`write_sample`, ``reference`` filled with legend names (matched ignoring case and surrounding space).

    ``ValueError`` naming the sample ids concerned when ids are missing, repeated or unknown, when a unit's
    stratum, map class or position (for a GeoPackage, the point itself) differs from the drawn sample, when a
    reference is empty, or when it is not a name of ``class_names``.
    """
    labelled = _read_labelled(Path(path))
    if not {"id", "reference"} <= set(labelled.columns):
        raise ValueError(f"{path}: no 'id' and 'reference' columns")
    labelled["id"] = labelled["id"].astype(str)
    repeated = labelled["id"][labelled["id"].duplicated()].unique()
    if len(repeated):
        raise ValueError(f"{path}: sample ids repeated: {_ids(repeated)}")
    drawn = sample.set_index(sample["id"].astype(str))
    absent = drawn.index.difference(labelled["id"], sort=False)
    if len(absent):
        raise ValueError(f"{path}: sample ids missing from the file: {_ids(absent)}")
    extra = pd.Index(labelled["id"]).difference(drawn.index, sort=False)
    if len(extra):
        raise ValueError(f"{path}: ids not in the drawn sample: {_ids(extra)}")
    labelled = labelled.set_index("id").loc[drawn.index]
    for column in ("stratum", "map_class"):
        if column in labelled.columns:
            changed = drawn.index[pd.to_numeric(labelled[column], errors="coerce").to_numpy() != drawn[column]]
            if len(changed):
                raise ValueError(f"{path}: {column} differs from the drawn sample for {_ids(changed)}")
    for column in ("x", "y"):
        if column in labelled.columns:
            values = pd.to_numeric(labelled[column], errors="coerce").to_numpy(dtype=np.float64)
            moved = drawn.index[~np.isclose(values, drawn[column].to_numpy(dtype=np.float64), rtol=1e-9, atol=1e-9)]
            if len(moved):
                raise ValueError(f"{path}: the point moved from its drawn position ({column}) for {_ids(moved)}")
    names = {str(name).strip().casefold(): i for i, name in enumerate(class_names)}
    given = labelled["reference"].fillna("").astype(str).str.strip().str.casefold()
    empty = drawn.index[(given == "").to_numpy()]
    if len(empty):
        raise ValueError(f"{path}: no reference class for {_ids(empty)}")
    unknown = given[~given.isin(list(names))]
    if len(unknown):
        raise ValueError(f"{path}: reference names not in the legend {list(class_names)}: "
                         + _ids([f"{i} ({labelled.loc[i, 'reference']!r})" for i in unknown.index]))
    return np.array([names[v] for v in given], dtype=np.int64)


def reference_from_raster(
    sample: pd.DataFrame, raster_path: str | os.PathLike[str], nodata: int = 255
) -> np.ndarray:
    """Reference class indices at the sample points from a label raster (any CRS: the points are taken there
    from ``lon`` / ``lat``); ``nodata`` and points outside the raster give :data:`MISSING`."""
    reference = np.full(len(sample), MISSING, dtype=np.int64)
    with rasterio.open(raster_path) as src:
        if len(sample) == 0:
            return reference
        xs, ys = rasterio.warp.transform("EPSG:4326", src.crs, sample["lon"].tolist(), sample["lat"].tolist())
        rows, cols = rasterio.transform.rowcol(src.transform, xs, ys)
        rows, cols = np.asarray(rows), np.asarray(cols)
        inside = (rows >= 0) & (rows < src.height) & (cols >= 0) & (cols < src.width)
        if inside.any():
            values = np.array([v[0] for v in src.sample(zip(np.asarray(xs)[inside], np.asarray(ys)[inside],
                                                             strict=True), indexes=1)], dtype=np.int64)
            reference[inside] = np.where(values == nodata, MISSING, values)
    return reference


__all__ = [
    "MISSING",
    "SAMPLE_COLUMNS",
    "SAMPLE_LAYER",
    "draw_stratified_sample",
    "read_reference",
    "reference_from_raster",
    "stratum_counts",
    "write_sample",
]
