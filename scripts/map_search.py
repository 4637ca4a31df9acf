"""Rules map_search / map_label_search: a map region's imagery (or labels) in one period, as one ItemCollection."""

from datetime import date
from pathlib import Path

import pystac

from lulc.aoi import AOI
from lulc.logs import setup_script_logging
from lulc.search import save_item_collection, search_items

log = setup_script_logging(snakemake)
place = snakemake.params.place
region = AOI(
    name=f"{snakemake.wildcards.region} {snakemake.wildcards.period}",
    bbox=tuple(place["bbox"]),
    start=date.fromisoformat(place["start"]),
    end=date.fromisoformat(place["end"]),
)
demo_catalog = Path(snakemake.input[0]) if len(snakemake.input) else None
label_source = snakemake.params.get("label_source")
if label_source is not None and label_source["source"] != "stac":  # labels from a file: nothing to search
    items = pystac.ItemCollection([])
else:
    items = search_items(region, snakemake.params.query, demo_catalog, config_key=snakemake.params.config_key)
log.info("map region %s: %d %s items", region.name, len(items), snakemake.params.config_key)
# results/maps/{region}/{period}/imagery.json -> results: local hrefs inside it (the demo catalog) are stored relative
output = Path(snakemake.output[0])
save_item_collection(items, output, relative_to=output.parents[3])
