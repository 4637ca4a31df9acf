# Map regions: label-free land-cover maps of any size and year (lulc/maps.py, lulc/mosaic.py). The region is
# tiled by a checkpoint; each processing tile is downloaded and predicted (core + halo) as its own job; the
# cores are mosaicked into one COG per region x period x run; periods are compared in a transition table.
# Each rule gets only the settings it depends on: adding a year or a region reruns only its own jobs.


checkpoint map_tiles:
    input:
        map_region_file,
    output:
        tiles="results/maps/{region}/tiles.csv",
    log:
        "results/logs/maps/{region}/tiles.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["map_tiles"],
    params:
        tiling=map_tiling_params,
        code=code_version("scripts/map_tiles.py"),
    script:
        "../../scripts/map_tiles.py"


rule map_search:
    input:
        map_demo_inputs,
    output:
        imagery="results/maps/{region}/{period}/imagery.json",
    log:
        "results/logs/maps/{region}/{period}/search.log",
    benchmark:
        "results/benchmarks/maps/{region}/{period}/search.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["search"],
    params:
        place=map_period_params,
        query=lambda w: canonical(map_imagery(w.region)),
        config_key=lambda w: f"maps.regions.{w.region}.imagery",
        code=code_version("scripts/map_search.py"),
    script:
        "../../scripts/map_search.py"


# Regions with `labels: true` only: their labels per period, per tile core, as one mosaic, and each map against it.


rule map_label_search:
    input:
        map_label_demo_inputs,
    output:
        labels="results/maps/{region}/{period}/labels.json",
    log:
        "results/logs/maps/{region}/{period}/label_search.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["search"],
    params:
        place=map_period_params,
        query=canonical(config["stac"]["labels"]),
        config_key="stac.labels",
        code=code_version("scripts/map_search.py"),
    script:
        "../../scripts/map_search.py"


rule map_label:
    input:
        labels="results/maps/{region}/{period}/labels.json",
        tiles="results/maps/{region}/tiles.csv",
    output:
        label="results/maps/{region}/{period}/tiles/{tile}/label.tif",
    log:
        "results/logs/maps/{region}/{period}/label/{tile}.log",
    benchmark:
        "results/benchmarks/maps/{region}/{period}/label/{tile}.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["download"],
    params:
        download={"block_size": config["download"]["block_size"]},
        labels_signing=config["stac"]["labels"]["signing"],
        code=code_version("scripts/map_label.py"),
    script:
        "../../scripts/map_label.py"


rule map_label_mosaic:
    input:
        labels=map_tile_labels,
        tiles="results/maps/{region}/tiles.csv",
    output:
        label="results/maps/{region}/{period}/label.tif",
    log:
        "results/logs/maps/{region}/{period}/label_mosaic.log",
    conda:
        "../../envs/data.yaml"
    threads: 2
    resources:
        mem_mb=MEM_MB["map_mosaic"],
    params:
        crs=lambda w: map_region_crs(w.region),
        code=code_version("scripts/map_label_mosaic.py"),
    script:
        "../../scripts/map_label_mosaic.py"


rule map_compare:
    input:
        landcover="results/maps/{region}/{period}/{model}_f{fraction}_s{seed}/landcover.tif",
        label="results/maps/{region}/{period}/label.tif",
    output:
        agreement="results/maps/{region}/{period}/{model}_f{fraction}_s{seed}/agreement.json",
        comparison=report(
            "results/maps/{region}/{period}/{model}_f{fraction}_s{seed}/comparison.png",
            caption="../report/map_comparison.rst",
            category="Map regions",
            subcategory="{region}",
            labels={
                "region": "{region}",
                "period": "{period}",
                "run": "{model}_f{fraction}_s{seed} vs labels",
            },
        ),
    log:
        "results/logs/maps/{region}/{period}/{model}_f{fraction}_s{seed}/compare.log",
    conda:
        "../../envs/train.yaml"
    resources:
        mem_mb=MEM_MB["map_mosaic"],
    params:
        training_aois=map_region_trained_on,
        code=code_version("scripts/map_compare.py"),
    script:
        "../../scripts/map_compare.py"


