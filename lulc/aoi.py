"""Where and when: areas of interest (``aois.<name>``) and the season windows of ``download.season_windows``.

Parsed once at start-up (:func:`lulc.config.load_config`), so a bad bbox, vector file or date stops the run
before any job, and again by the stages that need them. Light on imports (geopandas only for file AOIs), and
free of the stages' modules, so that the configuration can use it without an import cycle.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

_AOI_KEYS = frozenset({"bbox", "file", "year", "start", "end"})


@dataclass(frozen=True)
class AOI:
    """An area of interest: a WGS84 bbox ``(min_lon, min_lat, max_lon, max_lat)`` and inclusive dates."""

    name: str
    bbox: tuple[float, float, float, float]
    start: date
    end: date

    @classmethod
    def from_config(cls, name: str, cfg: Mapping[str, Any], base_dir: Path | None = None) -> AOI:
        """Build an AOI from its ``aois.<name>`` config entry.

        ``bbox`` or ``file`` (GeoJSON / GeoPackage, relative paths resolved against ``base_dir``, else the
        working directory) gives the extent; ``year`` or ``start``/``end`` (``YYYY-MM-DD``) the dates.
        Bad input raises a ValueError naming the AOI and the offending key.
        """
        where = f"aois.{name}"
        if not isinstance(cfg, Mapping):
            raise ValueError(f"{where}: expected a mapping (bbox or file, year or start/end), got {cfg!r}")
        unknown = set(cfg) - _AOI_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_AOI_KEYS)}")
        has_bbox, has_file = cfg.get("bbox") is not None, cfg.get("file") is not None
        if has_bbox == has_file:
            got = "both" if has_bbox else "neither"
            raise ValueError(f"{where}: give exactly one of 'bbox' or 'file' (got {got})")
        if has_bbox:
            bbox = _parse_bbox(cfg["bbox"], f"{where}.bbox")
        else:
            bbox = _bbox_from_file(cfg["file"], f"{where}.file", base_dir)
        start, end = _parse_dates(cfg, where)
        return cls(name=name, bbox=bbox, start=start, end=end)

    def datetime_range(self) -> str:
        """The STAC ``datetime`` parameter, e.g. ``2023-01-01T00:00:00Z/2023-12-31T23:59:59Z``."""
        start, end = self.time_window()
        return f"{_iso_z(start)}/{_iso_z(end)}"

    def time_window(self) -> tuple[datetime, datetime]:
        """The AOI's first and last instant (UTC), the same bounds :meth:`datetime_range` sends to an API."""
        return (
            datetime.combine(self.start, time(0, 0, 0), tzinfo=UTC),
            datetime.combine(self.end, time(23, 59, 59), tzinfo=UTC),
        )


