# The offline demo: synthetic HLS scenes and IO-LULC-like labels (or WorldCover-like: demo.label_legend) in a
# static STAC catalog, generated from a seed (lulc/demo/), each region's true land cover per imagery year (the
# reference of the demo's accuracy assessment, outside the catalog) and, with demo.label_polygons > 0, each
# labelled region's field polygons (sparse labels for labels.source: vector, outside the catalog). Searches read
# it where `source: demo`; config: the `demo:` section only.


include: "functions/demo.smk"


rule demo:
    output:
        catalog=f"{DEMO_DIR}/catalog.json",
        truth=demo_truth_outputs(),
        polygons=demo_polygon_outputs(),
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
