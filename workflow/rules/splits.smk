# Spatial, class-stratified train/val/test splits with a buffer, a balanced training pool and nested
# training subsets (fraction x seed). Logic: lulc/splits.py; config: the `splits:` section only.


rule splits:
    input:
        manifests=chip_arrays("manifest"),
    output:
        table="results/splits/splits.csv",
        balance="results/splits/class_balance.csv",
        balance_plot=report(
            "results/splits/class_balance.png",
            caption="../report/class_balance.rst",
            category="Data",
        ),
        summary="results/splits/splits_summary.json",
    log:
        "results/logs/splits.log",
    benchmark:
        "results/benchmarks/splits.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["splits"],
    params:
        cfg=canonical(config["splits"]),
        code=code_version("scripts/splits.py"),
    script:
        "../../scripts/splits.py"
