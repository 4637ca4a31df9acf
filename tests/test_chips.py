"""The chips stage on small rasters the tests write: windows, filtering, manifest, chip store, export."""

from __future__ import annotations

import re

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine
from rasterio.transform import from_origin
from shapely.geometry import box

from lulc import hls, tiling
from lulc.chips import ChipStore, chip_offsets, export_geotiff_chips, make_chips, pixel_columns
from lulc.dataset import ChipStoreDataset, GeoTiffChipDataset
from tests import io_legend as classes

PIXEL_COLUMNS = pixel_columns(classes.CLASS_NAMES)

H, W, T, SIZE = 40, 56, 3, 16
TRANSFORM = from_origin(600_000.0, 4_200_000.0, 30.0, 30.0)


def _write(path, array, dtype, nodata, colormap=None, crs="EPSG:32610", transform=TRANSFORM, tags=None):
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=array.shape[2],
        height=array.shape[1],
        count=array.shape[0],
        dtype=dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(array.astype(dtype))
        if tags:
            dst.update_tags(**tags)


@pytest.fixture
def rasters(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 5000, size=(T * 6, H, W)).astype(np.int16)
    mask = np.zeros((T, H, W), np.uint8)
    mask[1, 0:16, 0:16] = 1  # chip (0, 0): cloudy in frame 1 -> invalid, dropped at 0.8
    mask[2, 16:20, 16:32] = 1  # chip (16, 16): a quarter cloudy in one frame -> valid 0.75, dropped
    mask[0, 20:22, 32:48] = 1  # chip (16, 32): 2 rows of 16 -> valid 0.875, kept with cloud 0.125
    image[mask.repeat(6, axis=0) == 1] = hls.REFLECTANCE_NODATA
    label = rng.integers(0, classes.NUM_CLASSES, size=(1, H, W)).astype(np.uint8)
    label[0, :, :8] = 0  # water stripe
    label[0, 0, 16:32] = classes.IGNORE_INDEX
    paths = {name: tmp_path / f"{name}.tif" for name in ("image", "mask", "label")}
    _write(paths["image"], image, "int16", hls.REFLECTANCE_NODATA)
    _write(paths["mask"], mask, "uint8", 255)
    _write(paths["label"], label, "uint8", classes.IGNORE_INDEX, tags=classes.class_tags())
    return paths, image, mask, label[0]


def test_chip_offsets_cover_full_chips_only():
    assert chip_offsets(40, 16, 16) == [0, 16]
    assert chip_offsets(40, 16, 8) == [0, 8, 16, 24]
    assert chip_offsets(10, 16, 16) == []
    with pytest.raises(ValueError, match="chips.stride"):
        chip_offsets(40, 16, 0)


def test_make_chips_filters_and_packs(rasters, tmp_path):
    paths, image, _mask, label = rasters
    out = tmp_path / "chips"
    summary = make_chips(
        "aoi",
        paths["image"],
        paths["mask"],
        paths["label"],
        {"size": SIZE, "stride": SIZE, "min_valid_fraction": 0.8},
        out,
    )
    assert summary["windows"] == 2 * 3
    assert summary["kept"] == 4 and summary["dropped_low_valid_fraction"] == 2
    store = ChipStore(out)
    manifest = gpd.read_parquet(store.manifest)
    assert manifest.crs.to_epsg() == 32610
    assert list(manifest["chip_id"]) == [
        "aoi_r00000_c00016",
        "aoi_r00000_c00032",
        "aoi_r00016_c00000",
        "aoi_r00016_c00032",
    ]
    assert list(manifest["index"]) == [0, 1, 2, 3]
    assert set(PIXEL_COLUMNS) <= set(manifest.columns)
    row = manifest.set_index("chip_id").loc["aoi_r00016_c00032"]
    assert row["cloud_fraction"] == pytest.approx(2 / 16)
    assert row["valid_fraction"] == pytest.approx(14 / 16)
    first = manifest.set_index("chip_id").loc["aoi_r00000_c00016"]
    assert first["valid_fraction"] == pytest.approx(15 / 16)  # one row of ignore labels
    assert sum(first[c] for c in PIXEL_COLUMNS) == SIZE * SIZE - SIZE
    left, top = TRANSFORM @ (32, 16)
    assert row["geometry"].equals(box(left, top - SIZE * 30, left + SIZE * 30, top))

    images = np.load(store.images, mmap_mode="r")
    labels = np.load(store.labels, mmap_mode="r")
    assert images.shape == (4, T, 6, SIZE, SIZE) and images.dtype == np.int16
    assert labels.shape == (4, SIZE, SIZE) and labels.dtype == np.uint8
    for rec in manifest.itertuples():
        window = np.s_[rec.row_off : rec.row_off + SIZE, rec.col_off : rec.col_off + SIZE]
        expected = image[(slice(None), *window)].reshape(T, 6, SIZE, SIZE)
        np.testing.assert_array_equal(images[rec.index], expected)
        np.testing.assert_array_equal(labels[rec.index], label[window])
        counts = np.bincount(labels[rec.index].ravel(), minlength=256)[: classes.NUM_CLASSES]
        assert [getattr(rec, c) for c in PIXEL_COLUMNS] == counts.tolist()
    assert not list(out.glob(".*tmp"))


