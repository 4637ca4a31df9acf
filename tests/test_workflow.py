"""End to end: the real `snakemake` on the tiny test config, its outputs, and what reruns after a change."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from rio_cogeo.cogeo import cog_validate

from lulc import classes, hls

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "config" / "tiny.yaml"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str, configfile: Path = TINY, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real snakemake CLI on the repository's Snakefile in ``workdir``."""
    command = [
        str(SNAKEMAKE),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
        "--cores",
        "2",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if check and done.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}")
    return done


def plan(workdir: Path, configfile: Path = TINY) -> dict[str, set[str]]:
    """Rule -> set of plans ('no update', 'update pending', ...) from `snakemake --summary`."""
    out = snakemake(workdir, "--summary", configfile=configfile).stdout
    rows = list(csv.DictReader(io.StringIO(out[out.index("output_file") :]), delimiter="\t"))
    plans: dict[str, set[str]] = {}
    for row in rows:
        plans.setdefault(row["rule"], set()).add(row["plan"])
    return plans


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny")
    snakemake(workdir)
    return workdir


def test_outputs_of_every_stage(workflow_run):
    wd = workflow_run
    config = yaml.safe_load(TINY.read_text())
    catalog = json.loads((wd / "results/demo/catalog.json").read_text())
    assert catalog["type"] == "Catalog"
    for aoi in config["aois"]:
        imagery = json.loads((wd / f"results/search/{aoi}/imagery.json").read_text())
        labels = json.loads((wd / f"results/search/{aoi}/labels.json").read_text())
        assert imagery["features"] and labels["features"]
        assert all(f["properties"]["eo:cloud_cover"] <= 80 for f in imagery["features"])
        assert {f["collection"] for f in imagery["features"]} == {"hls2-s30", "hls2-l30"}

        download = wd / f"results/download/{aoi}"
        for name in ("image.tif", "mask.tif", "label.tif"):
            valid, errors, _ = cog_validate(download / name)
            assert valid, (aoi, name, errors)
        with rasterio.open(download / "image.tif") as src:
            assert src.count == 18 and src.res == (30.0, 30.0) and src.crs.to_epsg() in range(32601, 32661)
            assert list(src.descriptions) == hls.band_names(3)
            epsg = src.crs.to_epsg()
        frames = json.loads((download / "frames.json").read_text())
        assert len(frames["frames"]) == 3 and frames["dropped"]

        chips = wd / f"results/chips/{aoi}"
        manifest = pd.read_parquet(chips / "manifest.parquet")
        images = np.load(chips / "images.npy", mmap_mode="r")
        assert images.shape == (len(manifest), 3, 6, 32, 32) and images.dtype == np.int16
        summary = json.loads((chips / "summary.json").read_text())
        assert summary["kept"] == len(manifest) > 0
        assert (manifest["valid_fraction"] >= 0.5).all()
        assert (wd / f"results/logs/download/{aoi}.log").stat().st_size > 0
    epsgs = {rasterio.open(wd / f"results/download/{aoi}/image.tif").crs.to_epsg() for aoi in config["aois"]}
    assert len(epsgs) == 2, "the two tiny AOIs lie in different UTM zones"
    assert epsg in epsgs
    assert (wd / "results/benchmarks/download/tiny_iowa.tsv").exists()

    splits = pd.read_csv(wd / "results/splits/splits.csv")
    assert {"train", "val", "test"} <= set(splits["split"])
    runs = pd.read_csv(wd / "results/summary/runs.csv")
    assert len(runs) == 3 * 2 * 2 and set(runs["model"]) == {"prithvi", "unet", "vit"}
    assert runs["miou"].between(0, 1).all()
    for model in ("prithvi", "unet", "vit"):
        run = json.loads((wd / f"results/train/{model}/f1_s0/run.json").read_text())
        assert run["normalization"] and run["weights"]
        metrics = json.loads((wd / f"results/evaluate/{model}/f1_s0/metrics.json").read_text())
        assert metrics["test_chips"] > 0 and 0 <= metrics["miou"] <= 1
        # one evaluate job per model: every run's metrics come from that run's own checkpoint
        for fraction, seed in itertools.product((1.0, 0.5), (0, 1)):
            run_dir = f"{model}/f{fraction:g}_s{seed}"
            metrics = json.loads((wd / f"results/evaluate/{run_dir}/metrics.json").read_text())
            assert metrics["checkpoint"] == f"results/train/{run_dir}/best.ckpt"
            assert (metrics["run"]["fraction"], metrics["run"]["seed"]) == (fraction, seed)
        assert "test mIoU" in (wd / f"results/logs/evaluate/{model}.log").read_text()
    prithvi = json.loads((wd / "results/train/prithvi/f1_s0/run.json").read_text())
    assert prithvi["weights"]["source"] == "pretrain", prithvi["weights"]
    aggregate = pd.read_csv(wd / "results/summary/aggregate.csv")
    assert len(aggregate) == 3 * 2
    for name in ("figure1_miou_vs_fraction.png", "per_class_iou.png", "confusion_matrices.png"):
        assert (wd / "results/summary" / name).read_bytes()[:4] == b"\x89PNG"

    for aoi in config["aois"]:
        with rasterio.open(wd / f"results/download/{aoi}/image.tif") as src:
            grid = (src.crs, src.transform, src.shape)
        for run in ("unet_f1_s0", "prithvi_f1_s0"):
            maps = wd / f"results/predict/{aoi}/{run}"
            for name in ("landcover.tif", "confidence.tif"):
                valid, errors, _ = cog_validate(maps / name)
                assert valid, (aoi, run, name, errors)
            with rasterio.open(maps / "landcover.tif") as src:
                assert (src.crs, src.transform, src.shape) == grid
                assert src.dtypes[0] == "uint8" and src.nodata == 255
                assert src.colormap(1)[0][:3] == classes.IO_COLOURS[1]
                assert set(np.unique(src.read(1)).tolist()) <= set(range(classes.NUM_CLASSES)) | {255}
            for name in ("preview.png", "comparison.png"):
                assert (maps / name).read_bytes()[:4] == b"\x89PNG"


