"""Rule aoi_viewer: a training AOI's offline viewer page (its maps, labels, agreement, imagery); lulc/viewer.py."""

from lulc.logs import setup_script_logging
from lulc.viewer import PageInputs, box, run_maps, write_page

log = setup_script_logging(snakemake)
params = snakemake.params
inputs = PageInputs(
    title=f"training AOI {snakemake.wildcards.aoi}",
    maps=run_maps(snakemake.input.landcover, snakemake.input.confidence, [("", run) for run in params.runs]),
    labels={"": snakemake.input.label},
    images=[snakemake.input.image],
    outline=box(*params.bbox),
    notes=["Trained on parts of this AOI: agreement here includes training pixels (the test chips are the "
           "only unseen ones; see the comparison figure)."],
)
log.info("viewer page: %s", write_page(inputs, snakemake.output.page, max_side=params.max_side))
