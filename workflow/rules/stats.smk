# Per-band normalisation statistics of the whole training pool (every chip of the train split, fraction 1),
# for models whose `normalization` is `dataset`; train (and pretrain) read them only for those models.
# Logic: lulc/stats.py; no config: the statistics follow from the chips and the split alone.


include: "functions/stats.smk"


rule stats:
    input:
        images=chip_arrays("images"),
        splits=rules.splits.output.table,
    output:
        stats="results/stats/normalization.json",
    log:
        "results/logs/stats.log",
    benchmark:
        "results/benchmarks/stats.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["stats"],
    params:
        code=code_version("scripts/stats.py"),
    script:
        "../../scripts/stats.py"
