"""Rule map_sample: a stratified random sample of one map of a region, to label; logic in lulc/assessment.py."""

from lulc.assessment import sample_map
from lulc.logs import setup_script_logging

log = setup_script_logging(snakemake)
output = snakemake.output
record = sample_map(snakemake.input.landcover, output.gpkg, output.csv, output.strata, snakemake.params.accuracy)
log.info("sample: %s", record)
