"""Benchmark: training samples/s of our Lightning task per model, and against TerraTorch's own task.

Two parts, both on synthetic chips (random pixels; speed does not depend on content), both timed as
forward + loss + backward + optimiser step inside ``lightning.Trainer.fit`` after warm-up steps:

1. **Demo size**: every model the demo config trains (``config/config.yaml``: its chip size (32), frames (3),
   model entries and batch size, random weights), in fp32 and in what ``train.precision: auto`` picks for the
   model's family on this machine (bf16-mixed with channels-last convolutions where the measured table has
   bf16 faster), i.e. what one ``train`` job of the offline demo does per step.
2. **Prithvi-EO-1.0-100M + FCN** at 3 x 224 x 224, batch 2, random initialisation (nothing is downloaded):
   TerraTorch's ``SemanticSegmentationTask`` (``EncoderDecoderFactory``, the same backbone, necks and
   ``FCNDecoder(channels=256)``, AdamW, ``ignore_index=255``: it crashes with the default ``None``) as it
   trains by default (fp32: Lightning's default precision) next to our ``SegmentationTask`` as the workflow
   trains it by default on this machine (``train.precision: auto``; where bf16 is measured faster: bf16
   autocast, channels-last convolutions, fused AdamW), on the same model, data and machine, in the same process. Also
   measured, for an honest reading: ours in fp32, and TerraTorch's task under the same bf16 autocast (which
   its users can ask for). TerraTorch gets pre-normalised float input (our side normalises int16 chips on
   the device inside the step), so the comparison favours TerraTorch.

   **Equal work**, printed beside the speeds: both tasks start from the same weights (TerraTorch's copied into
   ours) and their losses on the same first batch (TerraTorch fed exactly the tensor our model normalises) must
   agree within the rounding of fp32 summation (``benchmarks/equal_work.py``: ``loss_tolerance``); the script
   exits 1 when they do not.

3. **Every model family** (``--families``): one configuration per family at a released size, 224 px, T = 3
   (``benchmarks/families.py``), fp32, batch 2: samples/s, parameters and forward GFLOPs per sample.

    python benchmarks/train_speed.py [--threads 2] [--steps 3] [--warmup 1] [--skip-demo] [--skip-prithvi]
                                     [--families]

Prints a JSON report (samples/s, seconds per step, the hardware). Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lightning.pytorch as pl
import torch
import yaml
from torch.utils.data import DataLoader, Dataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.equal_work import same_loss  # noqa: E402
from benchmarks.equal_work import terratorch_task as terratorch_task_of  # noqa: E402
from benchmarks.families import FAMILY_MODELS, build, forward_gflops, sample_coords  # noqa: E402
from benchmarks.families import FRAMES as FAMILY_FRAMES  # noqa: E402
from benchmarks.families import SIZE as FAMILY_SIZE  # noqa: E402
from lulc.legends import IGNORE_INDEX, preset  # noqa: E402

NUM_CLASSES = preset("io-lulc-9").num_classes
from lulc.families.prithvi import STATISTICS  # noqa: E402
from lulc.models import (  # noqa: E402
    build_model,
    channels_last_convolutions,
)
from lulc.schema import model_entry, section  # noqa: E402
from lulc.train import SegmentationTask, training_precision  # noqa: E402

warnings.filterwarnings("ignore")


class RandomChips(Dataset):
    """``n`` fixed random chips: int16 reflectance ``(T, 6, S, S)`` and uint8 labels (a few ignored pixels)."""

    def __init__(self, n: int, frames: int, size: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randint(100, 5000, (n, frames, 6, size, size), generator=generator, dtype=torch.int16)
        self.masks = torch.randint(0, NUM_CLASSES, (n, size, size), generator=generator, dtype=torch.uint8)
        self.masks[:, :4, :4] = IGNORE_INDEX

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "mask": self.masks[i]}


class CoordChips(RandomChips):
    """The same chips with time / location inputs (what a ``_tl`` model trains on)."""

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        coords = {k: v[0] for k, v in sample_coords(1).items()}
        return {"image": self.images[i], "mask": self.masks[i], **coords}


def families(warmup: int, steps: int, batch: int = 2) -> list[dict[str, Any]]:
    """One row per model family at 224 px, T = 3 (``benchmarks/families.py``): training samples/s in fp32 (our
    task, random weights), parameters and forward GFLOPs per sample."""
    rows = []
    for name in FAMILY_MODELS:
        built = build(name)
        task = SegmentationTask(built.model, torch.ones(NUM_CLASSES), lr=1e-4, weight_decay=0.05, warmup_steps=0,
                                total_steps=1000)  # fmt: skip
        chips = (CoordChips if built.model.time_location else RandomChips)(batch * (warmup + steps), FAMILY_FRAMES,
                                                                            FAMILY_SIZE)  # fmt: skip
        timing = timed_fit(task, chips, batch, warmup, steps)
        parameters = round(built.info["parameters"] / 1e6, 1)
        rows.append({"model": name, "family": built.info["type"], "parameters_M": parameters,
                     "forward_gflops_per_sample": forward_gflops(built.model), "batch": batch,
                     "precision": "fp32", **timing})  # fmt: skip
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


class NormalisedChips(Dataset):
    """The same chips, normalised with the Prithvi v1 statistics, as TerraTorch expects: ``(6, T, S, S)`` float."""

    def __init__(self, chips: RandomChips) -> None:
        stats = STATISTICS["prithvi_v1"]
        mean = torch.tensor(stats["mean"]).view(1, 1, 6, 1, 1)
        std = torch.tensor(stats["std"]).view(1, 1, 6, 1, 1)
        self.images = ((chips.images.float() - mean) / std).transpose(1, 2).contiguous()
        self.masks = chips.masks.long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "mask": self.masks[i]}


class StepClock(pl.Callback):
    """Wall-clock time at the end of every training step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.times.append(time.perf_counter())

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.times = [time.perf_counter()]


