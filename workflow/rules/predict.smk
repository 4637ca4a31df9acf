# Land-cover maps: each trained run of `predict.runs` over every AOI, as a COG (+ confidence), a PNG preview
# and a prediction / label comparison. Logic: lulc/predict.py; config: the `predict:` section only, without the
# keys that change speed but not the map (runs, batch_size, threads), so adding a run reruns nothing else.


include: "functions/predict.smk"


rule predict:
    input:
        best=rules.train.output.best,
        image=rules.download.output.image,
        label=rules.download.output.label,
        manifest=rules.chips.output.manifest,
        splits=rules.splits.output.table,
    output:
        **confidence_output(f"{AOI_MAP}/confidence.tif"),
        landcover=f"{AOI_MAP}/landcover.tif",
        preview=report(
            f"{AOI_MAP}/preview.png",
            caption="../report/predict_preview.rst",
            category="Maps",
            subcategory="{aoi}",
            labels={
                "AOI": "{aoi}",
                "run": RUN,
                "figure": "map",
            },
        ),
        comparison=report(
            f"{AOI_MAP}/comparison.png",
            caption="../report/predict_comparison.rst",
            category="Maps",
            subcategory="{aoi}",
            labels={
                "AOI": "{aoi}",
                "run": RUN,
                "figure": "prediction vs label",
            },
        ),
    log:
        f"results/logs/predict/{{aoi}}/{RUN}.log",
    benchmark:
        f"results/benchmarks/predict/{{aoi}}/{RUN}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: PREDICT["threads"]
    resources:
        mem_mb=MEM_MB["predict"],
        gpu=gpus(PREDICT["device"]),
    params:
        predict=PREDICT_PARAMS,
        # the run's training configuration: a changed run is re-mapped even where its training job failed
        training=training_identity,
        code=code_version("scripts/predict.py"),
    script:
        "../../scripts/predict.py"
