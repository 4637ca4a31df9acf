"""Spatial, class-stratified train/validation/test splits, training-pool balancing and nested subsets.

The `splits` stage turns the chip manifests of every AOI into one split table. In order:

1. **Spatial blocks.** Every chip belongs to the square block (``block_size_km``, anchored at the origin
   of its AOI's projected CRS) that holds its footprint's centroid. AOIs that share a CRS share the grid,
   so overlapping AOIs put their overlapping chips in the same block.
2. **Block assignment.** Blocks, never chips, go to train / val / test. ``search_attempts`` assignments
   are tried, each a block-level iterative stratification (Sechidis et al. 2011) over a block order drawn
   from a seeded :class:`numpy.random.Generator`, preferring splits that neighbouring blocks already
   have (compact split regions have short boundaries, so the buffer costs fewer chips). The best one
   covers the most (class, split) pairs, then has the smallest cost (distance of the post-buffer split
   fractions to the targets + share of chips lost to the buffer + class imbalance between splits).
3. **Buffer.** Two chips of different splits conflict when their footprints share area (source pixels)
   or lie less than ``buffer_m`` apart, across AOIs and CRSs too. A greedy weighted vertex cover drops
   conflicting chips (mostly training chips, the largest pool) until no conflict is left; they are
   marked ``excluded`` (reason ``buffer``) and counted, never moved to another split.
4. **Balancing** (training split only; validation and test keep the natural class distribution so that
   their metrics mean what they say). See :func:`balance_training_pool`.
5. **Nested subsets.** For every seed, the balanced pool is put in a class-stratified order
   (:func:`stratified_order`) and each training fraction takes a prefix of ``round(f * n)`` chips, so
   12.5 % is inside 25 % inside 50 % inside 100 % (= the balanced pool). Validation and test do not
   depend on the seed or the fraction.

Outputs (under ``results/splits/``):

* ``splits.csv``: one row per chip, sorted by ``chip_id``: ``chip_id, aoi, index, block_id, split``
  (``train``/``val``/``test``/``excluded``), ``excluded_reason`` (empty, ``buffer`` or ``balancing``),
  then one 0/1 column per seed and training fraction, ``train_s{seed}_f{fraction:g}`` (e.g.
  ``train_s0_f0.125``). Read it with :func:`load_split`.
* ``class_balance.csv``: ``set, class, pixels, pixel_share, chips_with_class, chips`` for the sets
  ``all``, ``train_before_balancing``, ``train`` (the balanced pool), ``val`` and ``test``.
* ``class_balance.png``: the pixel shares per class and set, with each set's normalised entropy.
* ``splits_summary.json``: chips and blocks per split, chips dropped by the buffer and by balancing,
  target and achieved fractions, entropy before and after balancing, subset sizes, the resolved
  config and every warning.

Everything is sorted and seeded, and no output carries a timestamp or a path, so the same manifests and
config give byte-identical files. Outputs are written to temporary names and moved into place only
when everything succeeded.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lulc.io import atomic_path
from lulc.schema import section
from lulc.split_table import SPLITS, SPLITS_CSV, fraction_label, subset_column

logger = logging.getLogger(__name__)

EXCLUDED = "excluded"

#: Manifest columns this stage needs, besides ``px_<class>`` and ``geometry``.
MANIFEST_COLUMNS: tuple[str, ...] = ("chip_id", "aoi", "index")
#: Prefix of the per-class pixel count columns (one per class of the chips' legend, in class-index order).
PIXEL_PREFIX = "px_"


def manifest_classes(frame: Any, source: str) -> list[str]:
    """The class names of a chip manifest, from its ``px_<class>`` columns in order."""
    names = [str(c)[len(PIXEL_PREFIX) :] for c in frame.columns if str(c).startswith(PIXEL_PREFIX)]
    if not names:
        raise ValueError(f"chip manifest {source}: no px_<class> pixel count columns")
    return names


#: File names written by :func:`make_splits` when given a directory.
BALANCE_CSV = "class_balance.csv"
BALANCE_PNG = "class_balance.png"
SUMMARY_JSON = "splits_summary.json"

#: Warn when the buffer removes more than this share of the chips.
BUFFER_LOSS_WARNING = 0.25
#: Legend text of the sets in class_balance.csv / .png.
SET_LABELS = {
    "all": "all chips",
    "train_before_balancing": "train, before balancing",
    "train": "train (balanced pool)",
    "val": "validation",
    "test": "test",
}
# Numerical slack for geometric comparisons in metres (distance) and relative area.
_DISTANCE_TOLERANCE_M = 1e-6
_RELATIVE_AREA_TOLERANCE = 1e-6


# --------------------------------------------------------------------------------------------- config


def resolve_config(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``splits`` section (:func:`lulc.schema.section`: validated, defaults from the schema) in the form
    this module computes with: numbers as floats, training fractions largest first, seeds ascending."""
    resolved = section("splits", cfg)
    resolved["block_size_km"] = float(resolved["block_size_km"])
    resolved["buffer_m"] = float(resolved["buffer_m"])
    resolved["split_fractions"] = {name: float(resolved["split_fractions"][name]) for name in SPLITS}
    resolved["train_fractions"] = sorted((float(value) for value in resolved["train_fractions"]), reverse=True)
    resolved["seeds"] = sorted(int(value) for value in resolved["seeds"])
    resolved["balance"] = {
        key: value if key == "method" else float(value) for key, value in resolved["balance"].items()
    }
    return resolved


def subset_size(fraction: float, pool_size: int) -> int:
    """``round(fraction * pool_size)``, halves rounded up (not to even), so sizes are easy to predict."""
    return math.floor(fraction * pool_size + 0.5)


