"""The download stage on tiny HLS-like items written by the tests: grid, frame choice, masking, labels."""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import re
import shutil
from datetime import date, datetime
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pystac
import pytest
import rasterio
import rasterio.transform
import rasterio.warp
import stackstac
from rasterio.warp import transform_bounds
from rio_cogeo.cogeo import cog_validate

from lulc import download, hls
from lulc.access import CredentialsError, SourceUnreachableError
from lulc.aoi import AOI
from lulc.download import (
    Acquisition,
    DownloadError,
    aoi_grid,
    item_epsg,
    select_frames,
    sensor_assets,
    write_aoi_stack,
    write_imagery_stack,
)
from lulc.download import environment as download_environment
from lulc.download import items as download_items
from lulc.download import stack as download_stack
from lulc.hls import utm_epsg
from lulc.legends import preset, read_legend
from lulc.search import load_item_collection, save_item_collection, search_items
from tests import io_legend as classes
from tests.conftest import make_hls_item, make_label_item
from tests.local_http import serve_files

SIZE = 48  # imagery pixels per side (30 m)
ORIGIN = (500_010.0, 4_650_030.0)  # on the 30 m grid, like HLS tiles; the labels are offset by 5 m


@pytest.fixture(autouse=True)
def loopback_without_proxy(monkeypatch) -> None:
    """The loopback servers of these tests must be reached directly even where a proxy is configured."""
    for variable in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(variable, "127.0.0.1,localhost")


def _aoi(inset: float = 150.0) -> AOI:
    left, top = ORIGIN
    bounds = (left + inset, top - SIZE * 30 + inset, left + SIZE * 30 - inset, top - inset)
    bbox = transform_bounds("EPSG:32615", "EPSG:4326", *bounds)
    return AOI(name="tiny", bbox=tuple(bbox), start=date(2023, 1, 1), end=date(2023, 12, 31))


