"""Rendering of demo HLS granules: the acquisition plan of a region and year (dates, sensors, sun, how cloudy
each date is meant to be), the class spectra of a date, and the 30 m bands and Fmask of one acquisition.

Apart from the landscape because it is what happens per date: the landscape is drawn once per region, and
every acquisition renders it with its own generator.

Each 30 m HLS pixel is the mean of its 3 x 3 sub-pixels' class spectra (mixed pixels at edges), with
crop phenology and vigour per field (green in the growing season, bare soil otherwise), seasonal trees,
rangeland and snow, a varying share of a partner cover in every class
(:data:`lulc.demo.landscape.CLASS_MIXING`: open woodland, shrubby pasture, marsh with open water, leafy
towns), per-field and smoothly varying brightness, per-pixel noise, a small S30/L30 gain difference, cloud
blobs with shadows cast away from the sun, adjacent rings, thin cirrus, and an Fmask with HLS bit
semantics. ``eo:cloud_cover`` is computed from that Fmask the way NASA does (:func:`lulc.hls.cloud_coverage`).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

from lulc.demo.arrays import block_mean, dilate, quantiles, smooth_noise, smoothstep
from lulc.demo.geometry import HLS_PIXEL_M, SUB, TILE_MARGIN_PX, RegionGrid
from lulc.demo.landscape import (
    BARE,
    BUILT,
    CLASS_MIXING,
    CLOUDS,
    CODE,
    CROPS,
    FLOODED,
    RANGELAND,
    SNOW,
    TREES,
    WATER,
    Landscape,
)
from lulc.hls import FMASK_BITS, FMASK_NODATA, REFLECTANCE_NODATA

#: Heavily clouded dates get at least this much cloud + shadow (so a max_cloud_cover of 80 drops them).
CLOUDY_MIN_COVER = 88.0
#: Other dates get at most this much cloud + shadow.
MODERATE_MAX_COVER = 38.0
#: Reflectance values are clipped to this range before they become int16.
REFLECTANCE_RANGE = (-100, 16000)
#: Typical surface reflectance x 10000 in :data:`lulc.hls.PRITHVI_BANDS` order (BRIEF.md, section 3).
CLASS_REFLECTANCE: dict[str, tuple[float, ...]] = {
    "water": (500, 600, 400, 200, 100, 50),
    "trees": (300, 500, 300, 3000, 1500, 700),
    "crops_green": (400, 700, 500, 3500, 2200, 1200),
    "crops_bare": (900, 1200, 1500, 2200, 2800, 2300),
    "rangeland": (500, 800, 900, 2500, 2600, 1700),
    "flooded_vegetation": (300, 500, 400, 1800, 800, 400),
    "built_area": (1100, 1200, 1300, 2000, 2300, 2100),
    "bare_ground": (1400, 1800, 2200, 2800, 3400, 2900),
    "snow_ice": (8500, 8300, 8000, 7000, 1000, 800),
    "cloud": (5200, 5100, 5000, 5300, 3700, 2600),
}
#: Systematic per-band gain of each sensor (L30 differs from S30 by 1.5-3 %, as after HLS harmonisation).
SENSOR_GAIN: dict[str, tuple[float, ...]] = {
    "S30": (1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
    "L30": (1.025, 1.015, 0.985, 0.975, 1.02, 1.03),
}
#: Shadow darkening per band (diffuse sky light keeps the visible bands brighter than NIR / SWIR).
_SHADOW_FACTOR = np.array([0.55, 0.5, 0.45, 0.35, 0.3, 0.3], dtype=np.float32)

_PLATFORMS = {"S30": ("sentinel-2a", "sentinel-2b"), "L30": ("landsat-8", "landsat-9")}
#: Local solar time of the overpass, hours (Sentinel-2 10:30, Landsat about 10:10).
_OVERPASS_HOUR = {"S30": 10.5, "L30": 10.17}


@dataclass(frozen=True)
class SyntheticGranule:
    """One HLS granule of a region: when, by which sensor, and how cloudy it is meant to be."""

    region: str
    index: int
    sensor: str
    platform: str
    datetime: dt.datetime
    cloudy: bool
    target_cover: float  # percent cloud + shadow
    swath_side: str | None  # "left" / "right": a nodata band along that edge, or None
    sun_elevation: float
    sun_azimuth: float
    southern: bool = False  # seasons are shifted by half a year south of the equator

    @property
    def doy(self) -> int:
        """Day of year (UTC)."""
        return self.datetime.timetuple().tm_yday

    @property
    def season_day(self) -> int:
        """The day of a northern-hemisphere year in the same season: drives phenology and snow."""
        return (self.doy + 182) % 365 + 1 if self.southern else self.doy


def _sun_position(lat: float, doy: int, local_hour: float) -> tuple[float, float]:
    """Approximate solar elevation and azimuth (degrees, azimuth clockwise from north)."""
    declination = math.radians(23.44) * math.sin(2 * math.pi * (284 + doy) / 365.0)
    hour_angle = math.radians(15.0 * (local_hour - 12.0))
    phi = math.radians(lat)
    sin_elev = math.sin(phi) * math.sin(declination) + math.cos(phi) * math.cos(declination) * math.cos(hour_angle)
    elevation = math.asin(max(min(sin_elev, 1.0), -1.0))
    azimuth = math.atan2(
        -math.sin(hour_angle), math.tan(declination) * math.cos(phi) - math.sin(phi) * math.cos(hour_angle)
    )
    return math.degrees(elevation), math.degrees(azimuth) % 360.0


def plan_acquisitions(
    rng: np.random.Generator, grid: RegionGrid, year: int, dates_per_sensor: int, cloudy_dates: int
) -> list[SyntheticGranule]:
    """Dates spread over the year, interleaved between S30 and L30 (never the same day), of which
    ``cloudy_dates`` are heavily clouded and a few have a swath edge in the tile margin."""
    lon, lat = grid.center
    days_in_year = 366 if (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)) else 365
    step = (days_in_year - 20) / dates_per_sensor
    jitter = min(6.0, step / 5)
    days: dict[str, list[int]] = {}
    for sensor, shift in (("S30", 0.0), ("L30", step / 2)):
        days[sensor] = [
            int(np.clip(round(10 + (i + 0.5) * step + shift + rng.uniform(-jitter, jitter)), 2, days_in_year - 2))
            for i in range(dates_per_sensor)
        ]
    taken = set(days["S30"])
    for i, day in enumerate(days["L30"]):
        while day in taken:  # the next free day, wrapping to the start of the year
            day = day + 1 if day < days_in_year - 1 else 2
        days["L30"][i] = day
        taken.add(day)
    n_dates = 2 * dates_per_sensor
    cloudy = set(int(i) for i in rng.choice(n_dates, size=cloudy_dates, replace=False))
    swath = rng.random(n_dates) < 0.35
    if not swath.any():
        swath[int(rng.integers(n_dates))] = True
    plan = []
    for index in range(n_dates):
        sensor = "S30" if index < dates_per_sensor else "L30"
        day = days[sensor][index % dates_per_sensor]
        local_hour = _OVERPASS_HOUR[sensor] + rng.uniform(-0.1, 0.1)
        utc_seconds = round((local_hour - lon / 15.0) * 3600)
        when = dt.datetime(year, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=day - 1, seconds=utc_seconds)
        elevation, azimuth = _sun_position(lat, day, local_hour)
        is_cloudy = index in cloudy
        target = (
            rng.uniform(CLOUDY_MIN_COVER + 2, 97.0)
            if is_cloudy
            else (MODERATE_MAX_COVER - 4) * rng.uniform(0.0, 1.0) ** 2  # skewed clear, like most real dates
        )
        plan.append(
            SyntheticGranule(
                region=grid.name,
                index=index,
                sensor=sensor,
                platform=str(rng.choice(_PLATFORMS[sensor])),
                datetime=when,
                cloudy=is_cloudy,
                target_cover=float(target),
                swath_side=(("left", "right")[int(rng.integers(2))] if swath[index] else None),
                sun_elevation=round(elevation, 4),
                sun_azimuth=round(azimuth, 4),
                southern=lat < 0,
            )
        )
    return sorted(plan, key=lambda a: (a.datetime, a.sensor))


def _class_tables(doy: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-IO-code reflectance on one date: ``base[code] + greenness * green_delta[code]`` (x 10000).

    Crops move between bare soil and green canopy with their field's greenness; deciduous trees lose
    some NIR in winter; rangeland browns in summer (strongly in a Mediterranean valley); flooded
    vegetation greens in summer. Snow pixels get their rock here; snow is mixed in separately.
    """
    spectra = {name: np.array(values, dtype=np.float32) for name, values in CLASS_REFLECTANCE.items()}
    summer = 0.5 * (1.0 + math.cos(2 * math.pi * (doy - 200) / 365.0))  # 1 mid-July, 0 mid-January
    winter = 1.0 - summer
    base = np.zeros((256, 6), dtype=np.float32)
    delta = np.zeros((256, 6), dtype=np.float32)
    base[WATER] = spectra["water"]
    leaf_loss = 0.22 if kind == "agricultural" else 0.08
    base[TREES] = spectra["trees"] * (1 + leaf_loss * winter * np.array([0.5, 0.3, 0.8, -1.0, 0.3, 0.5]))
    brown = (summer - 0.5) * (0.5 if kind == "agricultural" else 1.0)
    base[RANGELAND] = spectra["rangeland"] * (1 + brown * np.array([0.1, 0.05, 0.35, -0.3, 0.12, 0.2]))
    base[FLOODED] = spectra["flooded_vegetation"] * (1 + (summer - 0.5) * np.array([0, 0, -0.2, 0.3, 0, 0]))
    base[CROPS] = spectra["crops_bare"]
    delta[CROPS] = spectra["crops_green"] - spectra["crops_bare"]
    base[BUILT] = spectra["built_area"]
    base[BARE] = spectra["bare_ground"]
    base[SNOW] = spectra["bare_ground"] * 0.9
    base[CLOUDS] = 0.55 * spectra["cloud"] + 0.45 * spectra["rangeland"]
    return base, delta


