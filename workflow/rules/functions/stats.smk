# Input functions, identities and targets of the stats stage (stats.smk), defined before its rules.
def dataset_stats_input(wildcards):
    """The stats rule's per-band statistics where `models.<model>.normalization` is `dataset`."""
    if config["models"][wildcards.model].get("normalization") == "dataset":
        return rules.stats.output.stats
    return []
