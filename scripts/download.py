"""Rule download: stack the AOI's HLS frames and labels onto one grid as COGs."""

from pathlib import Path

from lulc.aoi import AOI
from lulc.download import LabelSource, write_aoi_stack
from lulc.logs import setup_script_logging
from lulc.search import load_item_collection

setup_script_logging(snakemake)
write_aoi_stack(
    AOI.from_config(snakemake.wildcards.aoi, snakemake.params.aoi),
    load_item_collection(snakemake.input.imagery),
    load_item_collection(snakemake.input.labels),
    snakemake.params.download,
    Path(snakemake.output.image).parent,
    imagery_signing=snakemake.params.imagery_signing,
    labels_signing=snakemake.params.labels_signing,
    label_source=LabelSource.from_config(snakemake.params.label_source).for_place(snakemake.wildcards.aoi),
)
