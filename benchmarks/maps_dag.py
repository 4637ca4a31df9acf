"""Benchmark: seconds of `snakemake -n` (the whole workflow's DAG, dry run) for a map region of 1, 100 and 1000
processing tiles.

Synthetic, no data: ``tests/config/tiny.yaml`` with its ``maps`` section replaced by one region (one year, one
run: ``runs: [{model: unet}]``) whose bbox, near lon -93 / lat 42 in one UTM zone, gives the wanted tile count
with small tiles (``--tile-km 1.92``: 72-px cores + 48-px halo at 30 m with the tiny config's 32-px predict
tiles). The count is a grid of rows x cols tiles (1 x 1, 10 x 10, 25 x 40): the bbox is solved so that the
region's projected grid is ``(n - 0.5)`` cores wide and high, then checked against :func:`lulc.maps.plan_tiles`.

In a fresh temp workdir per size, the ``map_tiles`` checkpoint is run first (``snakemake --cores 1
results/maps/<region>/tiles.csv``: it reads no data), so the DAG holds every tile's jobs. Then ``snakemake -n``
(default target) is timed ``--repeats`` times, in a child process each, with the normal output and with
``--quiet rules`` (no per-job blocks: the "Job stats" summary only); the median is reported, wall seconds and
CPU seconds (user + sys of the child, from ``os.wait4``: the machine may be shared, so wall time can exceed CPU
time). Jobs are the ``total`` of the "Job stats" table.

    python benchmarks/maps_dag.py [--tiles 1 100 1000] [--repeats 3] [--tile-km 1.92] [--workdir DIR] [--keep]
                                  [--profile N] [--stub-scontrol]

``--stub-scontrol`` puts a ``scontrol`` that fails at once first on the PATH of the timed runs. Snakemake imports
its SLURM executor plugin on every start, and the plugin runs ``scontrol show config`` (10 s timeout) at import:
on a machine with the SLURM client but no reachable controller (this CI machine) that adds a constant ~9 s to
every invocation, whatever the DAG. With the stub the table shows what the workflow itself costs.

``--profile N`` also runs one ``snakemake -n --quiet rules`` for the N-tile size under ``cProfile`` and prints the
top functions by cumulative time (our input functions and params are in ``workflow/rules/functions/maps.smk``).

Prints a markdown table: tiles, jobs in the DAG, seconds (median), seconds per 1000 jobs.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lulc.grid import Grid  # noqa: E402
from lulc.maps import MapRegion, plan_tiles, predict_geometry, tile_sizes, zone_grids  # noqa: E402

TINY = REPO / "tests" / "config" / "tiny.yaml"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
REGION = "bench"
CENTER = (-93.0, 42.0)  # on the central meridian of UTM zone 15
RESOLUTION = 30.0
#: rows x cols of the region's tiles for each wanted count
SHAPES = {1: (1, 1), 4: (2, 2), 16: (4, 4), 100: (10, 10), 1000: (25, 40)}


def tile_shape(count: int) -> tuple[int, int]:
    """rows x cols for ``count`` tiles: a known shape, else the most square factorisation."""
    if count in SHAPES:
        return SHAPES[count]
    rows = max(r for r in range(1, math.isqrt(count) + 1) if count % r == 0)
    return rows, count // rows


def region_grid(half_lon: float, half_lat: float, center: tuple[float, float] = CENTER) -> Grid:
    lon, lat = center
    region = MapRegion(REGION, (lon - half_lon, lat - half_lat, lon + half_lon, lat + half_lat), ())
    (grid,) = zone_grids(region, RESOLUTION)
    return grid


def solve_bbox(
    rows: int, cols: int, core_px: int, fill: float = 0.5, center: tuple[float, float] = CENTER
) -> tuple[float, float, float, float]:
    """A WGS84 bbox centred on ``center`` whose region grid is ``(cols - fill)`` cores wide and ``(rows - fill)``
    cores high (so ``rows x cols`` tiles, none clipped to a sliver). ``fill`` 0 asks for whole cores (then the
    grid may come out a pixel wider: check the count)."""
    want_w, want_h = (cols - fill) * core_px, (rows - fill) * core_px
    half_lon, half_lat = 0.01, 0.01
    for _ in range(60):  # the projected size is nearly linear in the half-widths: fixed-point iteration
        grid = region_grid(half_lon, half_lat, center)
        if abs(grid.width - want_w) <= 0.5 and abs(grid.height - want_h) <= 0.5:
            break
        half_lon *= want_w / grid.width
        half_lat *= want_h / grid.height
    lon, lat = center
    return (lon - half_lon, lat - half_lat, lon + half_lon, lat + half_lat)


def region_tiles(bbox: tuple[float, float, float, float], core_px: int, halo_px: int) -> list:
    return plan_tiles(MapRegion(REGION, bbox, ()), RESOLUTION, core_px, halo_px)


def bench_config(bbox: tuple[float, float, float, float], tile_km: float) -> dict:
    """The tiny config with one map region: ``bbox``, 2023, the U-Net."""
    config = yaml.safe_load(TINY.read_text())
    config["maps"] = {
        "tile_km": tile_km,
        "regions": {REGION: {"bbox": [round(v, 6) for v in bbox], "years": [2023], "runs": [{"model": "unet"}]}},
    }
    return config


def snakemake_cmd(workdir: Path, configfile: Path, *args: str) -> list[str]:
    # --configfile last: it takes several values and would swallow targets after it
    return [
        str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2", *args,
        "--configfile", str(configfile),
    ]  # fmt: skip


STUB_BIN: Path | None = None  # a folder holding a failing `scontrol` (--stub-scontrol), first on the PATH


def run_timed(command: list[str], log: Path) -> tuple[float, float, str]:
    """(wall s, CPU s of the child: user + sys, its output)."""
    path = [str(Path(sys.executable).parent), os.environ.get("PATH", "")]
    if STUB_BIN is not None:
        path.insert(0, str(STUB_BIN))
    env = {**os.environ, "PATH": ":".join(path)}
    with open(log, "w") as out:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text()
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({child.returncode}):\n{text[-4000:]}")
    return wall, usage.ru_utime + usage.ru_stime, text


def job_counts(text: str) -> dict[str, int]:
    """Rule -> jobs from the last "Job stats" table of snakemake's output (``total`` included)."""
    table = text.rsplit("Job stats:", 1)[-1]
    counts = {}
    for line in table.splitlines()[3:]:
        match = re.match(r"^(\S+)\s+(\d+)\s*$", line)
        if not match:
            break
        counts[match.group(1)] = int(match.group(2))
    return counts


