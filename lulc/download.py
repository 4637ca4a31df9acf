"""Download stage: HLS items + label items -> one T x 6-band image, a cloud mask and a label raster per AOI.

Everything lands on one grid per AOI (CRS, resolution, bounds snapped to the resolution) through stackstac,
so imagery from several tiles, both sensors and labels on their own 10 m grid all line up pixel for pixel.
Work is done in dask chunks of ``block_size`` pixels, so a full 3660 x 3660 HLS tile never sits in memory
whole; the GeoTIFFs are written window by window and converted to COGs at the end.

Outputs (``write_aoi_stack``):

* ``image.tif``: int16 reflectance x 10000, nodata -9999, ``T * 6`` bands in the time-major order of
  :mod:`lulc.hls` (band descriptions ``t0_BLUE ... t{T-1}_SWIR_2``); Fmask-flagged pixels are nodata.
* ``mask.tif``: uint8, ``T`` bands, 0 clear, 1 masked by the Fmask flags, 255 no data.
* ``label.tif``: uint8 contiguous class indices (:mod:`lulc.classes`), 255 = ignore, IO colours embedded.
* ``frames.json``: every candidate date with its clear fraction, the chosen frames and the dropped ones.
* ``dates.csv``: the same per-date report as a table (date, sensor, clear fraction, status, items).

``write_imagery_stack`` writes the same files but ``label.tif`` (:data:`IMAGERY_OUTPUT_NAMES`) on a grid it is
given (a tile of a map region without labels), never touching a label source; dates of which no item overlaps
that grid are not candidates there (a region's imagery holds tiles that miss some of its map tiles).

Real data (Planetary Computer, NASA CMR-STAC):

* Credentials are checked before anything is downloaded (:func:`lulc.access.check_signing`). Planetary
  Computer items are signed (SAS tokens in the URLs, redacted from every message); NASA Earthdata
  credentials go to GDAL only (:func:`gdal_env`: a bearer-token header file or the netrc file, in a private
  temporary folder that is removed afterwards), only for the imagery source, and are never logged.
* Items without ``proj:epsg`` (NASA CMR items; pystac also migrates ``proj:epsg`` to ``proj:code`` when it
  reads an item) get it on an in-memory copy from ``proj:code`` or, failing that, from the header of one
  asset per MGRS tile (:func:`with_projection`), so stackstac knows each asset's exact footprint.
* GDAL retries transient HTTP failures (429, 5xx, connection errors) :data:`GDAL_HTTP_MAX_RETRY` times with
  exponential backoff; a read that still fails raises :class:`DownloadError` naming the URL. A failure
  removes every output of the stage, so a rerun never trusts a partial result; ``frames.json`` and
  ``dates.csv`` are written last.
* The per-date clear fraction is computed from Fmask alone (one asset per date instead of seven).

Inputs, and what is refused before or while reading them:

* Only the items' assets are used. Their links (``root``, ``self``, ``parent``, ``collection``) are dropped
  and stackstac gets plain dicts (:func:`_plain`): ``Item.to_dict()`` would otherwise fetch the STAC API's
  landing page once per item, and fail when the API is down although the asset hosts are up. The cached
  search results (read with :func:`lulc.search.load_item_collection`, which resolves the relative local
  hrefs it stores) and the asset hosts are all the stage needs.
* Before anything is read: every needed asset key exists; local asset files exist (a relative href, i.e.
  search results read without resolving them, is refused too); the label items' declared class tables
  (``file:values`` or ``classification:classes``, :func:`declared_label_codes`) hold only IO LULC v02 codes.
* Failures that are not the network (a multi-band asset where one band is expected, a damaged or truncated
  file) raise :class:`AssetContentError` naming the item, the asset key and the problem, without the
  retry wording of network errors. An HTTP 404 is an error, not nodata (stackstac's default).
* The label raster is written first; the IO codes of every label item's layer on the AOI grid are counted
  while it is written, and codes outside the 9 classes (IO's 10-class ``io-lulc`` Grass 3 and Scrub 6, say)
  raise :class:`LabelCodeError` naming the codes and the item instead of silently becoming "ignore".
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pystac
import rasterio
import stackstac
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from tqdm import tqdm

from lulc import classes, hls
from lulc.access import check_reachable, check_signing, earthdata_credentials, is_local_path, redact_url, sign_item
from lulc.aoi import AOI, parse_season_windows
from lulc.hls import FMASK_ASSET, PRITHVI_BANDS, SENSOR_ASSETS, sensor_of, utm_epsg
from lulc.io import atomic_path, copy_to_cog, write_json
from lulc.schema import section

log = logging.getLogger(__name__)

#: GDAL's retries of transient HTTP failures (429, 500, 502, 503, 504 and connection errors); GDAL waits
#: ``GDAL_HTTP_RETRY_DELAY`` seconds before the first retry and doubles the delay (with jitter) each time.
GDAL_HTTP_MAX_RETRY = 5
GDAL_HTTP_RETRY_DELAY_S = 1.0
#: Seconds: connecting, and a whole request.
GDAL_HTTP_CONNECT_TIMEOUT_S = 20
GDAL_HTTP_TIMEOUT_S = 300

#: Acquisitions whose clear fraction is computed together (their Fmask windows are read concurrently).
CLEAR_FRACTION_BATCH = 8

#: The files the download stage writes in its output folder (all removed when it fails).
OUTPUT_NAMES: tuple[str, ...] = ("image.tif", "mask.tif", "label.tif", "frames.json", "dates.csv")
#: The files :func:`write_imagery_stack` writes (no labels; all removed when it fails).
IMAGERY_OUTPUT_NAMES: tuple[str, ...] = ("image.tif", "mask.tif", "frames.json", "dates.csv")


#: The asset key of IO LULC label items.
LABEL_ASSET = "data"


class DownloadError(RuntimeError):
    """Reading an asset failed; the message names the item, the asset key and the URL or path, without
    secrets. Network failures say that GDAL retried them; other failures are :class:`AssetContentError`."""


class AssetContentError(DownloadError):
    """An asset that was reached but cannot be used: a multi-band file where one band is expected, a damaged
    or truncated file, a file that is not a raster. Retrying does not help."""


class LabelCodeError(ValueError):
    """Label items whose class codes are not the IO LULC v02 classes the workflow maps (:mod:`lulc.classes`)."""


class _NoOverlap(ValueError):
    """None of the HLS items of one acquisition overlaps the output grid (a ValueError, as it always was)."""


# --------------------------------------------------------------------------- GDAL environment


@contextlib.contextmanager
def gdal_env(signing: str) -> Iterator[stackstac.rio_env.LayeredEnv]:
    """The GDAL environment for reading one source's assets: stackstac's defaults, HTTP retries with
    backoff, timeouts and, for ``signing: earthdata``, the NASA Earthdata credentials.

    Earthdata credentials never enter an environment variable, a URL or a log: a bearer token is written
    to a header file (``GDAL_HTTP_HEADER_FILE``) and a netrc file is referenced by path
    (``GDAL_HTTP_NETRC_FILE``), with a cookie jar for the Earthdata Login redirects, all in a private
    temporary folder (mode 0700) that is removed when the block ends. Call it once per source, so the
    imagery credentials are never sent to the label host.

    Every source's environment sets the same keys (an empty header file, no netrc, its own cookie jar
    where it has no credentials): rasterio's nested environments restore the options a parent had but
    keep the ones only a child set, so a key left unset could carry another source's credentials along.
    """
    options: dict[str, Any] = {
        "GDAL_HTTP_MAX_RETRY": str(GDAL_HTTP_MAX_RETRY),
        "GDAL_HTTP_RETRY_DELAY": f"{GDAL_HTTP_RETRY_DELAY_S:g}",
        "GDAL_HTTP_CONNECTTIMEOUT": str(GDAL_HTTP_CONNECT_TIMEOUT_S),
        "GDAL_HTTP_TIMEOUT": str(GDAL_HTTP_TIMEOUT_S),
    }
    private = tempfile.mkdtemp(prefix="lulc-gdal-")
    try:
        header, cookies, no_netrc = (Path(private) / name for name in ("headers.txt", "cookies.txt", "netrc"))
        content = ""
        netrc_options = {"GDAL_HTTP_NETRC": "NO", "GDAL_HTTP_NETRC_FILE": str(no_netrc)}
        if signing == "earthdata":
            credentials = earthdata_credentials()
            if credentials.kind == "token":
                content = f"Authorization: Bearer {credentials.token}\n"
            else:
                netrc_options = {"GDAL_HTTP_NETRC": "YES", "GDAL_HTTP_NETRC_FILE": str(credentials.netrc_path)}
            log.info("NASA Earthdata credentials: %s", credentials.describe())
        for path, text in ((header, content), (no_netrc, "")):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(text)
        options.update(netrc_options)
        options.update(
            GDAL_HTTP_HEADER_FILE=str(header), GDAL_HTTP_COOKIEFILE=str(cookies), GDAL_HTTP_COOKIEJAR=str(cookies)
        )
        yield stackstac.DEFAULT_GDAL_ENV.updated(always=options)
    finally:
        _remove_private_folder(Path(private))


#: How long the private GDAL folder's removal keeps trying while reads still running close their handles.
_PRIVATE_REMOVAL_WAIT_S = 5.0


def _remove_private_folder(folder: Path) -> None:
    """Remove ``folder`` (credentials, cookie jar) even while reads that outlived a failure write to it.

    When one read fails, the others that dask already started still run; curl writes the cookie jar when
    they close their handles, so a single removal can meet a file that appeared after it listed the folder
    (``Directory not empty``). Retrying for a few seconds removes those too; a folder that still cannot be
    removed is logged, never allowed to hide the error that ended the block.
    """
    deadline = time.monotonic() + _PRIVATE_REMOVAL_WAIT_S
    while True:
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            return
        if time.monotonic() > deadline:
            log.warning("could not remove the private GDAL folder %s; remove it by hand", folder)
            return
        time.sleep(0.05)


_URL = re.compile(r"(?:/vsicurl/)?https?://[^\s'\"<>]+")


def _redact_text(text: str) -> str:
    """``text`` with every URL's query string (SAS tokens, signatures) redacted."""
    return _URL.sub(lambda match: redact_url(match.group(0).removeprefix("/vsicurl/")), text)


