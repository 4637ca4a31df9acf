"""Small STAC helpers shared by the search and access tests: HLS-like items with relative asset hrefs (as a
static catalog has), UTC datetimes and free loopback ports."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from typing import Any

import pystac

from lulc.hls import FMASK_ASSET, SENSOR_ASSETS

BBox = tuple[float, float, float, float]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def bbox_geometry(bbox: BBox) -> dict[str, Any]:
    w, s, e, n = bbox
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def hls_item(item_id: str, when: datetime, cloud: float, bbox: BBox) -> pystac.Item:
    """An HLS-like item with the real asset keys and relative asset hrefs (as a static catalog has)."""
    item = pystac.Item(item_id, bbox_geometry(bbox), list(bbox), when, {"eo:cloud_cover": cloud})
    sensor = "S30" if ".S30." in item_id else "L30"
    for key in (*SENSOR_ASSETS[sensor], FMASK_ASSET):
        item.add_asset(key, pystac.Asset(f"./{item_id}.{key}.tif", media_type=pystac.MediaType.COG))
    return item


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
