rule demo:
    output:
        "results/demo/catalog.json",
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
