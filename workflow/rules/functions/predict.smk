# Input functions, identities and targets of the predict stage (predict.smk), defined before its rules.
from lulc.schema import PREDICT_RUNTIME_KEYS

PREDICT = config["predict"]
# The predict settings a map depends on (map regions' tiles too): not the runtime keys.
PREDICT_PARAMS = canonical(
    {k: v for k, v in PREDICT.items() if k not in PREDICT_RUNTIME_KEYS}
)
AOI_MAP = f"results/predict/{{aoi}}/{RUN}"


def run_labels(runs):
    """(model, fraction label, seed) of config run entries (`predict.runs`, a region's `runs`): the fraction
    defaults to 1 and the seed to the first of `splits.seeds`; sorted, each once."""
    return sorted(
        {
            (
                run["model"],
                f"{float(run.get('fraction', 1.0)):g}",
                int(run.get("seed", config["splits"]["seeds"][0])),
            )
            for run in runs
        }
    )


def predict_runs():
    """(model, fraction label, seed) of every run to map. `predict.runs: null` maps every model of
    `train.models` at the largest training fraction with the first seed."""
    runs = PREDICT["runs"]
    if runs is None:
        largest = max(config["splits"]["train_fractions"])
        runs = [{"model": m, "fraction": largest} for m in TRAIN_MODELS]
    return run_labels(
        runs
    )  # each run was checked at start-up (lulc.config.check_config)


def predict_outputs():
    """Every map, confidence raster, preview and comparison (for `rule all`)."""
    names = ["landcover.tif", "preview.png", "comparison.png"]
    if PREDICT["confidence"]:
        names.append("confidence.tif")
    return [
        expand(f"{AOI_MAP}/{name}", aoi=aoi, model=model, fraction=fraction, seed=seed)[
            0
        ]
        for aoi in AOIS
        for model, fraction, seed in predict_runs()
        for name in names
    ]


def confidence_output(pattern):
    """The confidence raster `pattern` as a named output, where `predict.confidence` is true."""
    if PREDICT["confidence"]:
        return {"confidence": pattern}
    return {}
