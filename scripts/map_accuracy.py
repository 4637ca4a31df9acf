"""Rule map_accuracy: accuracy and class areas of one map from its labelled sample; logic in lulc/assessment.py."""

from lulc.assessment import assess_map
from lulc.logs import setup_script_logging

log = setup_script_logging(snakemake)
wildcards = snakemake.wildcards
run = f"{wildcards.model}_f{wildcards.fraction}_s{wildcards.seed}"
record = assess_map(
    snakemake.input.landcover,
    snakemake.input.sample,
    snakemake.input.strata,
    snakemake.input.reference,
    dict(snakemake.output.items()),
    title=f"{wildcards.region} {wildcards.period}, {run}",
    agreement=snakemake.params.agreement,
)
log.info("assessment: %s", record)
