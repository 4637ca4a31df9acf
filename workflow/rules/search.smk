rule search:
    input:
        demo_inputs,
    output:
        imagery="results/search/{aoi}/imagery.json",
        labels="results/search/{aoi}/labels.json",
    params:
        aoi=lambda w: config["aois"][w.aoi],
        imagery=config["stac"]["imagery"],
        labels=config["stac"]["labels"],
        code=code_version("search"),
    log:
        "results/logs/search/{aoi}.log",
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/search.py"
