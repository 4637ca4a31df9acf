"""Stratified random sampling of a class map (lulc.sampling) on GeoTIFFs the tests write: strata, sizes and
inclusion probabilities, the two-pass block algorithm (windows only, exact rank-to-pixel mapping, uniform
draws), seeds, and the labelling round trip through GeoPackage / CSV with its errors."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from lulc import sampling
from lulc.accuracy import allocate
from lulc.sampling import (
    MISSING,
    SAMPLE_LAYER,
    draw_stratified_sample,
    read_reference,
    reference_from_raster,
    stratum_counts,
    write_sample,
)

NAMES = ["water", "trees", "crops", "built_area"]
CRS = "EPSG:32633"
TRANSFORM = from_origin(500_000, 5_000_000, 10, 10)


def _write(path: Path, data: np.ndarray, block: int, transform=TRANSFORM) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype="uint8", crs=CRS, transform=transform, tiled=True, blockxsize=block,
                       blockysize=block, nodata=255) as dst:
        dst.write(data, 1)
    return path


def _map(rows: int = 257, cols: int = 300, seed: int = 3) -> np.ndarray:
    """Classes 0-2 in patches and noise, a rare class 3 (25 scattered pixels), nodata in a corner."""
    rng = np.random.default_rng(seed)
    data = np.zeros((rows, cols), np.uint8)
    data[rows // 2:, :] = 1
    data[rng.random((rows, cols)) < 0.2] = 2
    rare = rng.choice(rows * cols, size=25, replace=False)
    data.flat[rare] = 3
    data[:40, :40] = 255
    return data


@pytest.fixture(scope="module")
def class_map(tmp_path_factory) -> tuple[Path, np.ndarray]:
    data = _map()
    return _write(tmp_path_factory.mktemp("map") / "map.tif", data, 64), data


@pytest.fixture(scope="module")
def sample(class_map) -> pd.DataFrame:
    path, data = class_map
    sizes = np.bincount(data[data != 255], minlength=4)
    allocation = allocate(200, sizes, minimum=20)
    return draw_stratified_sample(path, dict(enumerate(allocation.tolist())), seed=11)


def test_stratum_counts_equal_a_full_count(class_map):
    path, data = class_map
    counts = stratum_counts(path)
    expected = np.bincount(data.ravel(), minlength=256)
    expected[255] = 0
    assert counts.shape == (256,) and counts.tolist() == expected.tolist()
    assert counts[3] == 25


def test_sample_units_lie_in_their_strata_with_the_allocated_sizes(class_map, sample):
    _, data = class_map
    sizes = np.bincount(data[data != 255], minlength=4)
    allocation = allocate(200, sizes, minimum=20)
    assert allocation[3] == 20
    assert list(sample.columns) == list(sampling.SAMPLE_COLUMNS)
    assert sample.groupby("stratum").size().tolist() == allocation.tolist()
    assert np.all(data[sample["row"], sample["col"]] == sample["stratum"])
    assert np.all(sample["map_class"] == sample["stratum"])
    assert not sample.duplicated(["row", "col"]).any() and sample["id"].is_unique
    assert sample["id"].iloc[0] == "s00001"
    assert sample["inclusion_probability"].to_numpy() == pytest.approx(
        allocation[sample["stratum"]] / sizes[sample["stratum"]], rel=1e-15)
    x, y = 500_000 + 10 * (sample["col"] + 0.5), 5_000_000 - 10 * (sample["row"] + 0.5)  # pixel centres
    assert sample["x"].to_numpy() == pytest.approx(x, abs=1e-6) and sample["y"].to_numpy() == pytest.approx(y)
    assert sample["lon"].between(14.9, 15.1).all() and sample["lat"].between(45.0, 45.2).all()
    assert (sample["reference"] == "").all()


def test_the_same_seed_gives_the_same_sample_and_strata_draw_independently(class_map, sample):
    path, _ = class_map
    allocation = dict(enumerate(sample.groupby("stratum").size().tolist()))
    pd.testing.assert_frame_equal(draw_stratified_sample(path, allocation, seed=11), sample)
    other = draw_stratified_sample(path, allocation, seed=12)
    assert set(zip(other["row"], other["col"], strict=True)) != set(zip(sample["row"], sample["col"], strict=True))
    # another stratum's size, or a stratum dropped, leaves stratum 0's draw as it was
    changed = draw_stratified_sample(path, {0: allocation[0], 2: 7}, seed=11)
    stratum0 = sample[sample["stratum"] == 0][["row", "col"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(changed[changed["stratum"] == 0][["row", "col"]].reset_index(drop=True), stratum0)


def test_ranks_map_to_pixels_in_block_order(class_map, sample):
    """The pixels drawn are those at the generator's ranks in the enumeration of the stratum's pixels block by
    block (blocks in raster order, pixels row-major within a block), computed here from the whole array."""
    _, data = class_map
    for stratum, n in sample.groupby("stratum").size().items():
        order = []
        for top in range(0, data.shape[0], 64):
            for left in range(0, data.shape[1], 64):
                block = data[top:top + 64, left:left + 64]
                rows, cols = np.nonzero(block == stratum)
                order += list(zip((rows + top).tolist(), (cols + left).tolist(), strict=True))
        ranks = np.random.default_rng([11, stratum]).choice(len(order), size=n, replace=False)
        drawn = sample[sample["stratum"] == stratum]
        assert sorted(order[r] for r in ranks) == sorted(zip(drawn["row"], drawn["col"], strict=True))


class _WindowedReads:
    """A dataset that records each read and refuses a read without a window."""

    def __init__(self, src, reads: list[Window]):
        self._src, self._reads = src, reads

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._src.__exit__(*exc)

    def read(self, *args, **kwargs):
        assert kwargs.get("window") is not None, "a read of the whole raster"
        self._reads.append(kwargs["window"])
        return self._src.read(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._src, name)


def test_the_map_is_read_block_by_block(class_map, monkeypatch):
    path, _ = class_map
    reads: list[Window] = []
    real_open = rasterio.open
    monkeypatch.setattr(sampling.rasterio, "open", lambda *a, **k: _WindowedReads(real_open(*a, **k), reads))
    stratum_counts(path)
    assert len(reads) == 5 * 5 and max(w.width * w.height for w in reads) == 64 * 64
    reads.clear()
    drawn = draw_stratified_sample(path, {3: 2}, seed=5)
    blocks_with_draws = {(r // 64, c // 64) for r, c in zip(drawn["row"], drawn["col"], strict=True)}
    assert len(reads) == 25 + len(blocks_with_draws)
    assert all(w.width <= 64 and w.height <= 64 for w in reads)


def test_draws_are_uniform_without_replacement(tmp_path):
    """300 seeds on a small 3 x 3-block map: each pixel of the stratum is drawn about n / N of the time
    (chi-square), never twice in one sample."""
    from scipy.stats import chisquare

    data = (np.random.default_rng(0).random((40, 44)) < 0.35).astype(np.uint8)
    path = _write(tmp_path / "small.tif", data, 16)
    size = int(data.sum())
    hits = np.zeros(data.shape, np.int64)
    for seed in range(300):
        drawn = draw_stratified_sample(path, {1: 20}, seed=seed)
        assert not drawn.duplicated(["row", "col"]).any()
        np.add.at(hits, (drawn["row"], drawn["col"]), 1)
    assert hits[data == 0].sum() == 0
    assert chisquare(hits[data == 1]).pvalue > 1e-3
    assert hits[data == 1].mean() == pytest.approx(300 * 20 / size)


def test_impossible_allocations_are_refused(class_map):
    path, _ = class_map
    with pytest.raises(ValueError, match="stratum 3: 26"):
        draw_stratified_sample(path, {3: 26}, seed=1)
    with pytest.raises(ValueError, match="nodata"):
        draw_stratified_sample(path, {255: 1}, seed=1)


def _labelled(sample: pd.DataFrame) -> list[str]:
    """Reference names: the map class, except every 7th unit (labelled as the next class)."""
    ref = [NAMES[(m + 1) % 4] if i % 7 == 0 else NAMES[m] for i, m in enumerate(sample["map_class"])]
    return [f"  {name.upper()} " if i % 5 == 0 else name for i, name in enumerate(ref)]  # case, space ignored


def test_write_sample_round_trips_through_read_reference(sample, tmp_path):
    gpkg, csv = tmp_path / "sample.gpkg", tmp_path / "sample.csv"
    write_sample(sample, NAMES, CRS, gpkg, csv)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample.csv", "sample.gpkg"]
    points = gpd.read_file(gpkg, layer=SAMPLE_LAYER)
    assert points.crs.to_epsg() == 32633 and len(points) == len(sample)
    assert (points["reference"] == "").all() and points["map_class_name"].iloc[0] == NAMES[sample["map_class"][0]]
    assert points.geometry.x.to_numpy() == pytest.approx(sample["x"].to_numpy())
    table = pd.read_csv(csv, keep_default_na=False)
    assert list(table.columns) == [*list(sampling.SAMPLE_COLUMNS[:3]), "map_class_name",
                                   *list(sampling.SAMPLE_COLUMNS[3:])]
    expected = np.array([NAMES.index(n.strip().lower()) for n in _labelled(sample)])
    with pytest.raises(ValueError, match="no reference class for s00001"):
        read_reference(gpkg, sample, NAMES)
    points["reference"] = _labelled(sample)
    points.to_file(gpkg, layer=SAMPLE_LAYER, driver="GPKG")
    table["reference"] = _labelled(sample)
    table.to_csv(csv, index=False)
    shuffled = tmp_path / "shuffled.csv"
    table.sample(frac=1, random_state=0).to_csv(shuffled, index=False)
    for path in (gpkg, csv, shuffled):
        assert read_reference(path, sample, NAMES).tolist() == expected.tolist(), path


def _break(kind: str, table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    if kind == "unknown":
        table.loc[3, "reference"] = "swamp"
    elif kind == "missing":
        table = table.drop(index=3)
    elif kind == "moved":
        table.loc[3, "x"] += 10.0
    elif kind == "map_class":
        table.loc[3, "map_class"] = (table.loc[3, "map_class"] + 1) % 4
    elif kind == "stratum":
        table.loc[3, "stratum"] = (table.loc[3, "stratum"] + 1) % 4
    elif kind == "empty":
        table.loc[3, "reference"] = " "
    return table


@pytest.mark.parametrize("suffix", ["csv", "gpkg"])
@pytest.mark.parametrize("kind", ["unknown", "missing", "moved", "map_class", "stratum", "empty"])
def test_read_reference_errors_name_the_sample_id(sample, tmp_path, kind, suffix):
    table = pd.DataFrame({**{c: sample[c] for c in sampling.SAMPLE_COLUMNS},
                          "reference": [NAMES[m] for m in sample["map_class"]]})
    broken = _break(kind, table)
    path = tmp_path / f"labelled.{suffix}"
    if suffix == "csv":
        broken.to_csv(path, index=False)
    else:  # the point geometry is what QGIS moves; its x / y attributes stay as drawn
        geometry = gpd.points_from_xy(broken["x"], broken["y"])
        attributes = broken.assign(x=table.loc[broken.index, "x"])
        gpd.GeoDataFrame(attributes, geometry=geometry, crs=CRS).to_file(path, layer=SAMPLE_LAYER, driver="GPKG")
    unit = sample["id"][3]
    with pytest.raises(ValueError, match=unit):
        read_reference(path, sample, NAMES)
    intact = tmp_path / "intact.csv"
    table.to_csv(intact, index=False)
    assert read_reference(intact, sample, NAMES).tolist() == sample["map_class"].tolist()


def test_reference_from_a_label_raster(class_map, sample, tmp_path):
    _, data = class_map
    labels = ((data.astype(np.int64) + 1) % 4).astype(np.uint8)
    labels[100:140, :] = 255
    # a label raster on a grid shifted by 5 pixels (columns) and 3 (rows), larger than the map
    shifted = np.full((labels.shape[0] + 10, labels.shape[1] + 10), 255, np.uint8)
    shifted[3:3 + labels.shape[0], 5:5 + labels.shape[1]] = labels
    origin = from_origin(500_000 - 50, 5_000_000 + 30, 10, 10)
    for path, grid in ((_write(tmp_path / "labels.tif", labels, 64), labels),
                       (_write(tmp_path / "shifted.tif", shifted, 64, origin), labels)):
        reference = reference_from_raster(sample, path)
        expected = grid[sample["row"], sample["col"]].astype(np.int64)
        expected[expected == 255] = MISSING
        assert reference.tolist() == expected.tolist()
        assert (reference == MISSING).any() and (reference >= 0).any()
    # points outside the label raster are missing
    small = _write(tmp_path / "small.tif", labels[:64, :64].copy(), 64)
    outside = ~((sample["row"] < 64) & (sample["col"] < 64)).to_numpy()
    assert np.all(reference_from_raster(sample, small)[outside] == MISSING)
