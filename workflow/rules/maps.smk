# Map regions: label-free land-cover maps of any size and year (lulc/maps.py, lulc/mosaic.py). The region is
# tiled by a checkpoint; its frames are chosen once per period for the whole region (map_frames); each
# processing tile is downloaded from those frames and predicted (core + halo) as its own job; the cores are
# mosaicked into one COG per region x period x run; periods are compared in a transition table.
# Each rule gets only the settings it depends on: adding a year or a region reruns only its own jobs.


include: "functions/maps.smk"


checkpoint map_tiles:
    input:
        map_region_file,
    output:
        tiles=f"{REGION}/tiles.csv",
    log:
        f"{REGION_LOGS}/tiles.log",
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
        imagery=f"{PERIOD}/imagery.json",
    log:
        f"{REGION_LOGS}/{{period}}/search.log",
    benchmark:
        f"{REGION_BENCHMARKS}/{{period}}/search.tsv"
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
        labels=f"{PERIOD}/labels.json",
    log:
        f"{REGION_LOGS}/{{period}}/label_search.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["search"],
    params:
        place=map_period_params,
        query=canonical(config["stac"]["labels"]),
        config_key="stac.labels",
        label_source=canonical(config["labels"]),
        code=code_version("scripts/map_search.py"),
    script:
        "../../scripts/map_search.py"


rule map_label:
    input:
        labels=rules.map_label_search.output.labels,
        tiles=rules.map_tiles.output.tiles,
        label_files=label_source_files,
    output:
        label=f"{PERIOD}/{TILE}/label.tif",
    log:
        f"{REGION_LOGS}/{{period}}/label/{{tile}}.log",
    benchmark:
        f"{REGION_BENCHMARKS}/{{period}}/label/{{tile}}.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["download"],
    params:
        download={"block_size": config["download"]["block_size"]},
        labels_signing=config["stac"]["labels"]["signing"],
        label_source=canonical(config["labels"]),
        label_place=label_place,
        code=code_version("scripts/map_label.py"),
    script:
        "../../scripts/map_label.py"


rule map_label_mosaic:
    input:
        labels=map_tile_labels,
        tiles=rules.map_tiles.output.tiles,
    output:
        label=f"{PERIOD}/label.tif",
    log:
        f"{REGION_LOGS}/{{period}}/label_mosaic.log",
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


rule map_frames:
    input:
        imagery=rules.map_search.output.imagery,
        region=map_region_file,
    output:
        frames=f"{PERIOD}/frames.json",
    log:
        f"{REGION_LOGS}/{{period}}/frames.log",
    benchmark:
        f"{REGION_BENCHMARKS}/{{period}}/frames.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["download"],
    params:
        place=map_period_params,
        extent=map_extent_params,
        download=MAP_DOWNLOAD_PARAMS,
        imagery_signing=lambda w: map_imagery(w.region)["signing"],
        code=code_version("scripts/map_frames.py"),
    script:
        "../../scripts/map_frames.py"


rule map_download:
    input:
        imagery=rules.map_search.output.imagery,
        tiles=rules.map_tiles.output.tiles,
        frames=rules.map_frames.output.frames,
    output:
        image=f"{PERIOD}/{TILE}/image.tif",
        mask=f"{PERIOD}/{TILE}/mask.tif",
        frames=f"{PERIOD}/{TILE}/frames.json",
        dates=f"{PERIOD}/{TILE}/dates.csv",
    log:
        f"{REGION_LOGS}/{{period}}/download/{{tile}}.log",
    benchmark:
        f"{REGION_BENCHMARKS}/{{period}}/download/{{tile}}.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["download"],
    params:
        place=map_period_params,
        download=MAP_DOWNLOAD_PARAMS,
        imagery_signing=lambda w: map_imagery(w.region)["signing"],
        code=code_version("scripts/map_download.py"),
    script:
        "../../scripts/map_download.py"


rule map_predict:
    input:
        best=rules.train.output.best,
        image=rules.map_download.output.image,
        tiles=rules.map_tiles.output.tiles,
        region=map_region_file,
    output:
        **confidence_output(f"{PERIOD_RUN}/{TILE}/confidence.tif"),
        landcover=f"{PERIOD_RUN}/{TILE}/landcover.tif",
    log:
        f"{REGION_LOGS}/{{period}}/{RUN}/predict/{{tile}}.log",
    benchmark:
        f"{REGION_BENCHMARKS}/{{period}}/{RUN}/predict/{{tile}}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: PREDICT["threads"]
    resources:
        mem_mb=MEM_MB["predict"],
        gpu=gpus(PREDICT["device"]),
    params:
        predict=PREDICT_PARAMS,
        training=training_identity,
        code=code_version("scripts/map_predict.py"),
    script:
        "../../scripts/map_predict.py"


rule map_mosaic:
    input:
        **({"confidence": map_tile_maps("confidence")} if PREDICT["confidence"] else {}),
        landcover=map_tile_maps("landcover"),
        tiles=rules.map_tiles.output.tiles,
    output:
        **confidence_output(f"{PERIOD_RUN}/confidence.tif"),
        landcover=f"{PERIOD_RUN}/landcover.tif",
        preview=report(
            f"{PERIOD_RUN}/preview.png",
            caption="../report/map_preview.rst",
            category="Map regions",
            subcategory="{region}",
            labels={
                "region": "{region}",
                "period": "{period}",
                "run": RUN,
            },
        ),
    log:
        f"{REGION_LOGS}/{{period}}/{RUN}/mosaic.log",
    benchmark:
        f"{REGION_BENCHMARKS}/{{period}}/{RUN}/mosaic.tsv"
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


rule map_compare:
    input:
        landcover=rules.map_mosaic.output.landcover,
        label=rules.map_label_mosaic.output.label,
    output:
        agreement=f"{PERIOD_RUN}/agreement.json",
        comparison=report(
            f"{PERIOD_RUN}/comparison.png",
            caption="../report/map_comparison.rst",
            category="Map regions",
            subcategory="{region}",
            labels={
                "region": "{region}",
                "period": "{period}",
                "run": f"{RUN} vs labels",
            },
        ),
    log:
        f"{REGION_LOGS}/{{period}}/{RUN}/compare.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["map_mosaic"],
    params:
        training_aois=map_region_trained_on,
        code=code_version("scripts/map_compare.py"),
    script:
        "../../scripts/map_compare.py"


rule map_change:
    input:
        before=f"{REGION}/{{before}}/{RUN}/landcover.tif",
        after=f"{REGION}/{{after}}/{RUN}/landcover.tif",
    output:
        table=f"{REGION}/{RUN}/change_{{before}}_to_{{after}}.csv",
        figure=report(
            f"{REGION}/{RUN}/change_{{before}}_to_{{after}}.png",
            caption="../report/map_change.rst",
            category="Map regions",
            subcategory="{region}",
            labels={
                "region": "{region}",
                "period": "{before} -> {after}",
                "run": RUN,
            },
        ),
    log:
        f"{REGION_LOGS}/{RUN}/change_{{before}}_to_{{after}}.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["map_mosaic"],
    params:
        code=code_version("scripts/map_change.py"),
    script:
        "../../scripts/map_change.py"
