"""How the download stage reads assets through GDAL: the environment and what a failed read becomes.

* :func:`gdal_env`: stackstac's GDAL defaults plus HTTP retries with backoff, timeouts and, for the imagery of
  NASA, the Earthdata credentials (in a private temporary folder, never in a variable, a URL or a log).
* :func:`asset_errors`: a failed read becomes a :class:`DownloadError` naming the STAC item, the asset key and
  the URL or path with every query string (SAS tokens, signatures) redacted; a network failure says that GDAL
  retried it (:data:`GDAL_HTTP_MAX_RETRY` times, the same number :func:`gdal_env` sets), anything else is an
  :class:`AssetContentError` saying what is wrong with the file.

One module, because the retry settings and the messages that report them must agree; every module of the
stage that reads assets uses it, so it imports none of them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pystac
import rasterio
import stackstac

from lulc.access import earthdata_credentials, redact_url

log = logging.getLogger(__name__)

#: GDAL's retries of transient HTTP failures (429, 500, 502, 503, 504 and connection errors); GDAL waits
#: ``GDAL_HTTP_RETRY_DELAY`` seconds before the first retry and doubles the delay (with jitter) each time.
GDAL_HTTP_MAX_RETRY = 5
GDAL_HTTP_RETRY_DELAY_S = 1.0
#: Seconds: connecting, and a whole request.
GDAL_HTTP_CONNECT_TIMEOUT_S = 20
GDAL_HTTP_TIMEOUT_S = 300


class DownloadError(RuntimeError):
    """Reading an asset failed; the message names the item, the asset key and the URL or path, without
    secrets. Network failures say that GDAL retried them; other failures are :class:`AssetContentError`."""


class AssetContentError(DownloadError):
    """An asset that was reached but cannot be used: a multi-band file where one band is expected, a damaged
    or truncated file, a file that is not a raster. Retrying does not help."""


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


class AssetIndex:
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
def asset_errors(what: str, assets: AssetIndex | None = None) -> Iterator[None]:
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
