"""The download stage on tiny HLS-like items written by the tests: grid, frame choice, masking, labels."""

from __future__ import annotations

import json
from datetime import date, datetime

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.warp import transform_bounds
from rio_cogeo.cogeo import cog_validate

from lulc import classes, hls
from lulc.download import Acquisition, aoi_grid, select_frames, utm_epsg, write_aoi_stack
from lulc.search import AOI
from tests.conftest import make_hls_item, make_label_item

SIZE = 48  # imagery pixels per side (30 m)
ORIGIN = (500_010.0, 4_650_030.0)  # on the 30 m grid, like HLS tiles; the labels are offset by 5 m


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
