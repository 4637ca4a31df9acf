# Input functions, identities and targets of the accuracy stage (accuracy.smk), defined before its rules.

ACCURACY = MAPS["accuracy"]
SAMPLE = f"{PERIOD_RUN}/sample"
ASSESSMENT = f"{PERIOD_RUN}/accuracy"
CHANGE = f"{REGION}/{RUN}/change_{{before}}_to_{{after}}"


def map_reference(region, period, run):
    """(reference file, is agreement) of one map: `maps.regions.<region>.reference` under "<period>/<run>",
    else under "<period>"; else the region's label mosaic (agreement, not accuracy) where it has dense labels
    (sparse vector labels leave most sample units without a reference: their agreement is map_compare's);
    else None."""
    references = {
        str(key): path
        for key, path in (MAPS["regions"][region].get("reference") or {}).items()
    }
    chosen = references.get(f"{period}/{run}") or references.get(str(period))
    if chosen:
        return chosen, False
    if MAPS["regions"][region]["labels"] and config["labels"]["source"] != "vector":
        return (
            expand(rules.map_label_mosaic.output.label, region=region, period=period)[
                0
            ],
            True,
        )
    return None


def assessed_maps():
    """(region, period, model, fraction, seed) of every map with a reference to assess it against."""
    if not ACCURACY["enabled"]:
        return []
    return [
        (region, period, model, fraction, seed)
        for region in MAP_REGIONS
        for period in map_periods(region)
        for model, fraction, seed in map_runs(region)
        if map_reference(region, period, f"{model}_f{fraction}_s{seed}") is not None
    ]


def accuracy_outputs():
    """Every map's sample and, where it has a reference, its accuracy report (rule all)."""
    if not ACCURACY["enabled"]:
        return []
    outputs = []
    for region in MAP_REGIONS:
        for model, fraction, seed in map_runs(region):
            run = {"region": region, "model": model, "fraction": fraction, "seed": seed}
            outputs += expand(
                rules.map_sample.output, period=map_periods(region), **run
            )
    for region, period, model, fraction, seed in assessed_maps():
        outputs += expand(
            rules.map_accuracy.output,
            region=region,
            period=period,
            model=model,
            fraction=fraction,
            seed=seed,
        )
    return outputs


def period_reference_raster(region, period):
    """The reference raster `maps.regions.<region>.reference` names for a whole period, or None."""
    references = {
        str(key): path
        for key, path in (MAPS["regions"][region].get("reference") or {}).items()
    }
    return references.get(str(period))


def assessed_changes():
    """(region, before, after, model, fraction, seed) of every change pair with reference rasters for both
    periods."""
    if not ACCURACY["enabled"]:
        return []
    return [
        (region, before, after, model, fraction, seed)
        for region in MAP_REGIONS
        for before, after in map_change_pairs(region)
        for model, fraction, seed in map_runs(region)
        if period_reference_raster(region, before)
        and period_reference_raster(region, after)
    ]


def change_accuracy_outputs():
    """Every change pair's sample and, where both periods have reference rasters, its estimates (rule all)."""
    if not ACCURACY["enabled"]:
        return []
    outputs = []
    for region in MAP_REGIONS:
        for before, after in map_change_pairs(region):
            for model, fraction, seed in map_runs(region):
                outputs += expand(
                    rules.map_change_sample.output,
                    region=region,
                    before=before,
                    after=after,
                    model=model,
                    fraction=fraction,
                    seed=seed,
                )
    for region, before, after, model, fraction, seed in assessed_changes():
        outputs += expand(
            rules.map_change_accuracy.output,
            region=region,
            before=before,
            after=after,
            model=model,
            fraction=fraction,
            seed=seed,
        )
    return outputs


def change_reference_inputs(wildcards):
    """The reference rasters of a change pair's two periods."""
    return [
        period_reference_raster(wildcards.region, period)
        for period in (wildcards.before, wildcards.after)
    ]


def reference_input(wildcards):
    """The map's reference file (a labelled sample, a reference raster, or the label mosaic)."""
    run = f"{wildcards.model}_f{wildcards.fraction}_s{wildcards.seed}"
    found = map_reference(wildcards.region, wildcards.period, run)
    if found is None:
        raise ValueError(
            f"map region {wildcards.region}, {wildcards.period}, {run}: no reference "
            f"(maps.regions.{wildcards.region}.reference) and no labels to assess the map against"
        )
    return found[0]


def reference_is_agreement(wildcards):
    run = f"{wildcards.model}_f{wildcards.fraction}_s{wildcards.seed}"
    found = map_reference(wildcards.region, wildcards.period, run)
    return bool(found and found[1])
