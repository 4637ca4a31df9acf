# STAC search per AOI: imagery and label items as ItemCollections (lulc/search.py); config: the AOI and the
# `stac:` queries.


include: "functions/search.smk"


rule search:
    input:
        search_demo_input,
    output:
        imagery="results/search/{aoi}/imagery.json",
        labels="results/search/{aoi}/labels.json",
    log:
        "results/logs/search/{aoi}.log",
    benchmark:
        "results/benchmarks/search/{aoi}.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["search"],
    params:
        aoi=lambda w: canonical(config["aois"][w.aoi]),
        imagery=canonical(config["stac"]["imagery"]),
        labels=canonical(config["stac"]["labels"]),
        label_source=canonical(config["labels"]),
        code=code_version("scripts/search.py"),
    script:
        "../../scripts/search.py"
