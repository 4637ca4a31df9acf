# Shared helpers: config validation at start-up, AOI names, code versions and per-rule input functions.
import hashlib
from pathlib import Path

from lulc.config import load_config

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
