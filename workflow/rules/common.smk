# Shared helpers: config validation at start-up (the schema, then lulc.config's cross-field rules), AOI names,
# code versions and per-rule input functions.
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from lulc.code_version import code_version as package_code_version
from lulc.maps import (
    map_predict_geometry,
    map_tiles_in,
    parse_map_regions,
    region_crs,
    training_aois_overlapped,
)
from lulc.config import (
    EVALUATE_RUNTIME_KEYS,
    PREDICT_RUNTIME_KEYS,
    TRAIN_RUNTIME_KEYS,
    ConfigError,
    load_config,
)

# A mistake in the configuration stops the run before any job, with the keys named and no traceback.
try:
    load_config(config, workflow.source_path("../schemas/config.schema.yaml"))
except ConfigError as error:
    sources = [
        str(path) for path in workflow.overwrite_configfiles or ["config/config.yaml"]
    ]
    sys.exit(f"{error}\n(configuration: {', '.join(sources)})")

AOIS = list(config["aois"])
REPO = Path(workflow.current_basedir).parents[1]
PACKAGE = REPO / "lulc"


def code_version(script):
    """Digest of the `lulc` modules that a rule script runs, found from its imports (lulc.code_version), so
    that editing any of them reruns the rule (Snakemake does not track imported code by itself).
    """
    return package_code_version(REPO / script, PACKAGE)


# Memory of each rule's job in MB, in one place (a SLURM profile may raise it per rule with set-resources).
MEM_MB = {
    "demo": 2000,
    "search": 1000,
    "download": 4000,
    "chips": 2000,
    "export_chips": 2000,
    "splits": 2000,
    "stats": 2000,
    "pretrain": 4000,
    "train": 4000,
    "tune": 4000,
    "evaluate": 4000,
    "summary": 2000,
    "predict": 4000,
    "map_tiles": 1000,
    "map_mosaic": 2000,
}


