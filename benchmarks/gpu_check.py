"""GPU check: training samples/s and model FLOPs utilisation, DataLoader chips/s with the GPU consuming, and
full-scene inference km2/s, each beside TerraTorch's task and tiled inference in the same run.

Run through ``benchmarks/gpu_check.sh`` (one command, at most 8 minutes on one GPU, no network, nothing beyond the
project's environment; random weights, synthetic chips and scene):

* **Training** (bf16 autocast, what ``train.precision: auto`` picks on a GPU with bf16), 3 x 224 x 224 chips:
  Prithvi-EO-1.0-100M + FCN(256), U-Net ResNet-18 and ViT-S/16 + FCN(256): our ``SegmentationTask`` (channels-last
  convolutions, fused AdamW) beside TerraTorch's ``SemanticSegmentationTask`` on the same architecture
  (``EncoderDecoderFactory`` / ``SMPModelFactory``), the same batch and autocast. Model FLOPs utilisation (MFU)
  = 3 x forward FLOPs per sample (``torch.utils.flop_counter``) x samples/s / the GPU's published dense bf16
  peak (:data:`PEAK_BF16_TFLOPS`, or ``--peak-tflops``). Target: at least 40 % for Prithvi-100M.
* **DataLoader**: chips/s of the chip store (``lulc.dataset.ChipStoreDataset``, the workflow's DataLoader
  settings: workers, pinned memory) alone, and while the GPU trains Prithvi-100M on its batches; the loader
  is not the bottleneck when training fed by it is within 5 % of training on a batch already on the GPU.
* **Maps**: :func:`lulc.predict.predict_scene` end to end (reading the COG, writing the map COG) against
  TerraTorch's ``tiled_inference`` configured to tile as ours (``benchmarks/equal_work.py``), Prithvi-100M,
  bf16 autocast, plus the pixel agreement of the two maps. Target: at least 1.5x TerraTorch.

``--dry``: the same code on the CPU with tiny models, sizes and step counts (``tests/test_gpu_check.py`` runs it,
so this script cannot rot on machines without a GPU); its figures mean nothing.

    bash benchmarks/gpu_check.sh [--json gpu_check.json] [--dry] [--peak-tflops 989]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import rasterio
import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.dataloader import write_rasters  # noqa: E402
from benchmarks.equal_work import interior_agreement, read_map, terratorch_same_tiling, terratorch_task  # noqa: E402
from benchmarks.families import FAMILY_MODELS  # noqa: E402
from benchmarks.predict_speed import write_scene  # noqa: E402
from lulc.chips import make_chips  # noqa: E402
from lulc.dataset import ChipStoreDataset  # noqa: E402
from lulc.legends import preset  # noqa: E402
from lulc.models import build_model, channels_last_convolutions  # noqa: E402
from lulc.predict import autocast, predict_scene  # noqa: E402
from lulc.train import SegmentationTask, cpu_name  # noqa: E402

warnings.filterwarnings("ignore")
NUM_CLASSES = preset("io-lulc-9").num_classes
FRAMES = 3

#: Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, in TFLOPS; the first name contained in
#: ``torch.cuda.get_device_name()`` wins, so the more specific names come first.
PEAK_BF16_TFLOPS: list[tuple[str, float]] = [
    ("H100 PCIe", 756.0),
    ("H100", 989.4),  # SXM5
    ("H200", 989.4),
    ("A100", 312.0),
    ("L40S", 362.05),
    ("L4", 121.0),
]


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU by name (:data:`PEAK_BF16_TFLOPS`); None for one not in the table."""
    return next((peak for name, peak in PEAK_BF16_TFLOPS if name in device_name), None)


@dataclass(frozen=True)
class Sizes:
    """What one run measures: chip / tile size, steps, batch per model, chips in the loader's store, scene side."""

    size: int
    stride: int
    warmup: int
    steps: int
    batch: dict[str, int]
    store_side: int  # the chip store holds store_side**2 chips
    workers: int
    scene: int
    models: dict[str, dict[str, Any]]


