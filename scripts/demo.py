"""Rule demo: generate the synthetic demo region (COGs + static STAC catalog, truth rasters, field polygons)."""

from pathlib import Path

from lulc.demo import DEFAULT_LABEL_LEGEND, generate_demo
from lulc.logs import setup_script_logging

log = setup_script_logging(snakemake)
demo = snakemake.params.demo
catalog = generate_demo(
    Path(snakemake.output.catalog).parent,
    regions=demo["regions"],
    year=demo["year"],
    seed=demo["seed"],
    dates_per_sensor=demo["dates_per_sensor"],
    cloudy_dates=demo["cloudy_dates"],
    label_legend=demo.get("label_legend", DEFAULT_LABEL_LEGEND),
    label_polygons=demo.get("label_polygons", 0),
)
log.info("demo catalog written to %s", catalog)
