# The offline demo: synthetic HLS scenes and IO-LULC-like labels in a static STAC catalog, generated from a seed
# (lulc/demo/), and each region's true land cover per imagery year (the reference of the demo's accuracy
# assessment, outside the catalog). Searches read it where `source: demo`; config: the `demo:` section only.


include: "functions/demo.smk"


rule demo:
    output:
        catalog=f"{DEMO_DIR}/catalog.json",
        truth=demo_truth_outputs(),
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
