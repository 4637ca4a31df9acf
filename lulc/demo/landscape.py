"""The latent landscape of a demo region: a 10 m land-cover map (IO class codes) with the behaviour of its
surfaces through the year, its change between years, and the IO-like labels drawn from it.

Apart from rendering because it is the truth that the labels and every date's imagery share: drawn once per
region (:func:`make_landscape`), changed a little per imagery year (:func:`landscape_in_year`), then rendered
per acquisition by :mod:`lulc.demo.render`.

How a region is made, and why:

* A latent land-cover map at 10 m (IO class codes) is drawn from smoothed noise fields, survey-grid or
  Voronoi field parcels, a meandering river with a reservoir, towns and farmsteads. ``agricultural``
  regions (Iowa-like) are dominated by crops; ``valley`` regions by trees and rangeland around a valley
  floor with crops, a town, a lake, rocky ridges and a little permanent snow. Class imbalance is
  realistic: rare classes (flooded vegetation, bare ground, snow, clouds) cover well under 2 %.
* Labels are that map on their own 10 m grid, whose origin is offset by
  :data:`lulc.demo.geometry.LABEL_GRID_OFFSET_M` from the 30 m imagery grid (so mode resampling onto the
  imagery grid is real work), with label noise at class edges and a few nodata pixels, like a model-made
  product.

Between years the landscape changes a little (:func:`landscape_in_year`), so that a change table
between two years is not all zero: ``year``'s landscape is the one drawn (and labelled). In every later
year another :data:`CHANGE_SHARE_PER_YEAR` of the region's crop fields (cumulative, drawn among the
fields within :data:`CHANGE_BUFFER_M` of built area) are built over; in every earlier year another
such share (drawn among all crop fields) was still rangeland, broken to cropland later. Changed fields
change whole (the parcel's crop pixels), keep their brightness and take the new class's spectrum,
phenology and partner-cover mix.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lulc.demo.arrays import dilate, quantiles, smooth_noise
from lulc.demo.geometry import LABEL_MARGIN_PX, LABEL_PIXEL_M, SUB, TILE_MARGIN_PX
from lulc.demo.labels import IO_CLASSES, IO_NODATA

#: Landscape kinds a region can be drawn as (config key ``landscape``; default the first). A region's kind never
#: depends on the other regions: the workflow passes the regions sorted by name, so a default that alternated by
#: position would change a region's landscape whenever a region with an earlier name was added.
LANDSCAPES: tuple[str, ...] = ("agricultural", "valley")
#: Share of a region's crop fields that change per year away from ``demo.year`` (built over later,
#: still rangeland earlier); cumulative, at least one field per year where there is a candidate.
CHANGE_SHARE_PER_YEAR = 0.015
#: Crop fields within this distance of built area are the candidates for being built over.
CHANGE_BUFFER_M = 300

#: IO class code by class name, and the codes the generator draws by name.
CODE = {name: code for code, name in IO_CLASSES.items()}
WATER, TREES, FLOODED = CODE["water"], CODE["trees"], CODE["flooded_vegetation"]
CROPS, BUILT, BARE = CODE["crops"], CODE["built_area"], CODE["bare_ground"]
SNOW, CLOUDS, RANGELAND = CODE["snow_ice"], CODE["clouds"], CODE["rangeland"]

#: Sub-pixel mixing: each class's surfaces hold a varying fraction (lo..hi, from a smooth field) of a
#: partner cover (open woodland has grass, pastures have shrubs, marshes open water, towns trees, ...):
#: the continuum between classes that makes real land cover hard to separate pixel by pixel.
CLASS_MIXING: dict[str, tuple[str, float, float]] = {
    "trees": ("rangeland", 0.0, 0.45),
    "rangeland": ("trees", 0.0, 0.4),
    "flooded_vegetation": ("water", 0.1, 0.6),
    "built_area": ("trees", 0.05, 0.5),
    "bare_ground": ("rangeland", 0.0, 0.4),
    "water": ("flooded_vegetation", 0.0, 0.2),
    "crops": ("rangeland", 0.0, 0.25),
}


def _blob(
    rng: np.random.Generator,
    shape: tuple[int, int],
    centre: tuple[float, float],
    radii: tuple[float, float],
    angle: float = 0.0,
    roughness: float = 0.35,
) -> np.ndarray:
    """A natural-looking blob (lake, town, pond): a noisy ellipse, computed only in its bounding box."""
    height, width = shape
    mask = np.zeros(shape, dtype=bool)
    reach = 1.6 * max(radii)
    r0, r1 = int(max(centre[0] - reach, 0)), int(min(centre[0] + reach + 1, height))
    c0, c1 = int(max(centre[1] - reach, 0)), int(min(centre[1] + reach + 1, width))
    if r1 <= r0 or c1 <= c0:
        return mask
    rows = np.arange(r0, r1, dtype=np.float32)[:, None] - centre[0]
    cols = np.arange(c0, c1, dtype=np.float32)[None, :] - centre[1]
    along = rows * math.sin(angle) + cols * math.cos(angle)
    across = rows * math.cos(angle) - cols * math.sin(angle)
    distance = (along / radii[0]) ** 2 + (across / radii[1]) ** 2
    noise = smooth_noise(rng, (r1 - r0, c1 - c0), max(min(radii) / 3.0, 1.0))
    mask[r0:r1, c0:c1] = distance < 1.0 + roughness * noise
    return mask


def _voronoi(rng: np.random.Generator, shape: tuple[int, int], spacing: float, warp: float = 0.0) -> np.ndarray:
    """Voronoi cell ids of jittered-grid seeds (cells about ``spacing`` px across), optionally with
    boundaries warped by smooth noise so they look less polygonal."""
    height, width = shape
    ny, nx = int(height // spacing) + 1, int(width // spacing) + 1
    seeds_r = np.full((ny + 2, nx + 2), -1e9, dtype=np.float32)
    seeds_c = np.full((ny + 2, nx + 2), -1e9, dtype=np.float32)
    seeds_r[1:-1, 1:-1] = (np.arange(ny)[:, None] + rng.uniform(0.1, 0.9, (ny, nx))) * spacing
    seeds_c[1:-1, 1:-1] = (np.arange(nx)[None, :] + rng.uniform(0.1, 0.9, (ny, nx))) * spacing
    rows = np.arange(height, dtype=np.float32)[:, None]
    cols = np.arange(width, dtype=np.float32)[None, :]
    if warp > 0:
        rows = (rows + warp * smooth_noise(rng, shape, spacing / 4)).astype(np.float32)
        cols = (cols + warp * smooth_noise(rng, shape, spacing / 4)).astype(np.float32)
    cell_r = np.minimum((np.arange(height) // spacing).astype(np.int64), ny - 1)[:, None]
    cell_c = np.minimum((np.arange(width) // spacing).astype(np.int64), nx - 1)[None, :]
    best = np.full(shape, np.inf, dtype=np.float32)
    label = np.zeros(shape, dtype=np.int32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            iy, ix = cell_r + dy + 1, cell_c + dx + 1
            distance = (rows - seeds_r[iy, ix]) ** 2 + (cols - seeds_c[iy, ix]) ** 2
            closer = distance < best
            best = np.where(closer, distance, best)
            label = np.where(closer, ((iy - 1) * nx + (ix - 1)).astype(np.int32), label)
    return label


def _survey_parcels(rng: np.random.Generator, shape: tuple[int, int], block: int) -> np.ndarray:
    """Rectangular fields of a survey grid (Midwest quarter sections): ``block``-px squares, each kept
    whole, halved or quartered at a random position."""
    height, width = shape
    off_r, off_c = (int(v) for v in rng.integers(0, block, 2))
    row_pos, col_pos = np.arange(height) + off_r, np.arange(width) + off_c
    n_rows, n_cols = row_pos[-1] // block + 1, col_pos[-1] // block + 1
    block_id = (row_pos // block)[:, None] * n_cols + (col_pos // block)[None, :]
    n_blocks = n_rows * n_cols
    split = rng.choice(3, size=n_blocks, p=[0.3, 0.4, 0.3])  # whole, halves, quarters
    horizontal = rng.random(n_blocks) < 0.5
    split_rows = (split == 2) | ((split == 1) & horizontal)
    split_cols = (split == 2) | ((split == 1) & ~horizontal)
    cut_r = rng.integers(int(0.3 * block), int(0.7 * block), n_blocks)
    cut_c = rng.integers(int(0.3 * block), int(0.7 * block), n_blocks)
    lower = split_rows[block_id] & ((row_pos % block)[:, None] >= cut_r[block_id])
    right = split_cols[block_id] & ((col_pos % block)[None, :] >= cut_c[block_id])
    return (block_id * 4 + 2 * lower + right).astype(np.int32)


@dataclass
class Landscape:
    """The static truth of a region: what is where, and how each surface behaves through the year."""

    kind: str
    classes: np.ndarray  # uint8 IO codes on the latent 10 m grid
    parcels: np.ndarray  # int32 field id per latent pixel: crops follow their field's calendar
    elevation: np.ndarray  # float32 relief: seasonal snow lies above a date-dependent line
    emergence: np.ndarray  # per field: day of year its crop starts greening
    harvest: np.ndarray  # per field: day of year it is harvested
    vigour: np.ndarray  # per field: peak greenness of its crop (0..1)
    mixing: np.ndarray  # float32 per latent pixel: fraction of the class's partner cover (CLASS_MIXING)
    brightness: np.ndarray  # (6, H, W) multiplicative variation of the class spectra per latent pixel


def _river(
    rng: np.random.Generator, shape: tuple[int, int], half_width: tuple[float, float]
) -> tuple[np.ndarray, Callable[[float], tuple[float, float]], int, bool]:
    """A meandering river crossing the tile: signed distance (px) to its banks (negative in the water),
    the (row, col) of its centreline at an along-river position (for a reservoir on it), its length in
    pixels, and whether it runs north-south (``True``) or west-east."""
    height, width = shape
    transpose = bool(rng.random() < 0.5)
    across_n, along_n = (width, height) if transpose else (height, width)
    along = np.arange(along_n, dtype=np.float64)
    centre0 = rng.uniform(0.35, 0.65) * across_n
    slope = rng.uniform(-0.25, 0.25)
    centre = centre0 + slope * (along - along_n / 2)
    for wavelength_m, amplitude_m in ((3500, 250), (1500, 90), (700, 30)):
        centre = centre + amplitude_m / LABEL_PIXEL_M * np.sin(
            2 * np.pi * along / (wavelength_m / LABEL_PIXEL_M) + rng.uniform(0, 2 * np.pi)
        )
    steepness = np.sqrt(1.0 + np.gradient(centre) ** 2)
    half = rng.uniform(*half_width) * (1 + 0.25 * np.sin(along / 90.0 + rng.uniform(0, 6.3)))
    across = np.arange(across_n, dtype=np.float32)[:, None]
    bank = (np.abs(across - centre[None, :].astype(np.float32)) / steepness[None, :]).astype(np.float32)
    bank -= half[None, :].astype(np.float32)
    if transpose:
        bank = bank.T

    def centre_at(position: float) -> tuple[float, float]:
        """(row, col) of the river centreline at an along-river position."""
        index = int(np.clip(position, 0, along_n - 1))
        return (index, float(centre[index])) if transpose else (float(centre[index]), index)

    return np.ascontiguousarray(bank), centre_at, along_n, transpose


def _agricultural_landscape(rng: np.random.Generator, shape: tuple[int, int], core_side: int) -> tuple[np.ndarray, ...]:
    """Iowa-like: survey-grid crop fields, pastures and woodlots, a river with riparian forest and a
    reservoir, a town, farmsteads with shelterbelts and a highway."""
    height, width = shape
    parcels = _survey_parcels(rng, shape, block=80)
    n_parcels = int(parcels.max()) + 1
    parcel_class = rng.choice(
        np.array([CROPS, RANGELAND, TREES, BARE], dtype=np.uint8),
        size=n_parcels,
        p=[0.855, 0.11, 0.03, 0.005],
    )
    classes = parcel_class[parcels]
    from_parcel = np.ones(shape, dtype=bool)

    # Woodlots on rough ground, riparian forest and pasture along the river.
    rough = smooth_noise(rng, shape, 45) + 0.4 * smooth_noise(rng, shape, 8)
    woodlot = rough > quantiles(rough, [0.965])[0]
    bank, centre_at, along_n, transpose = _river(rng, shape, half_width=(2.5, 4.0))
    corridor = smooth_noise(rng, shape, 30)
    riparian = bank < 18 + 14 * corridor
    classes[riparian] = np.where(corridor[riparian] > -0.5, TREES, RANGELAND)
    classes[woodlot & ~riparian] = TREES
    from_parcel &= ~(riparian | woodlot)

    # A town and a village, mostly built with yards and parks.
    fine = smooth_noise(rng, shape, 2.5)
    for radius in (rng.uniform(0.068, 0.088) * core_side, rng.uniform(0.025, 0.035) * core_side):
        centre = (rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width)
        town = _blob(rng, shape, centre, (radius, radius * rng.uniform(0.7, 1.0)), rng.uniform(0, np.pi), 0.5)
        classes[town] = np.where(fine[town] > -0.55, BUILT, np.where(fine[town] > -1.2, TREES, RANGELAND))
        from_parcel &= ~town

    # Farmsteads: a yard of buildings ringed by a shelterbelt, about one per 1.5 km2.
    n_farms = rng.poisson(height * width / 15000)
    for _ in range(n_farms):
        side = int(rng.integers(5, 9))
        r, c = int(rng.integers(4, height - side - 4)), int(rng.integers(4, width - side - 4))
        belt = int(rng.integers(2, 4))
        classes[r - belt : r + side + belt, c - belt : c + side + belt] = TREES
        classes[r : r + side, c : c + side] = BUILT
        from_parcel[r - belt : r + side + belt, c - belt : c + side + belt] = False

    # A straight highway along the survey grid.
    if rng.random() < 0.5:
        r = int(rng.integers(height // 5, 4 * height // 5))
        classes[r : r + 3, :] = BUILT
        from_parcel[r : r + 3, :] = False
    else:
        c = int(rng.integers(width // 5, 4 * width // 5))
        classes[:, c : c + 3] = BUILT
        from_parcel[:, c : c + 3] = False

    # Water: the river, a reservoir on it and farm ponds.
    water = bank < 0
    row, col = centre_at(rng.uniform(0.25, 0.75) * along_n)
    length = rng.uniform(0.12, 0.16) * along_n
    water |= _blob(rng, shape, (row, col), (length, length * 0.3), np.pi / 2 if transpose else 0.0, 0.45)
    for _ in range(rng.poisson(height * width / 250_000) + 1):
        centre = (rng.uniform(0, height), rng.uniform(0, width))
        water |= _blob(rng, shape, centre, (rng.uniform(4, 9), rng.uniform(4, 9)), 0.0, 0.3)
    classes[water] = WATER

    # Marshes on the water's edge, sand bars and a gravel pit.
    wet = smooth_noise(rng, shape, 6)
    shore = dilate(water, 8) & ~water
    classes[shore & (wet > 0.2)] = FLOODED
    classes[shore & (wet < -1.9)] = BARE
    pit = (rng.uniform(0.15, 0.85) * height, rng.uniform(0.15, 0.85) * width)
    classes[_blob(rng, shape, pit, (12, 8), rng.uniform(0, np.pi), 0.4)] = BARE
    from_parcel &= ~(water | shore)

    elevation = rough  # no permanent snow here; seasonal snow uses its own field
    return classes, parcels, from_parcel, elevation


def _valley_landscape(rng: np.random.Generator, shape: tuple[int, int], core_margin: int) -> tuple[np.ndarray, ...]:
    """Foothill valley: a floor with irrigated fields, a town, a river and a reservoir; hills of oak
    woodland and grass; rocky ridges with a little permanent snow."""
    height, width = shape
    side = min(height, width) - 2 * core_margin  # relief and towns scale with the core, not the tile
    theta = rng.uniform(0, np.pi)
    centre_r, centre_c = rng.uniform(0.4, 0.6) * height, rng.uniform(0.4, 0.6) * width
    rows = np.arange(height, dtype=np.float32)[:, None] - np.float32(centre_r)
    cols = np.arange(width, dtype=np.float32)[None, :] - np.float32(centre_c)
    across = rows * np.float32(math.cos(theta)) - cols * np.float32(math.sin(theta))
    along = rows * np.float32(math.sin(theta)) + cols * np.float32(math.cos(theta))
    meander = np.zeros_like(along)
    for wavelength_m, amplitude_m in ((3000, 200), (1200, 70)):
        k = np.float32(2 * np.pi * LABEL_PIXEL_M / wavelength_m)
        meander += np.float32(amplitude_m / LABEL_PIXEL_M) * np.sin(k * along + np.float32(rng.uniform(0, 6.3)))
    elevation = np.abs(across) / (0.5 * side) + 0.35 * smooth_noise(rng, shape, 0.12 * side)
    elevation += 0.08 * smooth_noise(rng, shape, 0.03 * side)
    # Thresholds from the core (the tile margin holds the highest ground).
    m = core_margin
    core = elevation[m:-m, m:-m] if m > 0 else elevation
    floor_q, rock_q, snow_q = quantiles(core, [0.34, 0.992, 0.997])
    floor = elevation < floor_q

    # Hills: woodland where it is wetter (higher, noisier), grass and shrub elsewhere.
    classes = np.full(shape, RANGELAND, dtype=np.uint8)
    tree_score = smooth_noise(rng, shape, 25) + 0.5 * smooth_noise(rng, shape, 6) + 1.5 * elevation
    classes[~floor & (tree_score > quantiles(np.where(floor, -9.0, tree_score), [0.66])[0])] = TREES
    classes[elevation > rock_q] = BARE
    classes[elevation > snow_q] = SNOW

    # Floor: irregular fields, orchards and pastures.
    parcels = _voronoi(rng, shape, spacing=42, warp=4.0)
    n_parcels = int(parcels.max()) + 1
    parcel_class = rng.choice(
        np.array([CROPS, RANGELAND, TREES, BARE], dtype=np.uint8), size=n_parcels, p=[0.66, 0.2, 0.12, 0.02]
    )
    classes[floor] = parcel_class[parcels[floor]]
    from_parcel = floor.copy()

    def on_axis(along_shift: float, across_shift: float) -> tuple[float, float]:
        """(row, col) of a point given by its offsets along and across the valley axis."""
        return (
            centre_r + along_shift * math.sin(theta) + across_shift * math.cos(theta),
            centre_c + along_shift * math.cos(theta) - across_shift * math.sin(theta),
        )

    # Town and suburb on the floor at one end of the valley, the reservoir at the other; a highway.
    end = float(rng.choice([-1.0, 1.0]))
    fine = smooth_noise(rng, shape, 2.5)
    for radius, along_shift in ((0.1 * side, rng.uniform(0.0, 0.12)), (0.06 * side, rng.uniform(0.22, 0.3))):
        centre = on_axis(-end * along_shift * side, rng.uniform(-0.05, 0.05) * side)
        town = _blob(rng, shape, centre, (radius * 1.4, radius), theta, 0.55)
        classes[town] = np.where(fine[town] > -0.5, BUILT, np.where(fine[town] > -1.1, TREES, RANGELAND))
        from_parcel &= ~town
    road = np.abs(across - np.float32(rng.uniform(0.04, 0.1) * side) + 0.3 * meander) < 1.2
    classes[road] = BUILT
    from_parcel &= ~road

    # The river along the valley axis and a reservoir on it; marshes on the shore.
    bank = np.abs(across - meander) - np.float32(rng.uniform(3.0, 5.0))
    lake_centre = on_axis(end * rng.uniform(0.22, 0.3) * side, 0.0)
    lake = _blob(rng, shape, lake_centre, (0.17 * side, 0.07 * side), theta, 0.45)
    water = (bank < 0) | lake
    classes[water] = WATER
    wet = smooth_noise(rng, shape, 6)
    shore = dilate(water, 6) & ~water
    classes[shore & (wet > 0.3)] = FLOODED
    from_parcel &= ~(water | shore)
    return classes, parcels, from_parcel, elevation


def make_landscape(
    rng: np.random.Generator,
    shape: tuple[int, int],
    kind: str,
    core_margin: int = (TILE_MARGIN_PX - LABEL_MARGIN_PX) * SUB,
) -> Landscape:
    """Draw the latent 10 m class map of a tile and the behaviour of its surfaces through the year.

    Sizes of towns, lakes and relief follow the core (the tile less ``core_margin`` latent pixels on
    every side: by default the label window), and class shares are calibrated on it, so small demo
    regions keep a realistic class mix.
    """
    core_side = min(shape) - 2 * core_margin
    if core_side < 32:
        raise ValueError(f"tile {shape} is too small for a core margin of {core_margin} px")
    if kind == "agricultural":
        classes, parcels, from_parcel, elevation = _agricultural_landscape(rng, shape, core_side)
        emergence = (125, 165, 70, 95)  # corn/soy; winter cereals
        harvest = (245, 300, 175, 200)
        winter_share = 0.06
    elif kind == "valley":
        classes, parcels, from_parcel, elevation = _valley_landscape(rng, shape, core_margin)
        emergence = (80, 150, 20, 60)  # irrigated summer crops; winter grain
        harvest = (200, 290, 140, 170)
        winter_share = 0.25
    else:
        raise ValueError(f"unknown landscape {kind!r}; choose one of {list(LANDSCAPES)}")

    # Rare "clouds" labels: a few small blobs where the label model saw persistent cloud.
    for _ in range(max(1, round(3 * (core_side / 1632) ** 2))):
        centre = (rng.uniform(0.1, 0.9) * shape[0], rng.uniform(0.1, 0.9) * shape[1])
        classes[_blob(rng, shape, centre, (rng.uniform(3, 8), rng.uniform(3, 8)), 0.0, 0.3)] = CLOUDS

    # Fields vary in brightness as a whole (soil, cultivar, management); natural surfaces vary smoothly.
    n_parcels = int(parcels.max()) + 1
    winter = rng.random(n_parcels) < winter_share
    emergence_day = np.where(winter, rng.uniform(*emergence[2:], n_parcels), rng.uniform(*emergence[:2], n_parcels))
    harvest_day = np.where(winter, rng.uniform(*harvest[2:], n_parcels), rng.uniform(*harvest[:2], n_parcels))
    vigour = rng.uniform(0.55, 1.0, n_parcels)
    field_log = rng.normal(0.0, 0.12, (n_parcels, 1)) + rng.normal(0.0, 0.06, (n_parcels, 6))
    natural_common = 0.1 * smooth_noise(rng, shape, 25)
    texture = 0.04 * smooth_noise(rng, shape, 1.5)
    brightness = np.empty((6, *shape), dtype=np.float32)
    for band in range(6):
        natural_log = natural_common + 0.06 * smooth_noise(rng, shape, 15)
        field_band = field_log[:, band].astype(np.float32)[parcels]
        brightness[band] = np.exp(np.where(from_parcel, field_band, natural_log) + texture)
    share = 0.5 * (1.0 + np.tanh(0.8 * (smooth_noise(rng, shape, 8) + 0.5 * smooth_noise(rng, shape, 1.5))))
    low, high = np.zeros(256, dtype=np.float32), np.zeros(256, dtype=np.float32)
    for name, (_, lo, hi) in CLASS_MIXING.items():
        low[CODE[name]], high[CODE[name]] = lo, hi
    mixing = (low[classes] + (high[classes] - low[classes]) * share).astype(np.float32)
    return Landscape(
        kind=kind,
        classes=np.ascontiguousarray(classes, dtype=np.uint8),
        parcels=parcels,
        elevation=elevation.astype(np.float32),
        emergence=emergence_day.astype(np.float32),
        harvest=harvest_day.astype(np.float32),
        vigour=vigour.astype(np.float32),
        mixing=mixing,
        brightness=brightness,
    )


def _mixing_range(code: int) -> tuple[float, float]:
    """The (lo, hi) partner-cover fraction of an IO class (:data:`CLASS_MIXING`; (0, 0) if none)."""
    _, lo, hi = CLASS_MIXING.get(IO_CLASSES[code], ("", 0.0, 0.0))
    return lo, hi


def landscape_in_year(
    scene: Landscape, rng: np.random.Generator, years_after: int, core: tuple[slice, slice] | None = None
) -> Landscape:
    """The landscape ``years_after`` years after (negative: before) the year ``scene`` was drawn for.

    Later years: another :data:`CHANGE_SHARE_PER_YEAR` of the crop fields in ``core`` (the latent window
    whose fields count; default the whole tile) per year is built over, drawn among the fields within
    :data:`CHANGE_BUFFER_M` of built area (towns spreading, roads drawing houses). Earlier years: another
    such share, drawn among all crop fields, was still rangeland. ``rng`` must be a fresh generator of
    the region's (``child_rng(seed, region, "change")``): the order in which fields change is drawn
    from it, so every year sees the same order and change accumulates. ``scene`` is not modified;
    ``years_after == 0`` returns it unchanged.
    """
    if years_after == 0:
        return scene
    classes = scene.classes
    crop = classes == CROPS
    if core is not None:
        in_core = np.zeros(classes.shape, dtype=bool)
        in_core[core] = True
        crop &= in_core
    crop_fields = np.unique(scene.parcels[crop])
    near_built = dilate(classes == BUILT, max(round(CHANGE_BUFFER_M / LABEL_PIXEL_M), 1))
    growth_fields = np.unique(scene.parcels[crop & near_built])
    growth_order = rng.permutation(growth_fields)  # both drawn always: the order never depends on the year
    clearing_order = rng.permutation(crop_fields)
    count = math.ceil(CHANGE_SHARE_PER_YEAR * crop_fields.size * abs(years_after))
    changed, new_class = (growth_order[:count], BUILT) if years_after > 0 else (clearing_order[:count], RANGELAND)
    if changed.size == 0:
        return scene
    # All crop pixels of a changed field change (also those outside core: a field changes whole).
    mask = (classes == CROPS) & np.isin(scene.parcels, changed)
    new_classes = classes.copy()
    new_classes[mask] = new_class
    (old_lo, old_hi), (new_lo, new_hi) = _mixing_range(CROPS), _mixing_range(new_class)
    share = (scene.mixing[mask] - old_lo) / (old_hi - old_lo)  # the smooth share field behind the mix
    mixing = scene.mixing.copy()
    mixing[mask] = (new_lo + (new_hi - new_lo) * share).astype(np.float32)
    return dataclasses.replace(scene, classes=new_classes, mixing=mixing)


def labels_from_latent(rng: np.random.Generator, latent: np.ndarray) -> np.ndarray:
    """IO-like labels from the latent map: some edge pixels take a neighbour's class (the label model's
    uncertainty at boundaries) and a few pixels are nodata."""
    labels = latent.copy()
    padded = np.pad(latent, 1, mode="edge")
    neighbours = np.stack([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
    direction = rng.integers(0, 4, latent.shape)
    neighbour = np.take_along_axis(neighbours, direction[None], axis=0)[0]
    flip = (neighbour != latent) & (rng.random(latent.shape) < 0.3)
    labels[flip] = neighbour[flip]
    height, width = labels.shape
    for _ in range(2):  # small nodata gaps, like tile seams in the real product
        h, w = int(rng.integers(3, 12)), int(rng.integers(10, 60))
        r, c = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        labels[r : r + h, c : c + w] = IO_NODATA
    labels[rng.random(labels.shape) < 2e-4] = IO_NODATA
    return labels
