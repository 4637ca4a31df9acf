"""STAC search: one query semantics for a static catalog (the demo, or any catalog.json) and a STAC API.

The ``search`` rule calls :func:`search_items` once per AOI and query (``stac.imagery``, ``stac.labels``)
and writes the result with :func:`save_item_collection`. Both backends go through the same local filter
(:func:`matches`), so a static catalog and an API return the same items for the same query:

- ``collections``: the item's collection id is one of them;
- space: the item's geometry (or, without one, its bbox) intersects the AOI bbox. Items that cross the
  antimeridian are handled: IO LULC tiles such as ``60W-2023`` carry the bbox ``[-180, s, 180, n]`` and a
  ring whose longitudes jump from -180 to 180, which a planar test reads as a belt around the globe; such
  geometries get 360 added to their negative longitudes and are compared with the AOI and its copies
  shifted by +-360 degrees;
- time: an item's interval (``start_datetime``/``end_datetime`` when both are present, else the instant
  ``datetime``) overlaps the AOI's ``[start 00:00:00Z, end 23:59:59Z]``. Bounds are inclusive, except that
  an interval that merely *ends* at the AOI's first instant does not count: IO LULC's 2023 map runs until
  ``2024-01-01T00:00:00Z`` and must not be picked for a 2024 AOI;
- clouds: ``eo:cloud_cover <= max_cloud_cover`` when that is set; items without ``eo:cloud_cover`` (labels)
  are kept;
- order: by datetime (or start_datetime), then id, so outputs are deterministic;
- ``max_items``: more matching items than that is an error, never a silently truncated result.

Assets are *not* signed here: Planetary Computer SAS tokens expire, so :func:`sign_item` is called at
download time. NASA Earthdata credentials (``signing: earthdata``) are never put into URLs: they are
looked up with :func:`earthdata_credentials` (``EARTHDATA_TOKEN`` or a netrc entry for
``urs.earthdata.nasa.gov``) and handed to GDAL by the download stage; they are never logged or written.

Network behaviour of a STAC API source: before any request, :func:`check_reachable` resolves and connects
to the host within a few seconds, so an offline run of a real-data config stops at once with a clear
message (static catalogs and the demo never run this check). Searches page through every result page
(``page_size`` items per request), and transient HTTP failures (connection errors, 429, 5xx) are retried
:data:`HTTP_RETRIES` times with exponential backoff before the search fails with a message naming the URL.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import netrc
import os
import socket
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import shapely
import shapely.affinity
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from lulc.hls import COLLECTION_SENSOR, FMASK_ASSET, PRITHVI_BANDS, SENSOR_ASSETS, sensor_of
from lulc.io import atomic_path

__all__ = [
    "AOI",
    "DEFAULT_MAX_ITEMS",
    "DEFAULT_PAGE_SIZE",
    "EARTHDATA_HOST",
    "EARTHDATA_TOKEN_ENV",
    "SIGNING_METHODS",
    "CredentialsError",
    "EarthdataCredentials",
    "SearchError",
    "SourceUnreachableError",
    "check_download_config",
    "check_reachable",
    "check_signing",
    "earthdata_credentials",
    "item_epsg",
    "item_interval",
    "matches",
    "parse_season_windows",
    "redact_url",
    "save_item_collection",
    "search_items",
    "sensor_assets",
    "sign_item",
]

#: The config schema's default for ``max_items``.
DEFAULT_MAX_ITEMS = 2000
#: The config schema's default for ``page_size`` (items per API request; pystac-client follows ``next``).
DEFAULT_PAGE_SIZE = 100
#: Values of ``stac.*.signing``.
SIGNING_METHODS: tuple[str, ...] = ("none", "planetary_computer", "earthdata")
#: Values of ``stac.*.cloud_filter``: ``api`` sends the cloud limit to APIs that conform to the STAC Query
#: extension (and filters locally as well); ``local`` never sends it and filters the returned items.
CLOUD_FILTERS: tuple[str, ...] = ("api", "local")

#: NASA Earthdata Login: the netrc machine and the environment variable holding a bearer token.
EARTHDATA_HOST = "urs.earthdata.nasa.gov"
EARTHDATA_TOKEN_ENV = "EARTHDATA_TOKEN"

#: HTTP behaviour of STAC API searches: retries of transient failures (connection errors and these
#: statuses) with exponential backoff (urllib3: no wait before the first retry, then
#: ``HTTP_BACKOFF_S * 2 ** (retry - 1)`` seconds, i.e. 2, 4, 8, 16 s; ``Retry-After`` wins where sent),
#: and (connect, read) timeouts in seconds.
HTTP_RETRIES = 5
HTTP_BACKOFF_S = 1.0
HTTP_RETRY_STATUSES: tuple[int, ...] = (429, 500, 502, 503, 504)
HTTP_TIMEOUT_S: tuple[float, float] = (10.0, 120.0)
#: Seconds allowed to resolve and connect to a source's host before a run is declared offline.
REACHABILITY_TIMEOUT_S = 5.0

_AOI_KEYS = frozenset({"bbox", "file", "year", "start", "end"})


class SearchError(ValueError):
    """A search that cannot give a usable result: nothing found, too many items, or an unreachable source."""


class SourceUnreachableError(SearchError):
    """An http(s) source whose host cannot be resolved or connected to: no network, or a wrong URL."""


class CredentialsError(ValueError):
    """Credentials a signing method needs are missing or unreadable (the message never shows a secret)."""


# --------------------------------------------------------------------------------------------- AOIs


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


# ----------------------------------------------------------------------------------- item filters


def item_interval(item: pystac.Item) -> tuple[datetime, datetime]:
    """The time an item covers: ``start_datetime``/``end_datetime`` when both are set, else ``datetime``."""
    props = item.properties
    if props.get("start_datetime") and props.get("end_datetime"):
        start = _as_utc(pystac.utils.str_to_datetime(props["start_datetime"]))
        end = _as_utc(pystac.utils.str_to_datetime(props["end_datetime"]))
        return start, end
    if item.datetime is not None:
        moment = _as_utc(item.datetime)
        return moment, moment
    raise ValueError(f"STAC item {item.id!r} has neither 'datetime' nor 'start_datetime'/'end_datetime'")


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _time_overlaps(item: pystac.Item, window: tuple[datetime, datetime]) -> bool:
    """Inclusive overlap, except an interval that only touches the window at its own end."""
    first, last = window
    start, end = item_interval(item)
    if start > last or end < first:
        return False
    return not (end == first and start < end)


def _item_footprint(item: pystac.Item) -> BaseGeometry | None:
    """The item's geometry (antimeridian-unwrapped), else its bbox (split when it crosses 180), or None."""
    if item.geometry:
        return _unwrap_antimeridian(shape(item.geometry))
    if item.bbox and len(item.bbox) >= 4:
        west, south, east, north = (item.bbox[0], item.bbox[1], item.bbox[-2], item.bbox[-1])
        if west > east:  # STAC's way of writing a bbox that crosses the antimeridian
            return shapely.union(box(west, south, 180.0, north), box(-180.0, south, east, north))
        return box(west, south, east, north)  # [-180, s, 180, n] honestly means every longitude
    return None