#: Words in a GDAL/curl error that mean the network (not the file) failed: these are what GDAL retries.
_NETWORK_ERROR = re.compile(
    r"HTTP response code|HTTP error|CURL error|curl|timed out|timeout|connection|could not resolve|"
    r"resolve host|SSL|TLS|recv failure|send failure|couldn't connect|network",
    re.IGNORECASE,
)
#: stackstac's refusal of a multi-band file.
_MULTI_BAND = re.compile(r"Assets must have exactly 1 band, but file .* has (\d+)")
#: rasterio's wrapper messages that only point at the real (chained) error.
_GENERIC = ("See previous exception for details",)


def _is_remote(href: str) -> bool:
    """Whether ``href`` is read over the network (http(s), or a GDAL network file system path)."""
    lowered = href.lower()
    return lowered.startswith(("http://", "https://", "/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls"))


@dataclass(frozen=True)
class _AssetRef:
    item: str
    key: str
    href: str

    def location(self) -> str:
        return redact_url(self.href) if _is_remote(self.href) else self.href


class _AssetIndex:
    """Which item and asset key an href in an error message belongs to (stackstac's errors name only the URL)."""

    def __init__(self, items: Iterable[pystac.Item] = ()) -> None:
        self._refs: dict[str, _AssetRef] = {}
        for item in items:
            for key, asset in item.assets.items():
                base = asset.href.split("?", 1)[0] if _is_remote(asset.href) else asset.href
                if base:
                    self._refs[base] = _AssetRef(item.id, key, asset.href)

    def find(self, text: str) -> _AssetRef | None:
        """The asset whose href (without its query string) occurs in ``text``; the longest match wins."""
        found = [(len(base), ref) for base, ref in self._refs.items() if base in text]
        return max(found, key=lambda pair: pair[0])[1] if found else None


