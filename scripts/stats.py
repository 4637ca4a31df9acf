"""Rule stats: per-band mean / std of the training chips (`normalization: dataset`); logic in lulc/stats.py."""

from pathlib import Path

from lulc.logs import setup_script_logging
from lulc.stats import write_statistics

setup_script_logging(snakemake)
# results/chips/{aoi}/images.npy -> AOI: chip store directory
stores = {Path(path).parent.name: Path(path).parent for path in snakemake.input.images}
write_statistics(stores, snakemake.input.splits, snakemake.output.stats)
