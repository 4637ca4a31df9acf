# Evaluation of every trained run on the fixed test split (the summary is in summary.smk): each test chip on its
# own (`evaluate.mode: chips`) or each test block's region by sliding window (`sliding_window`, lulc/evaluate.py).
# One evaluate job per model evaluates all of that model's runs (outputs per run): a job's fixed cost (loading
# PyTorch, and TerraTorch for Prithvi) is paid once per model, not once per run, and a change to one model's
# settings still re-evaluates only that model.


include: "functions/evaluate.smk"


rule evaluate:
    input:
        best=model_runs(rules.train.output.best),
        run=model_runs(rules.train.output.run),
        images=chip_arrays("images"),
        labels=chip_arrays("labels"),
        splits=rules.splits.output.table,
        # evaluate.mode: sliding_window only: the images the test blocks are predicted on, the chips' windows
        rasters=sliding_window_images,
        manifests=sliding_window_manifests,
    output:
        metrics=model_runs(f"{EVALUATION}/metrics.json"),
        confusion=model_runs(f"{EVALUATION}/confusion.csv"),
        per_class=model_runs(f"{EVALUATION}/per_class.csv"),
    log:
        "results/logs/evaluate/{model}.log",
    benchmark:
        "results/benchmarks/evaluate/{model}.tsv"
    conda:
        "../../envs/train.yaml"
    resources:
        mem_mb=MEM_MB["evaluate"],
        gpu=gpus("auto"),
    params:
        # the model's training configuration: a changed run re-evaluates even where its training job failed
        training=training_identity,
        evaluate=evaluate_params(),
        code=code_version("scripts/evaluate.py"),
    script:
        "../../scripts/evaluate.py"
