"""Remote access to STAC sources and asset hosts: reachability, NASA Earthdata credentials, signing, redaction.

Used by the search (before a STAC API request) and the download (before the first asset read):

* :func:`check_reachable` resolves and connects to a host within a few seconds and sends nothing, so an
  offline run of a real-data config stops at once with a clear message;
* :func:`earthdata_credentials` finds NASA Earthdata credentials (``EARTHDATA_TOKEN`` or a netrc entry for
  ``urs.earthdata.nasa.gov``); they go to GDAL only and never appear in URLs, logs or results;
* :func:`sign_item` signs Planetary Computer assets right before they are read (SAS tokens expire);
* :func:`redact_url` strips query strings and user info from anything that is logged.
"""

from __future__ import annotations

import concurrent.futures
import netrc
import os
import socket
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pystac

#: Values of ``stac.*.signing``.
SIGNING_METHODS: tuple[str, ...] = ("none", "planetary_computer", "earthdata")


#: NASA Earthdata Login: the netrc machine and the environment variable holding a bearer token.
EARTHDATA_HOST = "urs.earthdata.nasa.gov"


EARTHDATA_TOKEN_ENV = "EARTHDATA_TOKEN"


#: Seconds allowed to resolve and connect to a source's host before a run is declared offline.
REACHABILITY_TIMEOUT_S = 5.0


class SourceUnreachableError(ValueError):
    """An http(s) source whose host cannot be resolved or connected to: no network, or a wrong URL."""


class CredentialsError(ValueError):
    """Credentials a signing method needs are missing or unreadable (the message never shows a secret)."""


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


def is_local_path(href: str) -> bool:
    """A plain file path (no URL scheme, not a GDAL virtual file system path such as ``/vsis3/...``)."""
    return "://" not in href and not href.startswith("/vsi")


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


__all__ = [
    "EARTHDATA_HOST",
    "EARTHDATA_TOKEN_ENV",
    "REACHABILITY_TIMEOUT_S",
    "SIGNING_METHODS",
    "CredentialsError",
    "EarthdataCredentials",
    "SourceUnreachableError",
    "check_reachable",
    "check_signing",
    "earthdata_credentials",
    "is_local_path",
    "redact_url",
    "sign_item",
]
