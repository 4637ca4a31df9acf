# Input functions, identities and targets of the train stage (train.smk), defined before its rules.
from lulc.schema import TRAIN_RUNTIME_KEYS

# The train rule's params, shared with the identity below. Runtime-only keys (progress bar, workers, threads,
# the list of models) would rerun every run.
TRAIN_PARAMS = canonical(
    {k: v for k, v in config["train"].items() if k not in TRAIN_RUNTIME_KEYS}
)
TRAIN_CODE = code_version("scripts/train.py")


def fraction_labels():
    """Training fractions as written in paths and splits.csv: 1.0 -> "1", 0.125 -> "0.125"."""
    return [f"{float(f):g}" for f in config["splits"]["train_fractions"]]


def model_runs(pattern):
    """`pattern` for every fraction x seed, keeping `{model}` a wildcard: one model's runs."""
    return expand(
        pattern,
        model="{model}",
        fraction=fraction_labels(),
        seed=config["splits"]["seeds"],
    )


def every_run(pattern):
    """`pattern` for every model of `train.models` x fraction x seed."""
    return expand(model_runs(pattern), model=TRAIN_MODELS)


def training_identity(wildcards):
    """A digest of everything a model's runs are trained from (its `models.<name>` entry, the train settings,
    the pretraining settings where it uses them, and the code).

    Evaluate and predict carry it in their params: when a training job fails or is killed after a change,
    Snakemake deletes its outputs, and a missing checkpoint whose consumers are up to date is "missing / no
    update" to Snakemake, so without this the old evaluation and maps would survive a rerun. With it, every
    downstream output of a changed run is out of date until that run has trained with the current settings.
    """
    return digest(
        {
            "model": canonical(config["models"][wildcards.model]),
            "train": TRAIN_PARAMS,
            "pretrain": pretrain_identity(wildcards),
            "tune": tune_identity(wildcards),
            "code": TRAIN_CODE,
        }
    )
