"""Tests for lulc.search: the shared filter semantics on a static catalog and a (faked) STAC API, atomic
output and HLS asset mapping (AOIs: test_aoi.py; reachability, credentials, signing: test_access.py); plus
real STAC documents read in place from ../shared/fixtures (skipped with a visible reason where that folder
is absent; failed instead where LULC_REQUIRE_FIXTURES=1, as CI sets it)."""

from __future__ import annotations

import copy
import json
import os
import socket
from datetime import date
from pathlib import Path
from typing import Any, ClassVar

import pystac
import pytest
from pytest import MonkeyPatch
from stac_items import BBox, bbox_geometry, free_port, hls_item, utc

from lulc import access, hls, search
from lulc.access import SourceUnreachableError
from lulc.aoi import AOI
from lulc.config import section
from lulc.download import item_epsg, sensor_assets
from lulc.hls import FMASK_ASSET, PRITHVI_BANDS, SENSOR_ASSETS
from lulc.search import SearchError, save_item_collection, search_items

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
STAC_FIXTURES = FIXTURES / "stac"
CMR_ITEM = STAC_FIXTURES / "cmr" / "item_HLS.S30.T10TEK.2021122T185911.v2.0.reconstructed.json"
IO_ITEMS = STAC_FIXTURES / "pc" / "items_io-lulc-annual-v02.json"


# The synthetic catalog's region: items with HERE intersect AOI_BBOX, items with FAR do not.
HERE = (10.0, 45.0, 11.0, 46.0)
FAR = (100.0, 10.0, 101.0, 11.0)
AOI_BBOX = (10.2, 45.2, 10.8, 45.8)
HLS_QUERY = {"source": "", "collections": ["hls2-s30", "hls2-l30"], "max_cloud_cover": 20, "signing": "none"}
LABEL_QUERY = {"source": "", "collections": ["io-lulc-annual-v02"], "max_cloud_cover": None}


@pytest.fixture(autouse=True)
def loopback_without_proxy(monkeypatch: MonkeyPatch) -> None:
    """The loopback servers of these tests must be reached directly even where a proxy is configured."""
    for variable in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(variable, "127.0.0.1,localhost")


def fixtures_or_skip(path: Path) -> Path:
    if not path.exists():
        missing = f"../shared/fixtures not found ({path})"
        if os.environ.get("LULC_REQUIRE_FIXTURES"):
            pytest.fail(f"{missing}: the real-document tests are required (LULC_REQUIRE_FIXTURES is set)")
        pytest.skip(f"{missing}: real-document tests skipped")
    return path


def label_item(item_id: str, year: int, bbox: BBox) -> pystac.Item:
    """An IO-LULC-like yearly item: datetime null, start/end a year apart (end = next Jan 1, as IO writes)."""
    item = pystac.Item(
        item_id,
        bbox_geometry(bbox),
        list(bbox),
        None,
        {},
        start_datetime=utc(year, 1, 1),
        end_datetime=utc(year + 1, 1, 1),
    )
    item.add_asset("data", pystac.Asset(f"./{item_id}.tif", media_type=pystac.MediaType.COG))
    return item


def synthetic_items() -> dict[str, list[pystac.Item]]:
    return {
        "hls2-s30": [
            hls_item("HLS.S30.T32TNR.2023069T101011.v2.0", utc(2023, 3, 10, 10, 10), 5.0, HERE),
            hls_item("HLS.S30.T32TNR.2023152T101011.v2.0", utc(2023, 6, 1, 10, 10), 50.0, HERE),
            hls_item("HLS.S30.T47PQS.2023121T034011.v2.0", utc(2023, 5, 1, 3, 40), 0.0, FAR),
            hls_item("HLS.S30.T32TNR.2022182T101011.v2.0", utc(2022, 7, 1, 10, 10), 0.0, HERE),
            hls_item("HLS.S30.T32TNR.2023365T101011.v2.0", utc(2023, 12, 31, 23, 0), 20.0, HERE),
        ],
        "hls2-l30": [
            # same instant as the first S30 item: the id breaks the tie (L30 < S30)
            hls_item("HLS.L30.T32TNR.2023069T101011.v2.0", utc(2023, 3, 10, 10, 10), 10.0, HERE),
        ],
        "io-lulc-annual-v02": [
            label_item("32T-2022", 2022, HERE),
            label_item("32T-2023", 2023, HERE),
        ],
    }


@pytest.fixture
def catalog_path(tmp_path: Path) -> Path:
    """A self-contained static catalog with one collection per product, written with pystac."""
    catalog = pystac.Catalog("test-catalog", "synthetic HLS-like and IO-like items")
    for collection_id, items in synthetic_items().items():
        collection = pystac.Collection(
            collection_id,
            collection_id,
            pystac.Extent(
                pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
                pystac.TemporalExtent([[utc(2022, 1, 1), None]]),
            ),
        )
        collection.add_items(items)
        catalog.add_child(collection)
    root = tmp_path / "catalog"
    catalog.normalize_hrefs(str(root))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"


def aoi_2023(bbox: BBox = AOI_BBOX, name: str = "alps") -> AOI:
    return AOI(name, bbox, date(2023, 1, 1), date(2023, 12, 31))


def query(base: dict[str, Any], source: Path | str, **overrides: Any) -> dict[str, Any]:
    return {**base, "source": str(source), **overrides}


# ----------------------------------------------------------------------------------------- AOIs


# ---------------------------------------------------------------------------- static catalog search


def ids(items: pystac.ItemCollection) -> list[str]:
    return [item.id for item in items]


def test_static_search_filters_bbox_datetime_cloud_and_sorts(catalog_path: Path) -> None:
    found = search_items(aoi_2023(), query(HLS_QUERY, catalog_path))
    # dropped: cloud 50 %, the far tile, the 2022 scene; kept: cloud exactly 20 (<=), sorted by time then id
    assert ids(found) == [
        "HLS.L30.T32TNR.2023069T101011.v2.0",
        "HLS.S30.T32TNR.2023069T101011.v2.0",
        "HLS.S30.T32TNR.2023365T101011.v2.0",
    ]


def test_static_search_without_cloud_limit_and_one_collection(catalog_path: Path) -> None:
    s30_any_cloud = query(HLS_QUERY, catalog_path, collections=["hls2-s30"], max_cloud_cover=None)
    found = search_items(aoi_2023(), s30_any_cloud)
    assert ids(found) == [
        "HLS.S30.T32TNR.2023069T101011.v2.0",
        "HLS.S30.T32TNR.2023152T101011.v2.0",
        "HLS.S30.T32TNR.2023365T101011.v2.0",
    ]


