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
from tests import io_legend as classes

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
    save_trained_model(built, config, path, {"epoch": 1, "val_miou": 0.5, "fraction": "1", "seed": "0",
                                             "legend": classes.IO.to_dict()})
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


# ------------------------------------------------------------------ a vector region is mapped inside it only


def _field_pixels(grid, seed=0):
    """A (FRAMES x 6, H, W) image of 8-pixel fields with noise on ``grid``: several classes in a random U-Net."""
    rng = np.random.default_rng(seed)
    fields = rng.integers(300, 4000, size=(FRAMES * 6, grid.height // 8 + 1, grid.width // 8 + 1))
    pixels = np.kron(fields, np.ones((1, 8, 8)))[:, : grid.height, : grid.width]
    return (pixels + rng.normal(0, 80, pixels.shape)).astype(np.int16)


def _tile_outputs(tmp_path, random_unet, tiles, tiles_csv, grid, pixels, region_file=None, out_root=None):
    """Predict every tile from windows of ``pixels`` (on the zone ``grid``) into ``out_root/<tile>/`` (default
    ``tmp_path/t``); the tiles' (landcover, confidence)."""
    out_root = tmp_path / "t" if out_root is None else out_root
    cfg = {"precision": "fp32", "device": "cpu", "batch_size": 4}
    outputs = []
    for tile in tiles:
        row0, col0 = round((grid.top - tile.top) / 30.0), round((tile.left - grid.left) / 30.0)
        image = tmp_path / f"image_{tile.tile}.tif"
        _write(image, pixels[:, row0 : row0 + tile.height, col0 : col0 + tile.width], tile.transform,
               f"EPSG:{tile.epsg}")  # fmt: skip
        out = out_root / tile.tile / "landcover.tif"
        confidence = out.with_name("confidence.tif")
        predict_tile(random_unet, image, tiles_csv, tile.tile, out, cfg, confidence=confidence,
                     region_file=region_file)  # fmt: skip
        outputs.append((out, confidence))
    return outputs


def test_a_vector_region_is_mapped_and_counted_inside_its_features_only(tmp_path, random_unet):
    """A triangle (a GeoJSON in UTM) mapped through tiling, tile prediction, the mosaic and the change table: the
    table totals the triangle's area to within a pixel along its perimeter, and the COG is nodata outside it."""
    import geopandas as gpd
    import shapely
    from shapely.geometry import Polygon

    from lulc.mosaic import mosaic, transition_table

    x0, y0 = 440_000.0, 4_650_000.0
    triangle = Polygon([(x0 + 310, y0 - 290), (x0 + 3050, y0 - 700), (x0 + 1230, y0 - 2720)])
    region_file = tmp_path / "triangle.geojson"
    gpd.GeoDataFrame(geometry=[triangle], crs="EPSG:32615").to_file(region_file, driver="GeoJSON")
    region = parse_region("tri", {"file": str(region_file), "year": 2023})
    (grid,) = zone_grids(region, 30.0)
    tiles = plan_tiles(region, 30.0, *tile_sizes(1.44, None, 30.0, CHIP, STRIDE))
    write_tiles(tiles, tmp_path / "tiles.csv")
    assert len(tiles) >= 4
    outputs = _tile_outputs(tmp_path, random_unet, tiles, tmp_path / "tiles.csv", grid, _field_pixels(grid),
                            region_file=region_file)  # fmt: skip
    mosaic([o[0] for o in outputs], tmp_path / "landcover.tif", crs="EPSG:32615", threads=1)
    mosaic([o[1] for o in outputs], tmp_path / "confidence.tif", crs="EPSG:32615", kind="confidence", threads=1)
    record = transition_table(tmp_path / "landcover.tif", tmp_path / "landcover.tif", tmp_path / "change.csv",
                              tmp_path / "change.png", label_a="2023", label_b="2023")  # fmt: skip
    total_m2 = (record["changed_km2"] + record["unchanged_km2"]) * 1e6
    assert abs(total_m2 - triangle.area) <= triangle.length * 30.0, (total_m2, triangle.area)
    with rasterio.open(tmp_path / "landcover.tif") as src, rasterio.open(tmp_path / "confidence.tif") as conf:
        mapped, confidence, transform = src.read(1), conf.read(1), src.transform
    rows, cols = np.mgrid[0 : mapped.shape[0], 0 : mapped.shape[1]]
    xs, ys = transform * (cols + 0.5, rows + 0.5)
    inside = shapely.contains_xy(triangle, xs, ys)
    assert (mapped[~inside] == 255).all() and (confidence[~inside] == 255).all(), "mapped outside the region"
    assert (mapped[inside] != 255).all() and (confidence[inside] != 255).all()
    assert len(np.unique(mapped[inside])) >= 2


def test_a_bbox_region_is_mapped_over_its_whole_grid(tmp_path, random_unet):
    region = parse_region("r", {"bbox": [-93.6, 41.95, -93.58, 41.97], "year": 2023})
    (grid,) = zone_grids(region, 30.0)
    tiles = plan_tiles(region, 30.0, *tile_sizes(1.44, None, 30.0, CHIP, STRIDE))
    write_tiles(tiles, tmp_path / "tiles.csv")
    (landcover, _), *_ = _tile_outputs(tmp_path, random_unet, tiles[:1], tmp_path / "tiles.csv", grid,
                                       _field_pixels(grid))  # fmt: skip
    with rasterio.open(landcover) as src:
        assert (src.read(1) != 255).all()


# ------------------------------------------------------------------------------------------ faults


def test_predict_tile_removes_the_scratch_folder_a_killed_run_left(tmp_path, random_unet):
    region = parse_region("r", {"bbox": [-93.6, 41.95, -93.58, 41.97], "year": 2023})
    (grid,) = zone_grids(region, 30.0)
    tiles = plan_tiles(region, 30.0, *tile_sizes(1.44, None, 30.0, CHIP, STRIDE))
    write_tiles(tiles, tmp_path / "tiles.csv")
    folder = tmp_path / "t" / tiles[0].tile
    stale = folder / "lulc-map-tile-k1ll3d"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "landcover.tif").write_bytes(b"half a map")
    other = folder / "keep-me"  # not the job's scratch: left alone
    other.mkdir()
    _tile_outputs(tmp_path, random_unet, tiles[:1], tmp_path / "tiles.csv", grid, _field_pixels(grid))
    assert not stale.exists() and other.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["confidence.tif", "keep-me", "landcover.tif"]


def _truncate(path, keep=0.5):
    with open(path, "r+b") as handle:
        handle.truncate(int(path.stat().st_size * keep))


def test_a_truncated_tile_image_is_reported_as_damaged_naming_the_rule_that_writes_it(tmp_path, random_unet):
    from lulc.integrity import DamagedInputError
    from lulc.io import copy_to_cog

    region = parse_region("r", {"bbox": [-93.6, 41.95, -93.53, 42.0], "year": 2023})
    tiles = plan_tiles(region, 30.0, 120, 48)
    write_tiles(tiles, tmp_path / "tiles.csv")
    tile = tiles[0]
    image = tmp_path / "results/maps/r/2023/tiles" / tile.tile / "image.tif"
    image.parent.mkdir(parents=True)
    raw = tmp_path / "raw.tif"
    rng = np.random.default_rng(1)
    _write(raw, rng.integers(300, 4000, (FRAMES * 6, tile.height, tile.width)).astype(np.int16), tile.transform,
           "EPSG:32615")  # fmt: skip
    copy_to_cog(raw, image, "average", predictor=True, threads=1)
    _truncate(image)
    out = tmp_path / "results/maps/r/2023/unet_f1_s0/tiles" / tile.tile / "landcover.tif"
    with pytest.raises(DamagedInputError) as error:
        predict_tile(random_unet, image, tmp_path / "tiles.csv", tile.tile, out, {})
    message = str(error.value)
    assert str(image) in message and "damaged" in message and "map_download" in message, message
    assert "georeferenced" not in message and not out.exists()


def test_a_truncated_tile_map_given_to_the_mosaic_rule_names_map_predict(tmp_path, random_unet):
    """Every rule script checks its inputs first (lulc.logs.setup_script_logging): the mosaic's truncated tile is
    damaged, and the rule that writes it is map_predict."""
    import logging
    from types import SimpleNamespace

    from lulc.integrity import DamagedInputError
    from lulc.logs import setup_script_logging

    region = parse_region("r", {"bbox": [-93.6, 41.95, -93.58, 41.97], "year": 2023})
    (grid,) = zone_grids(region, 30.0)
    tiles = plan_tiles(region, 30.0, *tile_sizes(1.44, None, 30.0, CHIP, STRIDE))
    write_tiles(tiles, tmp_path / "tiles.csv")
    run_dir = tmp_path / "results/maps/r/2023/unet_f1_s0/tiles"
    outputs = _tile_outputs(tmp_path, random_unet, tiles[:2], tmp_path / "tiles.csv", grid, _field_pixels(grid),
                            out_root=run_dir)  # fmt: skip
    damaged = outputs[1][0]
    _truncate(damaged, 0.4)
    fake = SimpleNamespace(log=[str(tmp_path / "mosaic.log")], rule="map_mosaic",
                           input=[[str(o[0]) for o in outputs], str(tmp_path / "tiles.csv")])  # fmt: skip
    try:
        with pytest.raises(DamagedInputError) as error:
            setup_script_logging(fake)
    finally:
        logging.getLogger().handlers.clear()
    message = str(error.value)
    assert str(damaged) in message and "damaged" in message and "rule map_predict writes it" in message, message
    assert str(outputs[0][0]) not in message


# -------------------------------------------------------------------------------------- start-up messages


def _demo_config(**maps):
    import yaml

    from lulc.config import SCHEMA_PATH

    repo = SCHEMA_PATH.parents[2]
    config = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    config["maps"].update(maps)
    return config, repo


def test_a_rounded_tile_size_is_said_at_start_up_naming_the_region_and_the_key(capsys):
    from lulc.config import SCHEMA_PATH, load_config

    config, repo = _demo_config(tile_km=5.0)  # 166.7 px: not whole strides (168 px of the demo's 168-px stride)
    load_config(config, SCHEMA_PATH, repo)
    err = capsys.readouterr().err
    assert "WARNING: config key 'maps.tile_km' (map region demo_beyond): 5 km" in err, err
    assert "not a whole number of predict strides" in err and "168 px (5.04 km)" in err
    config, repo = _demo_config()  # the shipped 5.04 km are whole strides: nothing said
    load_config(config, SCHEMA_PATH, repo)
    assert "WARNING" not in capsys.readouterr().err


def test_a_region_of_more_than_a_thousand_tiles_is_said_at_start_up(capsys):
    from lulc.config import SCHEMA_PATH, load_config, map_warnings

    config, repo = _demo_config(tile_km=0.72)  # 24-px cores: whole strides, but many of them
    config["maps"]["regions"]["demo_beyond"]["bbox"] = [-92.6, 42.0, -92.0, 42.4]
    load_config(config, SCHEMA_PATH, repo)
    err = capsys.readouterr().err
    assert "WARNING: config key 'maps.tile_km' (map region demo_beyond): the region makes" in err, err
    assert "(more than 1000)" in err and "not a whole number" not in err
    count = int(err.split("the region makes ")[1].split()[0])
    region = parse_region("demo_beyond", config["maps"]["regions"]["demo_beyond"])
    assert count == len(plan_tiles(region, 30.0, 24, 0)) > 1000
    config["maps"]["regions"]["demo_beyond"]["bbox"] = [-92.36, 42.01, -92.24, 42.09]  # 130 tiles: nothing said
    assert map_warnings(config, repo) == []


def test_an_empty_runs_list_is_an_error_naming_the_key():
    from lulc.config import SCHEMA_PATH, ConfigError, load_config

    config, repo = _demo_config()
    config["maps"]["regions"]["demo_beyond"]["runs"] = []
    with pytest.raises(ConfigError, match=r"config key 'maps\.regions\.demo_beyond\.runs': an empty list"):
        load_config(config, SCHEMA_PATH, repo)


# ----------------------------------------------------- one choice of frames per region: the tiling does not matter

DOWNLOAD = {"frames": FRAMES, "min_clear_fraction": 0.3, "block_size": 64}


def _hls_items(directory, grid, clouds, width=None):
    """One HLS item per date over the zone ``grid`` (the western ``width`` columns only, where given): bands of
    fields that differ per date, and Fmask cloud over ``clouds[date]`` (a column slice)."""
    from datetime import datetime

    import pystac

    from tests.conftest import make_hls_item

    width = grid.width if width is None else width
    items = []
    for t, (day, columns) in enumerate(clouds.items()):
        bands = _field_pixels(grid, seed=10 + t)[:6, :, :width]
        fmask = np.zeros((grid.height, width), np.uint8)
        fmask[:, columns] = 1 << hls.FMASK_BITS["cloud"]
        sensor = "S30" if t % 2 == 0 else "L30"
        items.append(make_hls_item(directory, sensor, datetime.fromisoformat(day), bands, fmask,
                                   origin=(grid.left, grid.top)))  # fmt: skip
    return pystac.ItemCollection(items)


def _region_map(tmp_path, random_unet, region, tile_km, imagery, frames, name):
    """Download (from the region's ``frames``, or per tile where None), predict and mosaic every tile of
    ``region`` cut at ``tile_km``: the mosaic's pixels, and the tiles' frames records."""
    from lulc.download import write_imagery_stack
    from lulc.mosaic import mosaic

    tiles = plan_tiles(region, 30.0, *tile_sizes(tile_km, None, 30.0, CHIP, STRIDE))
    tiles_csv = tmp_path / f"{name}_tiles.csv"
    write_tiles(tiles, tiles_csv)
    period = region.periods[0]
    cfg = {"precision": "fp32", "device": "cpu", "batch_size": 4}
    maps, records = [], []
    for tile in tiles:
        folder = tmp_path / name / tile.tile
        records.append(write_imagery_stack(f"map region {region.name} tile {tile.tile}", period.start, period.end,
                                           tile.grid(), imagery, DOWNLOAD, folder, frames=frames))  # fmt: skip
        predict_tile(random_unet, folder / "image.tif", tiles_csv, tile.tile, folder / "landcover.tif", cfg)
        maps.append(folder / "landcover.tif")
    mosaic(maps, tmp_path / f"{name}.tif", crs=f"EPSG:{tiles[0].epsg}", threads=1)
    with rasterio.open(tmp_path / f"{name}.tif") as src:
        return src.read(1), records, len(tiles)


def _frames(tmp_path, region, imagery):
    from lulc.download import write_region_frames
    from lulc.maps import frame_grids

    period = region.periods[0]
    return write_region_frames(f"map region {region.name} {period.label}", period.start, period.end,
                               frame_grids(region, 30.0), imagery, DOWNLOAD, tmp_path / "frames.json")  # fmt: skip


def test_the_same_region_at_two_tile_sizes_gives_the_same_map(tmp_path, random_unet):
    """Two dates compete in the summer window: one is cloudy in the east, the other in the west. Chosen per tile,
    the west and the east take different dates (the control); chosen once for the region, every tile takes the
    same three, and the region cut into 10 or 3 tiles gives one map."""
    import json

    region = parse_region("r", {"bbox": [-93.6, 41.95, -93.53, 41.965], "year": 2023})
    (grid,) = zone_grids(region, 30.0)
    east, west = slice(grid.width * 45 // 100, None), slice(0, grid.width * 35 // 100)
    clouds = {"2023-02-10": slice(0, 0), "2023-06-01": east, "2023-06-20": west, "2023-10-05": slice(0, 0)}
    imagery = _hls_items(tmp_path / "hls", grid, clouds)
    frames = _frames(tmp_path, region, imagery)
    assert [f["date"] for f in frames["frames"]] == ["2023-02-10", "2023-06-20", "2023-10-05"]
    fractions = {c["date"]: c["clear_fraction"] for c in frames["candidates"]}
    assert fractions["2023-06-01"] == pytest.approx(0.45, abs=0.02) and fractions["2023-06-20"] > 0.6
    assert json.loads((tmp_path / "frames.json").read_text()) == frames
    assert frames["grids"][0]["resolution"] == 30.0 and frames["grids"][0]["imaged_pixels"] > 0

    small, small_records, small_count = _region_map(tmp_path, random_unet, region, 1.44, imagery, frames, "small")
    large, _, large_count = _region_map(tmp_path, random_unet, region, 2.88, imagery, frames, "large")
    assert small_count > large_count > 1 and small.shape == large.shape
    assert all([f["date"] for f in r["frames"]] == ["2023-02-10", "2023-06-20", "2023-10-05"] for r in small_records)
    assert len(np.unique(small[small != 255])) >= 3
    same = small == large
    assert same.mean() >= 0.999, f"only {same.mean():.4%} of pixels agree between the two tilings"

    per_tile, per_tile_records, _ = _region_map(tmp_path, random_unet, region, 1.44, imagery, None, "per_tile")
    assert {r["frames"][1]["date"] for r in per_tile_records} == {"2023-06-01", "2023-06-20"}
    assert (per_tile != small).mean() > 0.01, "the control: frames chosen per tile give another map"


def test_a_tile_partly_outside_the_imagery_is_mapped_where_imagery_exists(tmp_path, random_unet):
    """Imagery covers the western 40 % of the region (a coast, a swath edge): its clear fractions count only the
    pixels that have imagery, and the map is the imagery's part, nodata elsewhere (a tile with no item at all
    included)."""
    region = parse_region("r", {"bbox": [-93.6, 41.95, -93.565, 41.975], "year": 2023})
    (grid,) = zone_grids(region, 30.0)
    covered = grid.width * 40 // 100
    clouds = {"2023-02-10": slice(0, 0), "2023-06-01": slice(0, 4), "2023-10-05": slice(0, 0)}
    imagery = _hls_items(tmp_path / "hls", grid, clouds, width=covered)
    frames = _frames(tmp_path, region, imagery)
    assert [f["date"] for f in frames["frames"]] == list(clouds)
    assert min(f["clear_fraction"] for f in frames["frames"]) > 0.85  # over the whole grid it would be < 0.4
    assert frames["grids"][0]["imaged_pixels"] < 0.45 * frames["grids"][0]["region_pixels"]

    mapped, records, count = _region_map(tmp_path, random_unet, region, 1.44, imagery, frames, "half")
    assert count == 6 and any(r["frames_without_imagery"] for r in records), "a tile that no item reaches"
    assert mapped.shape == (grid.height, grid.width)
    assert (mapped[:, :covered] != 255).all(), "not mapped where there is imagery"
    assert (mapped[:, covered:] == 255).all(), "mapped where there is none"