def _unwrap_antimeridian(geometry: BaseGeometry) -> BaseGeometry:
    """A valid geometry; negative longitudes shifted by +360 when that makes a > 180 degree wide one narrow.

    A tile crossing the antimeridian is stored either as one ring whose longitudes jump between -180 and
    180 (IO LULC ``60W-2023``) or as parts on both sides (``60V-2023``); both span about 360 degrees in a
    planar view although no tile is that wide. Shifted, the parts join up around longitude 180 (the seam's
    degenerate slivers are removed by ``make_valid``). Genuinely wide geometries stay as they are: shifting
    does not make them narrower than 180 degrees, or leaves no area.
    """
    west, _, east, _ = geometry.bounds
    if east - west > 180.0:
        # shift the raw coordinates first: repairing the planar reading of such a ring gives a belt
        shifted = shapely.make_valid(shapely.transform(geometry, _shift_negative_longitudes))
        shifted_west, _, shifted_east, _ = shifted.bounds
        if shifted.area > 0 and shifted_east - shifted_west < 180.0:
            return shifted
    return shapely.make_valid(geometry)


def _shift_negative_longitudes(xy: np.ndarray) -> np.ndarray:
    """Coordinates with 360 added to every negative longitude (for :func:`shapely.transform`)."""
    return xy + np.where(xy[:, :1] < 0, [[360.0, 0.0]], [[0.0, 0.0]])


