"""Predict stage: sliding-window maps without seams, bounded memory, nodata, valid COGs, PNGs, the rule's API."""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.transform import from_bounds, from_origin
from rasterio.warp import transform_bounds
from rio_cogeo.cogeo import cog_validate
from torch import nn

from lulc import hls, predict, tiling
from lulc.config import section
from lulc.legends import read_legend
from lulc.predict import predict_run, predict_scene
from lulc.tiling import blend_window, tile_origins
from tests import io_legend as classes
from tests.synthetic_chips import SPECTRA

os.environ.setdefault("HF_HUB_OFFLINE", "1")
FRAMES = 3
HEIGHT, WIDTH = 300, 250
TRANSFORM = from_origin(500_000.0, 4_650_000.0, 30.0, 30.0)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

#: Typical reflectance (x 10000) of each class in class-index order (the brief's table), Prithvi band order.
CENTROIDS = torch.from_numpy(SPECTRA)


@pytest.fixture(autouse=True)
def _small_and_seeded():
    torch.set_num_threads(1)
    torch.manual_seed(0)


class NearestCentroid(nn.Module):
    """A per-pixel (translation-equivariant) model: raw int16 in, logits = -distance to class centroids.

    Frames with a nodata band are left out of the per-pixel mean, like the workflow's nodata rule.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.calls = 0

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        assert raw.dtype == torch.int16 and raw.dim() == 5, (raw.dtype, raw.shape)
        self.calls += 1
        x = raw.float()
        valid = (raw != hls.REFLECTANCE_NODATA).all(dim=2, keepdim=True)
        mean = (x * valid).sum(1) / valid.sum(1).clamp(min=1)
        distance = ((mean[:, None] - CENTROIDS[None, :, :, None, None]) / 1000).pow(2).sum(2).sqrt()
        return -self.temperature * distance


class EdgeArtefacts(NearestCentroid):
    """:class:`NearestCentroid` plus what zero padding does to a CNN: logits that depend on the position in
    the tile, strongest at the tile edges (here: rangeland favoured over crops within a few pixels of every
    edge, which moves the crops / rangeland boundary of the smooth scene and its confidence)."""

    def __init__(self, amplitude: float = 2.0, length: float = 2.0) -> None:
        super().__init__()
        self.amplitude, self.length = amplitude, length

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        logits = super().forward(raw)
        h, w = logits.shape[-2:]
        y = torch.arange(h, dtype=torch.float32)[:, None]
        x = torch.arange(w, dtype=torch.float32)[None, :]
        distance = torch.minimum(torch.minimum(y, h - 1 - y), torch.minimum(x, w - 1 - x))
        artefact = self.amplitude * torch.exp(-distance / self.length)
        logits[:, 8] += artefact
        logits[:, 3] -= artefact
        return logits


def smooth_scene(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """(T*6, H, W) int16: reflectance blending smoothly from crops (left) to rangeland (right) and trees
    (bottom), with a little variation between frames; no nodata."""
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    crops, rangeland, trees = (CENTROIDS[i].numpy()[None, None, :] for i in (3, 8, 1))
    pixels = (1 - y) * ((1 - x) * crops + x * rangeland) + y * trees  # (H, W, 6)
    frames = [pixels * (1 + 0.02 * t) for t in range(FRAMES)]
    stack = np.stack(frames).transpose(0, 3, 1, 2).reshape(FRAMES * 6, height, width)
    return np.round(stack).astype(np.int16)


def write_image(path, pixels: np.ndarray, nodata: float = hls.REFLECTANCE_NODATA, crs="EPSG:32615",
                transform=TRANSFORM, dtype: str = "int16") -> None:  # fmt: skip
    with rasterio.open(
        path, "w", driver="GTiff", width=pixels.shape[2], height=pixels.shape[1], count=pixels.shape[0],
        dtype=dtype, crs=crs, transform=transform, nodata=nodata, tiled=True, blockxsize=64,
        blockysize=64, compress="deflate",
    ) as dst:  # fmt: skip
        dst.write(pixels.astype(dtype))
        for band, name in enumerate(hls.band_names(pixels.shape[0] // 6), start=1):
            dst.set_band_description(band, name)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    path = tmp_path_factory.mktemp("scene") / "image.tif"
    write_image(path, smooth_scene())
    return path


def read(path, band: int = 1) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(band)


# ------------------------------------------------------------------------------------------ geometry


def test_tile_origins_cover_the_scene_and_align_the_last_tile_to_the_edge():
    assert tile_origins(2048, 224, 192) == [0, 192, 384, 576, 768, 960, 1152, 1344, 1536, 1728, 1824]
    assert tile_origins(250, 64, 48) == [0, 48, 96, 144, 186]
    assert tile_origins(256, 64, 64) == [0, 64, 128, 192]  # exact fit: no extra tile
    assert tile_origins(64, 64, 48) == [0] and tile_origins(40, 64, 48) == [0]
    with pytest.raises(ValueError, match="stride <= tile"):
        tile_origins(100, 64, 65)


def test_blend_window_ramps_add_up_to_one_and_never_reach_zero():
    window = blend_window(64, 48)
    assert window.min() == pytest.approx(tiling.BLEND_FLOOR) and window.max() == 1.0
    assert np.allclose(window[16:48], 1.0)
    # the right ramp of one tile plus the left ramp of the next tile (16 px later... 48 px stride)
    overlap = window[48:] + window[:16]
    assert np.allclose(overlap, 1.0, atol=tiling.BLEND_FLOOR)
    assert np.allclose(window, window[::-1])
    assert np.all(blend_window(64, 48, blend=False) == 1.0)
    assert np.all(blend_window(64, 64) == 1.0)  # no overlap: nothing to blend


def test_area_is_the_true_area_in_any_crs():
    from rasterio.crs import CRS

    # projected: pixel area in the CRS's linear unit, converted to metres (US survey feet here)
    feet = CRS.from_epsg(2263)
    assert tiling.area_km2(feet, from_origin(0, 0, 100, 100), 10, 20) == pytest.approx(200 * (30.48006096) ** 2 / 1e6)
    # geographic: on the ellipsoid; 1 x 1 degree at the equator is 12,308 km2, at 60-61 N 6,123 km2 (both as
    # pyproj.Geod gives them for the cell with densified edges)
    wgs84 = CRS.from_epsg(4326)
    assert tiling.area_km2(wgs84, from_origin(0, 1, 1, 1), 1, 1) == pytest.approx(12308.46, rel=1e-5)
    assert tiling.area_km2(wgs84, from_origin(0, 61, 0.5, 0.5), 2, 2) == pytest.approx(6123.14, rel=1e-5)
    # a rotated geographic grid: the densified footprint on the ellipsoid, the same area as north-up
    rotated = from_origin(0, 61, 0.5, 0.5) * Affine.rotation(1e-9)
    assert tiling.area_km2(wgs84, rotated, 2, 2) == pytest.approx(6123.14, rel=1e-5)
    with pytest.raises(ValueError, match="no CRS"):
        tiling.area_km2(None, TRANSFORM, 10, 10)


# ------------------------------------------------------------------------------------ the prediction


def test_map_is_a_valid_cog_on_the_input_grid_with_colours_and_class_names(scene, tmp_path):
    out, confidence = tmp_path / "landcover.tif", tmp_path / "confidence.tif"
    record = predict_scene(NearestCentroid(), scene, out, tile=64, stride=48, batch_size=4, confidence_path=confidence,
                           tags={"MODEL_RUN": "centroid_f1_s0"}, progress=False, legend=classes.IO)  # fmt: skip
    assert read_legend(out) == classes.IO  # the legend travels with the map: names, colours and source codes
    for path in (out, confidence):
        valid, errors, warnings = cog_validate(path)
        assert valid, (path, errors, warnings)
    with rasterio.open(scene) as src, rasterio.open(out) as dst, rasterio.open(confidence) as conf:
        for raster in (dst, conf):
            assert raster.crs == src.crs and raster.transform == src.transform
            assert raster.shape == src.shape and raster.count == 1 and raster.dtypes == ("uint8",)
            assert raster.nodata == 255 and raster.overviews(1)  # internal overviews
        colormap = dst.colormap(1)
        assert {i: colormap[i] for i in classes.index_colormap()} == classes.index_colormap()
        assert dst.colorinterp[0].name == "palette"
        tags = dst.tags()
        assert tags["CLASSES"] == ",".join(f"{i}={n}" for i, n in enumerate(classes.CLASS_NAMES))
        assert tags["MODEL_RUN"] == "centroid_f1_s0" and tags["TILE"] == "64" and tags["STRIDE"] == "48"
        assert dst.descriptions == ("class_index",) and conf.descriptions == ("confidence_percent",)
        assert dst.profile["blockxsize"] == 256 and dst.compression.name == "deflate"
        assert 0 <= conf.read(1).min() and conf.read(1).max() <= 100
    assert record["tiles"] == tiling.TileGrid.of(HEIGHT, WIDTH, 64, 48).tiles == 7 * 6 and record["km2_per_s"] > 0
    assert record["margin"] == 8
    assert record["area_km2"] == pytest.approx(HEIGHT * WIDTH * 900 / 1e6)
    # the classes of the smooth scene: crops, rangeland and trees, nothing else
    assert set(np.unique(read(out))) == {1, 3, 8}
    assert sum(record["class_pixels"].values()) == HEIGHT * WIDTH


def test_translation_equivariant_model_gives_the_same_map_for_any_tiling(scene, tmp_path):
    pixels = torch.from_numpy(smooth_scene()).view(1, FRAMES, 6, HEIGHT, WIDTH)
    logits = NearestCentroid()(pixels)[0]
    direct = logits.argmax(0).numpy().astype(np.uint8)
    top2 = logits.topk(2, dim=0).values
    tie = ((top2[0] - top2[1]) < 1e-4).numpy()  # float rounding of the weighted sums may break exact ties
    for tile, stride, batch in ((64, 64, 3), (64, 48, 5), (64, 37, 1), (96, 20, 16), (32, 32, 64)):
        out = tmp_path / f"map_{tile}_{stride}_{batch}.tif"
        predict_scene(NearestCentroid(), scene, out, tile=tile, stride=stride, batch_size=batch, progress=False)
        differ = read(out) != direct
        assert not np.any(differ & ~tie), f"tile {tile}, stride {stride}, batch {batch}: {np.argwhere(differ)[:5]}"
        assert differ.sum() <= 3


def _confidence(scene, tmp_path, model, name, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    out = tmp_path / f"{name}.tif"
    predict_scene(model, scene, out, confidence_path=tmp_path / f"{name}_confidence.tif", progress=False, **kwargs)
    return read(tmp_path / f"{name}_confidence.tif").astype(np.float64), read(out)


def _edge_band(tile: int, stride: int, half_width: int = 3) -> np.ndarray:
    """Columns x whose step x -> x + 1 lies within ``half_width`` px of an inner tile edge (scene coordinates)."""
    grid = tiling.TileGrid.of(HEIGHT, WIDTH, tile, stride)
    edges = {c - grid.margin for c in grid.cols} | {c - grid.margin + tile - 1 for c in grid.cols}
    band = np.zeros(WIDTH - 1, dtype=bool)
    for edge in edges:
        if 0 < edge < WIDTH - 1:
            band[max(edge - half_width, 0) : edge + half_width] = True
    return band


def _gradient(confidence: np.ndarray) -> np.ndarray:
    """Mean absolute change of the confidence (percent) from column x to x + 1, per x."""
    return np.abs(np.diff(confidence, axis=1)).mean(axis=0)


def test_blending_leaves_no_seams_where_tile_edges_have_artefacts(scene, tmp_path):
    """Seam score: the mean |confidence gradient| across columns near inner tile edges, relative to the same
    for the artefact-free model (the smooth scene's own gradient there)."""
    tile = 64

    def seam_score(stride: int, **kwargs) -> tuple[float, float, int]:
        reference, reference_map = _confidence(scene, tmp_path, NearestCentroid(), f"ref{stride}", tile=tile,
                                               stride=stride)  # fmt: skip
        name = f"edge{stride}{kwargs}"
        edged, edged_map = _confidence(scene, tmp_path, EdgeArtefacts(), name, tile=tile, stride=stride, **kwargs)
        band = _edge_band(tile, stride)
        score = _gradient(edged)[band].mean() / _gradient(reference)[band].mean()
        return score, np.abs(edged - reference).max(), int((edged_map != reference_map).sum())

    abutting = seam_score(stride=tile)  # no overlap: hard seams
    averaged = seam_score(stride=48, blend=False)  # overlap, uniform weights: steps where a tile starts
    blended = seam_score(stride=48)
    blended_wide = seam_score(stride=32)
    # without blending, tile edges change the confidence ~60-120x faster than the scene does there
    assert abutting[0] > 30 and averaged[0] > 30
    assert abutting[1] > 30 and averaged[1] > 30  # percent
    # blended: continuous; what is left is the artefact's value half an overlap away from a tile edge
    assert blended[0] < 5 and blended[0] < averaged[0] / 10
    assert blended[1] <= 6 and blended[2] < averaged[2] / 4
    assert blended_wide[0] < 2 and blended_wide[1] <= 2  # a wider overlap leaves less


def test_memory_stays_bounded_to_one_strip(scene, tmp_path, monkeypatch):
    reads = []
    original = predict._read_strip

    def spy(src, grid, row, frames):
        strip = original(src, grid, row, frames)
        reads.append(tuple(strip.pixels.shape))
        return strip

    monkeypatch.setattr(predict, "_read_strip", spy)
    record = predict_scene(NearestCentroid(), scene, tmp_path / "map.tif", tile=32, stride=24, batch_size=7,
                           progress=False)  # fmt: skip
    grid = tiling.TileGrid.of(HEIGHT, WIDTH, 32, 24)
    # the logits accumulator holds one tile height of rows (of the scene mirrored by the margin), never the scene
    assert record["accumulator_shape"] == [classes.NUM_CLASSES, 32, WIDTH + 2 * grid.margin]
    assert len(reads) == len(grid.rows) == len(tile_origins(HEIGHT + 8, 32, 24))
    assert all(shape == (FRAMES, 6, 32, WIDTH + 8) for shape in reads)


def test_nodata_propagates_from_the_input(tmp_path):
    pixels = smooth_scene()
    pixels[:, 10:40, 20:60] = hls.REFLECTANCE_NODATA  # no frame at all -> nodata
    pixels[0:6, 100:130, 100:140] = hls.REFLECTANCE_NODATA  # frame 0 missing: two frames left
    pixels[6 + 3, 200:220, 30:50] = hls.REFLECTANCE_NODATA  # one band of frame 1 missing: frame 1 invalid
    path = tmp_path / "image.tif"
    write_image(path, pixels)
    out = tmp_path / "map.tif"
    confidence = tmp_path / "confidence.tif"
    predict_scene(NearestCentroid(), path, out, tile=64, stride=48, confidence_path=confidence, progress=False)
    mapped = read(out)
    assert np.all(mapped[10:40, 20:60] == 255) and np.all(read(confidence)[10:40, 20:60] == 255)
    assert (mapped == 255).sum() == 30 * 40
    assert np.all(mapped[100:130, 100:140] < classes.NUM_CLASSES)
    with rasterio.open(out) as src:
        assert src.tags()["NODATA_PIXELS"] == str(30 * 40)

    strict = tmp_path / "strict.tif"
    predict_scene(NearestCentroid(), path, strict, tile=64, stride=48, min_valid_frames=3, progress=False)
    mapped = read(strict)
    assert np.all(mapped[100:130, 100:140] == 255) and np.all(mapped[200:220, 30:50] == 255)
    assert (mapped == 255).sum() == 30 * 40 + 30 * 40 + 20 * 20

    # a source whose nodata value is not HLS's -9999 is masked (and handed to the model as -9999)
    other = smooth_scene()
    other[:, :5, :5] = -1
    write_image(tmp_path / "other.tif", other, nodata=-1)
    predict_scene(NearestCentroid(), tmp_path / "other.tif", tmp_path / "other_map.tif", tile=64, progress=False)
    assert (read(tmp_path / "other_map.tif") == 255).sum() == 25


def test_scene_smaller_than_a_tile_is_padded_not_refused(tmp_path):
    small = smooth_scene(40, 44)
    path = tmp_path / "small.tif"
    write_image(path, small)
    record = predict_scene(NearestCentroid(), path, tmp_path / "map.tif", tile=64, stride=48, progress=False)
    assert record["tiles"] == 1
    direct = NearestCentroid()(torch.from_numpy(small).view(1, FRAMES, 6, 40, 44))[0].argmax(0).numpy()
    np.testing.assert_array_equal(read(tmp_path / "map.tif"), direct)
    assert cog_validate(tmp_path / "map.tif")[0]


def test_area_of_a_scene_in_a_geographic_crs(scene, tmp_path):
    """The same scene on its UTM grid and on the bounds reprojected to EPSG:4326: the same area within 1 %
    (the UTM grid's scale factor and the reprojected bounding box make up the difference)."""
    utm = predict_scene(NearestCentroid(), scene, tmp_path / "utm.tif", tile=64, progress=False)
    left, top = TRANSFORM * (0, 0)
    right, bottom = TRANSFORM * (WIDTH, HEIGHT)
    bounds = transform_bounds("EPSG:32615", "EPSG:4326", left, bottom, right, top)
    geographic = tmp_path / "geographic.tif"
    write_image(geographic, smooth_scene(), crs="EPSG:4326", transform=from_bounds(*bounds, WIDTH, HEIGHT))
    degrees = predict_scene(NearestCentroid(), geographic, tmp_path / "degrees.tif", tile=64, progress=False)
    assert utm["area_km2"] == pytest.approx(HEIGHT * WIDTH * 900 / 1e6)
    assert degrees["area_km2"] == pytest.approx(utm["area_km2"], rel=0.01)
    assert degrees["km2_per_s"] > 0
    predict.write_preview(tmp_path / "degrees.tif", tmp_path / "degrees.png")  # axes in degrees, not "km"
    assert (tmp_path / "degrees.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize(
    ("dtype", "scale", "pixels", "problem"),
    [
        ("float32", 1.0, smooth_scene(40, 44) / hls.REFLECTANCE_SCALE, "its bands are float32"),  # 0-1 -> zeros
        ("uint16", 1.0, smooth_scene(40, 44).astype(np.uint16) + 30000, "its bands are uint16"),  # would wrap
        ("int16", 0.001, smooth_scene(40, 44), "its scale is 0.001"),  # int16, but not reflectance x 10000
    ],
)
def test_an_image_that_is_not_int16_reflectance_is_refused_before_any_work(tmp_path, dtype, scale, pixels, problem):
    path = tmp_path / "input" / "image.tif"
    path.parent.mkdir()
    write_image(path, pixels, dtype=dtype, nodata=0 if dtype == "uint16" else hls.REFLECTANCE_NODATA)
    if scale != 1.0:
        with rasterio.open(path, "r+") as dst:
            dst.scales = [scale] * dst.count
    model = NearestCentroid()
    out = tmp_path / "out"
    expected = rf"{re.escape(str(path))}: {problem}, but the workflow expects HLS v2\.0 .*int16, reflectance x 10000 "
    expected += r".*nodata -9999"
    with pytest.raises(hls.ReflectanceError, match=expected):
        predict_scene(model, path, out / "map.tif", tile=32, confidence_path=out / "c.tif", progress=False)
    assert not out.exists()
    assert model.calls == 0 and model.training  # not even prepared (prepare_model sets eval mode)


def test_hls_scale_metadata_is_accepted(tmp_path):
    path = tmp_path / "image.tif"
    write_image(path, smooth_scene(40, 44))
    with rasterio.open(path, "r+") as dst:  # LP DAAC's HLS COGs: scale_factor 0.0001, add_offset 0
        dst.scales = [1 / hls.REFLECTANCE_SCALE] * dst.count
        dst.update_tags(scale_factor="0.0001", add_offset="0.0")
    record = predict_scene(NearestCentroid(), path, tmp_path / "map.tif", tile=64, progress=False)
    assert sum(record["class_pixels"].values()) == 40 * 44


class Exploding(NearestCentroid):
    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        if self.calls >= 3:
            raise RuntimeError("out of memory (simulated)")
        return super().forward(raw)


def test_a_failure_leaves_no_output_behind(scene, tmp_path):
    with pytest.raises(RuntimeError, match="simulated"):
        predict_scene(Exploding(), scene, tmp_path / "map.tif", tile=32, confidence_path=tmp_path / "c.tif",
                      progress=False)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_a_model_that_cannot_take_the_tile_gets_a_clear_error(scene, tmp_path):
    class FixedSize(NearestCentroid):
        def forward(self, raw: torch.Tensor) -> torch.Tensor:
            if raw.shape[-1] != 32:
                raise AssertionError(f"Input width ({raw.shape[-1]}) doesn't match model (32).")
            return super().forward(raw)

    with pytest.raises(ValueError, match=r"tiles of 64 x 64 px .*predict.tile"):
        predict_scene(FixedSize(), scene, tmp_path / "map.tif", tile=64, progress=False)
    assert not (tmp_path / "map.tif").exists()


def test_prepared_prithvi_computes_the_same_logits():
    from lulc.models import build_model

    model = build_model("prithvi", {"weights": "none"}, FRAMES, 32).model.eval()
    raw = torch.randint(100, 4000, (2, FRAMES, 6, 32, 32), dtype=torch.int16)
    keys = set(model.state_dict())
    with torch.inference_mode():
        before = model(raw).numpy()
    assert any(type(m).__name__ == "Norm2d" for m in model.modules())
    prepared = predict.prepare_model(model, torch.device("cpu"))  # in place
    assert prepared is model and not model.training
    assert not any(type(m).__name__ == "Norm2d" for m in model.modules())
    assert set(model.state_dict()) == keys
    decoder_convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert decoder_convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in decoder_convs)
    # The same arithmetic in another order (Norm2d without its copies, channels-last convolutions): in fp32 the
    # results differ by rounding only. Bound: one reordered reduction of K terms moves a sum by at most
    # K * eps(fp32) of its magnitude; K is the largest reduction in the decoder (a 3 x 3 convolution over
    # decoder_channels inputs). Under bf16 matmuls (eps 2 ** -8, TerraTorch's "medium" on AMX CPUs) the error
    # is about 1e-3 and this fails, as it should.
    reductions = max(m.in_channels * m.kernel_size[0] * m.kernel_size[1] for m in decoder_convs)
    atol = reductions * torch.finfo(torch.float32).eps * float(np.abs(before).max())
    assert torch.get_float32_matmul_precision() == "highest"
    with torch.inference_mode():
        np.testing.assert_allclose(model(raw).numpy(), before, rtol=0, atol=atol)


