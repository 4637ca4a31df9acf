"""Shared fixtures: tiny HLS-like and IO-LULC-like STAC items backed by real GeoTIFFs the tests write."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.transform import from_origin

from lulc import hls

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"


@pytest.fixture(autouse=True)
def _fp32_matmul_precision():
    """Each test starts with full-fp32 matmuls: the flag is process-wide, and a test that imports TerraTorch
    directly lowers it to "medium" (bf16 on AMX CPUs) for every later test in the process."""
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_float32_matmul_precision("highest")


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An environment without Earthdata credentials; returns the netrc path it points to."""
    from lulc.access import EARTHDATA_TOKEN_ENV

    monkeypatch.delenv(EARTHDATA_TOKEN_ENV, raising=False)
    netrc_path = tmp_path / "home" / ".netrc"
    netrc_path.parent.mkdir()
    monkeypatch.setenv("HOME", str(netrc_path.parent))
    monkeypatch.delenv("NETRC", raising=False)
    return netrc_path


@pytest.fixture(scope="module")
def chip_data(tmp_path_factory) -> tuple[dict[str, Path], Path]:
    """A test module's synthetic chip stores and split table (tests/synthetic_chips.py)."""
    from synthetic_chips import make_dataset

    return make_dataset(tmp_path_factory.mktemp("chips"))


@pytest.fixture
def one_torch_thread() -> None:
    """One intra-op thread for the training tests (small, repeatable, and fair to the other CPU)."""
    import torch

    torch.set_num_threads(1)


def require_fixtures() -> Path:
    """The real third-party fixtures folder, or a visible skip where it is absent."""
    if not FIXTURES.is_dir():
        if os.environ.get("LULC_REQUIRE_FIXTURES"):
            pytest.fail(f"{FIXTURES} not found: the real-document tests are required (LULC_REQUIRE_FIXTURES is set)")
        pytest.skip(f"{FIXTURES} not found: tests on real Planetary Computer / NASA documents skipped")
    return FIXTURES


def write_tif(path: Path, array: np.ndarray, epsg: int, transform: rasterio.Affine, nodata: float) -> None:
    """Write a single-band tiled GeoTIFF."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=array.shape[1],
        height=array.shape[0],
        count=1,
        dtype=array.dtype,
        crs=f"EPSG:{epsg}",
        transform=transform,
        nodata=nodata,
        tiled=True,
        blockxsize=16,
        blockysize=16,
    ) as dst:
        dst.write(array, 1)


def make_hls_item(
    directory: Path,
    sensor: str,
    when: datetime,
    bands: np.ndarray,
    fmask: np.ndarray,
    epsg: int = 32615,
    origin: tuple[float, float] = (500_000.0, 4_650_000.0),
    resolution: float = 30.0,
    tile: str = "T15TVG",
) -> pystac.Item:
    """An HLS v2.0-shaped item (Planetary Computer collection and asset keys) over real GeoTIFFs."""
    item_id = f"HLS.{sensor}.{tile}.{when:%Y%j}T170000.v2.0"
    transform = from_origin(*origin, resolution, resolution)
    height, width = fmask.shape
    left, top = origin
    right, bottom = left + width * resolution, top - height * resolution
    from rasterio.warp import transform_bounds

    bbox = list(transform_bounds(f"EPSG:{epsg}", "EPSG:4326", left, bottom, right, top))
    geometry = {
        "type": "Polygon",
        "coordinates": [
            [[bbox[0], bbox[1]], [bbox[2], bbox[1]], [bbox[2], bbox[3]], [bbox[0], bbox[3]], [bbox[0], bbox[1]]]
        ],
    }
    item = pystac.Item(
        id=item_id,
        geometry=geometry,
        bbox=bbox,
        datetime=when.replace(tzinfo=UTC),
        properties={
            "eo:cloud_cover": round(hls.cloud_coverage(fmask)),
            "proj:epsg": epsg,
            "proj:shape": [height, width],
            "proj:transform": list(transform)[:6],
        },
        collection=f"hls2-{sensor.lower()}",
    )
    for key, band in zip(hls.SENSOR_ASSETS[sensor], bands, strict=True):
        path = directory / item_id / f"{item_id}.{key}.tif"
        write_tif(path, band.astype(np.int16), epsg, transform, hls.REFLECTANCE_NODATA)
        item.add_asset(key, pystac.Asset(str(path), media_type=pystac.MediaType.COG, roles=["data"]))
    path = directory / item_id / f"{item_id}.Fmask.tif"
    write_tif(path, fmask.astype(np.uint8), epsg, transform, hls.FMASK_NODATA)
    item.add_asset("Fmask", pystac.Asset(str(path), media_type=pystac.MediaType.COG, roles=["data"]))
    return item


def make_label_item(
    directory: Path,
    codes: np.ndarray,
    epsg: int = 32615,
    origin: tuple[float, float] = (499_995.0, 4_650_005.0),
    resolution: float = 10.0,
    year: int = 2023,
) -> pystac.Item:
    """An IO-LULC-annual-shaped item (datetime null, start/end) over a real uint8 GeoTIFF."""
    item_id = f"15T-{year}"
    transform = from_origin(*origin, resolution, resolution)
    path = directory / item_id / f"{item_id}.tif"
    write_tif(path, codes.astype(np.uint8), epsg, transform, 0)
    height, width = codes.shape
    left, top = origin
    from rasterio.warp import transform_bounds

    bbox = list(
        transform_bounds(f"EPSG:{epsg}", "EPSG:4326", left, top - height * resolution, left + width * resolution, top)
    )
    geometry = {
        "type": "Polygon",
        "coordinates": [
            [[bbox[0], bbox[1]], [bbox[2], bbox[1]], [bbox[2], bbox[3]], [bbox[0], bbox[3]], [bbox[0], bbox[1]]]
        ],
    }
    item = pystac.Item(
        id=item_id,
        geometry=geometry,
        bbox=bbox,
        datetime=None,
        start_datetime=datetime(year, 1, 1, tzinfo=UTC),
        end_datetime=datetime(year + 1, 1, 1, tzinfo=UTC),
        properties={"proj:epsg": epsg},
        collection="io-lulc-annual-v02",
    )
    item.add_asset("data", pystac.Asset(str(path), media_type=pystac.MediaType.COG, roles=["data"]))
    return item


@pytest.fixture
def browser(tmp_path: Path):
    """Debian's headless chromium through chromedriver (tests/browser.py), with a fresh profile."""
    import shutil

    from browser import open_browser, require_browser

    require_browser()
    driver = open_browser(tmp_path / "profile")
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)