def cuda_visible():
    """Whether this machine shows an NVIDIA GPU (without importing torch, which costs seconds at start-up)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return shutil.which("nvidia-smi") is not None  # installed with the NVIDIA driver


def gpus(device, count=1):
    """GPUs a job asks the scheduler for: `count` where the rule will run on a GPU (`gpu` / `cuda...`, or `auto`
    on a machine that shows one), else 0. A SLURM profile sets the GPU request of the GPU rules itself.
    """
    on_gpu = (
        device in ("gpu",)
        or str(device).startswith("cuda")
        or (device == "auto" and cuda_visible())
    )
    return int(count) if on_gpu else 0


def canonical(value):
    """A copy of a config section with keys sorted at every level, so that params (and with them
    Snakemake's rerun decisions) depend on the settings, not on the order they were written in.
    """
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


def uses_demo(query):
    return query["source"] == "demo"


def demo_inputs(wildcards):
    """The demo catalog, where a search reads it."""
    stac = config["stac"]
    if uses_demo(stac["imagery"]) or uses_demo(stac["labels"]):
        return "results/demo/catalog.json"
    return []


def export_outputs():
    """Per-chip GeoTIFF exports, when chips.export_geotiff is set."""
    if config["chips"]["export_geotiff"]:
        return expand("results/chips/{aoi}/geotiff", aoi=AOIS)
    return []


# ---- training, pretraining and evaluation targets ----

TRAIN_MODELS = list(config["train"]["models"])


def fraction_labels():
    """Training fractions as written in paths and splits.csv: 1.0 -> "1", 0.125 -> "0.125"."""
    return [f"{float(f):g}" for f in config["splits"]["train_fractions"]]


def pretrain_input(wildcards):
    """The pretrain rule's checkpoint where `models.<model>.weights` is `pretrain`."""
    if config["models"][wildcards.model].get("weights") == "pretrain":
        return f"results/pretrain/{wildcards.model}/checkpoint.pt"
    return []


def dataset_stats_input(wildcards):
    """The stats rule's per-band statistics where `models.<model>.normalization` is `dataset`."""
    if config["models"][wildcards.model].get("normalization") == "dataset":
        return "results/stats/normalization.json"
    return []


def weights_file_input(wildcards):
    """A local weights file named in `models.<model>.weights` (tracked, so replacing it reruns training)."""
    weights = config["models"][wildcards.model].get("weights")
    if weights in (None, "none", "pretrain", "hf"):
        return []
    return weights


PRETRAIN_MODEL_KEYS = ("type", "backbone", "backbone_kwargs", "normalization")


def pretrain_model_params(wildcards):
    entry = config["models"][wildcards.model]
    return canonical({key: entry[key] for key in PRETRAIN_MODEL_KEYS if key in entry})


# The train rule's params, shared with the identity below. Runtime-only keys (progress bar, workers, threads,
# the list of models) would rerun every run.
TRAIN_PARAMS = canonical(
    {k: v for k, v in config["train"].items() if k not in TRAIN_RUNTIME_KEYS}
)
TRAIN_CODE = code_version("scripts/train.py")
PRETRAIN_CODE = code_version("scripts/pretrain.py")


TUNE = config["tune"]
TUNE_CODE = code_version("scripts/tune.py")


def tune_models():
    """Models whose runs train with tuned values (`tune.models`, default every model of train.models)."""
    if not TUNE["enabled"]:
        return []
    return list(TUNE["models"] if TUNE["models"] is not None else TRAIN_MODELS)


def tune_params(model):
    """The tune settings behind one model's search: the budget, the sampler and its family's space only, so
    that a change to another family's space reruns nothing here. `enabled` and `models` choose what is
    tuned, not how."""
    family = config["models"][model].get("type", model)
    settings = {k: v for k, v in TUNE.items() if k not in ("enabled", "models")}
    settings["search_space"] = {family: TUNE["search_space"][family]}
    seed = TUNE["seed"] if TUNE["seed"] is not None else config["splits"]["seeds"][0]
    return canonical({"tune": settings, "seed": seed})


def searched_keys(model):
    """The hyperparameters the model's family space searches: their configured values never reach a trial."""
    family = config["models"][model].get("type", model)
    return set(TUNE["search_space"][family])


def tune_model_params(wildcards):
    """The model entry as its search sees it: without `epochs` (trials train tune.epochs) and the searched keys."""
    skip = searched_keys(wildcards.model) | {"epochs"}
    entry = config["models"][wildcards.model]
    return canonical({k: v for k, v in entry.items() if k not in skip})


def tune_train_params(wildcards):
    """TRAIN_PARAMS without the searched train keys (warmup_epochs, warmup_iters)."""
    skip = searched_keys(wildcards.model)
    return {k: v for k, v in TRAIN_PARAMS.items() if k not in skip}


def tuned_input(wildcards):
    """The tune rule's best values, where this model trains with them."""
    if wildcards.model in tune_models():
        return f"results/tune/{wildcards.model}/best.yaml"
    return []


def tune_identity(wildcards):
    """The tune settings and code behind a tuned model's runs (None where it is not tuned): a changed search
    reruns its training even where the tune job failed."""
    if wildcards.model not in tune_models():
        return None
    return {"tune": tune_params(wildcards.model), "code": TUNE_CODE}


def pretrain_identity(wildcards):
    """The pretraining settings behind a model whose weights are `pretrain` (None otherwise)."""
    if config["models"][wildcards.model].get("weights") != "pretrain":
        return None
    return {
        "model": pretrain_model_params(wildcards),
        "pretrain": canonical(config["pretrain"]),
        "code": PRETRAIN_CODE,
    }


def training_identity(wildcards):
    """A digest of everything a model's runs are trained from (its `models.<name>` entry, the train settings,
    the pretraining settings where it uses them, and the code).

    Evaluate and predict carry it in their params: when a training job fails or is killed after a change,
    Snakemake deletes its outputs, and a missing checkpoint whose consumers are up to date is "missing / no
    update" to Snakemake, so without this the old evaluation and maps would survive a rerun. With it, every
    downstream output of a changed run is out of date until that run has trained with the current settings.
    """
    identity = {
        "model": canonical(config["models"][wildcards.model]),
        "train": TRAIN_PARAMS,
        "pretrain": pretrain_identity(wildcards),
        "tune": tune_identity(wildcards),
        "code": TRAIN_CODE,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[
        :16
    ]


def model_runs(pattern):
    """`pattern` for every fraction x seed, keeping `{model}` a wildcard: one model's runs."""
    return expand(
        pattern,
        model="{model}",
        fraction=fraction_labels(),
        seed=config["splits"]["seeds"],
    )


def every_run(pattern):
    """`pattern` for every model of `train.models` x fraction x seed."""
    return expand(model_runs(pattern), model=TRAIN_MODELS)


def evaluation_outputs(name):
    """One evaluation file per model x fraction x seed."""
    return every_run(f"results/evaluate/{{model}}/f{{fraction}}_s{{seed}}/{name}")


EVALUATE = config["evaluate"]


def evaluate_params():
    """The evaluate rule's `evaluate:` settings: only `mode` in chips mode (crop and stride do not apply),
    never the runtime keys (batch_size), so changing them reruns nothing."""
    if EVALUATE["mode"] == "chips":
        return {"mode": "chips"}
    return canonical(
        {k: v for k, v in EVALUATE.items() if k not in EVALUATE_RUNTIME_KEYS}
    )


def sliding_window_images(wildcards):
    """The downloaded images the test blocks are cut from, in `evaluate.mode: sliding_window` only."""
    if EVALUATE["mode"] != "sliding_window":
        return []
    return expand("results/download/{aoi}/image.tif", aoi=AOIS)


def sliding_window_manifests(wildcards):
    """The chip manifests (each chip's window on the image), in `evaluate.mode: sliding_window` only."""
    if EVALUATE["mode"] != "sliding_window":
        return []
    return expand("results/chips/{aoi}/manifest.parquet", aoi=AOIS)


# ---- land-cover maps ----

PREDICT = config["predict"]


def predict_runs():
    """(model, fraction label, seed) of every run to map. `predict.runs: null` maps every model of
    `train.models` at the largest training fraction with the first seed."""
    runs = PREDICT["runs"]
    if runs is None:
        largest = max(config["splits"]["train_fractions"])
        runs = [{"model": m, "fraction": largest} for m in TRAIN_MODELS]
    # each run was checked at start-up (lulc.config.check_config)
    resolved = [
        (
            run["model"],
            f"{float(run.get('fraction', 1.0)):g}",
            int(run.get("seed", config["splits"]["seeds"][0])),
        )
        for run in runs
    ]
    return sorted(set(resolved))


def predict_outputs():
    """Every map, confidence raster, preview and comparison (for `rule all`)."""
    names = ["landcover.tif", "preview.png", "comparison.png"]
    if PREDICT["confidence"]:
        names.append("confidence.tif")
    return [
        f"results/predict/{aoi}/{model}_f{fraction}_s{seed}/{name}"
        for aoi in AOIS
        for model, fraction, seed in predict_runs()
        for name in names
    ]


def confidence_output():
    """The confidence raster, where `predict.confidence` is true."""
    if PREDICT["confidence"]:
        return {
            "confidence": "results/predict/{aoi}/{model}_f{fraction}_s{seed}/confidence.tif"
        }
    return {}


# ---- map regions (label-free maps of any size: lulc/maps.py) ----

MAPS = config["maps"]
MAP_REGIONS = parse_map_regions(config)  # checked at start-up (lulc.config)
MAP_TILE, MAP_STRIDE = map_predict_geometry(config)


def map_runs(region):
    """(model, fraction label, seed) of every run that maps `region`: its `runs`, else predict.runs' runs."""
    runs = MAPS["regions"][region]["runs"]
    if runs is None:
        return predict_runs()
    return sorted(
        {
            (
                run["model"],
                f"{float(run.get('fraction', 1.0)):g}",
                int(run.get("seed", config["splits"]["seeds"][0])),
            )
            for run in runs
        }
    )


def map_periods(region):
    return [period.label for period in MAP_REGIONS[region].periods]


def map_change_pairs(region):
    """(from, to) period pairs of the region's change tables: its `change` pairs, else first -> last."""
    pairs = MAPS["regions"][region]["change"]
    if pairs is not None:
        return [(str(a), str(b)) for a, b in pairs]
    periods = map_periods(region)
    return [(periods[0], periods[-1])] if len(periods) > 1 else []


def map_outputs():
    """Every region's mosaics (map, confidence, preview) per period x run, and its change tables (rule all)."""
    names = ["landcover.tif", "preview.png"]
    if PREDICT["confidence"]:
        names.append("confidence.tif")
    outputs = []
    for region in MAP_REGIONS:
        for model, fraction, seed in map_runs(region):
            run = f"{model}_f{fraction}_s{seed}"
            outputs += [
                f"results/maps/{region}/{period}/{run}/{name}"
                for period in map_periods(region)
                for name in names
            ]
            if MAPS["regions"][region]["labels"]:
                outputs += [
                    f"results/maps/{region}/{period}/{run}/{name}"
                    for period in map_periods(region)
                    for name in ("comparison.png", "agreement.json")
                ]
            outputs += [
                f"results/maps/{region}/{run}/change_{a}_to_{b}.{ext}"
                for a, b in map_change_pairs(region)
                for ext in ("csv", "png")
            ]
    return outputs


def map_imagery(region):
    """The region's imagery query: its own `imagery`, else stac.imagery."""
    return MAPS["regions"][region]["imagery"] or config["stac"]["imagery"]


def map_demo_inputs(wildcards):
    """The demo catalog, where the region's imagery comes from it."""
    if uses_demo(map_imagery(wildcards.region)):
        return "results/demo/catalog.json"
    return []


def map_label_demo_inputs(wildcards):
    """The demo catalog, where the labels come from it."""
    if uses_demo(config["stac"]["labels"]):
        return "results/demo/catalog.json"
    return []


def map_region_trained_on(wildcards):
    """The training AOIs a labelled region overlaps (its comparison then includes trained-on pixels)."""
    return training_aois_overlapped(MAP_REGIONS[wildcards.region], config)


def map_tile_labels(wildcards):
    """Input function: the label of every processing tile's core of the region in one period."""
    prefix = f"results/maps/{wildcards.region}/{wildcards.period}/tiles"
    return [f"{prefix}/{tile}/label.tif" for tile in map_tile_ids(wildcards.region)]


def map_region_file(wildcards):
    """The region's vector file (tracked: editing it re-tiles the region)."""
    path = MAP_REGIONS[wildcards.region].file
    return [path] if path else []


def map_tiling_params(wildcards):
    """What the region's tiles depend on: its extent, the tile and halo sizes, the pixel size and the
    predictor's tile and stride (cores and halos are whole strides). Not its years, runs or imagery.
    """
    region = MAP_REGIONS[wildcards.region]
    entry = MAPS["regions"][wildcards.region]
    return canonical(
        {
            "bbox": list(region.bbox),
            "file": entry.get("file"),
            "tile_km": MAPS["tile_km"],
            "halo_px": MAPS["halo_px"],
            "resolution": config["download"]["resolution"],
            "predict_tile": MAP_TILE,
            "predict_stride": MAP_STRIDE,
        }
    )


def map_period_params(wildcards):
    """The region in one period, as the search and download stages take it (name, bbox, dates)."""
    region = MAP_REGIONS[wildcards.region]
    period = region.period(wildcards.period)
    return {
        "bbox": list(region.bbox),
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
    }


def map_tile_ids(region):
    """The region's processing tiles, from its `map_tiles` checkpoint (evaluated once it has run)."""
    tiles_csv = checkpoints.map_tiles.get(region=region).output.tiles
    return map_tiles_in(tiles_csv)


def map_tile_maps(name):
    """Input function: `name` (landcover.tif or confidence.tif) of every processing tile of the region."""

    def tile_maps(wildcards):
        run = f"{wildcards.model}_f{wildcards.fraction}_s{wildcards.seed}"
        prefix = f"results/maps/{wildcards.region}/{wildcards.period}/{run}/tiles"
        return [f"{prefix}/{tile}/{name}" for tile in map_tile_ids(wildcards.region)]

    return tile_maps


def map_confidence_output(pattern):
    """The confidence raster, where `predict.confidence` is true."""
    if PREDICT["confidence"]:
        return {"confidence": pattern}
    return {}


def map_region_crs(region):
    """The CRS of the region's mosaics: its `crs`, else the UTM zone of its centre."""
    return region_crs(MAP_REGIONS[region], MAPS["regions"][region]["crs"])
