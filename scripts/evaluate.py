"""Rule evaluate: every run of one model on the fixed test split; logic in lulc/evaluate.py."""

import json
from pathlib import Path

from lulc.dataset import stores_from_paths
from lulc.evaluate import evaluate_run
from lulc.logs import setup_script_logging

setup_script_logging(snakemake)
stores = stores_from_paths(snakemake.input.images)
outputs = zip(snakemake.output.metrics, snakemake.output.confusion, snakemake.output.per_class, strict=True)
for best, run, (metrics, confusion, per_class) in zip(
    snakemake.input.best, snakemake.input.run, outputs, strict=True
):
    evaluate_run(
        Path(best),
        stores,
        Path(snakemake.input.splits),
        Path(metrics),
        Path(confusion),
        Path(per_class),
        run_info=json.loads(Path(run).read_text()),
    )
