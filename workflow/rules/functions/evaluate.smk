# Input functions, identities and targets of the evaluate stage (evaluate.smk), defined before its rules.
from lulc.schema import EVALUATE_RUNTIME_KEYS

EVALUATE = config["evaluate"]
EVALUATION = f"results/evaluate/{RUN_DIR}"


def evaluate_params():
    """The evaluate rule's `evaluate:` settings: only `mode` in chips mode (crop and stride do not apply),
    never the runtime keys (batch_size), so changing them reruns nothing."""
    if EVALUATE["mode"] == "chips":
        return {"mode": "chips"}
    return canonical(
        {k: v for k, v in EVALUATE.items() if k not in EVALUATE_RUNTIME_KEYS}
    )


def sliding_window_images(wildcards):
    """The downloaded images the test blocks are cut from, in `evaluate.mode: sliding_window` only."""
    if EVALUATE["mode"] != "sliding_window":
        return []
    return expand(rules.download.output.image, aoi=AOIS)


def sliding_window_manifests(wildcards):
    """The chip manifests (each chip's window on the image), in `evaluate.mode: sliding_window` only."""
    if EVALUATE["mode"] != "sliding_window":
        return []
    return chip_arrays("manifest")


def evaluation_outputs(name):
    """One evaluation file per model x fraction x seed."""
    return every_run(f"{EVALUATION}/{name}")
