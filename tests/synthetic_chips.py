"""Tiny synthetic chip stores and a split table for the model / training tests (numpy only, no rasters)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lulc.classes import IGNORE_INDEX, NUM_CLASSES
from lulc.hls import REFLECTANCE_NODATA

#: Typical reflectance (x 10000) per class index (BRIEF.md table; crops green season; clouds bright).
SPECTRA = np.array(
    [
        [500, 600, 400, 200, 100, 50],  # water
        [300, 500, 300, 3000, 1500, 700],  # trees
        [300, 500, 400, 1800, 800, 400],  # flooded vegetation
        [400, 700, 500, 3500, 2200, 1200],  # crops
        [1100, 1200, 1300, 2000, 2300, 2100],  # built area
        [1400, 1800, 2200, 2800, 3400, 2900],  # bare ground
        [8500, 8300, 8000, 7000, 1000, 800],  # snow / ice
        [5000, 5000, 5000, 5000, 3500, 2500],  # clouds
        [500, 800, 900, 2500, 2600, 1700],  # rangeland
    ],
    dtype=np.float32,
)
assert len(SPECTRA) == NUM_CLASSES


def make_chip_store(directory: Path, n_chips: int, frames: int, size: int, seed: int) -> None:
    """``images.npy`` int16 (N, T, 6, S, S) and ``labels.npy`` uint8 (N, S, S): blocky classes + noise + nodata."""
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


def make_dataset(
    root: Path, frames: int = 3, size: int = 32, chips_per_aoi: int = 12, seeds: tuple[int, ...] = (0, 1)
) -> tuple[dict[str, Path], Path]:
    """Two AOI chip stores and a ``splits.csv`` (train / val / test, fractions 1 and 0.5 per seed)."""
    stores = {}
    rows = []
    for k, aoi in enumerate(("aoi_a", "aoi_b")):
        stores[aoi] = root / "chips" / aoi
        make_chip_store(stores[aoi], chips_per_aoi, frames, size, seed=100 + k)
        for index in range(chips_per_aoi):
            split = "train" if index < chips_per_aoi // 2 else ("val" if index % 2 == 0 else "test")
            rows.append({"chip_id": f"{aoi}_{index:03d}", "aoi": aoi, "index": index, "block_id": f"{aoi}_b{index}",
                         "split": split, "excluded_reason": ""})
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
