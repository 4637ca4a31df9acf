# Chips per AOI: a packed chip store and its manifest (lulc/chips.py), and optional per-chip GeoTIFFs;
# config: `chips:`.


include: "functions/chips.smk"


rule chips:
    input:
        image=rules.download.output.image,
        mask=rules.download.output.mask,
        label=rules.download.output.label,
    output:
        images="results/chips/{aoi}/images.npy",
        labels="results/chips/{aoi}/labels.npy",
        manifest="results/chips/{aoi}/manifest.parquet",
        summary="results/chips/{aoi}/summary.json",
    log:
        "results/logs/chips/{aoi}.log",
    benchmark:
        "results/benchmarks/chips/{aoi}.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["chips"],
    params:
        chips=canonical(
            {k: v for k, v in config["chips"].items() if k != "export_geotiff"}
        ),
        code=code_version("scripts/chips.py"),
    script:
        "../../scripts/chips.py"


rule export_chips:
    input:
        images=rules.chips.output.images,
        labels=rules.chips.output.labels,
        manifest=rules.chips.output.manifest,
        image=rules.download.output.image,
    output:
        folder=directory("results/chips/{aoi}/geotiff"),
    log:
        "results/logs/export_chips/{aoi}.log",
    benchmark:
        "results/benchmarks/export_chips/{aoi}.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["export_chips"],
    params:
        code=code_version("scripts/export_chips.py"),
    script:
        "../../scripts/export_chips.py"