def _intersects_aoi(item: pystac.Item, aoi_bbox: tuple[float, float, float, float]) -> bool:
    """Whether the item's footprint intersects the AOI, comparing longitudes modulo 360."""
    footprint = _item_footprint(item)
    if footprint is None or footprint.is_empty:
        return False
    aoi_box = box(*aoi_bbox)
    shifted = (shapely.affinity.translate(aoi_box, xoff=offset) for offset in (0.0, 360.0, -360.0))
    return any(footprint.intersects(candidate) for candidate in shifted)


def _cloud_ok(item: pystac.Item, max_cloud_cover: float | None) -> bool:
    if max_cloud_cover is None:
        return True
    cover = item.properties.get("eo:cloud_cover")
    return cover is None or float(cover) <= float(max_cloud_cover)


def matches(item: pystac.Item, aoi: AOI, query: Mapping[str, Any]) -> bool:
    """Whether ``item`` passes the collections, bbox, datetime and cloud filters of ``query`` for ``aoi``."""
    collections = list(query.get("collections") or [])
    if collections and item.collection_id not in collections:
        return False
    if not _cloud_ok(item, query.get("max_cloud_cover")):
        return False
    if not _time_overlaps(item, aoi.time_window()):
        return False
    return _intersects_aoi(item, aoi.bbox)


def _sort_key(item: pystac.Item) -> tuple[datetime, str]:
    return item_interval(item)[0], item.id


# ---------------------------------------------------------------------------------------- search


def search_items(
    aoi: AOI,
    query: Mapping[str, Any],
    catalog_path_for_demo: Path | None = None,
    config_key: str | None = None,
) -> pystac.ItemCollection:
    """Items matching ``query`` (a config ``stac.imagery`` / ``stac.labels`` dict) over ``aoi``, sorted.

    ``query["source"]`` is ``"demo"`` (use ``catalog_path_for_demo``), a path to a static ``catalog.json``
    (or its folder), or the http(s) URL of a STAC API. Raises :class:`SearchError` when nothing matches,
    when more than ``max_items`` items match (no silently truncated result), or when an API is unreachable
    (:class:`SourceUnreachableError`, raised before any request). ``config_key`` names the query in
    messages (``stac.imagery``); by default it is inferred from the collections (HLS ones are imagery).
    A query with ``signing: earthdata`` fails at once, before any network call, when no Earthdata
    credentials are configured (:class:`CredentialsError`).
    """
    source = str(query.get("source") or "").strip()
    collections = list(query.get("collections") or [])
    key = config_key or _config_key(collections)
    if not source:
        raise ValueError(f"AOI {aoi.name!r}: the STAC query {key} has no 'source' ({dict(query)!r})")
    if not collections:
        raise ValueError(f"AOI {aoi.name!r}: the STAC query {key} for {source!r} lists no 'collections'")
    max_items = int(query.get("max_items") or DEFAULT_MAX_ITEMS)
    check_signing(str(query.get("signing") or "none"), f"{key}.signing")
    if _is_url(source):
        check_reachable(source, f"{key}.source")
        found = _search_api(source, aoi, query, max_items)
        where = f"STAC API {source}"
    else:
        catalog = _resolve_catalog_path(source, catalog_path_for_demo)
        found = _search_static(catalog, aoi, query)
        where = f"static catalog {catalog}"
    found = sorted((item for item in found if matches(item, aoi, query)), key=_sort_key)
    if len(found) > max_items:
        raise SearchError(
            f"AOI {aoi.name!r}: more than max_items={max_items} items match in {where} "
            f"({_describe_query(aoi, query)}); narrow the AOI, dates or cloud cover, or raise max_items"
        )
    if not found:
        raise SearchError(f"AOI {aoi.name!r}: no STAC items in {where} for {_describe_query(aoi, query)}")
    return pystac.ItemCollection(found, clone_items=False)


