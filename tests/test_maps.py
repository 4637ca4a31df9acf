"""Map regions: periods, the tiling plan (zones, cores, halos) and tiled prediction equal to one big job."""

from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio
import torch

from lulc import hls, maps
from lulc.map_predict import crop_core, predict_tile
from lulc.maps import MapConfigError, parse_region, plan_tiles, tile_sizes, write_tiles, zone_grids
from lulc.predict import predict_scene

os.environ.setdefault("HF_HUB_OFFLINE", "1")
FRAMES = 3
CHIP = 32
STRIDE = 24  # the predictor's default for 32-pixel tiles: 32 - 32 // 4


def test_periods_are_years_or_one_date_range():
    region = parse_region("r", {"bbox": [-93.6, 41.9, -93.5, 42.0], "years": [2024, 2019]})
    assert [p.label for p in region.periods] == ["2019", "2024"]
    assert region.period("2024").start.isoformat() == "2024-01-01" and region.period("2024").end.month == 12
    ranged = parse_region("r", {"bbox": [-93.6, 41.9, -93.5, 42.0], "start": "2023-03-01", "end": "2023-10-31"})
    assert [p.label for p in ranged.periods] == ["2023-03-01_2023-10-31"]
    with pytest.raises(MapConfigError, match=r"maps\.regions\.r.*years .*or start/end"):
        parse_region("r", {"bbox": [-93.6, 41.9, -93.5, 42.0], "year": 2023, "start": "2023-01-01"})
    with pytest.raises(MapConfigError, match=r"maps\.regions\.r': give exactly one of bbox, file or aoi"):
        parse_region("r", {"year": 2023})
    with pytest.raises(MapConfigError, match=r"maps\.regions\.r"):
        parse_region("r", {"bbox": [-93.5, 41.9, -93.6, 42.0], "year": 2023})


def test_a_training_aoi_can_be_mapped_with_its_own_year():
    from lulc.aoi import AOI

    aois = {"iowa": AOI.from_config("iowa", {"bbox": [-93.6, 41.9, -93.5, 42.0], "year": 2022})}
    region = parse_region("again", {"aoi": "iowa"}, aois)
    assert region.bbox == aois["iowa"].bbox and [p.label for p in region.periods] == ["2022"]
    with pytest.raises(MapConfigError, match=r"maps\.regions\.again\.aoi': 'nowhere' is not an AOI"):
        parse_region("again", {"aoi": "nowhere", "year": 2023}, aois)


def test_tile_sizes_are_whole_strides_and_the_default_halo_covers_a_predict_tile():
    assert tile_sizes(109.8, None, 30.0, 224, 168) == (3696, 336)
    core, halo = tile_sizes(3.6, None, 30.0, CHIP, STRIDE)
    assert (core, halo) == (120, 48) and core % STRIDE == 0 and halo % STRIDE == 0 and halo >= CHIP
    assert tile_sizes(3.6, 0, 30.0, CHIP, STRIDE)[1] == 0


def test_tile_cores_partition_the_zone_grid_and_halos_stay_inside_it():
    region = parse_region("r", {"bbox": [-93.6, 41.9, -93.5, 42.0], "year": 2023})
    (grid,) = zone_grids(region, 30.0)
    core, halo = tile_sizes(3.6, None, 30.0, CHIP, STRIDE)
    tiles = plan_tiles(region, 30.0, core, halo)
    covered = np.zeros((grid.height, grid.width), dtype=np.int32)
    for tile in tiles:
        row0 = round((grid.top - tile.top) / 30.0)
        col0 = round((tile.left - grid.left) / 30.0)
        assert row0 >= 0 and col0 >= 0 and row0 + tile.height <= grid.height and col0 + tile.width <= grid.width
        r, c = row0 + tile.core_row, col0 + tile.core_col
        covered[r : r + tile.core_height, c : c + tile.core_width] += 1
        assert r % STRIDE == 0 and c % STRIDE == 0  # cores start on the predictor's lattice
    assert (covered == 1).all()
    assert len({t.tile for t in tiles}) == len(tiles)


def test_a_region_across_a_zone_border_is_tiled_in_both_zones():
    region = parse_region("r", {"bbox": [-90.3, 41.9, -89.7, 42.1], "year": 2023})
    assert [epsg for epsg, _ in maps.zone_parts(region.bbox)] == [32615, 32616]
    tiles = plan_tiles(region, 30.0, *tile_sizes(20, None, 30.0, CHIP, STRIDE))
    assert {t.epsg for t in tiles} == {32615, 32616}
    assert all(t.tile.startswith(str(t.epsg)) for t in tiles)


