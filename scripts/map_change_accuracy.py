"""Rule map_change_accuracy: change-class areas and the later map's accuracy from a change pair's sample and the
reference rasters of both periods; logic in lulc/assessment.py."""

from lulc.assessment import assess_change
from lulc.logs import setup_script_logging

log = setup_script_logging(snakemake)
wildcards = snakemake.wildcards
run = f"{wildcards.model}_f{wildcards.fraction}_s{wildcards.seed}"
before_reference, after_reference = snakemake.input.reference
record = assess_change(
    snakemake.input.strata_map,
    snakemake.input.after,
    snakemake.input.sample,
    snakemake.input.strata,
    (before_reference, after_reference),
    dict(snakemake.output.items()),
    title=f"{wildcards.region} {wildcards.before} → {wildcards.after}, {run}",
)
log.info("change assessment: %s", record)
