# Viewer pages: one self-contained HTML page per map region and per training AOI (maps, labels, agreement,
# change, natural colour, tiles; swipe, opacity, zoom, cursor readout), opened from the results folder with no
# server and no network, and results/maps/index.html linking them. Logic: lulc/viewer.py and its page
# template lulc/viewer_page.html; config: maps.viewer_max_side.


include: "functions/viewer.smk"


rule map_viewer:
    input:
        landcover=region_viewer_inputs("landcover"),
        confidence=region_viewer_inputs("confidence"),
        labels=region_viewer_labels,
        images=region_viewer_images,
        tiles=rules.map_tiles.output.tiles,
        samples=lambda w: [path for _, path in region_viewer_samples(w)],
    output:
        page=f"{REGION}/viewer.html",
    log:
        f"{REGION_LOGS}/viewer.log",
    benchmark:
        f"{REGION_BENCHMARKS}/viewer.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["viewer"],
    params:
        page=region_viewer_params,
        max_side=MAPS["viewer_max_side"],
        code=VIEWER_CODE["region"],
    script:
        "../../scripts/map_viewer.py"


rule aoi_viewer:
    input:
        landcover=aoi_viewer_inputs("landcover"),
        confidence=aoi_viewer_inputs("confidence"),
        label=rules.download.output.label,
        image=rules.download.output.image,
    output:
        page="results/predict/{aoi}/viewer.html",
    log:
        "results/logs/predict/{aoi}/viewer.log",
    benchmark:
        "results/benchmarks/predict/{aoi}/viewer.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["viewer"],
    params:
        runs=lambda w: [f"{m}_f{f}_s{s}" for m, f, s in predict_runs()],
        bbox=lambda w: list(AOI.from_config(w.aoi, config["aois"][w.aoi]).bbox),
        max_side=MAPS["viewer_max_side"],
        code=VIEWER_CODE["aoi"],
    script:
        "../../scripts/aoi_viewer.py"


rule map_index:
    input:
        pages=[page for page, _, _ in viewer_pages()],
    output:
        index="results/maps/index.html",
    log:
        "results/logs/maps/index.log",
    benchmark:
        "results/benchmarks/maps/index.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["search"],
    params:
        titles=[(title, text) for _, title, text in viewer_pages()],
        code=code_version("scripts/map_index.py"),
    script:
        "../../scripts/map_index.py"
