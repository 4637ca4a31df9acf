"""Rule evaluate: every run of one model on the fixed test split; logic in lulc/evaluate.py."""

import json
from pathlib import Path

from lulc.dataset import stores_from_paths
from lulc.evaluate import RunToEvaluate, evaluate_runs
from lulc.logs import setup_script_logging
from lulc.schema import EVALUATE_RUNTIME_KEYS

setup_script_logging(snakemake)
runs = [
    RunToEvaluate(Path(best), Path(metrics), Path(confusion), Path(per_class), json.loads(Path(run).read_text()))
    for best, run, metrics, confusion, per_class in zip(
        snakemake.input.best,
        snakemake.input.run,
        snakemake.output.metrics,
        snakemake.output.confusion,
        snakemake.output.per_class,
        strict=True,
    )
]
# Settings that change speed, not the metrics, come from the config, not params, so changing them reruns nothing.
settings = snakemake.config["evaluate"]
runtime = {key: settings[key] for key in EVALUATE_RUNTIME_KEYS if key in settings}
# results/download/{aoi}/image.tif, in evaluate.mode: sliding_window only (empty otherwise)
rasters = snakemake.input.rasters
rasters = [rasters] if isinstance(rasters, str) else list(rasters)
images = {Path(path).parent.name: Path(path) for path in rasters}
evaluate_runs(
    runs,
    stores_from_paths(snakemake.input.images),
    Path(snakemake.input.splits),
    cfg={**snakemake.params.evaluate, **runtime},
    images=images,
)
