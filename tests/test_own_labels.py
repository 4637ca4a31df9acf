"""Your own labels, end to end: the tiny workflow with the demo's labels in the ESA WorldCover legend (a STAC
collection declaring ``classification:classes``), and with sparse field polygons (``labels.source: vector``),
through chips, splits, training, evaluation, the summary and a map region compared with its labels. The legend
used is the one every artefact records: label raster, chips, checkpoint, metrics, map tiles and mosaic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
import yaml

from lulc.legends import IGNORE_INDEX, preset, read_legend
from tests.test_workflow import TINY, WORKFLOW_TIMEOUT_S, snakemake

pytestmark = [pytest.mark.slow, pytest.mark.timeout(WORKFLOW_TIMEOUT_S)]

TRAIN, EVALUATE = "results/train/unet/f1_s0", "results/evaluate/unet/f1_s0"


def _small_tiny(workdir: Path, **changes: dict) -> Path:
    """The tiny config cut to one model, one fraction and seed, no tuning, and one map region (a training AOI
    mapped and compared with its labels); ``changes`` replace whole sections."""
    config = yaml.safe_load(TINY.read_text())
    config["demo"]["regions"].pop("tiny_beyond")
    config["splits"] |= {"train_fractions": [1.0], "seeds": [0]}
    config["models"] = {"unet": {"epochs": 6}}
    config["train"] |= {"models": ["unet"]}
    config["tune"] = {"enabled": False}
    config["predict"] = {"runs": [{"model": "unet"}]}
    config["maps"] = {"tile_km": 1.92, "regions": {"iowa_map": {"aoi": "tiny_iowa", "labels": True,
                                                                "runs": [{"model": "unet"}]}}}  # fmt: skip
    for key, value in changes.items():
        config[key] = value if not isinstance(config.get(key), dict) else config[key] | value
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _check_legend_everywhere(workdir: Path, legend_name: str) -> None:
    """Every artefact of the chain records the legend the labels were given in."""
    legend = preset(legend_name)
    for aoi in ("tiny_iowa", "tiny_valley"):
        assert read_legend(workdir / f"results/download/{aoi}/label.tif") == legend
        summary = json.loads((workdir / f"results/chips/{aoi}/summary.json").read_text())
        assert summary["legend"] == legend.to_dict()
        assert summary["periods"]["labels"] == "2023-01-01/2023-12-31" and len(summary["periods"]["imagery"]) == 3
    checkpoint = torch.load(workdir / TRAIN / "best.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["legend"] == legend.to_dict()  # the checkpoint's class table is the legend's
    run = json.loads((workdir / TRAIN / "run.json").read_text())
    assert run["legend"] == legend.to_dict() and run["labels"]["legend"] == legend_name
    assert run["model_info"]["num_classes"] == legend.num_classes
    metrics = json.loads((workdir / EVALUATE / "metrics.json").read_text())
    assert metrics["classes"] == list(legend.names) and metrics["legend"] == legend_name
    assert set(metrics["iou"]) == set(legend.names)
    runs = pd.read_csv(workdir / "results/summary/runs.csv")
    assert [c[4:] for c in runs.columns if c.startswith("iou_")] == list(legend.names)
    mosaic = workdir / "results/maps/iowa_map/2023/unet_f1_s0/landcover.tif"
    assert read_legend(mosaic) == legend
    with rasterio.open(mosaic) as src:
        colours = src.colormap(1)
        assert all(colours[i][:3] == rgb for i, rgb in enumerate(legend.colours))
        assert src.tags()["CLASSES"].split(",")[0] == f"0={legend.names[0]}"
    agreement = json.loads((workdir / "results/maps/iowa_map/2023/unet_f1_s0/agreement.json").read_text())
    assert np.array(agreement["confusion"]).sum() > 0


def test_worldcover_labels_from_a_stac_collection(tmp_path):
    """The demo's labels written in WorldCover codes (10..100, declared with color-hint): trained, evaluated,
    summarised and mapped in the WorldCover legend, with WorldCover colours."""
    config = _small_tiny(
        tmp_path,
        demo={"label_legend": "esa-worldcover"},
        stac={"labels": {"source": "demo", "collections": ["esa-worldcover"]}},
        labels={"legend": "esa-worldcover"},
    )
    snakemake(tmp_path, configfile=config)
    _check_legend_everywhere(tmp_path, "esa-worldcover")
    with rasterio.open(tmp_path / "results/download/tiny_iowa/label.tif") as src:
        indices = set(np.unique(src.read(1)).tolist()) - {IGNORE_INDEX}
    assert {0, 3} <= indices  # tree cover and cropland, as WorldCover indices


def test_sparse_labels_from_field_polygons(tmp_path):
    """A few labelled polygons per AOI (a GeoPackage, EPSG:4326, class names): most pixels carry no class, chips
    with too few labelled pixels are skipped and counted, and the chain runs on what is labelled."""
    config = _small_tiny(
        tmp_path,
        demo={"label_polygons": 40},
        labels={"legend": "io-lulc-9", "source": "vector", "path": "results/demo/polygons/{aoi}.gpkg"},
        chips={"min_valid_fraction": 0.0, "min_labelled_pixels": 20},
    )
    snakemake(tmp_path, configfile=config)
    _check_legend_everywhere(tmp_path, "io-lulc-9")
    with rasterio.open(tmp_path / "results/download/tiny_iowa/label.tif") as src:
        labelled = float(np.mean(src.read(1) != IGNORE_INDEX))
        assert src.tags()["LABEL_SOURCE"] == "vector"
    assert 0.01 < labelled < 0.5  # sparse: part of the AOI only
    summary = json.loads((tmp_path / "results/chips/tiny_iowa/summary.json").read_text())
    assert summary["dropped_few_labelled_pixels"] > 0 and summary["kept"] > 0
    assert summary["min_labelled_pixels"] == 20
