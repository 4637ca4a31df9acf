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

Output: :func:`save_item_collection` writes a GeoJSON FeatureCollection. Local hrefs inside the results tree
(``relative_to``: the demo catalog lives in ``results/demo``) are stored relative to the file, so a copied
or moved results tree reads its own files, never the original tree's; remote hrefs and local paths outside
the tree stay absolute. :func:`load_item_collection` reads it back with those hrefs resolved. The stored
items keep their links, but the download stage never follows them (it needs no STAC API).

Assets are *not* signed here: Planetary Computer SAS tokens expire, so :func:`lulc.access.sign_item` is called
at download time. NASA Earthdata credentials (``signing: earthdata``) are never put into URLs: they are
looked up with :func:`lulc.access.earthdata_credentials` and handed to GDAL by the download stage; they are
never logged or written. AOIs are parsed by :mod:`lulc.aoi`.

Network behaviour of a STAC API source: before any request, :func:`lulc.access.check_reachable` resolves and connects
to the host within a few seconds, so an offline run of a real-data config stops at once with a clear
message (static catalogs and the demo never run this check). Searches page through every result page
(``page_size`` items per request), and transient HTTP failures (connection errors, 429, 5xx) are retried
:data:`HTTP_RETRIES` times with exponential backoff before the search fails with a message naming the URL.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import shapely
import shapely.affinity
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from lulc.access import check_reachable, check_signing, is_local_path
from lulc.aoi import AOI
from lulc.hls import COLLECTION_SENSOR
from lulc.io import atomic_path

__all__ = [
    "CLOUD_FILTERS",
    "DEFAULT_MAX_ITEMS",
    "DEFAULT_PAGE_SIZE",
    "SearchError",
    "item_interval",
    "load_item_collection",
    "matches",
    "save_item_collection",
    "search_items",
]

#: The config schema's default for ``max_items``.
DEFAULT_MAX_ITEMS = 2000
#: The config schema's default for ``page_size`` (items per API request; pystac-client follows ``next``).
DEFAULT_PAGE_SIZE = 100
#: Values of ``stac.*.cloud_filter``: ``api`` sends the cloud limit to APIs that conform to the STAC Query
#: extension (and filters locally as well); ``local`` never sends it and filters the returned items.
CLOUD_FILTERS: tuple[str, ...] = ("api", "local")


#: HTTP behaviour of STAC API searches: retries of transient failures (connection errors and these
#: statuses) with exponential backoff (urllib3: no wait before the first retry, then
#: ``HTTP_BACKOFF_S * 2 ** (retry - 1)`` seconds, i.e. 2, 4, 8, 16 s; ``Retry-After`` wins where sent),
#: and (connect, read) timeouts in seconds.
HTTP_RETRIES = 5
HTTP_BACKOFF_S = 1.0
HTTP_RETRY_STATUSES: tuple[int, ...] = (429, 500, 502, 503, 504)
HTTP_TIMEOUT_S: tuple[float, float] = (10.0, 120.0)


class SearchError(ValueError):
    """A search that cannot give a usable result: nothing found, or too many items (an unreachable source is a
    :class:`lulc.access.SourceUnreachableError`)."""


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


# ------------------------------------------------------------------------------------------- output


def save_item_collection(
    items: pystac.ItemCollection, path: Path, relative_to: str | os.PathLike[str] | None = None
) -> None:
    """Write ``items`` as a GeoJSON FeatureCollection, atomically (:func:`lulc.io.atomic_path`).

    Every href is made absolute first (:func:`_with_absolute_hrefs`). With ``relative_to`` (the workflow
    passes its ``results`` folder), local asset and link hrefs that lie inside that folder are then
    written relative to the folder of ``path``, and such an item's ``self`` link (a local path in the
    same tree) is left out: a copied or moved results tree then reads its own files (the demo catalog
    lives in ``results/demo``), never the original tree's. Remote hrefs (http(s), s3, ...) and local
    paths outside ``relative_to`` stay absolute. Read the file back with :func:`load_item_collection`,
    which resolves relative hrefs against the file.

    A crash never leaves a half-written file that Snakemake would take for a finished output.
    """
    path = Path(path)
    tree = Path(relative_to).resolve() if relative_to is not None else None
    folder = path.parent.resolve()
    features = []
    for item in items:
        document = _with_absolute_hrefs(item).to_dict(include_self_link=True, transform_hrefs=False)
        if tree is not None:
            _relative_local_hrefs(document, tree, folder)
        features.append(document)
    document = {"type": "FeatureCollection", "features": features}
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1)
        handle.write("\n")


def _relative_local_hrefs(feature: dict[str, Any], tree: Path, folder: Path) -> None:
    """Rewrite, in place, the local hrefs of an item document that lie inside ``tree`` relative to
    ``folder``; drop its ``self`` link when that is such a path (a relative self link means nothing)."""

    def relative(href: str) -> str | None:
        if not is_local_path(href) or not os.path.isabs(href):
            return None
        target = Path(href).resolve()
        if not target.is_relative_to(tree):
            return None
        return Path(os.path.relpath(target, folder)).as_posix()

    for asset in (feature.get("assets") or {}).values():
        rewritten = relative(str(asset.get("href", "")))
        if rewritten is not None:
            asset["href"] = rewritten
    links = []
    for link in feature.get("links") or []:
        rewritten = relative(str(link.get("href", "")))
        if rewritten is not None:
            if link.get("rel") == "self":
                continue
            link = {**link, "href": rewritten}
        links.append(link)
    feature["links"] = links


def load_item_collection(path: str | os.PathLike[str]) -> pystac.ItemCollection:
    """Read an ItemCollection written by :func:`save_item_collection`, with every relative local href
    (asset or link) resolved against the file's folder, or against the item's own absolute ``self`` link
    where it has one (STAC's rule). Nothing is fetched: the items' links are never followed.
    """
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    if not isinstance(document, dict) or not isinstance(document.get("features"), list):
        raise ValueError(f"{path}: not a GeoJSON FeatureCollection of STAC items (no 'features' list)")
    folder = path.parent.resolve()
    features = []
    for feature in document["features"]:
        feature = copy.deepcopy(feature)
        self_href = next(
            (
                str(link.get("href"))
                for link in feature.get("links") or []
                if link.get("rel") == "self" and _is_absolute(str(link.get("href", "")))
            ),
            None,
        )
        for entry in [*(feature.get("assets") or {}).values(), *(feature.get("links") or [])]:
            href = str(entry.get("href", ""))
            if href and not _is_absolute(href):
                if self_href is not None:
                    entry["href"] = pystac.utils.make_absolute_href(href, self_href)
                else:
                    entry["href"] = os.path.normpath(folder / href)
        features.append(feature)
    return pystac.ItemCollection.from_dict({**document, "features": features}, preserve_dict=False)
