"""Rule splits: spatial, class-balanced train/val/test splits and nested training subsets."""

from lulc.logs import setup_script_logging
from lulc.splits import SplitPaths, make_splits

setup_script_logging(snakemake)
make_splits(
    list(snakemake.input.manifests),
    snakemake.params.cfg,
    SplitPaths(
        table=snakemake.output.table,
        balance=snakemake.output.balance,
        balance_plot=snakemake.output.balance_plot,
        summary=snakemake.output.summary,
    ),
)
