# The study's summary: one row per run, mean / sd / interquartile mean with bootstrap intervals per model x
# fraction, Figure 1 (mIoU against training fraction), per-class IoU and confusion matrices. Logic:
# lulc/summary.py; inputs: every run's evaluation.


rule summary:
    input:
        metrics=evaluation_outputs("metrics.json"),
        confusions=evaluation_outputs("confusion.csv"),
    output:
        runs=report(
            "results/summary/runs.csv",
            caption="../report/runs.rst",
            category="Summary",
        ),
        aggregate=report(
            "results/summary/aggregate.csv",
            caption="../report/aggregate.rst",
            category="Summary",
        ),
        table="results/summary/aggregate.md",
        figure1=report(
            "results/summary/figure1_miou_vs_fraction.png",
            caption="../report/figure1.rst",
            category="Summary",
        ),
        per_class=report(
            "results/summary/per_class_iou.png",
            caption="../report/per_class_iou.rst",
            category="Summary",
        ),
        confusions=report(
            "results/summary/confusion_matrices.png",
            caption="../report/confusion_matrices.rst",
            category="Summary",
        ),
    log:
        "results/logs/summary.log",
    benchmark:
        "results/benchmarks/summary.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["summary"],
    params:
        code=code_version("scripts/summary.py"),
    script:
        "../../scripts/summary.py"