def _error_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from (rasterio keeps GDAL's own messages there)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 12:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _problem(chain: Sequence[BaseException]) -> str:
    """What went wrong with an asset that was reached, in words, from an error chain (not a network error)."""
    messages = [str(e) for e in chain]
    for message in messages:
        bands = _MULTI_BAND.search(message)
        if bands:
            return (
                f"has {bands.group(1)} bands, but the download reads single-band assets (one band per STAC "
                "asset, as HLS and IO LULC publish them): point the item at a single-band file"
            )
    return f"cannot be read (a damaged, truncated or non-raster file; retrying does not help): {_details(chain)}"


def _details(chain: Sequence[BaseException]) -> str:
    """The messages of an error chain that say something (GDAL's own, rather than rasterio's wrappers)."""
    messages = [str(e) for e in chain]
    details: list[str] = []
    for message in messages[1:] or messages:
        if message and not any(generic in message for generic in _GENERIC) and message not in details:
            details.append(message)
    return "; ".join(details or messages[:1])


@contextlib.contextmanager
def _asset_errors(what: str, assets: _AssetIndex | None = None) -> Iterator[None]:
    """Turn a failed asset read into a :class:`DownloadError` naming the item, the asset key and the
    (redacted) URL or path, without the original traceback (it would print the signed URL).

    Network failures (HTTP statuses, curl errors, timeouts of a remote asset) are reported as what is left
    after GDAL's retries; anything else (a multi-band file, a damaged file) is an
    :class:`AssetContentError` that says what is wrong with the file.
    """
    try:
        yield
    except (RuntimeError, rasterio.errors.RasterioError) as exc:
        if isinstance(exc, DownloadError):
            raise
        chain = _error_chain(exc)
        text = "\n".join(str(e) for e in chain)
        ref = assets.find(text) if assets is not None else None
        urls = [_redact_text(u) for u in _URL.findall(text)]
        remote = _is_remote(ref.href) if ref is not None else bool(urls)
        network = remote and _NETWORK_ERROR.search(_URL.sub("", text)) is not None
        if ref is not None:
            where = f" asset {ref.key!r} of STAC item {ref.item!r} ({_redact_text(ref.location())})"
        else:
            where = f" {urls[0]}" if urls else ""
        if ref is None and not urls:  # not an asset read at all (writing the output, say): say what happened
            raise DownloadError(f"{what}: {_redact_text(_details(chain))}") from None
        if network:
            raise DownloadError(
                f"{what}: reading{where} failed (after up to {GDAL_HTTP_MAX_RETRY} retries with exponential "
                f"backoff for transient HTTP errors): {_redact_text(str(exc))}"
            ) from None
        raise AssetContentError(f"{what}:{where} {_redact_text(_problem(chain))}") from None


def _plain(item: pystac.Item) -> dict[str, Any]:
    """The item as the plain dict stackstac reads. ``Item.to_dict()`` with its default ``transform_hrefs``
    resolves the item's ``root`` link, i.e. fetches the STAC API's landing page once per item; this never
    follows a link (and the download's items carry none: :func:`_offline_item`)."""
    return item.to_dict(include_self_link=False, transform_hrefs=False)


def _offline_item(item: pystac.Item) -> pystac.Item:
    """A copy of ``item`` with its assets only: no ``root``/``self``/``parent``/``collection`` links, so no
    code path (pystac, stackstac, signing) can reach for the STAC API the item came from."""
    clone = item.clone()
    clone.clear_links()
    return clone


def _check_local_assets(items: Iterable[pystac.Item], keys: Iterable[str] | None, kind: str) -> None:
    """Refuse, before any download, assets that cannot be local files the stage may read: relative hrefs
    (search results read without resolving them) and local files that do not exist."""
    for item in items:
        for key in keys if keys is not None else sensor_assets(item).values():
            href = item.assets[key].href
            if not is_local_path(href):
                continue
            if not os.path.isabs(href):
                raise ValueError(
                    f"{kind}: asset {key!r} of STAC item {item.id!r} has the relative href {href!r}: read the "
                    "search results with lulc.search.load_item_collection, which resolves hrefs against the file"
                )
            if not os.path.isfile(href):
                raise FileNotFoundError(
                    f"{kind}: asset {key!r} of STAC item {item.id!r}: the local file {href} does not exist "
                    "(moved or deleted since the search? rerun the search rule)"
                )


# ------------------------------------------------------------------------------- projections


def _first_http_href(items: Sequence[pystac.Item]) -> str | None:
    """The first http(s) asset href of ``items`` (None for local files): the host the stage will read."""
    for item in items:
        for asset in item.assets.values():
            if asset.href.lower().startswith(("http://", "https://")):
                return asset.href
    return None


def _grid_key(item: pystac.Item) -> str:
    """Items that share a pixel grid: HLS items of one MGRS tile (``HLS.S30.T15TVG...`` -> ``T15TVG``)."""
    match = re.match(r"HLS\.(?:S30|L30)\.(T\d{2}[A-Z]{3})\.", item.id)
    return match.group(1) if match else item.id


def with_projection(
    items: Sequence[pystac.Item], env: stackstac.rio_env.LayeredEnv, asset_key: str | None = None
) -> list[pystac.Item]:
    """Copies of ``items`` that all carry ``proj:epsg`` (what stackstac reads).

    Taken from ``proj:epsg`` or ``proj:code``; where an item has neither (NASA CMR items), the CRS, transform
    and shape are read from the header of one of its assets (``asset_key``, default Fmask for HLS items,
    else the first asset), once per MGRS tile, within ``env`` (credentials, retries).
    """
    grids: dict[str, tuple[int, list[float], list[int]]] = {}
    out = []
    for item in items:
        item = item.clone()
        epsg = item_epsg(item)
        if epsg is None:
            key = _grid_key(item)
            if key not in grids:
                grids[key] = _read_asset_grid(item, env, asset_key)
            epsg, transform, shape = grids[key]
            item.properties.setdefault("proj:transform", transform)
            item.properties.setdefault("proj:shape", shape)
            log.info("item %s has no proj:epsg: EPSG:%d read from its asset header", item.id, epsg)
        item.properties["proj:epsg"] = int(epsg)
        out.append(item)
    return out


def _read_asset_grid(
    item: pystac.Item, env: stackstac.rio_env.LayeredEnv, asset_key: str | None
) -> tuple[int, list[float], list[int]]:
    if asset_key is None:
        asset_key = hls.FMASK_ASSET if hls.FMASK_ASSET in item.assets else next(iter(item.assets), None)
    if asset_key is None or asset_key not in item.assets:
        raise ValueError(f"STAC item {item.id!r} has no proj:epsg and no asset {asset_key!r} to read the CRS from")
    href = item.assets[asset_key].href
    with _asset_errors(f"reading the CRS of STAC item {item.id!r} (no proj:epsg)", _AssetIndex([item])), env.open:
        with rasterio.open(href) as src:
            crs, transform, shape = src.crs, src.transform, [src.height, src.width]
    epsg = crs.to_epsg() if crs is not None else None
    if epsg is None:
        raise ValueError(f"asset {asset_key!r} of STAC item {item.id!r} has no EPSG CRS ({crs}): cannot place it")
    return int(epsg), list(transform)[:6], shape


@dataclass(frozen=True)
class Grid:
    """The output pixel grid of one AOI: a north-up raster in ``crs`` with square pixels."""

    epsg: int
    resolution: float
    left: float
    top: float
    width: int
    height: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid CRS."""
        return (
            self.left,
            self.top - self.height * self.resolution,
            self.left + self.width * self.resolution,
            self.top,
        )

    @property
    def transform(self) -> rasterio.Affine:
        return from_origin(self.left, self.top, self.resolution, self.resolution)

    @property
    def crs(self) -> rasterio.crs.CRS:
        return rasterio.crs.CRS.from_epsg(self.epsg)


def aoi_grid(aoi: AOI, resolution: float, crs: str = "utm") -> Grid:
    """The grid of an AOI: its bbox projected to ``crs`` and snapped outward to ``resolution``.

    ``crs`` is ``"utm"`` (the UTM zone of the bbox centre) or ``"EPSG:<code>"``.
    """
    min_lon, min_lat, max_lon, max_lat = aoi.bbox
    if crs == "utm":
        epsg = utm_epsg((min_lon + max_lon) / 2.0, (min_lat + max_lat) / 2.0)
    elif crs.upper().startswith("EPSG:") and crs[5:].isdigit():
        epsg = int(crs[5:])
    else:
        raise ValueError(f"download.crs must be 'utm' or 'EPSG:<code>', got {crs!r}")
    left, bottom, right, top = transform_bounds("EPSG:4326", f"EPSG:{epsg}", *aoi.bbox, densify_pts=21)
    left = math.floor(left / resolution) * resolution
    bottom = math.floor(bottom / resolution) * resolution
    right = math.ceil(right / resolution) * resolution
    top = math.ceil(top / resolution) * resolution
    width = round((right - left) / resolution)
    height = round((top - bottom) / resolution)
    return Grid(epsg=epsg, resolution=resolution, left=left, top=top, width=width, height=height)


@dataclass
class Acquisition:
    """The HLS items of one sensor on one day over the AOI (several tiles are mosaicked)."""

    date: str
    sensor: str
    items: list[pystac.Item]
    clear_fraction: float = float("nan")

    @property
    def key(self) -> str:
        return f"{self.date}_{self.sensor}"


def group_acquisitions(items: Sequence[pystac.Item]) -> list[Acquisition]:
    """Group HLS items by (day, sensor), sorted by date then sensor."""
    groups: dict[tuple[str, str], list[pystac.Item]] = {}
    for item in items:
        if item.datetime is None:
            raise ValueError(f"HLS STAC item {item.id!r} has no datetime")
        sensor = hls.sensor_of(item.collection_id, item.id)
        groups.setdefault((item.datetime.strftime("%Y-%m-%d"), sensor), []).append(item)
    return [
        Acquisition(date, sensor, sorted(its, key=lambda i: i.id)) for (date, sensor), its in sorted(groups.items())
    ]


def _stack_acquisition(
    acq: Acquisition, grid: Grid, block_size: int, env: stackstac.rio_env.LayeredEnv | None = None
) -> da.Array:
    """A lazy (7, H, W) int16 array: the six Prithvi bands then Fmask, mosaicked over tiles.

    Band chunks are single assets, so computing Fmask alone reads only the Fmask assets."""
    layers = []
    for item in acq.items:
        assets = sensor_assets(item)
        keys = [assets[band] for band in hls.PRITHVI_BANDS] + [assets[hls.FMASK_ASSET]]
        stack = stackstac.stack(
            [_plain(item)],
            assets=keys,
            epsg=grid.epsg,
            resolution=grid.resolution,
            bounds=grid.bounds,
            snap_bounds=False,
            dtype="int16",
            fill_value=np.int16(hls.REFLECTANCE_NODATA),
            rescale=False,
            resampling=Resampling.nearest,
            chunksize=block_size,
            sortby_date=False,
            properties=False,
            gdal_env=env,
            errors_as_nodata=(),  # stackstac's default turns an HTTP 404 into nodata: a missing asset is an error
        )
        if stack.shape[0] == 0 or stack.shape[1] != len(keys):
            log.info("HLS item %s does not overlap the AOI grid: skipped", item.id)
            continue
        if stack.shape[-2:] != (grid.height, grid.width):
            raise RuntimeError(
                f"stackstac returned shape {stack.shape[-2:]} for item {item.id!r}, expected "
                f"{(grid.height, grid.width)}"
            )
        layers.append(stack.data[0])
    if not layers:
        raise _NoOverlap(
            f"none of the HLS items {[i.id for i in acq.items]} of {acq.date} {acq.sensor} overlaps the AOI grid "
            f"(EPSG:{grid.epsg}, bounds {grid.bounds}) according to its footprint metadata"
        )
    mosaic = layers[0]
    for layer in layers[1:]:
        # First tile wins; later tiles fill where it has no Fmask (outside its footprint: the fill value;
        # inside it but outside the satellite's swath: Fmask nodata).
        missing = (mosaic[-1:] == hls.REFLECTANCE_NODATA) | (mosaic[-1:] == hls.FMASK_NODATA)
        mosaic = da.where(missing, layer, mosaic)
    return mosaic


def _fmask_code(fmask: da.Array, mask_flags: Sequence[str]) -> da.Array:
    """(H, W) uint8 from an int16 Fmask layer: 0 clear, 1 flagged by ``mask_flags``, 255 no Fmask."""
    fmask_missing = (fmask == hls.REFLECTANCE_NODATA) | (fmask == hls.FMASK_NODATA)
    fmask_u8 = da.where(fmask_missing, hls.FMASK_NODATA, fmask).astype(np.uint8)
    flagged = fmask_u8.map_blocks(hls.fmask_flags, tuple(mask_flags), dtype=bool)
    return da.where(fmask_missing, np.uint8(255), da.where(flagged, np.uint8(1), np.uint8(0))).astype(np.uint8)


def _masked_frame(stack: da.Array, mask_flags: Sequence[str]) -> tuple[da.Array, da.Array]:
    """Apply Fmask to a (7, H, W) stack: (6, H, W) reflectance with nodata, (H, W) uint8 mask code."""
    bands = stack[:6]
    band_missing = (bands == hls.REFLECTANCE_NODATA).any(axis=0)
    code = da.where(band_missing, np.uint8(255), _fmask_code(stack[6], mask_flags)).astype(np.uint8)
    clean = da.where((code != 0)[None], np.int16(hls.REFLECTANCE_NODATA), bands).astype(np.int16)
    return clean, code


def _clear_share(stack: da.Array, mask_flags: Sequence[str]) -> da.Array:
    """Lazy share of the AOI grid's pixels whose Fmask is valid and carries none of ``mask_flags`` (reads
    only the Fmask assets of a (7, H, W) acquisition stack)."""
    return (_fmask_code(stack[6], mask_flags) == 0).mean()


def clear_fraction(stack: da.Array, mask_flags: Sequence[str]) -> float:
    """The clear fraction of one acquisition (see :func:`_clear_share`)."""
    return float(_clear_share(stack, mask_flags).compute())


def _timestamp(day: str) -> float:
    return datetime.fromisoformat(day).timestamp()


def _in_season(day: str, window: tuple[str, str]) -> bool:
    """Whether ``YYYY-MM-DD`` falls in an inclusive ``(MM-DD, MM-DD)`` window (wrapping over New Year)."""
    month_day, (first, last) = day[5:10], window
    if first <= last:
        return first <= month_day <= last
    return month_day >= first or month_day <= last


def select_frames(
    acquisitions: Sequence[Acquisition],
    frames: int,
    min_clear_fraction: float,
    start: str,
    end: str,
    season_windows: Sequence[tuple[str, str]] | None = None,
) -> tuple[list[Acquisition], list[dict[str, Any]]]:
    """Pick ``frames`` acquisitions: the clearest eligible one in each window, windows without an eligible
    date being filled with the clearest remaining dates.

    The windows are ``season_windows`` (one ``(MM-DD, MM-DD)`` pair per frame, config
    ``download.season_windows``) or, without them, ``frames`` equal parts of ``start``..``end``.
    Returns the chosen acquisitions in date order and a record of every candidate: its clear fraction,
    its window, and whether it became a frame or why it was dropped. Raises if fewer than ``frames``
    dates pass ``min_clear_fraction``.
    """
    seasons: list[tuple[str, str]] = [(str(w[0]), str(w[1])) for w in season_windows or []]
    if seasons and len(seasons) != frames:
        raise ValueError(
            f"download.season_windows has {len(seasons)} windows but download.frames = {frames}; "
            "give one window per frame"
        )
    t0, t1 = _timestamp(start), _timestamp(end)
    span = max(t1 - t0, 1.0)

    def windows_of(acq: Acquisition) -> list[int]:
        if seasons:
            return [w for w, season in enumerate(seasons) if _in_season(acq.date, season)]
        t = _timestamp(acq.date)
        w = min(max(int((t - t0) / span * frames), 0), frames - 1)
        return [w]

    def window_label(w: int) -> str:
        if seasons:
            return f"{seasons[w][0]}..{seasons[w][1]}"
        lo = datetime.fromtimestamp(t0 + span * w / frames).date().isoformat()
        hi = datetime.fromtimestamp(t0 + span * (w + 1) / frames).date().isoformat()
        return f"{lo}..{hi}"

    eligible = [a for a in acquisitions if a.clear_fraction >= min_clear_fraction]
    chosen: list[Acquisition] = []
    filled: set[int] = set()  # ids of acquisitions chosen to fill a window without an eligible date
    empty_windows = []
    for window in range(frames):
        in_window = [a for a in eligible if window in windows_of(a) and a not in chosen]
        if in_window:
            chosen.append(max(in_window, key=lambda a: (a.clear_fraction, a.date)))
        else:
            empty_windows.append(window_label(window))
    for acq in sorted(eligible, key=lambda a: (-a.clear_fraction, a.date)):
        if len(chosen) >= frames:
            break
        if acq not in chosen:
            chosen.append(acq)
            filled.add(id(acq))
    if len(chosen) < frames:
        raise ValueError(
            f"only {len(eligible)} of {len(acquisitions)} acquisitions have a clear fraction >= "
            f"{min_clear_fraction} (download.min_clear_fraction), but download.frames = {frames}; "
            "lower one of them, widen the AOI's dates or raise stac.imagery.max_cloud_cover"
        )
    if empty_windows:
        log.warning(
            "no date with clear fraction >= %s in window(s) %s; filled with the clearest remaining date(s)",
            min_clear_fraction,
            ", ".join(empty_windows),
        )
    chosen.sort(key=lambda a: (a.date, a.sensor))
    records = []
    for acq in acquisitions:
        own = windows_of(acq)
        if acq in chosen:
            status = f"frame {chosen.index(acq)}"
            if id(acq) in filled:
                status += " (fills a window without an eligible date)"
        elif acq.clear_fraction < min_clear_fraction:
            status = "dropped: clear fraction below download.min_clear_fraction"
        elif not own:
            status = "dropped: outside every download.season_windows window"
        else:
            status = "dropped: a clearer date was chosen in its window"
        records.append(
            {
                "date": acq.date,
                "sensor": acq.sensor,
                "items": [i.id for i in acq.items],
                "clear_fraction": round(acq.clear_fraction, 6),
                "window": ", ".join(window_label(w) for w in own) if own else None,
                "status": status,
            }
        )
    return chosen, records


class _WindowWriter:
    """A ``dask.array.store`` target that writes (bands, rows, cols) blocks into an open rasterio dataset."""

    def __init__(self, dataset: rasterio.io.DatasetWriter, progress: tqdm | None = None) -> None:
        self.dataset = dataset
        self.progress = progress
        self.shape = (dataset.count, dataset.height, dataset.width)
        self.dtype = np.dtype(dataset.dtypes[0])
        self.ndim = 3

    def __setitem__(self, key: tuple[slice, slice, slice], value: np.ndarray) -> None:
        bands, rows, cols = key
        indexes = list(range(bands.start + 1, bands.stop + 1))
        window = rasterio.windows.Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
        self.dataset.write(value, indexes=indexes, window=window)
        if self.progress is not None:
            self.progress.update(1)


def _write_cog(
    array: da.Array,
    path: Path,
    grid: Grid,
    nodata: float,
    descriptions: Sequence[str],
    block_size: int,
    colormap: dict[int, tuple[int, int, int, int]] | None = None,
    tags: dict[str, str] | None = None,
    overview_resampling: str = "nearest",
) -> None:
    """Stream a lazy (bands, H, W) array into a tiled GeoTIFF, then convert it to a COG atomically."""
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": array.shape[0],
        "dtype": array.dtype.name,
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "interleave": "band" if array.shape[0] > 1 else "pixel",
        "BIGTIFF": "IF_SAFER",
    }
    chunked = array.rechunk((array.shape[0], block_size, block_size))
    n_blocks = math.prod(len(c) for c in chunked.chunks)
    with atomic_path(path) as final:
        stream = final.with_name(final.name + ".stream.tif")
        try:
            _stream_and_convert(
                chunked, n_blocks, stream, final, profile, descriptions, colormap, tags, overview_resampling, path.name
            )
        finally:
            stream.unlink(missing_ok=True)


def _stream_and_convert(
    chunked: da.Array,
    n_blocks: int,
    stream: Path,
    final: Path,
    profile: dict[str, Any],
    descriptions: Sequence[str],
    colormap: dict[int, tuple[int, int, int, int]] | None,
    tags: dict[str, str] | None,
    overview_resampling: str,
    name: str,
) -> None:
    """Write ``chunked`` window by window into a tiled GeoTIFF at ``stream``, then copy it to a COG."""
    with rasterio.open(stream, "w", **profile) as dst:
        for band, description in enumerate(descriptions, start=1):
            dst.set_band_description(band, description)
        with tqdm(total=n_blocks, desc=f"writing {name}", unit="block", leave=False) as bar:
            da.store(chunked, _WindowWriter(dst, bar), lock=True)  # type: ignore[arg-type]  # any __setitem__ target
    with rasterio.open(stream, "r+") as dst:
        if colormap is not None:
            dst.write_colormap(1, colormap)
        if tags:
            dst.update_tags(**tags)
    copy_to_cog(stream, final, overview_resampling, predictor=colormap is None)


def _label_item(item: pystac.Item) -> pystac.Item:
    """A copy of a label item with ``datetime`` filled from ``start_datetime`` (stackstac needs one)."""
    item = copy.deepcopy(item)
    if item.datetime is None:
        start = item.common_metadata.start_datetime
        if start is None:
            raise ValueError(f"label STAC item {item.id!r} has neither datetime nor start_datetime")
        item.datetime = start
    return item


def _io_codes() -> str:
    """The IO LULC v02 codes the workflow maps, for messages: ``1 2 4 5 7 8 9 10 11``."""
    return " ".join(str(code) for code in classes.CLASS_CODES)


def _describe_codes(codes: Iterable[int], names: dict[int, str] | None = None) -> str:
    """``3 (Grass), 6 (Scrub)``, or ``3, 6`` without names."""
    names = names or {}
    return ", ".join(f"{code} ({names[code]})" if names.get(code) else str(code) for code in sorted(codes))


_NODATA_NAME = re.compile(r"^\s*no[\s_-]*data\s*$", re.IGNORECASE)


def _code(value: Any) -> int | None:
    """An integer class code from metadata (``3``, ``3.0``, ``"3"``), else None."""
    try:
        code = float(value)
    except (TypeError, ValueError):
        return None
    return int(code) if code.is_integer() else None


def declared_label_codes(item: pystac.Item, asset: str = LABEL_ASSET) -> dict[int, str] | None:
    """The class table a label item declares for ``asset``: ``{code: name}`` without the nodata code(s),
    or None where it declares none.

    Read from the classification extension (``classification:classes`` on the asset or in its
    ``raster:bands`` / ``bands`` entries; entries with ``nodata: true`` are nodata) and from the file
    extension's ``file:values`` (what Planetary Computer's ``io-lulc-annual-v02`` items carry: ``0 No Data``,
    ``1 Water``, ..., ``11 Rangeland``). IO's nodata code 0, the bands' ``nodata`` values and entries named
    "No Data" are left out.
    """
    if asset not in item.assets:
        return None
    fields = item.assets[asset].extra_fields
    bands = [b for key in ("raster:bands", "bands") for b in fields.get(key) or [] if isinstance(b, dict)]
    table: dict[int, str] = {}
    nodata = {classes.IO_NODATA}
    declared = False
    for entry_set in [fields, *bands]:
        band_nodata = _code(entry_set.get("nodata"))
        if band_nodata is not None:
            nodata.add(band_nodata)
        entries = entry_set.get("classification:classes")
        if not isinstance(entries, list):
            continue
        declared = True
        for entry in entries:
            value = _code(entry.get("value")) if isinstance(entry, dict) else None
            if value is None:
                continue
            name = str(entry.get("name") or entry.get("description") or "")
            if entry.get("nodata") or _NODATA_NAME.match(name):
                nodata.add(value)
            else:
                table.setdefault(value, name)
    values = fields.get("file:values")
    if isinstance(values, list):
        declared = True
        for entry in values:
            if not isinstance(entry, dict):
                continue
            name = str(entry.get("summary") or "")
            for code in (_code(v) for v in entry.get("values") or []):
                if code is None:
                    continue
                if _NODATA_NAME.match(name):
                    nodata.add(code)
                else:
                    table.setdefault(code, name)
    if not declared:
        return None
    return {code: name for code, name in sorted(table.items()) if code not in nodata}


def check_label_classes(items: Sequence[pystac.Item], asset: str = LABEL_ASSET) -> None:
    """Refuse label items whose declared class table (:func:`declared_label_codes`) has codes the workflow
    does not map (the older 10-class ``io-lulc`` collection: 3 Grass, 6 Scrub), before anything is read.
    Items that declare no table pass; their pixels are checked as they are written (:class:`_CodeCounter`)."""
    problems = []
    for item in items:
        table = declared_label_codes(item, asset)
        unknown = sorted(set(table or {}) - set(classes.CLASS_CODES))
        if unknown:
            problems.append(
                f"label codes {_describe_codes(unknown, table)} in item {item.id!r} (collection "
                f"{item.collection_id!r}, declared by its {asset!r} asset)"
            )
    if problems:
        raise LabelCodeError(
            f"{'; '.join(problems)} are not IO LULC v02 classes ({_io_codes()}; 0 = nodata): the workflow maps "
            "only these 9 classes and would otherwise turn such pixels into 'ignore' without a word. Use the "
            "io-lulc-annual-v02 collection (the older 10-class io-lulc has 3 Grass and 6 Scrub where v02 has "
            "11 Rangeland) or labels with the same codes"
        )


class _CodeCounter:
    """Pixel counts per label code of each label item's layer on the AOI grid, gathered while the label raster
    is written (a pass-through step of the dask graph, so nothing is read twice). Counts are kept per block,
    so a block computed twice is not counted twice."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blocks: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}

    def observe(self, layer: da.Array, item_id: str) -> da.Array:
        """``layer`` (IO codes of one item), counting the codes of each block as it is computed."""

        def count(block: np.ndarray, block_info: dict[Any, Any] | None = None) -> np.ndarray:
            location = tuple(block_info[0]["chunk-location"]) if block_info else (len(self._blocks),)
            counts = np.bincount(np.asarray(block, dtype=np.uint8).ravel(), minlength=256)
            with self._lock:
                self._blocks[(item_id, location)] = counts
            return block

        return da.map_blocks(count, layer, dtype=layer.dtype, name=f"count-label-codes-{uuid.uuid4().hex}")

    def counts(self) -> dict[str, np.ndarray]:
        """Item id -> pixel count per code (256 entries), over the blocks computed so far."""
        totals: dict[str, np.ndarray] = {}
        with self._lock:
            for (item_id, _), counts in self._blocks.items():
                totals[item_id] = totals.get(item_id, np.zeros(256, np.int64)) + counts
        return totals

    def check(self, resolution: float) -> None:
        """Raise :class:`LabelCodeError` naming every item with codes outside the IO LULC v02 classes."""
        known = {classes.IO_NODATA, *classes.CLASS_CODES}
        problems = []
        for item_id, counts in sorted(self.counts().items()):
            unknown = [code for code in np.flatnonzero(counts).tolist() if code not in known]
            if unknown:
                pixels = ", ".join(f"{int(counts[code])} pixels of code {code}" for code in unknown)
                problems.append(
                    f"label codes {_describe_codes(unknown)} in item {item_id!r} ({pixels} in the AOI window at "
                    f"{resolution:g} m)"
                )
        if problems:
            raise LabelCodeError(
                f"{'; '.join(problems)} are not IO LULC v02 classes ({_io_codes()}; 0 = nodata): the workflow "
                "maps only these 9 classes and would otherwise turn such pixels into 'ignore' without a word. Use the "
                "io-lulc-annual-v02 collection (the older 10-class io-lulc has 3 Grass and 6 Scrub) or labels "
                "with the same codes"
            )


