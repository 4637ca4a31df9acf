"""Tests for the offline demo: STAC structure, raster formats, Fmask semantics, realism, determinism."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.warp import Resampling, reproject

from lulc import demo
from lulc.aoi import AOI
from lulc.demo import generate as demo_generate
from lulc.demo import stac as demo_stac
from lulc.demo.arrays import child_rng
from lulc.hls import (
    FMASK_ASSET,
    FMASK_NODATA,
    REFLECTANCE_NODATA,
    SENSOR_ASSETS,
    cloud_coverage,
    fmask_flags,
    utm_epsg,
)
from lulc.legends import IGNORE_INDEX, collection_table, declared_table, preset, read_legend
from lulc.search import SearchError, search_items

IO = preset("io-lulc-9")
WORLDCOVER = preset("esa-worldcover")
IO_CLASSES = {cls.codes[0]: cls.name for cls in IO.classes}
IO_NODATA = IO.nodata[0]
SIZE_PX = 96
DATES_PER_SENSOR = 3
CLOUDY_DATES = 1
YEAR = 2023
SEED = 7
REGIONS = {
    "demo_iowa": {"center": [-93.45, 42.05], "size_px": SIZE_PX},
    "demo_valley": {"center": [-121.05, 38.65], "size_px": SIZE_PX, "landscape": "valley"},
}
EXPECTED_EPSG = {"demo_iowa": 32615, "demo_valley": 32610}
CROPS = next(code for code, name in IO_CLASSES.items() if name == "crops")
WATER = next(code for code, name in IO_CLASSES.items() if name == "water")
PRITHVI_V1_MEAN = np.array([775, 1081, 1229, 2497, 2204, 1611])


def _generate(out_dir: Path, seed: int = SEED) -> Path:
    return demo.generate_demo(out_dir, REGIONS, YEAR, seed, DATES_PER_SENSOR, CLOUDY_DATES)


@pytest.fixture(scope="module")
def catalog_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _generate(tmp_path_factory.mktemp("demo") / "demo")


@pytest.fixture(scope="module")
def catalog(catalog_path: Path) -> pystac.Catalog:
    return pystac.Catalog.from_file(str(catalog_path))


def _items(catalog: pystac.Catalog, collection_id: str) -> list[pystac.Item]:
    collection = catalog.get_child(collection_id)
    assert collection is not None, collection_id
    return sorted(collection.get_items(), key=lambda item: item.id)


def _hls_items(catalog: pystac.Catalog) -> Iterator[tuple[str, pystac.Item]]:
    for sensor, collection_id in demo.HLS_COLLECTIONS.items():
        for item in _items(catalog, collection_id):
            yield sensor, item


def _epsg(item: pystac.Item) -> int:
    return int(str(item.properties["proj:code"]).removeprefix("EPSG:"))


def _region_items(catalog: pystac.Catalog, region: str) -> list[tuple[str, pystac.Item]]:
    return [(s, item) for s, item in _hls_items(catalog) if _epsg(item) == EXPECTED_EPSG[region]]


def _label_item(catalog: pystac.Catalog, region: str) -> pystac.Item:
    (item,) = [i for i in _items(catalog, demo.LABEL_COLLECTION) if _epsg(i) == EXPECTED_EPSG[region]]
    return item


def _read(item: pystac.Item, key: str) -> tuple[np.ndarray, rasterio.profiles.Profile]:
    with rasterio.open(item.assets[key].get_absolute_href()) as src:
        return src.read(1), src.profile


def _labels_on_hls_grid(label_item: pystac.Item, hls_item: pystac.Item) -> np.ndarray:
    """The label raster reprojected with mode resampling onto an HLS item's grid."""
    labels, label_profile = _read(label_item, demo.LABEL_ASSET)
    _, hls_profile = _read(hls_item, FMASK_ASSET)
    out = np.zeros((hls_profile["height"], hls_profile["width"]), dtype=np.uint8)
    reproject(
        labels,
        out,
        src_transform=label_profile["transform"],
        src_crs=label_profile["crs"],
        src_nodata=IO_NODATA,
        dst_transform=hls_profile["transform"],
        dst_crs=hls_profile["crs"],
        dst_nodata=IO_NODATA,
        resampling=Resampling.mode,
    )
    return out


def _is_cog(path: str) -> bool:
    try:
        from rio_cogeo.cogeo import cog_validate
    except ImportError:  # fall back to the structural checks
        with rasterio.open(path) as src:
            return src.profile.get("tiled", False) and bool(src.overviews(1))
    valid, errors, warnings = cog_validate(path, quiet=True)
    return valid and not errors and not warnings


# ---------------------------------------------------------------------------------------------------------
# STAC structure
# ---------------------------------------------------------------------------------------------------------


def test_catalog_has_the_three_collections_with_items(catalog: pystac.Catalog) -> None:
    assert sorted(child.id for child in catalog.get_children()) == sorted(demo.DEMO_COLLECTIONS)
    assert len(_items(catalog, "hls2-s30")) == len(REGIONS) * DATES_PER_SENSOR
    assert len(_items(catalog, "hls2-l30")) == len(REGIONS) * DATES_PER_SENSOR
    assert len(_items(catalog, "io-lulc-annual-v02")) == len(REGIONS)


def test_collections_declare_item_assets_for_written_assets_only(catalog: pystac.Catalog) -> None:
    for sensor, collection_id in demo.HLS_COLLECTIONS.items():
        collection = catalog.get_child(collection_id)
        assert isinstance(collection, pystac.Collection)
        assert set(collection.item_assets) == {*SENSOR_ASSETS[sensor], FMASK_ASSET}
        items = _items(catalog, collection_id)
        start, end = collection.extent.temporal.intervals[0]
        assert start == min(i.datetime for i in items) and end == max(i.datetime for i in items)
    labels = catalog.get_child(demo.LABEL_COLLECTION)
    assert isinstance(labels, pystac.Collection)
    assert set(labels.item_assets) == {demo.LABEL_ASSET}


