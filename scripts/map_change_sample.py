"""Rule map_change_sample: the change classes of a region's change pair and their stratified sample, to label;
logic in lulc/assessment.py."""

from lulc.assessment import sample_map, write_change_strata
from lulc.logs import setup_script_logging

log = setup_script_logging(snakemake)
output = snakemake.output
log.info("change strata: %s", write_change_strata(snakemake.input.before, snakemake.input.after, output.strata_map))
record = sample_map(output.strata_map, output.gpkg, output.csv, output.strata, snakemake.params.accuracy)
log.info("sample: %s", record)
