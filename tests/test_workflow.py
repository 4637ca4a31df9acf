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
from browser import check_page, save_screenshot
from rio_cogeo.cogeo import cog_validate

from lulc import hls
from tests import io_legend as classes

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "config" / "tiny.yaml"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"

#: The tiny workflow's complete run (every stage, map regions with their samples, accuracy and pages) takes
#: several minutes on two cores, more on a busy machine: its tests get a longer limit than the suite's 900 s.
WORKFLOW_TIMEOUT_S = 1800
pytestmark = [pytest.mark.slow, pytest.mark.timeout(WORKFLOW_TIMEOUT_S)]


def snakemake(
    workdir: Path, *args: str, configfile: Path = TINY, check: bool = True, snakefile: Path = REPO / "Snakefile"
) -> subprocess.CompletedProcess:
    """Run the real snakemake CLI on the repository's Snakefile (or ``snakefile``) in ``workdir``."""
    command = [
        str(SNAKEMAKE),
        "--snakefile",
        str(snakefile),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
        "--cores",
        "2",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=WORKFLOW_TIMEOUT_S)
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


def test_a_label_free_map_region_is_tiled_predicted_mosaicked_and_compared(workflow_run):
    """The map region has no labels: imagery only, no label request, no chips or splits; four tiles per year,
    one COG per year in the region's zone, and a transition table between the years."""
    wd = workflow_run
    region = wd / "results/maps/tiny_beyond"
    tiles = pd.read_csv(region / "tiles.csv")
    assert len(tiles) == 4 and set(tiles["epsg"]) == {32615}
    for year in ("2022", "2023"):
        imagery = json.loads((region / year / "imagery.json").read_text())
        assert {f["collection"] for f in imagery["features"]} <= {"hls2-s30", "hls2-l30"}
        assert all(f["properties"]["datetime"].startswith(year) for f in imagery["features"])
        for tile in tiles["tile"]:
            assert sorted(p.name for p in (region / year / "tiles" / tile).iterdir()) == [
                "dates.csv", "frames.json", "image.tif", "mask.tif"
            ]  # no label.tif
            assert (region / year / "unet_f1_s0/tiles" / tile / "landcover.tif").exists()
        run = region / year / "unet_f1_s0"
        for name in ("landcover.tif", "confidence.tif"):
            valid, errors, _ = cog_validate(run / name)
            assert valid, (year, name, errors)
        with rasterio.open(run / "landcover.tif") as src:
            assert src.crs.to_epsg() == 32615 and src.nodata == 255  # (no overviews below one 256-px block)
            assert src.colormap(1)[0][:3] == classes.IO_COLOURS[1]
            assert src.tags()["TILES"] == "4" and src.tags()["REGION"] == "tiny_beyond"
            mapped = src.read(1)
        assert (mapped != 255).mean() > 0.9 and len(np.unique(mapped[mapped != 255])) >= 2
        assert (run / "preview.png").read_bytes()[:4] == b"\x89PNG"
    change = pd.read_csv(region / "unet_f1_s0/change_2022_to_2023.csv")
    assert {"from_class", "to_class", "pixels", "km2"} <= set(change.columns) and change["pixels"].sum() > 0
    assert (region / "unet_f1_s0/change_2022_to_2023.png").read_bytes()[:4] == b"\x89PNG"
    # imagery only: nothing of the map region reached the label, chip or split stages
    assert not list((wd / "results").glob("**/tiny_beyond/labels.json"))
    assert not (wd / "results/search/tiny_beyond").exists() and not (wd / "results/chips/tiny_beyond").exists()
    assert "tiny_beyond" not in (wd / "results/splits/splits.csv").read_text()


