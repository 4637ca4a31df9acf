"""Rule pretrain: masked-autoencoder pretraining of a Prithvi encoder; logic in lulc/pretrain.py."""

from pathlib import Path

from lulc.dataset import stores_from_paths
from lulc.logs import setup_script_logging
from lulc.pretrain import pretrain

setup_script_logging(snakemake)
pretrain(
    snakemake.wildcards.model,
    snakemake.params.model,
    snakemake.params.pretrain,
    stores_from_paths(snakemake.input.images),
    Path(snakemake.output.checkpoint).parent,
    threads=snakemake.threads,
    dataset_stats=snakemake.input.stats or None,  # where normalization is "dataset"
)
