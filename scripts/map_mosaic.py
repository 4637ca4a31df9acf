"""Rule map_mosaic: a map region's tile cores -> one COG per period and run (+ confidence, preview); lulc/mosaic.py."""

from lulc.logs import setup_script_logging
from lulc.map_figures import write_preview
from lulc.mosaic import mosaic

log = setup_script_logging(snakemake)
wildcards = snakemake.wildcards
run = f"{wildcards.model}_f{wildcards.fraction}_s{wildcards.seed}"
tags = {"REGION": wildcards.region, "PERIOD": wildcards.period, "MODEL_RUN": run}
record = mosaic(snakemake.input.landcover, snakemake.output.landcover, crs=snakemake.params.crs, kind="classes",
                tags=tags, threads=snakemake.threads)  # fmt: skip
log.info("mosaic: %s", record)
if "confidence" in snakemake.output.keys():
    mosaic(snakemake.input.confidence, snakemake.output.confidence, crs=snakemake.params.crs, kind="confidence",
           tags=tags, threads=snakemake.threads)  # fmt: skip
title = f"{wildcards.region} {wildcards.period}: {run}"
write_preview(snakemake.output.landcover, snakemake.output.preview, title=title)