# ------------------------------------------------------------------------------------- the rule's API


@pytest.fixture(scope="module")
def trained_unet(tmp_path_factory):
    """A real small U-Net of the registry, saved as a trained checkpoint the way the train rule saves one."""
    from lulc.models import build_model, save_trained_model

    config = {"encoder_depth": 2, "decoder_channels": [16, 8]}
    built = build_model("unet", config, FRAMES, 32)
    path = tmp_path_factory.mktemp("train") / "best.ckpt"
    save_trained_model(built, config, path, {"epoch": 1, "val_miou": 0.5, "fraction": "1", "seed": "0",
                                             "legend": classes.IO.to_dict()})
    return path


def write_split_inputs(directory, aoi: str) -> tuple:
    """A label raster, a chip manifest and a split table with two test chips of ``aoi``."""
    label = np.full((HEIGHT, WIDTH), 3, dtype=np.uint8)
    label[:, WIDTH // 2 :] = 8
    label[:5] = classes.IGNORE_INDEX
    with rasterio.open(
        directory / "label.tif", "w", driver="GTiff", width=WIDTH, height=HEIGHT, count=1, dtype="uint8",
        crs="EPSG:32615", transform=TRANSFORM, nodata=255,
    ) as dst:  # fmt: skip
        dst.write(label, 1)
        dst.write_colormap(1, classes.index_colormap())
        dst.update_tags(**classes.class_tags())
    chips = pd.DataFrame(
        {
            "chip_id": [f"{aoi}_r{r:05d}_c{c:05d}" for r, c in ((0, 0), (64, 64), (128, 128))],
            "aoi": aoi,
            "index": [0, 1, 2],
            "row_off": [0, 64, 128],
            "col_off": [0, 64, 128],
            "height": 32,
            "width": 32,
        }
    )
    chips.to_parquet(directory / "manifest.parquet")
    split = chips[["chip_id", "aoi", "index"]].assign(block_id="b", split=["train", "test", "test"], excluded_reason="")
    split.to_csv(directory / "splits.csv", index=False)
    return directory / "label.tif", directory / "manifest.parquet", directory / "splits.csv"


def test_predict_run_writes_map_confidence_preview_and_comparison(scene, trained_unet, tmp_path):
    label, manifest, splits = write_split_inputs(tmp_path, "demo_aoi")
    out = tmp_path / "out"
    paths = {name: out / name for name in ("landcover.tif", "confidence.tif", "preview.png", "comparison.png")}
    record = predict_run(
        trained_unet, scene, label, paths["landcover.tif"], paths["preview.png"], paths["comparison.png"],
        cfg={"batch_size": 4, "precision": "fp32"}, confidence=paths["confidence.tif"], splits=splits,
        manifest=manifest, aoi="demo_aoi", run_name="unet_f1_s0", threads=1,
    )  # fmt: skip
    for name in ("landcover.tif", "confidence.tif"):
        assert cog_validate(paths[name])[0]
    for name in ("preview.png", "comparison.png"):
        assert paths[name].read_bytes()[:8] == PNG_MAGIC
        image = __import__("matplotlib.image").image.imread(paths[name])
        assert image.shape[0] > 300 and image.shape[1] > 500
    assert record["tile"] == 32 and record["stride"] == 24 and record["precision"] == "fp32"
    assert np.asarray(record["test_confusion"]).sum() == 2 * 32 * 32  # the two test chips, full resolution
    assert np.asarray(record["whole_confusion"]).sum() == (HEIGHT - 5) * WIDTH
    with rasterio.open(paths["landcover.tif"]) as src:
        tags = src.tags()
    assert tags["MODEL"] == "unet (unet)" and tags["AOI"] == "demo_aoi" and len(tags["CHECKPOINT_SHA256"]) == 64
    assert tags["TRAINED_FRACTION"] == "1" and tags["PRECISION"] == "fp32"
    assert tags["PRECISION_REASON"] == "set in the config (predict.precision)"
    assert record["precision_choice"]["setting"] == "fp32" and record["precision_choice"]["chosen"] == "fp32"


def _grid_inputs(directory, label_transform, label_crs="EPSG:32615", height=64, width=48):
    """A small image on :data:`TRANSFORM` and a label on ``label_transform``."""
    image = directory / "image.tif"
    write_image(image, smooth_scene(height, width))
    label = directory / "label.tif"
    values = np.full((height, width), 3, dtype=np.uint8)
    with rasterio.open(
        label, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8", crs=label_crs,
        transform=label_transform, nodata=255,
    ) as dst:  # fmt: skip
        dst.write(values, 1)
        dst.update_tags(**classes.class_tags())
    return image, label


def test_predict_run_accepts_a_label_grid_off_by_a_floating_point_hair(trained_unet, tmp_path):
    hair = Affine(30.0 * (1 + 1e-12), 0.0, TRANSFORM.c + 30e-12 * 10, 0.0, -30.0 * (1 - 1e-12), TRANSFORM.f)
    image, label = _grid_inputs(tmp_path, hair)
    with rasterio.open(label) as src:
        assert src.transform != TRANSFORM and 0 < tiling.grid_offset((64, 48), TRANSFORM, src.transform) < 1e-9
    outputs = [tmp_path / "out" / n for n in ("m.tif", "p.png", "c.png")]
    record = predict_run(trained_unet, image, label, *outputs, cfg={"precision": "fp32"}, threads=1)
    assert all(p.exists() for p in outputs)
    assert np.asarray(record["whole_confusion"]).sum() == 64 * 48  # the comparison takes the label too


@pytest.mark.parametrize(
    ("problem", "transform", "crs", "message"),
    [
        ("half a pixel", from_origin(TRANSFORM.c + 15.0, TRANSFORM.f, 30.0, 30.0), "EPSG:32615",
         r"is shifted or scaled against .*image\.tif: its grid corners are up to 0\.5 pixel"),
        ("another CRS", TRANSFORM, "EPSG:32616", r"is in EPSG:32616, .*image\.tif in EPSG:32615"),
        ("no CRS", TRANSFORM, None, r"has no CRS"),
    ],
)  # fmt: skip
def test_predict_run_refuses_a_label_off_the_image_grid_before_predicting(
    trained_unet, tmp_path, monkeypatch, problem, transform, crs, message
):
    image, label = _grid_inputs(tmp_path, transform, crs)
    calls = []
    monkeypatch.setattr(predict, "predict_scene", lambda *args, **kwargs: calls.append(args))
    outputs = [tmp_path / "out" / n for n in ("m.tif", "p.png", "c.png")]
    with pytest.raises(tiling.GridError, match=rf"{re.escape(str(label))} {message}"):
        predict_run(trained_unet, image, label, *outputs, confidence=tmp_path / "out" / "conf.tif")
    assert calls == [] and not (tmp_path / "out").exists()


def test_predict_run_refuses_a_float_image_before_loading_the_model(trained_unet, tmp_path, monkeypatch):
    image, label = _grid_inputs(tmp_path, TRANSFORM)
    write_image(image, smooth_scene(64, 48) / hls.REFLECTANCE_SCALE, dtype="float32")
    import lulc.models

    monkeypatch.setattr(lulc.models, "load_trained_model", lambda *a: pytest.fail("the model was loaded"))
    outputs = [tmp_path / "out" / n for n in ("m.tif", "p.png", "c.png")]
    with pytest.raises(hls.ReflectanceError, match=rf"{re.escape(str(image))}: its bands are float32"):
        predict_run(trained_unet, image, label, *outputs)
    assert not (tmp_path / "out").exists()


def test_predict_run_checks_frames_and_config(scene, trained_unet, tmp_path):
    pixels = smooth_scene()[:12]  # two frames, the model was trained on three
    write_image(tmp_path / "two.tif", pixels)
    outputs = [tmp_path / n for n in ("m.tif", "p.png", "c.png")]
    with pytest.raises(ValueError, match=r"trained on 3 frames"):
        predict_run(trained_unet, tmp_path / "two.tif", tmp_path / "two.tif", *outputs)
    assert not any(p.exists() for p in outputs)
    with pytest.raises(ValueError, match=r"predict\.stride': 80 is larger than predict\.tile 64"):
        section("predict", {"tile": 64, "stride": 80})
    with pytest.raises(ValueError, match=r"predict\.tiles'"):
        section("predict", {"tiles": 64})
    with pytest.raises(ValueError, match=r"predict\.precision"):
        section("predict", {"precision": "int8"})
    assert section("predict", None)["tile"] is None
