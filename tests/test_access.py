"""Remote access: reachability before any request, Earthdata credentials that never leak, signing, redaction."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pystac
import pytest
from pytest import MonkeyPatch
from stac_items import free_port, hls_item, utc

from lulc import access
from lulc.access import SourceUnreachableError, sign_item

HERE = (10.0, 45.0, 11.0, 46.0)


@pytest.fixture(autouse=True)
def loopback_without_proxy(monkeypatch: MonkeyPatch) -> None:
    """Loopback test servers must not go through a proxy of the machine running the tests."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


def test_sign_item_none_returns_an_unchanged_copy() -> None:
    item = hls_item("HLS.S30.T32TNR.2023069T101011.v2.0", utc(2023, 3, 10), 5.0, HERE)
    signed = sign_item(item, "none")
    assert signed is not item
    assert signed.to_dict() == item.to_dict()


def test_sign_item_planetary_computer_is_wired(monkeypatch: MonkeyPatch) -> None:
    import planetary_computer

    calls: list[pystac.Item] = []

    def fake_sign(obj: pystac.Item) -> pystac.Item:
        calls.append(obj)
        signed = obj.clone()
        for asset in signed.assets.values():
            asset.href += "?sig=token"
        return signed

    monkeypatch.setattr(planetary_computer, "sign", fake_sign)
    item = hls_item("HLS.S30.T32TNR.2023069T101011.v2.0", utc(2023, 3, 10), 5.0, HERE)
    signed = sign_item(item, "planetary_computer")
    assert len(calls) == 1 and calls[0] is not item  # signs a copy, never the searched item
    assert signed.assets["B02"].href.endswith("?sig=token")
    assert not item.assets["B02"].href.endswith("?sig=token")
    with pytest.raises(ValueError, match="unknown signing method 'sas'"):
        sign_item(item, "sas")


def test_check_reachable_fails_fast_and_names_the_key() -> None:
    import time

    url = f"https://127.0.0.1:{free_port()}/api/stac/v1?token=secret"
    start = time.perf_counter()
    with pytest.raises(SourceUnreachableError) as excinfo:
        access.check_reachable(url, "stac.labels.source")
    assert time.perf_counter() - start < 5
    message = str(excinfo.value)
    assert message.startswith("stac.labels.source https://127.0.0.1:")
    assert "real-data configs need network; the default demo config runs offline" in message
    assert "secret" not in message  # query strings (tokens) are redacted
    with pytest.raises(ValueError, match="not an http"):
        access.check_reachable("ftp://example.test/x", "stac.imagery.source")


def test_check_reachable_times_out_on_a_hanging_resolver(monkeypatch: MonkeyPatch) -> None:
    import threading
    import time

    release = threading.Event()

    def hanging(*args: Any, **kwargs: Any) -> None:
        release.wait(10)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    for variable in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    start = time.perf_counter()
    try:
        with pytest.raises(SourceUnreachableError, match=r"could not resolve cmr\.earthdata\.nasa\.gov within 0\.3 s"):
            access.check_reachable("https://cmr.earthdata.nasa.gov/stac/LPCLOUD", "stac.imagery.source", timeout=0.3)
        assert time.perf_counter() - start < 3
    finally:
        release.set()


def test_check_reachable_goes_through_a_configured_proxy(monkeypatch: MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(SourceUnreachableError, match=rf"proxy 127\.0\.0\.1:{port}"):
        access.check_reachable("https://planetarycomputer.microsoft.com/api/stac/v1", "stac.imagery.source")


def test_redact_url() -> None:
    signed = "https://acct.blob.core.windows.net/c/HLS.B02.tif?st=2025&se=2025&sig=abc%2Fdef"
    assert access.redact_url(signed) == "https://acct.blob.core.windows.net/c/HLS.B02.tif?<redacted>"
    assert access.redact_url("https://user:pw@host.test:8443/a.tif") == "https://host.test:8443/a.tif"
    assert access.redact_url("/data/a.tif") == "/data/a.tif"


def test_earthdata_credentials_from_token_or_netrc(no_credentials: Path, monkeypatch: MonkeyPatch) -> None:
    with pytest.raises(access.CredentialsError) as excinfo:
        access.earthdata_credentials()
    assert "EARTHDATA_TOKEN" in str(excinfo.value) and str(no_credentials) in str(excinfo.value)

    no_credentials.write_text("machine example.org login a password b\n")
    no_credentials.chmod(0o600)
    with pytest.raises(access.CredentialsError, match="no complete entry for urs.earthdata.nasa.gov"):
        access.earthdata_credentials()

    no_credentials.write_text("machine urs.earthdata.nasa.gov login alice password hunter2-secret\n")
    credentials = access.earthdata_credentials()
    assert credentials.kind == "netrc" and credentials.netrc_path == no_credentials.resolve()
    assert "hunter2" not in repr(credentials) + credentials.describe()

    other = no_credentials.parent / "other-netrc"
    other.write_text("machine urs.earthdata.nasa.gov\n  login bob\n  password pw-secret\n")
    other.chmod(0o600)
    monkeypatch.setenv("NETRC", str(other))
    assert access.earthdata_credentials().netrc_path == other.resolve()

    monkeypatch.setenv("EARTHDATA_TOKEN", "eyJ-token-secret")
    credentials = access.earthdata_credentials()
    assert credentials.kind == "token" and credentials.token == "eyJ-token-secret"
    assert "token-secret" not in repr(credentials) + credentials.describe()


def test_unparsable_netrc_error_never_quotes_the_file(no_credentials: Path) -> None:
    # python's netrc would say: bad follower token 's3cret-pw' (the password): we must not repeat it
    no_credentials.write_text("machine urs.earthdata.nasa.gov login alice s3cret-pw\n")
    no_credentials.chmod(0o600)
    with pytest.raises(access.CredentialsError, match=r"cannot parse .*\.netrc \(line \d+\)") as excinfo:
        access.earthdata_credentials()
    assert "s3cret" not in str(excinfo.value)


def test_sign_item_earthdata_leaves_urls_unchanged() -> None:
    item = hls_item("HLS.S30.T32TNR.2023069T101011.v2.0", utc(2023, 3, 10), 5.0, HERE)
    signed = sign_item(item, "earthdata")
    assert signed is not item and signed.to_dict() == item.to_dict()
