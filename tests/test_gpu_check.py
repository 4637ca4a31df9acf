"""benchmarks/gpu_check.sh in its CPU dry mode: the GPU check runs end to end and writes its whole report, so it
cannot rot on machines without a GPU (its figures there mean nothing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_gpu_check_runs_in_dry_mode_and_writes_its_report(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = os.environ | {"PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry", "--json", str(out)],
                          env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] and report["peak_bf16_tflops"] is None  # a CPU has no tensor-core peak
    assert set(report["training"]) == {"prithvi", "unet", "vit"}
    for kind, row in report["training"].items():
        assert row["forward_gflops_per_sample"] > 0, kind
        assert row["ours"]["samples_per_s"] > 0 and row["terratorch"]["samples_per_s"] > 0, kind
        assert row["speedup"] == pytest.approx(row["ours"]["samples_per_s"] / row["terratorch"]["samples_per_s"],
                                               rel=0.01)  # fmt: skip
    loader = report["dataloader"]
    assert loader["chips"] == 9 and loader["loader_alone_chips_per_s"] > 0
    assert loader["training_fed_by_loader_samples_per_s"] > 0 and isinstance(loader["loader_is_bottleneck"], bool)
    maps = report["maps"]
    assert maps["ours_km2_per_s"] > 0 and maps["terratorch_inference_km2_per_s"] > 0
    assert 0.9 <= maps["pixel_agreement_interior"] <= 1.0  # the same tiling on both sides (bf16 both)
    assert set(report["targets"]) == {"prithvi_mfu_at_least_0.40", "dataloader_not_the_bottleneck",
                                      "maps_at_least_1.5x_terratorch"}  # fmt: skip


def test_without_a_gpu_the_full_check_refuses_and_says_how_to_dry_run(tmp_path):
    env = os.environ | {"PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--json", str(tmp_path / "x.json")],
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode != 0 and "no CUDA GPU" in done.stderr and "--dry" in done.stderr
    assert not (tmp_path / "x.json").exists()


def test_the_peak_of_a_gpu_comes_from_its_name():
    sys.path.insert(0, str(REPO))
    from benchmarks.gpu_check import peak_tflops

    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops("NVIDIA L40S") == 362.05 and peak_tflops("NVIDIA L4") == 121.0
    assert peak_tflops("NVIDIA GeForce GTX 1080") is None
