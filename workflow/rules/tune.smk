# Equal-budget hyperparameter search: one tune job per model of `tune.models` (its trials run in sequence inside
# the job, also on SLURM), on the validation split only. With `tune.enabled`, every training run of the model
# uses the best trial's values. Logic: lulc/tune.py (Optuna); config: the model's entry, `train:` and the
# budget and search space of `tune:`.


include: "functions/tune.smk"


rule tune:
    input:
        images=chip_arrays("images"),
        labels=chip_arrays("labels"),
        splits=rules.splits.output.table,
        pretrain=pretrain_input,
        weights=weights_file_input,
        stats=dataset_stats_input,
    output:
        trials="results/tune/{model}/trials.csv",
        best="results/tune/{model}/best.yaml",
        history=report(
            "results/tune/{model}/history.png",
            caption="../report/tune_history.rst",
            category="Tuning",
            subcategory="{model}",
        ),
    log:
        "results/logs/tune/{model}.log",
    benchmark:
        "results/benchmarks/tune/{model}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=MEM_MB["tune"],
        gpu=gpus(config["train"]["accelerator"], config["train"]["devices"]),
    params:
        # without the keys a trial never uses: changing them reruns no search
        model=tune_model_params,
        train=tune_train_params,
        tune=lambda w: tune_params(w.model),
        pretrain=pretrain_identity,
        code=TUNE_CODE,
    script:
        "../../scripts/tune.py"
