# The study's summary: one row per run, mean / sd / interquartile mean with bootstrap intervals per model x
# fraction, Figure 1 (mIoU against training fraction), per-class IoU and confusion matrices, and the answer:
# each foundation model against the best baseline (and its from-scratch control) per fraction, as a paired
# difference over seeds with a bootstrap interval and a verdict (Figure 2). Logic: lulc/summary.py; inputs:
# every run's evaluation.


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
        answer=report(
            "results/summary/answer.csv",
            caption="../report/answer.rst",
            category="Summary",
        ),
        answer_table="results/summary/answer.md",
        answer_per_class=report(
            "results/summary/answer_per_class.csv",
            caption="../report/answer_per_class.rst",
            category="Summary",
        ),
        figure2=report(
            "results/summary/figure2_difference_vs_fraction.png",
            caption="../report/figure2.rst",
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
