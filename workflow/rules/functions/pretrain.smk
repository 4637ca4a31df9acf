# Input functions, identities and targets of the pretrain stage (pretrain.smk), defined before its rules.
PRETRAIN_MODEL_KEYS = ("type", "backbone", "backbone_kwargs", "normalization")
PRETRAIN_CODE = code_version("scripts/pretrain.py")


def pretrain_model_params(wildcards):
    entry = config["models"][wildcards.model]
    return canonical({key: entry[key] for key in PRETRAIN_MODEL_KEYS if key in entry})


def pretrain_identity(wildcards):
    """The pretraining settings behind a model whose weights are `pretrain` (None otherwise)."""
    if config["models"][wildcards.model].get("weights") != "pretrain":
        return None
    return {
        "model": pretrain_model_params(wildcards),
        "pretrain": canonical(config["pretrain"]),
        "code": PRETRAIN_CODE,
    }


def pretrain_input(wildcards):
    """The pretrain rule's checkpoint where `models.<model>.weights` is `pretrain`."""
    if config["models"][wildcards.model].get("weights") == "pretrain":
        return expand(rules.pretrain.output.checkpoint, model=wildcards.model)[0]
    return []


def weights_file_input(wildcards):
    """A local weights file named in `models.<model>.weights` (tracked, so replacing it reruns training)."""
    weights = config["models"][wildcards.model].get("weights")
    if weights in (None, "none", "standin", "pretrain", "hf"):
        return []
    return weights
