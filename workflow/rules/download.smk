rule download:
    input:
        imagery="results/search/{aoi}/imagery.json",
        labels="results/search/{aoi}/labels.json",
    output:
        image="results/download/{aoi}/image.tif",
        mask="results/download/{aoi}/mask.tif",
        label="results/download/{aoi}/label.tif",
        frames="results/download/{aoi}/frames.json",
    params:
        aoi=lambda w: config["aois"][w.aoi],
        download=config["download"],
        imagery_signing=config["stac"]["imagery"]["signing"],
        labels_signing=config["stac"]["labels"]["signing"],
        code=code_version("download", "search"),
    resources:
        mem_mb=4000,
    log:
        "results/logs/download/{aoi}.log",
    benchmark:
        "results/benchmarks/download/{aoi}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/download.py"