def timed_fit(module: pl.LightningModule, dataset: Dataset, batch: int, warmup: int, steps: int,
              precision: str = "32-true") -> dict[str, float]:
    """Fit ``warmup + steps`` steps; samples/s and s/step over the last ``steps``."""
    clock = StepClock()
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=warmup + steps, precision=precision, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, callbacks=[clock],
    )
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(0))
    trainer.fit(module, loader)
    seconds = clock.times[-1] - clock.times[warmup]
    return {"samples_per_s": round(batch * steps / seconds, 3), "s_per_step": round(seconds / steps, 3)}


def our_task(name: str, cfg: dict[str, Any], frames: int, size: int, channels_last: bool = False) -> SegmentationTask:
    built = build_model(name, cfg, frames, size)
    if channels_last:  # what `train` does under bf16-mixed (lulc.train.train)
        channels_last_convolutions(built.model)
    return SegmentationTask(built.model, torch.ones(NUM_CLASSES), lr=1e-4, weight_decay=0.05, warmup_steps=0,
                            total_steps=1000)


def demo_size(warmup: int, steps: int) -> dict[str, Any]:
    """Each model of the demo config (config/config.yaml: its chip size, frames, model entries, random
    weights) in fp32 and in what `train.precision: auto` picks for its family on this machine."""
    demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    size, frames = int(demo["chips"]["size"]), int(demo["download"]["frames"])
    results: dict[str, Any] = {"chip_size": size, "frames": frames}
    data = RandomChips(32, frames=frames, size=size)
    for name in section("train", demo["train"])["models"]:
        cfg = model_entry(name, demo["models"][name])
        if "weights" in cfg:  # speed does not depend on the weights: nothing to pretrain or load
            cfg["weights"] = "none"
        batch = int(cfg["batch_size"])
        results[name] = {}
        auto = training_precision("auto", "cpu", cfg["type"])  # what `train.precision: auto` picks here
        for precision in dict.fromkeys(("32-true", auto)):
            task = our_task(name, cfg, frames, size, channels_last=precision == "bf16-mixed")
            results[name][precision] = timed_fit(task, data, batch=batch, warmup=warmup, steps=steps,
                                                 precision=precision)
            print(f"demo {name} {precision}: {results[name][precision]}", file=sys.stderr, flush=True)
    return results


def _step(task: pl.LightningModule, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor], index: int,
          autocast: bool) -> float:
    """One training step of ``task`` (its own training_step: loss, metrics, logging) + backward + optimiser."""
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = task.training_step(batch, index)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def first_batch_losses(ours: SegmentationTask, theirs: pl.LightningModule, raw: torch.Tensor,
                       mask: torch.Tensor) -> dict[str, Any]:
    """Equal work: TerraTorch's weights copied into ours, then both tasks' fp32 losses on the same first batch
    (TerraTorch fed the very tensor our model normalises, in its ``(B, 6, T, H, W)`` layout), no augmentation."""
    ours.model.net.model.load_state_dict(theirs.model.state_dict(), strict=True)
    with torch.no_grad():
        torch.manual_seed(0)
        our_loss = float(ours.training_loss(raw, mask.long())[0])
        normalised = ours.model.normalize(raw).transpose(1, 2).contiguous()
        torch.manual_seed(0)
        their_loss = float(theirs.training_step({"image": normalised, "mask": mask.long()}, 0))
    labelled = int((mask != IGNORE_INDEX).sum())
    return same_loss(our_loss, their_loss, labelled, abs(our_loss))


