"""Rule map_search: the imagery of a map region in one period, cached as one ItemCollection (no labels)."""

from datetime import date
from pathlib import Path

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
items = search_items(
    region, snakemake.params.imagery, demo_catalog, config_key=f"maps.regions.{snakemake.wildcards.region}.imagery"
)
log.info("map region %s: %d imagery items", region.name, len(items))
# results/maps/{region}/{period}/imagery.json -> results: local hrefs inside it (the demo catalog) are stored relative
save_item_collection(items, Path(snakemake.output.imagery), relative_to=Path(snakemake.output.imagery).parents[3])