def test_hrefs_are_relative_so_the_folder_can_move(catalog_path: Path, tmp_path: Path) -> None:
    root = catalog_path.parent
    for path in root.rglob("*.json"):
        text = path.read_text()
        assert str(root) not in text, path
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    catalog = pystac.Catalog.from_file(str(moved / "catalog.json"))
    items = [item for collection_id in demo.DEMO_COLLECTIONS for item in _items(catalog, collection_id)]
    assert len(items) == 2 * len(REGIONS) * DATES_PER_SENSOR + len(REGIONS)
    for item in items:
        for asset in item.assets.values():
            assert asset.href.startswith("./")
            assert Path(asset.get_absolute_href()).is_file()
            assert str(moved) in asset.get_absolute_href()


def test_hls_items_have_the_real_asset_keys_and_ids(catalog: pystac.Catalog) -> None:
    id_pattern = re.compile(r"^HLS\.(S30|L30)\.T(\d{2}[C-X][A-Z]{2})\.(\d{4})(\d{3})T(\d{6})\.v2\.0$")
    for sensor, item in _hls_items(catalog):
        assert set(item.assets) == {*SENSOR_ASSETS[sensor], FMASK_ASSET}
        match = id_pattern.match(item.id)
        assert match, item.id
        assert match.group(1) == sensor
        assert int(match.group(3)) == item.datetime.year == YEAR
        assert int(match.group(4)) == item.datetime.timetuple().tm_yday
        assert match.group(5) == item.datetime.strftime("%H%M%S")
        centre_lon = (item.bbox[0] + item.bbox[2]) / 2
        local_solar_hour = (item.datetime.hour + item.datetime.minute / 60 + centre_lon / 15) % 24
        assert 9.5 < local_solar_hour < 11.5  # mid-morning overpass, like both sensors
        platforms = {"S30": {"sentinel-2a", "sentinel-2b"}, "L30": {"landsat-8", "landsat-9"}}[sensor]
        assert item.properties["platform"] in platforms
        for key, asset in item.assets.items():
            assert asset.media_type == "image/tiff; application=geotiff; profile=cloud-optimized"
            assert asset.roles == ["data"]
            assert asset.extra_fields["eo:bands"][0]["name"] == key
            nodata = FMASK_NODATA if key == FMASK_ASSET else REFLECTANCE_NODATA
            assert asset.extra_fields["raster:bands"][0]["nodata"] == nodata


def test_item_json_carries_both_proj_epsg_and_proj_code(catalog_path: Path) -> None:
    paths = [p for p in catalog_path.parent.rglob("*.json") if p.parent.parent.name in demo.DEMO_COLLECTIONS]
    assert len(paths) == 2 * 2 * DATES_PER_SENSOR + 2
    for path in paths:
        properties = json.loads(path.read_text())["properties"]
        assert properties["proj:code"] == f"EPSG:{properties['proj:epsg']}"
        assert properties["proj:epsg"] in EXPECTED_EPSG.values()


def test_label_items_look_like_io_lulc(catalog: pystac.Catalog) -> None:
    for region in REGIONS:
        item = _label_item(catalog, region)
        zone = EXPECTED_EPSG[region] % 100
        assert re.fullmatch(rf"{zone}[C-X]-{YEAR}", item.id), item.id
        assert item.datetime is None
        assert item.properties["start_datetime"] == f"{YEAR}-01-01T00:00:00Z"
        assert item.properties["end_datetime"] == f"{YEAR + 1}-01-01T00:00:00Z"
        asset = item.assets[demo.LABEL_ASSET]
        values = {v for entry in asset.extra_fields["file:values"] for v in entry["values"]}
        assert values == {IO_NODATA, *IO_CLASSES}


def test_hls_dates_spread_over_the_year_and_never_coincide_between_sensors(catalog: pystac.Catalog) -> None:
    for region in REGIONS:
        days = {"S30": set(), "L30": set()}
        for sensor, item in _region_items(catalog, region):
            days[sensor].add(item.datetime.timetuple().tm_yday)
        assert len(days["S30"]) == len(days["L30"]) == DATES_PER_SENSOR
        assert not days["S30"] & days["L30"]
        all_days = sorted(days["S30"] | days["L30"])
        assert all_days[0] < 100 and all_days[-1] > 265  # winter at both ends, summer in between


# ---------------------------------------------------------------------------------------------------------
# Rasters
# ---------------------------------------------------------------------------------------------------------


def test_rasters_are_cogs_with_hls_dtypes_and_nodata(catalog: pystac.Catalog) -> None:
    sensor, item = next(_hls_items(catalog))
    for key in (SENSOR_ASSETS[sensor][0], SENSOR_ASSETS[sensor][3], FMASK_ASSET):
        href = item.assets[key].get_absolute_href()
        assert _is_cog(href), href
        with rasterio.open(href) as src:
            assert src.profile["tiled"] and src.overviews(1)
            assert src.res == (30.0, 30.0)
            if key == FMASK_ASSET:
                assert src.dtypes[0] == "uint8" and src.nodata == FMASK_NODATA
            else:
                assert src.dtypes[0] == "int16" and src.nodata == REFLECTANCE_NODATA
                assert src.scales[0] == pytest.approx(1e-4)


def test_grids_are_in_each_regions_utm_zone(catalog: pystac.Catalog) -> None:
    zones = set()
    for region, epsg in EXPECTED_EPSG.items():
        for _, item in [*_region_items(catalog, region), ("", _label_item(catalog, region))]:
            for asset in item.assets.values():
                with rasterio.open(asset.get_absolute_href()) as src:
                    assert src.crs.to_epsg() == epsg
                    assert [src.height, src.width] == item.properties["proj:shape"]
                    assert list(src.transform)[:6] == pytest.approx(item.properties["proj:transform"])
        zones.add(epsg)
    assert len(zones) == len(REGIONS)


