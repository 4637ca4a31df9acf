# Input functions, identities and targets of the viewer stage (viewer.smk), defined before its rules.
from lulc.aoi import AOI

VIEWER_CODE = {
    "region": code_version("scripts/map_viewer.py"),
    "aoi": code_version("scripts/aoi_viewer.py"),
}


def region_viewer_maps(wildcards):
    """(period, run) of every map a region's page shows, in the order of its map inputs."""
    region = wildcards.region
    return [
        (period, f"{model}_f{fraction}_s{seed}")
        for period in map_periods(region)
        for model, fraction, seed in map_runs(region)
    ]


def region_viewer_inputs(name):
    """Input function: `name` (landcover or confidence) of every mosaic a region's page shows."""

    def inputs(wildcards):
        if name == "confidence" and not PREDICT["confidence"]:
            return []
        return [
            expand(
                getattr(rules.map_mosaic.output, name),
                region=wildcards.region,
                period=period,
                model=model,
                fraction=fraction,
                seed=seed,
            )[0]
            for period in map_periods(wildcards.region)
            for model, fraction, seed in map_runs(wildcards.region)
        ]

    return inputs


def region_viewer_labels(wildcards):
    """The region's label mosaic per period, where it has labels."""
    if not MAPS["regions"][wildcards.region]["labels"]:
        return []
    return expand(
        rules.map_label_mosaic.output.label,
        region=wildcards.region,
        period=map_periods(wildcards.region),
    )


def region_viewer_images(wildcards):
    """The imagery of every processing tile in the region's first period (the page's natural colour)."""
    return expand(
        rules.map_download.output.image,
        region=wildcards.region,
        period=map_periods(wildcards.region)[0],
        tile=map_tile_ids(wildcards.region),
    )


def region_viewer_samples(wildcards):
    """(title, assessed sample) of every map of the region that has an accuracy assessment."""
    return [
        (
            f"{model}_f{fraction}_s{seed} {period}",
            expand(
                rules.map_accuracy.output.units,
                region=region,
                period=period,
                model=model,
                fraction=fraction,
                seed=seed,
            )[0],
        )
        for region, period, model, fraction, seed in assessed_maps()
        if region == wildcards.region
    ]


def region_viewer_params(wildcards):
    """What a region's page shows besides its input files: periods, runs, change pairs, outline."""
    region = MAP_REGIONS[wildcards.region]
    return {
        "maps": region_viewer_maps(wildcards),
        "label_periods": (
            map_periods(wildcards.region)
            if MAPS["regions"][wildcards.region]["labels"]
            else []
        ),
        "change_pairs": map_change_pairs(wildcards.region),
        "bbox": list(region.bbox),
        "file": region.file,
        "imagery_period": map_periods(wildcards.region)[0],
        "sample_titles": [title for title, _ in region_viewer_samples(wildcards)],
    }


def aoi_viewer_inputs(name):
    """Input function: `name` (landcover or confidence) of every mapped run of a training AOI."""

    def inputs(wildcards):
        if name == "confidence" and not PREDICT["confidence"]:
            return []
        return [
            expand(
                getattr(rules.predict.output, name),
                aoi=wildcards.aoi,
                model=model,
                fraction=fraction,
                seed=seed,
            )[0]
            for model, fraction, seed in predict_runs()
        ]

    return inputs


def viewer_pages():
    """Every viewer page, with its title and description (the index links them; rule all)."""
    pages = [
        (
            expand(rules.map_viewer.output.page, region=region)[0],
            f"map region {region}",
            f"{len(map_periods(region))} period(s) x {len(map_runs(region))} run(s)",
        )
        for region in MAP_REGIONS
    ]
    if predict_runs():
        pages += [
            (
                expand(rules.aoi_viewer.output.page, aoi=aoi)[0],
                f"training AOI {aoi}",
                f"{len(predict_runs())} run(s), labels and agreement",
            )
            for aoi in AOIS
        ]
    return pages
