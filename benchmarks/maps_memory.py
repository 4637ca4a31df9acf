"""Benchmark: peak memory and throughput of one map_download, one map_predict and the map_mosaic job, for map
regions of 1, 4 and 16 full-size processing tiles.

Full-size tiles: ``maps.tile_km`` 109.8 with 224-px predict tiles at 30 m: 3696-px cores (stride 168) and a
336-px halo, so an interior tile is 4368 x 4368 px with its halo. The regions are 1 x 1, 2 x 2 and 4 x 4 tiles
near lon -93 / lat 42 (UTM zone 15), their bbox solved so the last row and column of cores are 99 % full
(:func:`maps_dag.solve_bbox`), then tiled by :func:`lulc.maps.plan_tiles`. A tile's halo is clipped at the
region's edge, so the largest tile is 3696 px (1 tile), 4032 px (2 x 2: halo on the inner sides) and 4368 px (an
interior tile of 4 x 4); the tables give its pixels and MiB per megapixel.

**Imagery** (synthetic, no network). HLS-like granules of 3660 x 3660 px on an MGRS-like lattice of zone 15
(origins every 99 990 m, so neighbours overlap by 9.8 km as MGRS tiles do) covering the 4 x 4 region with its
halos, four dates (two S30, two L30), seven assets each (six bands int16 + Fmask uint8) with the real
``hls2-s30`` / ``hls2-l30`` asset keys, ``proj:code`` / ``proj:epsg``, ``proj:transform``, ``proj:shape``,
``eo:cloud_cover``. To keep disk and set-up cheap, each asset is a small GDAL VRT that places one *full-size
real* tiled deflate GeoTIFF (3660 x 3660, 512-px blocks; one per band, one Fmask per date) on its granule's grid
(``shared="0"``, ``VRT_SHARED_SOURCE=0``: every asset opens its own handle, so each read decodes real deflate
blocks as with distinct files). Each region's search result is an ItemCollection (what ``map_search`` writes as
``imagery.json``) of every granule x date whose footprint meets the region: the bigger region, the more items
the download job gets.

**Jobs**, each in a fresh child process, its peak resident memory from ``os.wait4`` (``ru_maxrss``: the whole
process, Python, GDAL, torch and their caches included), wall seconds:

* download: :func:`lulc.download.write_imagery_stack` for the largest tile of each region (interior where there
  is one), with the region's whole ItemCollection, ``download`` defaults (frames 3, ``season_windows: null``), as
  ``scripts/map_download.py`` calls it;
* predict: :func:`lulc.map_predict.predict_tile` on the 4 x 4 region's interior tile as downloaded (4368 x 4368 x 18
  bands), the workflow's default U-Net (resnet18, depth 4, random weights saved with
  :func:`lulc.models.save_trained_model`), chip / predict tile 224, stride 168, device cpu, fp32, batch 8, 2
  threads, confidence on (the default). Measured once: a predict job sees its own tile image only, never the
  region's other tiles or items, so its memory cannot depend on the region's tile count;
* mosaic: what ``scripts/map_mosaic.py`` does (:func:`lulc.mosaic.mosaic` of the classes, then of the confidence,
  then :func:`lulc.map_figures.write_preview`) on synthetic full-size cores (3696 x 3696 uint8, tiled deflate
  GeoTIFFs as :func:`lulc.map_predict.crop_core` writes them, on one lattice, fields of random classes with noise so
  compression is realistic) of 1, 4 and 16 tiles.

Throughput: km2/s of the tile with its halo (what is downloaded / predicted) and of its core (what the map
keeps); for the mosaic, seconds per 1000 km2 of the mosaic.

    python benchmarks/maps_memory.py [--regions 1 4 16] [--workdir DIR] [--keep] [--skip-download]
                                     [--skip-predict] [--skip-mosaic] [--threads 2]

Prints markdown tables. Needs about 3 GB of disk under ``--workdir`` (default a temp dir under /tmp), removed
at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from maps_dag import solve_bbox, tile_shape  # noqa: E402

from lulc import hls  # noqa: E402
from lulc.legends import preset  # noqa: E402
from lulc.maps import MapRegion, ProcessingTile, plan_tiles, tile_sizes, write_tiles  # noqa: E402

#: The legend of the synthetic class rasters (the IO LULC 9-class preset).
LEGEND = preset("io-lulc-9")

EPSG = 32615
RESOLUTION = 30.0
TILE_KM, PREDICT_TILE, PREDICT_STRIDE = 109.8, 224, 168
CORE, HALO = tile_sizes(TILE_KM, None, RESOLUTION, PREDICT_TILE, PREDICT_STRIDE)  # 3696, 336
GRANULE_PX, GRANULE_STEP_M = 3660, 99_990.0
GRANULE_ORIGIN = (199_980.0, 4_900_020.0)  # an MGRS-like origin on the 30 m lattice
DATES = [("S30", date(2023, 3, 15)), ("L30", date(2023, 6, 10)), ("S30", date(2023, 8, 20)), ("L30", date(2023, 10, 5))]
MOSAIC_ORIGIN = (300_000.0, 4_800_000.0)
BLOCK = 512
#: Typical HLS reflectance (x 10000) of a few surfaces, per Prithvi band.
SURFACES = np.array(
    [
        [400, 700, 500, 3500, 2000, 1000],  # crops
        [300, 500, 300, 2500, 1400, 700],  # forest
        [600, 800, 900, 1500, 2200, 1800],  # built
        [500, 600, 500, 300, 150, 100],  # water
        [700, 900, 1100, 2200, 2800, 2200],  # bare
    ],
    dtype=np.int16,
)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    mem = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return f"{platform.machine()}, {cpu}, {os.cpu_count()} cores, {mem / 2**20:.1f} GiB RAM"


# ------------------------------------------------------------------------------------------------- regions


def make_regions(workdir: Path, sizes: list[int]) -> dict[int, dict[str, Any]]:
    """Per size: bbox, tiles.csv, the tile the download job gets (the largest; interior where there is one)."""
    regions = {}
    for count in sizes:
        rows, cols = tile_shape(count)
        bbox = solve_bbox(rows, cols, CORE, fill=0.01)
        tiles = plan_tiles(MapRegion(f"r{count}", bbox, ()), RESOLUTION, CORE, HALO)
        if len(tiles) != count:
            raise RuntimeError(f"{count} tiles wanted, plan_tiles gave {len(tiles)} for bbox {bbox}")
        folder = workdir / f"region_{count}"
        folder.mkdir(parents=True, exist_ok=True)
        write_tiles(tiles, folder / "tiles.csv")
        tile = max(tiles, key=lambda t: (t.width * t.height, -tiles.index(t)))
        left, top = min(t.left for t in tiles), max(t.top for t in tiles)
        right = max(t.left + t.width * RESOLUTION for t in tiles)
        bottom = min(t.top - t.height * RESOLUTION for t in tiles)
        regions[count] = {
            "bbox": bbox, "folder": folder, "tiles_csv": folder / "tiles.csv", "tile": tile,
            "bounds": (left, bottom, right, top), "n_tiles": len(tiles),
        }  # fmt: skip
    return regions


# ------------------------------------------------------------------------------------------------- imagery


def _write_tiled(path: Path, dtype: str, nodata: float, fill) -> None:
    """A 3660 x 3660 tiled deflate GeoTIFF (512-px blocks), written block by block. Its own georeferencing does
    not matter: the VRTs place it."""
    profile = {
        "driver": "GTiff", "width": GRANULE_PX, "height": GRANULE_PX, "count": 1, "dtype": dtype,
        "crs": f"EPSG:{EPSG}", "transform": from_origin(*GRANULE_ORIGIN, RESOLUTION, RESOLUTION), "nodata": nodata,
        "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate",
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, GRANULE_PX, BLOCK):
            for col in range(0, GRANULE_PX, BLOCK):
                h, w = min(BLOCK, GRANULE_PX - row), min(BLOCK, GRANULE_PX - col)
                dst.write(fill(row, col, h, w).astype(dtype), 1, window=Window(col, row, w, h))


def make_sources(folder: Path) -> dict[str, Path]:
    """Six band rasters (fields of surfaces, per-pixel noise) and one Fmask per date (cloud / shadow blobs)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    fields = rng.integers(0, len(SURFACES), (GRANULE_PX // 40 + 1, GRANULE_PX // 40 + 1))
    surface = np.repeat(np.repeat(fields, 40, 0), 40, 1)[:GRANULE_PX, :GRANULE_PX]
    sources = {}
    for b, band in enumerate(hls.PRITHVI_BANDS):
        path = folder / f"{band}.tif"
        base = SURFACES[surface, b]
        _write_tiled(
            path, "int16", hls.REFLECTANCE_NODATA,
            lambda r, c, h, w, base=base: base[r : r + h, c : c + w] + rng.integers(0, 250, (h, w)),
        )  # fmt: skip
        sources[band] = path
    cloud, shadow, water = (1 << hls.FMASK_BITS[k] for k in ("cloud", "shadow", "water"))
    for d in range(len(DATES)):
        blobs = rng.random((GRANULE_PX // 120 + 1, GRANULE_PX // 120 + 1)) < 0.04 + 0.04 * d
        blob = np.repeat(np.repeat(blobs, 120, 0), 120, 1)[:GRANULE_PX, :GRANULE_PX]
        shade = np.roll(blob, (60, 60), axis=(0, 1)) & ~blob
        code = np.where(blob, cloud, np.where(shade, shadow, np.where(surface == 3, water, 0))).astype(np.uint8)
        path = folder / f"Fmask_{d}.tif"
        _write_tiled(path, "uint8", hls.FMASK_NODATA, lambda r, c, h, w, code=code: code[r : r + h, c : c + w])
        sources[f"Fmask_{d}"] = path
    return sources


def _vrt(source: Path, left: float, top: float, dtype: str, nodata: float) -> str:
    return f"""<VRTDataset rasterXSize="{GRANULE_PX}" rasterYSize="{GRANULE_PX}">
  <SRS>EPSG:{EPSG}</SRS>
  <GeoTransform>{left:.1f}, {RESOLUTION}, 0.0, {top:.1f}, 0.0, -{RESOLUTION}</GeoTransform>
  <VRTRasterBand dataType="{dtype}" band="1">
    <NoDataValue>{nodata}</NoDataValue>
    <SimpleSource>
      <SourceFilename relativeToVRT="0" shared="0">{source}</SourceFilename>
      <SourceBand>1</SourceBand>
      <SrcRect xOff="0" yOff="0" xSize="{GRANULE_PX}" ySize="{GRANULE_PX}"/>
      <DstRect xOff="0" yOff="0" xSize="{GRANULE_PX}" ySize="{GRANULE_PX}"/>
    </SimpleSource>
  </VRTRasterBand>
</VRTDataset>
"""


def _footprint(left: float, top: float) -> tuple[dict[str, Any], list[float]]:
    size = GRANULE_PX * RESOLUTION
    xs = [left, left + size, left + size, left]
    ys = [top, top, top - size, top - size]
    lons, lats = warp_transform(f"EPSG:{EPSG}", "EPSG:4326", xs, ys)
    ring = [[round(lo, 7), round(la, 7)] for lo, la in zip(lons, lats, strict=True)]
    ring.append(ring[0])
    bbox = [min(p[0] for p in ring), min(p[1] for p in ring), max(p[0] for p in ring), max(p[1] for p in ring)]
    return {"type": "Polygon", "coordinates": [ring]}, bbox


def make_granules(workdir: Path, bounds: tuple[float, float, float, float]) -> list[tuple[pystac.Item, tuple]]:
    """Every granule x date meeting ``bounds`` (UTM), as (item, granule UTM bounds); VRT assets on disk."""
    sources = make_sources(workdir / "sources")
    size = GRANULE_PX * RESOLUTION
    x0, y0 = GRANULE_ORIGIN
    left, bottom, right, top = bounds
    cols = range(math.floor((left - size - x0) / GRANULE_STEP_M) + 1, math.ceil((right - x0) / GRANULE_STEP_M))
    rows = range(math.floor((y0 - size - top) / GRANULE_STEP_M) + 1, math.ceil((y0 - bottom) / GRANULE_STEP_M))
    out = []
    for d, (sensor, day) in enumerate(DATES):
        when = datetime(day.year, day.month, day.day, 17, 0, tzinfo=UTC)
        for r in rows:
            for c in cols:
                g_left, g_top = x0 + c * GRANULE_STEP_M, y0 - r * GRANULE_STEP_M
                mgrs = f"T15{chr(ord('A') + r % 26)}{chr(ord('A') + c % 26)}Z"
                item_id = f"HLS.{sensor}.{mgrs}.{when:%Y%j}T170000.v2.0"
                geometry, bbox = _footprint(g_left, g_top)
                item = pystac.Item(
                    item_id, geometry, bbox, when,
                    {
                        "eo:cloud_cover": 4 + 4 * d, "proj:epsg": EPSG, "proj:code": f"EPSG:{EPSG}",
                        "proj:shape": [GRANULE_PX, GRANULE_PX],
                        "proj:transform": [RESOLUTION, 0.0, g_left, 0.0, -RESOLUTION, g_top],
                        "proj:bbox": [g_left, g_top - size, g_left + size, g_top],
                    },
                    collection=f"hls2-{sensor.lower()}",
                )  # fmt: skip
                folder = workdir / "granules" / item_id
                folder.mkdir(parents=True, exist_ok=True)
                for band, key in zip(hls.PRITHVI_BANDS, hls.SENSOR_ASSETS[sensor], strict=True):
                    path = folder / f"{item_id}.{key}.vrt"
                    path.write_text(_vrt(sources[band], g_left, g_top, "Int16", hls.REFLECTANCE_NODATA))
                    item.add_asset(key, pystac.Asset(str(path), media_type=pystac.MediaType.COG, roles=["data"]))
                path = folder / f"{item_id}.Fmask.vrt"
                path.write_text(_vrt(sources[f"Fmask_{d}"], g_left, g_top, "Byte", hls.FMASK_NODATA))
                item.add_asset("Fmask", pystac.Asset(str(path), media_type=pystac.MediaType.COG, roles=["data"]))
                out.append((item, (g_left, g_top - size, g_left + size, g_top)))
    return out


def region_items(granules: list[tuple[pystac.Item, tuple]], bounds: tuple[float, ...]) -> list[pystac.Item]:
    left, bottom, right, top = bounds
    return [item for item, (gl, gb, gr, gt) in granules if gl < right and gr > left and gb < top and gt > bottom]


# ------------------------------------------------------------------------------------------------ mosaic data


def make_cores(folder: Path, n_side: int) -> tuple[list[Path], list[Path]]:
    """n_side x n_side full-size cores (classes and confidence) on one lattice, row-major."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    landcover, confidence = [], []
    colormap = LEGEND.colormap()
    for row in range(n_side):
        for col in range(n_side):
            left = MOSAIC_ORIGIN[0] + col * CORE * RESOLUTION
            top = MOSAIC_ORIGIN[1] - row * CORE * RESOLUTION
            profile = {
                "driver": "GTiff", "width": CORE, "height": CORE, "count": 1, "dtype": "uint8",
                "crs": f"EPSG:{EPSG}", "transform": from_origin(left, top, RESOLUTION, RESOLUTION), "nodata": 255,
                "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate", "zlevel": 1,
            }  # fmt: skip
            fields = rng.integers(0, LEGEND.num_classes, (CORE // 24 + 1, CORE // 24 + 1)).astype(np.uint8)
            cls = np.repeat(np.repeat(fields, 24, 0), 24, 1)[:CORE, :CORE]
            speckle = rng.random((CORE, CORE)) < 0.05
            cls = np.where(speckle, rng.integers(0, LEGEND.num_classes, (CORE, CORE)), cls).astype(np.uint8)
            conf = np.clip(55 + 8 * (cls % 5) + rng.integers(0, 30, (CORE, CORE)), 0, 100).astype(np.uint8)
            for kind, data, paths in (("landcover", cls, landcover), ("confidence", conf, confidence)):
                path = folder / f"{EPSG}_r{row:03d}_c{col:03d}_{kind}.tif"
                with rasterio.open(path, "w", **profile) as dst:
                    dst.write(data, 1)
                    if kind == "landcover":
                        dst.write_colormap(1, colormap)
                paths.append(path)
    return landcover, confidence


# ------------------------------------------------------------------------------------------------- jobs


def child(stage: str, spec: dict[str, Any]) -> dict[str, Any]:
    """One job, as its script runs it (in this fresh process)."""
    if stage == "download":
        from lulc.download import write_imagery_stack
        from lulc.maps import find_tile
        from lulc.schema import section
        from lulc.search import load_item_collection

        cfg = {k: v for k, v in section("download", {"frames": 3, "season_windows": None}).items() if k != "crs"}
        record = write_imagery_stack(
            f"map region {spec['region']} 2023 tile {spec['tile']}", date(2023, 1, 1), date(2023, 12, 31),
            find_tile(spec["tiles_csv"], spec["tile"]).grid(), load_item_collection(spec["imagery"]), cfg,
            Path(spec["out_dir"]),
        )  # fmt: skip
        return {
            "frames": [f"{f['date']} {f['sensor']}" for f in record["frames"]],
            "candidates": len(record["candidates"]),
        }
    if stage == "predict":
        from lulc.map_predict import predict_tile

        cfg = {"device": "cpu", "precision": "fp32", "batch_size": 8, "confidence": True}
        out = Path(spec["out_dir"])
        result = predict_tile(
            spec["checkpoint"], spec["image"], spec["tiles_csv"], spec["tile"], out / "landcover.tif", cfg,
            confidence=out / "confidence.tif", run_name="unet_f1_s0", region="bench 2023", threads=spec["threads"],
        )  # fmt: skip
        return {k: result.get(k) for k in ("seconds", "km2_per_s", "tiles", "precision", "device") if k in result}
    if stage == "mosaic":
        from lulc.map_figures import write_preview
        from lulc.mosaic import mosaic

        out, times = Path(spec["out_dir"]), {}
        start = time.perf_counter()
        record = mosaic(spec["landcover"], out / "landcover.tif", crs=f"EPSG:{EPSG}", kind="classes",
                        tags={"REGION": "bench"}, threads=spec["threads"])  # fmt: skip
        times["classes_s"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        mosaic(spec["confidence"], out / "confidence.tif", crs=f"EPSG:{EPSG}", kind="confidence",
               tags={"REGION": "bench"}, threads=spec["threads"])  # fmt: skip
        times["confidence_s"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        write_preview(out / "landcover.tif", out / "preview.png", title="bench")
        times["preview_s"] = round(time.perf_counter() - start, 2)
        return {**times, "area_km2": record["area_km2"], "width": record["width"], "height": record["height"],
                "cog_mib": round((out / "landcover.tif").stat().st_size / 2**20, 1)}  # fmt: skip
    if stage == "baseline":
        import torch  # noqa: F401  # what every predict job imports

        import lulc.download
        import lulc.maps
        import lulc.mosaic  # noqa: F401

        return {}
    raise ValueError(stage)


def run_child(stage: str, spec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Run one job in a fresh process: its record, wall seconds and peak RSS (GiB, from os.wait4)."""
    spec_path = workdir / f"spec_{stage}_{time.monotonic_ns()}.json"
    spec_path.write_text(json.dumps(spec, default=str))
    result_path = spec_path.with_suffix(".result.json")
    log_path = spec_path.with_suffix(".log")
    env = {**os.environ, "TQDM_DISABLE": "1", "VRT_SHARED_SOURCE": "0"}
    command = [sys.executable, __file__, "--child", stage, str(spec_path), str(result_path)]
    with open(log_path, "w") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{stage} failed:\n{log_path.read_text()[-6000:]}")
    record = json.loads(result_path.read_text())
    record.update(
        seconds=round(seconds, 1),
        peak_gib=round(usage.ru_maxrss / 2**20, 2),
        cpu_s=round(usage.ru_utime + usage.ru_stime, 1),
    )
    return record


def km2(px: int) -> float:
    return px * RESOLUTION**2 / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regions", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the work folder (default /tmp)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--skip-download", action="store_true")
    parser.add_argument("--skip-predict", action="store_true")
    parser.add_argument("--skip-mosaic", action="store_true")
    parser.add_argument("--threads", type=int, default=2, help="the predict and mosaic jobs' threads")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        stage, spec_path, result_path = args.child
        result = child(stage, json.loads(Path(spec_path).read_text()))
        Path(result_path).write_text(json.dumps(result))
        return

    sizes = sorted(args.regions)
    workdir = Path(tempfile.mkdtemp(prefix="lulc_maps_memory_", dir=args.workdir))
    print(f"{machine()}; work folder {workdir}", flush=True)
    print(f"tiles: {CORE}-px cores + {HALO}-px halo at {RESOLUTION:g} m (tile_km {TILE_KM}, predict {PREDICT_TILE}/"
          f"{PREDICT_STRIDE})", flush=True)  # fmt: skip
    try:
        regions = make_regions(workdir, sizes)
        baseline = run_child("baseline", {}, workdir)
        print(f"baseline (python + torch + lulc imports): {baseline['peak_gib']} GiB", flush=True)
        downloads: dict[int, dict[str, Any]] = {}
        if not args.skip_download or not args.skip_predict:
            start = time.perf_counter()
            granules = make_granules(workdir, regions[sizes[-1]]["bounds"])
            print(f"{len(granules)} granules x dates (VRT assets) in {time.perf_counter() - start:.0f} s", flush=True)
            for count in sizes:
                region = regions[count]
                items = region_items(granules, region["bounds"])
                imagery = region["folder"] / "imagery.json"
                pystac.ItemCollection(items).save_object(str(imagery))
                tile: ProcessingTile = region["tile"]
                out_dir = region["folder"] / "tiles" / tile.tile
                out_dir.mkdir(parents=True)
                record = run_child(
                    "download",
                    {"region": f"r{count}", "tile": tile.tile, "tiles_csv": region["tiles_csv"], "imagery": imagery,
                     "out_dir": out_dir},
                    workdir,
                )  # fmt: skip
                record.update(items=len(items), tile=tile, image=out_dir / "image.tif")
                downloads[count] = record
                print(f"download, {count} tiles ({len(items)} items), tile {tile.tile} {tile.width} x {tile.height}: "
                      f"{record['seconds']} s, {record['peak_gib']} GiB", flush=True)  # fmt: skip
            if args.skip_download:
                downloads = {sizes[-1]: downloads[sizes[-1]]}
        predict = None
        if not args.skip_predict:
            from lulc.models import build_model, save_trained_model

            checkpoint = workdir / "best.ckpt"
            built = build_model("unet", {}, 3, PREDICT_TILE)
            save_trained_model(built, {}, checkpoint, {"epoch": 1, "val_miou": 0.5, "fraction": "1", "seed": "0"})
            count = sizes[-1]
            source = downloads[count]
            out_dir = workdir / "predict"
            out_dir.mkdir()
            predict = run_child(
                "predict",
                {"checkpoint": checkpoint, "image": source["image"], "tiles_csv": regions[count]["tiles_csv"],
                 "tile": source["tile"].tile, "out_dir": out_dir, "threads": args.threads},
                workdir,
            )  # fmt: skip
            predict["tile"] = source["tile"]
            print(f"predict {source['tile'].tile}: {predict['seconds']} s, {predict['peak_gib']} GiB", flush=True)
            shutil.rmtree(out_dir, ignore_errors=True)
        if args.skip_download:
            downloads = {}
        # the imagery is no longer needed: free the disk before the mosaic inputs are written
        shutil.rmtree(workdir / "granules", ignore_errors=True)
        for count in sizes:
            shutil.rmtree(regions[count]["folder"] / "tiles", ignore_errors=True)
        mosaics: dict[int, dict[str, Any]] = {}
        if not args.skip_mosaic:
            n_side = max(tile_shape(c)[1] for c in sizes)
            start = time.perf_counter()
            landcover, confidence = make_cores(workdir / "cores", n_side)
            print(f"{len(landcover)} cores written in {time.perf_counter() - start:.0f} s", flush=True)
            for count in sizes:
                rows, cols = tile_shape(count)
                pick = [r * n_side + c for r in range(rows) for c in range(cols)]
                out_dir = workdir / f"mosaic_{count}"
                out_dir.mkdir()
                mosaics[count] = run_child(
                    "mosaic",
                    {"landcover": [landcover[i] for i in pick], "confidence": [confidence[i] for i in pick],
                     "out_dir": out_dir, "threads": args.threads},
                    workdir,
                )  # fmt: skip
                print(f"mosaic {count} tiles: {mosaics[count]}", flush=True)
                shutil.rmtree(out_dir, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n{machine()}\n")
    print(
        f"Baseline: a Python process that imports torch and lulc's map modules peaks at {baseline['peak_gib']} GiB.\n"
    )
    if downloads:
        print("| region tiles | items in imagery.json | tile (with halo) px | peak RSS GiB | MiB / Mpx | wall s "
              "| CPU s | km2/s with halo | km2/s of core |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
        for count, r in downloads.items():
            t: ProcessingTile = r["tile"]
            px = t.width * t.height
            core = km2(t.core_width * t.core_height)
            print(f"| {count} | {r['items']} | {t.width} x {t.height} | {r['peak_gib']:.2f} "
                  f"| {1024 * r['peak_gib'] / (px / 1e6):.1f} | {r['seconds']:.0f} | {r['cpu_s']:.0f} "
                  f"| {km2(px) / r['seconds']:.0f} | {core / r['seconds']:.0f} |")  # fmt: skip
        print()
    if predict:
        t = predict["tile"]
        px, core_px = t.width * t.height, t.core_width * t.core_height
        print("| predict tile (with halo) | core | peak RSS GiB | wall s | CPU s | km2/s with halo | km2/s of core |")
        print("|---|---|---|---|---|---|---|")
        print(f"| {t.width} x {t.height} px, {km2(px):.0f} km2 | {t.core_width} x {t.core_height} px, "
              f"{km2(core_px):.0f} km2 | {predict['peak_gib']:.2f} | {predict['seconds']:.0f} | {predict['cpu_s']:.0f} "
              f"| {km2(px) / predict['seconds']:.0f} | {km2(core_px) / predict['seconds']:.0f} |")  # fmt: skip
        print()
    if mosaics:
        print("| mosaic tiles | mosaic px | km2 | peak RSS GiB | wall s (classes / confidence / preview) | CPU s "
              "| s / 1000 km2 | COG MiB |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        for count, r in mosaics.items():
            print(f"| {count} | {r['width']} x {r['height']} | {r['area_km2']:.0f} | {r['peak_gib']:.2f} "
                  f"| {r['seconds']:.0f} ({r['classes_s']:.0f} / {r['confidence_s']:.0f} / {r['preview_s']:.0f}) "
                  f"| {r['cpu_s']:.0f} | {1000 * r['seconds'] / r['area_km2']:.2f} | {r['cog_mib']} |")  # fmt: skip


if __name__ == "__main__":
    main()
