# Evaluation of every trained run on the fixed test split, then the study's summary tables and figures.
# One evaluate job per model evaluates all of that model's runs (outputs per run): a job's fixed cost (loading
# PyTorch, and TerraTorch for Prithvi) is paid once per model, not once per run, and a change to one model's
# settings still re-evaluates only that model.


rule evaluate:
    input:
        best=model_runs("results/train/{model}/f{fraction}_s{seed}/best.ckpt"),
        run=model_runs("results/train/{model}/f{fraction}_s{seed}/run.json"),
        images=expand("results/chips/{aoi}/images.npy", aoi=AOIS),
        labels=expand("results/chips/{aoi}/labels.npy", aoi=AOIS),
        splits="results/splits/splits.csv",
    output:
        metrics=model_runs("results/evaluate/{model}/f{fraction}_s{seed}/metrics.json"),
        confusion=model_runs(
            "results/evaluate/{model}/f{fraction}_s{seed}/confusion.csv"
        ),
        per_class=model_runs(
            "results/evaluate/{model}/f{fraction}_s{seed}/per_class.csv"
        ),
    log:
        "results/logs/evaluate/{model}.log",
    benchmark:
        "results/benchmarks/evaluate/{model}.tsv"
    conda:
        "../../envs/train.yaml"
    resources:
        mem_mb=4000,
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
