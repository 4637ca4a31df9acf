"""Rule chips: cut an AOI into chips (manifest + packed chip store)."""

from pathlib import Path

from lulc.chips import make_chips
from lulc.logs import setup_script_logging

setup_script_logging(snakemake)
make_chips(
    snakemake.wildcards.aoi,
    Path(snakemake.input.image),
    Path(snakemake.input.mask),
    Path(snakemake.input.label),
    snakemake.params.chips,
    Path(snakemake.output.manifest).parent,
)
