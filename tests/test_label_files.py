"""Labels from files (:mod:`lulc.download.label_files`): real GeoTIFFs, GeoPackages, GeoJSON and shapefiles
written in ``tmp_path`` and read onto a small UTM grid."""

from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.transform import from_origin
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box

from lulc.download import label_files
from lulc.download.label_files import LabelFileError, raster_labels, vector_labels
from lulc.grid import Grid
from lulc.legends import IGNORE_INDEX, Legend, LegendCodeError, preset
from tests.local_http import serve_files

IO = preset("io-lulc-9")
#: 12 x 12 pixels of 30 m in UTM 32N (near Zurich).
GRID = Grid(epsg=32632, resolution=30.0, left=460_000.0, top=5_250_000.0, width=12, height=12)
#: A Lambert azimuthal equal-area CRS with made-up parameters: WKT only, no EPSG code.
LAEA = CRS.from_wkt(
    CRS.from_proj4("+proj=laea +lat_0=47.3 +lon_0=8.61 +x_0=123456 +y_0=654321 +ellps=GRS80 +units=m +no_defs").to_wkt()
)


def _write_raster(path: Path, data: np.ndarray, transform, crs, nodata=None) -> str:
    bands = data if data.ndim == 3 else data[None]
    profile = {
        "driver": "GTiff",
        "width": bands.shape[2],
        "height": bands.shape[1],
        "count": bands.shape[0],
        "dtype": bands.dtype.name,
        "transform": transform,
        "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(bands)
    return str(path)


def _centres(grid: Grid = GRID) -> tuple[np.ndarray, np.ndarray]:
    cols, rows = np.meshgrid(np.arange(grid.width), np.arange(grid.height))
    return grid.left + (cols + 0.5) * grid.resolution, grid.top - (rows + 0.5) * grid.resolution


def _write_vector(path: Path, rows: list[dict], crs: str | None = "EPSG:32632", **kwargs) -> str:
    gpd.GeoDataFrame(rows, geometry="geometry", crs=crs).to_file(path, **kwargs)
    return str(path)


def _utm(x: float, y: float) -> tuple[float, float]:
    """A grid position (columns, rows from the top-left corner) in grid coordinates."""
    return GRID.left + x * GRID.resolution, GRID.top - y * GRID.resolution


# -- rasters ---------------------------------------------------------------------------------------------------
def test_a_uint8_raster_on_the_grid_round_trips_through_the_legend(tmp_path):
    rng = np.random.default_rng(0)
    codes = rng.choice(np.array([0, 1, 2, 4, 5, 7, 8, 9, 10, 11], dtype=np.uint8), size=(12, 12))
    path = _write_raster(tmp_path / "io.tif", codes, GRID.transform, GRID.crs, nodata=0)

    indices, counts = raster_labels(path, GRID, IO)

    assert indices.dtype == np.uint8 and indices.shape == (12, 12)
    np.testing.assert_array_equal(indices, IO.remap(codes, nodata=[0]))
    assert (indices[codes == 0] == IGNORE_INDEX).all()
    found, numbers = np.unique(codes[codes != 0], return_counts=True)
    assert counts == {int(c): int(n) for c, n in zip(found, numbers, strict=True)}


def test_the_nodata_argument_overrides_the_files(tmp_path):
    codes = np.full((12, 12), 2, dtype=np.uint16)
    codes[:4] = 1
    codes[4:6] = 999  # the file's own nodata, declared only by the caller
    path = _write_raster(tmp_path / "u16.tif", codes, GRID.transform, GRID.crs, nodata=None)

    with pytest.raises(LegendCodeError, match="999"):
        raster_labels(path, GRID, IO)
    indices, counts = raster_labels(path, GRID, IO, nodata=999)

    assert counts == {1: 48, 2: 72}
    assert (indices[4:6] == IGNORE_INDEX).all() and (indices[:4] == 0).all() and (indices[6:] == 1).all()


def _block_codes() -> np.ndarray:
    """The code of each 3 x 3 block of grid pixels; -1 (nodata) in block (1, 2)."""
    codes = np.array([[1, 2, 7, 11], [2, 7, -1, 1], [11, 1, 2, 7], [7, 11, 1, 2]], dtype=np.int16)
    return codes


def _laea_raster(tmp_path: Path) -> str:
    """An int16 raster of 10 m pixels in :data:`LAEA` (nodata -1) covering the grid with a margin: each source
    pixel holds the code of the 3 x 3 grid block its centre falls in, except the one source pixel under each
    grid pixel centre, which holds 5 (crops): a mode keeps the block's code, a nearest neighbour would not."""
    to_laea = Transformer.from_crs(GRID.crs.to_wkt(), LAEA.to_wkt(), always_xy=True)
    xs, ys = to_laea.transform(*(np.array(v) for v in zip(*[GRID.bounds[:2], GRID.bounds[2:]], strict=True)))
    left, top = np.floor(min(xs) / 10) * 10 - 60, np.ceil(max(ys) / 10) * 10 + 60
    width, height = int((max(xs) - left) / 10) + 7, int((top - min(ys)) / 10) + 7
    transform = from_origin(left, top, 10, 10)
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    sx, sy = left + (cols + 0.5) * 10, top - (rows + 0.5) * 10
    gx, gy = Transformer.from_crs(LAEA.to_wkt(), GRID.crs.to_wkt(), always_xy=True).transform(sx, sy)
    gcol = np.floor((gx - GRID.left) / GRID.resolution).astype(int)
    grow = np.floor((GRID.top - gy) / GRID.resolution).astype(int)
    inside = (gcol >= 0) & (gcol < GRID.width) & (grow >= 0) & (grow < GRID.height)
    data = np.full((height, width), 8, dtype=np.int16)
    data[inside] = _block_codes()[grow[inside] // 3, gcol[inside] // 3]
    cx, cy = to_laea.transform(*_centres())
    ncol, nrow = ((cx - left) // 10).astype(int), ((top - cy) // 10).astype(int)
    noisy = data[nrow, ncol] != -1
    data[nrow[noisy], ncol[noisy]] = 5
    return _write_raster(tmp_path / "laea.tif", data, transform, LAEA, nodata=-1)


def test_an_int16_raster_in_a_wkt_only_crs_is_resampled_by_mode(tmp_path, monkeypatch):
    path = _laea_raster(tmp_path)
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() is None and src.dtypes[0] == "int16" and src.nodata == -1

    indices, counts = raster_labels(path, GRID, IO)
    monkeypatch.setattr(label_files, "_BLOCK_PIXELS", 5 * GRID.width)  # read in blocks of 5 rows: the same
    blocked, blocked_counts = raster_labels(path, GRID, IO)
    np.testing.assert_array_equal(blocked, indices)
    assert blocked_counts == counts

    blocks = _block_codes()
    for b_row in range(4):
        for b_col in range(4):
            code = int(blocks[b_row, b_col])
            expected = IGNORE_INDEX if code == -1 else IO.index_of(code)
            assert indices[3 * b_row + 1, 3 * b_col + 1] == expected, (b_row, b_col, code)
    assert -1 not in counts
    assert {1, 2, 7, 11} <= set(counts)
    assert counts.get(5, 0) <= 4  # the noise code never wins the interior pixels
    assert sum(counts.values()) == int((indices != IGNORE_INDEX).sum())


def test_an_uncovered_code_stops_naming_it_and_the_file_or_is_ignored(tmp_path):
    codes = np.full((12, 12), 1, dtype=np.int32)
    codes[2:5, 3:7] = 3  # IO's old "grass", not in io-lulc-9
    path = _write_raster(tmp_path / "grass.tif", codes, GRID.transform, GRID.crs)

    with pytest.raises(LegendCodeError) as error:
        raster_labels(path, GRID, IO)
    assert "3" in str(error.value) and "grass.tif" in str(error.value)

    ignoring = Legend.from_dict({**IO.to_dict(), "unknown": "ignore"})
    indices, counts = raster_labels(path, GRID, ignoring)
    assert (indices[2:5, 3:7] == IGNORE_INDEX).all()
    assert (indices[codes == 1] == 0).all()
    assert counts == {1: 132, 3: 12}


def test_pixels_outside_the_raster_are_nodata_and_a_url_is_read(tmp_path):
    codes = np.full((6, 12), 7, dtype=np.uint8)  # the top half of the grid only, no nodata value
    _write_raster(tmp_path / "half.tif", codes, GRID.transform, GRID.crs)

    with serve_files(tmp_path) as server:
        indices, counts = raster_labels(f"{server.url}/half.tif", GRID, IO)

    assert (indices[:6] == IO.index_of(7)).all() and (indices[6:] == IGNORE_INDEX).all()
    assert counts == {7: 72}


def test_a_multi_band_raster_uses_band_one(tmp_path, caplog):
    codes = np.stack([np.full((12, 12), 2, dtype=np.uint8), np.full((12, 12), 3, dtype=np.uint8)])
    path = _write_raster(tmp_path / "two.tif", codes, GRID.transform, GRID.crs)
    with caplog.at_level(logging.WARNING):
        indices, counts = raster_labels(path, GRID, IO)
    assert (indices == 1).all() and counts == {2: 144}
    assert "2 bands" in caplog.text


def test_bad_rasters_are_refused_naming_the_file(tmp_path):
    with pytest.raises(LabelFileError, match="missing.tif"):
        raster_labels(str(tmp_path / "missing.tif"), GRID, IO)

    no_crs = _write_raster(tmp_path / "nocrs.tif", np.ones((12, 12), np.uint8), GRID.transform, None)
    with pytest.raises(LabelFileError, match=r"nocrs\.tif has no CRS"):
        raster_labels(no_crs, GRID, IO)

    far = _write_raster(tmp_path / "far.tif", np.ones((12, 12), np.uint8), from_origin(0, 0, 30, 30), GRID.crs)
    with pytest.raises(LabelFileError, match=r"far\.tif does not overlap.*460000"):
        raster_labels(far, GRID, IO)

    values = np.full((12, 12), 2.0, dtype=np.float32)
    integral = _write_raster(tmp_path / "integral.tif", values, GRID.transform, GRID.crs)
    assert (raster_labels(integral, GRID, IO)[0] == 1).all()
    values[3, 3] = 2.5
    fractional = _write_raster(tmp_path / "fractional.tif", values, GRID.transform, GRID.crs)
    with pytest.raises(LabelFileError, match=r"fractional\.tif holds non-integer values \(2\.5\)"):
        raster_labels(fractional, GRID, IO)


# -- vectors ---------------------------------------------------------------------------------------------------
def test_polygons_in_wgs84_label_exactly_the_pixels_whose_centres_fall_inside(tmp_path):
    to_wgs84 = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True)
    shell = [_utm(0.7, 1.3), _utm(8.2, 0.4), _utm(10.6, 6.9), _utm(4.1, 9.3), _utm(1.2, 6.6)]
    hole = [_utm(3.3, 3.2), _utm(5.9, 3.7), _utm(4.4, 5.8)]
    outer = Polygon([to_wgs84.transform(*p) for p in shell], [[to_wgs84.transform(*p) for p in hole]])
    tri = Polygon([to_wgs84.transform(*p) for p in (_utm(9.3, 8.1), _utm(13.7, 9.4), _utm(10.2, 12.9))])
    corner = box(*to_wgs84.transform(*_utm(0.2, 11.8)), *to_wgs84.transform(*_utm(2.7, 10.4)))
    rows = [
        {"class": 2, "geometry": outer},
        {"class": 7, "geometry": MultiPolygon([tri, corner])},
    ]
    path = _write_vector(tmp_path / "polygons.geojson", rows, crs="EPSG:4326", driver="GeoJSON")

    indices, stats = vector_labels(path, GRID, IO)

    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32632", always_xy=True)
    x, y = _centres()
    expected = np.full((12, 12), IGNORE_INDEX, dtype=np.uint8)
    for code, geometry in ((2, outer), (7, MultiPolygon([tri, corner]))):
        in_utm = shapely.transform(geometry, lambda xy: np.column_stack(to_utm.transform(xy[:, 0], xy[:, 1])))
        expected[shapely.contains_xy(in_utm, x, y)] = IO.index_of(code)
    np.testing.assert_array_equal(indices, expected)
    assert 20 < (expected == 1).sum() < 80 and (expected == 4).sum() > 4
    assert stats["polygons"] == 2 and stats["points"] == 0 and stats["features"] == 2
    assert stats["labelled_pixels"] == int((expected != IGNORE_INDEX).sum())


def test_points_label_their_pixel_or_a_square_around_it(tmp_path):
    rows = [
        {"class": 1, "geometry": Point(_utm(5.3, 4.8))},  # pixel row 4, column 5
        {"class": 11, "geometry": Point(_utm(0.4, 11.6))},  # the bottom-left pixel: its square is clipped
    ]
    path = _write_vector(tmp_path / "points.gpkg", rows)

    one, stats = vector_labels(path, GRID, IO)
    assert set(zip(*np.nonzero(one != IGNORE_INDEX), strict=True)) == {(4, 5), (11, 0)}
    assert one[4, 5] == 0 and one[11, 0] == 8
    assert stats["points"] == 2 and stats["labelled_pixels"] == 2

    three, stats = vector_labels(path, GRID, IO, point_size_px=3)
    expected = np.full((12, 12), IGNORE_INDEX, dtype=np.uint8)
    expected[3:6, 4:7] = 0
    expected[10:12, 0:2] = 8
    np.testing.assert_array_equal(three, expected)
    assert stats["labelled_pixels"] == 13

    two, _ = vector_labels(path, GRID, IO, point_size_px=2)  # centred on the nearest corner: (row 5, col 5)
    assert set(zip(*np.nonzero(two == 0), strict=True)) == {(4, 4), (4, 5), (5, 4), (5, 5)}


def test_a_class_given_as_name_or_as_code_gives_the_same_raster(tmp_path):
    geometries = [box(*_utm(1, 5), *_utm(4, 1)), box(*_utm(6, 9), *_utm(11, 6)), Point(_utm(2.5, 9.5))]
    by_code = _write_vector(
        tmp_path / "codes.gpkg", [{"class": c, "geometry": g} for c, g in zip((1, 7, 2), geometries, strict=True)]
    )
    by_name = _write_vector(
        tmp_path / "names.gpkg",
        [{"class": c, "geometry": g} for c, g in zip(("Water", "Built area", "trees"), geometries, strict=True)],
    )
    from_codes, _ = vector_labels(by_code, GRID, IO)
    from_names, _ = vector_labels(by_name, GRID, IO)
    np.testing.assert_array_equal(from_codes, from_names)
    assert (from_codes[1:5, 1:4] == 0).all() and (from_codes[6:9, 6:11] == 4).all() and from_codes[9, 2] == 1
    assert int((from_codes != IGNORE_INDEX).sum()) == 12 + 15 + 1


def test_overlapping_features_of_different_classes_are_refused_naming_both(tmp_path):
    rows = [
        {"class": "water", "geometry": box(*_utm(1, 6), *_utm(5, 1))},
        {"class": "water", "geometry": box(*_utm(3, 4), *_utm(7, 2))},  # same class: fine
        {"class": "trees", "geometry": box(*_utm(4, 11), *_utm(9, 5.5))},  # shares row 5, columns 4
    ]
    path = _write_vector(tmp_path / "overlap.gpkg", rows)
    with pytest.raises(LabelFileError) as error:
        vector_labels(path, GRID, IO)
    message = str(error.value)
    assert "feature 0 (class water)" in message and "feature 2 (class trees)" in message
    assert "row 5, column 4" in message and f"x={_utm(4.5, 0)[0]:.2f}" in message

    indices, stats = vector_labels(_write_vector(tmp_path / "same.gpkg", rows[:2]), GRID, IO)
    assert (indices[1:6, 1:5] == 0).all() and (indices[2:4, 5:7] == 0).all()
    assert stats["labelled_pixels"] == 20 + 4


def test_bad_attributes_are_refused_naming_them(tmp_path):
    square = box(*_utm(1, 3), *_utm(3, 1))
    other = box(*_utm(5, 8), *_utm(8, 5))
    missing = _write_vector(tmp_path / "missing.gpkg", [{"kind": 1, "note": "x", "geometry": square}])
    with pytest.raises(LabelFileError, match=r"missing\.gpkg has no attribute 'class'.*\['kind', 'note'\]"):
        vector_labels(missing, GRID, IO)
    assert (vector_labels(missing, GRID, IO, attribute="kind")[0][1:3, 1:3] == 0).all()

    unknown = _write_vector(
        tmp_path / "unknown.gpkg", [{"class": "water", "geometry": square}, {"class": "forest", "geometry": other}]
    )
    with pytest.raises(LabelFileError, match=r"feature 1 has class 'forest'.*io-lulc-9.*water=1"):
        vector_labels(unknown, GRID, IO)

    code = _write_vector(tmp_path / "code.gpkg", [{"class": 3, "geometry": square}])
    with pytest.raises(LabelFileError, match="feature 0 has class 3"):
        vector_labels(code, GRID, IO)

    null = _write_vector(tmp_path / "null.gpkg", [{"class": 1, "geometry": square}, {"class": None, "geometry": other}])
    with pytest.raises(LabelFileError, match="feature 1 has no class"):
        vector_labels(null, GRID, IO)


def test_bad_geometries_and_files_are_refused(tmp_path):
    square = box(*_utm(1, 3), *_utm(3, 1))
    line = _write_vector(
        tmp_path / "line.gpkg",
        [{"class": 1, "geometry": square}, {"class": 1, "geometry": LineString([_utm(1, 1), _utm(5, 5)])}],
    )
    with pytest.raises(LabelFileError, match=r"feature 1 is a LineString"):
        vector_labels(line, GRID, IO)

    with pytest.warns(UserWarning, match="crs"):
        no_crs = _write_vector(tmp_path / "nocrs.shp", [{"class": 1, "geometry": square}], crs=None)
    with pytest.raises(LabelFileError, match=r"nocrs\.shp has no CRS"):
        vector_labels(no_crs, GRID, IO)

    with pytest.raises(LabelFileError, match=r"absent\.gpkg cannot be read"):
        vector_labels(str(tmp_path / "absent.gpkg"), GRID, IO)

    away = _write_vector(tmp_path / "away.gpkg", [{"class": 1, "geometry": box(0, 0, 100, 100)}])
    with pytest.raises(LabelFileError, match=r"away\.gpkg: no feature labels a pixel.*1 outside"):
        vector_labels(away, GRID, IO)


def test_empty_and_outside_features_are_skipped_and_counted(tmp_path):
    rows = [
        {"class": 1, "geometry": box(*_utm(1, 3), *_utm(3, 1))},
        {"class": 2, "geometry": None},
        {"class": 2, "geometry": Polygon()},
        {"class": 7, "geometry": box(0, 0, 100, 100)},
        {"class": 7, "geometry": box(*_utm(6.6, 6.4), *_utm(6.9, 6.1))},  # inside a pixel, around no centre
    ]
    path = _write_vector(tmp_path / "sparse.gpkg", rows)
    indices, stats = vector_labels(path, GRID, IO)
    assert stats == {
        "features": 5,
        "polygons": 3,
        "points": 0,
        "skipped_empty": 2,
        "outside": 1,
        "no_pixel": 1,
        "labelled_pixels": 4,
    }
    assert (indices[1:3, 1:3] == 0).all() and int((indices != IGNORE_INDEX).sum()) == 4