def _config_key(collections: Sequence[str]) -> str:
    """``stac.imagery`` for a query of HLS collections, else ``stac.labels`` (for messages only)."""
    if collections and all(c in COLLECTION_SENSOR for c in collections):
        return "stac.imagery"
    return "stac.labels"


def _is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def _describe_query(aoi: AOI, query: Mapping[str, Any]) -> str:
    return (
        f"collections={list(query.get('collections') or [])}, bbox={list(aoi.bbox)}, "
        f"datetime={aoi.datetime_range()}, max_cloud_cover={query.get('max_cloud_cover')}"
    )


def _resolve_catalog_path(source: str, catalog_path_for_demo: Path | None) -> Path:
    """The catalog.json a non-URL source points to."""
    if source == "demo":
        if catalog_path_for_demo is None:
            raise ValueError("STAC source 'demo' needs the demo catalog path (catalog_path_for_demo)")
        path = Path(catalog_path_for_demo)
    else:
        path = Path(source).expanduser()
    if path.is_dir():
        path = path / "catalog.json"
    if not path.is_file():
        hint = " (run the demo rule first)" if source == "demo" else ""
        raise ValueError(f"STAC source {source!r}: static catalog {str(path)!r} not found{hint}")
    return path.resolve()


def _search_static(catalog_path: Path, aoi: AOI, query: Mapping[str, Any]) -> list[pystac.Item]:
    """Walk a static catalog in-process (pystac-client needs an API) and keep the matching items."""
    catalog = pystac.Catalog.from_file(str(catalog_path))
    found = []
    for item in catalog.get_items(recursive=True):
        if matches(item, aoi, query):
            found.append(_with_absolute_hrefs(item))
    return found


def _with_absolute_hrefs(item: pystac.Item) -> pystac.Item:
    """A copy of ``item`` whose asset and link hrefs are absolute, so it stays valid outside its catalog.

    Only relative hrefs are resolved (against the item's self href): an absolute local path stays a path
    even when the item came from an API (pystac would turn ``/data/x.tif`` into ``http://api/data/x.tif``).
    """
    clone = item.clone()
    self_href = item.get_self_href()
    if self_href is None:
        return clone
    clone.set_self_href(self_href)
    for asset in clone.assets.values():
        if not _is_absolute(asset.href):
            asset.href = pystac.utils.make_absolute_href(asset.href, self_href)
    for link in clone.links:
        if isinstance(link.target, str) and _is_absolute(link.target):
            continue
        absolute = link.get_absolute_href()
        if absolute is not None:
            link.target = absolute
    return clone


def _is_absolute(href: str) -> bool:
    """A URL with a scheme (http, s3, ...) or an absolute local path."""
    return "://" in href or os.path.isabs(href)


def _stac_api_io() -> Any:
    """A pystac-client transport with timeouts and retries of transient failures, exponential backoff."""
    from pystac_client.stac_api_io import StacApiIO
    from urllib3 import Retry

    retry = Retry(
        total=HTTP_RETRIES,
        connect=HTTP_RETRIES,
        read=HTTP_RETRIES,
        status=HTTP_RETRIES,
        backoff_factor=HTTP_BACKOFF_S,
        status_forcelist=HTTP_RETRY_STATUSES,
        allowed_methods=None,  # POST /search is a read: retry it like GET
        respect_retry_after_header=True,
        raise_on_status=True,
    )
    return StacApiIO(timeout=HTTP_TIMEOUT_S, max_retries=retry)