def test_a_labelled_map_region_is_compared_with_its_labels_tile_by_tile(workflow_run):
    """`labels: true`: the labels are searched per period, cut per tile core, mosaicked on the map's grid, and
    every run's map is compared with them (figure + agreement.json naming the training AOIs it overlaps)."""
    region = workflow_run / "results/maps/tiny_iowa_map"
    tiles = pd.read_csv(region / "tiles.csv")
    for tile in tiles["tile"]:
        with rasterio.open(region / "2023/tiles" / tile / "label.tif") as label:
            row = tiles.set_index("tile").loc[tile]
            assert (label.width, label.height) == (row["core_width"], row["core_height"])
    run = region / "2023/unet_f1_s0"
    with rasterio.open(region / "2023/label.tif") as label, rasterio.open(run / "landcover.tif") as mapped:
        assert (label.crs, label.transform, label.shape) == (mapped.crs, mapped.transform, mapped.shape)
        truth, predicted = label.read(1), mapped.read(1)
    assert len(np.unique(truth[truth != 255])) >= 2
    agreement = json.loads((run / "agreement.json").read_text())
    assert agreement["training_aois_overlapped"] == ["tiny_iowa"]
    both = (truth != 255) & (predicted != 255)
    assert agreement["pixel_accuracy"] == pytest.approx((truth[both] == predicted[both]).mean(), abs=1e-6)  # 6 decimals
    assert np.array(agreement["confusion"]).sum() == both.sum()
    assert (run / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    # the label-free region gets no label request and no comparison
    assert not (workflow_run / "results/maps/tiny_beyond/2023/labels.json").exists()
    assert not (workflow_run / "results/maps/tiny_beyond/2023/unet_f1_s0/agreement.json").exists()


def plan_files(workdir: Path, configfile: Path) -> dict[str, str]:
    """Output file -> plan ('no update', 'update pending', ...) from `snakemake --summary`."""
    out = snakemake(workdir, "--summary", configfile=configfile).stdout
    rows = csv.DictReader(io.StringIO(out[out.index("output_file") :]), delimiter="\t")
    return {row["output_file"]: row["plan"] for row in rows}


def test_adding_a_year_or_a_region_reruns_only_their_own_jobs(workflow_run, tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config["maps"]["regions"]["tiny_beyond"]["years"].append(2024)
    config["maps"]["regions"]["tiny_second"] = {"bbox": [-92.31, 42.04, -92.29, 42.06], "year": 2023,
                                                 "runs": [{"model": "unet"}]}  # fmt: skip
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    plans = plan_files(workflow_run, changed)
    pending = {path for path, plan in plans.items() if plan != "no update"}
    assert pending, "adding a year and a region planned nothing"
    # the region's own page (it shows every year) and the index of pages are the region's too
    own_pages = {"results/maps/tiny_beyond/viewer.html", "results/maps/index.html"}
    assert all("/2024/" in path or "tiny_second" in path or "change_2022_to_2024" in path or path in own_pages
               for path in pending if path.startswith("results/")), sorted(pending)  # fmt: skip
    assert "results/maps/tiny_second/2023/unet_f1_s0/landcover.tif" in pending
    assert "results/maps/tiny_beyond/2024/unet_f1_s0/landcover.tif" in pending
    assert plans["results/maps/tiny_beyond/2023/unet_f1_s0/landcover.tif"] == "no update"
    assert plans["results/maps/tiny_beyond/tiles.csv"] == "no update"
    assert plans["results/maps/tiny_beyond/2022/imagery.json"] == "no update"


def test_nothing_pending_after_a_complete_run(workflow_run):
    plans = plan(workflow_run)
    assert plans, "snakemake --summary listed no outputs"
    pending = {rule: p for rule, p in plans.items() if p != {"no update"}}
    assert not pending, pending


def test_chip_size_change_reruns_chips_and_later_only(workflow_run, tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config["chips"]["size"] = 48  # a multiple of the U-Net's 2^4 and of the 8-pixel patches
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    plans = plan(workflow_run, changed)
    assert plans["chips"] == {"update pending"}
    assert "update pending" in plans["splits"]
    for upstream in ("demo", "search", "download"):
        assert plans[upstream] == {"no update"}, (upstream, plans[upstream])


def test_training_hyperparameter_change_reruns_training_and_later_only(workflow_run, tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config["models"]["vit"]["lr"] = 5e-4  # vit is not tuned in the tiny config (the U-Net is: its own test)
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    out = snakemake(workflow_run, "--summary", configfile=changed).stdout
    rows = list(csv.DictReader(io.StringIO(out[out.index("output_file") :]), delimiter="\t"))
    pending = {
        (row["rule"], row["output_file"].split("/")[2] if row["rule"] in ("train", "evaluate") else "")
        for row in rows
        if row["plan"] != "no update"
    }
    assert ("train", "vit") in pending and ("evaluate", "vit") in pending
    assert ("summary", "") in pending
    assert not {("train", "prithvi"), ("train", "unet")} & pending, "only the changed model's runs rerun"
    assert {rule for rule, _ in pending} <= {"train", "evaluate", "summary", "predict", "all"}


def test_tuned_model_trains_with_its_tuned_values(workflow_run):
    """tune.models: [unet]: one tune job, the U-Net's runs use its best values and say so; the others do not."""
    wd = workflow_run
    best = yaml.safe_load((wd / "results/tune/unet/best.yaml").read_text())
    trials = pd.read_csv(wd / "results/tune/unet/trials.csv")
    assert len(trials) == 2 and best["budget"]["trials"] == 2 and best["budget"]["epochs"] == 1
    assert (wd / "results/tune/unet/history.png").read_bytes()[:4] == b"\x89PNG"
    assert not (wd / "results/tune/prithvi").exists() and not (wd / "results/tune/vit").exists()
    for fraction, seed in itertools.product((1, 0.5), (0, 1)):
        run = json.loads((wd / f"results/train/unet/f{fraction:g}_s{seed}/run.json").read_text())
        assert run["hyperparameters"]["lr"] == best["params"]["lr"]
        assert run["hyperparameter_sources"]["lr"] == "tune" and run["tuned"]["trial"] == best["trial"]
    prithvi = json.loads((wd / "results/train/prithvi/f1_s0/run.json").read_text())
    assert prithvi["tuned"] is None and "tune" not in prithvi["hyperparameter_sources"].values()


def test_search_space_change_reruns_that_tune_and_what_follows_only(workflow_run, tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config.setdefault("tune", {})["search_space"] = {"vit": {"lr": {"low": 1e-4, "high": 1e-3}}}
    untouched = tmp_path / "other_family.yaml"
    untouched.write_text(yaml.safe_dump(config))
    plans = plan(workflow_run, untouched)
    assert {rule: p for rule, p in plans.items() if p != {"no update"}} == {}, "vit's space is not searched here"

    config["tune"]["search_space"] = {"unet": {"lr": {"low": 1e-4, "high": 1e-3, "log": True}}}
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    out = snakemake(workflow_run, "--summary", configfile=changed).stdout
    rows = list(csv.DictReader(io.StringIO(out[out.index("output_file") :]), delimiter="\t"))
    pending = {
        (row["rule"], row["output_file"].split("/")[2] if row["rule"] in ("tune", "train", "evaluate") else "")
        for row in rows
        if row["plan"] != "no update"
    }
    assert {("tune", "unet"), ("train", "unet"), ("evaluate", "unet"), ("summary", "")} <= pending
    assert not {("train", "prithvi"), ("train", "vit"), ("evaluate", "vit")} & pending
    maps_of_the_run = {"map_predict", "map_mosaic", "map_change", "map_compare",  # regions mapped by unet runs
                       "map_sample", "map_accuracy", "map_change_sample", "map_change_accuracy",  # their assessment
                       "map_viewer", "aoi_viewer", "map_index"}  # and the pages that show them
    assert {rule for rule, _ in pending} <= {"tune", "train", "evaluate", "summary", "predict", "all"} | maps_of_the_run


def test_a_failed_training_job_leaves_no_stale_results(workflow_run, tmp_path):
    """Change a model's training, let its train jobs fail (Snakemake deletes their outputs and goes on), and
    rerun: the old evaluation, summary and maps must not pass for results of the new configuration. Snakemake
    calls a missing file whose consumers are up to date "missing / no update"; evaluate and predict carry the
    run's training identity in their params, and `all` asks for the training outputs, so the rerun trains again
    and converges to the current configuration's results."""
    workdir = tmp_path / "wd"
    shutil.copytree(workflow_run, workdir, symlinks=True)  # copy2 keeps mtimes: the copy is up to date
    config = yaml.safe_load(TINY.read_text())
    config["tune"]["enabled"] = False  # the U-Net's train jobs themselves fail, not a tune job before them
    config["models"]["unet"]["epochs"] = 3
    config["models"]["unet"]["encoder"] = "no_such_encoder"  # every unet train job fails at model build
    failing = tmp_path / "failing.yaml"
    failing.write_text(yaml.safe_dump(config))
    first = snakemake(workdir, "--keep-going", configfile=failing, check=False)
    assert first.returncode != 0, first.stdout[-3000:]
    assert not (workdir / "results/train/unet/f1_s0/best.ckpt").exists()

    again = snakemake(workdir, "--dry-run", configfile=failing, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing to be done" not in again.stdout + again.stderr
    planned = set(re.findall(r"^(?:local)?rule (\w+):", again.stdout, flags=re.M))
    assert {"train", "evaluate", "summary", "predict"} <= planned, planned

    config["models"]["unet"]["encoder"] = "resnet18"  # fixed: the rerun must converge to 3 epochs
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(yaml.safe_dump(config))
    snakemake(workdir, configfile=fixed)
    runs = pd.read_csv(workdir / "results/summary/runs.csv")
    assert (runs.loc[runs["model"] == "unet", "epochs"] == 3).all(), runs
    for model, entry in config["models"].items():
        for fraction, seed in itertools.product((1, 0.5), (0, 1)):
            metrics = json.loads((workdir / f"results/evaluate/{model}/f{fraction:g}_s{seed}/metrics.json").read_text())
            assert metrics["run"]["epochs_max"] == entry["epochs"], (model, fraction, seed)
    pending = {rule: p for rule, p in plan(workdir, fixed).items() if p != {"no update"}}
    assert not pending, pending


def test_every_model_beats_the_majority_class_baseline(workflow_run):
    """Learning, not just a number in [0, 1]: each model's mean test mIoU over its runs at the largest fraction
    is above the mIoU of always predicting the training majority class on the same test pixels."""
    for model in ("prithvi", "unet", "vit"):
        scores, baselines = [], []
        for seed in (0, 1):
            metrics = json.loads((workflow_run / f"results/evaluate/{model}/f1_s{seed}/metrics.json").read_text())
            scores.append(metrics["miou"])
            baselines.append(metrics["majority_baseline"]["miou"])
        assert np.mean(scores) > max(baselines), (model, scores, baselines)


def test_editing_a_module_reruns_exactly_the_rules_that_import_it(workflow_run, tmp_path):
    """Each rule's code version is computed from its script's transitive `lulc` imports (sub-packages included):
    an edit changes the params of exactly the rules that run the edited module. A model edit (the registry, a
    family, the training loop) changes no map-region mosaic, comparison, tiling or change table and no data
    stage; the shared metrics reach the scorers, not the models; a module no rule runs changes nothing."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("Snakefile", "workflow", "scripts", "lulc", "envs"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, repo / name)
    workdir = tmp_path / "wd"
    shutil.copytree(workflow_run, workdir, symlinks=True)

    def changed(edited: str) -> tuple[set[str], set[str]]:
        """(rules whose own params changed, rules with any update pending) after appending to lulc/<edited>."""
        module = repo / "lulc" / edited
        original = module.read_text()
        module.write_text(original + "\n# an edit\n")
        try:
            out = snakemake(workdir, "--summary", snakefile=repo / "Snakefile").stdout
        finally:
            module.write_text(original)
        rows = list(csv.DictReader(io.StringIO(out[out.index("output_file") :]), delimiter="\t"))
        own = {row["rule"] for row in rows if row["status"] == "params changed"}
        pending = {row["rule"] for row in rows if row["plan"] != "no update"}
        return own, pending

    data_stages = {"demo", "search", "download", "chips", "splits", "stats"}
    map_assembly = {"map_tiles", "map_search", "map_download", "map_mosaic", "map_compare", "map_change",
                    "map_viewer", "aoi_viewer", "map_index"}
    for edited in ("models/registry.py", "models/unet.py", "train.py", "recipe.py"):
        own, pending = changed(edited)
        assert {"train", "evaluate", "predict", "map_predict"} <= own, (edited, own)
        assert not (data_stages | map_assembly) & own, (edited, own)
        assert not data_stages & pending, (edited, pending)
    own, pending = changed("evaluate.py")
    assert own == {"evaluate"}, own
    assert pending <= {"evaluate", "summary", "all"}, pending
    own, _ = changed("metrics.py")  # the shared scores: the evaluation, and the maps' comparison figures
    assert {"evaluate", "predict", "map_compare"} <= own and not {"train", "tune"} & own, own
    assert changed("summary.py")[1] <= {"summary", "all"}
    assert not (data_stages | {"tune", "train", "evaluate"}) & changed("maps.py")[1]
    assert changed("code_version.py") == (set(), set())


def test_map_regions_get_a_sample_and_accuracy_or_agreement(workflow_run):
    """Every map gets a stratified sample (strata: its classes, units as maps.accuracy allocates them); a map
    with a reference (the demo's true land cover) gets accuracy and error-adjusted areas, the labelled region's
    map agreement with its labels, said as such; the change pair a sample of its change classes, their estimates
    and the later map's accuracy from that sample (Stehman)."""
    maps_dir = workflow_run / "results/maps"
    for folder in (maps_dir / "tiny_beyond/2022/unet_f1_s0", maps_dir / "tiny_beyond/2023/unet_f1_s0"):
        strata = pd.read_csv(folder / "sample/strata.csv")
        samples = pd.read_csv(folder / "sample/samples.csv")
        assert strata["units"].sum() == len(samples) == 150
        assert (strata.loc[strata["pixels"] > 0, "units"] >= strata.loc[strata["pixels"] > 0, "pixels"].clip(
            upper=10)).all()
        with rasterio.open(folder / "landcover.tif") as src:
            values = src.read(1)
        assert (values[samples["row"], samples["col"]] == samples["map_class"]).all()
    report = (maps_dir / "tiny_beyond/2022/unet_f1_s0/accuracy/accuracy.md").read_text()
    assert report.startswith("# Accuracy and area: tiny_beyond 2022") and "tiny_beyond_2022.tif" in report
    table = pd.read_csv(maps_dir / "tiny_beyond/2022/unet_f1_s0/accuracy/accuracy.csv")
    assert table["area_km²"].sum() == pytest.approx(table["mapped_area_km²"].sum(), rel=1e-9)
    change = maps_dir / "tiny_beyond/unet_f1_s0/change_2022_to_2023"
    strata = pd.read_csv(change / "sample/strata.csv")
    assert list(strata["class"])[-1] == "stable" and strata["units"].sum() == 150
    assert (change / "accuracy/accuracy.md").read_text().startswith("# Change classes: tiny_beyond 2022 → 2023")
    assert "Stehman 2014" in (change / "accuracy/after_map.md").read_text()
    period = next(p.name for p in (maps_dir / "tiny_iowa_map").iterdir() if (p / "label.tif").is_file())
    agreement = (maps_dir / f"tiny_iowa_map/{period}/unet_f1_s0/accuracy/accuracy.md").read_text()
    assert agreement.startswith("# Agreement with the labels (another map: not accuracy)")


def test_viewer_pages_show_every_map_offline(workflow_run, browser):
    """Every map region and training AOI gets a page, linked from results/maps/index.html; each page opens from
    file:// with no request to any host and no console error, lists one layer per year x run (per run for an
    AOI) and reads out the class its maps hold under the cursor (tests/browser.py, check_page); the label-free
    region's page has the change between the years and the processing tiles, the labelled ones the labels and
    the agreement."""
    wd = workflow_run
    config = yaml.safe_load(TINY.read_text())
    maps_dir = wd / "results/maps"
    linked = re.findall(r'href="([^"]+)"', (maps_dir / "index.html").read_text())
    pages = [maps_dir / region / "viewer.html" for region in config["maps"]["regions"]]
    pages += [wd / f"results/predict/{aoi}/viewer.html" for aoi in config["aois"]]
    assert sorted((maps_dir / href).resolve() for href in linked) == sorted(p.resolve() for p in pages)

    beyond = {f"unet_f1_s0 {year}": maps_dir / f"tiny_beyond/{year}/unet_f1_s0/landcover.tif" for year in (2022, 2023)}
    check_page(browser, maps_dir / "tiny_beyond/viewer.html", beyond)
    layers = browser.execute_script("return lulcViewer.layers.map(l => [l.kind, l.title])")
    assert ["change", "change unet_f1_s0 2022 → 2023"] in layers and ["imagery", "natural colour (frame 1)"] in layers
    tiles = pd.read_csv(maps_dir / "tiny_beyond" / "tiles.csv")
    assert browser.execute_script("return lulcViewer.vectors.find(v => v.id === 'tiles').paths.length") == len(tiles)
    sample = browser.execute_script("return lulcViewer.vectors.filter(v => v.points).map(v => v.points.length)")
    assert sample == [150, 150], "the assessed maps' sample points"
    save_screenshot(browser, "viewer_tiny_beyond")

    period = next(p.name for p in (maps_dir / "tiny_iowa_map").iterdir() if (p / "label.tif").is_file())
    check_page(browser, maps_dir / "tiny_iowa_map/viewer.html",
               {f"unet_f1_s0 {period}": maps_dir / f"tiny_iowa_map/{period}/unet_f1_s0/landcover.tif"})
    kinds = browser.execute_script("return lulcViewer.layers.map(l => l.kind)")
    assert kinds.count("agreement") == 1 and kinds.count("classes") == 2 and "imagery" in kinds

    aoi = next(iter(config["aois"]))
    runs = [f"{r['model']}_f1_s0" for r in config["predict"]["runs"]]
    check_page(browser, wd / f"results/predict/{aoi}/viewer.html",
               {run: wd / f"results/predict/{aoi}/{run}/landcover.tif" for run in runs})


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
