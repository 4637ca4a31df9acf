"""Rule map_change: the class transition table between two periods' maps of a region; logic in lulc/mosaic.py."""

from lulc.logs import setup_script_logging
from lulc.mosaic import transition_table

log = setup_script_logging(snakemake)
wildcards = snakemake.wildcards
record = transition_table(
    snakemake.input.before,
    snakemake.input.after,
    snakemake.output.table,
    snakemake.output.figure,
    label_a=wildcards.before,
    label_b=wildcards.after,
    title=f"{wildcards.region}: {wildcards.model}_f{wildcards.fraction}_s{wildcards.seed}",
)
log.info("changed: %.3f km2 (%.2f %%)", record["changed_km2"], 100 * record["changed_share"])
