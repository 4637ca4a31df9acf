"""Mosaics of tile cores (copied on one lattice, warped once across UTM zones, nodata never on top, atomic,
deterministic COGs) and the transition table between two maps."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.transform import from_origin, rowcol
from rasterio.warp import transform as warp_transform
from rio_cogeo.cogeo import cog_validate

from lulc import mosaic
from lulc.legends import LegendMismatchError, preset, read_legend
from lulc.mosaic import mosaic_grid, transition_table
from tests import io_legend as classes

RES = 30.0
X0, Y0 = 300_000.0, 4_650_000.0  # multiples of 30 m
TILE_H, TILE_W = 250, 300
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_tile(path, data: np.ndarray, crs: str, transform: Affine, nodata: int | None = 255, legend=classes.IO):
    """A tile core as the predict stage writes it: tiled uint8 GeoTIFF, nodata 255, the legend's tags and colours."""
    profile = {
        "driver": "GTiff", "width": data.shape[1], "height": data.shape[0], "count": 1, "dtype": "uint8",
        "crs": crs, "transform": transform, "nodata": nodata, "tiled": True, "blockxsize": 256,
        "blockysize": 256, "compress": "deflate",
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        dst.write_colormap(1, legend.colormap())
        dst.update_tags(**legend.tags())
    return path


@pytest.fixture
def grid_tiles(tmp_path):
    """2 x 2 tiles of 250 x 300 px on one EPSG:32615 lattice, random classes with some nodata; and the whole."""
    rng = np.random.default_rng(0)
    whole = rng.integers(0, classes.NUM_CLASSES, (2 * TILE_H, 2 * TILE_W), dtype=np.uint8)
    whole[rng.random(whole.shape) < 0.05] = 255
    folder = tmp_path / "tiles"
    folder.mkdir()
    paths = []
    for r in range(2):
        for c in range(2):
            part = whole[r * TILE_H : (r + 1) * TILE_H, c * TILE_W : (c + 1) * TILE_W]
            transform = from_origin(X0 + c * TILE_W * RES, Y0 - r * TILE_H * RES, RES, RES)
            paths.append(write_tile(folder / f"tile_r{r}_c{c}.tif", part, "EPSG:32615", transform))
    return paths, whole


def test_same_crs_tiles_are_copied_into_a_valid_cog(grid_tiles, tmp_path):
    paths, whole = grid_tiles
    out = tmp_path / "out" / "landcover.tif"
    record = mosaic.mosaic(paths[::-1], out, crs="EPSG:32615", tags={"REGION": "test"}, threads=1)
    valid, errors, _ = cog_validate(out)
    assert valid, errors
    with rasterio.open(out) as src:
        assert src.driver == "GTiff"
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.overviews(1)
        assert src.crs == rasterio.crs.CRS.from_epsg(32615)
        assert src.transform.almost_equals(from_origin(X0, Y0, RES, RES))
        assert src.nodata == 255
        assert src.descriptions == ("class_index",)
        np.testing.assert_array_equal(src.read(1), whole)
        colormap = src.colormap(1)
        for index, rgba in classes.index_colormap().items():
            assert colormap[index] == rgba
        tags = src.tags()
    counts = np.bincount(whole.ravel(), minlength=256)
    expected = ",".join(f"{name}={counts[i]}" for i, name in enumerate(classes.CLASS_NAMES))
    assert tags["CLASS_PIXELS"] == expected
    assert tags["NODATA_PIXELS"] == str(counts[255])
    assert tags["TILES"] == "4"
    assert tags["REGION"] == "test"
    assert tags["CLASSES"] == classes.class_tags()["CLASSES"]
    assert record["width"] == 2 * TILE_W and record["height"] == 2 * TILE_H
    assert record["tiles"] == 4 and record["tiles_warped"] == 0
    assert record["class_pixels"] == {name: int(counts[i]) for i, name in enumerate(classes.CLASS_NAMES)}
    assert record["area_km2"] == pytest.approx(whole.size * 0.0009)
    assert record["crs"] == "EPSG:32615"
    assert sorted(os.listdir(out.parent)) == ["landcover.tif"]  # no temporaries left


def test_mosaic_grid_is_the_union_on_the_lattice(grid_tiles):
    paths, _ = grid_tiles
    crs, transform, width, height = mosaic_grid(paths[1:], "EPSG:32615", RES)
    assert crs == rasterio.crs.CRS.from_epsg(32615)
    assert transform.almost_equals(from_origin(X0, Y0, RES, RES))
    assert (width, height) == (2 * TILE_W, 2 * TILE_H)


def test_confidence_mosaic(tmp_path):
    values = np.full((TILE_H, TILE_W), 80, dtype=np.uint8)
    values[:10] = 255
    tile = write_tile(tmp_path / "conf.tif", values, "EPSG:32615", from_origin(X0, Y0, RES, RES))
    out = tmp_path / "confidence.tif"
    record = mosaic.mosaic([tile], out, crs=None, kind="confidence", threads=1)
    with rasterio.open(out) as src:
        assert src.descriptions == ("confidence_percent",)
        assert src.nodata == 255
        assert "VALUES" in src.tags() and "CLASS_PIXELS" not in src.tags()
        np.testing.assert_array_equal(src.read(1), values)
    assert record["class_pixels"] is None


# --------------------------------------------------------------------------------------------- zones

LON, LAT = -90.0, 42.0  # on the border of UTM zones 15 and 16
OVERLAP_PX = 20


def _zone_tiles(tmp_path):
    """A tile in EPSG:32615 ending at 90 deg W (trees, a built block; nodata in its rightmost 10 columns) and
    one in EPSG:32616 starting ``OVERLAP_PX`` px west of it (water, a crops block)."""
    (x15,), (y15,) = warp_transform("EPSG:4326", "EPSG:32615", [LON], [LAT])
    (x16,), (y16,) = warp_transform("EPSG:4326", "EPSG:32616", [LON], [LAT])
    right15, top15 = round(x15 / RES) * RES, round(y15 / RES) * RES + TILE_H * RES / 2
    left16, top16 = (round(x16 / RES) - OVERLAP_PX) * RES, round(y16 / RES) * RES + TILE_H * RES / 2
    west = np.full((TILE_H, TILE_W), 1, dtype=np.uint8)  # trees
    west[50:100, 50:100] = 4  # built area
    west[:, -10:] = 255  # nodata inside the overlap: the warped tile must show through there
    east = np.full((TILE_H, TILE_W), 0, dtype=np.uint8)  # water
    east[150:200, 200:250] = 3  # crops
    folder = tmp_path / "tiles"
    folder.mkdir(exist_ok=True)
    a = write_tile(folder / "32615.tif", west, "EPSG:32615", from_origin(right15 - TILE_W * RES, top15, RES, RES))
    b = write_tile(folder / "32616.tif", east, "EPSG:32616", from_origin(left16, top16, RES, RES))
    return a, b


def _class_at(path, crs: str, tile_path, row: float, col: float) -> int:
    """The mosaic's class at the centre of pixel (row, col) of a tile (located via lon/lat)."""
    with rasterio.open(tile_path) as tile:
        x, y = tile.transform * (col + 0.5, row + 0.5)
        (lon,), (lat,) = warp_transform(tile.crs, "EPSG:4326", [x], [y])
    (tx,), (ty,) = warp_transform("EPSG:4326", crs, [lon], [lat])
    with rasterio.open(path) as src:
        r, c = rowcol(src.transform, tx, ty)
        return int(src.read(1, window=((r, r + 1), (c, c + 1)))[0, 0])


@pytest.mark.parametrize("target", ["EPSG:32615", "EPSG:32616"])
def test_tiles_of_two_zones_become_one_mosaic(tmp_path, target):
    west, east = _zone_tiles(tmp_path)
    out = tmp_path / "out" / "landcover.tif"
    record = mosaic.mosaic([west, east], out, crs=target, threads=1)
    assert record["tiles"] == 2 and record["tiles_warped"] == 1
    assert record["crs"] == target
    with rasterio.open(out) as src:
        assert src.crs == rasterio.crs.CRS.from_user_input(target)
        assert src.transform.c % RES == 0 and src.transform.f % RES == 0
        tags = src.tags()
    assert tags["TILES_WARPED"] == "1"
    # classes at their places (points a few pixels inside the features: nearest neighbour moves edges <= 1 px)
    assert _class_at(out, target, west, 125, 20) == 1  # trees
    assert _class_at(out, target, west, 75, 75) == 4  # built block
    assert _class_at(out, target, east, 125, 100) == 0  # water
    assert _class_at(out, target, east, 175, 225) == 3  # crops block
    # the overlap: the target zone's tile wins where it is valid; its nodata never hides the other tile
    assert _class_at(out, target, west, 125, TILE_W - 15) == (1 if target == "EPSG:32615" else 0)
    assert _class_at(out, target, west, 125, TILE_W - 5) == 0  # west is nodata there: east shows through
    counts = record["class_pixels"]
    assert counts["built_area"] == pytest.approx(2500, abs=150)
    assert counts["crops"] == pytest.approx(2500, abs=150)
    assert sorted(os.listdir(out.parent)) == ["landcover.tif"]


def test_nodata_never_overwrites_valid_pixels(tmp_path):
    first = np.full((TILE_H, TILE_W), 2, dtype=np.uint8)
    first[:, :50] = 255
    second = np.full((TILE_H, TILE_W), 5, dtype=np.uint8)
    second[:, :150] = 255  # overlaps the first tile's right half with nodata only in its first 100 columns
    second[:, 150:200] = 5
    a = write_tile(tmp_path / "a.tif", first, "EPSG:32615", from_origin(X0, Y0, RES, RES))
    b = write_tile(tmp_path / "b.tif", second, "EPSG:32615", from_origin(X0 + 100 * RES, Y0, RES, RES))
    out = tmp_path / "mosaic.tif"
    mosaic.mosaic([a, b], out, crs="EPSG:32615", threads=1)
    with rasterio.open(out) as src:
        data = src.read(1)
    assert data.shape == (TILE_H, TILE_W + 100)
    assert (data[:, :50] == 255).all()  # nodata in both
    assert (data[:, 50:250] == 2).all()  # the second tile's nodata (columns 100-249) left the first's pixels
    assert (data[:, 250:] == 5).all()  # the second tile (later) where both are valid, and beyond the first


def test_target_crs_tile_off_the_lattice_is_refused(grid_tiles, tmp_path):
    paths, _ = grid_tiles
    shifted = write_tile(
        tmp_path / "shifted.tif",
        np.zeros((10, 10), dtype=np.uint8),
        "EPSG:32615",
        from_origin(X0 + 10.0, Y0, RES, RES),  # a third of a pixel off
    )
    out = tmp_path / "out.tif"
    with pytest.raises(ValueError, match=r"shifted\.tif.*off the mosaic lattice"):
        mosaic.mosaic([*paths, shifted], out, crs="EPSG:32615")
    with pytest.raises(ValueError, match=r"shifted\.tif"):
        mosaic_grid([shifted], "EPSG:32615", RES)
    other_resolution = write_tile(
        tmp_path / "coarse.tif", np.zeros((10, 10), dtype=np.uint8), "EPSG:32615", from_origin(X0, Y0, 60, 60)
    )
    with pytest.raises(ValueError, match=r"coarse\.tif"):
        mosaic.mosaic([*paths, other_resolution], out, crs="EPSG:32615")
    assert not out.exists()


def test_output_is_deterministic(tmp_path):
    west, east = _zone_tiles(tmp_path)
    first, second = tmp_path / "a" / "landcover.tif", tmp_path / "b" / "landcover.tif"
    mosaic.mosaic([west, east], first, crs="EPSG:32615", tags={"RUN": "x"})
    mosaic.mosaic([west, east], second, crs="EPSG:32615", tags={"RUN": "x"}, work_dir=tmp_path / "work")
    assert first.read_bytes() == second.read_bytes()
    assert b"tmp" not in first.read_bytes()
    assert os.listdir(tmp_path / "work") == []  # the work folder's temporaries are gone


def test_failure_leaves_nothing(grid_tiles, tmp_path, monkeypatch):
    paths, _ = grid_tiles
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "landcover.tif"
    with pytest.raises(FileNotFoundError, match="missing.tif"):
        mosaic.mosaic([*paths, tmp_path / "missing.tif"], out, crs="EPSG:32615")
    assert os.listdir(out_dir) == []

    # a failure after the temporaries exist (warped tile, VRT): neither output nor temporaries remain
    west, east = _zone_tiles(tmp_path)

    def broken_copy(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(mosaic, "copy_to_cog", broken_copy)
    with pytest.raises(RuntimeError, match="disk full"):
        mosaic.mosaic([west, east], out, crs="EPSG:32615")
    assert os.listdir(out_dir) == []


# --------------------------------------------------------------------------------------- transitions


def _map(path, data: np.ndarray, transform: Affine | None = None):
    return write_tile(path, data, "EPSG:32615", transform or from_origin(X0, Y0, RES, RES))


def test_transition_table_counts_a_known_change(tmp_path):
    before = np.full((120, 100), 1, dtype=np.uint8)  # trees
    before[:, 80:] = 0  # water
    before[:5] = 255  # nodata in a only
    after = before.copy()
    after[:5] = 1
    after[20:40, 10:30] = 4  # 400 px trees -> built area
    after[100:, :] = 255  # nodata in b only
    a, b = _map(tmp_path / "2020.tif", before), _map(tmp_path / "2023.tif", after)
    table, figure = tmp_path / "change" / "transitions.csv", tmp_path / "change" / "transitions.png"
    record = transition_table(a, b, table, figure, label_a="2020", label_b="2023", title="test region")

    rows = list(csv.DictReader(table.open()))
    assert list(rows[0]) == ["from_class", "to_class", "pixels", "km2", "share_of_from"]
    by_pair = {(r["from_class"], r["to_class"]): r for r in rows}
    assert set(by_pair) == {("water", "water"), ("trees", "trees"), ("trees", "built_area")}
    changed = by_pair["trees", "built_area"]
    assert int(changed["pixels"]) == 400
    assert float(changed["km2"]) == pytest.approx(400 * 0.0009)
    trees = 95 * 80  # rows 5..99 valid in both, columns 0..79
    assert float(changed["share_of_from"]) == pytest.approx(400 / trees, abs=1e-6)
    assert int(by_pair["water", "water"]["pixels"]) == 95 * 20
    assert record["matrix"][1][4] == 400
    assert record["changed_km2"] == pytest.approx(400 * 0.0009)
    assert record["unchanged_km2"] == pytest.approx((95 * 100 - 400) * 0.0009)
    assert record["changed_share"] == pytest.approx(400 / (95 * 100))
    assert figure.read_bytes().startswith(PNG_MAGIC)
    assert sorted(os.listdir(table.parent)) == ["transitions.csv", "transitions.png"]


def test_transition_table_refuses_different_grids(tmp_path):
    data = np.zeros((50, 50), dtype=np.uint8)
    a = _map(tmp_path / "a.tif", data)
    shifted = _map(tmp_path / "shifted.tif", data, from_origin(X0 + RES, Y0, RES, RES))
    smaller = _map(tmp_path / "smaller.tif", data[:40])
    for other in (shifted, smaller):
        with pytest.raises(ValueError, match=rf"{other.name}.*a\.tif|a\.tif.*{other.name}"):
            transition_table(a, other, tmp_path / "t.csv", tmp_path / "t.png", label_a="a", label_b="b")
    assert not (tmp_path / "t.csv").exists() and not (tmp_path / "t.png").exists()


def test_a_mosaic_takes_its_legend_from_its_tiles(tmp_path):
    """WorldCover-classed tiles give a WorldCover mosaic (tags, colour table, class pixel names); tiles of two
    legends are refused, and so is a change table between maps of two legends."""
    worldcover = preset("esa-worldcover")
    values = np.full((TILE_H, TILE_W), 3, dtype=np.uint8)  # cropland
    tile = write_tile(tmp_path / "wc.tif", values, "EPSG:32615", from_origin(X0, Y0, RES, RES), legend=worldcover)
    record = mosaic.mosaic([tile], tmp_path / "m.tif", crs=None, threads=1)
    assert read_legend(tmp_path / "m.tif") == worldcover
    assert record["class_pixels"]["cropland"] == TILE_H * TILE_W and len(record["class_pixels"]) == 11
    with rasterio.open(tmp_path / "m.tif") as src:
        assert src.colormap(1)[3] == (240, 150, 255, 255)
    io = write_tile(tmp_path / "io.tif", values, "EPSG:32615", from_origin(X0 + TILE_W * RES, Y0, RES, RES))
    with pytest.raises(LegendMismatchError, match=r"legend 'esa-worldcover' .* legend 'io-lulc-9'"):
        mosaic.mosaic([tile, io], tmp_path / "both.tif", crs=None, threads=1)
    assert not (tmp_path / "both.tif").exists()
    same_grid = write_tile(tmp_path / "io2.tif", values, "EPSG:32615", from_origin(X0, Y0, RES, RES))
    with pytest.raises(LegendMismatchError):
        transition_table(tile, same_grid, tmp_path / "t.csv", tmp_path / "t.png", label_a="2022", label_b="2023")