def test_tiles_csv_round_trips(tmp_path):
    region = parse_region("r", {"bbox": [-93.6, 41.9, -93.5, 42.0], "year": 2023})
    tiles = plan_tiles(region, 30.0, 120, 48)
    write_tiles(tiles, tmp_path / "tiles.csv")
    assert maps.read_tiles(tmp_path / "tiles.csv") == tiles
    assert maps.find_tile(tmp_path / "tiles.csv", tiles[-1].tile) == tiles[-1]
    with pytest.raises(KeyError, match="no processing tile 'x'"):
        maps.find_tile(tmp_path / "tiles.csv", "x")


# ------------------------------------------------------------------------ tiled = single-job prediction


@pytest.fixture(scope="module")
def random_unet(tmp_path_factory):
    """A small U-Net with random weights: its logits depend on context and on zero padding at tile edges, so
    a tile that lacked context at its border would show."""
    from lulc.models import build_model, save_trained_model

    torch.manual_seed(0)
    config = {"encoder_depth": 2, "decoder_channels": [16, 8]}
    built = build_model("unet", config, FRAMES, CHIP)
    path = tmp_path_factory.mktemp("train") / "best.ckpt"
    save_trained_model(built, config, path, {"epoch": 1, "val_miou": 0.5, "fraction": "1", "seed": "0"})
    return path


def _write(path, pixels, transform, crs):
    with rasterio.open(
        path, "w", driver="GTiff", width=pixels.shape[2], height=pixels.shape[1], count=pixels.shape[0],
        dtype="int16", crs=crs, transform=transform, nodata=hls.REFLECTANCE_NODATA, tiled=True,
        blockxsize=64, blockysize=64, compress="deflate",
    ) as dst:  # fmt: skip
        dst.write(pixels)
        for band, name in enumerate(hls.band_names(FRAMES), start=1):
            dst.set_band_description(band, name)


def _tiled_map(tmp_path, random_unet, region, grid, pixels, halo):
    """Predict every processing tile of ``region`` from windows of ``pixels`` (the region's image) and paste
    the cores into one array on the zone grid."""
    core, halo = tile_sizes(3.6, halo, 30.0, CHIP, STRIDE)
    tiles = plan_tiles(region, 30.0, core, halo)
    tiles_csv = tmp_path / f"tiles_{halo}.csv"
    write_tiles(tiles, tiles_csv)
    mosaic = np.full((grid.height, grid.width), 255, dtype=np.uint8)
    cfg = {"precision": "fp32", "device": "cpu", "batch_size": 4}
    for tile in tiles:
        row0, col0 = round((grid.top - tile.top) / 30.0), round((tile.left - grid.left) / 30.0)
        image = tmp_path / f"{tile.tile}_{halo}.tif"
        window = pixels[:, row0 : row0 + tile.height, col0 : col0 + tile.width]
        _write(image, window, tile.transform, f"EPSG:{tile.epsg}")
        out = tmp_path / f"{tile.tile}_{halo}_landcover.tif"
        confidence = tmp_path / f"{tile.tile}_{halo}_confidence.tif"
        predict_tile(random_unet, image, tiles_csv, tile.tile, out, cfg, confidence=confidence)
        with rasterio.open(out) as src:
            assert (src.width, src.height) == (tile.core_width, tile.core_height)
            left, _, _, top = tile.core_bounds()
            assert src.transform.c == pytest.approx(left) and src.transform.f == pytest.approx(top)
            r, c = row0 + tile.core_row, col0 + tile.core_col
            mosaic[r : r + tile.core_height, c : c + tile.core_width] = src.read(1)
        assert confidence.exists()
    return mosaic, tiles


def _border_band(grid, tiles, half_width=3):
    band = np.zeros((grid.height, grid.width), dtype=bool)
    for tile in tiles:
        row0, col0 = round((grid.top - tile.top) / 30.0), round((tile.left - grid.left) / 30.0)
        r, c = row0 + tile.core_row, col0 + tile.core_col
        if r > 0:
            band[max(r - half_width, 0) : r + half_width, :] = True
        if c > 0:
            band[:, max(c - half_width, 0) : c + half_width] = True
    return band


