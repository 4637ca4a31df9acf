"""Benchmark: peak memory and time of download + chips on a full-size synthetic HLS tile.

Writes a 3660 x 3660 pixel tile (six acquisitions, S30 and L30, seven COG assets each, like real HLS
v2.0 granules) and a 10 m label tile on an offset grid, then runs the real download and chips stages on
it in a child process each and reports their wall time and peak resident memory (the bar: 4 GB).

    python benchmarks/full_tile.py [--workdir /tmp/full_tile] [--size 3660] [--frames 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lulc import hls  # noqa: E402

EPSG = 32615
ORIGIN = (399_960.0, 4_700_040.0)  # an MGRS-like tile origin on the 30 m grid
BLOCK = 512


def _write_cog(
    path: Path, height: int, width: int, dtype: str, nodata: float, fill, resolution: float, origin: tuple[float, float]
) -> None:
    """Write a single-band tiled, compressed GeoTIFF block by block (never the whole array)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": dtype,
        "crs": f"EPSG:{EPSG}",
        "transform": from_origin(*origin, resolution, resolution),
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, height, BLOCK):
            for col in range(0, width, BLOCK):
                h, w = min(BLOCK, height - row), min(BLOCK, width - col)
                dst.write(fill(row, col, h, w).astype(dtype), 1, window=Window(col, row, w, h))


def make_tile(workdir: Path, size: int, dates: int) -> tuple[Path, Path, list[float]]:
    """Write the synthetic tile's items and return (imagery collection, label collection, bbox)."""
    rng = np.random.default_rng(0)
    left, top = ORIGIN
    bounds = (left, top - size * 30, left + size * 30, top)
    bbox = list(transform_bounds(f"EPSG:{EPSG}", "EPSG:4326", *bounds))
    geometry = {
        "type": "Polygon",
        "coordinates": [
            [[bbox[0], bbox[1]], [bbox[2], bbox[1]], [bbox[2], bbox[3]], [bbox[0], bbox[3]], [bbox[0], bbox[1]]]
        ],
    }
    items = []
    for t in range(dates):
        sensor = "S30" if t % 2 == 0 else "L30"
        when = datetime(2023, 1 + 2 * t, 15, tzinfo=UTC)
        item_id = f"HLS.{sensor}.T15TVG.{when:%Y%j}T170000.v2.0"
        item = pystac.Item(
            item_id, geometry, bbox, when, {"eo:cloud_cover": 5, "proj:epsg": EPSG}, collection=f"hls2-{sensor.lower()}"
        )
        for b, key in enumerate(hls.SENSOR_ASSETS[sensor]):
            path = workdir / "hls" / item_id / f"{item_id}.{key}.tif"
            base = 500 + 400 * b + 100 * t
            _write_cog(
                path,
                size,
                size,
                "int16",
                hls.REFLECTANCE_NODATA,
                lambda r, c, h, w, base=base: base + rng.integers(0, 300, (h, w)),
                30.0,
                ORIGIN,
            )
            item.add_asset(key, pystac.Asset(str(path), media_type=pystac.MediaType.COG, roles=["data"]))
        path = workdir / "hls" / item_id / f"{item_id}.Fmask.tif"
        cloud = 1 << hls.FMASK_BITS["cloud"]
        _write_cog(
            path,
            size,
            size,
            "uint8",
            hls.FMASK_NODATA,
            lambda r, c, h, w, cloud=cloud: np.where(rng.random((h, w)) < 0.03, cloud, 0),
            30.0,
            ORIGIN,
        )
        item.add_asset("Fmask", pystac.Asset(str(path), media_type=pystac.MediaType.COG, roles=["data"]))
        items.append(item)
    codes = np.array([1, 2, 4, 5, 7, 8, 9, 10, 11], np.uint8)
    label_size = size * 3 + 6
    label_origin = (ORIGIN[0] - 5.0, ORIGIN[1] + 5.0)
    label_path = workdir / "io" / "15T-2023.tif"
    _write_cog(
        label_path,
        label_size,
        label_size,
        "uint8",
        0,
        lambda r, c, h, w: codes[
            ((np.arange(r, r + h)[:, None] // 90) * 7 + np.arange(c, c + w)[None] // 90) % len(codes)
        ],
        10.0,
        label_origin,
    )
    label_item = pystac.Item(
        "15T-2023",
        geometry,
        bbox,
        None,
        {"start_datetime": "2023-01-01T00:00:00Z", "end_datetime": "2024-01-01T00:00:00Z", "proj:epsg": EPSG},
        collection="io-lulc-annual-v02",
    )
    label_item.add_asset("data", pystac.Asset(str(label_path), media_type=pystac.MediaType.COG, roles=["data"]))
    imagery_path, labels_path = workdir / "imagery.json", workdir / "labels.json"
    pystac.ItemCollection(items).save_object(str(imagery_path))
    pystac.ItemCollection([label_item]).save_object(str(labels_path))
    return imagery_path, labels_path, bbox


STAGE = """
import sys, json, pystac
from datetime import date
from pathlib import Path
sys.path.insert(0, {repo!r})
from lulc.aoi import AOI
stage, workdir, frames = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
if stage == "download":
    from lulc.download import write_aoi_stack
    bbox = json.loads((workdir / "bbox.json").read_text())
    aoi = AOI("tile", tuple(bbox), date(2023, 1, 1), date(2023, 12, 31))
    write_aoi_stack(aoi, pystac.ItemCollection.from_file(str(workdir / "imagery.json")),
                    pystac.ItemCollection.from_file(str(workdir / "labels.json")),
                    {{"frames": frames, "min_clear_fraction": 0.5, "block_size": 1024}}, workdir / "download")
else:
    from lulc.chips import make_chips
    d = workdir / "download"
    make_chips("tile", d / "image.tif", d / "mask.tif", d / "label.tif",
               {{"size": 224, "stride": 224, "min_valid_fraction": 0.5}}, workdir / "chips")
import resource
print("PEAK_RSS_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def run_stage(stage: str, workdir: Path, frames: int) -> dict[str, float]:
    """Run one stage in a child process; return its wall time and its own peak resident memory."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", STAGE.format(repo=str(REPO)), stage, str(workdir), str(frames)],
        check=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    peak_kib = int(done.stdout.split("PEAK_RSS_KIB")[-1].split()[0])
    return {"seconds": round(seconds, 1), "peak_rss_gib": round(peak_kib / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lulc_full_tile"))
    parser.add_argument("--size", type=int, default=3660)
    parser.add_argument("--dates", type=int, default=6)
    parser.add_argument("--frames", type=int, default=3)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    _, _, bbox = make_tile(args.workdir, args.size, args.dates)
    (args.workdir / "bbox.json").write_text(json.dumps(bbox))
    print(f"synthetic tile written in {time.perf_counter() - start:.0f} s", flush=True)
    results = {
        "tile": f"{args.size} x {args.size} px, {args.dates} dates, {args.frames} frames kept",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }
    for stage in ("download", "chips"):
        results[stage] = run_stage(stage, args.workdir, args.frames)
        print(stage, results[stage], flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
