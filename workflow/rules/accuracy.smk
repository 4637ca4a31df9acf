# Accuracy assessment of the map regions' maps (Olofsson et al. 2014): a stratified random sample of every map
# (strata: its classes) to label, and, where the region names reference data or has labels, the error matrix
# in area proportions, accuracies and error-adjusted class areas with 95 % intervals. Logic: lulc/assessment.py
# (lulc/sampling.py, lulc/accuracy.py); config: maps.accuracy and maps.regions.<name>.reference.


include: "functions/accuracy.smk"


rule map_sample:
    input:
        landcover=rules.map_mosaic.output.landcover,
    output:
        gpkg=f"{SAMPLE}/samples.gpkg",
        csv=f"{SAMPLE}/samples.csv",
        strata=f"{SAMPLE}/strata.csv",
    log:
        f"{REGION_LOGS}/{{period}}/{RUN}/sample.log",
    benchmark:
        f"{REGION_BENCHMARKS}/{{period}}/{RUN}/sample.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["map_mosaic"],
    params:
        accuracy=canonical({k: v for k, v in ACCURACY.items() if k != "enabled"}),
        code=code_version("scripts/map_sample.py"),
    script:
        "../../scripts/map_sample.py"


rule map_accuracy:
    input:
        landcover=rules.map_mosaic.output.landcover,
        sample=rules.map_sample.output.csv,
        strata=rules.map_sample.output.strata,
        reference=reference_input,
    output:
        report=f"{ASSESSMENT}/accuracy.md",
        table=f"{ASSESSMENT}/accuracy.csv",
        figure=report(
            f"{ASSESSMENT}/accuracy.png",
            caption="../report/map_accuracy.rst",
            category="Map regions",
            subcategory="{region}",
            labels={
                "region": "{region}",
                "period": "{period}",
                "run": f"{RUN} accuracy",
            },
        ),
        units=f"{ASSESSMENT}/assessed.csv",
    log:
        f"{REGION_LOGS}/{{period}}/{RUN}/accuracy.log",
    benchmark:
        f"{REGION_BENCHMARKS}/{{period}}/{RUN}/accuracy.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["map_mosaic"],
    params:
        agreement=reference_is_agreement,
        code=code_version("scripts/map_accuracy.py"),
    script:
        "../../scripts/map_accuracy.py"


rule map_change_sample:
    input:
        before=f"{REGION}/{{before}}/{RUN}/landcover.tif",
        after=f"{REGION}/{{after}}/{RUN}/landcover.tif",
    output:
        strata_map=f"{CHANGE}/strata.tif",
        gpkg=f"{CHANGE}/sample/samples.gpkg",
        csv=f"{CHANGE}/sample/samples.csv",
        strata=f"{CHANGE}/sample/strata.csv",
    log:
        f"{REGION_LOGS}/{RUN}/change_{{before}}_to_{{after}}/sample.log",
    benchmark:
        f"{REGION_BENCHMARKS}/{RUN}/change_{{before}}_to_{{after}}/sample.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["map_mosaic"],
    params:
        accuracy=canonical({k: v for k, v in ACCURACY.items() if k != "enabled"}),
        code=code_version("scripts/map_change_sample.py"),
    script:
        "../../scripts/map_change_sample.py"


rule map_change_accuracy:
    input:
        strata_map=rules.map_change_sample.output.strata_map,
        after=f"{REGION}/{{after}}/{RUN}/landcover.tif",
        sample=rules.map_change_sample.output.csv,
        strata=rules.map_change_sample.output.strata,
        reference=change_reference_inputs,
    output:
        report=f"{CHANGE}/accuracy/accuracy.md",
        table=f"{CHANGE}/accuracy/accuracy.csv",
        figure=f"{CHANGE}/accuracy/accuracy.png",
        after_report=f"{CHANGE}/accuracy/after_map.md",
        after_table=f"{CHANGE}/accuracy/after_map.csv",
        after_figure=f"{CHANGE}/accuracy/after_map.png",
    log:
        f"{REGION_LOGS}/{RUN}/change_{{before}}_to_{{after}}/accuracy.log",
    benchmark:
        f"{REGION_BENCHMARKS}/{RUN}/change_{{before}}_to_{{after}}/accuracy.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=MEM_MB["map_mosaic"],
    params:
        code=code_version("scripts/map_change_accuracy.py"),
    script:
        "../../scripts/map_change_accuracy.py"
