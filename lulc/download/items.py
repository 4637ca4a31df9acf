"""STAC item hygiene for the download stage: offline copies, plain dicts, asset checks and projections.

The stage uses only the items' assets: :func:`offline_item` drops their links and :func:`plain` gives stackstac
a dict without following any, so the STAC API is never contacted. :func:`check_local_assets` refuses missing or
relative local files before anything is read; :func:`sensor_assets` names an HLS item's band assets and
:func:`with_projection` gives items without ``proj:epsg`` (NASA CMR) their CRS.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

import pystac
import rasterio
import stackstac

from lulc import hls
from lulc.access import is_local_path
from lulc.download.environment import AssetIndex, asset_errors
from lulc.hls import FMASK_ASSET, PRITHVI_BANDS, SENSOR_ASSETS, sensor_of

log = logging.getLogger(__name__)


def plain(item: pystac.Item) -> dict[str, Any]:
    """The item as the plain dict stackstac reads. ``Item.to_dict()`` with its default ``transform_hrefs``
    resolves the item's ``root`` link, i.e. fetches the STAC API's landing page once per item; this never
    follows a link (and the download's items carry none: :func:`offline_item`)."""
    return item.to_dict(include_self_link=False, transform_hrefs=False)


def offline_item(item: pystac.Item) -> pystac.Item:
    """A copy of ``item`` with its assets only: no ``root``/``self``/``parent``/``collection`` links, so no
    code path (pystac, stackstac, signing) can reach for the STAC API the item came from."""
    clone = item.clone()
    clone.clear_links()
    return clone


def check_local_assets(items: Iterable[pystac.Item], keys: Iterable[str] | None, kind: str) -> None:
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


def first_http_href(items: Sequence[pystac.Item]) -> str | None:
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
    with asset_errors(f"reading the CRS of STAC item {item.id!r} (no proj:epsg)", AssetIndex([item])), env.open:
        with rasterio.open(href) as src:
            crs, transform, shape = src.crs, src.transform, [src.height, src.width]
    epsg = crs.to_epsg() if crs is not None else None
    if epsg is None:
        raise ValueError(f"asset {asset_key!r} of STAC item {item.id!r} has no EPSG CRS ({crs}): cannot place it")
    return int(epsg), list(transform)[:6], shape


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
