"""Benchmark: DataLoader chips/s from the chip store, from per-chip GeoTIFFs, and from a plain memmap.

All three read the same chips in one run: the chip store written by the real chips stage
(``images.npy`` + ``labels.npy``, memory-mapped), the same chips exported as ``<id>_image.tif`` /
``<id>_label.tif`` pairs (the convention of TerraTorch's generic segmentation datasets), and a plain
int16 ``np.memmap`` of the image pixels alone (the limit: no labels, no lookup). Pixels stay int16.

    python benchmarks/dataloader.py [--chips 256] [--size 224] [--frames 3] [--workers 2] [--epochs 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin
from torch.utils.data import DataLoader, Dataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lulc import hls  # noqa: E402
from lulc.chips import export_geotiff_chips, make_chips  # noqa: E402
from lulc.dataset import ChipStoreDataset, GeoTiffChipDataset  # noqa: E402
from lulc.legends import IGNORE_INDEX, preset  # noqa: E402

#: The legend of the synthetic class rasters (the IO LULC 9-class preset).
LEGEND = preset("io-lulc-9")


class PlainMemmapDataset(Dataset):
    """The limit: one int16 memmap of shape (N, T, 6, H, W), indexed directly, nothing else."""

    def __init__(self, path: Path, shape: tuple[int, ...]) -> None:
        self.path, self.shape, self.array = path, shape, None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.array is None:
            self.array = np.memmap(self.path, dtype=np.int16, mode="r", shape=self.shape)
        return torch.from_numpy(np.array(self.array[i]))


def write_rasters(workdir: Path, n_side: int, size: int, frames: int) -> dict[str, Path]:
    """Image / mask / label rasters holding ``n_side**2`` chips of ``size`` pixels."""
    rng = np.random.default_rng(0)
    side = n_side * size
    common = {
        "driver": "GTiff",
        "width": side,
        "height": side,
        "crs": "EPSG:32615",
        "tiled": True,
        "transform": from_origin(500_000.0, 4_650_000.0, 30.0, 30.0),
        "compress": "deflate",
    }
    paths = {name: workdir / f"{name}.tif" for name in ("image", "mask", "label")}
    with rasterio.open(
        paths["image"], "w", count=frames * 6, dtype="int16", nodata=hls.REFLECTANCE_NODATA, **common
    ) as dst:
        for band in range(1, frames * 6 + 1):
            dst.write(rng.integers(0, 6000, (side, side), dtype=np.int16), band)
    with rasterio.open(paths["mask"], "w", count=frames, dtype="uint8", nodata=255, **common) as dst:
        dst.write(np.zeros((frames, side, side), np.uint8))
    with rasterio.open(paths["label"], "w", count=1, dtype="uint8", nodata=IGNORE_INDEX, **common) as dst:
        dst.write(rng.integers(0, LEGEND.num_classes, (1, side, side), dtype=np.uint8))
        dst.update_tags(**LEGEND.tags())  # the class table the chips stage reads
        dst.write_colormap(1, LEGEND.colormap())
    return paths


def chips_per_second(dataset: Dataset, batch_size: int, workers: int, epochs: int) -> float:
    """Chips delivered per second by a shuffling DataLoader, after one warm-up epoch."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    for _ in loader:  # warm-up: worker start, page cache
        pass
    start, n = time.perf_counter(), 0
    for _ in range(epochs):
        for batch in loader:
            n += len(batch["image"] if isinstance(batch, dict) else batch)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lulc_dataloader"))
    parser.add_argument("--chips", type=int, default=256, help="rounded down to a square number")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    n_side = int(np.sqrt(args.chips))
    paths = write_rasters(workdir, n_side, args.size, args.frames)
    store = workdir / "store"
    make_chips(
        "bench",
        paths["image"],
        paths["mask"],
        paths["label"],
        {"size": args.size, "stride": args.size, "min_valid_fraction": 0.5},
        store,
    )
    export_geotiff_chips(store, paths["image"], workdir / "geotiff")
    import pandas as pd

    manifest = pd.read_parquet(store / "manifest.parquet")
    images = np.load(store / "images.npy", mmap_mode="r")
    plain = workdir / "plain.int16"
    images.tofile(plain)

    datasets = {
        "chip store (images.npy + labels.npy)": ChipStoreDataset({"bench": store}, manifest),
        "GeoTIFF pair per chip (rasterio)": GeoTiffChipDataset(workdir / "geotiff", manifest["chip_id"], args.frames),
        "plain int16 memmap (limit)": PlainMemmapDataset(plain, images.shape),
    }
    # Interleaved rounds, best of each: the datasets take turns, so a busy moment hits all of them alike.
    rounds: dict[str, list[float]] = {name: [] for name in datasets}
    for _ in range(args.rounds):
        for name, dataset in datasets.items():
            rounds[name].append(chips_per_second(dataset, args.batch_size, args.workers, args.epochs))
    results = {name: round(max(values), 1) for name, values in rounds.items()}
    limit = results["plain int16 memmap (limit)"]
    report = {
        "chips": len(manifest),
        "chip": f"{args.size} x {args.size} x {args.frames * 6} bands int16",
        "workers": args.workers,
        "batch_size": args.batch_size,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "chips_per_second": results,
        "store_vs_limit": round(results["chip store (images.npy + labels.npy)"] / limit, 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
