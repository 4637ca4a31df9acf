"""Rule map_label: the labels of one processing tile's core (a map region with labels); lulc/download/."""

from pathlib import Path

from lulc.download import LabelSource, write_label_raster
from lulc.logs import setup_script_logging
from lulc.maps import find_tile
from lulc.search import load_item_collection

setup_script_logging(snakemake)
wildcards = snakemake.wildcards
write_label_raster(
    f"map region {wildcards.region} {wildcards.period} tile {wildcards.tile}",
    find_tile(snakemake.input.tiles, wildcards.tile).core_grid(),
    load_item_collection(snakemake.input.labels),
    snakemake.params.download,
    Path(snakemake.output.label).parent,
    labels_signing=snakemake.params.labels_signing,
    label_source=LabelSource.from_config(snakemake.params.label_source).for_place(snakemake.params.label_place),
)
