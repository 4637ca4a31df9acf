"""Rule demo: generate the synthetic demo region (COGs + static STAC catalog)."""

from pathlib import Path

from lulc.demo import generate_demo
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
)
log.info("demo catalog written to %s", catalog)
