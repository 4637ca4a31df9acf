rule demo:
    output:
        "results/demo/catalog.json",
    log:
        "results/logs/demo.log",
    benchmark:
        "results/benchmarks/demo.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        demo=canonical(config["demo"]),
        code=code_version("demo"),
    script:
        "../../scripts/demo.py"
