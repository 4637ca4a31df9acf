"""Rule evaluate: one trained run on the fixed test split; logic in lulc/evaluate.py."""

import json
from pathlib import Path

from lulc.evaluate import evaluate_run
from lulc.logs import setup_script_logging
from lulc.train import stores_from_paths

setup_script_logging(snakemake)
evaluate_run(
    Path(snakemake.input.best),
    stores_from_paths(snakemake.input.images),
    Path(snakemake.input.splits),
    Path(snakemake.output.metrics),
    Path(snakemake.output.confusion),
    Path(snakemake.output.per_class),
    run_info=json.loads(Path(snakemake.input.run).read_text()),
)
