# What every stage uses: the configuration checked at start-up, the AOIs, code versions, per-rule memory and
# GPUs, canonical params and the run-name pattern. Each stage's own input functions, identities and targets
# live in its .smk file, right above its rules.
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from lulc.code_version import code_version as package_code_version
from lulc.config import ConfigError, load_config

# A mistake in the configuration stops the run before any job, with the keys named and no traceback.
try:
    load_config(config, workflow.source_path("../schemas/config.schema.yaml"))
except ConfigError as error:
    sources = [
        str(path) for path in workflow.overwrite_configfiles or ["config/config.yaml"]
    ]
    sys.exit(f"{error}\n(configuration: {', '.join(sources)})")

AOIS = list(config["aois"])
TRAIN_MODELS = list(config["train"]["models"])
REPO = Path(workflow.current_basedir).parents[1]
PACKAGE = REPO / "lulc"

# One trained run (model x training fraction x seed): its folder under results/train and results/evaluate, and
# its name in the folders of maps (results/predict, results/maps).
RUN_DIR = "{model}/f{fraction}_s{seed}"
RUN = "{model}_f{fraction}_s{seed}"


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
    "viewer": 3000,
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


def digest(value):
    """A short, order-independent digest of a JSON-able value (a run's identity in params)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def uses_demo(query):
    """Whether a STAC query (stac.imagery, stac.labels, a region's imagery) reads the generated demo catalog."""
    return query["source"] == "demo"


def demo_catalog_if(*queries):
    """The demo catalog as an input, where any of `queries` reads it; else nothing."""
    return rules.demo.output.catalog if any(uses_demo(q) for q in queries) else []
