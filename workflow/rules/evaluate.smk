# Evaluation of every trained run on the fixed test split, then the study's summary tables and figures.


rule evaluate:
    input:
        best="results/train/{model}/f{fraction}_s{seed}/best.ckpt",
        run="results/train/{model}/f{fraction}_s{seed}/run.json",
        images=expand("results/chips/{aoi}/images.npy", aoi=AOIS),
        labels=expand("results/chips/{aoi}/labels.npy", aoi=AOIS),
        splits="results/splits/splits.csv",
    output:
        metrics="results/evaluate/{model}/f{fraction}_s{seed}/metrics.json",
        confusion="results/evaluate/{model}/f{fraction}_s{seed}/confusion.csv",
        per_class="results/evaluate/{model}/f{fraction}_s{seed}/per_class.csv",
    log:
        "results/logs/evaluate/{model}/f{fraction}_s{seed}.log",
    conda:
        "../../envs/train.yaml"
    params:
        code=code_version("evaluate", "models", "dataset", "splits"),
    script:
        "../../scripts/evaluate.py"


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
    conda:
        "../../envs/data.yaml"
    params:
        code=code_version("summary"),
    script:
        "../../scripts/summary.py"
