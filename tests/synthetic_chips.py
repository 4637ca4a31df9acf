"""Tiny synthetic chip stores and a split table for the model / training tests (numpy only, no rasters)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from lulc.demo import CLASS_REFLECTANCE
from lulc.hls import REFLECTANCE_NODATA
from tests.io_legend import CLASS_NAMES, IGNORE_INDEX, IO

#: Typical reflectance (x 10000) per class index: the demo generator's spectra (crops in the green season).
_DEMO_NAME = {"crops": "crops_green", "clouds": "cloud"}
SPECTRA = np.array([CLASS_REFLECTANCE[_DEMO_NAME.get(name, name)] for name in CLASS_NAMES], dtype=np.float32)


#: The frames' dates and the UTM zone of :func:`make_chip_store`'s ``coords`` (time / location inputs).
FRAME_DATES = ("2023-04-15", "2023-07-01", "2023-09-20", "2023-11-02")
CHIP_CRS = "EPSG:32633"


def write_chip_geometry(directory: Path, n_chips: int, frames: int, size: int, seed: int) -> None:
    """A manifest (``index``, ``chip_id``, labelled pixels per class, chip squares on a 10 m grid in
    :data:`CHIP_CRS`) and the frames' dates in ``summary.json``: what models with time / location inputs and the
    evaluation's majority baseline read."""
    import geopandas as gpd
    from shapely.geometry import box

    x0, y0 = 500_000.0 + 10_000 * seed % 50_000, 5_000_000.0
    squares = [box(x0 + i * size * 10, y0, x0 + (i + 1) * size * 10, y0 + size * 10) for i in range(n_chips)]
    labels = np.load(directory / "labels.npy")
    pixels = {f"px_{name}": (labels == k).sum(axis=(1, 2)) for k, name in enumerate(CLASS_NAMES)}
    manifest = gpd.GeoDataFrame({"index": range(n_chips), "chip_id": [f"c{i:03d}" for i in range(n_chips)],
                                 **pixels}, geometry=squares, crs=CHIP_CRS)  # fmt: skip
    manifest.to_parquet(directory / "manifest.parquet", index=False)
    summary = json.loads((directory / "summary.json").read_text())
    summary["periods"] = {"labels": "2023", "imagery": list(FRAME_DATES[:frames])}
    (directory / "summary.json").write_text(json.dumps(summary))


def make_chip_store(directory: Path, n_chips: int, frames: int, size: int, seed: int, coords: bool = False) -> None:
    """``images.npy`` int16 (N, T, 6, S, S) and ``labels.npy`` uint8 (N, S, S): blocky classes + noise + nodata;
    with ``coords``, also the chips' places and the frames' dates (:func:`write_chip_geometry`)."""
    rng = np.random.default_rng(seed)
    cell = max(4, size // 4)
    labels = np.empty((n_chips, size, size), dtype=np.uint8)
    images = np.empty((n_chips, frames, 6, size, size), dtype=np.int16)
    for i in range(n_chips):
        grid = rng.choice([0, 1, 3, 4, 5, 8], size=(size // cell, size // cell))
        label = np.kron(grid, np.ones((cell, cell), dtype=np.int64))
        image = SPECTRA[label].transpose(2, 0, 1)[None] * rng.uniform(0.9, 1.1, (frames, 1, 1, 1))
        image = image + rng.normal(0, 80, image.shape)
        nodata = rng.random((size, size)) < 0.02
        image[:, :, nodata] = REFLECTANCE_NODATA
        label = np.where(nodata, IGNORE_INDEX, label)
        labels[i] = label.astype(np.uint8)
        images[i] = np.clip(image, -9999, 16000).astype(np.int16)
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "images.npy", images)
    np.save(directory / "labels.npy", labels)
    (directory / "summary.json").write_text(json.dumps({"legend": IO.to_dict(), "periods": None}))
    if coords:
        write_chip_geometry(directory, n_chips, frames, size, seed)


def make_dataset(
    root: Path, frames: int = 3, size: int = 32, chips_per_aoi: int = 12, seeds: tuple[int, ...] = (0, 1),
    coords: bool = False,
) -> tuple[dict[str, Path], Path]:
    """Two AOI chip stores and a ``splits.csv`` (train / val / test, fractions 1 and 0.5 per seed)."""
    stores = {}
    rows = []
    for k, aoi in enumerate(("aoi_a", "aoi_b")):
        stores[aoi] = root / "chips" / aoi
        make_chip_store(stores[aoi], chips_per_aoi, frames, size, seed=100 + k, coords=coords)
        for index in range(chips_per_aoi):
            split = "train" if index < chips_per_aoi // 2 else ("val" if index % 2 == 0 else "test")
            rows.append(
                {
                    "chip_id": f"{aoi}_{index:03d}",
                    "aoi": aoi,
                    "index": index,
                    "block_id": f"{aoi}_b{index}",
                    "split": split,
                    "excluded_reason": "",
                }
            )
    table = pd.DataFrame(rows)
    train_rows = np.flatnonzero(table["split"] == "train")
    for seed in seeds:
        order = np.random.default_rng(seed).permutation(train_rows)
        for fraction in (1.0, 0.5):
            member = np.zeros(len(table), dtype=np.int8)
            member[order[: round(fraction * len(order))]] = 1
            table[f"train_s{seed}_f{fraction:g}"] = member
    splits = root / "splits" / "splits.csv"
    splits.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(splits, index=False)
    return stores, splits


#: Train settings for fast runs on these stores.
FAST = {"samples_per_epoch": 16, "progress_bar": False, "patience": 10}