def test_hls_tile_is_larger_than_the_region_and_30m_aligned(catalog: pystac.Catalog) -> None:
    for _, item in _hls_items(catalog):
        height, width = item.properties["proj:shape"]
        assert height == width == SIZE_PX + 2 * demo.TILE_MARGIN_PX
        transform = item.properties["proj:transform"]
        assert transform[2] % 30 == 0 and transform[5] % 30 == 0


def test_label_raster_is_10m_io_codes_on_a_grid_offset_from_the_imagery(catalog: pystac.Catalog) -> None:
    for region in REGIONS:
        label_item = _label_item(catalog, region)
        labels, profile = _read(label_item, demo.LABEL_ASSET)
        _, hls_item = _region_items(catalog, region)[0]
        _, hls_profile = _read(hls_item, FMASK_ASSET)
        assert _is_cog(label_item.assets[demo.LABEL_ASSET].get_absolute_href())
        assert profile["dtype"] == "uint8" and profile["nodata"] == IO_NODATA
        assert (profile["transform"].a, -profile["transform"].e) == (10.0, 10.0)
        assert set(np.unique(labels)) <= {IO_NODATA, *IO_CLASSES}
        assert 0 < np.count_nonzero(labels == IO_NODATA) < 0.01 * labels.size
        dx = profile["transform"].c - hls_profile["transform"].c
        dy = profile["transform"].f - hls_profile["transform"].f
        assert dx % 10 != 0 and dy % 10 != 0  # not aligned with the 30 m grid, nor a 10 m sub-grid of it
        # The labels cover the region itself.
        row, col = demo.TILE_MARGIN_PX, demo.TILE_MARGIN_PX
        left, top = hls_profile["transform"] * (col, row)
        right, bottom = hls_profile["transform"] * (col + SIZE_PX, row + SIZE_PX)
        l_left, l_top = profile["transform"] * (0, 0)
        l_right, l_bottom = profile["transform"] * (profile["width"], profile["height"])
        assert l_left < left and l_right > right and l_top > top and l_bottom < bottom


def test_swath_edge_nodata_stays_in_the_tile_margin(catalog: pystac.Catalog) -> None:
    margin = demo.TILE_MARGIN_PX
    for region in REGIONS:
        with_nodata = 0
        for sensor, item in _region_items(catalog, region):
            fmask, _ = _read(item, FMASK_ASSET)
            blue, _ = _read(item, SENSOR_ASSETS[sensor][0])
            nodata = fmask == FMASK_NODATA
            assert np.array_equal(nodata, blue == REFLECTANCE_NODATA)
            assert not nodata[margin:-margin, margin:-margin].any()
            with_nodata += bool(nodata.any())
        assert with_nodata >= 1


# ---------------------------------------------------------------------------------------------------------
# Fmask and clouds
# ---------------------------------------------------------------------------------------------------------


def test_eo_cloud_cover_is_computed_from_fmask_like_nasa(catalog: pystac.Catalog) -> None:
    for _, item in _hls_items(catalog):
        fmask, _ = _read(item, FMASK_ASSET)
        assert item.properties["eo:cloud_cover"] == round(cloud_coverage(fmask))


def test_each_region_has_heavily_clouded_and_usable_dates(catalog: pystac.Catalog) -> None:
    for region in REGIONS:
        covers = [item.properties["eo:cloud_cover"] for _, item in _region_items(catalog, region)]
        assert sum(cover > 85 for cover in covers) == CLOUDY_DATES
        assert all(cover <= 40 for cover in covers if cover <= 85)


def test_fmask_bits_follow_hls_semantics(catalog: pystac.Catalog) -> None:
    cloudy_checked = water_checked = 0
    for region in REGIONS:
        label_item = _label_item(catalog, region)
        for sensor, item in _region_items(catalog, region):
            fmask, _ = _read(item, FMASK_ASSET)
            bands = {k: _read(item, k)[0].astype(float) for k in SENSOR_ASSETS[sensor]}
            blue, nir = bands[SENSOR_ASSETS[sensor][0]], bands[SENSOR_ASSETS[sensor][3]]
            valid = fmask != FMASK_NODATA
            cloud = fmask_flags(fmask, ["cloud"])
            shadow = fmask_flags(fmask, ["shadow"])
            adjacent = fmask_flags(fmask, ["adjacent"])
            assert not (cloud & adjacent).any() and not (cloud & shadow).any()
            assert set(np.unique(fmask[valid] >> 6)) <= {1, 2}  # aerosol level low / average
            clear = valid & ~fmask_flags(fmask, ["cloud", "shadow", "adjacent", "cirrus"])
            ground = clear & ~fmask_flags(fmask, ["snow"])
            if cloud.sum() > 50 and ground.sum() > 200:
                assert blue[cloud].mean() > 2500 > blue[ground].mean()
                cloudy_checked += 1
            shadowed_ground = shadow & ~fmask_flags(fmask, ["snow"])
            if shadowed_ground.sum() > 50:
                assert nir[shadowed_ground].mean() < 0.7 * nir[ground].mean()
            labels = _labels_on_hls_grid(label_item, item)
            water_bit = fmask_flags(fmask, ["water"])
            labelled_water = (labels == WATER) & clear
            if labelled_water.sum() > 20:
                assert water_bit[labelled_water].mean() > 0.8
                assert (labels[water_bit & clear & (labels != IO_NODATA)] == WATER).mean() > 0.8
                water_checked += 1
    assert cloudy_checked >= len(REGIONS)
    assert water_checked >= 2 * len(REGIONS)


def test_snow_bit_marks_bright_snow_only_in_winter(catalog: pystac.Catalog) -> None:
    snow_seen = False
    for sensor, item in _hls_items(catalog):
        fmask, _ = _read(item, FMASK_ASSET)
        snow = fmask_flags(fmask, ["snow"])
        day = item.datetime.timetuple().tm_yday
        if snow.sum() > 20:
            blue, _ = _read(item, SENSOR_ASSETS[sensor][0])
            assert blue[snow].mean() > 4000
            assert not 150 < day < 250
            snow_seen = True
    assert snow_seen