def prithvi_100m(warmup: int, steps: int) -> dict[str, Any]:
    """Prithvi-EO-1.0-100M + FCN(256) at 3 x 224 x 224, batch 2: TerraTorch's task vs ours, interleaved.

    The machine is shared, so the variants take turns step by step (A, B, C, A, B, C, ...): background load
    hits all of them alike. Samples/s come from the fastest step of each (load only ever adds time) and,
    for comparison, from the median step.
    """
    data = RandomChips(2, frames=3, size=224)
    ours_batch = {"image": data.images, "mask": data.masks}
    normalised = NormalisedChips(data)
    terratorch_batch = {"image": normalised.images, "mask": normalised.masks}
    model_cfg = {"backbone": "prithvi_eo_v1_100", "weights": "none", "decoder_channels": 256}

    torch.manual_seed(0)
    terratorch_task = terratorch_task_of("prithvi", model_cfg, 224)
    terratorch_task.configure_metrics()
    params = sum(p.numel() for p in terratorch_task.model.parameters())
    variants: dict[str, tuple[pl.LightningModule, torch.optim.Optimizer, dict[str, torch.Tensor], bool]] = {}
    optimizer = terratorch_task.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    variants["terratorch_fp32"] = (terratorch_task, optimizer, terratorch_batch, False)
    workflow_bf16 = training_precision("auto", "cpu", "prithvi") == "bf16-mixed"
    if workflow_bf16:  # for reference: TerraTorch's task under the same bf16 autocast as ours
        variants["terratorch_bf16"] = (terratorch_task, optimizer, terratorch_batch, True)
    ours = [("ours_fp32", False, False)]
    if workflow_bf16:
        ours.append(("ours_workflow_default", True, True))  # bf16 autocast + channels-last, as `train` runs
    equal_work: dict[str, Any] = {}
    for name, channels_last, autocast in ours:
        torch.manual_seed(0)
        task = our_task("prithvi", model_cfg, 3, 224, channels_last=channels_last)
        assert sum(p.numel() for p in task.model.parameters()) == params, "not the same model"
        if name == "ours_fp32":  # the same weights as TerraTorch's task from here on
            equal_work = first_batch_losses(task, terratorch_task, data.images, data.masks)
            print(f"equal work (first-batch loss): {equal_work}", file=sys.stderr, flush=True)
        variants[name] = (task, task.configure_optimizers()["optimizer"], ours_batch, autocast)
    for task, *_ in variants.values():
        task.train()

    times: dict[str, list[float]] = {name: [] for name in variants}
    for index in range(warmup + steps):
        for name, (task, optimizer, batch, autocast) in variants.items():
            seconds = _step(task, optimizer, batch, index, autocast)
            if index >= warmup:
                times[name].append(seconds)
            print(f"step {index} {name}: {seconds:.2f} s", file=sys.stderr, flush=True)

    batch_size = len(data)
    results: dict[str, Any] = {"parameters": params, "batch": batch_size, "timed_steps": steps,
                               "equal_work_first_batch_loss": equal_work}
    for name, values in times.items():
        fastest, median = min(values), statistics.median(values)
        results[name] = {"samples_per_s": round(batch_size / fastest, 3),
                         "samples_per_s_median": round(batch_size / median, 3),
                         "s_per_step": [round(v, 3) for v in values]}
    # Background load only ever adds time, so the fastest step is the least disturbed estimate; the median
    # is reported too. The headline: what the workflow trains with by default against TerraTorch's default.
    default = "ours_workflow_default" if workflow_bf16 else "ours_fp32"
    results["ours_workflow_default_is"] = "bf16 autocast + channels-last" if workflow_bf16 else "fp32"
    for key in ("samples_per_s", "samples_per_s_median"):
        suffix = "" if key == "samples_per_s" else "_median"
        base = results["terratorch_fp32"][key]
        results[f"speedup_default_vs_terratorch_default{suffix}"] = round(results[default][key] / base, 3)
        results[f"speedup_fp32_vs_terratorch_fp32{suffix}"] = round(results["ours_fp32"][key] / base, 3)
        if "terratorch_bf16" in results:
            results[f"speedup_default_vs_terratorch_bf16{suffix}"] = round(
                results[default][key] / results["terratorch_bf16"][key], 3
            )
    return results


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what platform knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (allocations, autotuning)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant (Prithvi-100M)")
    parser.add_argument("--demo-steps", type=int, default=8, help="timed steps (demo size)")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--skip-prithvi", action="store_true")
    parser.add_argument("--families", action="store_true", help="one row per model family at 224 px")
    parser.add_argument("--family-steps", type=int, default=2, help="timed steps per family")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pl.seed_everything(0, verbose=False)
    report: dict[str, Any] = {
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
    }
    if not args.skip_demo:
        report["demo_config"] = demo_size(max(1, args.warmup), args.demo_steps)
    if not args.skip_prithvi:
        report["prithvi_eo_v1_100_fcn256_224px_T3_batch2"] = prithvi_100m(args.warmup, args.steps)
    if args.families:
        report["families_224px_T3"] = families(args.warmup, args.family_steps)
    print(json.dumps(report, indent=2))
    check = report.get("prithvi_eo_v1_100_fcn256_224px_T3_batch2", {}).get("equal_work_first_batch_loss")
    if check is not None and not check["equal"]:
        sys.exit("equal work not shown: the first-batch losses differ by more than fp32 rounding allows")


if __name__ == "__main__":
    main()