def test_static_search_date_range(catalog_path: Path) -> None:
    spring = AOI("alps", AOI_BBOX, date(2023, 3, 10), date(2023, 5, 31))
    assert ids(search_items(spring, query(HLS_QUERY, catalog_path, max_cloud_cover=None))) == [
        "HLS.L30.T32TNR.2023069T101011.v2.0",
        "HLS.S30.T32TNR.2023069T101011.v2.0",
    ]


def test_static_search_bbox_selects_the_far_tile(catalog_path: Path) -> None:
    far = aoi_2023((100.5, 10.5, 100.6, 10.6), name="far")
    assert ids(search_items(far, query(HLS_QUERY, catalog_path))) == ["HLS.S30.T47PQS.2023121T034011.v2.0"]


def test_static_search_yearly_labels_with_null_datetime(catalog_path: Path) -> None:
    labels = search_items(aoi_2023(), query(LABEL_QUERY, catalog_path))
    # the 2022 map ends at 2023-01-01T00:00:00Z: touching the AOI's first instant is no overlap
    assert ids(labels) == ["32T-2023"]
    assert labels[0].datetime is None
    aoi_2022 = AOI("alps", AOI_BBOX, date(2022, 1, 1), date(2022, 12, 31))
    assert ids(search_items(aoi_2022, query(LABEL_QUERY, catalog_path))) == ["32T-2022"]
    # labels have no eo:cloud_cover: a cloud limit keeps them
    assert ids(search_items(aoi_2023(), query(LABEL_QUERY, catalog_path, max_cloud_cover=10))) == ["32T-2023"]
    two_years = AOI("alps", AOI_BBOX, date(2022, 6, 1), date(2023, 6, 1))
    assert ids(search_items(two_years, query(LABEL_QUERY, catalog_path))) == ["32T-2022", "32T-2023"]


def test_static_search_makes_asset_hrefs_absolute(catalog_path: Path) -> None:
    for item in search_items(aoi_2023(), query(HLS_QUERY, catalog_path)):
        for asset in item.assets.values():
            assert Path(asset.href).is_absolute(), asset.href
            assert Path(asset.href).parent == catalog_path.parent / item.collection_id / item.id


def test_demo_source_and_catalog_folder(catalog_path: Path) -> None:
    expected = ids(search_items(aoi_2023(), query(HLS_QUERY, catalog_path)))
    demo = search_items(aoi_2023(), query(HLS_QUERY, "demo"), catalog_path_for_demo=catalog_path)
    assert ids(demo) == expected
    assert ids(search_items(aoi_2023(), query(HLS_QUERY, catalog_path.parent))) == expected
    with pytest.raises(ValueError, match="demo catalog path"):
        search_items(aoi_2023(), query(HLS_QUERY, "demo"))
    with pytest.raises(ValueError, match=r"nowhere/catalog\.json.* not found"):
        search_items(aoi_2023(), query(HLS_QUERY, catalog_path.parent / "nowhere" / "catalog.json"))


def test_empty_result_error_names_aoi_collections_source_and_query(catalog_path: Path) -> None:
    aoi = AOI("sahara", (5.0, 20.0, 6.0, 21.0), date(2023, 2, 1), date(2023, 2, 28))
    with pytest.raises(SearchError) as excinfo:
        search_items(aoi, query(HLS_QUERY, catalog_path, max_cloud_cover=15))
    message = str(excinfo.value)
    for part in (
        "'sahara'",
        "hls2-s30",
        "hls2-l30",
        str(catalog_path),
        "bbox=[5.0, 20.0, 6.0, 21.0]",
        "2023-02-01T00:00:00Z/2023-02-28T23:59:59Z",
        "max_cloud_cover=15",
    ):
        assert part in message
    assert isinstance(excinfo.value, ValueError)


def test_max_items_guard_refuses_a_truncated_result(catalog_path: Path) -> None:
    with pytest.raises(SearchError, match="more than max_items=2"):
        search_items(aoi_2023(), query(HLS_QUERY, catalog_path, max_items=2))
    assert len(search_items(aoi_2023(), query(HLS_QUERY, catalog_path, max_items=3))) == 3


def test_query_without_collections_is_rejected(catalog_path: Path) -> None:
    with pytest.raises(ValueError, match="no 'collections'"):
        search_items(aoi_2023(), query(HLS_QUERY, catalog_path, collections=[]))


# ------------------------------------------------------------------------------------ antimeridian


def test_antimeridian_bbox_written_the_stac_way() -> None:
    """A bbox-only item with west > east covers 170..180 and -180..-170, not the world between."""
    item = pystac.Item("x", None, [170.0, 60.0, -170.0, 70.0], utc(2023, 5, 1), {})
    assert search._intersects_aoi(item, (175.0, 64.0, 176.0, 65.0))
    assert search._intersects_aoi(item, (-175.0, 64.0, -174.0, 65.0))
    assert not search._intersects_aoi(item, (0.0, 64.0, 1.0, 65.0))
    assert not search._intersects_aoi(item, (175.0, 10.0, 176.0, 11.0))


def test_antimeridian_geometry_ring_jumping_across_180() -> None:
    """A ring whose longitudes jump from -180 to 180 (as IO LULC writes its zone-60 tiles)."""
    ring = [
        [-178.0, 72.0],
        [-178.0, 64.0],
        [180.0, 64.0],
        [174.0, 64.0],
        [174.0, 72.0],
        [180.0, 72.0],
        [180.0, 64.0],
        [-180.0, 64.0],
        [-180.0, 72.0],
        [-178.0, 72.0],
    ]
    geometry = {"type": "Polygon", "coordinates": [ring]}
    item = pystac.Item("ring", geometry, [-180, 64, 180, 72], utc(2023, 5, 1), {})
    assert search._intersects_aoi(item, (179.0, 66.0, 179.5, 67.0))
    assert search._intersects_aoi(item, (-179.5, 66.0, -179.0, 67.0))
    assert search._intersects_aoi(item, (175.0, 70.0, 176.0, 71.0))
    assert not search._intersects_aoi(item, (0.0, 66.0, 1.0, 67.0))
    assert not search._intersects_aoi(item, (-100.0, 66.0, -99.0, 67.0))
    assert not search._intersects_aoi(item, (-177.0, 66.0, -176.0, 67.0))