def _search_api(url: str, aoi: AOI, query: Mapping[str, Any], max_items: int) -> list[pystac.Item]:
    """Search a STAC API with pystac-client, which follows every ``next`` page (``page_size`` per page).

    The cloud limit is sent as ``query={"eo:cloud_cover": {"lte": x}}`` when the API conforms to the Query
    extension and ``cloud_filter`` is ``api``; the local filter applies it in every case. An API drops items
    without that property then, so leave ``max_cloud_cover`` null for label collections.
    """
    import pystac_client
    import requests
    from pystac_client.conformance import ConformanceClasses
    from pystac_client.warnings import DoesNotConformTo

    retries = f"after {HTTP_RETRIES} retries with exponential backoff"
    try:
        client = pystac_client.Client.open(url, stac_io=_stac_api_io())
    except (requests.RequestException, pystac_client.exceptions.APIError, OSError) as exc:
        raise SearchError(f"AOI {aoi.name!r}: cannot open the STAC API {url} ({retries}): {exc}") from exc
    kwargs: dict[str, Any] = {
        "collections": list(query["collections"]),
        "bbox": list(aoi.bbox),
        "datetime": aoi.datetime_range(),
        "limit": int(query.get("page_size") or DEFAULT_PAGE_SIZE),
        # one more than allowed, so that a truncated result is detected instead of silently used
        "max_items": max_items + 1,
    }
    cloud = query.get("max_cloud_cover")
    if cloud is not None and query.get("cloud_filter", "api") == "api":
        if client.conforms_to(ConformanceClasses.QUERY):
            kwargs["query"] = {"eo:cloud_cover": {"lte": cloud}}
    try:
        items = list(client.search(**kwargs).item_collection())
    except DoesNotConformTo as exc:
        raise SearchError(
            f"AOI {aoi.name!r}: {url} is not a STAC API with item search ({exc}); "
            "for a static catalog, give the path of a local catalog.json as source"
        ) from exc
    except (requests.RequestException, pystac_client.exceptions.APIError, OSError) as exc:
        raise SearchError(
            f"AOI {aoi.name!r}: the search at {_search_url(client, url)} failed {retries} "
            f"({_describe_query(aoi, query)}): {exc}"
        ) from exc
    if len(items) > max_items:
        raise SearchError(
            f"AOI {aoi.name!r}: the STAC API {url} returned more than max_items={max_items} items "
            f"({_describe_query(aoi, query)}); narrow the AOI, dates or cloud cover, or raise max_items"
        )
    return items


def _search_url(client: Any, url: str) -> str:
    """The API's item-search endpoint (from its ``search`` link), else the API URL."""
    try:
        link = client.get_single_link("search")
    except Exception:  # a client without links: name the API itself
        link = None
    return str(link.href) if link is not None else url


# ------------------------------------------------------------------------------ network checks


def check_reachable(url: str, what: str, timeout: float | None = None) -> None:
    """Raise :class:`SourceUnreachableError` unless the host of ``url`` resolves and accepts a TCP
    connection within ``timeout`` seconds (default :data:`REACHABILITY_TIMEOUT_S`).

    Behind an http(s) proxy (``HTTPS_PROXY`` and friends, honouring ``NO_PROXY``) the proxy is checked
    instead, since that is where the connection goes. Sends no request: it only opens and closes a socket.
    """
    timeout = REACHABILITY_TIMEOUT_S if timeout is None else float(timeout)
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme.lower() not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{what}: {url!r} is not an http(s) URL")
    host, port = parsed.hostname, parsed.port or (443 if parsed.scheme.lower() == "https" else 80)
    proxy = _proxy_for(parsed)
    target = f"{host}:{port}"
    if proxy is not None:
        host, port = proxy
        target = f"proxy {host}:{port}"
    try:
        _connect(host, port, timeout)
    except OSError as exc:
        reason = str(exc) or exc.__class__.__name__
        raise SourceUnreachableError(
            f"{what} {redact_url(url)} is not reachable ({target}: {reason}): real-data configs need network; "
            "the default demo config runs offline"
        ) from None


def _proxy_for(parsed: urllib.parse.SplitResult) -> tuple[str, int] | None:
    """(host, port) of the proxy the URL would go through, or None."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parsed.scheme.lower())
    if not proxy or urllib.request.proxy_bypass(parsed.hostname or ""):
        return None
    proxy_parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if not proxy_parsed.hostname:
        return None
    return proxy_parsed.hostname, proxy_parsed.port or (443 if proxy_parsed.scheme == "https" else 80)


def _connect(host: str, port: int, timeout: float) -> None:
    """Resolve (with a deadline: getaddrinfo has none) and connect; raise OSError on failure."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        addresses = pool.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM).result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        raise OSError(f"could not resolve {host} within {timeout:g} s") from None
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve host {host!r}: {exc.strerror or exc}") from None
    finally:
        pool.shutdown(wait=False)
    last: OSError | None = None
    for family, kind, proto, _, address in addresses:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(timeout)
                sock.connect(address)
            return
        except OSError as exc:
            last = exc
    raise last or OSError(f"no address for {host}")


