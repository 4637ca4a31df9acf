"""Rule search: one ItemCollection of imagery and one of labels for an AOI."""

from pathlib import Path

from lulc.aoi import AOI
from lulc.logs import setup_script_logging
from lulc.search import save_item_collection, search_items

log = setup_script_logging(snakemake)
aoi = AOI.from_config(snakemake.wildcards.aoi, snakemake.params.aoi)
demo_catalog = Path(snakemake.input[0]) if len(snakemake.input) else None
# results/search/{aoi}/imagery.json -> results: local hrefs inside it (the demo catalog) are stored relative
results = Path(snakemake.output.imagery).parents[2]
for kind in ("imagery", "labels"):
    items = search_items(aoi, snakemake.params[kind], demo_catalog, config_key=f"stac.{kind}")
    log.info("AOI %s: %d %s items", aoi.name, len(items), kind)
    save_item_collection(items, Path(snakemake.output[kind]), relative_to=results)
