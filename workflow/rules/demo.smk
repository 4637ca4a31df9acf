# The offline demo: synthetic HLS scenes and IO-LULC-like labels in a static STAC catalog, generated from a seed
# (lulc/demo/). Searches read it where `source: demo`; config: the `demo:` section only.


rule demo:
    output:
        catalog="results/demo/catalog.json",
    log:
        "results/logs/demo.log",
    benchmark:
        "results/benchmarks/demo.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["demo"],
    params:
        demo=canonical(config["demo"]),
        code=code_version("scripts/demo.py"),
    script:
        "../../scripts/demo.py"