# ------------------------------------------------------------------------------------------- metrics


def normalised_entropy(pixel_counts: np.ndarray, n_classes: int) -> float:
    """Shannon entropy of a class distribution divided by ``log(n_classes)``: 1 = perfectly balanced.

    ``n_classes`` is the number of classes that could appear (here: classes present anywhere in the
    data), so a class absent from every chip does not make balance look worse than it can be.
    """
    counts = np.asarray(pixel_counts, dtype=np.float64)
    total = counts.sum()
    if n_classes <= 1 or total <= 0:
        return 0.0
    shares = counts[counts > 0] / total
    return float(-(shares * np.log(shares)).sum() / math.log(n_classes))


# ------------------------------------------------------------------------------------------ manifests


@dataclass
class ChipTable:
    """All chips of all AOIs, sorted by ``chip_id``, with what the split logic needs as arrays."""

    frame: pd.DataFrame  # chip_id, aoi, index, crs_tag, block_id
    pixels: np.ndarray  # (n_chips, n_classes) int64 labelled pixels per class
    geometries: dict[str, Any]  # crs_tag -> (row numbers, shapely geometry array, pyproj CRS)
    class_names: tuple[str, ...] = ()  # the legend's classes, from the manifests' px_<class> columns

    @property
    def presence(self) -> np.ndarray:
        """(n_chips, n_classes) bool: the chip holds at least one pixel of the class."""
        return self.pixels > 0


def _crs_tag(crs: Any) -> str:
    epsg = crs.to_epsg()
    if epsg is not None:
        return f"EPSG{epsg}"
    return "CRS" + hashlib.sha1(crs.to_wkt().encode()).hexdigest()[:8]


def read_manifests(paths: Sequence[str | os.PathLike[str]]) -> list[Any]:
    """Read the chip manifests (GeoParquet), checking the columns and CRS this stage relies on."""
    import geopandas as gpd

    frames = []
    for path in sorted(str(p) for p in paths):
        frame = gpd.read_parquet(path)
        _check_manifest(frame, path)
        frames.append(frame)
    return frames


def _check_manifest(frame: Any, source: str) -> None:
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"chip manifest {source}: missing columns {', '.join(missing)}")
    if frame.crs is None:
        raise ValueError(f"chip manifest {source}: has no CRS (expected the AOI's projected UTM grid)")
    if not frame.crs.is_projected:
        raise ValueError(f"chip manifest {source}: CRS {frame.crs.to_string()} is not projected (metres)")
    if (frame[[f"{PIXEL_PREFIX}{n}" for n in manifest_classes(frame, source)]].to_numpy() < 0).any():
        raise ValueError(f"chip manifest {source}: negative pixel counts")


def chip_table(manifests: Sequence[Any], block_size_km: float) -> ChipTable:
    """Concatenate per-AOI manifests (each in its own CRS) and give every chip its spatial block."""
    import shapely

    if not manifests:
        raise ValueError("splits: no chip manifests given (is config key aois empty?)")
    block_m = block_size_km * 1000.0
    parts = []
    crs_of_tag: dict[str, Any] = {}
    names = manifest_classes(manifests[0], "#0")
    pixel_columns = [f"{PIXEL_PREFIX}{n}" for n in names]
    for number, frame in enumerate(manifests):
        _check_manifest(frame, f"#{number}")
        if manifest_classes(frame, f"#{number}") != names:
            raise ValueError(
                f"chip manifests #0 and #{number} have different classes ({names} vs "
                f"{manifest_classes(frame, f'#{number}')}): chips of one study share one legend (labels.legend)"
            )
        tag = _crs_tag(frame.crs)
        crs_of_tag.setdefault(tag, frame.crs)
        centroids = shapely.centroid(frame.geometry.values)
        block_x = np.floor(shapely.get_x(centroids) / block_m).astype(np.int64)
        block_y = np.floor(shapely.get_y(centroids) / block_m).astype(np.int64)
        part = pd.DataFrame(
            {
                "chip_id": frame["chip_id"].astype(str).to_numpy(),
                "aoi": frame["aoi"].astype(str).to_numpy(),
                "index": frame["index"].astype(np.int64).to_numpy(),
                "crs_tag": tag,
                "block_id": [f"{tag}_x{x}_y{y}" for x, y in zip(block_x, block_y, strict=True)],
                "_geometry": np.asarray(frame.geometry.values, dtype=object),
            }
        )
        for column in pixel_columns:
            part[column] = frame[column].astype(np.int64).to_numpy()
        parts.append(part)
    table = pd.concat(parts, ignore_index=True)
    if table.empty:
        raise ValueError("splits: the chip manifests hold no chips (see config key chips.min_valid_fraction)")
    duplicated = table["chip_id"][table["chip_id"].duplicated()]
    if len(duplicated):
        raise ValueError(f"chip manifests: chip_id {duplicated.iloc[0]!r} appears more than once")
    table = table.sort_values("chip_id", kind="stable").reset_index(drop=True)
    geometries = {}
    all_geometries = table["_geometry"].to_numpy()
    for tag in sorted(crs_of_tag):
        rows = np.flatnonzero(table["crs_tag"].to_numpy() == tag)
        geometries[tag] = (rows, all_geometries[rows], crs_of_tag[tag])
    return ChipTable(
        frame=table[["chip_id", "aoi", "index", "crs_tag", "block_id"]].copy(),
        pixels=table[pixel_columns].to_numpy(dtype=np.int64),
        geometries=geometries,
        class_names=tuple(names),
    )


# ------------------------------------------------------------------------------------------ conflicts