FULL = Sizes(
    size=224, stride=192, warmup=3, steps=15, batch={"prithvi": 16, "unet": 64, "vit": 64}, store_side=16,
    workers=min(8, os.cpu_count() or 1), scene=4096,
    models={kind: FAMILY_MODELS[name] for kind, name in
            (("prithvi", "prithvi_eo_v1_100+FCN"), ("unet", "unet_resnet18"), ("vit", "vit_small_p16+FCN"))},
)  # fmt: skip
DRY = Sizes(
    size=64, stride=48, warmup=1, steps=1, batch={"prithvi": 2, "unet": 2, "vit": 2}, store_side=3, workers=1,
    scene=192,
    models={
        "prithvi": {"type": "prithvi", "backbone": "prithvi_eo_tiny", "weights": "none", "decoder_channels": 32},
        "unet": {"type": "unet", "encoder": "resnet18", "encoder_depth": 5, "decoder_channels": [32, 16, 16, 8, 8]},
        "vit": {"type": "vit", "arch": "vit_tiny_patch16_224", "patch_size": 16, "model_kwargs": {},
                "decoder_channels": 32},
    },
)  # fmt: skip


def terratorch_input(kind: str, normalised: torch.Tensor) -> torch.Tensor:
    """Our normalised ``(B, T, 6, H, W)`` batch in TerraTorch's layout: ``(B, 6, T, H, W)`` for Prithvi, the
    ``T x 6`` channels stacked for U-Net and ViT."""
    if kind == "prithvi":
        return normalised.transpose(1, 2).contiguous()
    return normalised.flatten(1, 2).contiguous()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[int], None], warmup: int, steps: int, device: torch.device) -> float:
    """Seconds per step, after ``warmup`` untimed steps."""
    for i in range(warmup):
        step(i)
    synchronize(device)
    start = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    synchronize(device)
    return (time.perf_counter() - start) / steps


def training_step(task: Any, optimizer: torch.optim.Optimizer, device: torch.device) -> Callable[..., None]:
    """One step of a task's own ``training_step`` (loss, metrics, logging) + backward + optimiser, in bf16
    autocast on the device."""

    def step(batch: dict[str, torch.Tensor], index: int) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = task.training_step(batch, index)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def forward_flops(model: torch.nn.Module, size: int) -> int:
    """Forward FLOPs of one ``T x 6 x size x size`` sample (matrix multiplications and convolutions)."""
    raw = torch.randint(100, 4000, (1, FRAMES, 6, size, size), dtype=torch.int16)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(raw)
    return int(counter.get_total_flops())