def test_make_chips_rejects_bad_input_without_output(rasters, tmp_path):
    paths, *_ = rasters
    with pytest.raises(ValueError, match="chips.size"):
        make_chips("aoi", paths["image"], paths["mask"], paths["label"], {"size": 64, "stride": 64}, tmp_path / "a")
    with pytest.raises(ValueError, match="chips.min_valid_fraction"):
        make_chips(
            "aoi",
            paths["image"],
            paths["mask"],
            paths["label"],
            {"size": SIZE, "stride": SIZE, "min_valid_fraction": 1.01},
            tmp_path / "b",
        )
    with pytest.raises(ValueError, match="single-band uint8 label"):
        make_chips("aoi", paths["image"], paths["mask"], paths["image"], {"size": SIZE}, tmp_path / "c")
    for directory in ("a", "b", "c"):
        assert not (tmp_path / directory / "manifest.parquet").exists()
        assert not (tmp_path / directory / "images.npy").exists()


CHIPS = {"size": SIZE, "stride": SIZE, "min_valid_fraction": 0.8}


def _rewrite(path, **changes):
    """Rewrite a test raster with another CRS / transform / dtype (the pixels unchanged)."""
    with rasterio.open(path) as src:
        array, dtype, nodata, tags = src.read(), src.dtypes[0], src.nodata, src.tags()
    path.unlink()
    _write(path, array, changes.pop("dtype", dtype), nodata, tags=tags, **changes)


@pytest.mark.parametrize("name", ["image", "mask", "label"])
def test_make_chips_refuses_a_raster_without_crs_before_writing(rasters, tmp_path, name):
    paths, *_ = rasters
    _rewrite(paths[name], crs=None)  # not georeferenced, or a damaged header: rasterio reads crs None
    out = tmp_path / "chips"
    with pytest.raises(tiling.GridError, match=rf"AOI aoi: {re.escape(str(paths[name]))} has no CRS .*rerun"):
        make_chips("aoi", paths["image"], paths["mask"], paths["label"], CHIPS, out)
    assert not out.exists()  # nothing written, not even the directory


def test_make_chips_accepts_a_floating_point_hair_and_refuses_another_grid(rasters, tmp_path):
    paths, *_ = rasters
    reference = make_chips("aoi", paths["image"], paths["mask"], paths["label"], CHIPS, tmp_path / "reference")
    # the label's transform, computed by another tool: pixel size and origin differ by 1e-12 of a pixel
    hair = Affine(30.0 * (1 + 1e-12), 0.0, TRANSFORM.c + 30e-12 * 100, 0.0, -30.0, TRANSFORM.f)
    _rewrite(paths["label"], transform=hair)
    with rasterio.open(paths["label"]) as src:
        assert src.transform != TRANSFORM and tiling.grid_offset((H, W), TRANSFORM, src.transform) < 1e-9
    out = tmp_path / "hair"
    summary = make_chips("aoi", paths["image"], paths["mask"], paths["label"], CHIPS, out)
    assert summary == reference
    assert (out / "manifest.parquet").exists()

    half_pixel = from_origin(TRANSFORM.c + 15.0, TRANSFORM.f, 30.0, 30.0)
    refused = {
        "shifted by half a pixel": (
            {"transform": half_pixel},
            r"is shifted or scaled against .*image\.tif: its grid corners are up to 0\.5 pixel",
        ),
        "another CRS": ({"crs": "EPSG:32611"}, r"is in EPSG:32611, .*image\.tif in EPSG:32610"),
    }
    for problem, (changes, message) in refused.items():
        _rewrite(paths["label"], **changes)
        out = tmp_path / problem.replace(" ", "_")
        with pytest.raises(tiling.GridError, match=rf"AOI aoi: {re.escape(str(paths['label']))} {message}.*resample"):
            make_chips("aoi", paths["image"], paths["mask"], paths["label"], CHIPS, out)
        assert not out.exists(), problem
        _rewrite(paths["label"], crs="EPSG:32610", transform=TRANSFORM)

    small = tmp_path / "small_mask.tif"
    with rasterio.open(paths["mask"]) as src:
        _write(small, src.read()[:, :32], "uint8", 255)
    with pytest.raises(tiling.GridError, match=r"small_mask\.tif is 32 x 56 px, .*image\.tif 40 x 56 px"):
        make_chips("aoi", paths["image"], small, paths["label"], CHIPS, tmp_path / "small")
    assert not (tmp_path / "small").exists()