def profile_dry_run(workdir: Path, configfile: Path, top: int = 40) -> str:
    """One ``snakemake -n --quiet rules`` under cProfile; the top functions by cumulative and own time."""
    stats = workdir / "dry_run.prof"
    dry_run = snakemake_cmd(workdir, configfile, "-n", "--quiet", "rules")
    command = [sys.executable, "-m", "cProfile", "-o", str(stats), *dry_run]
    run_timed(command, workdir / "profile.log")
    script = (
        "import pstats, sys; p = pstats.Stats(sys.argv[1]); n = int(sys.argv[2]);"
        "p.sort_stats('cumulative').print_stats(n); p.sort_stats('tottime').print_stats(n)"
    )
    done = subprocess.run([sys.executable, "-c", script, str(stats), str(top)], capture_output=True, text=True)
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tile-km", type=float, default=1.92)
    parser.add_argument(
        "--workdir", type=Path, default=None, help="parent of the per-size workdirs (default: a temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the workdirs")
    parser.add_argument("--profile", type=int, default=None, help="profile the dry run of this tile count")
    parser.add_argument("--stub-scontrol", action="store_true", help="a failing scontrol first on the PATH")
    args = parser.parse_args()
    global STUB_BIN

    tiny = yaml.safe_load(TINY.read_text())
    tile_px, stride = predict_geometry(tiny.get("predict") or {}, int(tiny["chips"]["size"]))
    core, halo = tile_sizes(args.tile_km, None, RESOLUTION, tile_px, stride)
    parent = Path(tempfile.mkdtemp(prefix="lulc_maps_dag_", dir=args.workdir))
    if args.stub_scontrol:
        STUB_BIN = parent / "bin"
        STUB_BIN.mkdir()
        (STUB_BIN / "scontrol").write_text("#!/bin/sh\nexit 1\n")
        (STUB_BIN / "scontrol").chmod(0o755)
    print(f"tiles of {core} px + {halo} px halo ({args.tile_km} km, predict tile {tile_px}/{stride}); in {parent}")
    rows_out = []
    try:
        for count in args.tiles:
            rows, cols = tile_shape(count)
            bbox = solve_bbox(rows, cols, core)
            tiles = region_tiles(bbox, core, halo)
            workdir = parent / f"tiles_{count}"
            workdir.mkdir()
            configfile = workdir / "config.yaml"
            configfile.write_text(yaml.safe_dump(bench_config(bbox, args.tile_km), sort_keys=False))
            wall, _, _ = run_timed(
                snakemake_cmd(workdir, configfile, f"results/maps/{REGION}/tiles.csv"), workdir / "checkpoint.log"
            )
            planned = sum(1 for _ in open(workdir / f"results/maps/{REGION}/tiles.csv")) - 1
            print(f"{count} tiles wanted ({rows} x {cols}), plan_tiles {len(tiles)}, checkpoint wrote {planned} "
                  f"in {wall:.1f} s; bbox {[round(v, 4) for v in bbox]}", flush=True)  # fmt: skip
            result = {"tiles": planned, "wanted": count}
            for mode, extra in (("plain", ()), ("quiet", ("--quiet", "rules"))):
                walls, cpus = [], []
                for repeat in range(args.repeats):
                    wall, cpu, text = run_timed(
                        snakemake_cmd(workdir, configfile, "-n", *extra), workdir / f"dry_{mode}_{repeat}.log"
                    )
                    walls.append(wall)
                    cpus.append(cpu)
                    counts = job_counts(text)
                    print(f"  -n {mode} #{repeat}: {wall:.2f} s wall, {cpu:.2f} s CPU, {counts.get('total')} jobs "
                          f"(map_download {counts.get('map_download')}, map_predict {counts.get('map_predict')})",
                          flush=True)  # fmt: skip
                result["jobs"] = counts["total"]
                result["map_jobs"] = sum(v for k, v in counts.items() if k.startswith("map_"))
                result[mode] = (statistics.median(walls), statistics.median(cpus))
            rows_out.append(result)
            if args.profile == count:
                print(profile_dry_run(workdir, configfile))
    finally:
        if not args.keep:
            shutil.rmtree(parent, ignore_errors=True)

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    stub = "scontrol stubbed" if args.stub_scontrol else "real scontrol on the PATH"
    print(f"\n{platform.machine()}, {cpu}, {os.cpu_count()} cores; median of {args.repeats} runs each; {stub}\n")
    print(
        "| tiles | jobs in the DAG (map_* jobs) | `-n` s wall (CPU) | s / 1000 jobs | + s / 1000 jobs over the "
        "smallest | `-n --quiet rules` s wall (CPU) | s / 1000 jobs (quiet) |"
    )
    print("|---|---|---|---|---|---|---|")
    base = rows_out[0]
    for r in rows_out:
        (pw, pc), (qw, qc) = r["plain"], r["quiet"]
        extra_jobs = r["jobs"] - base["jobs"]
        marginal = f"{1000 * (pw - base['plain'][0]) / extra_jobs:.1f}" if extra_jobs else "-"
        print(
            f"| {r['tiles']} | {r['jobs']} ({r['map_jobs']}) | {pw:.1f} ({pc:.1f}) | {1000 * pw / r['jobs']:.1f} "
            f"| {marginal} | {qw:.1f} ({qc:.1f}) | {1000 * qw / r['jobs']:.1f} |"
        )


if __name__ == "__main__":
    main()
