# Input functions, identities and targets of the tune stage (tune.smk), defined before its rules.
TUNE = config["tune"]
TUNE_CODE = code_version("scripts/tune.py")


def tune_models():
    """Models whose runs train with tuned values (`tune.models`, default every model of train.models)."""
    if not TUNE["enabled"]:
        return []
    return list(TUNE["models"] if TUNE["models"] is not None else TRAIN_MODELS)


def tune_params(model):
    """The tune settings behind one model's search: the budget, the sampler and its family's space only, so
    that a change to another family's space reruns nothing here. `enabled` and `models` choose what is
    tuned, not how."""
    family = config["models"][model].get("type", model)
    settings = {k: v for k, v in TUNE.items() if k not in ("enabled", "models")}
    settings["search_space"] = {family: TUNE["search_space"][family]}
    seed = TUNE["seed"] if TUNE["seed"] is not None else config["splits"]["seeds"][0]
    return canonical({"tune": settings, "seed": seed})


def searched_keys(model):
    """The hyperparameters the model's family space searches: their configured values never reach a trial."""
    family = config["models"][model].get("type", model)
    return set(TUNE["search_space"][family])


def tune_model_params(wildcards):
    """The model entry as its search sees it: without `epochs` (trials train tune.epochs) and the searched keys."""
    skip = searched_keys(wildcards.model) | {"epochs"}
    entry = config["models"][wildcards.model]
    return canonical({k: v for k, v in entry.items() if k not in skip})


def tune_train_params(wildcards):
    """The train rule's params (TRAIN_PARAMS, train.smk) without the searched train keys (warmup_epochs,
    warmup_iters)."""
    skip = searched_keys(wildcards.model)
    return {k: v for k, v in TRAIN_PARAMS.items() if k not in skip}


def tuned_input(wildcards):
    """The tune rule's best values, where this model trains with them."""
    if wildcards.model in tune_models():
        return expand(rules.tune.output.best, model=wildcards.model)[0]
    return []


def tune_identity(wildcards):
    """The tune settings and code behind a tuned model's runs (None where it is not tuned): a changed search
    reruns its training even where the tune job failed."""
    if wildcards.model not in tune_models():
        return None
    return {"tune": tune_params(wildcards.model), "code": TUNE_CODE}