def test_full_width_bbox_without_geometry_matches_every_longitude() -> None:
    item = pystac.Item("global", None, [-180.0, -90.0, 180.0, 90.0], utc(2023, 5, 1), {})
    assert search._intersects_aoi(item, (0.0, 0.0, 1.0, 1.0))
    assert search._intersects_aoi(item, (179.0, 0.0, 180.0, 1.0))


# ------------------------------------------------------------------------------- STAC API backend


class FakeSearch:
    def __init__(self, items: list[pystac.Item]) -> None:
        self.items = items

    def item_collection(self) -> pystac.ItemCollection:
        return pystac.ItemCollection(self.items)


class FakeClient:
    """Stands in for pystac_client.Client: records the search arguments, returns a fixed page of items.

    Like a real API it returns items the local filter drops (a label map that only touches the AOI's
    first instant), so the test checks that both backends end with the same items.
    """

    calls: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, items: list[pystac.Item]) -> None:
        self.items = items

    def conforms_to(self, conformance_class: Any) -> bool:
        return True  # item search and the Query extension, like Planetary Computer

    def search(self, **kwargs: Any) -> FakeSearch:
        FakeClient.calls.append(kwargs)
        wanted = set(kwargs["collections"])
        return FakeSearch([item for item in self.items if item.collection_id in wanted])


@pytest.fixture
def fake_api(monkeypatch: MonkeyPatch) -> list[dict[str, Any]]:
    import pystac_client

    items = []
    for collection_id, group in synthetic_items().items():
        for item in group:
            item.collection_id = collection_id
            items.append(item)
    FakeClient.calls = []
    opened: list[str] = []
    monkeypatch.setattr(search, "check_reachable", lambda url, what, timeout=None: None)  # no network

    def fake_open(url: str, *args: Any, **kwargs: Any) -> FakeClient:
        opened.append(url)
        return FakeClient(copy.deepcopy(items))

    monkeypatch.setattr(pystac_client.Client, "open", staticmethod(fake_open))
    return FakeClient.calls


def test_api_search_sends_the_query_and_filters_like_the_static_backend(
    fake_api: list[dict[str, Any]], catalog_path: Path
) -> None:
    url = "https://stac.example.test/api/stac/v1"
    found = search_items(aoi_2023(), query(HLS_QUERY, url, max_items=50))
    assert ids(found) == ids(search_items(aoi_2023(), query(HLS_QUERY, catalog_path)))
    assert fake_api[-1] == {
        "collections": ["hls2-s30", "hls2-l30"],
        "bbox": list(AOI_BBOX),
        "datetime": "2023-01-01T00:00:00Z/2023-12-31T23:59:59Z",
        "query": {"eo:cloud_cover": {"lte": 20}},
        "limit": 100,
        "max_items": 51,
    }
    labels = search_items(aoi_2023(), query(LABEL_QUERY, url))
    assert ids(labels) == ["32T-2023"]
    assert "query" not in fake_api[-1]


def test_api_search_refuses_a_truncated_result(fake_api: list[dict[str, Any]]) -> None:
    with pytest.raises(SearchError, match="more than max_items=1"):
        search_items(aoi_2023(), query(HLS_QUERY, "https://stac.example.test/v1", max_items=1))
    assert fake_api[-1]["max_items"] == 2


def test_unreachable_api_names_the_url_and_network() -> None:
    with socket.socket() as sock:  # a local port nobody listens on: refused at once, no network needed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/stac"
    expected = rf"stac\.imagery\.source {url} is not reachable .*real-data configs need network; the default demo"
    with pytest.raises(SourceUnreachableError, match=expected):
        search_items(aoi_2023(), query(HLS_QUERY, url))
    with pytest.raises(SourceUnreachableError, match=rf"stac\.labels\.source {url} is not reachable"):
        search_items(aoi_2023(), query(LABEL_QUERY, url))


# --------------------------------------------------------------------------------------- output


def test_save_item_collection_round_trip_with_absolute_hrefs(catalog_path: Path, tmp_path: Path) -> None:
    found = search_items(aoi_2023(), query(HLS_QUERY, catalog_path))
    out = tmp_path / "results" / "search" / "alps_imagery.json"
    save_item_collection(found, out)
    assert [p.name for p in out.parent.iterdir()] == [out.name]
    loaded = pystac.ItemCollection.from_file(str(out))
    assert ids(loaded) == ids(found)
    document = json.loads(out.read_text())
    assert document["type"] == "FeatureCollection"
    for feature in document["features"]:
        for asset in feature["assets"].values():
            assert Path(asset["href"]).is_absolute()
        for link in feature["links"]:
            assert link["href"].startswith(("/", "http")), link


