# Shared helpers: config validation at start-up, AOI names, code versions and per-rule input functions.
import hashlib
from pathlib import Path

from lulc.config import PREDICT_RUNTIME_KEYS, TRAIN_RUNTIME_KEYS, load_config

load_config(config, workflow.source_path("../schemas/config.schema.yaml"))

AOIS = list(config["aois"])
PACKAGE = Path(workflow.current_basedir).parents[1] / "lulc"


def code_version(*modules):
    """Hash of the package modules behind a stage, so that editing them reruns it (Snakemake does not
    track imported code by itself)."""
    digest = hashlib.sha256()
    for module in ("__init__", "io", "logs", "hls", "classes", *modules):
        digest.update((PACKAGE / f"{module}.py").read_bytes())
    return digest.hexdigest()[:16]


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
for _name in TRAIN_MODELS:
    if _name not in config["models"]:
        raise ValueError(
            f"config key 'train.models': {_name!r} has no entry under 'models' (known: {sorted(config['models'])})"
        )


def fraction_labels():
    """Training fractions as written in paths and splits.csv: 1.0 -> "1", 0.125 -> "0.125"."""
    return [f"{float(f):g}" for f in config["splits"]["train_fractions"]]


def pretrain_input(wildcards):
    """The pretrain rule's checkpoint where `models.<model>.weights` is `pretrain`."""
    if config["models"][wildcards.model].get("weights") == "pretrain":
        return f"results/pretrain/{wildcards.model}/checkpoint.pt"
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


# ---- land-cover maps ----

PREDICT = config["predict"]


def predict_runs():
    """(model, fraction label, seed) of every run to map. `predict.runs: null` maps every model of
    `train.models` at the largest training fraction with the first seed."""
    runs = PREDICT["runs"]
    if runs is None:
        largest = max(config["splits"]["train_fractions"])
        runs = [{"model": m, "fraction": largest} for m in TRAIN_MODELS]
    resolved = []
    for i, run in enumerate(runs):
        key = f"config key 'predict.runs[{i}]'"
        model = run["model"]
        fraction = f"{float(run.get('fraction', 1.0)):g}"
        seed = int(run.get("seed", config["splits"]["seeds"][0]))
        if model not in TRAIN_MODELS:
            raise ValueError(
                f"{key}: model {model!r} is not trained (train.models: {TRAIN_MODELS})"
            )
        if fraction not in fraction_labels():
            raise ValueError(
                f"{key}: fraction {fraction} is not one of splits.train_fractions ({', '.join(fraction_labels())})"
            )
        if seed not in config["splits"]["seeds"]:
            raise ValueError(
                f"{key}: seed {seed} is not one of splits.seeds {config['splits']['seeds']}"
            )
        resolved.append((model, fraction, seed))
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
