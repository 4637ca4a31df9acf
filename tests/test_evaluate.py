"""Evaluation: macro mIoU, per-class IoU and F1 from the confusion matrix, ignore index excluded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch

from lulc import hls
from lulc.evaluate import confusion_matrix
from lulc.metrics import majority_confusion, metrics_from_confusion
from tests import io_legend as classes

C = classes.NUM_CLASSES


def test_metrics_from_a_hand_made_confusion_matrix():
    confusion = np.zeros((C, C), np.int64)
    confusion[0, 0], confusion[0, 1] = 8, 2  # water: 8 right, 2 called trees
    confusion[1, 1] = 10  # trees all right
    confusion[3, 1] = 5  # crops never predicted
    metrics = metrics_from_confusion(confusion, classes.CLASS_NAMES)
    assert metrics["iou"]["water"] == pytest.approx(8 / 10)
    assert metrics["iou"]["trees"] == pytest.approx(10 / 17)
    assert metrics["iou"]["crops"] == 0.0
    assert metrics["iou"]["built_area"] is None  # absent from labels and predictions: undefined
    assert metrics["miou"] == pytest.approx((0.8 + 10 / 17 + 0.0) / 3)
    assert metrics["pixel_accuracy"] == pytest.approx(18 / 25)
    assert metrics["f1"]["water"] == pytest.approx(2 * 8 / (10 + 8))
    assert metrics["support"]["crops"] == 5


def test_majority_baseline_is_far_below_a_good_model():
    confusion = np.diag([100, 50, 0, 300, 20, 0, 0, 0, 80]).astype(np.int64)
    perfect = metrics_from_confusion(confusion, classes.CLASS_NAMES)
    baseline = metrics_from_confusion(majority_confusion(confusion, 3), classes.CLASS_NAMES)
    assert perfect["miou"] == 1.0
    assert baseline["pixel_accuracy"] == pytest.approx(300 / 550)
    assert baseline["miou"] == pytest.approx((300 / 550) / 5)


class _Constant(torch.nn.Module):
    """Predicts class index 1 everywhere except where the first band is above 1000."""

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(raw.shape[0], C, *raw.shape[-2:])
        high = raw[:, 0, 0] > 1000
        logits[:, 1] = 1.0
        logits[:, 0] = torch.where(high, 2.0, 0.0)
        return logits


def test_confusion_matrix_excludes_the_ignore_index():
    images = torch.zeros(2, 3, 6, 4, 4, dtype=torch.int16)
    images[0, 0, 0, :2] = 2000
    masks = torch.ones(2, 4, 4, dtype=torch.uint8)
    masks[0, :2] = 0
    masks[1, 0, 0] = classes.IGNORE_INDEX
    dataset = [{"image": images[i], "mask": masks[i]} for i in range(2)]
    confusion = confusion_matrix(_Constant(), dataset, batch_size=2)
    assert confusion.sum() == 31
    assert confusion[0, 0] == 8 and confusion[1, 1] == 23


# ------------------------------------------------------------------------------- sliding-window evaluation

FRAMES, CHIP = 2, 8


class _BandOracle(torch.nn.Module):
    """Logits: the one-hot of the class that band 0 of frame 0 encodes (500 + 1000 x class), at each pixel."""

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        index = torch.div(raw[:, 0, 0].long() - 500, 1000, rounding_mode="floor").clamp(0, C - 1)
        return torch.nn.functional.one_hot(index, C).permute(0, 3, 1, 2).float()


class _Conv(torch.nn.Module):
    """A 3 x 3 convolution with zero padding: its logits near a window's edge depend on where the window is."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(FRAMES * 6, C, 3, padding=1)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.conv(raw.flatten(1, 2).float() / 1000)