def _parse_bbox(value: Any, key: str) -> tuple[float, float, float, float]:
    """Validate ``[min_lon, min_lat, max_lon, max_lat]`` in WGS84 degrees."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"{key}: expected [min_lon, min_lat, max_lon, max_lat], got {value!r}")
    values = list(value)
    if len(values) != 4 or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
    ):
        raise ValueError(f"{key}: expected four finite numbers [min_lon, min_lat, max_lon, max_lat]: {value}")
    min_lon, min_lat, max_lon, max_lat = (float(v) for v in values)
    for lon in (min_lon, max_lon):
        if not -180.0 <= lon <= 180.0:
            raise ValueError(f"{key}: longitude {lon} is outside [-180, 180] (bbox {values})")
    for lat in (min_lat, max_lat):
        if not -90.0 <= lat <= 90.0:
            raise ValueError(f"{key}: latitude {lat} is outside [-90, 90] (bbox {values})")
    if min_lon >= max_lon:
        raise ValueError(
            f"{key}: min_lon {min_lon} must be less than max_lon {max_lon} (bbox {values}); "
            "split an AOI that crosses the antimeridian into two AOIs"
        )
    if min_lat >= max_lat:
        raise ValueError(f"{key}: min_lat {min_lat} must be less than max_lat {max_lat} (bbox {values})")
    return (min_lon, min_lat, max_lon, max_lat)


def _bbox_from_file(value: Any, key: str, base_dir: Path | None) -> tuple[float, float, float, float]:
    """Bounds of all features of a vector file, in WGS84."""
    import geopandas as gpd  # heavy import, only needed for file AOIs

    path = Path(value)
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if not path.is_file():
        raise ValueError(f"{key}: vector file {str(path)!r} not found")
    try:
        frame = gpd.read_file(path)
    except Exception as exc:  # pyogrio raises several types; all mean "not a readable vector file"
        raise ValueError(f"{key}: cannot read {str(path)!r} as a vector file: {exc}") from exc
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
    if frame.empty:
        raise ValueError(f"{key}: {str(path)!r} has no non-empty geometries")
    if frame.crs is None:
        raise ValueError(f"{key}: {str(path)!r} has no CRS; write it with one (e.g. EPSG:4326)")
    bounds = frame.to_crs(4326).total_bounds
    return _parse_bbox([float(b) for b in bounds], f"{key} ({path.name} bounds)")


def _parse_dates(cfg: Mapping[str, Any], where: str) -> tuple[date, date]:
    """``year`` -> Jan 1 .. Dec 31; or ``start``/``end`` (``YYYY-MM-DD`` strings or YAML dates)."""
    has_year = cfg.get("year") is not None
    has_range = cfg.get("start") is not None or cfg.get("end") is not None
    if has_year and has_range:
        raise ValueError(f"{where}: give either 'year' or 'start'/'end', not both")
    if has_year:
        year = cfg["year"]
        if isinstance(year, bool) or not isinstance(year, int) or not 1 <= year <= 9999:
            raise ValueError(f"{where}.year: expected a year such as 2023, got {year!r}")
        return date(year, 1, 1), date(year, 12, 31)
    if not has_range:
        raise ValueError(f"{where}: give 'year' or both 'start' and 'end' (YYYY-MM-DD)")
    for key in ("start", "end"):
        if cfg.get(key) is None:
            raise ValueError(f"{where}.{key}: missing; 'start' and 'end' go together (YYYY-MM-DD)")
    start = _parse_date(cfg["start"], f"{where}.start")
    end = _parse_date(cfg["end"], f"{where}.end")
    if start > end:
        raise ValueError(f"{where}: start {start.isoformat()} is after end {end.isoformat()}")
    return start, end


def _parse_date(value: Any, key: str) -> date:
    """A ``YYYY-MM-DD`` string, or the date YAML already parsed from one."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{key}: expected a date YYYY-MM-DD, got {value!r}")


def _iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_season_windows(value: Any, frames: int, key: str = "download.season_windows") -> list[tuple[str, str]]:
    """Validate ``download.season_windows``: ``frames`` pairs ``[start, end]`` of ``MM-DD`` days (inclusive;
    ``start`` after ``end`` wraps over New Year, e.g. ``[12-01, 02-28]``). ``None`` gives ``[]`` (equal
    windows). Raises a ValueError naming the key."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise ValueError(f"{key}: expected a list of [start, end] pairs of MM-DD days, got {value!r}")
    windows = []
    for index, pair in enumerate(value):
        where = f"{key}[{index}]"
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Iterable) or len(list(pair)) != 2:
            raise ValueError(f"{where}: expected [start, end] (MM-DD), got {pair!r}")
        windows.append(tuple(_parse_month_day(day, where) for day in pair))
    if len(windows) != int(frames):
        raise ValueError(
            f"{key}: {len(windows)} window(s) given but download.frames = {frames}; give one window per frame"
        )
    return windows  # type: ignore[return-value]


def _parse_month_day(value: Any, where: str) -> str:
    text = value.strftime("%m-%d") if isinstance(value, date) else str(value).strip()
    try:
        datetime.strptime(f"2000-{text}", "%Y-%m-%d")  # a leap year: 02-29 is a valid day
    except ValueError:
        raise ValueError(f"{where}: {value!r} is not a day of the year written MM-DD (e.g. 03-15)") from None
    if len(text) != 5:
        raise ValueError(f"{where}: {value!r} is not a day of the year written MM-DD (e.g. 03-15)")
    return text


__all__ = ["AOI", "parse_season_windows"]
