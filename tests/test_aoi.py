"""AOIs (bbox, vector file, year or date range) and download season windows, parsed with the key named."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from lulc import aoi
from lulc.aoi import AOI


def test_aoi_from_bbox_and_year() -> None:
    aoi = AOI.from_config("alps", {"bbox": [10.2, 45.2, 10.8, 45.8], "year": 2023})
    assert aoi == AOI("alps", (10.2, 45.2, 10.8, 45.8), date(2023, 1, 1), date(2023, 12, 31))
    assert aoi.datetime_range() == "2023-01-01T00:00:00Z/2023-12-31T23:59:59Z"


def test_aoi_from_start_end_strings_and_yaml_dates() -> None:
    aoi = AOI.from_config("a", {"bbox": [0, 0, 1, 1], "start": "2023-04-01", "end": "2023-09-30"})
    assert (aoi.start, aoi.end) == (date(2023, 4, 1), date(2023, 9, 30))
    assert aoi.datetime_range() == "2023-04-01T00:00:00Z/2023-09-30T23:59:59Z"
    # YAML turns unquoted 2023-04-01 into a date object
    same = AOI.from_config("a", {"bbox": [0, 0, 1, 1], "start": date(2023, 4, 1), "end": date(2023, 9, 30)})
    assert same == aoi
    one_day = AOI.from_config("a", {"bbox": [0, 0, 1, 1], "start": "2023-04-01", "end": "2023-04-01"})
    assert one_day.datetime_range() == "2023-04-01T00:00:00Z/2023-04-01T23:59:59Z"


def test_aoi_from_geojson_and_geopackage(tmp_path: Path) -> None:
    import geopandas as gpd
    from shapely.geometry import box

    frame = gpd.GeoDataFrame(
        {"name": ["a", "b"]}, geometry=[box(10.2, 45.2, 10.5, 45.5), box(10.4, 45.3, 10.8, 45.8)], crs=4326
    )
    frame.to_file(tmp_path / "aoi.geojson", driver="GeoJSON")
    aoi = AOI.from_config("alps", {"file": "aoi.geojson", "year": 2023}, base_dir=tmp_path)
    assert aoi.bbox == pytest.approx((10.2, 45.2, 10.8, 45.8))
    # a projected GeoPackage is reprojected to WGS84 before taking its bounds
    frame.to_crs(32632).to_file(tmp_path / "aoi.gpkg", driver="GPKG")
    projected = AOI.from_config("alps", {"file": str(tmp_path / "aoi.gpkg"), "year": 2023})
    assert projected.bbox == pytest.approx((10.2, 45.2, 10.8, 45.8), abs=0.02)
    assert projected.bbox[0] <= 10.2 and projected.bbox[3] >= 45.8


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        (
            {"bbox": [11, 45, 10, 46], "year": 2023},
            r"aois\.bad\.bbox: min_lon 11\.0 must be less than max_lon",
        ),
        ({"bbox": [10, 46, 11, 45], "year": 2023}, r"aois\.bad\.bbox: min_lat"),
        ({"bbox": [10, 45, 11, 95], "year": 2023}, r"aois\.bad\.bbox: latitude 95"),
        ({"bbox": [-190, 45, 11, 46], "year": 2023}, r"aois\.bad\.bbox: longitude -190"),
        ({"bbox": [10, 45, 11], "year": 2023}, r"aois\.bad\.bbox: expected four"),
        ({"bbox": "10,45,11,46", "year": 2023}, r"aois\.bad\.bbox"),
        (
            {"file": "no/such/aoi.geojson", "year": 2023},
            r"aois\.bad\.file: .*no/such/aoi\.geojson.* not found",
        ),
        ({"bbox": [10, 45, 11, 46]}, r"aois\.bad: give 'year' or both 'start' and 'end'"),
        ({"bbox": [10, 45, 11, 46], "start": "2023-01-01"}, r"aois\.bad\.end: missing"),
        (
            {"bbox": [10, 45, 11, 46], "start": "2023-06-01", "end": "2023-05-01"},
            r"aois\.bad: start 2023-06-01 is after end",
        ),
        (
            {"bbox": [10, 45, 11, 46], "start": "2023-13-01", "end": "2023-12-01"},
            r"aois\.bad\.start: expected a date",
        ),
        (
            {"bbox": [10, 45, 11, 46], "year": 2023, "start": "2023-01-01", "end": "2023-02-01"},
            r"aois\.bad: .*not both",
        ),
        ({"bbox": [10, 45, 11, 46], "year": "2023"}, r"aois\.bad\.year"),
        ({"year": 2023}, r"aois\.bad: give exactly one of 'bbox' or 'file'"),
        ({"bbox": [10, 45, 11, 46], "file": "x.geojson", "year": 2023}, r"aois\.bad: give exactly one"),
        ({"bbox": [10, 45, 11, 46], "year": 2023, "years": 2}, r"aois\.bad: unknown key.*years"),
    ],
)
def test_aoi_bad_input_names_the_key(cfg: dict[str, Any], expected: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=expected):
        AOI.from_config("bad", cfg, base_dir=tmp_path)


def test_parse_season_windows() -> None:
    assert aoi.parse_season_windows(None, 3) == []
    windows = aoi.parse_season_windows([["03-01", "05-31"], ["06-01", "08-31"], ["12-01", "02-29"]], 3)
    assert windows == [("03-01", "05-31"), ("06-01", "08-31"), ("12-01", "02-29")]
    with pytest.raises(ValueError, match=r"download\.season_windows: 2 window\(s\) given but download\.frames = 3"):
        aoi.parse_season_windows([["03-01", "05-31"], ["06-01", "08-31"]], 3)
    with pytest.raises(ValueError, match=r"download\.season_windows\[1\]: '02-30' is not a day of the year"):
        aoi.parse_season_windows([["01-01", "01-31"], ["02-01", "02-30"]], 2)
    with pytest.raises(ValueError, match=r"download\.season_windows\[0\]: expected \[start, end\]"):
        aoi.parse_season_windows([["01-01"]], 1)
    with pytest.raises(ValueError, match=r"download\.season_windows: expected a list"):
        aoi.parse_season_windows("03-01..05-31", 1)
    with pytest.raises(ValueError, match=r"'3-1' is not a day"):
        aoi.parse_season_windows([["3-1", "05-31"]], 1)