def label_stack(
    items: Sequence[pystac.Item],
    grid: Grid,
    block_size: int,
    asset: str = LABEL_ASSET,
    env: stackstac.rio_env.LayeredEnv | None = None,
    code_counter: _CodeCounter | None = None,
) -> da.Array:
    """Lazy (H, W) uint8 class indices: label tiles reprojected onto ``grid`` with mode resampling,
    mosaicked (first tile wins), and remapped from IO codes to contiguous indices (255 = ignore).

    With ``code_counter``, the IO codes of every item's layer are counted as the array is computed, so that
    codes outside the mapped classes (which the remap turns into 255) can be refused afterwards."""
    if not items:
        raise ValueError("no label items to download")
    stack = stackstac.stack(
        [_plain(_label_item(i)) for i in items],
        assets=[asset],
        epsg=grid.epsg,
        resolution=grid.resolution,
        bounds=grid.bounds,
        snap_bounds=False,
        dtype="uint8",
        fill_value=np.uint8(classes.IO_NODATA),
        rescale=False,
        resampling=Resampling.mode,
        chunksize=block_size,
        properties=False,
        gdal_env=env,
        errors_as_nodata=(),  # stackstac's default turns an HTTP 404 into nodata: a missing asset is an error
    )
    if stack.shape[0] == 0 or stack.shape[1] == 0:
        raise ValueError(
            f"none of the label items {[i.id for i in items]} overlaps the AOI grid (EPSG:{grid.epsg}, bounds "
            f"{grid.bounds}) according to its footprint metadata"
        )
    codes = stack.data[:, 0]
    layers = [codes[t] for t in range(codes.shape[0])]
    if code_counter is not None:
        ids = [str(i) for i in np.atleast_1d(stack["id"].values)]
        layers = [code_counter.observe(layer, item_id) for layer, item_id in zip(layers, ids, strict=True)]
    mosaic = layers[0]
    for layer in layers[1:]:
        mosaic = da.where(mosaic == classes.IO_NODATA, layer, mosaic)
    return mosaic.map_blocks(classes.remap_codes, dtype=np.uint8)


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
    labels = _checked_labels(labels, name)
    check_signing(labels_signing, "stac.labels.signing")
    href = _first_http_href(list(labels))
    if href is not None:
        check_reachable(href, "the stac.labels assets, e.g.")
    place = _Place(where=name, name=name, start=date.min, end=date.max)
    out = Path(out_dir) / "label.tif"
    try:
        with gdal_env(labels_signing) as labels_env, dask.config.set(scheduler="threads"):
            with _asset_errors(f"{name}: labels"):
                items = with_projection([sign_item(i, labels_signing) for i in labels], labels_env, LABEL_ASSET)
            _write_label_cog(place, labels, items, grid, Path(out_dir), settings.block_size, labels_env,
                             _AssetIndex(items))  # fmt: skip
    except BaseException:
        out.unlink(missing_ok=True)
        raise