def test_four_tile_mosaic_equals_a_single_job_prediction_without_seams(tmp_path, random_unet):
    region = parse_region("r", {"bbox": [-93.6, 41.95, -93.53, 42.0], "year": 2023})
    (grid,) = zone_grids(region, 30.0)
    rng = np.random.default_rng(0)
    fields = rng.integers(300, 4000, size=(FRAMES * 6, grid.height // 8 + 1, grid.width // 8 + 1))
    pixels = np.kron(fields, np.ones((1, 8, 8)))[:, : grid.height, : grid.width]
    pixels = (pixels + rng.normal(0, 80, pixels.shape)).astype(np.int16)
    whole_image = tmp_path / "whole.tif"
    _write(whole_image, pixels, grid.transform, f"EPSG:{grid.epsg}")
    from lulc.models import load_trained_model

    model, _ = load_trained_model(random_unet)
    single = tmp_path / "single.tif"
    predict_scene(model, whole_image, single, tile=CHIP, stride=STRIDE, batch_size=4, device="cpu",
                  precision="fp32", progress=False)  # fmt: skip
    with rasterio.open(single) as src:
        expected = src.read(1)
    assert len(np.unique(expected)) >= 3, "the check needs a map with several classes"

    mosaic, tiles = _tiled_map(tmp_path, random_unet, region, grid, pixels, halo=None)
    assert len(tiles) == 4
    same = mosaic == expected
    assert same.mean() >= 0.999, f"only {same.mean():.4%} of pixels agree with the single-job map"
    band = _border_band(grid, tiles)
    assert (~same[band]).mean() <= 0.001, "tile borders disagree with the single-job map: a seam"

    # the control: without a halo the tile borders lack context, and the check above sees it
    seamed, _ = _tiled_map(tmp_path, random_unet, region, grid, pixels, halo=0)
    assert (seamed[band] != expected[band]).mean() > 0.01


def test_predict_tile_refuses_an_image_of_another_tile_before_loading_the_model(tmp_path, random_unet, monkeypatch):
    region = parse_region("r", {"bbox": [-93.6, 41.95, -93.53, 42.0], "year": 2023})
    tiles = plan_tiles(region, 30.0, 120, 48)
    write_tiles(tiles, tmp_path / "tiles.csv")
    wrong = tiles[1]
    image = tmp_path / "image.tif"
    _write(image, np.zeros((FRAMES * 6, wrong.height, wrong.width), dtype=np.int16), wrong.transform, "EPSG:32615")
    import lulc.models

    monkeypatch.setattr(lulc.models, "load_trained_model", lambda *_: pytest.fail("model loaded"))
    out = tmp_path / "out.tif"
    with pytest.raises(ValueError, match=rf"processing tile {tiles[0].tile} of .*tiles\.csv is"):
        predict_tile(random_unet, image, tmp_path / "tiles.csv", tiles[0].tile, out, {})
    assert not out.exists()


def test_crop_core_keeps_colours_tags_and_the_core_window(tmp_path):
    tile = maps.ProcessingTile("32615_r000_c000", 32615, 30.0, 500_000.0, 4_650_000.0, 50, 40, 5, 7, 30, 36)
    data = np.arange(40 * 50, dtype=np.int64).reshape(40, 50) % 9
    source = tmp_path / "whole.tif"
    from rasterio.transform import from_origin

    with rasterio.open(source, "w", driver="GTiff", width=50, height=40, count=1, dtype="uint8", crs="EPSG:32615",
                       transform=from_origin(500_000.0, 4_650_000.0, 30, 30), nodata=255) as dst:  # fmt: skip
        dst.write(data.astype(np.uint8), 1)
        dst.write_colormap(1, {0: (65, 155, 223, 255), 1: (57, 125, 73, 255)})
        dst.update_tags(CLASSES="0=water")
    counts = crop_core(source, tmp_path / "core.tif", tile, rows_per_read=7)
    with rasterio.open(tmp_path / "core.tif") as src:
        assert (src.read(1) == data[5:35, 7:43]).all()
        assert src.transform.c == 500_000.0 + 7 * 30 and src.transform.f == 4_650_000.0 - 5 * 30
        assert src.colormap(1)[1][:3] == (57, 125, 73) and src.tags()["CLASSES"] == "0=water"
    assert counts.sum() == 30 * 36
    assert np.array_equal(counts[:9], np.bincount(data[5:35, 7:43].ravel(), minlength=9))


def test_training_aois_overlapped_are_those_whose_bbox_meets_the_region():
    from lulc.maps import training_aois_overlapped

    config = {"aois": {
        "inside": {"bbox": [-93.58, 41.96, -93.55, 41.99], "start": "2023-01-01", "end": "2023-12-31"},
        "edge": {"bbox": [-93.54, 41.99, -93.50, 42.05], "start": "2023-01-01", "end": "2023-12-31"},
        "touching": {"bbox": [-93.53, 42.0, -93.50, 42.05], "start": "2023-01-01", "end": "2023-12-31"},
        "far": {"bbox": [-92.0, 41.0, -91.9, 41.1], "start": "2023-01-01", "end": "2023-12-31"},
    }}  # fmt: skip
    region = parse_region("r", {"bbox": [-93.6, 41.95, -93.53, 42.0], "year": 2023})
    assert training_aois_overlapped(region, config) == ["inside", "edge"]