def _close_pairs(
    tree_geoms: np.ndarray, query_geoms: np.ndarray, buffer_m: float, same_set: bool = False
) -> np.ndarray:
    """Index pairs (query, tree) of footprints that share area or lie less than ``buffer_m`` apart.

    ``same_set``: both arrays are the same chips; keep each unordered pair once and no self-pairs.
    """
    import shapely

    tree = shapely.STRtree(tree_geoms)
    query_index, tree_index = tree.query(query_geoms, predicate="dwithin", distance=max(buffer_m, 0.0))
    if same_set:
        once = query_index < tree_index
        query_index, tree_index = query_index[once], tree_index[once]
    if len(query_index) == 0:
        return np.empty((0, 2), dtype=np.int64)
    a, b = query_geoms[query_index], tree_geoms[tree_index]
    distance = shapely.distance(a, b)
    keep = distance < buffer_m - _DISTANCE_TOLERANCE_M
    touching = ~keep & (distance <= _DISTANCE_TOLERANCE_M)  # touch or overlap: do they share area?
    if touching.any():
        a_touch, b_touch = a[touching], b[touching]
        area_tolerance = _RELATIVE_AREA_TOLERANCE * np.minimum(shapely.area(a_touch), shapely.area(b_touch))
        keep[touching] = shapely.area(shapely.intersection(a_touch, b_touch)) > area_tolerance
    return np.stack([query_index[keep], tree_index[keep]], axis=1).astype(np.int64)


def _bounds_lonlat(geoms: np.ndarray, crs: Any) -> tuple[float, float, float, float]:
    import geopandas as gpd
    import shapely

    envelope = shapely.box(*shapely.total_bounds(geoms))
    densified = shapely.segmentize(envelope, max_segment_length=max(envelope.length / 400, 1.0))
    return tuple(gpd.GeoSeries([densified], crs=crs).to_crs(4326).total_bounds)