def _check_grid(grid: Grid, name: str) -> None:
    """Refuse a grid without pixels, a resolution that is not a positive number or an unknown EPSG code."""
    if not isinstance(grid, Grid):
        raise TypeError(f"{name}: the grid must be a lulc.download.Grid, got {type(grid).__name__}")
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


def _checked_labels(labels: pystac.ItemCollection, where: str) -> pystac.ItemCollection:
    """The label items without their links (:func:`_offline_item`), after the checks that need no request: not
    empty, the label asset on every item, local files present, the declared classes those of IO LULC."""
    if not len(labels):
        raise ValueError(f"{where}: the labels ItemCollection is empty")
    labels = pystac.ItemCollection([_offline_item(i) for i in labels], clone_items=False)
    for item in labels:
        if LABEL_ASSET not in item.assets:
            raise ValueError(
                f"{where}: label STAC item {item.id!r} has no asset {LABEL_ASSET!r}; its assets: {sorted(item.assets)}"
            )
    _check_local_assets(labels, [LABEL_ASSET], f"{where}: labels")
    check_label_classes(list(labels))
    return labels


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
        labels = _checked_labels(labels, place.where)
    imagery = pystac.ItemCollection([_offline_item(i) for i in imagery], clone_items=False)
    _check_local_assets(imagery, None, f"{place.where}: imagery")
    check_signing(imagery_signing, "stac.imagery.signing")
    if labels is not None:
        check_signing(labels_signing, "stac.labels.signing")
    sources = [("imagery", imagery)] if labels is None else [("imagery", imagery), ("labels", labels)]
    for kind, items in sources:
        href = _first_http_href(list(items))
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
    block_size, frames, mask_flags = settings.block_size, settings.frames, settings.mask_flags
    min_clear, seasons = settings.min_clear, settings.seasons
    with _asset_errors(f"{place.where}: imagery"):
        hls_items = with_projection([sign_item(i, imagery_signing) for i in imagery], imagery_env)
    label_items: list[pystac.Item] = []
    if labels is not None:
        with _asset_errors(f"{place.where}: labels"):
            label_items = with_projection([sign_item(i, labels_signing) for i in labels], labels_env, LABEL_ASSET)
    assets = _AssetIndex([*hls_items, *label_items])
    acquisitions = group_acquisitions(hls_items)

    with dask.config.set(scheduler="threads"):
        if labels is not None:
            # labels first (one band, and refused outright when they hold codes the workflow does not map)
            _write_label_cog(place, labels, label_items, grid, out_dir, block_size, labels_env, assets)

        stacks: dict[str, da.Array] = {}
        for acq in acquisitions:
            try:
                stacks[acq.key] = _stack_acquisition(acq, grid, block_size, imagery_env)
            except _NoOverlap:
                if labels is not None:
                    raise
                log.info("%s: no item of %s %s overlaps the grid: not a candidate", place.where, acq.date, acq.sensor)
        if not stacks:
            raise ValueError(
                f"{place.where}: none of the {len(hls_items)} imagery items overlaps the grid (EPSG:{grid.epsg}, "
                f"bounds {grid.bounds}) according to its footprint metadata"
            )
        acquisitions = [a for a in acquisitions if a.key in stacks]
        # several dates per dask computation: the Fmask windows of remote dates are read concurrently
        with tqdm(total=len(acquisitions), desc=f"{place.name}: clear fraction per date", unit="date") as bar:
            for first in range(0, len(acquisitions), CLEAR_FRACTION_BATCH):
                batch = acquisitions[first : first + CLEAR_FRACTION_BATCH]
                with _asset_errors(f"{place.where}: Fmask of {batch[0].date}..{batch[-1].date}", assets):
                    shares = dask.compute(*[_clear_share(stacks[a.key], mask_flags) for a in batch])
                for acq, share in zip(batch, shares, strict=True):
                    acq.clear_fraction = float(share)
                    log.info("%s %s: clear fraction %.3f", acq.date, acq.sensor, acq.clear_fraction)
                bar.update(len(batch))
        start, end = place.start.isoformat(), place.end.isoformat()
        chosen, records = select_frames(acquisitions, frames, min_clear, start, end, seasons)
        log.info("%s: frames %s", place.where, [a.key for a in chosen])
        for record in records:
            if record["status"].startswith("dropped"):
                log.info("%s: %s %s %s", place.where, record["date"], record["sensor"], record["status"])

        masked = [_masked_frame(stacks[a.key], mask_flags) for a in chosen]
        image = da.concatenate([m[0] for m in masked], axis=0)
        mask = da.stack([m[1] for m in masked], axis=0)
        frame_tags = {
            f"FRAME_{t}": f"{a.date} {a.sensor} {','.join(i.id for i in a.items)}" for t, a in enumerate(chosen)
        }
        order_tag = {
            "BAND_ORDER": "time-major: band t*6+b = frame t, Prithvi band b (" + ",".join(hls.PRITHVI_BANDS) + ")"
        }
        with _asset_errors(f"{place.where}: imagery", assets):
            _write_cog(
                image,
                out_dir / "image.tif",
                grid,
                hls.REFLECTANCE_NODATA,
                hls.band_names(len(chosen)),
                block_size,
                tags={**frame_tags, **order_tag, "SCALE": str(1 / hls.REFLECTANCE_SCALE)},
                overview_resampling="average",
            )
            _write_cog(
                mask,
                out_dir / "mask.tif",
                grid,
                255,
                [f"t{t}_fmask_{'+'.join(mask_flags)}" for t in range(len(chosen))],
                block_size,
                tags={**frame_tags, "VALUES": "0 clear, 1 masked by Fmask flags, 255 no data"},
            )
    record = {
        "aoi": place.name,
        "grid": {
            "epsg": grid.epsg,
            "resolution": grid.resolution,
            "bounds": list(grid.bounds),
            "width": grid.width,
            "height": grid.height,
        },
        "band_order": hls.band_names(len(chosen)),
        "mask_flags": list(mask_flags),
        "min_clear_fraction": min_clear,
        "selection": "season_windows" if seasons else "equal_windows",
        "season_windows": [list(w) for w in seasons] or None,
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
    _write_dates_csv(records, out_dir / "dates.csv")
    write_json(record, out_dir / "frames.json")
    return record


def _write_label_cog(
    place: _Place,
    labels: pystac.ItemCollection,
    label_items: Sequence[pystac.Item],
    grid: Grid,
    out_dir: Path,
    block_size: int,
    labels_env: stackstac.rio_env.LayeredEnv | None,
    assets: _AssetIndex,
) -> None:
    """``label.tif`` on ``grid``; raises :class:`LabelCodeError` when the items hold codes the workflow does not
    map (counted while it is written)."""
    counter = _CodeCounter()
    label = label_stack(label_items, grid, block_size, env=labels_env, code_counter=counter)[None]
    with _asset_errors(f"{place.where}: labels", assets):
        _write_cog(
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
