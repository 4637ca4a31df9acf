"""Multi-process (DDP) training on CPU: ``train.devices: 2`` really trains with 2 processes, also in SLURM."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from lulc.train import run_directory, train

os.environ.setdefault("HF_HUB_OFFLINE", "1")
DDP = {"samples_per_epoch": 8, "progress_bar": False, "patience": 10, "devices": 2, "accelerator": "cpu",
       "threads": 1}

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable"),
]


def _check(out: Path, run: dict) -> None:
    assert sorted(p.name for p in out.iterdir()) == ["best.ckpt", "curve.csv", "run.json"]  # work/ cleaned up
    saved = json.loads((out / "run.json").read_text())
    assert saved == json.loads(json.dumps(run, default=str))
    assert saved["world_size"] == 2 and saved["devices"] == 2
    assert saved["epochs_run"] == 2 and saved["steps"] == 2 * 2  # 8 samples / 2 processes / batch -> steps
    assert 0 <= saved["best_val_miou"] <= 1 and saved["train_samples"] == 2 * 8


def test_two_devices_train_with_two_processes(chip_data, tmp_path):
    stores, splits = chip_data
    out = run_directory(tmp_path, "unet", 1.0, 0)
    run = train("unet", {"epochs": 2, "batch_size": 2}, DDP, stores, splits, 1.0, 0, out)
    _check(out, run)


def test_two_devices_inside_a_one_task_slurm_step_still_use_two_processes(chip_data, tmp_path, monkeypatch):
    # The trap: in a SLURM job step with one task, Lightning's SLURM detection would train with world size 1.
    for key, value in {"SLURM_JOB_ID": "1234", "SLURM_JOB_NAME": "train", "SLURM_NTASKS": "1",
                       "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "1", "SLURM_NODELIST": "localhost",
                       "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}.items():
        monkeypatch.setenv(key, value)
    stores, splits = chip_data
    out = run_directory(tmp_path, "unet", 1.0, 0)
    run = train("unet", {"epochs": 2, "batch_size": 2}, DDP, stores, splits, 1.0, 0, out)
    _check(out, run)