def conflict_pairs(chips: ChipTable, buffer_m: float) -> np.ndarray:
    """Pairs (i, j), i < j, of chips in different blocks that would leak if they went to different splits.

    Chips in the same CRS are compared in it; chips of different CRSs (AOIs in different UTM zones) are
    compared after reprojecting one side, for CRS pairs whose lon/lat bounds come near each other.
    """
    import geopandas as gpd

    pairs = []
    tags = sorted(chips.geometries)
    for tag in tags:
        rows, geoms, _ = chips.geometries[tag]
        local = _close_pairs(geoms, geoms, buffer_m, same_set=True)
        pairs.append(np.stack([rows[local[:, 0]], rows[local[:, 1]]], axis=1))
    margin_deg = 0.05 + buffer_m / 50_000.0
    bounds = {tag: _bounds_lonlat(chips.geometries[tag][1], chips.geometries[tag][2]) for tag in tags}
    for position, tag_a in enumerate(tags):
        for tag_b in tags[position + 1 :]:
            (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = bounds[tag_a], bounds[tag_b]
            if ax0 > bx1 + margin_deg or bx0 > ax1 + margin_deg or ay0 > by1 + margin_deg or by0 > ay1 + margin_deg:
                continue
            rows_a, geoms_a, crs_a = chips.geometries[tag_a]
            rows_b, geoms_b, crs_b = chips.geometries[tag_b]
            geoms_b_in_a = np.asarray(gpd.GeoSeries(geoms_b, crs=crs_b).to_crs(crs_a).values)
            cross = _close_pairs(geoms_a, geoms_b_in_a, buffer_m)
            pairs.append(np.stack([rows_b[cross[:, 0]], rows_a[cross[:, 1]]], axis=1))
    if not pairs:
        return np.empty((0, 2), dtype=np.int64)
    every = np.concatenate(pairs).astype(np.int64)
    every = np.sort(every, axis=1)
    blocks = chips.frame["block_id"].to_numpy()
    every = every[(every[:, 0] != every[:, 1]) & (blocks[every[:, 0]] != blocks[every[:, 1]])]
    return np.unique(every, axis=0) if len(every) else np.empty((0, 2), dtype=np.int64)


def resolve_conflicts(pairs: np.ndarray, split_of_chip: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Chips to drop so that no conflicting pair ends up in two different splits (bool mask).

    Greedy weighted vertex cover: repeatedly drop the chip with the largest number of remaining
    cross-split conflicts times its split's target fraction, i.e. the most conflicts per share of its
    split lost. The large training split thus pays for the buffer (a ring of training chips around a
    small validation block) instead of losing whole validation or test blocks. Ties go to train, then
    val, then the first chip in ``chip_id`` order. Deterministic; a lazy max-heap keeps it fast.
    """
    n_chips = len(split_of_chip)
    dropped = np.zeros(n_chips, dtype=bool)
    if len(pairs) == 0:
        return dropped
    active = pairs[split_of_chip[pairs[:, 0]] != split_of_chip[pairs[:, 1]]]
    if len(active) == 0:
        return dropped
    endpoints = active.ravel()
    degree = np.bincount(endpoints, minlength=n_chips).tolist()
    order = np.argsort(endpoints, kind="stable")
    starts = np.searchsorted(endpoints[order], np.arange(n_chips + 1)).tolist()
    edge_of_endpoint = (order // 2).tolist()
    other_end = active[:, ::-1].ravel()[order].tolist()  # the chip at the other end of each edge
    edge_alive = [True] * len(active)
    weight = targets[split_of_chip].tolist()
    split_list = split_of_chip.tolist()
    heap = [(-degree[c] * weight[c], split_list[c], c) for c in np.flatnonzero(np.asarray(degree)).tolist()]
    heapq.heapify(heap)
    while heap:
        negative_score, _, chip = heapq.heappop(heap)
        if dropped[chip] or degree[chip] == 0:
            continue
        score = degree[chip] * weight[chip]
        if -negative_score != score:  # stale entry: its degree fell since it was pushed
            heapq.heappush(heap, (-score, split_list[chip], chip))
            continue
        dropped[chip] = True
        for position in range(starts[chip], starts[chip + 1]):
            edge = edge_of_endpoint[position]
            if edge_alive[edge]:
                edge_alive[edge] = False
                degree[other_end[position]] -= 1
        degree[chip] = 0
    return dropped


# ------------------------------------------------------------------------------------ block assignment


def stratified_block_assignment(
    block_presence: np.ndarray,
    block_chips: np.ndarray,
    targets: np.ndarray,
    neighbours: Sequence[np.ndarray],
    generator: np.random.Generator,
) -> np.ndarray:
    """Assign blocks to splits by iterative stratification; returns the split index of every block.

    The class with the fewest unassigned chips goes first; each of its blocks (in an order drawn from
    ``generator``) goes to, in order of preference: a split that has no chip of that class yet; among
    splits that still want chips of that class and chips overall, the one with the most already
    assigned neighbour blocks (compact split regions keep the buffer's losses small); the split that
    wants that class most; the one furthest below its size target. Rare classes are thus spread over
    all splits before common classes fill them up.
    """
    n_blocks, n_classes = block_presence.shape
    n_splits = len(targets)
    visit_rank = np.empty(n_blocks, dtype=np.int64)
    visit_rank[generator.permutation(n_blocks)] = np.arange(n_blocks)
    wanted_class = targets[:, None] * block_presence.sum(axis=0)[None, :].astype(np.float64)
    wanted_chips = targets * float(block_chips.sum())
    has_class = np.zeros((n_splits, n_classes), dtype=bool)
    remaining = block_presence.sum(axis=0).astype(np.float64)
    neighbours_in_split = np.zeros((n_blocks, n_splits), dtype=np.int64)
    split_of_block = np.full(n_blocks, -1, dtype=np.int64)

    def assign(block: int, split: int) -> None:
        split_of_block[block] = split
        wanted_class[split] -= block_presence[block]
        wanted_chips[split] -= block_chips[block]
        has_class[split] |= block_presence[block] > 0
        remaining[:] -= block_presence[block]
        neighbours_in_split[neighbours[block], split] += 1

    while (split_of_block < 0).any():
        open_classes = np.flatnonzero(remaining > 0)
        if len(open_classes) == 0:  # blocks without any labelled class: fill the size targets
            for block in np.argsort(visit_rank):
                if split_of_block[block] < 0:
                    assign(int(block), int(np.argmax(wanted_chips)))
            break
        rarest = int(open_classes[np.argmin(remaining[open_classes])])
        blocks = np.flatnonzero((split_of_block < 0) & (block_presence[:, rarest] > 0))
        for block in blocks[np.argsort(visit_rank[blocks])]:
            wants = (wanted_class[:, rarest] > 0) & (wanted_chips > 0)
            keys = np.lexsort(
                (
                    wanted_chips,
                    wanted_class[:, rarest],
                    np.where(wants, neighbours_in_split[block], -1),
                    wants,
                    ~has_class[:, rarest],
                )
            )
            assign(int(block), int(keys[-1]))
    return split_of_block


def block_neighbours(block_ids: Sequence[str]) -> list[np.ndarray]:
    """For each block, the indices of the (up to 8) adjacent blocks on the same CRS grid."""
    position: dict[tuple[str, int, int], int] = {}
    for number, block_id in enumerate(block_ids):
        tag, x_text, y_text = block_id.rsplit("_", 2)
        position[(tag, int(x_text[1:]), int(y_text[1:]))] = number
    neighbours = []
    for (tag, x, y), _number in sorted(position.items(), key=lambda item: item[1]):
        around = [
            position[(tag, x + dx, y + dy)]
            for dx in (-1, 0, 1)
            for dy in (-1, 0, 1)
            if (dx or dy) and (tag, x + dx, y + dy) in position
        ]
        neighbours.append(np.array(sorted(around), dtype=np.int64))
    return neighbours


@dataclass
class _Candidate:
    split_of_chip: np.ndarray  # split index per chip, before the buffer
    dropped: np.ndarray  # bool per chip
    coverage: int
    cost: float
    details: dict[str, float] = field(default_factory=dict)


def _evaluate(
    split_of_chip: np.ndarray, dropped: np.ndarray, presence: np.ndarray, targets: np.ndarray
) -> tuple[int, float, dict[str, float]]:
    """Score an assignment after the buffer: (class coverage, cost = size + loss + class deviation)."""
    kept = ~dropped
    n_kept = kept.sum()
    present = presence.any(axis=0)
    split_presence = np.stack([presence[kept & (split_of_chip == s)].sum(axis=0) for s in range(len(targets))])
    split_sizes = np.array([(kept & (split_of_chip == s)).sum() for s in range(len(targets))])
    if (split_sizes == 0).any():
        return -1, math.inf, {}
    coverage = int((split_presence[:, present] > 0).sum())
    size_deviation = float(np.abs(split_sizes / n_kept - targets).sum())
    dropped_share = float(dropped.mean())
    class_totals = split_presence.sum(axis=0)
    usable = class_totals > 0
    if usable.any():
        class_shares = split_presence[:, usable] / class_totals[usable]
        class_deviation = float(np.abs(class_shares - targets[:, None]).sum(axis=0).mean())
    else:
        class_deviation = 0.0
    cost = size_deviation + dropped_share + class_deviation
    details = {
        "size_deviation": size_deviation,
        "dropped_share": dropped_share,
        "class_deviation": class_deviation,
    }
    return coverage, cost, details


#: The search runs in this many rounds; after each, the pre-buffer targets are corrected for the share of
#: each split that the buffer removed, so that the fractions after the buffer come close to the targets.
SEARCH_ROUNDS = 3


def search_assignment(
    chips: ChipTable, pairs: np.ndarray, targets: np.ndarray, attempts: int, generator: np.random.Generator
) -> _Candidate:
    """Try ``attempts`` stratified block assignments and keep the best (see the module docstring).

    Attempts run in :data:`SEARCH_ROUNDS` rounds. The buffer mostly costs training chips (see
    :func:`resolve_conflicts`), so each round aims the assignment at targets inflated by the losses the
    best assignment so far suffered per split; candidates are always scored against the real targets.
    """
    block_codes, block_of_chip = np.unique(chips.frame["block_id"].to_numpy(), return_inverse=True)
    n_blocks = len(block_codes)
    presence = chips.presence
    block_presence = np.zeros((n_blocks, presence.shape[1]), dtype=np.int64)
    np.add.at(block_presence, block_of_chip, presence.astype(np.int64))
    block_chips = np.bincount(block_of_chip, minlength=n_blocks)
    neighbours = block_neighbours(list(block_codes))
    best: _Candidate | None = None
    aim = targets.copy()
    rounds = min(SEARCH_ROUNDS, attempts)
    for round_number in range(rounds):
        for _ in range(attempts // rounds + (round_number < attempts % rounds)):
            split_of_block = stratified_block_assignment(block_presence, block_chips, aim, neighbours, generator)
            split_of_chip = split_of_block[block_of_chip]
            dropped = resolve_conflicts(pairs, split_of_chip, targets)
            coverage, cost, details = _evaluate(split_of_chip, dropped, presence, targets)
            if best is None or (coverage, -cost) > (best.coverage, -best.cost):
                best = _Candidate(split_of_chip, dropped, coverage, cost, details)
        assert best is not None
        before = np.bincount(best.split_of_chip, minlength=len(targets))
        after = np.bincount(best.split_of_chip[~best.dropped], minlength=len(targets))
        if (after > 0).all():
            aim = aim * before / after
            aim = aim / aim.sum()
    assert best is not None
    return best


# ------------------------------------------------------------------------------------------ balancing


def balance_training_pool(
    pixels: np.ndarray, balance_cfg: Mapping[str, Any], generator: np.random.Generator
) -> np.ndarray:
    """Choose the training chips to keep (bool mask over ``pixels`` rows): the balancing heuristic.

    ``method: dominance_cap`` (``none`` keeps everything):

    * a chip is *dominated* by its largest class when that class covers at least ``dominant_share`` of
      its labelled pixels;
    * a class is *rare* when it holds less than ``rare_class_share`` of the pool's pixels; a chip where a
      rare class covers at least ``rare_min_chip_share`` of its pixels is *protected* and always kept;
    * while some class holds more than ``max_class_share`` of the pool's pixels, drop an unprotected chip
      dominated by the most over-represented such class (most dominated first, ties in an order drawn
      from ``generator``), but only if dropping it raises the pool's class entropy; stop when no class
      is over the cap with such a chip left, or when only ``min_pool_fraction`` of the chips remain.

    The entropy guard makes the balance figure (normalised entropy) never worse after balancing.
    """
    n_chips = len(pixels)
    keep = np.ones(n_chips, dtype=bool)
    if balance_cfg["method"] == "none" or n_chips == 0:
        return keep
    pixels = pixels.astype(np.float64)
    chip_totals = pixels.sum(axis=1)
    chip_shares = np.divide(pixels, chip_totals[:, None], out=np.zeros_like(pixels), where=chip_totals[:, None] > 0)
    totals = pixels.sum(axis=0)
    pool_shares = totals / max(totals.sum(), 1.0)
    rare = (pool_shares > 0) & (pool_shares < balance_cfg["rare_class_share"])
    protected = (chip_shares[:, rare] >= balance_cfg["rare_min_chip_share"]).any(axis=1)
    dominant_class = chip_shares.argmax(axis=1)
    dominance = chip_shares.max(axis=1)
    droppable = (dominance >= balance_cfg["dominant_share"]) & ~protected
    tie_break = generator.permutation(n_chips)
    queues = {}
    for k in range(pixels.shape[1]):
        members = np.flatnonzero(droppable & (dominant_class == k))
        members = members[np.lexsort((tie_break[members], -dominance[members]))]
        queues[k] = list(members[::-1])  # pop() from the end = most dominated first
    min_kept = math.ceil(balance_cfg["min_pool_fraction"] * n_chips)
    kept = n_chips

    def entropy_of(counts: np.ndarray) -> float:
        total = counts.sum()
        shares = counts[counts > 0] / total
        return float(-(shares * np.log(shares)).sum()) if total > 0 else 0.0

    current_entropy = entropy_of(totals)
    while kept > min_kept:
        shares = totals / totals.sum()
        over_cap = [k for k in np.argsort(-shares, kind="stable") if shares[k] > balance_cfg["max_class_share"]]
        progressed = False
        for k in over_cap:
            while queues[k]:
                chip = queues[k].pop()
                after = entropy_of(totals - pixels[chip])
                if after > current_entropy:
                    keep[chip] = False
                    totals -= pixels[chip]
                    current_entropy = after
                    kept -= 1
                    progressed = True
                    break
            if progressed:
                break
        if not progressed:
            break
    return keep


# ---------------------------------------------------------------------------------- nested subsets


def stratified_order(presence: np.ndarray, generator: np.random.Generator) -> np.ndarray:
    """A permutation of the pool whose every prefix is stratified by class presence.

    First one chip for each class, rarest class first (random among the chips holding it, skipping
    classes already covered): any prefix at least that long holds every class of the pool. Then the
    other chips, grouped into strata by their rarest present class and interleaved by systematic
    sampling (the i-th of m chips of a stratum sits at ``(i + offset) / m``), so that a prefix of any
    length holds each stratum in proportion, to within one chip.
    """
    n_chips, n_classes = presence.shape
    counts = presence.sum(axis=0)
    picked = np.zeros(n_chips, dtype=bool)
    covered = np.zeros(n_classes, dtype=bool)
    first: list[int] = []
    for k in np.argsort(counts, kind="stable"):
        if counts[k] == 0 or covered[k]:
            continue
        candidates = np.flatnonzero(presence[:, k] & ~picked)
        chip = int(candidates[generator.integers(len(candidates))])
        first.append(chip)
        picked[chip] = True
        covered |= presence[chip]
    rest = np.flatnonzero(~picked)
    rarity = np.where(presence[rest], counts[None, :], np.iinfo(np.int64).max)
    stratum = np.where(presence[rest].any(axis=1), rarity.argmin(axis=1), n_classes)
    position = np.empty(len(rest), dtype=np.float64)
    for value in np.unique(stratum):
        members = np.flatnonzero(stratum == value)
        members = members[generator.permutation(len(members))]
        position[members] = (np.arange(len(members)) + generator.random()) / len(members)
    tie_break = generator.random(len(rest))
    rest = rest[np.lexsort((tie_break, position))]
    return np.concatenate([np.asarray(first, dtype=np.int64), rest.astype(np.int64)])


# ------------------------------------------------------------------------------------------- results


@dataclass
class SplitResult:
    """The split table, the class-balance table and the summary, ready to be written."""

    table: pd.DataFrame
    balance: pd.DataFrame
    summary: dict[str, Any]


@dataclass(frozen=True)
class SplitPaths:
    """Where :func:`make_splits` writes its four outputs."""

    table: str | os.PathLike[str]
    balance: str | os.PathLike[str]
    balance_plot: str | os.PathLike[str]
    summary: str | os.PathLike[str]

    @classmethod
    def in_directory(cls, directory: str | os.PathLike[str]) -> SplitPaths:
        """The default file names (``splits.csv``, ...) inside ``directory``."""
        directory = Path(directory)
        return cls(directory / SPLITS_CSV, directory / BALANCE_CSV, directory / BALANCE_PNG, directory / SUMMARY_JSON)


def _balance_rows(name: str, pixels: np.ndarray, class_names: Sequence[str]) -> list[dict[str, Any]]:
    totals = pixels.sum(axis=0)
    grand_total = totals.sum()
    chips_with = (pixels > 0).sum(axis=0)
    return [
        {
            "set": name,
            "class": class_name,
            "pixels": int(totals[k]),
            "pixel_share": float(totals[k] / grand_total) if grand_total > 0 else 0.0,
            "chips_with_class": int(chips_with[k]),
            "chips": len(pixels),
        }
        for k, class_name in enumerate(class_names)
    ]


@dataclass
class _Warnings:
    """The warnings of one :func:`build_splits`: each is logged when it happens and kept, in order, for the
    summary."""

    messages: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        logger.warning("%s", message)
        self.messages.append(message)


@dataclass(frozen=True)
class _Assignment:
    """The chosen split of every chip and the training pool balanced from it: what the split table, the
    class balance and the summary are made of."""

    best: _Candidate  # split index per chip and the chips the buffer dropped, with the search's scores
    conflicting_pairs: int
    train_rows: np.ndarray  # chips of the train split that the buffer kept (before balancing)
    pool_rows: np.ndarray  # the balanced training pool
    balanced_out: np.ndarray  # train chips that balancing excluded


def _chip_width_m(chips: ChipTable) -> float:
    """The typical chip width in metres (the median footprint's side, the widest over the CRSs), to
    compare with the block size."""
    import shapely

    return max(float(np.median(np.sqrt(shapely.area(geoms)))) for _, geoms, _ in chips.geometries.values())


def _check_blocks(chips: ChipTable, cfg: Mapping[str, Any], chip_width_m: float, warnings: _Warnings) -> int:
    """Warn when blocks are narrower than a chip, refuse fewer blocks than splits; return the number of blocks."""
    if chip_width_m > cfg["block_size_km"] * 1000:
        warnings.warn(
            f"splits.block_size_km = {cfg['block_size_km']:g} is smaller than a chip "
            f"({chip_width_m / 1000:g} km): most chips straddle block boundaries and the buffer drops many"
        )
    n_blocks = chips.frame["block_id"].nunique()
    if n_blocks < len(SPLITS):
        raise ValueError(
            f"config key splits.block_size_km: too few chips for the requested splits: {len(chips.frame)} chips "
            f"fall in {n_blocks} spatial block(s) of {cfg['block_size_km']:g} km, but train, val and test "
            "need one block each (lower splits.block_size_km, or add AOIs)"
        )
    return int(n_blocks)


def _assign(
    chips: ChipTable, cfg: Mapping[str, Any], n_blocks: int, chip_width_m: float, warnings: _Warnings
) -> _Assignment:
    """Search the block assignment (steps 2 and 3 of the module docstring), then balance its training split
    (step 4). The search and the balancing draw from two generators spawned from ``splits.seed``."""
    targets = np.array([cfg["split_fractions"][name] for name in SPLITS])
    search_seed, balance_seed = np.random.SeedSequence(cfg["seed"]).spawn(2)
    pairs = conflict_pairs(chips, cfg["buffer_m"])
    best = search_assignment(chips, pairs, targets, cfg["search_attempts"], np.random.default_rng(search_seed))
    if best.coverage < 0:
        raise ValueError(
            f"config key splits.block_size_km: too few chips for the requested splits: no assignment of the "
            f"{n_blocks} blocks ({len(chips.frame)} chips) leaves chips in train, val and test after the "
            f"{cfg['buffer_m']:g} m buffer (lower splits.block_size_km or splits.buffer_m, or add AOIs)"
        )
    dropped = best.dropped
    if dropped.mean() > BUFFER_LOSS_WARNING:
        block_size_m = cfg["block_size_km"] * 1000
        warnings.warn(
            f"the {cfg['buffer_m']:g} m buffer removed {dropped.mean():.0%} of the chips: blocks of "
            f"{cfg['block_size_km']:g} km are only {block_size_m / chip_width_m:.1f} chips wide; a larger "
            "splits.block_size_km shortens the boundaries between splits"
        )
    train_rows = np.flatnonzero((best.split_of_chip == 0) & ~dropped)
    keep = balance_training_pool(chips.pixels[train_rows], cfg["balance"], np.random.default_rng(balance_seed))
    return _Assignment(best, len(pairs), train_rows, train_rows[keep], train_rows[~keep])


def _split_table(chips: ChipTable, assignment: _Assignment) -> pd.DataFrame:
    """The split table without the subset columns: one row per chip, its split, ``excluded`` with the reason
    (``buffer`` or ``balancing``) for the chips the buffer or the balancing dropped."""
    dropped = assignment.best.dropped
    split_names = np.array(SPLITS, dtype=object)[assignment.best.split_of_chip]
    reason = np.full(len(chips.frame), "", dtype=object)
    split_names[dropped] = EXCLUDED
    reason[dropped] = "buffer"
    split_names[assignment.balanced_out] = EXCLUDED
    reason[assignment.balanced_out] = "balancing"
    table = chips.frame[["chip_id", "aoi", "index", "block_id"]].copy()
    table["split"] = split_names
    table["excluded_reason"] = reason
    return table


def _add_training_subsets(
    table: pd.DataFrame, presence: np.ndarray, pool_rows: np.ndarray, cfg: Mapping[str, Any]
) -> dict[float, int]:
    """Add the nested training subsets to ``table`` (step 5: one 0/1 column per seed and fraction, prefixes of
    one stratified order per seed); return the subset size per fraction. Refuse a fraction that rounds to 0."""
    pool_presence = presence[pool_rows]
    subset_sizes = {fraction: subset_size(fraction, len(pool_rows)) for fraction in cfg["train_fractions"]}
    smallest = min(cfg["train_fractions"])
    if subset_sizes[smallest] < 1:
        raise ValueError(
            f"config key splits.train_fractions: too few chips for the requested splits: {smallest:g} of the "
            f"{len(pool_rows)} balanced training chips rounds to 0 chips"
        )
    for seed in cfg["seeds"]:
        order = pool_rows[stratified_order(pool_presence, np.random.default_rng(seed))]
        for fraction in cfg["train_fractions"]:
            member = np.zeros(len(table), dtype=np.int8)
            member[order[: subset_sizes[fraction]]] = 1
            table[subset_column(seed, fraction)] = member
    return subset_sizes


def _balance_sets(table: pd.DataFrame, assignment: _Assignment) -> dict[str, np.ndarray]:
    """The chip rows of each set of the class-balance table (:data:`SET_LABELS`), in its order."""
    return {
        "all": np.arange(len(table)),
        "train_before_balancing": assignment.train_rows,
        "train": assignment.pool_rows,
        "val": np.flatnonzero(table["split"].to_numpy() == "val"),
        "test": np.flatnonzero(table["split"].to_numpy() == "test"),
    }


def _class_balance(
    chips: ChipTable, sets: Mapping[str, np.ndarray], n_present: int
) -> tuple[pd.DataFrame, dict[str, float]]:
    """The class-balance table of every set, and each set's normalised entropy over the present classes."""
    rows = []
    entropy = {}
    for name, set_rows in sets.items():
        rows.extend(_balance_rows(name, chips.pixels[set_rows], chips.class_names))
        entropy[name] = round(normalised_entropy(chips.pixels[set_rows].sum(axis=0), n_present), 6)
    return pd.DataFrame(rows), entropy


def _warn_missing_classes(
    present: np.ndarray,
    presence: np.ndarray,
    sets: Mapping[str, np.ndarray],
    warnings: _Warnings,
    class_names: Sequence[str],
) -> None:
    """Warn about each class present in the data but absent from the train, val or test split."""
    for name in ("train", "val", "test"):
        missing = [class_names[int(k)] for k in np.flatnonzero(present & ~presence[sets[name]].any(axis=0))]
        for class_name in missing:
            warnings.warn(
                f"class {class_name!r} is present in the data but not in the {name} split "
                "(too few spatial blocks hold it)"
            )


def _summary(
    chips: ChipTable,
    cfg: Mapping[str, Any],
    n_blocks: int,
    assignment: _Assignment,
    table: pd.DataFrame,
    present: np.ndarray,
    entropy: Mapping[str, float],
    subset_sizes: Mapping[float, int],
    warnings: _Warnings,
) -> dict[str, Any]:
    """The ``splits_summary.json`` content (see the module docstring)."""
    split_of_chip, dropped = assignment.best.split_of_chip, assignment.best.dropped
    n_present = int(present.sum())
    return {
        "chips": len(chips.frame),
        "blocks": int(n_blocks),
        "blocks_per_split": {
            name: int(chips.frame["block_id"][split_of_chip == s].nunique()) for s, name in enumerate(SPLITS)
        },
        "chips_per_split": {name: int((table["split"] == name).sum()) for name in (*SPLITS, EXCLUDED)},
        "excluded_by_buffer": int(dropped.sum()),
        "excluded_by_balancing": len(assignment.balanced_out),
        "conflicting_pairs": assignment.conflicting_pairs,
        "target_fractions": cfg["split_fractions"],
        "achieved_fractions": {
            name: round(int((split_of_chip[~dropped] == s).sum()) / int((~dropped).sum()), 6)
            for s, name in enumerate(SPLITS)
        },
        "train_pool_before_balancing": len(assignment.train_rows),
        "train_pool": len(assignment.pool_rows),
        "normalised_entropy": entropy,
        "entropy_train_before_balancing": entropy["train_before_balancing"],
        "entropy_train_after_balancing": entropy["train"],
        "entropy_classes": n_present,
        "classes_absent": [chips.class_names[k] for k in np.flatnonzero(~present)],
        "seeds": cfg["seeds"],
        "train_fractions": [float(f) for f in cfg["train_fractions"]],
        "train_subset_sizes": {fraction_label(f): subset_sizes[f] for f in cfg["train_fractions"]},
        "search": {
            "attempts": cfg["search_attempts"],
            "class_split_coverage": assignment.best.coverage,
            "class_split_coverage_max": n_present * len(SPLITS),
            "cost": round(assignment.best.cost, 6),
            **{key: round(value, 6) for key, value in assignment.best.details.items()},
        },
        "config": cfg,
        "warnings": warnings.messages,
    }


def build_splits(manifests: Sequence[Any], cfg: Mapping[str, Any] | None) -> SplitResult:
    """Compute splits, balanced pool and nested subsets from per-AOI manifests (GeoDataFrames); no IO."""
    cfg = resolve_config(cfg)
    warnings = _Warnings()
    chips = chip_table(manifests, cfg["block_size_km"])
    presence = chips.presence
    present = np.asarray(presence.any(axis=0))  # bool per class: in some chip
    for k in np.flatnonzero(~present):
        warnings.warn(f"class {chips.class_names[k]!r} has no pixels in any chip: it cannot appear in any split")
    chip_width_m = _chip_width_m(chips)
    n_blocks = _check_blocks(chips, cfg, chip_width_m, warnings)

    assignment = _assign(chips, cfg, n_blocks, chip_width_m, warnings)
    table = _split_table(chips, assignment)
    subset_sizes = _add_training_subsets(table, presence, assignment.pool_rows, cfg)
    sets = _balance_sets(table, assignment)
    balance, entropy = _class_balance(chips, sets, int(present.sum()))
    _warn_missing_classes(present, presence, sets, warnings, chips.class_names)

    summary = _summary(chips, cfg, n_blocks, assignment, table, present, entropy, subset_sizes, warnings)
    logger.info(
        "splits: %d chips -> train %d (of %d before balancing), val %d, test %d, excluded %d by the buffer; "
        "entropy %.3f -> %.3f",
        summary["chips"],
        summary["train_pool"],
        summary["train_pool_before_balancing"],
        summary["chips_per_split"]["val"],
        summary["chips_per_split"]["test"],
        summary["excluded_by_buffer"],
        entropy["train_before_balancing"],
        entropy["train"],
    )
    return SplitResult(table=table, balance=balance, summary=summary)


# ------------------------------------------------------------------------------------------- writing


def _plot_balance(balance: pd.DataFrame, summary: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(balance["set"]))
    class_names = list(dict.fromkeys(balance["class"]))
    width = 0.8 / len(sets)
    x = np.arange(len(class_names))
    figure, axis = plt.subplots(figsize=(10, 4.5), dpi=100)
    for position, name in enumerate(sets):
        shares = balance.loc[balance["set"] == name].set_index("class").loc[class_names, "pixel_share"]
        label = f"{SET_LABELS.get(name, name)} (H={summary['normalised_entropy'][name]:.3f})"
        axis.bar(x + (position - (len(sets) - 1) / 2) * width, shares.to_numpy() * 100, width, label=label)
    axis.set_xticks(x, [name.replace("_", " ") for name in class_names], rotation=30, ha="right")
    axis.set_ylabel("share of labelled pixels (%)")
    axis.set_title(
        "Class balance per split; normalised entropy of the training pool "
        f"{summary['entropy_train_before_balancing']:.3f} -> {summary['entropy_train_after_balancing']:.3f}"
    )
    axis.legend(fontsize="small")
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, format="png", metadata={"Software": None})
    plt.close(figure)


def write_splits(result: SplitResult, paths: SplitPaths) -> None:
    """Write the four outputs; each goes to a temporary name and all are renamed only if all succeeded."""
    with contextlib.ExitStack() as stack:
        table, balance, plot, summary = (
            stack.enter_context(atomic_path(target))
            for target in (paths.table, paths.balance, paths.balance_plot, paths.summary)
        )
        result.table.to_csv(table, index=False, lineterminator="\n")
        result.balance.to_csv(balance, index=False, lineterminator="\n", float_format="%.6f")
        _plot_balance(result.balance, result.summary, plot)
        summary.write_text(json.dumps(result.summary, indent=2, sort_keys=True) + "\n")


def make_splits(
    manifest_paths: Sequence[str | os.PathLike[str]],
    cfg: Mapping[str, Any] | None,
    paths: SplitPaths | str | os.PathLike[str],
) -> SplitResult:
    """The `splits` stage: read manifests, build the splits, write them (nothing is written on error).

    ``paths`` is a :class:`SplitPaths` or a directory for the default file names.
    """
    resolve_config(cfg)  # fail on a bad config before reading anything
    if not isinstance(paths, SplitPaths):
        paths = SplitPaths.in_directory(paths)
    result = build_splits(read_manifests(manifest_paths), cfg)
    write_splits(result, paths)
    return result


# -------------------------------------------------------------------------------------------- loading