rule map_download:
    input:
        imagery="results/maps/{region}/{period}/imagery.json",
        tiles="results/maps/{region}/tiles.csv",
    output:
        image="results/maps/{region}/{period}/tiles/{tile}/image.tif",
        mask="results/maps/{region}/{period}/tiles/{tile}/mask.tif",
        frames="results/maps/{region}/{period}/tiles/{tile}/frames.json",
        dates="results/maps/{region}/{period}/tiles/{tile}/dates.csv",
    log:
        "results/logs/maps/{region}/{period}/download/{tile}.log",
    benchmark:
        "results/benchmarks/maps/{region}/{period}/download/{tile}.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["download"],
    params:
        place=map_period_params,
        download=canonical(
            {k: v for k, v in config["download"].items() if k not in ("crs",)}
        ),
        imagery_signing=lambda w: map_imagery(w.region)["signing"],
        code=code_version("scripts/map_download.py"),
    script:
        "../../scripts/map_download.py"


rule map_predict:
    input:
        best="results/train/{model}/f{fraction}_s{seed}/best.ckpt",
        image="results/maps/{region}/{period}/tiles/{tile}/image.tif",
        tiles="results/maps/{region}/tiles.csv",
    output:
        **map_confidence_output(
            "results/maps/{region}/{period}/{model}_f{fraction}_s{seed}/tiles/{tile}/confidence.tif"
        ),
        landcover="results/maps/{region}/{period}/{model}_f{fraction}_s{seed}/tiles/{tile}/landcover.tif",
    log:
        "results/logs/maps/{region}/{period}/{model}_f{fraction}_s{seed}/predict/{tile}.log",
    benchmark:
        "results/benchmarks/maps/{region}/{period}/{model}_f{fraction}_s{seed}/predict/{tile}.tsv"
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
        training=training_identity,
        code=code_version("scripts/map_predict.py"),
    script:
        "../../scripts/map_predict.py"


rule map_mosaic:
    input:
        **(
            {"confidence": map_tile_maps("confidence.tif")}
            if PREDICT["confidence"]
            else {}
        ),
        landcover=map_tile_maps("landcover.tif"),
        tiles="results/maps/{region}/tiles.csv",
    output:
        **map_confidence_output(
            "results/maps/{region}/{period}/{model}_f{fraction}_s{seed}/confidence.tif"
        ),
        landcover="results/maps/{region}/{period}/{model}_f{fraction}_s{seed}/landcover.tif",
        preview=report(
            "results/maps/{region}/{period}/{model}_f{fraction}_s{seed}/preview.png",
            caption="../report/map_preview.rst",
            category="Map regions",
            subcategory="{region}",
            labels={
                "region": "{region}",
                "period": "{period}",
                "run": "{model}_f{fraction}_s{seed}",
            },
        ),
    log:
        "results/logs/maps/{region}/{period}/{model}_f{fraction}_s{seed}/mosaic.log",
    benchmark:
        "results/benchmarks/maps/{region}/{period}/{model}_f{fraction}_s{seed}/mosaic.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 2
    resources:
        mem_mb=MEM_MB["map_mosaic"],
    params:
        crs=lambda w: map_region_crs(w.region),
        code=code_version("scripts/map_mosaic.py"),
    script:
        "../../scripts/map_mosaic.py"


rule map_change:
    input:
        before="results/maps/{region}/{before}/{model}_f{fraction}_s{seed}/landcover.tif",
        after="results/maps/{region}/{after}/{model}_f{fraction}_s{seed}/landcover.tif",
    output:
        table="results/maps/{region}/{model}_f{fraction}_s{seed}/change_{before}_to_{after}.csv",
        figure=report(
            "results/maps/{region}/{model}_f{fraction}_s{seed}/change_{before}_to_{after}.png",
            caption="../report/map_change.rst",
            category="Map regions",
            subcategory="{region}",
            labels={
                "region": "{region}",
                "period": "{before} -> {after}",
                "run": "{model}_f{fraction}_s{seed}",
            },
        ),
    log:
        "results/logs/maps/{region}/{model}_f{fraction}_s{seed}/change_{before}_to_{after}.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["map_mosaic"],
    params:
        code=code_version("scripts/map_change.py"),
    script:
        "../../scripts/map_change.py"