# ---------------------------------------------------------------------------------------------------------
# Realism: class mix, seasonality, reflectance levels
# ---------------------------------------------------------------------------------------------------------


def test_class_mix_is_imbalanced_and_differs_between_regions(catalog: pystac.Catalog) -> None:
    dominant = {}
    for region in REGIONS:
        labels, _ = _read(_label_item(catalog, region), demo.LABEL_ASSET)
        codes, counts = np.unique(labels[labels != IO_NODATA], return_counts=True)
        shares = dict(zip(codes.tolist(), (counts / counts.sum()).tolist(), strict=True))
        assert max(shares.values()) > 0.25
        assert min(shares.values()) < 0.02
        assert {1, 2, 5, 7} <= set(shares)  # water, trees, crops, built everywhere
        dominant[region] = max(shares, key=shares.get)
    assert dominant["demo_iowa"] == CROPS
    assert dominant["demo_valley"] != CROPS


@pytest.mark.parametrize(
    ("region", "growing_season", "min_gain"),
    [("demo_iowa", (160, 250), 600), ("demo_valley", (90, 250), 150)],
)
def test_crops_are_green_in_the_growing_season_and_bare_in_winter(
    catalog: pystac.Catalog, region: str, growing_season: tuple[int, int], min_gain: float
) -> None:
    """Corn / soy fields are green from June to August only; valley crops green up from spring (and a
    share of winter grain is already green in March), so the contrast there is smaller."""
    label_item = _label_item(catalog, region)
    summer, winter = [], []
    for sensor, item in _region_items(catalog, region):
        fmask, _ = _read(item, FMASK_ASSET)
        nir, _ = _read(item, SENSOR_ASSETS[sensor][3])
        usable = (fmask != FMASK_NODATA) & ~fmask_flags(fmask, ["cloud", "shadow", "adjacent", "snow"])
        crops = usable & (_labels_on_hls_grid(label_item, item) == CROPS)
        if crops.sum() < 30:
            continue
        day = item.datetime.timetuple().tm_yday
        if growing_season[0] <= day <= growing_season[1]:
            summer.append(nir[crops].mean())
        elif day < 80 or day > 320:
            winter.append(nir[crops].mean())
    assert summer and winter, region
    assert max(summer) - np.mean(winter) > min_gain, (summer, winter)


def test_scene_means_land_near_prithvi_pretraining_means(catalog: pystac.Catalog) -> None:
    """Clear, snow-free land inside the regions averages near Prithvi's pretraining means, so the
    pretraining normalisation behaves on the demo as on real data."""
    inner = slice(demo.TILE_MARGIN_PX, -demo.TILE_MARGIN_PX)
    means = []
    for sensor, item in _hls_items(catalog):
        fmask, _ = _read(item, FMASK_ASSET)
        flagged = fmask_flags(fmask, ["cloud", "shadow", "adjacent", "snow"])
        usable = ((fmask != FMASK_NODATA) & ~flagged)[inner, inner]
        if usable.mean() < 0.5:
            continue
        means.append([_read(item, key)[0][inner, inner][usable].mean() for key in SENSOR_ASSETS[sensor]])
    assert len(means) >= len(REGIONS) * 2
    ratio = np.mean(means, axis=0) / PRITHVI_V1_MEAN
    assert np.all((ratio > 0.6) & (ratio < 1.4)), ratio


# ---------------------------------------------------------------------------------------------------------
# Determinism, atomic output and validation
# ---------------------------------------------------------------------------------------------------------


def test_same_arguments_give_byte_identical_files(catalog_path: Path, tmp_path: Path) -> None:
    """Also with the per-region defaults spelled out (labels, years): they change nothing."""
    explicit = {
        "demo_iowa": {**REGIONS["demo_iowa"], "labels": True, "years": None},
        "demo_valley": {**REGIONS["demo_valley"], "labels": True, "years": [YEAR]},
    }
    again = demo.generate_demo(tmp_path / "again", explicit, YEAR, SEED, DATES_PER_SENSOR, CLOUDY_DATES)
    first_root, second_root = catalog_path.parent, again.parent
    first = sorted(p.relative_to(first_root) for p in first_root.rglob("*") if p.is_file())
    second = sorted(p.relative_to(second_root) for p in second_root.rglob("*") if p.is_file())
    assert first == second
    for relative in first:
        assert (first_root / relative).read_bytes() == (second_root / relative).read_bytes(), relative


def test_another_seed_gives_another_landscape(catalog: pystac.Catalog, tmp_path: Path) -> None:
    other = pystac.Catalog.from_file(str(_generate(tmp_path / "other", seed=SEED + 1)))
    for region in REGIONS:
        first, _ = _read(_label_item(catalog, region), demo.LABEL_ASSET)
        second, _ = _read(_label_item(other, region), demo.LABEL_ASSET)
        assert (first != second).mean() > 0.2


