# Land-cover maps: each trained run of `predict.runs` over every AOI, as a COG (+ confidence), a PNG preview
# and a prediction / label comparison. Logic: lulc/predict.py; config: the `predict:` section only, without the
# keys that change speed but not the map (runs, batch_size, threads), so adding a run reruns nothing else.


rule predict:
    input:
        best="results/train/{model}/f{fraction}_s{seed}/best.ckpt",
        image="results/download/{aoi}/image.tif",
        label="results/download/{aoi}/label.tif",
        manifest="results/chips/{aoi}/manifest.parquet",
        splits="results/splits/splits.csv",
    output:
        **confidence_output(),
        landcover="results/predict/{aoi}/{model}_f{fraction}_s{seed}/landcover.tif",
        preview=report(
            "results/predict/{aoi}/{model}_f{fraction}_s{seed}/preview.png",
            caption="../report/predict_preview.rst",
            category="Maps",
            subcategory="{aoi}",
            labels={
                "AOI": "{aoi}",
                "run": "{model}_f{fraction}_s{seed}",
                "figure": "map",
            },
        ),
        comparison=report(
            "results/predict/{aoi}/{model}_f{fraction}_s{seed}/comparison.png",
            caption="../report/predict_comparison.rst",
            category="Maps",
            subcategory="{aoi}",
            labels={
                "AOI": "{aoi}",
                "run": "{model}_f{fraction}_s{seed}",
                "figure": "prediction vs label",
            },
        ),
    log:
        "results/logs/predict/{aoi}/{model}_f{fraction}_s{seed}.log",
    benchmark:
        "results/benchmarks/predict/{aoi}/{model}_f{fraction}_s{seed}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: PREDICT["threads"]
    resources:
        mem_mb=MEM_MB["predict"],
        gpu=gpus(PREDICT["device"]),
    params:
        predict=canonical(
            {k: v for k, v in PREDICT.items() if k not in PREDICT_RUNTIME_KEYS}
        ),
        # the run's training configuration: a changed run is re-mapped even where its training job failed
        training=training_identity,
        code=code_version("scripts/predict.py"),
    script:
        "../../scripts/predict.py"