def train_model(kind: str, sizes: Sizes, device: torch.device, peak: float | None) -> dict[str, Any]:
    """Ours beside TerraTorch's task for one model: samples/s and MFU in bf16 autocast."""
    cfg, batch, size = sizes.models[kind], sizes.batch[kind], sizes.size
    torch.manual_seed(0)
    built = build_model(kind, cfg, FRAMES, size)
    flops = forward_flops(built.model, size)
    channels_last_convolutions(built.model)  # what `train` does under bf16-mixed
    ours = SegmentationTask(built.model, torch.ones(NUM_CLASSES), lr=1e-4, weight_decay=0.05, warmup_steps=0,
                            total_steps=1000).to(device)  # fmt: skip
    theirs = terratorch_task(kind, cfg, size).to(device)
    theirs.configure_metrics()
    generator = torch.Generator().manual_seed(0)
    raw = torch.randint(100, 5000, (batch, FRAMES, 6, size, size), generator=generator, dtype=torch.int16)
    mask = torch.randint(0, NUM_CLASSES, (batch, size, size), generator=generator, dtype=torch.uint8)
    ours_batch = {"image": raw.to(device), "mask": mask.to(device)}
    with torch.no_grad():
        normalised = ours.model.normalize(raw.to(device))
    theirs_batch = {"image": terratorch_input(kind, normalised), "mask": mask.long().to(device)}
    their_optimizer = theirs.configure_optimizers()
    their_optimizer = their_optimizer["optimizer"] if isinstance(their_optimizer, dict) else their_optimizer
    steps = {
        "ours": (training_step(ours, ours.configure_optimizers()["optimizer"], device), ours_batch, ours),
        "terratorch": (training_step(theirs, their_optimizer, device), theirs_batch, theirs),
    }
    result: dict[str, Any] = {"config": cfg, "batch": batch, "forward_gflops_per_sample": round(flops / 1e9, 2),
                              "parameters_M": round(sum(p.numel() for p in ours.parameters()) / 1e6, 2)}  # fmt: skip
    for name, (step, data, task) in steps.items():
        task.train()
        seconds = timed(lambda i, step=step, data=data: step(data, i), sizes.warmup, sizes.steps, device)
        samples = batch / seconds
        result[name] = {"samples_per_s": round(samples, 2),
                        "mfu": round(3 * flops * samples / (peak * 1e12), 4) if peak else None}  # fmt: skip
        print(f"train {kind} {name}: {result[name]}", file=sys.stderr, flush=True)
    result["speedup"] = round(result["ours"]["samples_per_s"] / result["terratorch"]["samples_per_s"], 3)
    ours.cpu(), theirs.cpu()
    return result


def chip_store(work: Path, sizes: Sizes) -> tuple[dict[str, Path], Any]:
    """A real chip store (the chips stage's code) of ``store_side**2`` synthetic chips, and its manifest."""
    import pandas as pd

    paths = write_rasters(work, sizes.store_side, sizes.size, FRAMES)
    store = work / "store"
    make_chips("gpu_check", paths["image"], paths["mask"], paths["label"],
               {"size": sizes.size, "stride": sizes.size, "min_valid_fraction": 0.5}, store)  # fmt: skip
    return {"gpu_check": store}, pd.read_parquet(store / "manifest.parquet")


def dataloader(work: Path, sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """Chip-store chips/s alone, and Prithvi-100M training fed by it against training on a batch on the GPU."""
    stores, manifest = chip_store(work, sizes)
    batch = sizes.batch["prithvi"]
    loader = DataLoader(ChipStoreDataset(stores, manifest), batch_size=batch, shuffle=True, drop_last=True,
                        num_workers=sizes.workers, persistent_workers=sizes.workers > 0,
                        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))  # fmt: skip
    for _ in loader:  # warm-up: worker start, page cache
        pass
    start, chips = time.perf_counter(), 0
    for _ in range(2):
        for item in loader:
            chips += len(item["image"])
    alone = chips / (time.perf_counter() - start)

    torch.manual_seed(0)
    built = build_model("prithvi", sizes.models["prithvi"], FRAMES, sizes.size)
    channels_last_convolutions(built.model)
    task = SegmentationTask(built.model, torch.ones(NUM_CLASSES), lr=1e-4, weight_decay=0.05, warmup_steps=0,
                            total_steps=1000).to(device).train()  # fmt: skip
    step = training_step(task, task.configure_optimizers()["optimizer"], device)
    resident = next(iter(loader))
    resident = {k: v.to(device) for k, v in resident.items() if k in ("image", "mask")}
    on_device = timed(lambda i: step(resident, i), sizes.warmup, sizes.steps, device)

    def fed(index: int) -> None:
        nonlocal batches
        item = next(batches, None)
        if item is None:
            batches = iter(loader)
            item = next(batches)
        step({k: item[k].to(device, non_blocking=True) for k in ("image", "mask")}, index)

    batches = iter(loader)
    from_loader = timed(fed, sizes.warmup, sizes.steps, device)
    task.cpu()
    return {"chips": len(manifest), "workers": sizes.workers, "batch": batch,
            "loader_alone_chips_per_s": round(alone, 1),
            "training_on_device_batch_samples_per_s": round(batch / on_device, 2),
            "training_fed_by_loader_samples_per_s": round(batch / from_loader, 2),
            "loader_is_bottleneck": bool(batch / from_loader < 0.95 * batch / on_device)}  # fmt: skip


