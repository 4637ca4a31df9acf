"""Rule search: one ItemCollection of imagery and one of labels for an AOI (labels of labels.year, where set;
an empty one where the labels come from a raster or vector file instead of STAC)."""

import dataclasses
from datetime import date
from pathlib import Path

import pystac

from lulc.aoi import AOI
from lulc.logs import setup_script_logging
from lulc.search import save_item_collection, search_items

log = setup_script_logging(snakemake)
aoi = AOI.from_config(snakemake.wildcards.aoi, snakemake.params.aoi)
label_source = snakemake.params.label_source
demo_catalog = Path(snakemake.input[0]) if len(snakemake.input) else None
# results/search/{aoi}/imagery.json -> results: local hrefs inside it (the demo catalog) are stored relative
results = Path(snakemake.output.imagery).parents[2]
for kind in ("imagery", "labels"):
    if kind == "labels" and label_source["source"] != "stac":
        log.info("AOI %s: labels from the %s file %s, not STAC", aoi.name, label_source["source"], label_source["path"])
        items = pystac.ItemCollection([])
    else:
        place = aoi
        if kind == "labels" and label_source["year"] is not None:
            year = int(label_source["year"])
            place = dataclasses.replace(aoi, start=date(year, 1, 1), end=date(year, 12, 31))
            log.info("AOI %s: labels of labels.year = %d", aoi.name, year)
        items = search_items(place, snakemake.params[kind], demo_catalog, config_key=f"stac.{kind}")
    log.info("AOI %s: %d %s items", aoi.name, len(items), kind)
    save_item_collection(items, Path(snakemake.output[kind]), relative_to=results)