@pytest.fixture
def scene(tmp_path):
    """Four acquisitions (one too cloudy) and a 10 m label tile on an offset grid."""
    items = []
    dates = [datetime(2023, 2, 10), datetime(2023, 5, 20), datetime(2023, 6, 1), datetime(2023, 9, 15)]
    sensors = ["S30", "L30", "S30", "L30"]
    for t, (when, sensor) in enumerate(zip(dates, sensors, strict=True)):
        bands = np.stack([np.full((SIZE, SIZE), 1000 * (t + 1) + b, np.int16) for b in range(6)])
        fmask = np.zeros((SIZE, SIZE), np.uint8)
        if t == 2:  # too cloudy
            fmask[:, : SIZE * 3 // 4] = 1 << hls.FMASK_BITS["cloud"]
        if t == 0:  # a small cloud with shadow and a cirrus-only patch (cirrus is not masked by default)
            fmask[10:14, 10:14] = 1 << hls.FMASK_BITS["cloud"]
            fmask[14:16, 10:14] = 1 << hls.FMASK_BITS["shadow"]
            fmask[30:34, 30:34] = 1 << hls.FMASK_BITS["cirrus"]
        items.append(make_hls_item(tmp_path / "hls", sensor, when, bands, fmask, origin=ORIGIN))
    codes = np.full((SIZE * 3 + 6, SIZE * 3 + 6), 5, np.uint8)  # crops
    codes[:, : 3 * 20] = 1  # water in the western part
    codes[0:6, :] = 0  # a nodata strip along the top
    label = make_label_item(tmp_path / "io", codes, origin=(ORIGIN[0] - 5.0, ORIGIN[1] + 5.0))
    return pystac.ItemCollection(items), pystac.ItemCollection([label])


def test_utm_epsg_picks_zone_and_hemisphere():
    assert utm_epsg(-93.45, 42.05) == 32615
    assert utm_epsg(-121.05, 38.65) == 32610
    assert utm_epsg(151.2, -33.9) == 32756
    assert utm_epsg(180.0, 10.0) == 32660


def test_aoi_grid_snaps_outward_to_resolution():
    grid = aoi_grid(_aoi(), 30.0)
    assert grid.epsg == 32615
    left, bottom, right, top = grid.bounds
    for value in (left, bottom, right, top):
        assert value % 30 == pytest.approx(0.0)
    assert left <= ORIGIN[0] + 150 and top >= ORIGIN[1] - 150
    with pytest.raises(ValueError, match="download.crs"):
        aoi_grid(_aoi(), 30.0, "UTM33")


def _acq(day: str, clear: float) -> Acquisition:
    return Acquisition(date=day, sensor="S30", items=[], clear_fraction=clear)


def test_select_frames_spreads_over_the_year_and_records_drops():
    acqs = [
        _acq("2023-01-15", 0.9),
        _acq("2023-02-01", 0.95),
        _acq("2023-06-01", 0.7),
        _acq("2023-07-01", 0.2),
        _acq("2023-11-01", 0.8),
        _acq("2023-11-20", 0.85),
    ]
    chosen, records = select_frames(acqs, 3, 0.5, "2023-01-01", "2023-12-31")
    assert [a.date for a in chosen] == ["2023-02-01", "2023-06-01", "2023-11-20"]
    status = {r["date"]: r["status"] for r in records}
    assert status["2023-07-01"].startswith("dropped: clear fraction")
    assert status["2023-01-15"].startswith("dropped: a clearer date")


def test_select_frames_fills_empty_windows_and_fails_when_too_few():
    acqs = [_acq("2023-01-15", 0.9), _acq("2023-02-01", 0.95), _acq("2023-03-01", 0.99)]
    chosen, _ = select_frames(acqs, 3, 0.5, "2023-01-01", "2023-12-31")
    assert [a.date for a in chosen] == ["2023-01-15", "2023-02-01", "2023-03-01"]
    with pytest.raises(ValueError, match="download.min_clear_fraction"):
        select_frames(acqs, 3, 0.92, "2023-01-01", "2023-12-31")


def test_write_aoi_stack_masks_orders_and_reprojects(scene, tmp_path):
    imagery, labels = scene
    out = tmp_path / "out"
    cfg = {
        "frames": 3,
        "resolution": 30,
        "mask_flags": ["cloud", "adjacent", "shadow"],
        "min_clear_fraction": 0.5,
        "block_size": 64,
    }
    record = write_aoi_stack(_aoi(), imagery, labels, cfg, out)

    assert [f["date"] for f in record["frames"]] == ["2023-02-10", "2023-05-20", "2023-09-15"]
    assert [d["date"] for d in record["dropped"]] == ["2023-06-01"]
    assert json.loads((out / "frames.json").read_text())["band_order"][:2] == ["t0_BLUE", "t0_GREEN"]

    for name in ("image.tif", "mask.tif", "label.tif"):
        valid, errors, _ = cog_validate(out / name)
        assert valid, (name, errors)

    grid = aoi_grid(_aoi(), 30.0)
    with rasterio.open(out / "image.tif") as src:
        assert src.count == 18 and src.dtypes[0] == "int16" and src.nodata == hls.REFLECTANCE_NODATA
        assert src.crs.to_epsg() == 32615 and src.transform == grid.transform
        assert list(src.descriptions) == hls.band_names(3)
        image = src.read()
        # Band t*6+b of the output holds band b of the t-th chosen date (dates 0, 1, 3 of the scene).
        for t, scene_t in enumerate([0, 1, 3]):
            for b in range(6):
                values = np.unique(image[t * 6 + b])
                assert set(values.tolist()) <= {1000 * (scene_t + 1) + b, hls.REFLECTANCE_NODATA}
        # The cloud (4x4) and shadow (2x4) of frame 0 are nodata in all six bands; cirrus is not.
        col0 = round((ORIGIN[0] - grid.left) / 30)
        row0 = round((grid.top - ORIGIN[1]) / 30)
        assert (image[0:6, row0 + 10 : row0 + 16, col0 + 10 : col0 + 14] == hls.REFLECTANCE_NODATA).all()
        assert (image[0:6, row0 + 30 : row0 + 34, col0 + 30 : col0 + 34] != hls.REFLECTANCE_NODATA).all()
        assert (image[6:12, row0 + 10 : row0 + 16, col0 + 10 : col0 + 14] != hls.REFLECTANCE_NODATA).all()
    with rasterio.open(out / "mask.tif") as src:
        mask = src.read()
        assert mask.shape[0] == 3
        assert (mask[0, row0 + 10 : row0 + 16, col0 + 10 : col0 + 14] == 1).all()
        assert int((mask[0] == 1).sum()) == 24
        assert int((mask[1:] == 1).sum()) == 0
    with rasterio.open(out / "label.tif") as src:
        label = src.read(1)
        assert src.nodata == classes.IGNORE_INDEX
        assert src.colormap(1)[0][:3] == classes.IO_COLOURS[1]
        assert src.tags().items() >= classes.class_tags().items()  # the same class metadata as the maps
        water, crops = classes.CLASS_CODES.index(1), classes.CLASS_CODES.index(5)
        assert set(np.unique(label).tolist()) <= {water, crops, classes.IGNORE_INDEX}
        # Water covers the first 60 label pixels (600 m = 20 imagery pixels) east of the label origin.
        label_col = col0 + 5
        assert label[row0 + 20, label_col] == water and label[row0 + 20, col0 + 30] == crops
        assert (label[row0 + 10 : row0 + 40, col0 + 21 :] != water).all()


def test_write_aoi_stack_fails_clearly_when_no_frame_is_clear(scene, tmp_path):
    imagery, labels = scene
    cfg = {"frames": 3, "min_clear_fraction": 0.999, "block_size": 64}
    with pytest.raises(ValueError, match="download.min_clear_fraction"):
        write_aoi_stack(_aoi(), imagery, labels, cfg, tmp_path / "out")
    assert not (tmp_path / "out" / "image.tif").exists()


# ------------------------------------------------------------------------------ season windows


def test_select_frames_by_season_windows_including_one_over_new_year():
    acqs = [
        _acq("2023-01-10", 0.99),  # winter window (wraps over New Year)
        _acq("2023-02-01", 0.7),
        _acq("2023-04-15", 0.8),  # spring
        _acq("2023-05-20", 0.9),
        _acq("2023-07-01", 1.0),  # between the windows: clearest of all, but in no window
        _acq("2023-12-20", 0.95),
    ]
    windows = [("12-01", "02-28"), ("04-01", "05-31")]
    chosen, records = select_frames(acqs, 2, 0.5, "2023-01-01", "2023-12-31", windows)
    assert [a.date for a in chosen] == ["2023-01-10", "2023-05-20"]
    status = {r["date"]: r["status"] for r in records}
    assert status["2023-07-01"] == "dropped: outside every download.season_windows window"
    assert status["2023-04-15"] == "dropped: a clearer date was chosen in its window"
    assert status["2023-12-20"] == "dropped: a clearer date was chosen in its window"
    window = {r["date"]: r["window"] for r in records}
    assert window["2023-12-20"] == "12-01..02-28" and window["2023-07-01"] is None
    # a window without an eligible date is filled with the clearest remaining date, and says so
    chosen, records = select_frames(acqs, 2, 0.5, "2023-01-01", "2023-12-31", [("04-01", "05-31"), ("09-01", "10-31")])
    assert [a.date for a in chosen] == ["2023-05-20", "2023-07-01"]
    assert {r["date"]: r["status"] for r in records}["2023-07-01"].endswith("(fills a window without an eligible date)")
    with pytest.raises(ValueError, match="season_windows has 1 windows but download.frames = 2"):
        select_frames(acqs, 2, 0.5, "2023-01-01", "2023-12-31", [("04-01", "05-31")])


def test_write_aoi_stack_with_season_windows_writes_the_dates_report(scene, tmp_path):
    imagery, labels = scene
    out = tmp_path / "out"
    cfg = {
        "frames": 2,
        "min_clear_fraction": 0.5,
        "block_size": 64,
        "season_windows": [["05-01", "06-30"], ["09-01", "09-30"]],
    }
    record = write_aoi_stack(_aoi(), imagery, labels, cfg, out)
    assert [f["date"] for f in record["frames"]] == ["2023-05-20", "2023-09-15"]
    assert record["selection"] == "season_windows" and record["season_windows"] == [
        ["05-01", "06-30"],
        ["09-01", "09-30"],
    ]
    rows = list(csv.DictReader((out / "dates.csv").open()))
    assert [r["date"] for r in rows] == ["2023-02-10", "2023-05-20", "2023-06-01", "2023-09-15"]
    by_date = {r["date"]: r for r in rows}
    assert by_date["2023-02-10"]["status"] == "dropped: outside every download.season_windows window"
    assert by_date["2023-06-01"]["status"] == "dropped: clear fraction below download.min_clear_fraction"
    assert by_date["2023-05-20"]["status"] == "frame 0" and by_date["2023-09-15"]["status"] == "frame 1"
    # clear fraction from Fmask alone: frame 0 of the scene has 24 cloud/shadow pixels of 48 x 48
    grid = aoi_grid(_aoi(), 30.0)
    assert float(by_date["2023-06-01"]["clear_fraction"]) < 0.5
    assert float(by_date["2023-05-20"]["clear_fraction"]) == pytest.approx(1.0)
    assert float(by_date["2023-02-10"]["clear_fraction"]) == pytest.approx(
        1 - 24 / (grid.width * grid.height), abs=1e-6
    )
    assert by_date["2023-05-20"]["items"] == imagery[1].id
    with pytest.raises(ValueError, match=r"download\.season_windows': 1 window\(s\) given but download\.frames = 2"):
        write_aoi_stack(_aoi(), imagery, labels, {**cfg, "season_windows": [["05-01", "06-30"]]}, tmp_path / "bad")


# ------------------------------------------------------------------- grids, CRS, antimeridian


def _tile_at(directory, sensor, when, epsg, lon_lat_box, value, tile):
    """An HLS-like item in ``epsg`` covering ``lon_lat_box``, every band = ``value`` (+ band index)."""
    left, bottom, right, top = transform_bounds("EPSG:4326", f"EPSG:{epsg}", *lon_lat_box)
    left, top = math.floor(left / 30) * 30, math.ceil(top / 30) * 30
    width, height = math.ceil((right - left) / 30), math.ceil((top - bottom) / 30)
    bands = np.stack([np.full((height, width), value + b, np.int16) for b in range(6)])
    fmask = np.zeros((height, width), np.uint8)
    return make_hls_item(directory, sensor, when, bands, fmask, epsg=epsg, origin=(left, top), tile=tile)


def _label_tile_at(directory, epsg, lon_lat_box, code, item_id):
    left, bottom, right, top = transform_bounds("EPSG:4326", f"EPSG:{epsg}", *lon_lat_box)
    left, top = math.floor(left / 30) * 30, math.ceil(top / 30) * 30
    width, height = math.ceil((right - left) / 30), math.ceil((top - bottom) / 30)
    item = make_label_item(directory / item_id, np.full((height, width), code, np.uint8), epsg, (left, top), 30.0)
    item.id = item_id
    return item


def test_aoi_across_two_utm_zones_is_one_grid_with_both_tiles(tmp_path):
    """The AOI straddles 96 W (UTM 14 | 15): tiles of both zones land on the one grid of the AOI centre's zone."""
    aoi = AOI("border", (-96.02, 42.0, -95.98, 42.03), date(2023, 1, 1), date(2023, 12, 31))
    when = datetime(2023, 6, 1)
    west = _tile_at(tmp_path / "w", "S30", when, 32614, (-96.03, 41.99, -95.995, 42.04), 1000, "T14TQL")
    east = _tile_at(tmp_path / "e", "S30", when, 32615, (-96.005, 41.99, -95.97, 42.04), 5000, "T15TTF")
    labels = [
        _label_tile_at(tmp_path, 32614, (-96.03, 41.99, -95.995, 42.04), 1, "14T-2023"),
        _label_tile_at(tmp_path, 32615, (-96.005, 41.99, -95.97, 42.04), 5, "15T-2023"),
    ]
    out = tmp_path / "out"
    cfg = {"frames": 1, "min_clear_fraction": 0.5, "block_size": 64}
    record = write_aoi_stack(aoi, pystac.ItemCollection([west, east]), pystac.ItemCollection(labels), cfg, out)
    assert record["grid"]["epsg"] == 32615 == utm_epsg(-96.0, 42.015)
    assert record["frames"][0]["items"] == sorted([west.id, east.id])  # one date, two tiles mosaicked
    with rasterio.open(out / "image.tif") as src:
        assert src.crs.to_epsg() == 32615
        blue = src.read(1)
    with rasterio.open(out / "label.tif") as src:
        label = src.read(1)
    width = blue.shape[1]
    assert set(np.unique(blue[:, : width // 4]).tolist()) == {1000}  # west: zone-14 tile (first wins)
    assert set(np.unique(blue[:, -width // 4 :]).tolist()) == {5000}  # east: zone-15 tile fills in
    assert (blue != hls.REFLECTANCE_NODATA).all()  # no gap along the zone boundary
    water, crops = classes.CLASS_CODES.index(1), classes.CLASS_CODES.index(5)
    assert set(np.unique(label[:, : width // 4]).tolist()) == {water}
    assert set(np.unique(label[:, -width // 4 :]).tolist()) == {crops}
    assert (label != classes.IGNORE_INDEX).all()


def _as_read_from_json(item: pystac.Item, keep_proj: bool = True) -> pystac.Item:
    """``item`` as the download stage sees it: read back from JSON, where pystac turns ``proj:epsg`` into
    ``proj:code``; without ``keep_proj`` also with no projection metadata and no media types (NASA CMR)."""
    document = item.to_dict(transform_hrefs=False)
    document["stac_extensions"] = ["https://stac-extensions.github.io/projection/v1.1.0/schema.json"]
    if not keep_proj:
        document["stac_extensions"] = []
        for key in [k for k in document["properties"] if k.startswith("proj:")]:
            del document["properties"][key]
        for asset in document["assets"].values():
            asset.pop("type", None)
    return pystac.Item.from_dict(document)


def test_items_without_proj_epsg_get_it_from_proj_code_or_the_asset_header(scene, tmp_path, monkeypatch):
    imagery, labels = scene
    migrated = _as_read_from_json(imagery[0])
    assert "proj:epsg" not in migrated.properties and migrated.properties["proj:code"] == "EPSG:32615"
    cmr_like = [_as_read_from_json(item, keep_proj=False) for item in imagery]
    for item in cmr_like:
        item.collection_id = "HLSS30_2.0" if ".S30." in item.id else "HLSL30_2.0"
    assert item_epsg(cmr_like[0]) is None and cmr_like[0].assets["B02"].media_type is None

    reads = []
    original = download_items._read_asset_grid
    monkeypatch.setattr(download_items, "_read_asset_grid", lambda *a: reads.append(a[0].id) or original(*a))
    fixed = download.with_projection([migrated, *cmr_like], stackstac.DEFAULT_GDAL_ENV)
    assert [i.properties["proj:epsg"] for i in fixed] == [32615] * 5
    assert len(reads) == 1  # one header per MGRS tile (all four scene items are tile T15TVG)
    assert fixed[1].properties["proj:shape"] == [SIZE, SIZE]
    assert fixed[1].properties["proj:transform"] == list(rasterio.transform.from_origin(*ORIGIN, 30, 30))[:6]
    assert "proj:epsg" not in cmr_like[0].properties  # the searched items are left untouched

    record = write_aoi_stack(_aoi(), pystac.ItemCollection(cmr_like), labels, {"frames": 3, "block_size": 64,
                             "min_clear_fraction": 0.5}, tmp_path / "cmr")  # fmt: skip
    reference = write_aoi_stack(_aoi(), imagery, labels, {"frames": 3, "block_size": 64, "min_clear_fraction": 0.5},
                                tmp_path / "pc")  # fmt: skip
    assert record["frames"] == reference["frames"]
    with rasterio.open(tmp_path / "cmr" / "image.tif") as a, rasterio.open(tmp_path / "pc" / "image.tif") as b:
        assert (a.read() == b.read()).all()


def test_real_cmr_item_gets_its_crs_from_the_real_fmask_header(tmp_path):
    from tests.conftest import require_fixtures

    fixtures = require_fixtures()
    item = pystac.Item.from_file(str(fixtures / "stac/cmr/item_HLS.S30.T10TEK.2021122T185911.v2.0.reconstructed.json"))
    assert item_epsg(item) is None
    # the real asset needs Earthdata login: put a real HLS Fmask COG (another tile, EPSG:32613) in its place
    item.assets["Fmask"].href = str(fixtures / "rasters/hls_fmask/HLS.S30.T13RCN.2024128T173909.v2.0.Fmask.tif")
    (fixed,) = download.with_projection([item], stackstac.DEFAULT_GDAL_ENV)
    assert fixed.properties["proj:epsg"] == 32613
    assert fixed.properties["proj:shape"] == [3660, 3660]
    assert sensor_assets(fixed)["NIR_NARROW"] == "B8A"


def test_label_tile_across_the_antimeridian(tmp_path):
    """An IO-like zone-60 tile crossing 180 degrees (bbox [-180, s, 180, n], proj:code only, as pystac reads
    IO items): without proj:epsg stackstac would project the world-wide bbox and drop the tile."""
    (left, right), (bottom, top) = rasterio.warp.transform("EPSG:4326", "EPSG:32660", [179.0, -179.5], [65.0, 65.3])
    left, top = math.floor(left / 30) * 30, math.ceil(top / 30) * 30
    width, height = math.ceil((right - left) / 30), math.ceil((top - bottom) / 30)
    codes = np.full((height, width), 2, np.uint8)
    codes[:, : width // 2] = 1
    item = make_label_item(tmp_path / "io", codes, epsg=32660, origin=(left, top), resolution=30.0)
    document = item.to_dict(transform_hrefs=False)
    document["stac_extensions"] = ["https://stac-extensions.github.io/projection/v1.1.0/schema.json"]
    document["bbox"] = [-180.0, item.bbox[1], 180.0, item.bbox[3]]
    document["properties"].update({"proj:transform": [30.0, 0.0, left, 0.0, -30.0, top], "proj:shape": [height, width]})
    tile = pystac.Item.from_dict(document)
    assert "proj:epsg" not in tile.properties
    aoi = AOI("chukotka", (179.6, 65.05, 179.95, 65.2), date(2023, 1, 1), date(2023, 12, 31))
    grid = aoi_grid(aoi, 30.0)
    assert grid.epsg == 32660
    with pytest.raises(ValueError, match="none of the label items.*overlaps the AOI grid"):
        download.label_stack([tile], grid, 256)  # the trap, with a clear message instead of an IndexError
    label = download.label_stack(download.with_projection([tile], stackstac.DEFAULT_GDAL_ENV), grid, 256).compute()
    water, trees = classes.CLASS_CODES.index(1), classes.CLASS_CODES.index(2)
    assert set(np.unique(label).tolist()) == {water, trees}


# --------------------------------------------------------------- credentials, retries, failures


def _served(items, server, root):
    """Copies of ``items`` whose asset hrefs point at ``server`` (files under ``root``)."""
    served = []
    for item in items:
        clone = item.clone()
        for asset in clone.assets.values():
            asset.href = f"{server.url}/{Path(asset.href).relative_to(root).as_posix()}"
        served.append(clone)
    return pystac.ItemCollection(served)


@pytest.fixture
def fast_gdal_retries(monkeypatch):
    monkeypatch.setattr(download_environment, "GDAL_HTTP_MAX_RETRY", 2)
    monkeypatch.setattr(download_environment, "GDAL_HTTP_RETRY_DELAY_S", 0.05)


CFG = {"frames": 3, "min_clear_fraction": 0.5, "block_size": 64}


def test_earthdata_token_reaches_the_imagery_host_only_and_never_logs_or_outputs(scene, tmp_path, monkeypatch, caplog):
    imagery, labels = scene
    token = "EDL-t0ken-never-in-logs"
    monkeypatch.setenv("EARTHDATA_TOKEN", token)
    caplog.set_level(logging.DEBUG)
    with serve_files(tmp_path / "hls") as nasa, serve_files(tmp_path / "io") as pc:
        served_imagery = _served(imagery, nasa, tmp_path / "hls")
        served_labels = _served(labels, pc, tmp_path / "io")
        out = tmp_path / "out"
        record = write_aoi_stack(_aoi(), served_imagery, served_labels, CFG, out, imagery_signing="earthdata")
        assert nasa.hits() and pc.hits()
        assert all(r.headers.get("Authorization") == f"Bearer {token}" for r in nasa.hits())
        assert not any("Authorization" in r.headers for r in pc.hits())
    assert [f["date"] for f in record["frames"]] == ["2023-02-10", "2023-05-20", "2023-09-15"]
    assert token not in caplog.text and "NASA Earthdata credentials: bearer token from $EARTHDATA_TOKEN" in caplog.text
    for path in out.iterdir():
        assert token.encode() not in path.read_bytes(), path
    with download.gdal_env("earthdata") as env:
        header_file = Path(env.always.options["GDAL_HTTP_HEADER_FILE"])
        assert token not in repr(env) and header_file.read_text() == f"Authorization: Bearer {token}\n"
        assert oct(header_file.stat().st_mode & 0o777) == "0o600"
    assert not header_file.exists()


def test_netrc_credentials_go_to_gdal_by_path(tmp_path, monkeypatch):
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine urs.earthdata.nasa.gov login alice password pw-secret\n")
    netrc_file.chmod(0o600)
    monkeypatch.delenv("EARTHDATA_TOKEN", raising=False)
    monkeypatch.setenv("NETRC", str(netrc_file))
    with download.gdal_env("earthdata") as env:
        options = env.always.options
        assert options["GDAL_HTTP_NETRC"] == "YES" and options["GDAL_HTTP_NETRC_FILE"] == str(netrc_file.resolve())
        assert options["GDAL_HTTP_COOKIEFILE"] == options["GDAL_HTTP_COOKIEJAR"]
        assert "pw-secret" not in repr(env)
    with download.gdal_env("planetary_computer") as env:
        options = env.always.options
        assert options["GDAL_HTTP_NETRC"] == "NO" and Path(options["GDAL_HTTP_NETRC_FILE"]).read_text() == ""
        assert Path(options["GDAL_HTTP_HEADER_FILE"]).read_text() == "" and options["GDAL_HTTP_MAX_RETRY"] == "5"


def test_private_gdal_folder_is_removed_even_when_a_late_read_writes_to_it(monkeypatch):
    """A read that outlives a failed one writes the cookie jar after the first removal listed the folder:
    the folder must still go, and the error that ended the block must be the one the caller sees."""
    real_rmtree = download_environment.shutil.rmtree
    calls = []

    def rmtree_then_late_write(path, ignore_errors=False):
        calls.append(path)
        real_rmtree(path, ignore_errors=ignore_errors)
        if len(calls) == 1:  # a still-running read closes its curl handle: the cookie jar reappears
            Path(path).mkdir()
            (Path(path) / "cookies.txt").write_text("# Netscape HTTP Cookie File\n")

    monkeypatch.setattr(download_environment.shutil, "rmtree", rmtree_then_late_write)
    with pytest.raises(download.AssetContentError, match="the real error"):
        with download.gdal_env("planetary_computer") as env:
            private = Path(env.always.options["GDAL_HTTP_COOKIEJAR"]).parent
            raise download.AssetContentError("the real error")
    assert len(calls) == 2 and not private.exists()


def test_missing_earthdata_credentials_fail_before_any_request(scene, tmp_path, monkeypatch):
    imagery, labels = scene
    monkeypatch.delenv("EARTHDATA_TOKEN", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    with serve_files(tmp_path / "hls") as nasa:
        with pytest.raises(CredentialsError, match=r"stac\.imagery\.signing is 'earthdata' but no NASA Earthdata"):
            write_aoi_stack(_aoi(), _served(imagery, nasa, tmp_path / "hls"), labels, CFG, tmp_path / "out",
                            imagery_signing="earthdata")  # fmt: skip
        assert nasa.hits() == []
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_transient_http_errors_are_retried(scene, tmp_path, fast_gdal_retries):
    imagery, labels = scene
    with serve_files(tmp_path / "hls") as server:
        served = _served(imagery, server, tmp_path / "hls")
        fmask = "/" + Path(imagery[0].assets["Fmask"].href).relative_to(tmp_path / "hls").as_posix()
        red = "/" + Path(imagery[1].assets["B04"].href).relative_to(tmp_path / "hls").as_posix()
        server.fail(fmask, 2, 503)
        server.fail(red, 2, 429)
        record = write_aoi_stack(_aoi(), served, labels, CFG, tmp_path / "out")
        assert len(server.hits(fmask)) >= 3 and len(server.hits(red)) >= 3
    assert [f["date"] for f in record["frames"]] == ["2023-02-10", "2023-05-20", "2023-09-15"]
    write_aoi_stack(_aoi(), imagery, labels, CFG, tmp_path / "local")
    with rasterio.open(tmp_path / "out" / "image.tif") as a, rasterio.open(tmp_path / "local" / "image.tif") as b:
        assert (a.read() == b.read()).all()


def test_persistent_http_error_names_the_url_and_leaves_no_output(scene, tmp_path, fast_gdal_retries):
    imagery, labels = scene
    with serve_files(tmp_path / "io") as server:
        served = _served(labels, server, tmp_path / "io")
        for asset in served[0].assets.values():
            asset.href += "?se=2030&sig=SAS-SECRET"  # as a signed Planetary Computer URL
        path = urlsplit(served[0].assets["data"].href).path
        server.fail(path, -1, 503)
        out = tmp_path / "out"
        with pytest.raises(DownloadError) as excinfo:
            write_aoi_stack(_aoi(), imagery, served, CFG, out)
        assert len(server.hits(path)) >= 3  # retried before giving up
    message = str(excinfo.value)
    assert f"{server.url}{path}?<redacted>" in message and "retries with exponential backoff" in message
    assert "SAS-SECRET" not in message
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__
    # image.tif and mask.tif were written before the labels failed: all outputs are gone again
    assert not [p.name for p in out.iterdir() if not p.name.startswith(".")] if out.exists() else True
    assert not list(out.glob("*.tif")) and not (out / "frames.json").exists()


def test_unreachable_asset_host_fails_before_any_work(scene, tmp_path):
    imagery, labels = scene
    with serve_files(tmp_path / "hls") as server:
        served = _served(imagery, server, tmp_path / "hls")
    # the server is gone: its port refuses connections
    with pytest.raises(
        SourceUnreachableError, match=r"the stac\.imagery assets, e\.g\. http://127\.0\.0\.1:\d+/.* is not"
    ):
        write_aoi_stack(_aoi(), served, labels, CFG, tmp_path / "out")


def _no_outputs(out: Path) -> bool:
    return not out.exists() or not [p.name for p in out.iterdir() if not p.name.startswith(".")]


# ------------------------------------------------------------ no STAC API needed, cached search results


def _with_api_links(items, api_url: str) -> pystac.ItemCollection:
    """Copies of ``items`` with the links a STAC API gives its items (root, self, parent, collection)."""
    linked = []
    for item in items:
        clone = item.clone()
        clone.clear_links()
        collection = f"{api_url}/collections/{clone.collection_id}"
        clone.add_link(pystac.Link("root", f"{api_url}/", media_type="application/json"))
        clone.add_link(pystac.Link("parent", collection, media_type="application/json"))
        clone.add_link(pystac.Link("collection", collection, media_type="application/json"))
        clone.add_link(pystac.Link("self", f"{collection}/items/{clone.id}", media_type="application/geo+json"))
        linked.append(clone)
    return pystac.ItemCollection(linked)


@pytest.mark.parametrize("api", ["counting", "absent"])
def test_download_needs_no_stac_api(scene, tmp_path, api):
    """Items cached by the search, whose root/self/parent links point at a STAC API that counts requests (or
    is down): the download reads the asset hosts only. stackstac's ``Item.to_dict()`` used to fetch the root
    link once per item, and died with ``STACError: HREF ... does not resolve to a STAC object``."""
    imagery, labels = scene
    (tmp_path / "api").mkdir()
    with contextlib.ExitStack() as servers:
        hls_host = servers.enter_context(serve_files(tmp_path / "hls"))
        io_host = servers.enter_context(serve_files(tmp_path / "io"))
        if api == "counting":
            stac_api = servers.enter_context(serve_files(tmp_path / "api"))
            api_url = stac_api.url
        else:
            with serve_files(tmp_path / "api") as gone:  # started and stopped: its port refuses connections
                api_url = gone.url
        cached = tmp_path / "results" / "search" / "tiny"
        for name, items, host, root in (("imagery", imagery, hls_host, "hls"), ("labels", labels, io_host, "io")):
            linked = _with_api_links(_served(items, host, tmp_path / root), api_url)
            save_item_collection(linked, cached / f"{name}.json", relative_to=tmp_path / "results")
        _download_from_cache(cached, tmp_path)
        if api == "counting":
            assert stac_api.hits() == []
        assert hls_host.hits() and io_host.hits()  # the assets did come from their hosts
    first = json.loads((cached / "imagery.json").read_text())["features"][0]
    assert {link["rel"] for link in first["links"]} >= {"root", "parent", "self"}  # the cache keeps the links


def _download_from_cache(cached: Path, tmp_path: Path) -> None:
    """Run the download on the cached search results, read both ways a rule script might read them."""
    for name, read in (("loaded", load_item_collection), ("pystac", lambda p: pystac.ItemCollection.from_file(str(p)))):
        imagery, labels = read(cached / "imagery.json"), read(cached / "labels.json")
        assert {link.rel for link in imagery[0].links} >= {"root", "parent", "self"}  # pointing at the API
        record = write_aoi_stack(_aoi(), imagery, labels, CFG, tmp_path / name)
        assert [f["date"] for f in record["frames"]] == ["2023-02-10", "2023-05-20", "2023-09-15"]
        assert all((tmp_path / name / output).is_file() for output in download.OUTPUT_NAMES)


def test_copied_results_tree_downloads_from_its_own_files(scene, tmp_path):
    """The search stores local hrefs inside results/ relative to its output, so a copied results tree (the
    demo catalog lives in results/demo) reads its own files, never the original tree's (which is deleted)."""
    imagery, labels = scene
    results = tmp_path / "run" / "results"
    catalog = pystac.Catalog("demo", "a static catalog inside the results tree, as the demo writes one")
    for kind, items in (("hls", imagery), ("io", labels)):
        shutil.copytree(tmp_path / kind, results / "demo" / kind)
        for item in items:
            clone = item.clone()
            for asset in clone.assets.values():
                asset.href = str(results / "demo" / kind / Path(asset.href).relative_to(tmp_path / kind))
            catalog.add_item(clone)
    catalog.normalize_hrefs(str(results / "demo"))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    cached = results / "search" / "tiny"
    for name, collections in (("imagery", ["hls2-s30", "hls2-l30"]), ("labels", ["io-lulc-annual-v02"])):
        query = {"source": str(results / "demo" / "catalog.json"), "collections": collections}
        save_item_collection(search_items(_aoi(), query), cached / f"{name}.json", relative_to=results)
    stored = json.loads((cached / "imagery.json").read_text())["features"]
    assert all(a["href"].startswith("../../demo/hls/") for f in stored for a in f["assets"].values())
    assert not any(link["rel"] == "self" for f in stored for link in f["links"])  # it would be the old tree's
    reference = write_aoi_stack(
        _aoi(), load_item_collection(cached / "imagery.json"), load_item_collection(cached / "labels.json"), CFG,
        tmp_path / "original",
    )  # fmt: skip

    copy = tmp_path / "elsewhere" / "results"
    shutil.copytree(results, copy)
    shutil.rmtree(tmp_path / "run")
    copied = [load_item_collection(copy / "search" / "tiny" / f"{name}.json") for name in ("imagery", "labels")]
    hrefs = [a.href for items in copied for item in items for a in item.assets.values()]
    assert hrefs and all(href.startswith(str(copy / "demo")) for href in hrefs)
    record = write_aoi_stack(_aoi(), *copied, CFG, tmp_path / "copy")
    assert record["frames"] == reference["frames"]
    for name in ("image.tif", "label.tif"):
        with rasterio.open(tmp_path / "copy" / name) as a, rasterio.open(tmp_path / "original" / name) as b:
            assert (a.read() == b.read()).all()


def test_missing_or_unresolved_local_assets_fail_before_reading(scene, tmp_path):
    imagery, labels = scene
    relative = [item.clone() for item in imagery]
    relative[1].assets["B04"].href = "hls/B04.tif"  # search results read without resolving their hrefs
    expected = rf"asset 'B04' of STAC item '{re.escape(imagery[1].id)}' has the relative href 'hls/B04\.tif'"
    with pytest.raises(ValueError, match=expected + r": read the search results with lulc\.search\.load_item"):
        write_aoi_stack(_aoi(), pystac.ItemCollection(relative), labels, CFG, tmp_path / "relative")
    Path(labels[0].assets["data"].href).unlink()
    with pytest.raises(FileNotFoundError, match=r"labels: asset 'data' of STAC item '15T-2023': the local file "
                       r".*15T-2023\.tif does not exist"):  # fmt: skip
        write_aoi_stack(_aoi(), imagery, labels, CFG, tmp_path / "missing")
    assert _no_outputs(tmp_path / "relative") and _no_outputs(tmp_path / "missing")


# --------------------------------------------------------------- errors that are not the network


def _make_multi_band(path: str) -> None:
    """Rewrite a single-band GeoTIFF as a 3-band one (same grid)."""
    with rasterio.open(path) as src:
        profile, band = src.profile, src.read(1)
    profile.update(count=3)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.stack([band] * 3))


@pytest.mark.parametrize("where", ["local", "http"])
def test_multi_band_asset_names_item_asset_and_problem_not_retries(scene, tmp_path, where):
    imagery, labels = scene
    _make_multi_band(imagery[1].assets["B04"].href)
    out = tmp_path / "out"
    with serve_files(tmp_path / "hls") as server:
        items = _served(imagery, server, tmp_path / "hls") if where == "http" else imagery
        with pytest.raises(download.AssetContentError) as excinfo:
            write_aoi_stack(_aoi(), items, labels, CFG, out)
    message = str(excinfo.value)
    assert f"asset 'B04' of STAC item '{imagery[1].id}'" in message
    assert "has 3 bands, but the download reads single-band assets" in message
    assert "retries" not in message and "HTTP" not in message
    assert isinstance(excinfo.value, DownloadError)  # still a download failure for callers that catch those
    assert _no_outputs(out)


def test_damaged_local_file_names_item_asset_and_problem_not_retries(scene, tmp_path):
    imagery, labels = scene
    fmask = Path(imagery[0].assets["Fmask"].href)
    fmask.write_bytes(fmask.read_bytes()[: fmask.stat().st_size // 2])  # a truncated copy: header, half the tiles
    out = tmp_path / "out"
    with pytest.raises(download.AssetContentError) as excinfo:
        write_aoi_stack(_aoi(), imagery, labels, CFG, out)
    message = str(excinfo.value)
    assert f"asset 'Fmask' of STAC item '{imagery[0].id}' ({fmask})" in message
    assert "cannot be read (a damaged, truncated or non-raster file; retrying does not help)" in message
    assert "TIFFReadEncodedTile" in message  # GDAL's own reason, from the chained exceptions
    assert "retries" not in message and "HTTP" not in message
    assert _no_outputs(out)


def test_missing_remote_asset_is_an_error_not_nodata(scene, tmp_path, fast_gdal_retries):
    """stackstac turns an HTTP 404 into nodata by default: a missing band would silently become an empty frame."""
    imagery, labels = scene
    with serve_files(tmp_path / "hls") as server:
        served = _served(imagery, server, tmp_path / "hls")
        server.fail(urlsplit(served[1].assets["B04"].href).path, -1, 404)
        expected = rf"asset 'B04' of STAC item '{re.escape(imagery[1].id)}' .*HTTP response code: 404"
        with pytest.raises(DownloadError, match=expected):
            write_aoi_stack(_aoi(), served, labels, CFG, tmp_path / "out")
    assert _no_outputs(tmp_path / "out")


# ------------------------------------------------------------------------------- label class codes


def test_label_codes_outside_the_io_classes_stop_with_the_codes_and_the_item(scene, tmp_path):
    """A label raster with Grass (3) and Scrub (6) of the older 10-class io-lulc, and no class table in its
    metadata: the codes found in the label window stop the stage before any imagery is read."""
    imagery, _ = scene
    codes = np.full((SIZE * 3 + 6, SIZE * 3 + 6), 5, np.uint8)
    codes[:60, :60] = 3
    codes[-60:, -60:] = 6
    label = make_label_item(tmp_path / "io10", codes, origin=(ORIGIN[0] - 5.0, ORIGIN[1] + 5.0))
    assert download.declared_label_codes(label) is None
    out = tmp_path / "out"
    with serve_files(tmp_path / "hls") as server:
        with pytest.raises(download.LabelCodeError) as excinfo:
            write_aoi_stack(_aoi(), _served(imagery, server, tmp_path / "hls"), pystac.ItemCollection([label]), CFG,
                            out)  # fmt: skip
        assert server.hits() == []  # the labels are written (and checked) first
    message = str(excinfo.value)
    assert "label codes 3, 6 in item '15T-2023'" in message
    assert "are not in legend 'io-lulc-9' (classes water=1, trees=2, flooded_vegetation=4, crops=5" in message
    assert "pixels of code 3" in message and "pixels of code 6" in message
    assert _no_outputs(out)
    # the same items under the legend that has these codes: grass and scrub are classes there
    io10 = download.LabelSource(preset("io-lulc-10"))
    with serve_files(tmp_path / "hls") as server:
        write_aoi_stack(_aoi(), _served(imagery, server, tmp_path / "hls"), pystac.ItemCollection([label]), CFG,
                        out, label_source=io10)  # fmt: skip
    with rasterio.open(out / "label.tif") as src:
        written = read_legend(out / "label.tif")
        values = set(np.unique(src.read(1)).tolist())
    assert written.name == "io-lulc-10" and written.names[2] == "grass" and written.names[5] == "scrub_shrub"
    assert {2, 4, 5} <= values  # grass, crops, scrub as io-lulc-10 indices


def test_items_without_a_class_table_need_a_legend(scene, tmp_path):
    """With labels.legend unset, label items that declare no class table are refused: their codes would be read
    as IO codes by guess."""
    imagery, _ = scene
    label = make_label_item(tmp_path / "plain", np.full((SIZE * 3 + 6, SIZE * 3 + 6), 5, np.uint8),
                            origin=(ORIGIN[0] - 5.0, ORIGIN[1] + 5.0))  # fmt: skip
    unset = download.LabelSource.from_config({})
    assert unset.legend.name == "io-lulc-9" and not unset.legend_given
    with pytest.raises(download.LabelCodeError, match=r"'15T-2023' .* declares no class table .* labels.legend"):
        write_aoi_stack(_aoi(), imagery, pystac.ItemCollection([label]), CFG, tmp_path / "out", label_source=unset)
    assert _no_outputs(tmp_path / "out")


def _io_lulc_10_class_values() -> list[dict]:
    names = ["No Data", "Water", "Trees", "Grass", "Flooded vegetation", "Crops", "Scrub", "Built area",
             "Bare ground", "Snow/Ice", "Clouds"]  # fmt: skip
    return [{"values": [code], "summary": name} for code, name in enumerate(names)]


def test_declared_class_table_with_unknown_codes_is_refused_before_any_read(scene, tmp_path):
    imagery, labels = scene
    old = labels[0].clone()
    old.collection_id = "io-lulc"
    old.assets["data"].extra_fields["file:values"] = _io_lulc_10_class_values()
    assert download.declared_label_codes(old) == {1: "Water", 2: "Trees", 3: "Grass", 4: "Flooded vegetation",
                                                  5: "Crops", 6: "Scrub", 7: "Built area", 8: "Bare ground",
                                                  9: "Snow/Ice", 10: "Clouds"}  # fmt: skip
    with serve_files(tmp_path / "io") as server:
        with pytest.raises(download.LabelCodeError) as excinfo:
            write_aoi_stack(_aoi(), imagery, _served([old], server, tmp_path / "io"), CFG, tmp_path / "out")
        assert server.hits() == []
    message = str(excinfo.value)
    assert "label codes 3 (Grass), 6 (Scrub) in item '15T-2023' (collection 'io-lulc', declared by its" in message
    assert "are not in legend 'io-lulc-9'" in message
    # the classification extension's form, in raster:bands with an explicit nodata entry
    old.assets["data"].extra_fields.pop("file:values")
    old.assets["data"].extra_fields["raster:bands"] = [
        {"nodata": 0, "classification:classes": [{"value": 0, "name": "no_data", "nodata": True},
                                                 {"value": 1, "name": "water"}, {"value": 3, "name": "grass"}]}
    ]  # fmt: skip
    assert download.declared_label_codes(old) == {1: "water", 3: "grass"}
    with pytest.raises(download.LabelCodeError, match=r"label codes 3 \(grass\) in item '15T-2023'"):
        download.check_label_classes([old], classes.IO)


def test_real_io_lulc_v02_items_declare_exactly_the_mapped_classes():
    from tests.conftest import require_fixtures

    documents = json.loads((require_fixtures() / "stac/pc/items_io-lulc-annual-v02.json").read_text())
    items = [pystac.Item.from_dict(document) for document in documents]
    for item in items:
        table = download.declared_label_codes(item)
        assert table is not None and tuple(table) == classes.CLASS_CODES, item.id
        assert table[11] == "Rangeland" and table[1] == "Water"
    download.check_label_classes(items, classes.IO)


# ------------------------------------------------------------------ imagery only, on an explicit grid

REGION_TILE = "map region tiny 2023 tile 32615_r000_c001"


def _imagery_only(grid, imagery, out, cfg=CFG, **kwargs):
    aoi = _aoi()
    return write_imagery_stack(REGION_TILE, aoi.start, aoi.end, grid, imagery, cfg, out, **kwargs)


def _outputs(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) if out.exists() else []


@pytest.fixture
def gradient_scene(tmp_path):
    """Three acquisitions (one per equal window of 2023, so every window of the AOI grid chooses all three) whose
    pixels all differ (row, column, band and date make the value), and a cloud in the first one's south-east:
    a window read one pixel off cannot match."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    items = []
    for t, (when, sensor) in enumerate(
        [(datetime(2023, 2, 10), "S30"), (datetime(2023, 6, 1), "L30"), (datetime(2023, 10, 5), "S30")]
    ):
        bands = np.stack([(1 + rows * SIZE + cols + 2500 * b + 300 * t).astype(np.int16) for b in range(6)])
        fmask = np.zeros((SIZE, SIZE), np.uint8)
        if t == 0:
            fmask[30:34, 30:33] = 1 << hls.FMASK_BITS["cloud"]
        items.append(make_hls_item(tmp_path / "hls", sensor, when, bands, fmask, origin=ORIGIN))
    return pystac.ItemCollection(items)


def _read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        meta = {
            "crs": src.crs, "transform": src.transform, "shape": (src.count, src.height, src.width),
            "dtype": src.dtypes[0], "nodata": src.nodata, "descriptions": src.descriptions, "tags": src.tags(),
        }  # fmt: skip
        return src.read(), meta


def test_imagery_only_on_the_aoi_grid_equals_the_aoi_download_without_labels(scene, tmp_path):
    imagery, labels = scene
    grid = aoi_grid(_aoi(), 30.0)
    reference = write_aoi_stack(_aoi(), imagery, labels, CFG, tmp_path / "aoi")
    record = _imagery_only(grid, imagery, tmp_path / "tile")

    assert _outputs(tmp_path / "tile") == sorted(download.IMAGERY_OUTPUT_NAMES)
    assert "label.tif" not in download.IMAGERY_OUTPUT_NAMES
    assert set(download.IMAGERY_OUTPUT_NAMES) | {"label.tif"} == set(download.OUTPUT_NAMES)
    assert record["aoi"] == REGION_TILE and json.loads((tmp_path / "tile" / "frames.json").read_text()) == record
    assert record["grid"] == {"epsg": grid.epsg, "resolution": grid.resolution, "bounds": list(grid.bounds),
                              "width": grid.width, "height": grid.height}  # fmt: skip
    assert {**record, "aoi": "tiny"} == reference
    assert (tmp_path / "tile" / "dates.csv").read_text() == (tmp_path / "aoi" / "dates.csv").read_text()
    for name in ("image.tif", "mask.tif"):
        valid, errors, _ = cog_validate(tmp_path / "tile" / name)
        assert valid, (name, errors)
        tile, tile_meta = _read(tmp_path / "tile" / name)
        aoi, aoi_meta = _read(tmp_path / "aoi" / name)
        assert tile_meta == aoi_meta and np.array_equal(tile, aoi), name
        assert tile_meta["crs"].to_epsg() == grid.epsg and tile_meta["transform"] == grid.transform
        assert tile_meta["shape"][1:] == (grid.height, grid.width)
    assert _read(tmp_path / "tile" / "image.tif")[1]["descriptions"] == tuple(hls.band_names(3))


def _window(grid: download.Grid, row0: int, col0: int, height: int, width: int) -> download.Grid:
    """The part of ``grid`` from pixel (row0, col0), ``height`` x ``width`` pixels: the same pixel lattice."""
    left, top = grid.left + col0 * grid.resolution, grid.top - row0 * grid.resolution
    return download.Grid(grid.epsg, grid.resolution, left, top, width, height)


def test_tiles_of_a_region_line_up_pixel_for_pixel_with_the_whole_region(gradient_scene, tmp_path):
    full = aoi_grid(_aoi(), 30.0)
    whole = _imagery_only(full, gradient_scene, tmp_path / "whole")
    image, image_meta = _read(tmp_path / "whole" / "image.tif")
    mask, _ = _read(tmp_path / "whole" / "mask.tif")
    assert len(np.unique(image[6])) == full.width * full.height  # every pixel differs: a shift shows
    assert (mask == 1).sum() == 12  # the cloud
    half_w, third_h = full.width // 2, full.height // 3
    windows = {
        "right half": (0, half_w, full.height, full.width - half_w),
        "south-east": (third_h, half_w, full.height - third_h, full.width - half_w),
        "interior": (third_h, 7, third_h + 2, half_w + 3),
    }
    for label, (row0, col0, height, width) in windows.items():
        grid = _window(full, row0, col0, height, width)
        out = tmp_path / label.replace(" ", "_")
        record = _imagery_only(grid, gradient_scene, out)
        assert [f["date"] for f in record["frames"]] == [f["date"] for f in whole["frames"]], label
        tile, tile_meta = _read(out / "image.tif")
        assert tile_meta["transform"] == grid.transform and tile_meta["shape"] == (18, height, width), label
        assert tile_meta["tags"] == image_meta["tags"] and tile_meta["descriptions"] == image_meta["descriptions"]
        assert np.array_equal(tile, image[:, row0 : row0 + height, col0 : col0 + width]), label
        tile_mask, _ = _read(out / "mask.tif")
        assert np.array_equal(tile_mask, mask[:, row0 : row0 + height, col0 : col0 + width]), label
    assert (_read(tmp_path / "south-east" / "mask.tif")[0] == 1).sum() == 12  # the cloud is in that tile


def test_imagery_only_leaves_out_dates_that_miss_the_grid(gradient_scene, tmp_path):
    """A region's imagery holds tiles that miss some of its map tiles: their dates are not candidates there."""
    east = (ORIGIN[0] + SIZE * 30 + 3000.0, ORIGIN[1])
    bands = np.full((6, SIZE, SIZE), 500, np.int16)
    elsewhere = make_hls_item(tmp_path / "hls", "L30", datetime(2023, 7, 1), bands, np.zeros((SIZE, SIZE), np.uint8),
                              origin=east, tile="T15TWG")  # fmt: skip
    imagery = pystac.ItemCollection([*gradient_scene, elsewhere])
    scene_grid = download.Grid(32615, 30.0, ORIGIN[0], ORIGIN[1], SIZE, SIZE)
    record = _imagery_only(scene_grid, imagery, tmp_path / "out")
    assert [c["date"] for c in record["candidates"]] == ["2023-02-10", "2023-06-01", "2023-10-05"]
    far = download.Grid(32615, 30.0, ORIGIN[0] + 100_000.0, ORIGIN[1], SIZE, SIZE)
    with pytest.raises(ValueError, match=rf"^{REGION_TILE}: none of the 4 imagery items overlaps the grid"):
        _imagery_only(far, imagery, tmp_path / "far")
    assert _outputs(tmp_path / "far") == []
    # an AOI (items searched by its own bbox) still refuses such a date, as it always did
    labels = pystac.ItemCollection([make_label_item(tmp_path / "io", np.full((SIZE * 3, SIZE * 3), 5, np.uint8),
                                                    origin=ORIGIN)])  # fmt: skip
    with pytest.raises(ValueError, match="of 2023-07-01 L30 overlaps the AOI grid"):
        write_aoi_stack(_aoi(), imagery, labels, CFG, tmp_path / "aoi")


def test_imagery_only_over_http_reads_the_imagery_host_only(scene, tmp_path, monkeypatch):
    """Served imagery with an Earthdata token, items linked to a STAC API that counts requests: only the imagery
    host is checked, given credentials and read; there is no label source, and no GDAL environment for one."""
    imagery, _ = scene
    token = "EDL-t0ken-tile"
    monkeypatch.setenv("EARTHDATA_TOKEN", token)
    reachable, environments = [], []
    real_check, real_env = download_stack.check_reachable, download_stack.gdal_env
    monkeypatch.setattr(
        download_stack, "check_reachable", lambda href, what: reachable.append(href) or real_check(href, what)
    )
    monkeypatch.setattr(download_stack, "gdal_env", lambda signing: environments.append(signing) or real_env(signing))
    grid = aoi_grid(_aoi(), 30.0)
    (tmp_path / "api").mkdir()
    with serve_files(tmp_path / "hls") as nasa, serve_files(tmp_path / "api") as stac_api:
        served = _with_api_links(_served(imagery, nasa, tmp_path / "hls"), stac_api.url)
        record = _imagery_only(grid, served, tmp_path / "http", imagery_signing="earthdata")
        assert nasa.hits() and all(r.headers.get("Authorization") == f"Bearer {token}" for r in nasa.hits())
        assert stac_api.hits() == []
    assert len(reachable) == 1 and reachable[0].startswith(nasa.url) and environments == ["earthdata"]
    assert [f["date"] for f in record["frames"]] == ["2023-02-10", "2023-05-20", "2023-09-15"]
    _imagery_only(grid, imagery, tmp_path / "local")
    for name in ("image.tif", "mask.tif"):
        assert np.array_equal(_read(tmp_path / "http" / name)[0], _read(tmp_path / "local" / name)[0]), name
    for path in (tmp_path / "http").iterdir():
        assert token.encode() not in path.read_bytes(), path


def test_imagery_only_failure_midway_leaves_no_output(scene, tmp_path, monkeypatch):
    imagery, _ = scene
    grid = aoi_grid(_aoi(), 30.0)
    out = tmp_path / "out"
    # frames.json, the last output, fails: image.tif, mask.tif and dates.csv were written and go again
    written = []

    def fail(record, path):
        written.extend(_outputs(out))
        raise OSError(f"disk full writing {path}")

    with monkeypatch.context() as patch:
        patch.setattr(download_stack, "write_json", fail)
        with pytest.raises(OSError, match="disk full"):
            _imagery_only(grid, imagery, out)
    assert written == ["dates.csv", "image.tif", "mask.tif"] and _outputs(out) == []
    # a damaged band of a chosen frame (its Fmask is fine, so the failure comes once writing has begun), after a
    # run that succeeded: none of the four outputs is left, the old ones included
    _imagery_only(grid, imagery, out)
    assert _outputs(out) == sorted(download.IMAGERY_OUTPUT_NAMES)
    red = Path(imagery[1].assets["B04"].href)
    red.write_bytes(red.read_bytes()[: red.stat().st_size // 2])
    with pytest.raises(download.AssetContentError) as excinfo:
        _imagery_only(grid, imagery, out)
    message = str(excinfo.value)
    assert message.startswith(f"{REGION_TILE}: imagery: asset 'B04' of STAC item '{imagery[1].id}'")
    assert "cannot be read (a damaged, truncated or non-raster file" in message
    assert _outputs(out) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"width": 0}, "the grid's width must be a positive number of pixels, got 0"),
        ({"height": -3}, "the grid's height must be a positive number of pixels, got -3"),
        ({"width": 10.5}, "the grid's width must be a positive number of pixels, got 10.5"),
        ({"resolution": 0.0}, "the grid's resolution must be a positive number of metres, got 0.0"),
        ({"top": float("nan")}, "the grid's left and top must be finite numbers"),
        ({"epsg": 999999}, "the grid's EPSG code 999999 is not a known CRS"),
    ],
)
def test_imagery_only_refuses_a_bad_grid_naming_the_place(scene, tmp_path, change, problem):
    imagery, _ = scene
    grid = download.Grid(**{**vars(aoi_grid(_aoi(), 30.0)), **change})
    with pytest.raises(ValueError, match=f"^{re.escape(REGION_TILE)}: {re.escape(problem)}"):
        _imagery_only(grid, imagery, tmp_path / "out")
    assert _outputs(tmp_path / "out") == []


def test_imagery_only_refuses_a_bad_period_or_no_imagery_naming_the_place(scene, tmp_path):
    imagery, _ = scene
    grid = aoi_grid(_aoi(), 30.0)
    with pytest.raises(ValueError, match=f"^{re.escape(REGION_TILE)}: the period must be two dates, start <= end"):
        write_imagery_stack(REGION_TILE, date(2023, 12, 31), date(2023, 1, 1), grid, imagery, CFG, tmp_path / "out")
    with pytest.raises(ValueError, match=f"^{re.escape(REGION_TILE)}: the imagery ItemCollection is empty"):
        _imagery_only(grid, pystac.ItemCollection([]), tmp_path / "out")
    assert _outputs(tmp_path / "out") == []


# ------------------------------------------------------------------ labels only, on an explicit grid


def test_label_raster_of_a_tile_core_equals_the_aoi_labels_in_that_window(scene, tmp_path):
    """A labelled map region's tile gets label.tif alone, on the tile core's grid: the same mode-resampled class
    indices, colours and tags as the AOI download's label.tif over the same pixels."""
    imagery, labels = scene
    full = aoi_grid(_aoi(), 30.0)
    write_aoi_stack(_aoi(), imagery, labels, CFG, tmp_path / "aoi")
    whole, whole_meta = _read(tmp_path / "aoi" / "label.tif")
    row0, col0, height, width = 1, 3, full.height - 5, full.width - 20
    assert len(np.unique(whole[:, row0 : row0 + height, col0 : col0 + width])) >= 2, "water and crops"
    grid = _window(full, row0, col0, height, width)
    out = tmp_path / "tile"
    download.write_label_raster(REGION_TILE, grid, labels, CFG, out)
    assert _outputs(out) == ["label.tif"]
    valid, errors, _ = cog_validate(out / "label.tif")
    assert valid, errors
    tile, meta = _read(out / "label.tif")
    assert meta["transform"] == grid.transform and meta["shape"] == (1, height, width)
    aoi_tags = {k: v for k, v in whole_meta["tags"].items() if k != "LABEL_PERIOD"}  # a tile's is its region's
    assert meta["tags"] == aoi_tags and meta["nodata"] == whole_meta["nodata"]
    assert np.array_equal(tile, whole[:, row0 : row0 + height, col0 : col0 + width])
    with rasterio.open(out / "label.tif") as src, rasterio.open(tmp_path / "aoi" / "label.tif") as ref:
        assert src.colormap(1) == ref.colormap(1)


def test_label_raster_refuses_items_without_the_label_asset_and_leaves_nothing(scene, tmp_path):
    _, labels = scene
    item = labels[0].clone()
    item.assets = {"visual": item.assets[download.LABEL_ASSET]}
    out = tmp_path / "tile"
    with pytest.raises(ValueError, match=rf"{REGION_TILE}: label STAC item {item.id!r} has no asset"):
        download.write_label_raster(REGION_TILE, aoi_grid(_aoi(), 30.0), pystac.ItemCollection([item]), CFG, out)
    assert _outputs(out) == []
    with pytest.raises(ValueError, match="the labels ItemCollection is empty"):
        download.write_label_raster(REGION_TILE, aoi_grid(_aoi(), 30.0), pystac.ItemCollection([]), CFG, out)


# ------------------------------------------------------------------ a map region's frames, chosen once


def test_region_frames_are_the_aoi_rule_over_the_region_and_every_tile_uses_them(scene, tmp_path):
    """write_region_frames measures each date over the region's pixels and chooses as for an AOI; a tile built
    from that record takes exactly those dates (even where another date would be clearer over the tile alone)."""
    imagery, labels = scene
    grid = aoi_grid(_aoi(), 30.0)
    inside = np.ones((grid.height, grid.width), bool)
    aoi = _aoi()
    record = download.write_region_frames(REGION_TILE, aoi.start, aoi.end, [(grid, inside)], imagery, CFG,
                                          tmp_path / "frames.json")  # fmt: skip
    reference = write_aoi_stack(aoi, imagery, labels, CFG, tmp_path / "aoi")
    assert [f["date"] for f in record["frames"]] == [f["date"] for f in reference["frames"]]
    assert [c["clear_fraction"] for c in record["candidates"]] == [c["clear_fraction"] for c in reference["candidates"]]
    assert record["grids"] == [{"epsg": grid.epsg, "resolution": 30.0, "bounds": list(grid.bounds), "width": grid.width,
                                "height": grid.height, "region_pixels": inside.size, "imaged_pixels": inside.size}]
    assert json.loads((tmp_path / "frames.json").read_text()) == record

    # the east half of the grid as a tile: its own choice could differ, the region's is kept
    half = download.Grid(grid.epsg, 30.0, grid.left + 30.0 * (grid.width // 2), grid.top, grid.width // 2, grid.height)
    tile = _imagery_only(half, imagery, tmp_path / "tile", frames=record)
    assert [f["date"] for f in tile["frames"]] == [f["date"] for f in record["frames"]]
    assert tile["frames_without_imagery"] == [] and tile["chosen_for"].startswith("the map region")
    image, _ = _read(tmp_path / "tile" / "image.tif")
    whole, _ = _read(tmp_path / "aoi" / "image.tif")
    assert np.array_equal(image, whole[:, :, grid.width // 2 :])


def test_region_frames_count_only_pixels_with_imagery_and_a_stale_record_is_refused(scene, tmp_path):
    imagery, _ = scene
    aoi = _aoi()
    scene_grid = download.Grid(32615, 30.0, ORIGIN[0], ORIGIN[1], SIZE, SIZE)
    wider = download.Grid(32615, 30.0, ORIGIN[0], ORIGIN[1], SIZE * 2, SIZE)  # half of it has no imagery
    inside = np.ones((SIZE, SIZE * 2), bool)
    record = download.write_region_frames(REGION_TILE, aoi.start, aoi.end, [(wider, inside)], imagery, CFG,
                                          tmp_path / "frames.json")  # fmt: skip
    on_scene = download.write_region_frames(REGION_TILE, aoi.start, aoi.end, [(scene_grid, inside[:, :SIZE])],
                                            imagery, CFG, tmp_path / "scene.json")  # fmt: skip
    assert record["grids"][0]["imaged_pixels"] == SIZE * SIZE
    assert [c["clear_fraction"] for c in record["candidates"]] == [c["clear_fraction"] for c in on_scene["candidates"]]
    far = download.Grid(32615, 30.0, ORIGIN[0] + SIZE * 30.0, ORIGIN[1], SIZE, SIZE)  # no item reaches it
    tile = _imagery_only(far, imagery, tmp_path / "far", frames=record)
    assert len(tile["frames_without_imagery"]) == 3
    assert (_read(tmp_path / "far" / "mask.tif")[0] == 255).all()

    stale = {**record, "frames": [{**record["frames"][0], "date": "2023-03-03"}, *record["frames"][1:]]}
    with pytest.raises(ValueError, match="frame 2023-03-03 .* not in the imagery; .*rerun rule map_frames"):
        _imagery_only(scene_grid, imagery, tmp_path / "stale", frames=stale)
    assert _outputs(tmp_path / "stale") == []
    with pytest.raises(ValueError, match="download.frames = 2; .*rerun rule map_frames"):
        _imagery_only(scene_grid, imagery, tmp_path / "stale", cfg={**CFG, "frames": 2}, frames=record)


def test_label_items_under_another_asset_key(scene, tmp_path):
    """Label collections name their asset differently (WorldCover ``map``, CDL ``cropland``): labels.asset picks
    it, and items without it are refused naming the key and what they have."""
    imagery, labels = scene
    renamed = []
    for item in labels:
        item = item.clone()
        item.assets = {"map": item.assets["data"]}
        renamed.append(item)
    renamed_items = pystac.ItemCollection(renamed)
    with pytest.raises(ValueError, match=r"has no asset 'data' \(labels.asset\); its assets: \['map'\]"):
        write_aoi_stack(_aoi(), imagery, renamed_items, CFG, tmp_path / "default")
    write_aoi_stack(_aoi(), imagery, renamed_items, CFG, tmp_path / "map",
                    label_source=download.LabelSource(preset("io-lulc-9"), asset="map"))  # fmt: skip
    write_aoi_stack(_aoi(), imagery, labels, CFG, tmp_path / "data")
    with rasterio.open(tmp_path / "map" / "label.tif") as a, rasterio.open(tmp_path / "data" / "label.tif") as b:
        assert np.array_equal(a.read(), b.read())
