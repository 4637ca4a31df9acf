rule search:
    input:
        demo_inputs,
    output:
        imagery="results/search/{aoi}/imagery.json",
        labels="results/search/{aoi}/labels.json",
    log:
        "results/logs/search/{aoi}.log",
    conda:
        "../../envs/data.yaml"
    params:
        aoi=lambda w: canonical(config["aois"][w.aoi]),
        imagery=canonical(config["stac"]["imagery"]),
        labels=canonical(config["stac"]["labels"]),
        code=code_version("search"),
    script:
        "../../scripts/search.py"
