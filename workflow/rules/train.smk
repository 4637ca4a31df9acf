# Fine-tuning: one run per model (`train.models`) x training fraction x seed (`splits.train_fractions`,
# `splits.seeds`). Logic: lulc/train.py (Lightning) and lulc/models.py (the registry); config: the run's
# `models.<name>` entry and the `train:` section only, so changing one model's settings reruns only its runs.


rule train:
    input:
        images=expand("results/chips/{aoi}/images.npy", aoi=AOIS),
        labels=expand("results/chips/{aoi}/labels.npy", aoi=AOIS),
        splits="results/splits/splits.csv",
        pretrain=pretrain_input,
        weights=weights_file_input,
        stats=dataset_stats_input,
        tuned=tuned_input,
    output:
        best="results/train/{model}/f{fraction}_s{seed}/best.ckpt",
        curve="results/train/{model}/f{fraction}_s{seed}/curve.csv",
        run="results/train/{model}/f{fraction}_s{seed}/run.json",
    log:
        "results/logs/train/{model}/f{fraction}_s{seed}.log",
    benchmark:
        "results/benchmarks/train/{model}/f{fraction}_s{seed}.tsv"
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