def redact_url(url: str) -> str:
    """``url`` without its query string and user info (SAS tokens, signatures, passwords)."""
    try:
        parsed = urllib.parse.urlsplit(url)
    except ValueError:
        return url.split("?", 1)[0]
    netloc = parsed.hostname or ""
    if parsed.port:
        netloc = f"{netloc}:{parsed.port}"
    query = "<redacted>" if parsed.query else ""
    return urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path, query, ""))


# -------------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class EarthdataCredentials:
    """Where NASA Earthdata credentials come from; the secret itself never appears in its repr.

    ``kind`` is ``"token"`` (``EARTHDATA_TOKEN``: sent as ``Authorization: Bearer``) or ``"netrc"`` (a
    netrc file with a ``machine urs.earthdata.nasa.gov`` entry: the login/redirect flow with cookies).
    """

    kind: str
    netrc_path: Path | None = None
    token: str = field(default="", repr=False, compare=False)

    def describe(self) -> str:
        """A loggable description (never the secret)."""
        if self.kind == "token":
            return f"bearer token from ${EARTHDATA_TOKEN_ENV}"
        return f"netrc entry for {EARTHDATA_HOST} in {self.netrc_path}"


def _netrc_path(environ: Mapping[str, str]) -> Path:
    if environ.get("NETRC"):
        return Path(environ["NETRC"]).expanduser()
    return Path(environ.get("HOME") or Path.home()).expanduser() / ".netrc"


def earthdata_credentials(environ: Mapping[str, str] | None = None) -> EarthdataCredentials:
    """NASA Earthdata credentials: ``$EARTHDATA_TOKEN`` if set, else the ``urs.earthdata.nasa.gov`` entry
    of ``$NETRC`` or ``~/.netrc``. Raises :class:`CredentialsError` (naming what to set, never a value)."""
    environ = os.environ if environ is None else environ
    token = (environ.get(EARTHDATA_TOKEN_ENV) or "").strip()
    if token:
        if any(ch in token for ch in "\r\n"):
            raise CredentialsError(f"${EARTHDATA_TOKEN_ENV} spans several lines: it must be one bearer token")
        return EarthdataCredentials("token", token=token)
    path = _netrc_path(environ)
    hint = (
        f"set {EARTHDATA_TOKEN_ENV} to an Earthdata Login bearer token (https://urs.earthdata.nasa.gov, "
        f"'Generate Token'), or add 'machine {EARTHDATA_HOST} login <user> password <password>' to {path} "
        "(chmod 600)"
    )
    if not path.is_file():
        raise CredentialsError(
            f"no NASA Earthdata credentials: ${EARTHDATA_TOKEN_ENV} is not set and {path} does not exist; {hint}"
        )
    try:
        entry = netrc.netrc(str(path)).authenticators(EARTHDATA_HOST)
    except netrc.NetrcParseError as exc:  # its message may quote the file: show the line only
        raise CredentialsError(f"cannot parse {path} (line {exc.lineno}); {hint}") from None
    except OSError as exc:
        raise CredentialsError(f"cannot read {path} ({exc.strerror}); {hint}") from None
    if entry is None or not entry[0] or not entry[2]:
        raise CredentialsError(
            f"no NASA Earthdata credentials: {path} has no complete entry for {EARTHDATA_HOST}; {hint}"
        )
    return EarthdataCredentials("netrc", netrc_path=path.resolve())