def test_make_chips_refuses_an_image_that_is_not_int16_reflectance(rasters, tmp_path):
    paths, *_ = rasters
    _rewrite(paths["image"], dtype="float32")
    out = tmp_path / "chips"
    with pytest.raises(hls.ReflectanceError, match=r"image\.tif: its bands are float32, .*int16, reflectance x 10000"):
        make_chips("aoi", paths["image"], paths["mask"], paths["label"], CHIPS, out)
    assert not out.exists()


def test_geotiff_export_matches_chip_store(rasters, tmp_path):
    paths, *_ = rasters
    out = tmp_path / "chips"
    make_chips("aoi", paths["image"], paths["mask"], paths["label"], {"size": SIZE, "stride": 8}, out)
    n = export_geotiff_chips(out, paths["image"], out / "geotiff")
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert n == len(manifest) > 4
    store = ChipStoreDataset({"aoi": out}, manifest)
    tiffs = GeoTiffChipDataset(out / "geotiff", manifest["chip_id"], frames=T)
    for i in range(len(manifest)):
        a, b = store[i], tiffs[i]
        assert a["image"].dtype == b["image"].dtype and str(a["image"].dtype) == "torch.int16"
        assert (a["image"] == b["image"]).all() and (a["mask"] == b["mask"]).all()
    with rasterio.open(out / "geotiff" / f"{manifest['chip_id'][0]}_label.tif") as src:
        rec = manifest.iloc[0]
        assert src.transform.c == TRANSFORM.c + 30 * rec["col_off"]
        assert src.colormap(1)[0][:3] == classes.IO_COLOURS[1]


def test_all_nodata_labels_are_named_as_such_not_blamed_on_min_valid_fraction(rasters, tmp_path):
    """Labels that are all nodata (no label for this AOI and year) say so, instead of naming
    chips.min_valid_fraction; nothing is written."""
    paths, *_ = rasters
    empty = np.full((1, H, W), classes.IGNORE_INDEX, np.uint8)
    _write(paths["label"], empty, "uint8", classes.IGNORE_INDEX, tags=classes.class_tags())
    with pytest.raises(ValueError, match="every pixel of .*label.tif is nodata") as error:
        make_chips("aoi", paths["image"], paths["mask"], paths["label"], CHIPS, tmp_path / "out")
    assert "min_valid_fraction" not in str(error.value)
    assert not (tmp_path / "out" / "images.npy").exists()


def test_chips_with_too_few_labelled_pixels_are_skipped_and_counted(rasters, tmp_path):
    """Sparse labels: a chip whose labelled pixels (clear in some frame) are fewer than chips.min_labelled_pixels
    is skipped and counted; the chips record the label raster's legend."""
    paths, *_ = rasters
    with rasterio.open(paths["label"], "r+") as dst:
        sparse = np.full((H, W), classes.IGNORE_INDEX, np.uint8)
        sparse[16:22, 32:40] = 3  # 48 labelled pixels in chip (16, 32)
        sparse[0:3, 0:3] = 1  # 9 in chip (0, 0)
        sparse[20:32, 0:16] = 2  # 192 in chip (16, 0)
        dst.write(sparse, 1)
    summary = make_chips("aoi", paths["image"], paths["mask"], paths["label"],
                         {"size": SIZE, "stride": SIZE, "min_valid_fraction": 0.0, "min_labelled_pixels": 40},
                         tmp_path / "chips")  # fmt: skip
    manifest = gpd.read_parquet(ChipStore(tmp_path / "chips").manifest)
    assert list(manifest["chip_id"]) == ["aoi_r00016_c00000", "aoi_r00016_c00032"]
    assert summary["kept"] == 2 and summary["dropped_few_labelled_pixels"] == 4
    assert summary["min_labelled_pixels"] == 40 and summary["dropped_low_valid_fraction"] == 0
    assert summary["legend"] == classes.IO.to_dict()
    assert summary["class_pixels"]["flooded_vegetation"] == 192 and summary["class_pixels"]["crops"] == 48
    with pytest.raises(ValueError, match=r"fewer than chips.min_labelled_pixels = 500 labelled pixels"):
        make_chips("aoi", paths["image"], paths["mask"], paths["label"],
                   {"size": SIZE, "stride": SIZE, "min_valid_fraction": 0.0, "min_labelled_pixels": 500},
                   tmp_path / "none")  # fmt: skip
    assert not (tmp_path / "none").exists()
