"""Masked-autoencoder pretraining: a checkpoint in the official Prithvi key layout that fine-tuning loads."""

from __future__ import annotations

import json
import os

import pytest
import torch
from synthetic_chips import FAST

from lulc.pretrain import pretrain
from lulc.train import train

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_pretrain_writes_a_checkpoint_the_prithvi_loader_accepts(chip_data, tmp_path):
    stores, splits = chip_data
    summary = pretrain("prithvi", {}, {"epochs": 2, "batch_size": 8}, stores, tmp_path / "pretrain", progress=False)
    checkpoint = tmp_path / "pretrain" / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=True)
    assert any(k.startswith("encoder.blocks.") for k in state) and any(k.startswith("decoder.") for k in state)
    assert summary["chips"] == 24 and len(summary["curve"]) == 2 and summary["normalization"]["name"] == "prithvi_v2"
    assert json.loads((tmp_path / "pretrain" / "pretrain.json").read_text())["tensors"]["encoder"] > 0

    run = train("prithvi", {"epochs": 1}, FAST, stores, splits, 0.5, 0, tmp_path / "finetune",
                pretrain_checkpoint=checkpoint)
    assert run["weights"]["source"] == "pretrain" and run["weights"]["path"] == str(checkpoint)
    assert run["weights"]["tensors_rebuilt"] == [] and run["weights"]["tensors_loaded"] == summary["tensors"]["encoder"]


def test_pretrain_refuses_a_model_that_is_not_prithvi(chip_data, tmp_path):
    with pytest.raises(ValueError, match="pretraining 'unet': it is a unet model"):
        pretrain("unet", {}, {}, chip_data[0], tmp_path)


def test_pretrain_records_full_fp32_matmuls(chip_data, tmp_path):
    stores, _ = chip_data
    summary = pretrain("prithvi", {}, {"epochs": 1, "batch_size": 8}, stores, tmp_path / "pretrain", progress=False)
    assert summary["matmul_precision"] == "highest"
