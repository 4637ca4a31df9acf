"""Rule tune: an equal-budget hyperparameter search for one model; logic in lulc/tune.py."""

from pathlib import Path

from lulc.dataset import stores_from_paths
from lulc.logs import setup_script_logging
from lulc.train import RUNTIME_KEYS
from lulc.tune import tune

if __name__ == "__main__":
    setup_script_logging(snakemake)
    pretrain = snakemake.input.pretrain
    pretrain = [pretrain] if isinstance(pretrain, str) else list(pretrain)
    runtime = {key: snakemake.config["train"][key] for key in RUNTIME_KEYS if key in snakemake.config["train"]}
    settings = dict(snakemake.params.tune)
    tune(
        snakemake.wildcards.model,
        snakemake.params.model,
        {**snakemake.params.train, **runtime},
        settings["tune"],
        stores_from_paths(snakemake.input.images),
        snakemake.input.splits,
        Path(snakemake.output.best).parent,
        pretrain_checkpoint=pretrain[0] if pretrain else None,
        seed=settings["seed"],
        threads=snakemake.threads,
        dataset_stats=snakemake.input.stats or None,  # where normalization is "dataset"
    )