def make_scene(root: Path, chip_stride: int = CHIP, height: int = 40, width: int = 44):
    """An AOI: image.tif whose band 0 encodes the label, a chip store and manifest cut from it (the last partial
    chip row / column left uncut), and a splits.csv of 16 x 16 px blocks, with test blocks, a test chip the
    buffer excluded, and training / validation blocks. Returns stores, splits, images, the label raster and
    the mask of the evaluated pixels (test chips' footprints, labelled)."""
    from rasterio.transform import from_origin

    from lulc.chips import pixel_columns

    PIXEL_COLUMNS = pixel_columns(classes.CLASS_NAMES)

    rng = np.random.default_rng(1)
    label = rng.choice(np.array([0, 1, 3, 4, 5, 8], dtype=np.uint8), size=(height, width))
    label[rng.random((height, width)) < 0.05] = classes.IGNORE_INDEX
    image = rng.integers(200, 3000, (FRAMES, 6, height, width)).astype(np.int16)
    image[0, 0] = 500 + 1000 * np.where(label == classes.IGNORE_INDEX, 3, label).astype(np.int16)
    image[1, :, 3:6, 7:9] = hls.REFLECTANCE_NODATA  # a cloud-masked patch in one frame
    image_path = root / "download" / "aoi" / "image.tif"
    image_path.parent.mkdir(parents=True)
    profile = {"driver": "GTiff", "width": width, "height": height, "count": FRAMES * 6, "dtype": "int16",
               "crs": "EPSG:32615", "transform": from_origin(500_000, 4_650_000, 30, 30),
               "nodata": hls.REFLECTANCE_NODATA}  # fmt: skip
    with rasterio.open(image_path, "w", **profile) as dst:
        dst.write(image.reshape(FRAMES * 6, height, width))

    store = root / "chips" / "aoi"
    store.mkdir(parents=True)
    records, chips, masks = [], [], []
    for row in range(0, height - CHIP + 1, chip_stride):
        for col in range(0, width - CHIP + 1, chip_stride):
            chip_label = label[row : row + CHIP, col : col + CHIP]
            counts = np.bincount(chip_label.ravel(), minlength=256)[:C]
            records.append({"chip_id": f"aoi_r{row:05d}_c{col:05d}", "aoi": "aoi", "index": len(records),
                            "row_off": row, "col_off": col, "height": CHIP, "width": CHIP,
                            **dict(zip(PIXEL_COLUMNS, counts.tolist(), strict=True))})  # fmt: skip
            chips.append(image[..., row : row + CHIP, col : col + CHIP])
            masks.append(chip_label)
    np.save(store / "images.npy", np.stack(chips))
    np.save(store / "labels.npy", np.stack(masks))
    (store / "summary.json").write_text(json.dumps({"legend": classes.IO.to_dict()}))
    manifest = pd.DataFrame(records)
    manifest.to_parquet(store / "manifest.parquet", index=False)

    table = manifest[["chip_id", "aoi", "index"]].copy()
    table["block_id"] = [f"b_x{c // 16}_y{r // 16}"
                         for r, c in zip(manifest["row_off"], manifest["col_off"], strict=True)]  # fmt: skip
    test_blocks = {"b_x0_y0", "b_x1_y1", "b_x2_y2"}
    table["split"] = ["test" if b in test_blocks else ("val" if b.endswith("y0") else "train")
                      for b in table["block_id"]]  # fmt: skip
    table.loc[table["chip_id"] == "aoi_r00024_c00016", "split"] = "excluded"  # dropped by the buffer
    table["excluded_reason"] = np.where(table["split"] == "excluded", "buffer", "")
    table["train_s0_f1"] = (table["split"] == "train").astype(int)
    splits = root / "splits" / "splits.csv"
    splits.parent.mkdir(parents=True)
    table.to_csv(splits, index=False)

    evaluated = np.zeros((height, width), dtype=bool)
    for record in manifest[table["split"] == "test"].itertuples():
        evaluated[record.row_off : record.row_off + CHIP, record.col_off : record.col_off + CHIP] = True
    evaluated &= label != classes.IGNORE_INDEX
    return {"aoi": store}, splits, {"aoi": image_path}, label, evaluated


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("scene"))


def _direct_confusion(label: np.ndarray, evaluated: np.ndarray) -> np.ndarray:
    labels = label[evaluated].astype(np.int64)
    return np.diag(np.bincount(labels, minlength=C))