def test_save_item_collection_is_atomic(catalog_path: Path, tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    found = search_items(aoi_2023(), query(HLS_QUERY, catalog_path))
    out = tmp_path / "items.json"
    out.write_text("previous complete output")

    def broken_dump(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(search.json, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        save_item_collection(found, out)
    assert out.read_text() == "previous complete output"
    assert [p.name for p in tmp_path.iterdir() if p.name != "catalog"] == ["items.json"]


def test_save_relative_to_the_results_tree_and_load_resolves_against_the_file(tmp_path: Path) -> None:
    """Local hrefs inside ``relative_to`` are stored relative to the output file (a copied results tree
    stays self-contained); URLs and local paths outside the tree stay absolute; the load resolves them."""
    results = tmp_path / "results"
    demo_item = results / "demo" / "hls2-s30" / "x" / "x.json"
    item = hls_item("HLS.S30.T32TNR.2023069T101011.v2.0", utc(2023, 3, 10), 5.0, HERE)
    item.assets["B02"].href = str(results / "demo" / "hls2-s30" / "x" / "B02.tif")
    item.assets["B03"].href = "https://data.example.test/B03.tif?sig=x"
    item.assets["B04"].href = "/data/elsewhere/B04.tif"  # a catalog outside the results tree
    item.assets["B8A"].href = "s3://bucket/B8A.tif"
    item.set_self_href(str(demo_item))
    item.add_link(pystac.Link("root", str(results / "demo" / "catalog.json")))
    item.add_link(pystac.Link("license", "https://example.test/license"))
    out = results / "search" / "alps" / "imagery.json"
    save_item_collection(pystac.ItemCollection([item]), out, relative_to=results)

    feature = json.loads(out.read_text())["features"][0]
    assets = feature["assets"]
    assert assets["B02"]["href"] == "../../demo/hls2-s30/x/B02.tif"
    assert assets["B03"]["href"] == "https://data.example.test/B03.tif?sig=x"
    assert assets["B04"]["href"] == "/data/elsewhere/B04.tif"
    assert assets["B8A"]["href"] == "s3://bucket/B8A.tif"
    links = {link["rel"]: link["href"] for link in feature["links"]}
    assert "self" not in links  # a self link into the original tree would make pystac resolve against it
    assert links["root"] == "../../demo/catalog.json" and links["license"] == "https://example.test/license"

    moved = tmp_path / "moved" / "results"
    moved.parent.mkdir()
    results.rename(moved)
    (loaded,) = search.load_item_collection(moved / "search" / "alps" / "imagery.json")
    assert loaded.assets["B02"].href == str(moved / "demo" / "hls2-s30" / "x" / "B02.tif")
    assert loaded.assets["B03"].href == "https://data.example.test/B03.tif?sig=x"
    assert loaded.assets["B04"].href == "/data/elsewhere/B04.tif"
    root = loaded.get_single_link("root")
    assert root is not None and root.get_href(transform_href=False) == str(moved / "demo" / "catalog.json")
    assert loaded.id == item.id and loaded.datetime == item.datetime


def test_load_resolves_relative_hrefs_against_an_absolute_self_link(tmp_path: Path) -> None:
    """STAC's rule where an item has an absolute self link; the file's folder where it has none."""
    item = hls_item("HLS.S30.T32TNR.2023069T101011.v2.0", utc(2023, 3, 10), 5.0, HERE)
    document = item.to_dict(include_self_link=False, transform_hrefs=False)
    with_self = copy.deepcopy(document)
    with_self["links"] = [{"rel": "self", "href": "http://127.0.0.1:8080/collections/hls2-s30/items/x"}]
    path = tmp_path / "cache" / "items.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [with_self, document]}))
    first, second = search.load_item_collection(path)
    assert first.assets["B02"].href == f"http://127.0.0.1:8080/collections/hls2-s30/items/{item.id}.B02.tif"
    assert second.assets["B02"].href == str(path.parent / f"{item.id}.B02.tif")
    path.write_text(json.dumps({"type": "Feature"}))
    with pytest.raises(ValueError, match="not a GeoJSON FeatureCollection"):
        search.load_item_collection(path)


def test_default_save_keeps_absolute_hrefs_and_loads_unchanged(catalog_path: Path, tmp_path: Path) -> None:
    found = search_items(aoi_2023(), query(HLS_QUERY, catalog_path))
    out = tmp_path / "results" / "search" / "alps_imagery.json"
    save_item_collection(found, out)
    loaded = search.load_item_collection(out)
    assert [{k: a.href for k, a in i.assets.items()} for i in loaded] == [
        {k: a.href for k, a in i.assets.items()} for i in found
    ]


# ------------------------------------------------------------------------------ item helpers


@pytest.mark.parametrize(
    ("collection", "item_id", "expected"),
    [
        ("hls2-s30", "S30_32TNR_2023069_0", ["B02", "B03", "B04", "B8A", "B11", "B12"]),
        ("hls2-l30", "L30_32TNR_2023069_0", ["B02", "B03", "B04", "B05", "B06", "B07"]),
        ("HLSL30_2.0", "HLS.L30.T32TNR.2023069T101011.v2.0", ["B02", "B03", "B04", "B05", "B06", "B07"]),
    ],
)
def test_sensor_assets(collection: str, item_id: str, expected: list[str]) -> None:
    item = pystac.Item(item_id, None, None, utc(2023, 3, 10), {}, collection=collection)
    for key in (*expected, "Fmask", "B01"):
        item.add_asset(key, pystac.Asset(f"https://example.test/{key}.tif"))
    assert sensor_assets(item) == {**dict(zip(PRITHVI_BANDS, expected, strict=True)), "Fmask": "Fmask"}
    del item.assets[expected[3]]
    with pytest.raises(ValueError, match=rf"{item_id}.*no asset '{expected[3]}'"):
        sensor_assets(item)


def test_sensor_assets_rejects_non_hls_item() -> None:
    item = pystac.Item("60W-2023", None, None, utc(2023, 1, 1), {}, collection="io-lulc-annual-v02")
    with pytest.raises(ValueError, match="60W-2023"):
        sensor_assets(item)


def test_item_epsg() -> None:
    item = pystac.Item("x", None, None, utc(2023, 1, 1), {"proj:epsg": 32632})
    assert item_epsg(item) == 32632
    item = pystac.Item("x", None, None, utc(2023, 1, 1), {"proj:code": "EPSG:32613"})
    assert item_epsg(item) == 32613
    assert item_epsg(pystac.Item("x", None, None, utc(2023, 1, 1), {"proj:code": "IAU_2015:30100"})) is None
    assert item_epsg(pystac.Item("x", None, None, utc(2023, 1, 1), {})) is None


# -------------------------------------------------------------------- real documents (in place)


def test_every_real_stac_document_parses() -> None:
    root = fixtures_or_skip(STAC_FIXTURES)
    kinds = ("Collection", "Feature", "item array", "FeatureCollection", "Catalog", "request")
    seen = dict.fromkeys(kinds, 0)
    for path in sorted(root.rglob("*.json")):
        document = json.loads(path.read_text())
        if isinstance(document, list):
            items = [pystac.Item.from_dict(feature) for feature in document]
            assert items, path
            seen["item array"] += 1
        elif path.name.endswith(".request.json"):
            assert document["collections"] == ["naip"], path  # a search body, not a STAC object
            seen["request"] += 1
        elif document["type"] == "Collection":
            collection = pystac.Collection.from_dict(document)
            assert collection.id == path.stem.removeprefix("collection_")
            seen["Collection"] += 1
        elif document["type"] == "Feature":
            pystac.Item.from_dict(document)
            seen["Feature"] += 1
        elif document["type"] == "FeatureCollection":
            assert len(pystac.ItemCollection.from_dict(document)) == len(document["features"]) > 0
            seen["FeatureCollection"] += 1
        else:
            assert document["type"] == "Catalog", path
            catalog = pystac.Catalog.from_dict(document)
            assert catalog.id == "microsoft-pc"
            seen["Catalog"] += 1
    assert all(count > 0 for count in seen.values()), seen
    assert seen["Collection"] >= 5  # hls2-s30, hls2-l30, io-lulc-annual-v02, HLSS30_2.0, HLSL30_2.0


def test_real_naip_search_pages_chain_by_next_token() -> None:
    pc = fixtures_or_skip(STAC_FIXTURES / "pc")
    responses = [pc / f"search_post_naip_page{n}.response.json" for n in (1, 2)]
    pages = [pystac.ItemCollection.from_file(str(path)) for path in responses]
    requests = [json.loads((pc / f"search_post_naip_page{n}.request.json").read_text()) for n in (1, 2)]
    next_links = [json.loads(path.read_text())["links"] for path in responses]
    tokens = [next(link for link in links if link["rel"] == "next")["body"]["token"] for links in next_links]
    assert tokens[0].startswith("next:naip:")
    assert "token" not in requests[0]
    assert requests[1]["token"] == tokens[0]  # page 2 was fetched with page 1's next token
    assert all(len(page) == 10 for page in pages)
    assert not {item.id for item in pages[0]} & {item.id for item in pages[1]}
    assert all(item.collection_id == "naip" for page in pages for item in page)


def test_real_pc_collections_define_the_hls_asset_keys() -> None:
    pc = fixtures_or_skip(STAC_FIXTURES / "pc")
    for collection_id, sensor in (("hls2-s30", "S30"), ("hls2-l30", "L30")):
        collection = pystac.Collection.from_file(str(pc / f"collection_{collection_id}.json"))
        keys = set(collection.item_assets)
        assert {*SENSOR_ASSETS[sensor], FMASK_ASSET} <= keys, collection_id
    io = pystac.Collection.from_file(str(pc / "collection_io-lulc-annual-v02.json"))
    assert "data" in io.item_assets


@pytest.fixture
def io_items() -> list[pystac.Item]:
    path = fixtures_or_skip(IO_ITEMS)
    return [pystac.Item.from_dict(feature) for feature in json.loads(path.read_text())]


def test_real_io_lulc_items_are_yearly_with_null_datetime(io_items: list[pystac.Item]) -> None:
    assert [item.id for item in io_items] == ["60W-2023", "60V-2023", "60U-2023", "60N-2023"]
    for item in io_items:
        assert item.datetime is None
        assert search.item_interval(item) == (utc(2023, 1, 1), utc(2024, 1, 1))
        assert item_epsg(item) == 32660
        assert search._time_overlaps(item, aoi_2023().time_window())
        for other_year in (2022, 2024):
            window = AOI("x", AOI_BBOX, date(other_year, 1, 1), date(other_year, 12, 31)).time_window()
            assert not search._time_overlaps(item, window)


def test_real_antimeridian_tiles(io_items: list[pystac.Item]) -> None:
    """60W-2023: bbox [-180, 64, 180, 72] and a ring jumping between -180 and 180; a planar test would
    take it for a belt around the whole globe."""
    tiles = {item.id: item for item in io_items}
    w = tiles["60W-2023"]
    assert w.bbox[0] == -180.0 and w.bbox[2] == 180.0
    from shapely.geometry import box, shape

    # the trap: read as planar, the ring's seam makes a thin belt at 64 N around the whole globe
    norway = (10.0, 64.0, 11.0, 64.1)
    assert shape(w.geometry).intersects(box(*norway))
    assert not search._intersects_aoi(w, norway)
    assert search._intersects_aoi(w, (178.0, 67.0, 179.0, 68.0))  # inside zone 60, east of 174 E
    assert search._intersects_aoi(w, (-179.9, 67.0, -179.5, 68.0))  # the sliver west of the antimeridian
    assert search._intersects_aoi(w, (179.5, 67.0, 180.0, 68.0))
    assert not search._intersects_aoi(w, (0.0, 67.0, 1.0, 68.0))  # Norway / Sweden: far away
    assert not search._intersects_aoi(w, (-150.0, 67.0, -149.0, 68.0))  # Alaska
    assert not search._intersects_aoi(w, (-177.0, 67.0, -176.0, 68.0))  # east of the tile
    assert not search._intersects_aoi(w, (178.0, 50.0, 179.0, 51.0))  # right longitude, wrong latitude
    assert search._intersects_aoi(tiles["60V-2023"], (-179.5, 63.0, -179.3, 63.5))  # MultiPolygon part
    assert not search._intersects_aoi(tiles["60V-2023"], (-179.5, 60.0, -179.3, 61.0))  # just east of it
    assert not search._intersects_aoi(tiles["60V-2023"], (10.0, 60.0, 11.0, 61.0))
    assert search._intersects_aoi(tiles["60N-2023"], (179.0, 4.0, 179.5, 5.0))
    assert search._intersects_aoi(tiles["60N-2023"], (-179.995, 4.0, -179.99, 5.0))  # its 0.01-degree sliver
    assert not search._intersects_aoi(tiles["60N-2023"], (-179.9, 4.0, -179.8, 5.0))
    # read as planar, 60N covers most of the equatorial band (1350 square degrees), e.g. the Atlantic
    atlantic = (-20.0, 4.0, -19.0, 5.0)
    assert shape(tiles["60N-2023"].geometry).intersects(box(*atlantic))
    assert not search._intersects_aoi(tiles["60N-2023"], atlantic)


def test_search_a_static_catalog_of_real_io_items(io_items: list[pystac.Item], tmp_path: Path) -> None:
    catalog = pystac.Catalog("io", "real IO LULC items")
    for item in io_items:
        item.clear_links()
        catalog.add_item(item)
    catalog.normalize_hrefs(str(tmp_path / "io"))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    source = str(tmp_path / "io" / "catalog.json")
    chukotka = aoi_2023((178.0, 67.0, 179.0, 68.0), name="chukotka")
    assert ids(search_items(chukotka, query(LABEL_QUERY, source))) == ["60W-2023"]
    dateline = aoi_2023((179.8, 55.0, 180.0, 57.0), name="dateline")
    assert ids(search_items(dateline, query(LABEL_QUERY, source))) == ["60U-2023", "60V-2023"]
    with pytest.raises(SearchError, match="'lapland'"):
        search_items(aoi_2023((20.0, 67.0, 21.0, 68.0), name="lapland"), query(LABEL_QUERY, source))


def test_api_backend_pages_through_real_recorded_responses(monkeypatch: MonkeyPatch) -> None:
    """pystac-client, unmodified, against the real PC landing page and two recorded POST /search pages:
    only the HTTP transport is replaced. It must follow the ``next`` token and we must sort the union."""
    import requests

    pc = fixtures_or_skip(STAC_FIXTURES / "pc")
    landing = (pc / "landing_page.json").read_bytes()
    pages = [json.loads((pc / f"search_post_naip_page{n}.response.json").read_text()) for n in (1, 2)]
    token_page = {"next:naip:vt_m_4307307_nw_18_060_20211029": pages[1]}
    bodies: list[dict[str, Any]] = []

    def fake_send(session: Any, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code, response.url, response.request = 200, request.url, request
        response.headers["Content-Type"] = "application/json"
        if request.method == "POST" and request.url.endswith("/search"):
            body = json.loads(request.body)
            bodies.append(body)
            page = pages[0] if "token" not in body else token_page.get(body["token"], None)
            page = page or {"type": "FeatureCollection", "features": [], "links": []}  # past the last page
            response._content = json.dumps(page).encode()
        else:
            response._content = landing
        return response

    monkeypatch.setattr(requests.Session, "send", fake_send)
    monkeypatch.setattr(search, "check_reachable", lambda url, what, timeout=None: None)
    aoi = AOI("vermont", (-73.21, 43.99, -73.12, 44.05), date(2016, 1, 1), date(2023, 12, 31))
    url = "https://planetarycomputer.microsoft.com/api/stac/v1"
    naip = {"source": url, "collections": ["naip"], "max_cloud_cover": None}
    found = search_items(aoi, {**naip, "max_items": 25})
    expected = sorted(
        (pystac.Item.from_dict(feature) for page in pages for feature in page["features"]),
        key=lambda item: (item.datetime, item.id),
    )
    assert ids(found) == [item.id for item in expected] and len(found) == 20
    assert bodies[0]["collections"] == ["naip"] and bodies[0]["bbox"] == [-73.21, 43.99, -73.12, 44.05]
    assert bodies[0]["datetime"] == "2016-01-01T00:00:00Z/2023-12-31T23:59:59Z"
    assert "query" not in bodies[0] and "token" not in bodies[0]
    assert bodies[1]["token"] == "next:naip:vt_m_4307307_nw_18_060_20211029"
    # a guard below the 20 recorded items refuses the result instead of returning the first pages
    with pytest.raises(SearchError, match="more than max_items=15"):
        search_items(aoi, {**naip, "max_items": 15})


def test_api_without_item_search_is_reported(monkeypatch: MonkeyPatch) -> None:
    import pystac_client
    from pystac_client.warnings import DoesNotConformTo

    class StaticOverHttp:
        def conforms_to(self, conformance_class: Any) -> bool:
            return False

        def search(self, **kwargs: Any) -> None:
            raise DoesNotConformTo("ITEM_SEARCH")

    monkeypatch.setattr(pystac_client.Client, "open", staticmethod(lambda url, **kwargs: StaticOverHttp()))
    monkeypatch.setattr(search, "check_reachable", lambda url, what, timeout=None: None)
    with pytest.raises(SearchError, match=r"https://example\.test/catalog\.json is not a STAC API"):
        search_items(aoi_2023(), query(HLS_QUERY, "https://example.test/catalog.json"))


def test_real_cmr_item_maps_to_s30_assets_without_epsg() -> None:
    path = fixtures_or_skip(CMR_ITEM)
    item = pystac.Item.from_file(str(path))
    assert item.collection_id == "HLSS30_2.0"
    mapping = sensor_assets(item)
    assert list(mapping.values()) == ["B02", "B03", "B04", "B8A", "B11", "B12", "Fmask"]
    assert list(mapping) == [*PRITHVI_BANDS, "Fmask"]
    assert all(item.assets[key].media_type is None for key in mapping.values())  # CMR: no media types
    assert item_epsg(item) is None
    assert item.properties["eo:cloud_cover"] == 0
    # A CMR item has datetime and equal start/end: an instant
    start, end = search.item_interval(item)
    assert start == end == utc(2021, 5, 2, 19, 13, 19).replace(microsecond=930000)
    assert search.matches(
        item,
        AOI("ca", (-122.5, 40.0, -122.0, 40.5), date(2021, 5, 1), date(2021, 5, 31)),
        {"collections": ["HLSS30_2.0"], "max_cloud_cover": 10},
    )


# ------------------------------------------------------------------------ network behaviour


def test_static_and_demo_sources_never_touch_the_network(catalog_path: Path, monkeypatch: MonkeyPatch) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a local source made a network call")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(search, "check_reachable", no_network)
    assert len(search_items(aoi_2023(), query(HLS_QUERY, catalog_path))) == 3
    assert len(search_items(aoi_2023(), query(HLS_QUERY, "demo"), catalog_path_for_demo=catalog_path)) == 3


def test_check_reachable_without_dns(monkeypatch: MonkeyPatch) -> None:
    """What an offline machine answers: the resolver fails (simulated; no query leaves the machine)."""

    def no_dns(*args: Any, **kwargs: Any) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    for variable in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    url = "https://planetarycomputer.microsoft.com/api/stac/v1"
    expected = (
        rf"stac\.imagery\.source {url} is not reachable \(planetarycomputer\.microsoft\.com:443: cannot resolve "
        r"host 'planetarycomputer\.microsoft\.com': Name or service not known\): real-data configs need network"
    )
    with pytest.raises(SourceUnreachableError, match=expected):
        search_items(aoi_2023(), query(HLS_QUERY, url))


class StacStub:
    """A tiny loopback STAC API (landing page + POST /search) answering from ``items``, with pages of
    ``limit`` items linked by a ``next`` token, and injected 503s."""

    def __init__(self, items: list[pystac.Item], failures: int = 0, conforms_query: bool = True) -> None:
        self.items = items
        self.failures = failures  # the next requests that answer 503 (any method)
        self.search_failures = 0  # the next POST /search requests that answer 503
        self.conforms_query = conforms_query
        self.requests: list[tuple[str, str, dict[str, Any] | None]] = []

    def __enter__(self) -> StacStub:
        import http.server
        import threading

        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def reply(self, status: int, document: dict[str, Any] | None) -> None:
                body = json.dumps(document).encode() if document is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                stub.requests.append(("GET", self.path, None))
                if stub.failures > 0:
                    stub.failures -= 1
                    return self.reply(503, None)
                conforms = ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"]
                if stub.conforms_query:
                    conforms.append("https://api.stacspec.org/v1.0.0/item-search#query")
                self.reply(
                    200,
                    {
                        "type": "Catalog",
                        "id": "stub",
                        "description": "stub",
                        "stac_version": "1.0.0",
                        "conformsTo": conforms,
                        "links": [
                            {"rel": "self", "href": stub.url, "type": "application/json"},
                            {"rel": "root", "href": stub.url, "type": "application/json"},
                            {
                                "rel": "search",
                                "href": f"{stub.url}/search",
                                "method": "POST",
                                "type": "application/geo+json",
                            },
                        ],
                    },
                )

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(("POST", self.path, body))
                if stub.failures > 0 or stub.search_failures > 0:
                    stub.failures = max(stub.failures - 1, 0)
                    stub.search_failures = max(stub.search_failures - 1, 0)
                    return self.reply(503, None)
                wanted = [i for i in stub.items if i.collection_id in body["collections"]]
                cloud = (body.get("query") or {}).get("eo:cloud_cover", {}).get("lte")
                if cloud is not None:
                    wanted = [i for i in wanted if i.properties.get("eo:cloud_cover", 0) <= cloud]
                offset = int(body.get("token") or 0)
                page = wanted[offset : offset + body["limit"]]
                links = []
                if offset + body["limit"] < len(wanted):
                    links.append(
                        {
                            "rel": "next",
                            "href": f"{stub.url}/search",
                            "method": "POST",
                            "body": {**body, "token": str(offset + body["limit"])},
                        }
                    )
                features = [i.to_dict(transform_hrefs=False) for i in page]
                self.reply(200, {"type": "FeatureCollection", "features": features, "links": links})

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def posts(self) -> list[dict[str, Any]]:
        return [body for method, _, body in self.requests if method == "POST" and body is not None]


def api_items() -> list[pystac.Item]:
    items = []
    for collection_id, group in synthetic_items().items():
        for item in group:
            item.collection_id = collection_id
            items.append(item)
    return items


@pytest.fixture
def fast_retries(monkeypatch: MonkeyPatch) -> None:
    monkeypatch.setattr(search, "HTTP_BACKOFF_S", 0.01)
    monkeypatch.setattr(search, "HTTP_RETRIES", 3)


def test_api_search_pages_through_every_page_and_matches_the_static_backend(
    catalog_path: Path, fast_retries: None
) -> None:
    with StacStub(api_items()) as api:
        found = search_items(aoi_2023(), query(HLS_QUERY, api.url, page_size=1, max_cloud_cover=None))
        expected = search_items(aoi_2023(), query(HLS_QUERY, catalog_path, max_cloud_cover=None))
        assert ids(found) == ids(expected) and len(found) == 4
        posts = api.posts()
        # 6 HLS items in the collections (one far away and one from 2022 are the stub's: it ignores
        # bbox and datetime), one per page: every page was fetched
        assert [p.get("token") for p in posts] == [None, "1", "2", "3", "4", "5"]
        assert all(p["limit"] == 1 for p in posts)


def test_api_cloud_filter_is_sent_only_when_the_api_conforms(catalog_path: Path, fast_retries: None) -> None:
    expected = ids(search_items(aoi_2023(), query(HLS_QUERY, catalog_path)))
    with StacStub(api_items()) as api:
        assert ids(search_items(aoi_2023(), query(HLS_QUERY, api.url))) == expected
        assert api.posts()[-1]["query"] == {"eo:cloud_cover": {"lte": 20}}
        assert ids(search_items(aoi_2023(), query(HLS_QUERY, api.url, cloud_filter="local"))) == expected
        assert "query" not in api.posts()[-1]  # filtered locally only: same result
    with StacStub(api_items(), conforms_query=False) as api:
        assert ids(search_items(aoi_2023(), query(HLS_QUERY, api.url))) == expected
        assert "query" not in api.posts()[-1]


def test_api_search_retries_transient_errors_with_backoff(catalog_path: Path, fast_retries: None) -> None:
    with StacStub(api_items(), failures=2) as api:  # the landing page fails twice, then works
        found = search_items(aoi_2023(), query(HLS_QUERY, api.url))
        assert ids(found) == ids(search_items(aoi_2023(), query(HLS_QUERY, catalog_path)))
        assert [method for method, _, _ in api.requests[:3]] == ["GET", "GET", "GET"]


def test_api_search_fails_after_the_retries_naming_the_url(fast_retries: None) -> None:
    with StacStub(api_items(), failures=100) as api:
        with pytest.raises(SearchError, match=rf"STAC API {api.url} \(after 3 retries with exponential backoff"):
            search_items(aoi_2023(), query(HLS_QUERY, api.url))
        assert len(api.requests) == 4  # the first try and 3 retries
    with StacStub(api_items()) as api:
        # the landing page works, the search fails: the message names the search endpoint
        api.search_failures = 100
        with pytest.raises(SearchError, match=rf"the search at {api.url}/search failed after 3 retries"):
            search_items(aoi_2023(), query(HLS_QUERY, api.url))
        assert len(api.posts()) == 4


# ------------------------------------------------------------------------------ credentials


def test_missing_earthdata_credentials_stop_the_search_before_any_network_call(
    no_credentials: Path, monkeypatch: MonkeyPatch
) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("network call before the credential check")

    monkeypatch.setattr(search, "check_reachable", no_network)
    cmr = {
        "source": "https://cmr.earthdata.nasa.gov/stac/LPCLOUD",
        "collections": ["HLSS30_2.0", "HLSL30_2.0"],
        "signing": "earthdata",
    }
    with pytest.raises(access.CredentialsError, match=r"stac\.imagery\.signing is 'earthdata' but no NASA Earthdata"):
        search_items(aoi_2023(), cmr)
    with pytest.raises(ValueError, match=r"stac\.labels\.signing: unknown signing method 'sas'"):
        access.check_signing("sas", "stac.labels.signing")
    access.check_signing("none")
    access.check_signing("planetary_computer")


# --------------------------------------------------------------------------- season windows


# ------------------------------------------------------------------------------ real configs


REPO = Path(__file__).resolve().parents[1]
REAL_CONFIGS = ("planetary_computer.yaml", "nasa_cmr.yaml")


@pytest.mark.parametrize("name", REAL_CONFIGS)
def test_real_configs_are_valid(name: str) -> None:
    import yaml

    from lulc.config import load_config

    config = load_config(
        yaml.safe_load((REPO / "config" / name).read_text()), REPO / "workflow/schemas/config.schema.yaml"
    )
    imagery, labels = config["stac"]["imagery"], config["stac"]["labels"]
    assert imagery["source"].startswith("https://") and labels["source"].startswith("https://")
    assert labels["collections"] == ["io-lulc-annual-v02"] and labels["signing"] == "planetary_computer"
    assert labels["max_cloud_cover"] is None  # an API would drop label items, which carry no eo:cloud_cover
    if name == "nasa_cmr.yaml":
        assert imagery["collections"] == ["HLSS30_2.0", "HLSL30_2.0"] and imagery["signing"] == "earthdata"
    else:
        assert imagery["collections"] == ["hls2-s30", "hls2-l30"] and imagery["signing"] == "planetary_computer"
    assert all(collection in hls.COLLECTION_SENSOR for collection in imagery["collections"])
    section("download", config["download"])  # its cross-field rules: one season window per frame
    for aoi_name, aoi_cfg in config["aois"].items():
        aoi = AOI.from_config(aoi_name, aoi_cfg)
        assert (aoi.bbox[2] - aoi.bbox[0]) < 0.5 and (aoi.bbox[3] - aoi.bbox[1]) < 0.5  # small


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL_CONFIGS)
def test_real_config_fails_early_and_clearly_offline(name: str, tmp_path: Path, no_credentials: Path) -> None:
    """The real snakemake with a real-data config on a machine that cannot reach the internet (simulated
    everywhere, without touching the network: every connection must go through a proxy on a closed
    loopback port). The search stage stops within seconds with the message; the NASA config even earlier,
    on the missing credentials; the demo is never built."""
    import os
    import subprocess
    import sys
    import time

    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "https_proxy")}
    env["HTTPS_PROXY"] = env["HTTP_PROXY"] = f"http://127.0.0.1:{free_port()}"
    snakemake = Path(sys.executable).parent / "snakemake"
    command = [str(snakemake), "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path)]
    command += ["--configfile", str(REPO / "config" / name), "--cores", "1"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    elapsed = time.perf_counter() - start
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert elapsed < 120, elapsed
    assert "rule demo" not in output  # a real-data config never builds the demo
    assert not list((tmp_path / "results").rglob("*.json")) if (tmp_path / "results").exists() else True
    if name == "nasa_cmr.yaml":
        assert "stac.imagery.signing is 'earthdata' but no NASA Earthdata credentials" in output
        assert "EARTHDATA_TOKEN" in output
    else:
        assert "stac.imagery.source https://planetarycomputer.microsoft.com/api/stac/v1 is not reachable" in output
        assert "real-data configs need network; the default demo config runs offline" in output


def test_save_keeps_absolute_local_paths_of_api_items(tmp_path: Path) -> None:
    """An API (e.g. pgstac over files on disk) may serve absolute local paths: they must not become URLs."""
    item = hls_item("HLS.S30.T32TNR.2023069T101011.v2.0", utc(2023, 3, 10), 5.0, HERE)
    item.assets["B02"].href = "/data/hls/B02.tif"
    item.assets["B03"].href = "https://data.example.test/B03.tif"
    item.assets["B04"].href = "B04.tif"  # relative: resolved against the item's own URL
    item.set_self_href("http://127.0.0.1:8080/collections/hls2-s30/items/x")
    out = tmp_path / "items.json"
    save_item_collection(pystac.ItemCollection([item]), out)
    assets = json.loads(out.read_text())["features"][0]["assets"]
    assert assets["B02"]["href"] == "/data/hls/B02.tif"
    assert assets["B03"]["href"] == "https://data.example.test/B03.tif"
    assert assets["B04"]["href"] == "http://127.0.0.1:8080/collections/hls2-s30/items/B04.tif"


def test_every_real_fixture_maps_to_the_right_assets() -> None:
    """Each real document: HLS collections and items map to the six Prithvi bands + Fmask of their sensor,
    IO LULC to its ``data`` asset and a CRS, anything else (NAIP) is refused as imagery."""
    import stackstac

    from lulc.download import with_projection

    root = fixtures_or_skip(STAC_FIXTURES)
    seen: dict[str, int] = {"hls collection": 0, "hls item": 0, "io collection": 0, "io item": 0, "other item": 0}
    for path in sorted(root.rglob("*.json")):
        document = json.loads(path.read_text())
        items: list[pystac.Item] = []
        if isinstance(document, list):
            items = [pystac.Item.from_dict(feature) for feature in document]
        elif document.get("type") == "Feature":
            items = [pystac.Item.from_dict(document)]
        elif document.get("type") == "FeatureCollection":
            items = list(pystac.ItemCollection.from_dict(document))
        elif document.get("type") == "Collection":
            collection = pystac.Collection.from_dict(document)
            if collection.id in hls.COLLECTION_SENSOR:
                sensor = hls.COLLECTION_SENSOR[collection.id]
                assert sensor == ("S30" if "S30" in collection.id.upper() else "L30"), collection.id
                if collection.item_assets:  # Planetary Computer documents its asset keys; CMR does not
                    assert {*SENSOR_ASSETS[sensor], FMASK_ASSET} <= set(collection.item_assets), path
                seen["hls collection"] += 1
            elif collection.id == "io-lulc-annual-v02":
                assert "data" in collection.item_assets
                seen["io collection"] += 1
        for item in items:
            if item.collection_id in hls.COLLECTION_SENSOR:
                sensor = hls.COLLECTION_SENSOR[item.collection_id]
                mapping = sensor_assets(item)
                assert list(mapping.values()) == [*SENSOR_ASSETS[sensor], FMASK_ASSET]
                assert all(item.assets[key].href.startswith("https://") for key in mapping.values())
                assert all(item.assets[key].href.endswith(f".{key}.tif") for key in mapping.values())
                seen["hls item"] += 1
            elif item.collection_id == "io-lulc-annual-v02":
                assert "data" in item.assets and item.datetime is None
                (fixed,) = with_projection([item], stackstac.DEFAULT_GDAL_ENV, "data")  # proj:code, no read
                assert fixed.properties["proj:epsg"] == item_epsg(item) == 32660
                seen["io item"] += 1
            else:
                with pytest.raises(ValueError, match="not an HLS S30 or L30 item"):
                    sensor_assets(item)
                seen["other item"] += 1
    assert seen["hls collection"] == 4 and seen["io collection"] == 1, seen
    assert seen["hls item"] >= 1 and seen["io item"] == 4 and seen["other item"] >= 20, seen
