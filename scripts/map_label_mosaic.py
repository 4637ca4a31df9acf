"""Rule map_label_mosaic: a map region's tile labels -> one label COG per period, on the maps' grid; lulc/mosaic.py."""

from lulc.logs import setup_script_logging
from lulc.mosaic import mosaic

log = setup_script_logging(snakemake)
wildcards = snakemake.wildcards
tags = {"REGION": wildcards.region, "PERIOD": wildcards.period, "SOURCE": "stac.labels, mode-resampled per tile"}
record = mosaic(snakemake.input.labels, snakemake.output.label, crs=snakemake.params.crs, kind="classes", tags=tags,
                threads=snakemake.threads)  # fmt: skip
log.info("label mosaic: %s", record)