@pytest.mark.parametrize(
    ("crop", "stride"),
    [(8, 8), (8, 4), (8, 3), (12, 5), (16, 16), (16, 6), (64, 7)],  # stride < crop, edge windows, crop > image
)
def test_sliding_window_scores_every_evaluated_pixel_once(scene, crop, stride):
    from lulc.evaluate import evaluation_blocks, sliding_window_confusion

    stores, splits, images, label, evaluated = scene
    blocks = evaluation_blocks(splits, stores)
    assert [b.block_id for b in blocks] == ["b_x0_y0", "b_x1_y1", "b_x2_y2"]
    confusion, record = sliding_window_confusion(_BandOracle(), blocks, stores, images, crop, stride, batch_size=5,
                                                 progress=False)  # fmt: skip
    np.testing.assert_array_equal(confusion, _direct_confusion(label, evaluated))
    assert metrics_from_confusion(confusion, classes.CLASS_NAMES)["miou"] == 1.0
    assert record["evaluated_pixels"] == evaluated.sum() and record["blocks"] == 3 and record["windows"] >= 3


def _mmseg_slide(model: torch.nn.Module, raw: torch.Tensor, crop: int, stride: int) -> torch.Tensor:
    """mmsegmentation's slide inference, transcribed (an image at least one crop large)."""
    _, _, h_img, w_img = raw.shape
    h_grids = max(h_img - crop + stride - 1, 0) // stride + 1
    w_grids = max(w_img - crop + stride - 1, 0) // stride + 1
    preds = torch.zeros(C, h_img, w_img)
    count = torch.zeros(h_img, w_img)
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y1, x1 = h_idx * stride, w_idx * stride
            y2, x2 = min(y1 + crop, h_img), min(x1 + crop, w_img)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            preds[:, y1:y2, x1:x2] += model(raw[None, ..., y1:y2, x1:x2])[0]
            count[y1:y2, x1:x2] += 1
    return preds / count


@pytest.mark.parametrize(("crop", "stride"), [(8, 8), (8, 3), (12, 5), (16, 7), (21, 21)])
def test_slide_logits_average_overlapping_windows_as_mmsegmentation_does(crop, stride):
    from lulc.evaluate import slide_logits

    raw = torch.from_numpy(np.random.default_rng(2).integers(0, 4000, (FRAMES, 6, 21, 30)).astype(np.int16))
    model = _Conv().eval()
    with torch.no_grad():
        expected = _mmseg_slide(model, raw, crop, stride)
    got = slide_logits(model, raw, crop, stride, batch_size=4)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    if stride < crop:  # overlapping windows differ near their edges: the average is not any one window
        single = slide_logits(model, raw, crop, crop)
        assert not torch.allclose(got, single)


def test_overlapping_test_chips_of_different_blocks_count_once(tmp_path):
    from lulc.evaluate import evaluation_blocks, sliding_window_confusion

    stores, splits, images, label, evaluated = make_scene(tmp_path, chip_stride=4)
    blocks = evaluation_blocks(splits, stores)
    confusion, record = sliding_window_confusion(_BandOracle(), blocks, stores, images, 8, 4, progress=False)
    np.testing.assert_array_equal(confusion, _direct_confusion(label, evaluated))
    assert record["evaluated_pixels"] == evaluated.sum()


def test_an_image_that_is_not_the_chips_source_is_refused(scene, tmp_path):
    from lulc.evaluate import evaluation_blocks, sliding_window_confusion

    stores, splits, images, _, _ = scene
    changed = tmp_path / "image.tif"
    with rasterio.open(images["aoi"]) as src:
        profile, pixels = src.profile, src.read()
    pixels[5, 2, 3] += 1  # inside test chip aoi_r00000_c00000
    with rasterio.open(changed, "w", **profile) as dst:
        dst.write(pixels)
    with pytest.raises(ValueError, match="does not hold the pixels of chip aoi_r00000_c00000"):
        sliding_window_confusion(_BandOracle(), evaluation_blocks(splits, stores), stores, {"aoi": changed}, 8, 4,
                                 progress=False)  # fmt: skip