def test_nothing_pending_after_a_complete_run(workflow_run):
    plans = plan(workflow_run)
    assert plans, "snakemake --summary listed no outputs"
    pending = {rule: p for rule, p in plans.items() if p != {"no update"}}
    assert not pending, pending


def test_chip_size_change_reruns_chips_and_later_only(workflow_run, tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config["chips"]["size"] = 24
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    plans = plan(workflow_run, changed)
    assert plans["chips"] == {"update pending"}
    assert "update pending" in plans["splits"]
    for upstream in ("demo", "search", "download"):
        assert plans[upstream] == {"no update"}, (upstream, plans[upstream])


def test_training_hyperparameter_change_reruns_training_and_later_only(workflow_run, tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config["models"]["unet"]["lr"] = 5e-4
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    out = snakemake(workflow_run, "--summary", configfile=changed).stdout
    rows = list(csv.DictReader(io.StringIO(out[out.index("output_file") :]), delimiter="\t"))
    pending = {
        (row["rule"], row["output_file"].split("/")[2] if row["rule"] in ("train", "evaluate") else "")
        for row in rows
        if row["plan"] != "no update"
    }
    assert ("train", "unet") in pending and ("evaluate", "unet") in pending
    assert ("summary", "") in pending
    assert not {("train", "prithvi"), ("train", "vit")} & pending, "only the changed model's runs rerun"
    assert {rule for rule, _ in pending} <= {"train", "evaluate", "summary", "predict", "all"}


def test_bad_config_stops_with_the_key_named(tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config["chips"]["size"] = "large"
    config["download"]["frame"] = 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    done = snakemake(tmp_path, "-n", configfile=bad, check=False)
    assert done.returncode != 0
    message = done.stdout + done.stderr
    assert "config key 'chips.size'" in message
    assert "config key 'download.frame'" in message
    assert not (tmp_path / "results").exists()


def test_demo_config_is_valid_and_plans_the_whole_chain(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    done = subprocess.run(
        [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--cores", "1", "-n"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for rule in ("demo", "search", "download", "chips", "splits"):
        assert f"rule {rule}:" in done.stdout or f"localrule {rule}:" in done.stdout, rule


def test_readme_rule_graph_is_the_workflows_own(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    done = subprocess.run(
        [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--rulegraph",
         "mermaid-js"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    readme = (REPO / "README.md").read_text()
    start = readme.index("```mermaid\n") + len("```mermaid\n")
    pasted = readme[start : readme.index("```", start)]
    # node ids and line order vary between calls: compare the named nodes and edges
    assert mermaid_graph(pasted) == mermaid_graph(done.stdout), "stale README graph: paste snakemake --rulegraph"


def mermaid_graph(text: str) -> tuple[set[str], set[tuple[str, str]]]:
    """Rule names and (from, to) edges of a `snakemake --rulegraph mermaid-js` flowchart."""
    names = dict(re.findall(r"^\s*(id\d+)\[(\w+)\]\s*$", text, flags=re.M))
    edges = {(names[a], names[b]) for a, b in re.findall(r"^\s*(id\d+) --> (id\d+)\s*$", text, flags=re.M)}
    return set(names.values()), edges
