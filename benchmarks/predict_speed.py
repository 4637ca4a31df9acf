"""Benchmark: full-scene inference throughput (km^2/s) of `predict_scene` next to TerraTorch's `tiled_inference`.

Same model object, same synthetic scene, same machine, same process, tiles of 224 px every 192 px (crop 224,
stride 192, as TerraTorch's default), both with overlap blending:

* **ours**: :func:`lulc.predict.predict_scene` end to end: reading the int16 COG in strips, the model, blending,
  argmax, writing the tiled GeoTIFF and converting it to a COG with overviews. Timed with ``precision`` auto
  (bf16 autocast where the measured table has it faster, the workflow's default) and fp32.
* **TerraTorch**: ``terratorch.tasks.tiled_inference.tiled_inference`` configured to compute the same map
  (``benchmarks/equal_work.py``: the scene mirrored by our margin, ``padding=False``, ``delta=0``, crop 224,
  stride 192, blended overlaps: its tiles start where ours do) on the whole scene as one in-memory int16 tensor,
  then argmax. Timed alone (``inference``: favours TerraTorch: no reading, no writing) and end to end
  (``end_to_end``: + reading the scene, + writing a COG the way ours does). fp32, as TerraTorch runs by default,
  and for reference under the same bf16 autocast as ours.

**Equal work** (printed beside the speeds): the share of identical pixels between our fp32 map and TerraTorch's,
away from the scene edges, for each timed model (random weights) and, first, for a checkpoint trained in
seconds on the synthetic scene's classes (``prithvi_eo_tiny`` + FCN(64); ``--checkpoint`` takes a trained one,
e.g. the demo's), against TerraTorch configured as ours and as it runs by default (``delta`` 8, reflect
padding). The target: at least 99 % in fp32 with the same tiling.

Models (random initialisation, nothing is downloaded): ``prithvi_eo_tiny`` + FCN(64) and Prithvi-EO-1.0-100M
(``prithvi_eo_v1_100``) + FCN(256), 3 frames, built through :func:`lulc.models.build_model`.

    python benchmarks/predict_speed.py [--size 2048] [--prithvi-size 1024] [--threads N] [--batch-size 8]
                                       [--skip-tiny] [--skip-prithvi] [--skip-terratorch-bf16] [--ours-first]
                                       [--check-size 896] [--train-steps 30] [--checkpoint best.ckpt]
                                       [--skip-check] [--json out.json]

Prints a JSON report: km^2/s per path, the speed-up of ours over TerraTorch, pixel agreement between the maps,
the load average before / after each run (the machine may be shared), the hardware. Exits 1 when the trained
checkpoint's maps agree on less than 99 % of interior pixels (``--skip-check``: not run).
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
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import rasterio
import rasterio.shutil
import torch
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.equal_work import (  # noqa: E402
    interior_agreement,
    read_map,
    terratorch_same_tiling,
    train_small_model,
)
from benchmarks.families import FAMILY_MODELS, build, forward_gflops  # noqa: E402
from lulc import hls  # noqa: E402
from lulc.legends import preset  # noqa: E402
from lulc.models import build_model, load_trained_model  # noqa: E402
from lulc.predict import autocast, inference_precision, predict_scene, prepare_model, resolve_device  # noqa: E402
from lulc.train import cpu_name  # noqa: E402

#: The legend of the synthetic class rasters (the IO LULC 9-class preset).
LEGEND = preset("io-lulc-9")

warnings.filterwarnings("ignore")
FRAMES, TILE, STRIDE = 3, 224, 192
RESOLUTION = 30.0
#: Pixels from every scene edge left out of the agreement (the two tools mirror the scene edges differently).
EDGE = TILE // 2
#: The equal-work target: at least this share of identical interior pixels in fp32 with the same tiling.
AGREEMENT_TARGET = 0.99
#: Typical HLS reflectance (x 10000) of a few classes (the brief's table), for plausible synthetic scenes.
CLASS_REFLECTANCE = np.array(
    [
        [500, 600, 400, 200, 100, 50],
        [300, 500, 300, 3000, 1500, 700],
        [400, 700, 500, 3500, 2200, 1200],
        [1100, 1200, 1300, 2000, 2300, 2100],
        [500, 800, 900, 2500, 2600, 1700],
    ],
    dtype=np.float32,
)


def write_scene(path: Path, size: int, seed: int = 0) -> np.ndarray:
    """A ``size x size`` px, 18-band int16 COG like the download stage's image.tif: blocky land-cover patches
    with per-frame changes and noise, nodata -9999 in a corner (so the nodata path runs too). Returns the
    class of every pixel (the patches' classes, what a small model can be trained on)."""
    rng = np.random.default_rng(seed)
    stream = path.with_suffix(".stream.tif")
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": FRAMES * 6,
        "dtype": "int16",
        "crs": "EPSG:32615",
        "transform": from_origin(500_000.0, 4_650_000.0, RESOLUTION, RESOLUTION),
        "nodata": hls.REFLECTANCE_NODATA,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "interleave": "band",
    }
    patches = rng.integers(0, len(CLASS_REFLECTANCE), (size // 32 + 1, size // 32 + 1))
    with rasterio.open(stream, "w", **profile) as dst:
        for row in range(0, size, 256):
            rows = min(256, size - row)
            cls = np.repeat(np.repeat(patches, 32, 0), 32, 1)[row : row + rows, :size]
            for t in range(FRAMES):
                base = CLASS_REFLECTANCE[cls] * (1 + 0.1 * t)  # (rows, size, 6)
                noisy = base + rng.normal(0, 80, base.shape)
                block = np.clip(noisy, 1, 16000).astype(np.int16).transpose(2, 0, 1)
                if row == 0:
                    block[:, :40, :40] = hls.REFLECTANCE_NODATA
                dst.write(
                    block, indexes=list(range(t * 6 + 1, t * 6 + 7)), window=rasterio.windows.Window(0, row, size, rows)
                )
        # the download stage's frame record (dates, sensor, items): what models with time / location inputs read
        dst.update_tags(**{f"FRAME_{t}": f"2023-0{4 + 2 * t}-15 S30 synthetic_{t}" for t in range(FRAMES)})
    rasterio.shutil.copy(stream, path, driver="COG", compress="DEFLATE", predictor="2", blocksize=256)
    stream.unlink()
    return np.repeat(np.repeat(patches, 32, 0), 32, 1)[:size, :size].astype(np.uint8)


def load_average() -> list[float]:
    with contextlib.suppress(OSError):
        return [round(v, 2) for v in os.getloadavg()]
    return []


def run_ours(model: torch.nn.Module, scene: Path, out: Path, batch_size: int, device: str, precision: str) -> dict:
    before = load_average()
    record = predict_scene(
        model,
        scene,
        out,
        tile=TILE,
        stride=STRIDE,
        batch_size=batch_size,
        device=device,
        precision=precision,
        progress=False,
    )
    valid = cog_validate(out)[0]
    return {
        "km2_per_s": record["km2_per_s"],
        "seconds": record["seconds"],
        "tiles_seconds": record["tiles_seconds"],
        "tiles": record["tiles"],
        "precision": record["precision"],
        "valid_cog": bool(valid),
        "load_before": before,
        "load_after": load_average(),
    }


def run_terratorch(
    model: torch.nn.Module, scene: Path, out: Path, batch_size: int, device: torch.device, precision: str,
    same_tiling: bool = True,
) -> tuple[dict, np.ndarray]:
    """TerraTorch's tiled_inference on the whole scene (one in-memory tensor), then argmax and a COG.
    ``same_tiling``: configured to tile as ours (:func:`benchmarks.equal_work.terratorch_same_tiling`); else its
    defaults (delta 8, reflect padding)."""
    from terratorch.tasks.tiled_inference import tiled_inference

    before = load_average()
    model = model.to(device).eval()
    start = time.perf_counter()
    with rasterio.open(scene) as src:
        raw = src.read()
        profile = {
            "driver": "GTiff",
            "width": src.width,
            "height": src.height,
            "count": 1,
            "dtype": "uint8",
            "crs": src.crs,
            "transform": src.transform,
            "nodata": 255,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
        }
        area = src.width * src.height * RESOLUTION**2 / 1e6
    scene_tensor = torch.from_numpy(raw).view(1, FRAMES, 6, raw.shape[1], raw.shape[2])
    read_done = time.perf_counter()
    with torch.inference_mode(), autocast(device, precision):
        if same_tiling:
            logits = terratorch_same_tiling(model, scene_tensor, TILE, STRIDE, batch_size, str(device))
        else:
            logits = tiled_inference(
                model, scene_tensor, crop=TILE, stride=STRIDE, batch_size=batch_size, device=str(device)
            )
    prediction = logits[0].argmax(0).to(torch.uint8).cpu().numpy()
    inference_done = time.perf_counter()
    valid = (raw.reshape(FRAMES, 6, *raw.shape[1:]) != hls.REFLECTANCE_NODATA).all(axis=1).any(axis=0)
    prediction[~valid] = 255
    stream = out.with_suffix(".stream.tif")
    with rasterio.open(stream, "w", **profile) as dst:
        dst.write(prediction, 1)
        dst.write_colormap(1, LEGEND.colormap())
    rasterio.shutil.copy(stream, out, driver="COG", compress="DEFLATE", blocksize=256, overview_resampling="mode")
    stream.unlink()
    done = time.perf_counter()
    inference = inference_done - read_done
    return {
        "inference_km2_per_s": round(area / inference, 3),
        "inference_seconds": round(inference, 3),
        "end_to_end_km2_per_s": round(area / (done - start), 3),
        "end_to_end_seconds": round(done - start, 3),
        "read_seconds": round(read_done - start, 3),
        "write_seconds": round(done - inference_done, 3),
        "precision": precision,
        "tiling": "same as ours" if same_tiling else "TerraTorch's default (delta 8, reflect padding)",
        "load_before": before,
        "load_after": load_average(),
    }, prediction


def agreement(a: np.ndarray | Path, b: np.ndarray | Path) -> float:
    """Share of pixels with the same class in two maps, :data:`EDGE` px from the scene edges left out."""
    first, second = (read_map(x) if isinstance(x, Path) else x for x in (a, b))
    return interior_agreement(first, second, EDGE)


def equal_work_check(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Our fp32 map against TerraTorch's (configured as ours, and as it runs by default), away from the scene
    edges, on random weights and on a checkpoint trained in seconds on the synthetic scene's classes (or the
    given ``--checkpoint``)."""
    scene = work / f"check_{args.check_size}.tif"
    classes = write_scene(scene, args.check_size, seed=1)
    with rasterio.open(scene) as src:
        image = src.read().reshape(FRAMES, 6, args.check_size, args.check_size)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    if args.checkpoint:
        model, _ = load_trained_model(args.checkpoint)
        stages: list[tuple[str, dict[str, Any] | None]] = [("checkpoint", None)]
    else:
        cfg = {"backbone": "prithvi_eo_tiny", "weights": "none", "decoder_channels": 64}
        model = build_model("prithvi", cfg, FRAMES, TILE).model
        stages = [("random_weights", None), ("trained", {"steps": args.train_steps})]
    report: dict[str, Any] = {"model": "checkpoint " + str(args.checkpoint) if args.checkpoint else
                              "prithvi_eo_tiny+FCN64", "scene_px": args.check_size, "edge_px_left_out": EDGE,
                              "target": AGREEMENT_TARGET}  # fmt: skip
    for stage, training in stages:
        if training is not None:
            report["training"] = train_small_model(model, image, classes, TILE, training["steps"])
        ours = work / f"check_{stage}_ours.tif"
        # predict_scene prepares its model in place: it gets a copy, TerraTorch the model as built
        run_ours(copy.deepcopy(model), scene, ours, args.batch_size, args.device, "fp32")
        same = run_terratorch(model, scene, work / f"check_{stage}_same.tif", args.batch_size, device, "fp32")[1]
        default = run_terratorch(model, scene, work / f"check_{stage}_default.tif", args.batch_size, device, "fp32",
                                 same_tiling=False)[1]  # fmt: skip
        ours_map = read_map(ours)
        report[stage] = {"ours_fp32_vs_terratorch_same_tiling_fp32": interior_agreement(ours_map, same, EDGE),
                         "ours_fp32_vs_terratorch_default_tiling_fp32": interior_agreement(ours_map, default, EDGE),
                         "classes_in_our_map": len(np.unique(ours_map[ours_map != 255]))}  # fmt: skip
    checked = report.get("trained", report.get("checkpoint", {}))
    report["met"] = bool(checked["ours_fp32_vs_terratorch_same_tiling_fp32"] >= AGREEMENT_TARGET)
    print(json.dumps({"equal_work": report}, indent=2), file=sys.stderr, flush=True)
    return report



def benchmark_model(name: str, cfg: dict[str, Any], size: int, args: argparse.Namespace, work: Path) -> dict:
    scene = work / f"scene_{size}.tif"
    if not scene.exists():
        write_scene(scene, size)
    torch.manual_seed(0)
    model = build_model("prithvi", cfg, FRAMES, TILE).model.eval()  # TerraTorch's: used as built
    # ours: the same weights in a second instance, because predict_scene prepares its model in place
    ours_model = build_model("prithvi", cfg, FRAMES, TILE, load_weights=False).model
    ours_model.load_state_dict(model.state_dict())
    device = resolve_device(args.device)
    auto = inference_precision("auto", device)
    # warm-up: one batch through both models (lazy initialisation is not what we measure)
    warm = torch.randint(100, 4000, (args.batch_size, FRAMES, 6, TILE, TILE), dtype=torch.int16)
    for net in (model, prepare_model(ours_model, device)):
        with torch.inference_mode(), autocast(device, auto):
            net.to(device)(warm.to(device))
    model.cpu()
    report: dict[str, Any] = {
        "model": name,
        "config": cfg,
        "parameters_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "scene_px": [size, size],
        "scene_km2": round(size * size * RESOLUTION**2 / 1e6, 1),
        "tile": TILE,
        "stride": STRIDE,
        "batch_size": args.batch_size,
    }
    maps: dict[str, Any] = {}

    def ours(precision: str) -> None:
        path = work / f"{name}_ours_{precision}.tif"
        report[f"ours_{precision}"] = run_ours(ours_model, scene, path, args.batch_size, args.device, precision)
        maps[f"ours_{precision}"] = path

    def terratorch(precision: str) -> None:
        path = work / f"{name}_tt_{precision}.tif"
        report[f"terratorch_{precision}"], maps[f"terratorch_{precision}"] = run_terratorch(
            model, scene, path, args.batch_size, device, precision
        )
        model.cpu()

    # ABBA order (TerraTorch, ours, ours, TerraTorch; or the reverse), so a drifting machine load is shared
    steps = [lambda: terratorch("fp32"), lambda: ours(auto)]
    if auto != "fp32":
        steps += [lambda: ours("fp32")]
        if not args.skip_terratorch_bf16:
            steps += [lambda: terratorch(auto)]
    if args.ours_first:
        steps = [steps[1], steps[0], *steps[2:][::-1]]
    for step in steps:
        step()
    tt = report["terratorch_fp32"]
    report["speedup_vs_terratorch_fp32_inference_only"] = {
        k: round(v["km2_per_s"] / tt["inference_km2_per_s"], 2) for k, v in report.items() if k.startswith("ours_")
    }
    report["speedup_vs_terratorch_fp32_end_to_end"] = {
        k: round(v["km2_per_s"] / tt["end_to_end_km2_per_s"], 2) for k, v in report.items() if k.startswith("ours_")
    }
    if f"terratorch_{auto}" in report:
        same = report[f"terratorch_{auto}"]
        report[f"speedup_at_same_precision_{auto}_inference_only"] = round(
            report[f"ours_{auto}"]["km2_per_s"] / same["inference_km2_per_s"], 2
        )
    # equal work, away from the scene edges (random weights: logits nearly tied, the strictest case)
    report["pixel_agreement"] = {
        "ours_fp32_vs_terratorch_same_tiling_fp32": agreement(maps.get("ours_fp32", maps[f"ours_{auto}"]),
                                                              maps["terratorch_fp32"]),
    }  # fmt: skip
    if "ours_fp32" in maps and auto != "fp32":
        report["pixel_agreement"][f"ours_{auto}_vs_ours_fp32"] = agreement(maps[f"ours_{auto}"], maps["ours_fp32"])
    print(json.dumps(report, indent=2), file=sys.stderr, flush=True)
    return report


def families(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """One row per model family at 224 px tiles (``benchmarks/families.py``): km2/s of our streaming predictor
    in fp32 on a ``--family-size`` scene (random weights), parameters and forward GFLOPs per tile."""
    scene = work / f"scene_{args.family_size}.tif"
    if not scene.exists():
        write_scene(scene, args.family_size)
    rows = []
    for name in FAMILY_MODELS:
        built = build(name)
        gflops = forward_gflops(built.model)
        record = run_ours(built.model, scene, work / f"{name}.tif", args.batch_size, args.device, "fp32")
        parameters = round(built.info["parameters"] / 1e6, 1)
        rows.append({"model": name, "family": built.info["type"], "parameters_M": parameters,
                     "forward_gflops_per_tile": gflops,
                     "scene_km2": round(args.family_size**2 * RESOLUTION**2 / 1e6, 1),
                     "km2_per_s": record["km2_per_s"], "seconds": record["seconds"], "tiles": record["tiles"],
                     "precision": record["precision"]})  # fmt: skip
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="scene side (px) for the tiny model")
    parser.add_argument("--prithvi-size", type=int, default=1024, help="scene side (px) for Prithvi-100M")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-tiny", action="store_true")
    parser.add_argument("--skip-prithvi", action="store_true")
    parser.add_argument("--skip-terratorch-bf16", action="store_true")
    parser.add_argument("--ours-first", action="store_true", help="reverse the order of the timed runs")
    parser.add_argument("--families", action="store_true", help="one row per model family (224 px tiles)")
    parser.add_argument("--family-size", type=int, default=448, help="scene side (px) for the family rows")
    parser.add_argument("--check-size", type=int, default=896, help="scene side (px) of the equal-work check")
    parser.add_argument("--train-steps", type=int, default=30, help="training steps of the check's small model")
    parser.add_argument("--checkpoint", type=Path, help="a trained checkpoint for the check (e.g. the demo's)")
    parser.add_argument("--skip-check", action="store_true", help="no equal-work check")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    report: dict[str, Any] = {
        "hardware": {
            "device": torch.cuda.get_device_name(0) if device.type == "cuda" else cpu_name(),
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "native_bf16": inference_precision("auto", device),
            "platform": platform.platform(),
        },
        "versions": {"torch": torch.__version__, "rasterio": rasterio.__version__},
        "runs": [],
    }
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        report["versions"]["terratorch"] = version("terratorch")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="predict-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_check:
            report["equal_work"] = equal_work_check(args, work)
        if not args.skip_tiny:
            report["runs"].append(
                benchmark_model(
                    "prithvi_eo_tiny+FCN64",
                    {"backbone": "prithvi_eo_tiny", "weights": "none", "decoder_channels": 64},
                    args.size,
                    args,
                    work,
                )
            )
        if not args.skip_prithvi:
            report["runs"].append(
                benchmark_model(
                    "prithvi_eo_v1_100+FCN256",
                    {"backbone": "prithvi_eo_v1_100", "weights": "none", "decoder_channels": 256},
                    args.prithvi_size,
                    args,
                    work,
                )
            )
        if args.families:
            report["families"] = families(args, work)
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    if "equal_work" in report and not report["equal_work"]["met"]:
        sys.exit(f"equal work not shown: the maps agree on less than {AGREEMENT_TARGET:.0%} of interior pixels")


if __name__ == "__main__":
    main()
