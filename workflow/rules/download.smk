# Download per AOI: the imagery stack (frames chosen by clear fraction) and the label raster on one grid, as
# COGs (lulc/download/); config: the AOI, `download:`, `labels:` and the signing of the `stac:` queries.


include: "functions/download.smk"


rule download:
    input:
        imagery=rules.search.output.imagery,
        labels=rules.search.output.labels,
        label_files=label_source_files,
    output:
        image="results/download/{aoi}/image.tif",
        mask="results/download/{aoi}/mask.tif",
        label="results/download/{aoi}/label.tif",
        frames="results/download/{aoi}/frames.json",
        dates="results/download/{aoi}/dates.csv",
    log:
        "results/logs/download/{aoi}.log",
    benchmark:
        "results/benchmarks/download/{aoi}.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["download"],
    params:
        aoi=lambda w: canonical(config["aois"][w.aoi]),
        download=canonical(config["download"]),
        imagery_signing=config["stac"]["imagery"]["signing"],
        labels_signing=config["stac"]["labels"]["signing"],
        label_source=canonical(config["labels"]),
        code=code_version("scripts/download.py"),
    script:
        "../../scripts/download.py"
