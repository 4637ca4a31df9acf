# Optional masked-autoencoder pretraining of a Prithvi encoder on the unlabelled chips of every AOI. It runs
# only for a `models.<name>` entry whose `weights` is `pretrain`; fine-tuning then loads its checkpoint through
# the same strict loader as the official weights. Logic: lulc/pretrain.py; config: `pretrain:` and the
# encoder keys of `models.<name>` (not its fine-tuning hyperparameters). The starting weights of a model's
# runs (this checkpoint, or a local weights file) are chosen here too, for tune and train.


include: "functions/pretrain.smk"


rule pretrain:
    input:
        images=chip_arrays("images"),
        stats=dataset_stats_input,
    output:
        checkpoint="results/pretrain/{model}/checkpoint.pt",
        summary="results/pretrain/{model}/pretrain.json",
    log:
        "results/logs/pretrain/{model}.log",
    benchmark:
        "results/benchmarks/pretrain/{model}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=MEM_MB["pretrain"],
        gpu=gpus(config["train"]["accelerator"]),
    params:
        model=pretrain_model_params,
        pretrain=canonical(config["pretrain"]),
        code=PRETRAIN_CODE,
    script:
        "../../scripts/pretrain.py"