def test_a_crash_leaves_no_half_written_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out_dir = tmp_path / "demo.v1"
    _generate(out_dir)
    before = sorted(p.relative_to(out_dir) for p in out_dir.rglob("*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.v1"]  # nothing written beside it

    calls = {"n": 0}
    real_write = demo_stac._write_cog

    def failing_write(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] > 10:
            raise OSError("disk full")
        real_write(*args, **kwargs)

    monkeypatch.setattr(demo_stac, "_write_cog", failing_write)
    with pytest.raises(OSError, match="disk full"):
        _generate(out_dir, seed=SEED + 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.v1"]  # no staging folder left
    assert sorted(p.relative_to(out_dir) for p in out_dir.rglob("*")) == before  # old demo intact

    fresh = tmp_path / "fresh"
    calls["n"] = 0
    with pytest.raises(OSError, match="disk full"):
        _generate(fresh)
    assert not fresh.exists()


@pytest.mark.parametrize(
    ("regions", "message"),
    [
        ({"bad": {"center": [-93.4], "size_px": 64}}, r"demo\.regions\.bad\.center"),
        ({"bad": {"center": [-93.4, 89.0], "size_px": 64}}, r"demo\.regions\.bad\.center"),
        ({"bad": {"center": [-93.4, 42.0], "size_px": 8}}, r"demo\.regions\.bad\.size_px"),
        ({"bad": {"center": [-93.4, 42.0], "size_px": 64, "landscape": "moon"}}, r"landscape"),
        (
            {"a": {"center": [-93.45, 42.05], "size_px": 64}, "b": {"center": [-93.40, 42.0], "size_px": 64}},
            r"demo\.regions\.a and demo\.regions\.b",
        ),
        ({}, r"demo\.regions"),
        ({"bad": {"center": [-93.4, 42.0], "size_px": 64, "labels": "no"}}, r"demo\.regions\.bad\.labels"),
        ({"bad": {"center": [-93.4, 42.0], "size_px": 64, "years": []}}, r"demo\.regions\.bad\.years"),
        ({"bad": {"center": [-93.4, 42.0], "size_px": 64, "years": 2022}}, r"demo\.regions\.bad\.years"),
        ({"bad": {"center": [-93.4, 42.0], "size_px": 64, "years": [1900]}}, r"demo\.regions\.bad\.years"),
        ({"bad": {"center": [-93.4, 42.0], "size_px": 64, "years": [2022, 2022]}}, r"bad\.years.*twice"),
    ],
)
def test_bad_regions_fail_clearly_before_writing(regions: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        demo.generate_demo(tmp_path / "demo", regions, YEAR, SEED, 2, 1)
    assert list(tmp_path.iterdir()) == []


def test_bad_counts_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cloudy_dates"):
        demo.generate_demo(tmp_path / "demo", REGIONS, YEAR, SEED, dates_per_sensor=2, cloudy_dates=5)
    with pytest.raises(ValueError, match="dates_per_sensor"):
        demo.generate_demo(tmp_path / "demo", REGIONS, YEAR, SEED, dates_per_sensor=0, cloudy_dates=0)
    assert list(tmp_path.iterdir()) == []


def test_grid_helpers_match_known_tiles() -> None:
    assert utm_epsg(-93.45, 42.05) == 32615
    assert utm_epsg(-121.05, 38.65) == 32610
    assert utm_epsg(151.2, -33.9) == 32756
    assert demo.mgrs_tile(-93.62, 42.03) == "15TVG"  # Ames, Iowa
    assert demo.mgrs_tile(-121.49, 38.58) == "10SFH"  # Sacramento
    grid = demo.region_grid("x", [-93.45, 42.05], 100)
    assert grid.hls_shape == (164, 164) and grid.label_shape == (396, 396)
    assert grid.hls_transform.c % 30 == 0 and grid.label_transform.c % 30 == demo.LABEL_GRID_OFFSET_M


# ---------------------------------------------------------------------------------------------------------
# Per-region options: imagery without labels, imagery for several years
# ---------------------------------------------------------------------------------------------------------

SMALL_PX = 64
OTHER_YEAR = YEAR - 1
#: demo_iowa: a place to map (no labels) with imagery for two years; demo_valley: as by default.
MIXED_REGIONS = {
    "demo_iowa": {"center": [-93.45, 42.05], "size_px": SMALL_PX, "labels": False, "years": [YEAR, OTHER_YEAR]},
    "demo_valley": {"center": [-121.05, 38.65], "size_px": SMALL_PX, "landscape": "valley"},
}
MIXED_DATES = 2


def _generate_mixed(out_dir: Path, regions: dict = MIXED_REGIONS) -> Path:
    return demo.generate_demo(out_dir, regions, YEAR, SEED, MIXED_DATES, CLOUDY_DATES)


@pytest.fixture(scope="module")
def mixed_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _generate_mixed(tmp_path_factory.mktemp("mixed") / "demo")


@pytest.fixture(scope="module")
def mixed(mixed_path: Path) -> pystac.Catalog:
    return pystac.Catalog.from_file(str(mixed_path))


def _overlaps(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _region_aoi(catalog: pystac.Catalog, region: str, year: int) -> AOI:
    """An AOI over the region's imagery tile (its centre half), for ``year``."""
    _, item = _region_items(catalog, region)[0]
    left, bottom, right, top = item.bbox
    dx, dy = (right - left) / 4, (top - bottom) / 4
    return AOI(region, (left + dx, bottom + dy, right - dx, top - dy), date(year, 1, 1), date(year, 12, 31))


def test_a_region_without_labels_gets_imagery_but_no_label_item(mixed: pystac.Catalog) -> None:
    iowa = _region_items(mixed, "demo_iowa")
    assert {sensor for sensor, _ in iowa} == {"S30", "L30"}
    for sensor, item in iowa:
        assert set(item.assets) == {*SENSOR_ASSETS[sensor], FMASK_ASSET}
        assert all(Path(asset.get_absolute_href()).is_file() for asset in item.assets.values())
    labels = _items(mixed, demo.LABEL_COLLECTION)
    assert not any(_overlaps(label.bbox, item.bbox) for label in labels for _, item in iowa)
    assert not any(_epsg(label) == EXPECTED_EPSG["demo_iowa"] for label in labels)
    valley_label = _label_item(mixed, "demo_valley")  # the other region keeps its labels
    assert valley_label.id.endswith(f"-{YEAR}")
    assert any(_overlaps(valley_label.bbox, item.bbox) for _, item in _region_items(mixed, "demo_valley"))
    assert "without labels: demo_iowa" in mixed.description


def test_search_finds_imagery_of_an_unlabelled_region_and_labels_of_the_others(mixed_path: Path) -> None:
    catalog = pystac.Catalog.from_file(str(mixed_path))
    imagery = {"source": str(mixed_path), "collections": list(demo.HLS_COLLECTIONS.values())}
    labels = {"source": str(mixed_path), "collections": [demo.LABEL_COLLECTION]}
    for year in (YEAR, OTHER_YEAR):
        found = search_items(_region_aoi(catalog, "demo_iowa", year), imagery)
        assert len(found) == 2 * MIXED_DATES and {item.datetime.year for item in found} == {year}
    with pytest.raises(SearchError, match="no STAC items"):
        search_items(_region_aoi(catalog, "demo_iowa", YEAR), labels)
    assert len(search_items(_region_aoi(catalog, "demo_valley", YEAR), labels)) == 1


def test_without_any_labelled_region_the_label_collection_is_empty_but_valid(tmp_path: Path) -> None:
    regions = {"solo": {"center": [-93.45, 42.05], "size_px": demo.MIN_REGION_PX, "labels": False}}
    path = demo.generate_demo(tmp_path / "demo", regions, YEAR, SEED, 1, 0)
    catalog = pystac.Catalog.from_file(str(path))
    assert sorted(child.id for child in catalog.get_children()) == sorted(demo.DEMO_COLLECTIONS)
    collection = catalog.get_child(demo.LABEL_COLLECTION)
    assert isinstance(collection, pystac.Collection)
    assert list(collection.get_items()) == []
    (bbox,) = collection.extent.spatial.bboxes
    ((start, end),) = collection.extent.temporal.intervals
    (_, item) = _region_items(catalog, "demo_iowa")[0]  # "solo" lies where demo_iowa does (same EPSG)
    assert bbox == pytest.approx(item.bbox)
    assert (start.year, end.year) == (YEAR, YEAR + 1)
    pystac.Collection.from_dict(collection.to_dict())  # round-trips as a collection
    labels = {"source": str(path), "collections": [demo.LABEL_COLLECTION]}
    with pytest.raises(SearchError, match="no STAC items"):
        search_items(_region_aoi(catalog, "demo_iowa", YEAR), labels)


def test_years_give_imagery_in_each_year_with_the_real_naming(mixed: pystac.Catalog) -> None:
    id_pattern = re.compile(r"^HLS\.(S30|L30)\.T(\d{2}[C-X][A-Z]{2})\.(\d{4})(\d{3})T(\d{6})\.v2\.0$")
    by_year: dict[int, list[tuple[str, pystac.Item]]] = {}
    for sensor, item in _region_items(mixed, "demo_iowa"):
        match = id_pattern.match(item.id)
        assert match and match.group(1) == sensor, item.id
        assert int(match.group(3)) == item.datetime.year
        assert int(match.group(4)) == item.datetime.timetuple().tm_yday
        by_year.setdefault(item.datetime.year, []).append((sensor, item))
    assert sorted(by_year) == [OTHER_YEAR, YEAR]
    for year, entries in by_year.items():
        sensors = [sensor for sensor, _ in entries]
        assert sensors.count("S30") == sensors.count("L30") == MIXED_DATES, year
        covers = [item.properties["eo:cloud_cover"] for _, item in entries]
        assert sum(cover > 85 for cover in covers) == CLOUDY_DATES, year  # clouds drawn per year
    ids = [item.id for _, item in _region_items(mixed, "demo_iowa")]
    assert len(set(ids)) == len(ids) == 2 * 2 * MIXED_DATES
    days = {year: sorted(i.datetime.timetuple().tm_yday for _, i in entries) for year, entries in by_year.items()}
    assert days[YEAR] != days[OTHER_YEAR]  # dates drawn per year
    # A single-year region is unaffected; the HLS collections' extents span both years.
    assert {item.datetime.year for _, item in _region_items(mixed, "demo_valley")} == {YEAR}
    for collection_id in demo.HLS_COLLECTIONS.values():
        collection = mixed.get_child(collection_id)
        assert isinstance(collection, pystac.Collection)
        ((start, end),) = collection.extent.temporal.intervals
        assert (start.year, end.year) == (OTHER_YEAR, YEAR)
    assert f"demo_iowa ({OTHER_YEAR}, {YEAR})" in mixed.description


def test_years_are_deterministic_and_leave_the_demo_years_imagery_unchanged(mixed_path: Path, tmp_path: Path) -> None:
    """Two generations give the same ids and bytes; adding a year (or dropping labels) does not change
    the imagery of ``demo.year``, whose draws are keyed as for a single-year region."""
    again = pystac.Catalog.from_file(str(_generate_mixed(tmp_path / "again")))
    first = pystac.Catalog.from_file(str(mixed_path))
    first_items = _region_items(first, "demo_iowa")
    assert [item.id for _, item in first_items] == [item.id for _, item in _region_items(again, "demo_iowa")]
    again_by_id = {item.id: item for _, item in _region_items(again, "demo_iowa")}
    for sensor, item in first_items:
        key = SENSOR_ASSETS[sensor][3]
        first_nir, second_nir = _read(item, key)[0], _read(again_by_id[item.id], key)[0]
        assert first_nir.tobytes() == second_nir.tobytes(), item.id

    single = {"demo_iowa": {"center": MIXED_REGIONS["demo_iowa"]["center"], "size_px": SMALL_PX}}
    plain = pystac.Catalog.from_file(str(_generate_mixed(tmp_path / "single", single)))
    plain_items = _region_items(plain, "demo_iowa")
    demo_year = [(s, i) for s, i in first_items if i.datetime.year == YEAR]
    assert [i.id for _, i in demo_year] == [i.id for _, i in plain_items]
    for (sensor, item), (_, plain_item) in zip(demo_year, plain_items, strict=True):
        for key in (SENSOR_ASSETS[sensor][0], FMASK_ASSET):
            first_href = Path(item.assets[key].get_absolute_href())
            assert first_href.read_bytes() == Path(plain_item.assets[key].get_absolute_href()).read_bytes()


def test_the_landscape_changes_a_little_between_years_but_not_in_the_demo_year() -> None:
    grid = demo.region_grid("x", [-93.45, 42.05], 128)
    scene = demo.make_landscape(child_rng(SEED, "x", "landscape"), grid.latent_shape, "agricultural")
    row, col, height, width = grid.region_window
    core = (slice(3 * row, 3 * (row + height)), slice(3 * col, 3 * (col + width)))

    def in_year(years_after: int) -> demo.Landscape:
        return demo.landscape_in_year(scene, child_rng(SEED, "x", "change"), years_after, core)

    assert in_year(0) is scene
    classes = scene.classes.copy()
    changed = {}
    for years_after, new_class in ((1, demo.BUILT), (2, demo.BUILT), (-1, demo.RANGELAND), (-2, demo.RANGELAND)):
        other = in_year(years_after)
        diff = other.classes != classes
        assert 0 < diff[core].mean() < 0.05 * abs(years_after), years_after  # a little, not nothing
        assert (classes[diff] == CROPS).all() and (other.classes[diff] == new_class).all()
        lo, hi = demo.CLASS_MIXING[IO_CLASSES[new_class]][1:]
        assert ((other.mixing[diff] >= lo - 1e-6) & (other.mixing[diff] <= hi + 1e-6)).all()
        assert np.array_equal(other.mixing[~diff], scene.mixing[~diff])
        changed[years_after] = diff
    assert (changed[1] <= changed[2]).all() and (changed[-1] <= changed[-2]).all()  # change accumulates
    assert np.array_equal(scene.classes, classes)  # the drawn landscape is not modified


def test_a_regions_landscape_does_not_depend_on_the_other_regions() -> None:
    """The workflow passes demo.regions sorted by name: a region added under an earlier name must not change
    the landscape (and with it the labels, chips and every result) of the regions already there."""
    alone = {region.grid.name: region.kind for region in demo_generate._validated_regions(REGIONS, YEAR)}
    extra = {"a_first": {"center": [-92.30, 42.05], "size_px": SIZE_PX, "labels": False}, **REGIONS}
    with_extra = {region.grid.name: region.kind for region in demo_generate._validated_regions(extra, YEAR)}
    assert alone == {"demo_iowa": "agricultural", "demo_valley": "valley"}
    assert {name: with_extra[name] for name in alone} == alone and with_extra["a_first"] == "agricultural"


# ---------------------------------------------------------------------------------------------------------
# Label legends (demo.label_legend) and field polygons (demo.label_polygons)
# ---------------------------------------------------------------------------------------------------------

#: The documented IO -> WorldCover mapping of the demo (clouds and nodata -> nodata 0).
EXPECTED_IO_TO_WORLDCOVER = {0: 0, 1: 80, 2: 10, 4: 90, 5: 40, 7: 50, 8: 60, 9: 70, 10: 0, 11: 30}
N_POLYGONS = 8


@pytest.fixture(scope="module")
def worldcover_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The regions of ``catalog`` with WorldCover labels and field polygons (labels do not depend on dates)."""
    out = tmp_path_factory.mktemp("worldcover") / "demo"
    return demo.generate_demo(out, REGIONS, YEAR, SEED, 1, 0, label_legend="esa-worldcover", label_polygons=N_POLYGONS)


def _worldcover_item(path: Path, region: str) -> pystac.Item:
    catalog = pystac.Catalog.from_file(str(path))
    (item,) = [i for i in _items(catalog, demo.WORLDCOVER_COLLECTION) if _epsg(i) == EXPECTED_EPSG[region]]
    return item


def test_the_default_catalog_keeps_io_labels_and_writes_no_polygons(catalog: pystac.Catalog, catalog_path: Path):
    assert demo.demo_collections() == demo.DEMO_COLLECTIONS == ("hls2-s30", "hls2-l30", "io-lulc-annual-v02")
    collection = catalog.get_child(demo.LABEL_COLLECTION)
    assert isinstance(collection, pystac.Collection)
    declared = collection.item_assets[demo.LABEL_ASSET].to_dict()
    assert "classification:classes" not in declared
    assert [e["summary"] for e in declared["file:values"]][:2] == ["No Data", "Water"]
    for region in REGIONS:
        asset = _label_item(catalog, region).assets[demo.LABEL_ASSET]
        assert asset.title == "Global land cover data" and "classification:classes" not in asset.extra_fields
        assert asset.extra_fields["raster:bands"] == [{"nodata": 0, "spatial_resolution": 10, "data_type": "uint8"}]
        truth = catalog_path.parent / demo.TRUTH_DIR / demo.truth_name(region, YEAR)
        assert read_legend(truth).names == IO.names
    assert not (catalog_path.parent / demo.POLYGON_DIR).exists()
    assert "IO LULC-like labels" in catalog.description


def test_worldcover_labels_declare_classes_with_colour_hints(worldcover_path: Path) -> None:
    catalog = pystac.Catalog.from_file(str(worldcover_path))
    assert sorted(child.id for child in catalog.get_children()) == ["esa-worldcover", "hls2-l30", "hls2-s30"]
    collection = catalog.get_child("esa-worldcover")
    assert isinstance(collection, pystac.Collection)
    table = collection_table(collection.to_dict(), demo.LABEL_ASSET)
    assert table is not None and table.nodata == {0}
    assert sorted(table.names) == [code for cls in WORLDCOVER.classes for code in cls.codes]
    for region in REGIONS:
        item = _worldcover_item(worldcover_path, region)
        assert item.datetime is None and item.properties["start_datetime"] == f"{YEAR}-01-01T00:00:00Z"
        fields = item.assets[demo.LABEL_ASSET].extra_fields
        # As written (pystac migrates classification v1.0.0's color-hint to color_hint when it reads an item).
        written = json.loads(Path(str(item.get_self_href())).read_text())["assets"][demo.LABEL_ASSET]
        entries = written["classification:classes"]
        assert all(set(e) == {"value", "description", "color-hint"} for e in entries)
        assert all(re.fullmatch(r"[0-9A-F]{6}", e["color-hint"]) for e in entries)
        hints = {e["value"]: tuple(int(e["color-hint"][i : i + 2], 16) for i in (0, 2, 4)) for e in entries}
        assert hints == {cls.codes[0]: cls.colour for cls in WORLDCOVER.classes}
        assert fields["raster:bands"][0]["nodata"] == 0
        labels, profile = _read(item, demo.LABEL_ASSET)
        assert profile["nodata"] == 0 and profile["dtype"] == "uint8"
        assert set(np.unique(labels)) - {0} <= set(hints)
        item_table = declared_table(fields)
        assert item_table is not None
        WORLDCOVER.check_codes(item_table.names, item.id)  # the preset covers what the items declare


def test_worldcover_labels_are_the_io_labels_remapped(catalog: pystac.Catalog, worldcover_path: Path) -> None:
    assert demo.IO_TO_WORLDCOVER == EXPECTED_IO_TO_WORLDCOVER
    lut = np.zeros(256, dtype=np.uint8)
    for io_code, code in EXPECTED_IO_TO_WORLDCOVER.items():
        lut[io_code] = code
    for region in REGIONS:
        io_labels, io_profile = _read(_label_item(catalog, region), demo.LABEL_ASSET)
        labels, profile = _read(_worldcover_item(worldcover_path, region), demo.LABEL_ASSET)
        assert (profile["crs"], profile["transform"]) == (io_profile["crs"], io_profile["transform"])
        assert np.array_equal(labels, lut[io_labels]), region
        assert (io_labels == 10).any()  # the landscape holds clouds, which WorldCover cannot name


def test_worldcover_truth_is_the_io_truth_in_the_worldcover_legend(catalog_path: Path, worldcover_path: Path):
    for region in REGIONS:
        name = demo.truth_name(region, YEAR)
        io_path = catalog_path.parent / demo.TRUTH_DIR / name
        path = worldcover_path.parent / demo.TRUTH_DIR / name
        assert read_legend(path).names == WORLDCOVER.names
        with rasterio.open(io_path) as src:
            io_truth = src.read(1)
        with rasterio.open(path) as src:
            truth, colormap, tags = src.read(1), src.colormap(1), src.tags()
        assert tags["IGNORE_INDEX"] == str(IGNORE_INDEX)
        assert {i: tuple(colormap[i]) for i in range(WORLDCOVER.num_classes)} == {
            i: (*colour, 255) for i, colour in enumerate(WORLDCOVER.colours)
        }
        io_codes = np.array([cls.codes[0] for cls in IO.classes] + [0] * (256 - IO.num_classes), dtype=np.uint8)
        expected = WORLDCOVER.remap(np.vectorize(EXPECTED_IO_TO_WORLDCOVER.get)(io_codes[io_truth]))
        assert np.array_equal(truth, expected), region


def _polygons(path: Path, region: str):
    import geopandas as gpd

    return gpd.read_file(path.parent / demo.POLYGON_DIR / demo.polygon_name(region))


def _check_polygons(frame, truth_path: Path, count: int) -> None:
    """``count`` separate polygons in EPSG:4326 in the central part of the truth raster, each covering the
    centres of truth pixels of its own class only."""
    from rasterio.features import geometry_mask

    assert frame.crs.to_epsg() == 4326 and len(frame) == count
    legend = read_legend(truth_path)
    assert set(frame["class"]) <= set(legend.names)
    geometries = list(frame.geometry)
    assert all(g.geom_type == "Polygon" and g.is_valid for g in geometries)
    assert not any(a.intersects(b) for i, a in enumerate(geometries) for b in geometries[i + 1 :])
    with rasterio.open(truth_path) as src:
        truth, transform, crs = src.read(1), src.transform, src.crs
        utm = frame.to_crs(crs)
        height, width = src.shape
    area = 0.0
    for name, geometry in zip(utm["class"], utm.geometry, strict=True):
        inside = ~geometry_mask([geometry], (height, width), transform)  # pixels whose centre is inside
        assert inside.sum() >= 25, name
        assert set(np.unique(truth[inside])) == {legend.names.index(name)}, name
        area += geometry.area
    assert area < 0.25 * height * width * abs(transform.a * transform.e)  # sparse: part of the region


def test_worldcover_field_polygons_lie_in_one_true_class_each(worldcover_path: Path) -> None:
    for region in REGIONS:
        frame = _polygons(worldcover_path, region)
        _check_polygons(frame, worldcover_path.parent / demo.TRUTH_DIR / demo.truth_name(region, YEAR), N_POLYGONS)
        assert set(frame["code"]) <= {cls.codes[0] for cls in WORLDCOVER.classes}
        assert "cropland" in set(frame["class"]) or region == "demo_valley"


def test_io_field_polygons_are_deterministic_and_named_in_io_classes(tmp_path: Path) -> None:
    regions = {"demo_iowa": {"center": [-93.45, 42.05], "size_px": 48}}
    paths = [demo.generate_demo(tmp_path / f"demo{i}", regions, YEAR, SEED, 1, 0, label_polygons=5) for i in (0, 1)]
    first, second = (_polygons(path, "demo_iowa") for path in paths)
    _check_polygons(first, paths[0].parent / demo.TRUTH_DIR / demo.truth_name("demo_iowa", YEAR), 5)
    assert set(first["class"]) <= set(IO.names) and "clouds" not in set(first["class"])
    assert list(first["class"]) == list(second["class"])
    assert all(a.equals_exact(b, 0.0) for a, b in zip(first.geometry, second.geometry, strict=True))


def test_bad_label_options_fail_clearly(tmp_path: Path) -> None:
    regions = {"demo_iowa": {"center": [-93.45, 42.05], "size_px": demo.MIN_REGION_PX}}
    with pytest.raises(ValueError, match="demo.label_legend must be one of"):
        demo.generate_demo(tmp_path / "demo", regions, YEAR, SEED, 1, 0, label_legend="usda-cdl")
    with pytest.raises(ValueError, match="demo.label_polygons must be an integer >= 0"):
        demo.generate_demo(tmp_path / "demo", regions, YEAR, SEED, 1, 0, label_polygons=-1)
    with pytest.raises(ValueError, match=r"demo.label_polygons: only \d+ of 5000 polygons fit region 'demo_iowa'"):
        demo.generate_demo(tmp_path / "demo", regions, YEAR, SEED, 1, 0, label_polygons=5000)
    assert not (tmp_path / "demo").exists()
