"""Benchmark: size and time to first paint of a map region's viewer page (lulc/viewer.py), for regions of 1, 4
and 16 processing tiles.

Synthetic region mosaics on one UTM lattice (zone 15, 30 m), as ``map_mosaic`` writes them (uint8 COGs with
internal overviews, colour table and class tags): per region two periods x two runs of class maps, each with a
confidence raster, one change pair per run, and the first period's imagery per processing tile (the three
visible bands of frame 1, int16 COGs with overviews), plus the tiles' cores and the outline. Class maps are
patches of classes drawn from smoothed noise with 10 % speckle, so that PNG compression is not flattered;
confidence is a smooth field with noise; imagery follows the classes with noise.

``--tile-px`` sets the core side (default 3696, a full-size ``maps.tile_km: 109.8`` core at 30 m with 224-px
predict tiles); ``--quick`` uses 400-px cores. The page is built with the workflow's default
``maps.viewer_max_side`` (2048) and opened from file:// in Debian's headless chromium (Selenium), 3 times; time
to first paint is the page's own ``lulc-first-paint`` performance mark (after every layer is decoded and the
first frame drawn), from navigation start. Prints a JSON record per region and a Markdown table.

    .venv/bin/python benchmarks/viewer_pages.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from scipy.ndimage import gaussian_filter, zoom

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from browser import load, open_browser, require_browser  # noqa: E402

from lulc.io import copy_to_cog  # noqa: E402
from lulc.legends import preset  # noqa: E402
from lulc.viewer import MapInput, PageInputs, box, write_page  # noqa: E402

#: The legend of the synthetic class rasters (the IO LULC 9-class preset).
LEGEND = preset("io-lulc-9")

ORIGIN = (400_000.0, 4_700_000.0)
RESOLUTION = 30.0
CRS = "EPSG:32615"


def _field(rng: np.random.Generator, side: int, coarse: int = 64) -> np.ndarray:
    """A smooth random field of ``side`` x ``side`` (upsampled from a coarse grid: cheap at any size)."""
    small = gaussian_filter(rng.standard_normal((coarse, coarse)), 2)
    return zoom(small, side / coarse, order=1)[:side, :side]


def _class_map(rng: np.random.Generator, side: int) -> np.ndarray:
    values = _field(rng, side)
    edges = np.quantile(values, np.linspace(0, 1, LEGEND.num_classes + 1)[1:-1])
    indices = np.digitize(values, edges).astype(np.uint8)
    speckle = rng.random((side, side)) < 0.1
    indices[speckle] = rng.integers(0, LEGEND.num_classes, int(speckle.sum()), dtype=np.uint8)
    return indices


def _write_cog(path: Path, array: np.ndarray, transform: object, nodata: float, legend: bool, resampling: str) -> Path:
    tmp = path.with_suffix(".stream.tif")
    profile = {"driver": "GTiff", "width": array.shape[-1], "height": array.shape[-2],
               "count": 1 if array.ndim == 2 else array.shape[0], "dtype": array.dtype.name, "crs": CRS,
               "transform": transform, "nodata": nodata, "tiled": True, "blockxsize": 512, "blockysize": 512,
               "compress": "deflate"}
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(array if array.ndim == 3 else array[None])
        if legend:
            dst.write_colormap(1, LEGEND.colormap())
            dst.update_tags(**LEGEND.tags())
    copy_to_cog(tmp, path, resampling)
    tmp.unlink()
    return path


def make_region(folder: Path, tiles_per_side: int, tile_px: int, seed: int = 0) -> PageInputs:
    """The rasters of one region of ``tiles_per_side``**2 tiles (mosaics, confidence, per-tile imagery)."""
    rng = np.random.default_rng(seed)
    side = tiles_per_side * tile_px
    transform = from_origin(*ORIGIN, RESOLUTION, RESOLUTION)
    maps = []
    base = _class_map(rng, side)
    for period in ("2022", "2023"):
        for run in ("unet_f1_s0", "prithvi_f1_s0"):
            indices = base.copy()
            changed = _field(rng, side) > 1.2  # patches that differ between periods and runs
            indices[changed] = (indices[changed] + 1) % LEGEND.num_classes
            landcover = _write_cog(folder / f"{period}_{run}.tif", indices, transform, 255, True, "mode")
            confidence = np.clip(60 + 25 * _field(rng, side) + rng.normal(0, 5, (side, side)), 0, 100).astype(np.uint8)
            conf = _write_cog(folder / f"{period}_{run}_conf.tif", confidence, transform, 255, False, "average")
            maps.append(MapInput(landcover, conf, period, run))
    spectra = np.array([[500, 600, 400], [300, 500, 300], [300, 500, 400], [400, 700, 500], [1100, 1200, 1300],
                        [1400, 1800, 2200], [8500, 8300, 8000], [5000, 5000, 5000], [500, 800, 900]], dtype=np.int16)
    images, cores = [], []
    for i in range(tiles_per_side):
        for j in range(tiles_per_side):
            window = base[i * tile_px:(i + 1) * tile_px, j * tile_px:(j + 1) * tile_px]
            rgb = spectra[window][..., ::-1].transpose(2, 0, 1)  # BLUE, GREEN, RED: bands 1-3 of frame 1
            rgb = (rgb + rng.normal(0, 80, rgb.shape)).astype(np.int16)
            left, top = ORIGIN[0] + j * tile_px * RESOLUTION, ORIGIN[1] - i * tile_px * RESOLUTION
            tile_transform = from_origin(left, top, RESOLUTION, RESOLUTION)
            images.append(_write_cog(folder / f"image_{i}_{j}.tif", rgb, tile_transform, -9999, False, "average"))
            cores.append((CRS, box(left, top - tile_px * RESOLUTION, left + tile_px * RESOLUTION, top)))
    right, bottom = ORIGIN[0] + side * RESOLUTION, ORIGIN[1] - side * RESOLUTION
    return PageInputs(title=f"benchmark region, {tiles_per_side**2} tiles", maps=maps, images=images,
                      change_pairs=[("2022", "2023")], outline=box(ORIGIN[0], bottom, right, ORIGIN[1]),
                      outline_crs=CRS, tiles=cores)


def first_paint_ms(page: Path, profile: Path, repeats: int = 3) -> list[float]:
    """The page's ``lulc-first-paint`` mark (ms from navigation start) in fresh browser sessions."""
    times = []
    for attempt in range(repeats):
        driver = open_browser(profile / str(attempt))
        try:
            load(driver, page)
            times.append(float(driver.execute_script(
                "return performance.getEntriesByName('lulc-first-paint')[0].startTime")))
        finally:
            driver.quit()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="400-px cores instead of full-size ones")
    parser.add_argument("--tile-px", type=int, default=3696)
    parser.add_argument("--out", type=Path, default=None, help="keep the pages here")
    args = parser.parse_args()
    require_browser_or_exit()
    tile_px = 400 if args.quick else args.tile_px
    records = []
    with tempfile.TemporaryDirectory(prefix="viewer-bench-") as scratch:
        root = Path(scratch)
        for per_side in (1, 2, 4):
            folder = root / f"tiles{per_side**2}"
            folder.mkdir()
            started = time.perf_counter()
            inputs = make_region(folder, per_side, tile_px)
            made = time.perf_counter() - started
            page = (args.out or folder) / f"viewer_{per_side**2}_tiles.html"
            page.parent.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            written = write_page(inputs, page)
            build_s = time.perf_counter() - started
            paints = first_paint_ms(page, root / "profiles")
            record = {"tiles": per_side**2, "region_px": per_side * tile_px, "layers": written["layers"],
                      "page_mb": round(written["bytes"] / 2**20, 2), "build_s": round(build_s, 2),
                      "first_paint_ms": round(statistics.median(paints), 1), "first_paint_runs_ms": paints,
                      "rasters_made_s": round(made, 1)}
            print(json.dumps(record), flush=True)
            records.append(record)
    print("\n| tiles | region (px) | layers | page (MB) | page build (s) | first paint (ms, median of 3) |")
    print("|---|---|---|---|---|---|")
    for r in records:
        print(f"| {r['tiles']} | {r['region_px']} | {r['layers']} | {r['page_mb']} | {r['build_s']} "
              f"| {r['first_paint_ms']} |")
    return 0


def require_browser_or_exit() -> None:
    try:
        require_browser()
    except BaseException as error:  # pytest's skip / fail outcomes outside pytest
        raise SystemExit(f"no browser: {error}") from None


if __name__ == "__main__":
    raise SystemExit(main())
