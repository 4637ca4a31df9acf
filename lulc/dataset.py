"""PyTorch datasets over the chip store (and, for comparison, over per-chip GeoTIFF files).

Samples are ``{"image": int16 tensor (T, 6, H, W), "mask": uint8 tensor (H, W)}`` (with ``coords=True`` also
the frames' ``temporal_coords`` ``(T, 2)`` and the chip centre's ``location_coords`` ``(2,)``, for models with
time / location inputs: :mod:`lulc.coords`); conversion to float /
int64 and normalisation happen on the model's device, where they are cheapest (and the DataLoader moves
a quarter of the bytes float32 would need). Memory maps are opened lazily
in each DataLoader worker, so nothing large is pickled into worker processes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import torch
from torch.utils.data import Dataset

from lulc.chips import ChipStore
from lulc.coords import LOCATION_KEY, TEMPORAL_KEY, chip_latlon, temporal_coords


class ChipStoreDataset(Dataset):
    """Chips selected by ``(aoi, index)`` rows from the chip stores of several AOIs.

    Args:
        stores: AOI name -> chip store directory (``results/chips/{aoi}``).
        chips: a table with ``aoi`` and ``index`` columns (a manifest, or a split selection of one).
        coords: add each sample's frame dates and centre (the store's ``summary.json`` and manifest).
    """

    def __init__(self, stores: dict[str, Path], chips: pd.DataFrame, coords: bool = False) -> None:
        missing = sorted(set(chips["aoi"]) - set(stores))
        if missing:
            raise KeyError(f"no chip store given for AOI(s) {missing}")
        self.stores = {aoi: ChipStore(Path(path)) for aoi, path in stores.items()}
        self.aois: list[str] = chips["aoi"].astype(str).tolist()
        self.indices: list[int] = chips["index"].astype(int).tolist()
        self._images: dict[str, np.ndarray] = {}
        self._labels: dict[str, np.ndarray] = {}
        self.coords = store_coords({aoi: self.stores[aoi] for aoi in set(self.aois)}) if coords else None

    def __len__(self) -> int:
        return len(self.indices)

    def arrays(self, aoi: str) -> tuple[np.ndarray, np.ndarray]:
        """The memory-mapped (images, labels) arrays of an AOI's chip store, opened on first use."""
        if aoi not in self._images:
            self._images[aoi] = np.load(self.stores[aoi].images, mmap_mode="r")
            self._labels[aoi] = np.load(self.stores[aoi].labels, mmap_mode="r")
        return self._images[aoi], self._labels[aoi]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        images, labels = self.arrays(self.aois[i])
        index = self.indices[i]
        sample = {
            "image": torch.from_numpy(np.array(images[index])),
            "mask": torch.from_numpy(np.array(labels[index])),
        }
        if self.coords is not None:
            temporal, locations = self.coords[self.aois[i]]
            sample[TEMPORAL_KEY] = torch.from_numpy(temporal)
            sample[LOCATION_KEY] = torch.tensor(locations[index], dtype=torch.float32)
        return sample


def store_coords(stores: dict[str, ChipStore]) -> dict[str, tuple[np.ndarray, dict[int, tuple[float, float]]]]:
    """AOI -> (its frames' ``(T, 2)`` year / day of year, chip index -> centre latitude / longitude)."""
    import geopandas as gpd

    found = {}
    for aoi, store in stores.items():
        dates = (json.loads(store.summary.read_text()).get("periods") or {}).get("imagery") or []
        if not dates:
            raise ValueError(
                f"{store.summary}: no frame dates (periods.imagery), which a model with time / location inputs "
                "needs; rerun the chips rule"
            )
        found[aoi] = (temporal_coords(dates, str(store.summary)), chip_latlon(gpd.read_parquet(store.manifest)))
    return found


class GeoTiffChipDataset(Dataset):
    """Chips read from ``<id>_image.tif`` / ``<id>_label.tif`` pairs, one file open per sample.

    The convention of TerraTorch's generic segmentation datasets; kept for QGIS / TerraTorch users and
    as the baseline in ``benchmarks/dataloader.py``.
    """

    def __init__(self, directory: Path, chip_ids: Sequence[str], frames: int) -> None:
        self.directory = Path(directory)
        self.chip_ids = list(chip_ids)
        self.frames = frames

    def __len__(self) -> int:
        return len(self.chip_ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        chip_id = self.chip_ids[i]
        with rasterio.open(self.directory / f"{chip_id}_image.tif") as src:
            image = src.read()
        with rasterio.open(self.directory / f"{chip_id}_label.tif") as src:
            label = src.read(1)
        image = image.reshape(self.frames, 6, *image.shape[-2:])
        return {"image": torch.from_numpy(image), "mask": torch.from_numpy(label)}


def stores_from_paths(image_paths: Sequence[str | os.PathLike[str]]) -> dict[str, Path]:
    """AOI -> chip store directory from ``results/chips/{aoi}/images.npy`` paths (rule inputs)."""
    return {Path(p).parent.name: Path(p).parent for p in image_paths}