def _evaluate(monkeypatch, scene, out: Path, cfg: dict | None) -> dict:
    from lulc.evaluate import RunToEvaluate, evaluate_runs

    stores, splits, images, _, _ = scene
    record = {"info": {"name": "oracle", "chip_size": CHIP, "frames": FRAMES}, "legend": classes.IO.to_dict()}
    monkeypatch.setattr("lulc.models.load_trained_model", lambda path: (_BandOracle(), record))
    run = RunToEvaluate(out / "best.ckpt", out / "metrics.json", out / "confusion.csv", out / "per_class.csv", {})
    (result,) = evaluate_runs([run], stores, splits, cfg=cfg, images=images)
    assert json.loads(run.out_json.read_text()) == json.loads(json.dumps(result))
    return result


def test_chips_mode_is_the_default_and_unchanged(monkeypatch, scene, tmp_path):
    from lulc.dataset import ChipStoreDataset
    from lulc.split_table import load_split

    stores, splits, _, _, evaluated = scene
    result = _evaluate(monkeypatch, scene, tmp_path, None)
    previous = confusion_matrix(_BandOracle(), ChipStoreDataset(stores, load_split(splits, "test")), batch_size=16)
    np.testing.assert_array_equal(pd.read_csv(tmp_path / "confusion.csv", index_col=0).to_numpy(), previous)
    assert result["evaluation"] == {"mode": "chips", "crop": None, "stride": None,
                                    "evaluated_pixels": int(evaluated.sum())}  # fmt: skip
    assert result["miou"] == 1.0 and result["pixels"] == evaluated.sum() and result["test_chips"] == 8


def test_sliding_window_mode_records_its_settings_and_scores_the_chips_pixels(monkeypatch, scene, tmp_path):
    chips = _evaluate(monkeypatch, scene, tmp_path / "chips", {"mode": "chips"})
    window = _evaluate(monkeypatch, scene, tmp_path / "window", {"mode": "sliding_window", "stride": 3})
    assert window["evaluation"] == {"mode": "sliding_window", "crop": CHIP, "stride": 3, "blocks": 3,
                                    "windows": window["evaluation"]["windows"],
                                    "evaluated_pixels": chips["evaluation"]["evaluated_pixels"]}  # fmt: skip
    confusions = [pd.read_csv(tmp_path / mode / "confusion.csv", index_col=0).to_numpy()
                  for mode in ("chips", "window")]  # fmt: skip
    np.testing.assert_array_equal(*confusions)
    assert window["miou"] == chips["miou"] == 1.0
    defaults = _evaluate(monkeypatch, scene, tmp_path / "defaults", {"mode": "sliding_window"})
    assert (defaults["evaluation"]["crop"], defaults["evaluation"]["stride"]) == (CHIP, CHIP // 2)


def test_a_checkpoint_of_another_legend_is_refused_naming_both(monkeypatch, scene, tmp_path):
    """An IO-trained checkpoint scored on WorldCover labels would compare indices that mean different classes."""
    from lulc.evaluate import RunToEvaluate, evaluate_runs
    from lulc.legends import LegendMismatchError, preset

    stores, splits, images, _, _ = scene
    worldcover = preset("esa-worldcover")
    for store in stores.values():  # the chips (the test labels) in the WorldCover legend
        (Path(store) / "summary.json").write_text(json.dumps({"legend": worldcover.to_dict()}))
        manifest = pd.read_parquet(Path(store) / "manifest.parquet")
        counts = manifest[[f"px_{n}" for n in classes.CLASS_NAMES]].to_numpy()
        manifest = manifest.drop(columns=[f"px_{n}" for n in classes.CLASS_NAMES])
        for k, name in enumerate(worldcover.names):
            manifest[f"px_{name}"] = counts[:, k] if k < counts.shape[1] else 0
        manifest.to_parquet(Path(store) / "manifest.parquet", index=False)
    record = {"info": {"name": "oracle", "chip_size": CHIP, "frames": FRAMES}, "legend": classes.IO.to_dict()}
    monkeypatch.setattr("lulc.models.load_trained_model", lambda path: (_BandOracle(), record))
    run = RunToEvaluate(tmp_path / "best.ckpt", tmp_path / "metrics.json", tmp_path / "c.csv", tmp_path / "p.csv", {})
    with pytest.raises(LegendMismatchError) as error:
        evaluate_runs([run], stores, splits, images=images)
    message = str(error.value)
    assert "legend 'io-lulc-9' (9 classes: water" in message and "legend 'esa-worldcover' (11 classes" in message
    assert not run.out_json.exists()