def _snow_weight(scene: Landscape, doy: int, rng: np.random.Generator) -> np.ndarray | None:
    """Snow share of every latent pixel on a date: permanent snow (melting back in late summer) and
    seasonal snow on high ground (valley) or open fields in deep winter (agricultural)."""
    summer = 0.5 * (1.0 + math.cos(2 * math.pi * (doy - 200) / 365.0))
    weight: np.ndarray | None = None
    snow_class = scene.classes == SNOW
    if snow_class.any():
        melt = 0.55 * float(smoothstep((summer - 0.6) / 0.3))
        weight = snow_class.astype(np.float32) * np.float32(1.0 - melt)
    cover = np.zeros(256, dtype=np.float32)  # how much of each class a snowfall covers
    cover[[CROPS, RANGELAND, BARE, FLOODED, SNOW]] = 1.0
    cover[TREES], cover[BUILT], cover[CLOUDS] = 0.35, 0.45, 0.0
    seasonal: np.ndarray | None = None
    if scene.kind == "valley":
        extent = 0.12 * float(smoothstep((1.0 - summer - 0.55) / 0.4))
        if extent > 0.002:
            seasonal = scene.elevation > quantiles(scene.elevation, [1.0 - extent])[0]
    elif doy <= 40 or doy >= 350:  # deep winter: snow on part of the open fields
        drift = smooth_noise(rng, scene.classes.shape, 40)
        seasonal = drift > 0.3
    if seasonal is not None:
        seasonal_weight = seasonal * cover[scene.classes]
        weight = seasonal_weight if weight is None else np.maximum(weight, seasonal_weight)
    return weight


