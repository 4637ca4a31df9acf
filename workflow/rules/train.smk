# Fine-tuning: one run per model (`train.models`) x training fraction x seed (`splits.train_fractions`,
# `splits.seeds`). Logic: lulc/train.py (Lightning) and lulc/models/ (the registry and the families); config:
# the run's `models.<name>` entry and the `train:` section only, so changing one model's settings reruns only
# its runs.


include: "functions/train.smk"


rule train:
    input:
        images=chip_arrays("images"),
        labels=chip_arrays("labels"),
        splits=rules.splits.output.table,
        pretrain=pretrain_input,
        weights=weights_file_input,
        stats=dataset_stats_input,
        tuned=tuned_input,
    output:
        best=f"results/train/{RUN_DIR}/best.ckpt",
        curve=f"results/train/{RUN_DIR}/curve.csv",
        run=f"results/train/{RUN_DIR}/run.json",
    log:
        f"results/logs/train/{RUN_DIR}.log",
    benchmark:
        f"results/benchmarks/train/{RUN_DIR}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=MEM_MB["train"],
        gpu=gpus(config["train"]["accelerator"], config["train"]["devices"]),
    params:
        model=lambda w: canonical(config["models"][w.model]),
        train=TRAIN_PARAMS,
        # a changed pretraining setting reruns training even where the pretrain job failed (its output missing)
        pretrain=pretrain_identity,
        tune=tune_identity,
        code=TRAIN_CODE,
    script:
        "../../scripts/train.py"
