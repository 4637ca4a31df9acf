"""Stats stage: per-band mean and standard deviation of the training chips (``normalization: dataset``).

A model whose ``models.<name>.normalization`` is ``dataset`` normalises its input with statistics of this
study's own imagery instead of a foundation model's pretraining statistics. They are computed once, by the
``stats`` rule, over the **whole training pool**: every chip of the ``train`` split of ``splits.csv`` (the
balanced pool, i.e. training fraction 1), so they do not depend on the seed or the training fraction and every
run of every model sees the same statistics. Validation and test chips are never read.

Per band (in :data:`lulc.hls.PRITHVI_BANDS` order), over every frame of every training chip, every pixel whose
value in that band is not HLS nodata (:data:`lulc.hls.REFLECTANCE_NODATA`, -9999) counts: the mean and the
population standard deviation (``ddof = 0``) of those values, in reflectance x 10000 like the chips. Chips are
read one at a time from the memory-mapped chip store and merged with the pairwise update of Chan et al. (exact
in float64 whatever the pool size), so memory stays at one chip.

Output ``results/stats/normalization.json``: ``mean``, ``std`` and ``pixels`` (valid values counted) per band,
the chips used (``chip_ids``, per-AOI counts), and the identity of the inputs: the SHA-256 of ``splits.csv`` and
a SHA-256 of the bytes of every chip read (in the order read), with each store's path and array shape.
:func:`lulc.models.normalization.dataset_normalization` reads it; the trained checkpoints carry the statistics,
so evaluation and prediction never need this file.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lulc.hls import PRITHVI_BANDS, REFLECTANCE_NODATA
from lulc.io import write_json
from lulc.split_table import SPLITS_CSV

log = logging.getLogger(__name__)

#: Format tag of ``normalization.json``.
STATS_FORMAT = "lulc-normalization/1"


def training_pool(splits: str | os.PathLike[str]) -> pd.DataFrame:
    """Every chip of the training split (fraction 1, any seed): ``chip_id``, ``aoi``, ``index``, by ``chip_id``."""
    path = Path(splits)
    if path.is_dir():
        path = path / SPLITS_CSV
    table = pd.read_csv(path, dtype={"chip_id": str, "aoi": str, "index": np.int64, "split": str},
                        keep_default_na=False)
    pool = table.loc[table["split"] == "train", ["chip_id", "aoi", "index"]]
    return pool.sort_values("chip_id").reset_index(drop=True)


def _merge(
    count: np.ndarray, mean: np.ndarray, m2: np.ndarray, n: np.ndarray, chunk_mean: np.ndarray, chunk_m2: np.ndarray
) -> None:
    """Merge a chunk (``n`` values per band, their mean and sum of squared deviations) into the totals, in place."""
    total = count + n
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = chunk_mean - mean
        share = np.where(total > 0, n / np.maximum(total, 1), 0.0)
        mean += delta * share
        m2 += chunk_m2 + delta**2 * count * share
    count += n


def band_statistics(
    stores: Mapping[str, str | os.PathLike[str]],
    chips: pd.DataFrame,
    nodata: int = REFLECTANCE_NODATA,
) -> dict[str, Any]:
    """Per-band count, mean and population std of the valid values of ``chips`` (rows ``aoi``, ``index``).

    Streams one chip at a time; raises ``ValueError`` where a band has no valid value or zero variance (it
    could not be normalised).
    """
    bands = len(PRITHVI_BANDS)
    count = np.zeros(bands, dtype=np.int64)
    mean = np.zeros(bands, dtype=np.float64)
    m2 = np.zeros(bands, dtype=np.float64)
    content = hashlib.sha256()
    shapes: dict[str, list[int]] = {}
    missing = sorted(set(chips["aoi"]) - set(stores))
    if missing:
        raise KeyError(f"no chip store given for AOI(s) {missing}")
    for aoi, rows in chips.groupby("aoi", sort=True):
        images = np.load(Path(stores[str(aoi)]) / "images.npy", mmap_mode="r")
        if images.ndim != 5 or images.shape[2] != bands or images.dtype != np.int16:
            raise ValueError(f"{stores[str(aoi)]}/images.npy: expected int16 (N, T, {bands}, S, S), got "
                             f"{images.dtype} {images.shape}")
        shapes[str(aoi)] = list(images.shape)
        for index in rows["index"].to_numpy():
            if not 0 <= index < images.shape[0]:
                raise ValueError(f"{stores[str(aoi)]}/images.npy has {images.shape[0]} chips; splits.csv names "
                                 f"chip {index} of AOI {aoi} (rerun the splits rule)")
            chip = np.ascontiguousarray(images[index])  # (T, 6, S, S)
            content.update(chip.tobytes())
            values = chip.transpose(1, 0, 2, 3).reshape(bands, -1).astype(np.float64)
            valid = chip.transpose(1, 0, 2, 3).reshape(bands, -1) != nodata
            n = valid.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                chunk_mean = np.where(n > 0, np.where(valid, values, 0.0).sum(axis=1) / np.maximum(n, 1), 0.0)
            chunk_m2 = np.where(valid, (values - chunk_mean[:, None]) ** 2, 0.0).sum(axis=1)
            _merge(count, mean, m2, n, chunk_mean, chunk_m2)
    std = np.sqrt(np.where(count > 0, m2 / np.maximum(count, 1), 0.0))
    empty = [name for name, n, s in zip(PRITHVI_BANDS, count, std, strict=True) if n == 0 or not s > 0]
    if empty:
        raise ValueError(
            f"normalization 'dataset': band(s) {', '.join(empty)} have no valid pixel or a single value over the "
            f"{len(chips)} training chips, so they cannot be normalised; use another models.<name>.normalization"
        )
    return {
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "pixels": [int(v) for v in count],
        "chips_sha256": content.hexdigest(),
        "shapes": shapes,
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def dataset_statistics(
    stores: Mapping[str, str | os.PathLike[str]], splits: str | os.PathLike[str]
) -> dict[str, Any]:
    """The content of ``normalization.json`` for the training pool of ``splits`` in ``stores``."""
    pool = training_pool(splits)
    if pool.empty:
        raise ValueError(f"{splits}: the training split is empty; normalization 'dataset' needs training chips")
    stats = band_statistics(stores, pool)
    splits_path = Path(splits) / SPLITS_CSV if Path(splits).is_dir() else Path(splits)
    return {
        "format": STATS_FORMAT,
        "bands": list(PRITHVI_BANDS),
        "units": "reflectance x 10000",
        "nodata": REFLECTANCE_NODATA,
        "definition": "per band, over every frame of every chip of the training split (fraction 1): mean and "
        "population std (ddof 0) of the values that are not nodata",
        "mean": stats["mean"],
        "std": stats["std"],
        "pixels": stats["pixels"],
        "chips": len(pool),
        "chips_per_aoi": {str(aoi): int(n) for aoi, n in pool.groupby("aoi").size().items()},
        "chip_ids": pool["chip_id"].tolist(),
        "inputs": {
            "splits": {"path": str(splits_path), "sha256": _sha256(splits_path)},
            "stores": {aoi: {"path": str(stores[aoi]), "shape": shape} for aoi, shape in stats["shapes"].items()},
            "chips_sha256": stats["chips_sha256"],
        },
    }


def write_statistics(
    stores: Mapping[str, str | os.PathLike[str]], splits: str | os.PathLike[str], out: str | os.PathLike[str]
) -> dict[str, Any]:
    """The ``stats`` rule: compute :func:`dataset_statistics` and write it to ``out`` atomically; return it."""
    result = dataset_statistics(stores, splits)
    write_json(result, out)
    log.info(
        "normalization statistics of %d training chips -> %s: mean %s, std %s",
        result["chips"], out, [round(v, 1) for v in result["mean"]], [round(v, 1) for v in result["std"]],
    )  # fmt: skip
    return result


__all__ = ["STATS_FORMAT", "band_statistics", "dataset_statistics", "training_pool", "write_statistics"]