def _cloud_masks(
    rng: np.random.Generator, acq: SyntheticGranule, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cloud opacity, cloud, shadow and adjacent masks on the 30 m grid with cloud + shadow covering
    about ``acq.target_cover`` percent of the valid pixels. Shadows are the clouds cast away from the
    sun by a cloud-base height (clouds just outside the tile cast shadows into it); adjacent pixels
    ring both."""
    shape = valid.shape
    height, width = shape
    cloud_base_m = rng.uniform(800, 2000)
    reach_m = min(cloud_base_m / math.tan(math.radians(max(acq.sun_elevation, 15.0))), 3000.0)
    azimuth = math.radians(acq.sun_azimuth)
    shift_r = round(math.cos(azimuth) * reach_m / HLS_PIXEL_M)  # shadows fall away from the sun
    shift_c = round(-math.sin(azimuth) * reach_m / HLS_PIXEL_M)
    pad = max(abs(shift_r), abs(shift_c)) + 1
    padded = (height + 2 * pad, width + 2 * pad)
    field_ext = smooth_noise(rng, padded, rng.uniform(12, 24)) + 0.25 * smooth_noise(rng, padded, 2.5)
    field = field_ext[pad : pad + height, pad : pad + width]
    ordered = np.sort(field[valid])
    target = acq.target_cover / 100.0

    def masks(cloud_share: float) -> tuple[np.ndarray, np.ndarray, float]:
        if cloud_share <= 0:
            threshold = float(field_ext.max()) + 1.0
        else:
            threshold = float(ordered[min(int((1.0 - cloud_share) * ordered.size), ordered.size - 1)])
        cloud_ext = field_ext > threshold
        cloud = cloud_ext[pad : pad + height, pad : pad + width]
        cast = cloud_ext[pad - shift_r : pad - shift_r + height, pad - shift_c : pad - shift_c + width]
        shadow = cast & ~cloud
        return cloud, shadow, threshold

    low, high = 0.0, target
    cloud, shadow, threshold = masks(0.0)
    if target >= 0.005:
        for _ in range(14):  # bisection on the cloud share so that cloud + shadow hits the target
            mid = 0.5 * (low + high)
            cloud, shadow, threshold = masks(mid)
            cover = float((cloud | shadow)[valid].mean())
            if cover < target:
                low = mid
            else:
                high = mid
        cloud, shadow, threshold = masks(high)
    opacity = np.clip(0.35 + (field - threshold) / 0.5, 0.35, 1.0).astype(np.float32) * cloud
    adjacent = dilate(cloud | shadow, 2) & ~(cloud | shadow)
    return opacity, cloud, shadow, adjacent


def render(
    scene: Landscape, acq: SyntheticGranule, rng: np.random.Generator, water_share: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bands (6, H, W) int16 and Fmask (H, W) uint8 of one acquisition on the 30 m tile grid."""
    classes = scene.classes
    day = acq.season_day
    base, delta = _class_tables(day, scene.kind)
    green = scene.vigour * np.clip(
        smoothstep((day - scene.emergence) / 45.0) * (1.0 - smoothstep((day - scene.harvest) / 25.0)),
        0.0,
        1.0,
    ).astype(np.float32)
    greenness = green[scene.parcels]
    partner_delta = np.zeros_like(base)  # the partner cover's spectrum minus the class's own
    for name, (partner, _, _) in CLASS_MIXING.items():
        partner_spectrum = base[CODE[partner]] + (0.5 * delta[CROPS] if partner == "crops" else 0.0)
        partner_delta[CODE[name]] = partner_spectrum - base[CODE[name]]
    snow = _snow_weight(scene, day, rng)
    snow_spectrum = np.array(CLASS_REFLECTANCE["snow_ice"], dtype=np.float32) * np.float32(rng.uniform(0.92, 1.05))
    shape30 = (classes.shape[0] // SUB, classes.shape[1] // SUB)
    surface = np.empty((6, *shape30), dtype=np.float32)
    for band in range(6):
        values = base[:, band][classes] + delta[:, band][classes] * greenness
        values += scene.mixing * partner_delta[:, band][classes]
        values *= scene.brightness[band]
        if snow is not None:
            values += (snow_spectrum[band] - values) * snow
        surface[band] = block_mean(values)
    snow_share = block_mean(snow) if snow is not None else np.zeros(shape30, dtype=np.float32)

    # Atmosphere and sensor: a smooth illumination field, per-pixel noise, the sensor's gains.
    illumination = 1.0 + 0.03 * smooth_noise(rng, shape30, shape30[0] / 4)
    surface *= illumination[None]
    surface *= 1.0 + 0.04 * rng.standard_normal(surface.shape, dtype=np.float32)
    surface += 12.0 * rng.standard_normal(surface.shape, dtype=np.float32)
    surface *= np.array(SENSOR_GAIN[acq.sensor], dtype=np.float32)[:, None, None]

    # Swath edge: a slanted nodata band inside the tile margin.
    height, width = shape30
    valid = np.ones(shape30, dtype=bool)
    if acq.swath_side is not None:
        top, bottom = rng.uniform(4, TILE_MARGIN_PX - 4, 2)
        edge = (top + (bottom - top) * np.arange(height) / max(height - 1, 1))[:, None]
        cols = np.arange(width)[None, :]
        valid = ~(cols < edge) if acq.swath_side == "left" else ~(cols >= width - edge)

    # Clouds, shadows, adjacent haze and thin cirrus.
    opacity, cloud, shadow, adjacent = _cloud_masks(rng, acq, valid)
    cloud_spectrum = np.array(CLASS_REFLECTANCE["cloud"], dtype=np.float32) * np.float32(rng.uniform(0.95, 1.3))
    surface = np.where(shadow[None], surface * _SHADOW_FACTOR[:, None, None], surface)
    cirrus = np.zeros(shape30, dtype=bool)
    if rng.random() < 0.3:
        cirrus_field = smooth_noise(rng, shape30, 15)
        cirrus = cirrus_field > quantiles(cirrus_field, [rng.uniform(0.85, 0.95)])[0]
        surface += (cirrus * np.float32(0.06))[None] * (cloud_spectrum[:, None, None] - surface)
    haze = opacity + adjacent * np.float32(0.06)
    surface += haze[None] * (cloud_spectrum[:, None, None] - surface)

    bands = np.clip(np.rint(surface), *REFLECTANCE_RANGE).astype(np.int16)
    bands[:, ~valid] = REFLECTANCE_NODATA

    aerosol = np.where(smooth_noise(rng, shape30, 20) > 0.5, 2, 1).astype(np.uint8)
    fmask = (aerosol << 6).astype(np.uint8)
    clear_surface = ~cloud
    flags = {
        "cirrus": cirrus,
        "cloud": cloud,
        "adjacent": adjacent,
        "shadow": shadow,
        "snow": (snow_share > 0.5) & clear_surface,
        "water": (water_share > 0.5) & clear_surface,
    }
    for name, mask in flags.items():
        fmask |= (mask.astype(np.uint8) << FMASK_BITS[name]).astype(np.uint8)
    fmask[~valid] = FMASK_NODATA
    return bands, fmask
