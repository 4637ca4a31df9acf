"""Benchmark: fp32 against bf16 autocast per model family, for training and for maps, on this machine: the
measurements ``precision: auto`` chooses from (``lulc.models.precision.MEASURED_PRECISION``).

For each model the demo config trains (``config/config.yaml``: its chip size, frames, entries and batch size;
random weights), in interleaved rounds (fp32, bf16, fp32, bf16, ...; the best of each, since background load only
ever adds time):

* **train**: samples/s of our Lightning task (``train_speed.timed_fit``), ``32-true`` against ``bf16-mixed`` with
  channels-last convolutions (what ``train`` runs under bf16);
* **predict**: km2/s of :func:`lulc.predict.predict_scene` on a synthetic scene, tiles of the chip size.

Prints a JSON report with this machine's hardware class and, for each case, the ``MEASURED_PRECISION`` entry to
add to the table (only a faster bf16 makes ``auto`` choose it).

    python benchmarks/precision.py [--threads 2] [--rounds 2] [--steps 8] [--scene 448]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.predict_speed import run_ours, write_scene  # noqa: E402
from benchmarks.train_speed import RandomChips, our_task, timed_fit  # noqa: E402
from lulc.models import build_model, hardware_class  # noqa: E402
from lulc.schema import model_entry, section  # noqa: E402
from lulc.train import cpu_name  # noqa: E402

warnings.filterwarnings("ignore")


def demo_models() -> tuple[int, int, dict[str, dict[str, Any]]]:
    """The demo's chip size, frames and the resolved entries of the models it trains (weights: none)."""
    demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    size, frames = int(demo["chips"]["size"]), int(demo["download"]["frames"])
    entries = {}
    for name in section("train", demo["train"])["models"]:
        cfg = model_entry(name, demo["models"][name])
        if "weights" in cfg:  # speed does not depend on the weights
            cfg["weights"] = "none"
        entries[name] = cfg
    return size, frames, entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per case (best of them)")
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per round")
    parser.add_argument("--scene", type=int, default=448, help="scene side (px) for the maps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size, frames, entries = demo_models()
    hardware = hardware_class("cpu")
    rows: list[dict[str, Any]] = []
    data = RandomChips(32, frames=frames, size=size)
    with tempfile.TemporaryDirectory(prefix="precision-bench-") as tmp:
        scene = Path(tmp) / "scene.tif"
        write_scene(scene, args.scene)
        for name, cfg in entries.items():
            family, batch = cfg["type"], int(cfg["batch_size"])
            train: dict[str, list[float]] = {"32-true": [], "bf16-mixed": []}
            maps: dict[str, list[float]] = {"fp32": [], "bf16": []}
            for _ in range(args.rounds):
                for precision in train:
                    task = our_task(name, cfg, frames, size, channels_last=precision == "bf16-mixed")
                    timing = timed_fit(task, data, batch=batch, warmup=1, steps=args.steps, precision=precision)
                    train[precision].append(timing["samples_per_s"])
                for precision in maps:
                    model = build_model(name, cfg, frames, size).model
                    record = run_ours(model, scene, Path(tmp) / f"{name}_{precision}.tif", 8, "cpu", precision)
                    maps[precision].append(record["km2_per_s"])
            for stage, figures, unit in (("train", train, "samples/s"), ("predict", maps, "km2/s")):
                fp32, bf16 = (max(values) for values in figures.values())
                source = (f"benchmarks/precision.py, demo size ({size} px, {frames} frames, batch {batch}), "
                          f"{args.threads} threads, {cpu_name()}")  # fmt: skip
                rows.append({"stage": stage, "family": family, "model": name, "fp32": fp32, "bf16": bf16,
                             "unit": unit, "bf16_speedup": round(bf16 / fp32, 3),
                             "entry": f'({hardware!r}, "{stage}", "{family}"): Measurement({fp32}, {bf16}, '
                                      f'"{unit}", "{source}")'})  # fmt: skip
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"cpu": cpu_name(), "hardware_class": hardware, "threads": args.threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
