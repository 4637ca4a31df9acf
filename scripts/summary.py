"""Rule summary: per-run and aggregate tables, the study's figures and its answer; logic in lulc/summary.py."""

from pathlib import Path

from lulc.logs import setup_script_logging
from lulc.summary import make_summary

setup_script_logging(snakemake)
make_summary(
    [Path(p) for p in snakemake.input.metrics],
    [Path(p) for p in snakemake.input.confusions],
    Path(snakemake.output.runs).parent,
)
