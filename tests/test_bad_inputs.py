"""The bad-input matrix: every mistake a user can make in the configuration is caught at start-up, before any
job, with a message naming the key (or file) and what to do; a run-time mistake prints one line on the
console, with the traceback in the rule's log. docs/bad_inputs.md lists every case with what it produces
(a test keeps the two in step).

Mistakes in files (truncated COGs, JSON, chip stores, checkpoints, pickled checkpoints, killed jobs' leftovers)
are covered by tests/test_integrity.py and tests/test_train.py; an offline real-data config by
tests/test_search.py; an empty search by tests/test_slurm.py and tests/test_search.py.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from lulc.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "config" / "tiny.yaml"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"

Edit = Callable[[dict[str, Any], Path], None]


def _set(path: str, value: Any) -> Edit:
    """An edit that sets the dotted config key ``path`` to ``value``."""

    def edit(config: dict[str, Any], tmp: Path) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return edit


def _aoi_file(content: str | None, name: str = "aoi.geojson") -> Edit:
    """An AOI read from a vector file written with ``content`` (None: the file does not exist)."""

    def edit(config: dict[str, Any], tmp: Path) -> None:
        path = tmp / name
        if content is not None:
            path.write_text(content)
        config["aois"]["tiny_iowa"] = {"file": str(path), "year": 2023}

    return edit


def _edits(*edits: Edit) -> Edit:
    def edit(config: dict[str, Any], tmp: Path) -> None:
        for one in edits:
            one(config, tmp)

    return edit


def _aoi_shapefile_without_crs(config: dict[str, Any], tmp: Path) -> None:
    """An AOI from a shapefile written without its .prj: no CRS to read the coordinates in."""
    import geopandas as gpd
    from shapely.geometry import box

    path = tmp / "aoi.shp"
    gpd.GeoDataFrame(geometry=[box(-93.47, 42.035, -93.43, 42.065)], crs=None).to_file(path)
    config["aois"]["tiny_iowa"] = {"file": str(path), "year": 2023}



#: (case id, edit, expected text in the message). Every case id is listed in docs/bad_inputs.md.
CASES: list[tuple[str, Edit, str]] = [
    # keys, types and ranges (the schema)
    ("unknown-section", _set("chip", {"size": 32}), "config key 'chip': Additional properties"),
    ("unknown-key", _set("download.frame", 3), "config key 'download.frame'"),
    ("wrong-type", _set("chips.size", "large"), "config key 'chips.size': 'large' is not of type 'integer'"),
    ("chip-size-too-small", _set("chips.size", 4), "config key 'chips.size': 4 is less than the minimum"),
    ("cloud-cover-range", _set("stac.imagery.max_cloud_cover", 150), "stac.imagery.max_cloud_cover"),
    ("unknown-signing", _set("stac.imagery.signing", "sas"), "stac.imagery.signing"),
    ("unknown-mask-flag", _set("download.mask_flags", ["clouds"]), "download.mask_flags.0"),
    ("resolution-zero", _set("download.resolution", 0), "download.resolution"),
    ("frames-zero", _set("download.frames", 0), "download.frames"),
    ("fraction-zero", _set("splits.train_fractions", [1.0, 0.0]), "splits.train_fractions.1"),
    ("fraction-above-one", _set("splits.train_fractions", [1.5]), "splits.train_fractions.0"),
    ("duplicate-seeds", _set("splits.seeds", [0, 0]), "splits.seeds"),
    ("negative-buffer", _set("splits.buffer_m", -1), "splits.buffer_m"),
    ("unknown-precision", _set("train.precision", "fp8"), "train.precision"),
    ("zero-devices", _set("train.devices", 0), "train.devices"),
    ("zero-learning-rate", _set("models.unet.lr", 0), "models.unet.lr"),
    ("unknown-model-key", _set("models.unet.lr_max", 1), "models.unet.lr_max"),
    ("model-without-type", _set("models.segformer", {"lr": 1e-3}), "models.segformer"),
    ("unknown-decoder", _set("models.prithvi.decoder", "UNetDecoder"), "models.prithvi.decoder"),
    ("bad-device", _set("predict.device", "gpu0"), "predict.device"),
    # cross-field rules (lulc.config.check_config)
    ("split-fractions-sum", _set("splits.split_fractions", {"train": 0.7, "val": 0.2, "test": 0.2}),
     "splits.split_fractions': train + val + test must sum to 1"),
    ("chip-stride-above-size", _set("chips.stride", 64), "chips.stride': 64 is larger than chips.size 32"),
    ("predict-stride-above-tile", _set("predict", {"tile": 32, "stride": 48}), "predict.stride': 48 is larger"),
    ("fp16-on-cpu", _set("predict", {"device": "cpu", "precision": "fp16"}), "predict.precision': fp16 needs"),
    ("unet-depth-vs-chip", _set("chips.size", 40), "models.unet.encoder_depth': chip size 40"),
    ("unet-decoder-channels", _set("models.unet.decoder_channels", [8, 8]), "models.unet.decoder_channels"),
    ("fcn-patch-not-power-of-two", _set("models.prithvi", {"backbone": "prithvi_eo_v2_600"}),
     "models.prithvi': the FCN decoder needs a power-of-two patch size, got 14"),
    ("chip-not-multiple-of-patch", _set("models.vit.patch_size", 64), "models.vit': chip size 32"),
    ("unknown-model-family", _set("models.seg", {"type": "segformer"}), "models.seg.type"),
    ("standin-weights-on-a-baseline", _set("models.vit.weights", "standin"), "models.vit.weights'"),
    ("hf-weights-unreleased-backbone", _set("models.prithvi", {"weights": "hf"}), "has no official release"),
    ("backbone-statistics-on-unet", _set("models.unet.normalization", "backbone"), "models.unet.normalization'"),
    ("hf-weights-on-vit", _set("models.vit.weights", "hf"), "models.vit.weights'"),
    ("hf-weights-not-cached", _set("models.prithvi", {"backbone": "prithvi_eo_v1_100", "weights": "hf"}),
     "not in the local Hugging Face cache"),
    ("untrained-model-listed", _set("train.models", ["unet", "segformer"]), "train.models': 'segformer'"),
    ("predict-run-untrained", _edits(_set("train.models", ["unet"]), _set("predict.runs", [{"model": "vit"}])),
     "predict.runs.0': model 'vit' is not trained"),
    ("predict-run-fraction", _set("predict.runs", [{"model": "unet", "fraction": 0.25}]),
     "predict.runs.0': fraction 0.25"),
    ("season-window-count", _set("download.season_windows", [["03-01", "05-31"]]),
     "download.season_windows': 1 window(s) given but download.frames = 3"),
    ("season-window-day", _set("download.season_windows", [["02-30", "03-31"]] * 3),
     "download.season_windows"),
    ("geographic-crs", _set("download.crs", "EPSG:4326"), "download.crs': EPSG:4326 is geographic"),
    ("unknown-epsg", _set("download.crs", "EPSG:999999"), "download.crs': EPSG:999999 is not a known EPSG"),
    ("crs-in-feet", _set("download.crs", "EPSG:2263"), "download.crs': EPSG:2263 measures in"),
    ("chip-larger-than-aoi", _set("chips.size", 256), "chips.size': 256 pixels is larger than the grid"),
    ("missing-static-catalog", _set("stac.imagery.source", "nowhere/catalog.json"),
     "stac.imagery.source': 'nowhere/catalog.json' is neither"),
    # the training recipe, evaluation and tuning
    ("aux-head-with-upernet", _set("models.prithvi", {"backbone_kwargs": {"patch_size": [1, 8, 8]},
                                                      "decoder": "UperNetDecoder", "aux_head": {"enabled": True}}),
     "models.prithvi.aux_head.enabled'"),
    ("aux-head-too-many-convs", _set("models.vit.aux_head", {"enabled": True, "num_convs": 5}),
     "models.vit.aux_head.num_convs': 5 upsampling blocks"),
    ("layer-decay-with-frozen-encoder", _set("models.vit", {"layer_decay": 0.9, "freeze_encoder": True}),
     "models.vit.layer_decay'"),
    ("unknown-normalization", _set("models.unet.normalization", "datasets"),
     "models.unet.normalization': unknown statistics 'datasets'"),
    ("evaluate-stride-above-crop", _set("evaluate", {"mode": "sliding_window", "crop": 16, "stride": 32}),
     "evaluate.stride': 32 is larger than evaluate.crop 16"),
    ("tune-model-untrained", _set("tune.models", ["segformer"]), "tune.models': 'segformer' is not trained"),
    ("tune-fraction", _set("tune.fraction", 0.3), "tune.fraction': 0.3 is not one of splits.train_fractions"),
    ("tune-seed", _set("tune.seed", 9), "tune.seed': 9 is not one of splits.seeds"),
    ("tune-budget-searched", _set("tune.search_space.unet", {"epochs": {"low": 1, "high": 4}}),
     "tune.search_space.unet.epochs': epochs is the per-trial budget"),
    ("tune-unknown-hyperparameter", _set("tune.search_space.vit", {"depth": {"low": 1, "high": 4}}),
     "tune.search_space.vit.depth': not a hyperparameter of a vit model"),
    ("tune-empty-range", _set("tune.search_space.unet", {"lr": {"low": 1e-2, "high": 1e-4}}),
     "tune.search_space.unet.lr': low (0.01) must be below high (0.0001)"),
    ("tune-log-range-from-zero", _set("tune.search_space.unet", {"weight_decay": {"low": 0, "high": 0.1, "log": True}}),
     "tune.search_space.unet.weight_decay': a log range needs low > 0"),
    ("tune-range-shape", _set("tune.search_space.unet", {"lr": {"min": 1e-4}}),
     "tune.search_space.unet.lr': expected a range {low, high, log} or {choices: [...]}"),
    # AOIs
    ("aoi-bbox-reversed", _set("aois.tiny_iowa.bbox", [-93.43, 42.035, -93.47, 42.065]), "aois.tiny_iowa"),
    ("aoi-bbox-three-numbers", _set("aois.tiny_iowa.bbox", [-93.47, 42.035, -93.43]), "aois.tiny_iowa.bbox"),
    ("aoi-across-antimeridian", _set("aois.tiny_iowa.bbox", [179.5, -17.0, -179.5, -16.0]),
     "split an AOI that crosses the antimeridian"),
    ("aoi-latitude-range", _set("aois.tiny_iowa.bbox", [-93.47, 42.0, -93.43, 95.0]), "aois.tiny_iowa"),
    ("aoi-bbox-and-file", _set("aois.tiny_iowa.file", "x.geojson"), "give exactly one of 'bbox' or 'file'"),
    ("aoi-missing-file", _aoi_file(None), "aois.tiny_iowa"),
    ("aoi-empty-file", _aoi_file(json.dumps({"type": "FeatureCollection", "features": []})), "aois.tiny_iowa"),
    ("aoi-file-without-crs", _aoi_shapefile_without_crs, "has no CRS"),
    ("aoi-not-a-vector-file", _aoi_file("this is not GeoJSON", "aoi.gpkg"), "aois.tiny_iowa"),
    ("aoi-year-and-dates", _set("aois.tiny_iowa.start", "2023-03-01"), "aois.tiny_iowa"),
    ("aoi-start-after-end", _set("aois.tiny_iowa", {"bbox": [-93.47, 42.035, -93.43, 42.065],
                                                     "start": "2023-10-01", "end": "2023-03-01"}),
     "start 2023-10-01 is after end 2023-03-01"),
    ("aoi-bad-date", _set("aois.tiny_iowa", {"bbox": [-93.47, 42.035, -93.43, 42.065],
                                              "start": "2023-02-30", "end": "2023-03-01"}), "aois.tiny_iowa"),
    ("aoi-name", _set("aois.tiny iowa", {"bbox": [-93.47, 42.035, -93.43, 42.065], "year": 2023}), "tiny iowa"),
    ("no-aois", _set("aois", {}), "config key 'aois'"),
    # map regions
    ("map-region-without-place", _set("maps.regions.tiny_beyond", {"year": 2023}),
     "maps.regions.tiny_beyond': give exactly one of bbox, file or aoi"),
    ("map-region-without-period", _set("maps.regions.tiny_beyond", {"bbox": [-92.32, 42.035, -92.28, 42.065]}),
     "maps.regions.tiny_beyond': give years, year or start/end"),
    ("map-region-unknown-aoi", _set("maps.regions.tiny_beyond", {"aoi": "nowhere"}),
     "maps.regions.tiny_beyond.aoi': 'nowhere' is not an AOI"),
    ("map-region-years-and-range", _set("maps.regions.tiny_beyond.start", "2023-03-01"),
     "maps.regions.tiny_beyond': give years (or year) or start/end, not both"),
    ("map-region-bbox-reversed", _set("maps.regions.tiny_beyond.bbox", [-92.28, 42.035, -92.32, 42.065]),
     "maps.regions.tiny_beyond.bbox: min_lon -92.28 must be less than max_lon -92.32"),
    ("map-region-run-untrained", _set("maps.regions.tiny_beyond.runs", [{"model": "segformer"}]),
     "maps.regions.tiny_beyond.runs.0': model 'segformer' is not trained"),
    ("map-region-geographic-crs", _set("maps.regions.tiny_beyond.crs", "EPSG:4326"),
     "maps.regions.tiny_beyond.crs': EPSG:4326 is geographic"),
    ("map-change-unknown-period", _set("maps.regions.tiny_beyond.change", [[2022, 2030]]),
     "maps.regions.tiny_beyond.change.0': '2030' is not one of the region's periods"),
    ("map-missing-static-catalog", _set("maps.regions.tiny_beyond.imagery", {"source": "nowhere/catalog.json",
                                                                             "collections": ["hls2-s30"]}),
     "maps.regions.tiny_beyond.imagery.source': 'nowhere/catalog.json' is neither"),
    ("labels-vector-without-path", _set("labels", {"source": "vector", "legend": "io-lulc-9"}),
     "labels.path': labels.source is 'vector', which needs the file"),
    ("labels-raster-without-legend", _set("labels", {"source": "raster", "path": "x.tif"}),
     "labels.legend': labels.source 'raster' declares no class table"),
    ("labels-unknown-legend", _set("labels.legend", "corine"), "labels.legend': 'corine' is neither a preset"),
    ("labels-legend-code-twice", _set("labels.legend", {"classes": [{"name": "a", "codes": [1]},
                                                                    {"name": "b", "codes": [1]}]}),
     "labels.legend': legend 'custom': code 1 maps to both 'a' and 'b'"),
    ("labels-file-missing", _set("labels", {"source": "vector", "path": "survey_{aoi}.gpkg", "legend": "io-lulc-9"}),
     "survey_tiny_iowa.gpkg (the labels of AOI tiny_iowa) does not exist"),
    ("map-tile-size-zero", _set("maps.tile_km", 0), "config key 'maps.tile_km': 0 is less than or equal to"),
    ("map-region-name", _set("maps.regions.tiny beyond", {"bbox": [-92.32, 42.035, -92.28, 42.065], "year": 2023}),
     "tiny beyond"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "edit", "expected"), CASES, ids=[case for case, _, _ in CASES])
def test_every_bad_config_stops_at_start_up_naming_the_key(case, edit, expected, tmp_path):
    config = yaml.safe_load(TINY.read_text())
    edit(config, tmp_path)
    with pytest.raises(ConfigError) as error:
        load_config(copy.deepcopy(config), SCHEMA, REPO)
    assert expected in str(error.value), (case, str(error.value))
    assert "config key '" in str(error.value)


def test_the_matrix_has_forty_cases_and_the_docs_list_each():
    assert len(CASES) >= 40
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", (REPO / "docs" / "bad_inputs.md").read_text(), re.M))
    assert {case for case, _, _ in CASES} <= documented, sorted({case for case, _, _ in CASES} - documented)


def test_an_unquoted_yaml_date_is_a_date(tmp_path):
    """The README's own example `start: 2023-03-01` (YAML reads it as a date, not a string) is accepted."""
    text = TINY.read_text().replace("    year: 2023\n", "    start: 2023-03-01\n    end: 2023-10-31\n", 1)
    config = yaml.safe_load(text)
    assert load_config(config, SCHEMA, REPO)["aois"]["tiny_iowa"]["start"] == "2023-03-01"


