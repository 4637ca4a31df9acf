"""Tests for lulc.hls: Fmask bit decoding, sensor detection, the time-major band order, and NASA's
CLOUD_COVERAGE definition checked on a real HLS S30 Fmask tile (read in place from ../shared/fixtures; skipped
where that folder is absent, failed instead where LULC_REQUIRE_FIXTURES=1, as CI sets it)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from lulc import hls

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
GRANULE = "HLS.S30.T13RCN.2024128T173909.v2.0"
FMASK_DIR = FIXTURES / "rasters" / "hls_fmask"


# ------------------------------------------------------------------------------------ Fmask bits


def test_fmask_flags_decodes_each_bit() -> None:
    # One pixel per bit 0..7, a clear pixel, a nodata pixel and a pixel with cloud + shadow + water.
    fmask = np.array([[1, 2, 4, 8], [16, 32, 64, 128], [0, 255, 2 | 8 | 32, 192]], dtype=np.uint8)
    expected = {
        "cirrus": [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
        "cloud": [[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]],
        "adjacent": [[0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
        "shadow": [[0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 1, 0]],
        "snow": [[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]],
        "water": [[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]],
    }
    for flag, mask in expected.items():
        got = hls.fmask_flags(fmask, (flag,))
        np.testing.assert_array_equal(got, np.array(mask, dtype=bool), err_msg=flag)


def test_fmask_flags_combines_flags_and_ignores_aerosol_and_nodata() -> None:
    fmask = np.array([0, 2, 4, 8, 64, 128, 192, 255, 254], dtype=np.uint8)
    got = hls.fmask_flags(fmask, hls.DEFAULT_MASK_FLAGS)
    # aerosol bits (6-7) are not mask flags; nodata (255) is never flagged although all its bits are set;
    # 254 is a valid value with bits 1-7 set, so it is flagged.
    np.testing.assert_array_equal(got, [False, True, True, True, False, False, False, False, True])
    assert not hls.fmask_flags(fmask, ()).any()


def test_fmask_flags_rejects_unknown_flag() -> None:
    with pytest.raises(ValueError, match="clouds"):
        hls.fmask_flags(np.zeros(3, dtype=np.uint8), ("clouds",))


def test_fmask_valid_and_cloud_coverage_on_handmade_array() -> None:
    # 8 valid pixels: 1 cloud, 1 shadow, 1 cloud+shadow, 1 adjacent only, 1 cirrus only, 3 clear; 2 nodata.
    fmask = np.array([2, 8, 10, 4, 1, 0, 32, 64, 255, 255], dtype=np.uint8)
    np.testing.assert_array_equal(hls.fmask_valid(fmask), [True] * 8 + [False] * 2)
    assert hls.cloud_coverage(fmask) == pytest.approx(100.0 * 3 / 8)
    assert hls.cloud_coverage(np.full((4, 4), hls.FMASK_NODATA, dtype=np.uint8)) == 100.0
    assert hls.cloud_coverage(np.zeros((4, 4), dtype=np.uint8)) == 0.0


# ------------------------------------------------------------------------------ sensors and bands


@pytest.mark.parametrize(
    ("collection", "item_id", "sensor"),
    [
        ("hls2-s30", "S30_13RCN_2024128_0", "S30"),
        ("hls2-l30", "L30_13RCN_2024130_0", "L30"),
        ("HLSS30_2.0", "HLS.S30.T10TEK.2021122T185911.v2.0", "S30"),
        ("HLSL30_2.0", "HLS.L30.T10TEK.2021125T184203.v2.0", "L30"),
        (None, "HLS.S30.T10TEK.2021122T185911.v2.0", "S30"),
        ("my-copy", "HLS.L30.T10TEK.2021125T184203.v2.0", "L30"),
    ],
)
def test_sensor_of(collection: str | None, item_id: str, sensor: str) -> None:
    assert hls.sensor_of(collection, item_id) == sensor


def test_sensor_of_rejects_non_hls_item() -> None:
    with pytest.raises(ValueError, match="60W-2023"):
        hls.sensor_of("io-lulc-annual-v02", "60W-2023")


def test_sensor_assets_table_matches_brief() -> None:
    assert hls.PRITHVI_BANDS == ("BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2")
    assert hls.SENSOR_ASSETS["S30"] == ("B02", "B03", "B04", "B8A", "B11", "B12")
    assert hls.SENSOR_ASSETS["L30"] == ("B02", "B03", "B04", "B05", "B06", "B07")


def test_band_names_are_time_major() -> None:
    names = hls.band_names(3)
    assert len(names) == 3 * len(hls.PRITHVI_BANDS)
    assert names[:7] == [f"t0_{band}" for band in hls.PRITHVI_BANDS] + ["t1_BLUE"]
    for t in range(3):
        for b, band in enumerate(hls.PRITHVI_BANDS):
            assert names[t * 6 + b] == f"t{t}_{band}"
    assert hls.band_names(0) == []


# --------------------------------------------------------------------------- real Fmask fixture


@pytest.fixture(scope="module")
def real_fmask() -> tuple[np.ndarray, dict[str, str], object]:
    """The real S30 Fmask tile, read whole (3660 x 3660 uint8, 13 MB), with its tags and profile."""
    path = FMASK_DIR / f"{GRANULE}.Fmask.tif"
    if not path.is_file():
        missing = f"../shared/fixtures not found ({path})"
        if os.environ.get("LULC_REQUIRE_FIXTURES"):
            pytest.fail(f"{missing}: the real-document tests are required (LULC_REQUIRE_FIXTURES is set)")
        pytest.skip(f"{missing}: real-document tests skipped")
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1), src.tags(), src.profile


def _cmr_cloud_coverage() -> int:
    root = ET.parse(FMASK_DIR / f"{GRANULE}.cmr.xml").getroot()
    for attribute in root.iter("AdditionalAttribute"):
        if attribute.findtext("Name") == "CLOUD_COVERAGE":
            return int(attribute.findtext("Values/Value"))
    raise AssertionError("CLOUD_COVERAGE not found in the CMR metadata")


def test_real_fmask_tile_layout(real_fmask: tuple[np.ndarray, dict[str, str], dict]) -> None:
    fmask, _, profile = real_fmask
    assert fmask.shape == (3660, 3660)
    assert fmask.dtype == np.uint8
    assert profile["nodata"] == hls.FMASK_NODATA
    assert profile["crs"].to_epsg() == 32613


def test_real_fmask_cloud_coverage_matches_nasa(real_fmask: tuple[np.ndarray, dict[str, str], dict]) -> None:
    fmask, tags, _ = real_fmask
    nasa = _cmr_cloud_coverage()
    assert nasa == 9
    assert int(tags["cloud_coverage"]) == nasa
    coverage = hls.cloud_coverage(fmask)
    assert coverage == pytest.approx(8.86, abs=0.01)
    assert round(coverage) == nasa


def test_real_fmask_other_definitions_differ(real_fmask: tuple[np.ndarray, dict[str, str], dict]) -> None:
    """Cloud alone or cloud + adjacent + shadow are plausible but wrong readings of CLOUD_COVERAGE."""
    fmask, _, _ = real_fmask
    n_valid = int(hls.fmask_valid(fmask).sum())
    cloud_only = 100.0 * hls.fmask_flags(fmask, ("cloud",)).sum() / n_valid
    with_adjacent = 100.0 * hls.fmask_flags(fmask, ("cloud", "adjacent", "shadow")).sum() / n_valid
    assert cloud_only == pytest.approx(8.32, abs=0.01)
    assert with_adjacent == pytest.approx(10.31, abs=0.01)
    nasa = _cmr_cloud_coverage()
    assert round(cloud_only) != nasa
    assert round(with_adjacent) != nasa
