"""Rule predict: map one AOI with one trained run (COG, confidence, preview, comparison); logic in lulc/predict.py."""

from lulc.logs import setup_script_logging
from lulc.predict import RUNTIME_KEYS, predict_run

setup_script_logging(snakemake)
# Settings that change speed, not the map, come from the config, not params, so changing them reruns nothing.
settings = snakemake.config["predict"]
runtime = {key: settings[key] for key in RUNTIME_KEYS if key in settings and key != "runs"}
wildcards = snakemake.wildcards
predict_run(
    snakemake.input.best,
    snakemake.input.image,
    snakemake.input.label,
    snakemake.output.landcover,
    snakemake.output.preview,
    snakemake.output.comparison,
    cfg={**snakemake.params.predict, **runtime},
    confidence=snakemake.output.get("confidence"),
    splits=snakemake.input.splits,
    manifest=snakemake.input.manifest,
    aoi=wildcards.aoi,
    run_name=f"{wildcards.model}_f{wildcards.fraction}_s{wildcards.seed}",
    threads=snakemake.threads,
)
