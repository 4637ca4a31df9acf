# download.season_windows must give one valid window per frame: checked at start-up, before any job.
from lulc.search import check_download_config

check_download_config(config["download"])


rule download:
    input:
        imagery="results/search/{aoi}/imagery.json",
        labels="results/search/{aoi}/labels.json",
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
        mem_mb=4000,
    params:
        aoi=lambda w: canonical(config["aois"][w.aoi]),
        download=canonical(config["download"]),
        imagery_signing=config["stac"]["imagery"]["signing"],
        labels_signing=config["stac"]["labels"]["signing"],
        code=code_version("download", "search"),
    script:
        "../../scripts/download.py"
