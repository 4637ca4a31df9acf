"""normalization: dataset: per-band statistics of the training pool, used by a model, recorded, and carried."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from synthetic_chips import FAST

from lulc.hls import PRITHVI_BANDS, REFLECTANCE_NODATA
from lulc.models import build_model, load_trained_model, sha256_file
from lulc.stats import dataset_statistics, write_statistics
from lulc.train import train

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def direct_statistics(stores: dict[str, Path], splits: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, population std and count per band of every valid value of the training chips, in one numpy pass."""
    table = pd.read_csv(splits)
    per_band: list[list[np.ndarray]] = [[] for _ in PRITHVI_BANDS]
    for aoi, rows in table[table["split"] == "train"].groupby("aoi"):
        images = np.load(stores[aoi] / "images.npy")[rows["index"].to_numpy()]  # (n, T, 6, S, S)
        for band in range(len(PRITHVI_BANDS)):
            values = images[:, :, band].ravel()
            per_band[band].append(values[values != REFLECTANCE_NODATA].astype(np.float64))
    values = [np.concatenate(parts) for parts in per_band]
    return (np.array([v.mean() for v in values]), np.array([v.std() for v in values]),
            np.array([v.size for v in values]))  # fmt: skip


def test_statistics_equal_a_direct_numpy_computation_over_the_training_chips(chip_data, tmp_path):
    stores, splits = chip_data
    out = tmp_path / "stats" / "normalization.json"
    result = write_statistics(stores, splits, out)

    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    mean, std, pixels = direct_statistics(stores, splits)
    np.testing.assert_allclose(result["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(result["std"], std, rtol=1e-12)
    assert result["pixels"] == pixels.tolist()
    all_values = 12 * 3 * 32 * 32  # training chips x frames x pixels
    assert all(0.9 * all_values < n < all_values for n in pixels)  # the synthetic nodata pixels are left out
    table = pd.read_csv(splits)
    assert result["chip_ids"] == sorted(table.loc[table["split"] == "train", "chip_id"])  # fraction 1, any seed
    assert result["chips"] == 12 and result["chips_per_aoi"] == {"aoi_a": 6, "aoi_b": 6}
    assert result["bands"] == list(PRITHVI_BANDS)
    assert result["inputs"]["splits"]["sha256"] == sha256_file(splits)
    assert result["inputs"]["stores"]["aoi_a"]["shape"] == [12, 3, 6, 32, 32]
    assert dataset_statistics(stores, splits) == result  # deterministic


def _store(tmp_path: Path, images: np.ndarray, splits: list[str]) -> tuple[dict[str, Path], Path]:
    store = tmp_path / "chips" / "x"
    store.mkdir(parents=True)
    np.save(store / "images.npy", images)
    table = pd.DataFrame({"chip_id": [f"x_{i}" for i in range(len(splits))], "aoi": "x",
                          "index": range(len(splits)), "block_id": "b", "split": splits})  # fmt: skip
    table.to_csv(tmp_path / "splits.csv", index=False)
    return {"x": store}, tmp_path / "splits.csv"


def test_nodata_is_left_out_band_by_band_and_only_training_chips_count(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 5000, (3, 2, 6, 8, 8)).astype(np.int16)
    images[0, 1, 2, :4] = REFLECTANCE_NODATA  # half of one frame's RED band of one chip
    images[2] = 15000  # a test chip: never read
    stores, splits = _store(tmp_path, images, ["train", "train", "test"])
    result = dataset_statistics(stores, splits)
    for band in range(6):
        values = images[:2, :, band].ravel()
        values = values[values != REFLECTANCE_NODATA]
        assert result["mean"][band] == pytest.approx(values.mean(), rel=1e-12)
        assert result["std"][band] == pytest.approx(values.std(), rel=1e-12)
        assert result["pixels"][band] == values.size
    assert result["pixels"][2] == 2 * 2 * 64 - 32 and result["pixels"][0] == 2 * 2 * 64


def test_a_band_without_valid_pixels_stops_with_its_name(tmp_path):
    images = 1000 + np.arange(2 * 6 * 16, dtype=np.int16).reshape(2, 1, 6, 4, 4)
    images[:, :, 4] = REFLECTANCE_NODATA
    stores, splits = _store(tmp_path, images, ["train", "val"])
    with pytest.raises(ValueError, match="SWIR_1"):
        dataset_statistics(stores, splits)


def test_dataset_normalisation_without_statistics_names_the_key():
    with pytest.raises(ValueError, match="config key models.unet.normalization: 'dataset' needs"):
        build_model("unet", {"normalization": "dataset"}, 3, 32)
    explicit = {"mean": [1000.0] * 6, "std": [500.0] * 6}  # an explicit mean / std still works
    assert build_model("unet", {"normalization": explicit}, 3, 32).info["normalization"]["name"] == "custom"


@pytest.mark.usefixtures("one_torch_thread")
def test_a_dataset_normalised_model_trains_records_the_statistics_and_reloads_without_them(chip_data, tmp_path):
    stores, splits = chip_data
    stats = tmp_path / "stats" / "normalization.json"
    written = write_statistics(stores, splits, stats)
    out = tmp_path / "run"
    run = train("unet", {"epochs": 1, "normalization": "dataset"}, FAST, stores, splits, 1.0, 0, out,
                dataset_stats=stats)  # fmt: skip

    expected = {"name": "dataset", "mean": written["mean"], "std": written["std"], "source": str(stats),
                "sha256": sha256_file(stats)}  # fmt: skip
    assert run["normalization"] == expected
    assert json.loads((out / "run.json").read_text())["normalization"] == expected

    x = torch.from_numpy(np.load(stores["aoi_a"] / "images.npy")[:3])
    with_file = build_model("unet", {"normalization": "dataset"}, 3, 32, dataset_stats=stats).model.eval()
    with_file.load_state_dict(torch.load(out / "best.ckpt", weights_only=True)["state_dict"], strict=True)
    with torch.no_grad():
        reference = with_file(x)

    stats.unlink()  # evaluation and prediction never need the file: the checkpoint carries the statistics
    model, checkpoint = load_trained_model(out / "best.ckpt")
    assert checkpoint["config"]["normalization"] == "dataset"
    assert checkpoint["info"]["normalization"] == expected
    np.testing.assert_allclose(model.normalize.mean.flatten().numpy(), written["mean"], rtol=1e-6)
    np.testing.assert_allclose(1 / model.normalize.inv_std.flatten().numpy(), written["std"], rtol=1e-6)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), reference)