def check_signing(signing: str, key: str = "stac.imagery.signing") -> None:
    """Fail early (no network) when ``signing`` is unknown or its credentials are missing."""
    if signing not in SIGNING_METHODS:
        raise ValueError(f"{key}: unknown signing method {signing!r}; known: {list(SIGNING_METHODS)}")
    if signing == "earthdata":
        try:
            earthdata_credentials()
        except CredentialsError as exc:
            raise CredentialsError(f"{key} is 'earthdata' but {exc}") from None


# ----------------------------------------------------------------------------- season windows


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


def check_download_config(download: Mapping[str, Any]) -> None:
    """Start-up check of the ``download`` section beyond the schema: one season window per frame.
    Raises :class:`lulc.config.ConfigError` naming the key."""
    from lulc.config import ConfigError

    try:
        parse_season_windows(download.get("season_windows"), int(download.get("frames", 3)))
    except ValueError as error:
        raise ConfigError(f"invalid configuration: {error}") from None


def _parse_month_day(value: Any, where: str) -> str:
    text = value.strftime("%m-%d") if isinstance(value, date) else str(value).strip()
    try:
        datetime.strptime(f"2000-{text}", "%Y-%m-%d")  # a leap year: 02-29 is a valid day
    except ValueError:
        raise ValueError(f"{where}: {value!r} is not a day of the year written MM-DD (e.g. 03-15)") from None
    if len(text) != 5:
        raise ValueError(f"{where}: {value!r} is not a day of the year written MM-DD (e.g. 03-15)")
    return text


def save_item_collection(items: pystac.ItemCollection, path: Path) -> None:
    """Write ``items`` as a GeoJSON FeatureCollection with absolute hrefs, atomically (:func:`lulc.io.atomic_path`).

    A crash never leaves a half-written file that Snakemake would take for a finished output.
    """
    features = []
    for item in items:
        features.append(_with_absolute_hrefs(item).to_dict(include_self_link=True, transform_hrefs=False))
    document = {"type": "FeatureCollection", "features": features}
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1)
        handle.write("\n")


# ------------------------------------------------------------------------------------ item helpers


def sign_item(item: pystac.Item, signing: str) -> pystac.Item:
    """A copy of ``item`` ready to download: ``"none"`` leaves hrefs as they are, ``"planetary_computer"``
    adds SAS tokens (they expire, so call this right before downloading), ``"earthdata"`` leaves hrefs as
    they are (the credentials go to GDAL, never into a URL: see :func:`lulc.download.gdal_env`)."""
    if signing in ("none", "earthdata"):
        return item.clone()
    if signing == "planetary_computer":
        import planetary_computer

        return planetary_computer.sign(item.clone())
    raise ValueError(f"unknown signing method {signing!r} for item {item.id!r}; known: {SIGNING_METHODS}")


def sensor_assets(item: pystac.Item) -> dict[str, str]:
    """Asset keys of an HLS item: the six Prithvi bands (in :data:`PRITHVI_BANDS` order) and ``"Fmask"``.

    Works for Planetary Computer (``hls2-s30``/``hls2-l30``) and NASA CMR (``HLSS30_2.0``/``HLSL30_2.0``)
    items alike; raises a ValueError naming the item and the key when an asset is missing.
    """
    sensor = sensor_of(item.collection_id, item.id)
    keys = dict(zip(PRITHVI_BANDS, SENSOR_ASSETS[sensor], strict=True))
    keys[FMASK_ASSET] = FMASK_ASSET
    for band, key in keys.items():
        if key not in item.assets:
            raise ValueError(
                f"STAC item {item.id!r} ({sensor}, collection {item.collection_id!r}) has no asset {key!r} "
                f"for {band}; its assets: {sorted(item.assets)}"
            )
    return keys


def item_epsg(item: pystac.Item) -> int | None:
    """The item's EPSG code from ``proj:epsg`` or ``proj:code`` (``"EPSG:32613"``), else None.

    CMR items carry neither: downstream code then reads the CRS from the asset itself.
    """
    epsg = item.properties.get("proj:epsg")
    if epsg is not None:
        return int(epsg)
    code = item.properties.get("proj:code")
    if isinstance(code, str) and code.upper().startswith("EPSG:"):
        try:
            return int(code.split(":", 1)[1])
        except ValueError:
            return None
    return None
