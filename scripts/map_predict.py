"""Rule map_predict: one processing tile (core + halo) predicted by one trained run, its core kept (inside the
region's features where it is a vector file)."""

from lulc.logs import setup_script_logging
from lulc.map_predict import predict_tile
from lulc.predict import RUNTIME_KEYS

setup_script_logging(snakemake)
# Settings that change speed, not the map, come from the config, not params, so changing them reruns nothing.
settings = snakemake.config["predict"]
runtime = {key: settings[key] for key in RUNTIME_KEYS if key in settings and key != "runs"}
wildcards = snakemake.wildcards
region_files = list(snakemake.input.region)  # the region's vector file; none for a bbox or an AOI region
predict_tile(
    snakemake.input.best,
    snakemake.input.image,
    snakemake.input.tiles,
    wildcards.tile,
    snakemake.output.landcover,
    {**snakemake.params.predict, **runtime},
    confidence=snakemake.output.get("confidence"),
    run_name=f"{wildcards.model}_f{wildcards.fraction}_s{wildcards.seed}",
    region=f"{wildcards.region} {wildcards.period}",
    threads=snakemake.threads,
    region_file=region_files[0] if region_files else None,
)
