rule demo:
    output:
        "results/demo/catalog.json",
    params:
        demo=config["demo"],
        code=code_version("demo"),
    log:
        "results/logs/demo.log",
    benchmark:
        "results/benchmarks/demo.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/demo.py"