def maps(work: Path, sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """Prithvi-100M maps of a synthetic scene: ours end to end against TerraTorch's tiled inference (same
    tiling), both in bf16 autocast, and the agreement of the two maps."""
    scene = work / "scene.tif"
    write_scene(scene, sizes.scene)
    torch.manual_seed(0)
    model = build_model("prithvi", sizes.models["prithvi"], FRAMES, sizes.size).model.eval()
    tile, stride = sizes.size, sizes.stride
    batch = sizes.batch["prithvi"]
    record = predict_scene(copy.deepcopy(model), scene, work / "ours.tif", tile=tile, stride=stride, batch_size=batch,
                           device=device, precision="bf16", progress=False)  # fmt: skip
    with rasterio.open(scene) as src:
        raw = src.read()
        area = record["area_km2"]
    start = time.perf_counter()
    model = model.to(device)
    scene_tensor = torch.from_numpy(raw).view(1, FRAMES, 6, *raw.shape[1:])
    with torch.inference_mode(), autocast(device, "bf16"):
        logits = terratorch_same_tiling(model, scene_tensor, tile, stride, batch, str(device))
    theirs = logits[0].argmax(0).to(torch.uint8).cpu().numpy()
    synchronize(device)
    their_seconds = time.perf_counter() - start
    ours_map = read_map(work / "ours.tif")
    return {"scene_px": sizes.scene, "scene_km2": area, "tile": tile, "stride": stride, "batch": batch,
            "ours_km2_per_s": record["km2_per_s"], "ours_seconds": record["seconds"],
            "terratorch_inference_km2_per_s": round(area / their_seconds, 2),
            "terratorch_inference_seconds": round(their_seconds, 2),
            "speedup": round(record["km2_per_s"] / (area / their_seconds), 3),
            "pixel_agreement_interior": interior_agreement(ours_map, theirs, tile // 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry", action="store_true", help="CPU, tiny models and sizes: checks the script runs")
    parser.add_argument("--json", type=Path, default=Path("gpu_check.json"), help="where the report goes")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak (default: by its name)")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.dry:
        device, sizes = torch.device("cpu"), DRY
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    else:
        if not torch.cuda.is_available():
            sys.exit("gpu_check: PyTorch sees no CUDA GPU (use --dry for the CPU check of the script)")
        device, sizes = torch.device("cuda"), FULL
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    peak = args.peak_tflops or (peak_tflops(name) if device.type == "cuda" else None)
    report: dict[str, Any] = {
        "device": name,
        "dry_run": args.dry,
        "peak_bf16_tflops": peak,
        "peak_source": "--peak-tflops" if args.peak_tflops else ("NVIDIA data sheet (dense bf16)" if peak else None),
        "precision": "bf16 autocast",
        "chip": f"{FRAMES} x 6 x {sizes.size} x {sizes.size}",
        "platform": platform.platform(),
        "versions": {"torch": torch.__version__},
        "training": {},
    }
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        report["versions"]["terratorch"] = version("terratorch")
    for kind in sizes.models:
        report["training"][kind] = train_model(kind, sizes, device, peak)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        report["dataloader"] = dataloader(Path(tmp), sizes, device)
        report["maps"] = maps(Path(tmp), sizes, device)
    prithvi = report["training"]["prithvi"]["ours"]["mfu"]
    report["targets"] = {
        "prithvi_mfu_at_least_0.40": None if prithvi is None else prithvi >= 0.40,
        "dataloader_not_the_bottleneck": not report["dataloader"]["loader_is_bottleneck"],
        "maps_at_least_1.5x_terratorch": report["maps"]["speedup"] >= 1.5,
    }
    report["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=2)
    args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
