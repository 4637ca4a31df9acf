"""Rule train: fine-tune one model on one training subset (fraction x seed); logic in lulc/train.py."""

from pathlib import Path

from lulc.dataset import stores_from_paths
from lulc.logs import setup_script_logging
from lulc.train import RUNTIME_KEYS, train

# Under the __main__ guard: with train.devices > 1 the training processes are spawned, and a spawned process
# imports this script (as __mp_main__), where it must not train again (and there is no `snakemake` object).
if __name__ == "__main__":
    setup_script_logging(snakemake)
    # The pretrain rule's checkpoint where this model's weights are "pretrain"; an empty input otherwise.
    pretrain = snakemake.input.pretrain
    pretrain = [pretrain] if isinstance(pretrain, str) else list(pretrain)
    # Settings that do not change the result come from the config, not params, so changing them reruns nothing.
    runtime = {key: snakemake.config["train"][key] for key in RUNTIME_KEYS if key in snakemake.config["train"]}
    train(
        snakemake.wildcards.model,
        snakemake.params.model,
        {**snakemake.params.train, **runtime},
        stores_from_paths(snakemake.input.images),
        snakemake.input.splits,
        snakemake.wildcards.fraction,
        snakemake.wildcards.seed,
        Path(snakemake.output.run).parent,
        pretrain_checkpoint=pretrain[0] if pretrain else None,
        threads=snakemake.threads,
        tuned=snakemake.input.tuned or None,
        dataset_stats=snakemake.input.stats or None,  # where normalization is "dataset"
    )