def _snakemake(workdir: Path, configfile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "1",
         *args, "--configfile", str(configfile)],  # last: --configfile takes several values and swallows targets
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_console_shows_the_message_not_a_traceback(tmp_path):
    """Through the real snakemake CLI: a bad config stops before any job with the keys and the file named;
    a run-time mistake (a search that finds nothing) prints one line, the traceback stays in the rule's log."""
    config = yaml.safe_load(TINY.read_text())
    config["download"]["crs"] = "EPSG:4326"
    config["models"]["unet"]["encoder_depth"] = 5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    done = _snakemake(tmp_path / "wd", bad, "-n")
    console = done.stdout + done.stderr
    assert done.returncode != 0
    assert "config key 'download.crs'" in console and "config key 'models.unet" in console and str(bad) in console
    assert "Traceback" not in console and 'File "' not in console, console
    assert not (tmp_path / "wd" / "results").exists()

    catalog = tmp_path / "empty" / "catalog.json"
    catalog.parent.mkdir()
    catalog.write_text(json.dumps({"type": "Catalog", "id": "empty", "stac_version": "1.0.0",
                                   "description": "no items", "links": []}))  # fmt: skip
    config = yaml.safe_load(TINY.read_text())
    for query in config["stac"].values():
        query["source"] = str(catalog)
    empty = tmp_path / "empty.yaml"
    empty.write_text(yaml.safe_dump(config))
    done = _snakemake(tmp_path / "wd", empty, "results/search/tiny_iowa/imagery.json")
    console = done.stdout + done.stderr
    assert done.returncode != 0
    assert "ERROR: AOI 'tiny_iowa': no STAC items" in console, console[-3000:]
    assert "Traceback" not in console, console[-3000:]
    log = (tmp_path / "wd" / "results" / "logs" / "search" / "tiny_iowa.log").read_text()
    assert "Traceback" in log and "no STAC items" in log
    assert not (tmp_path / "wd" / "results" / "search" / "tiny_iowa" / "imagery.json").exists()


def test_invalid_yaml_is_named_with_its_file_and_line(tmp_path):
    """Snakemake's own message for a broken --configfile names neither; `python -m lulc.config` does."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("aois:\n  x: [1, 2\n  y: 3\n")
    done = subprocess.run([sys.executable, "-m", "lulc.config", str(broken), str(TINY)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1
    assert f"invalid YAML in {broken}, line 3, column 4" in done.stderr, done.stderr
    assert f"{TINY}: valid" in done.stdout
