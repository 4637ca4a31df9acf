"""Rule map_compare: a map region's map against its labels (figure + agreement.json); lulc/map_figures.py."""

from lulc.io import write_json
from lulc.legends import read_legend
from lulc.logs import setup_script_logging
from lulc.map_figures import write_comparison
from lulc.metrics import metrics_from_confusion

log = setup_script_logging(snakemake)
wildcards = snakemake.wildcards
run = f"{wildcards.model}_f{wildcards.fraction}_s{wildcards.seed}"
overlapped = list(snakemake.params.training_aois)
whole = (
    f"whole region (overlaps training AOIs {', '.join(overlapped)}: includes trained-on pixels)"
    if overlapped
    else "whole region (no training AOI in it)"
)
figures = write_comparison(
    snakemake.input.landcover,
    snakemake.input.label,
    snakemake.output.comparison,
    None,
    title=f"{wildcards.region} {wildcards.period}: {run}",
    whole=whole,
)
confusion = figures["whole"]
legend = read_legend(snakemake.input.landcover)
metrics = metrics_from_confusion(confusion, legend.names) if confusion.sum() else {}
record = {"region": wildcards.region, "period": wildcards.period, "run": run, "training_aois_overlapped": overlapped,
          "legend": legend.name}
write_json({**record, "confusion": confusion.tolist(), **metrics}, snakemake.output.agreement)
log.info("agreement with the labels: %s", {k: v for k, v in metrics.items() if not isinstance(v, list | dict)})
