"""Rule map_viewer: a map region's offline viewer page (maps, labels, change, imagery, tiles); lulc/viewer.py."""

from lulc.logs import setup_script_logging
from lulc.viewer import PageInputs, region_outline, run_maps, tile_cores, write_page

log = setup_script_logging(snakemake)
page = snakemake.params.page
outline, outline_crs = region_outline(page["bbox"], page["file"])
inputs = PageInputs(
    title=f"map region {snakemake.wildcards.region}",
    maps=run_maps(snakemake.input.landcover, snakemake.input.confidence, [tuple(item) for item in page["maps"]]),
    labels=dict(zip(page["label_periods"], snakemake.input.labels, strict=True)),
    images=list(snakemake.input.images),
    change_pairs=[tuple(pair) for pair in page["change_pairs"]],
    outline=outline,
    outline_crs=outline_crs,
    tiles=tile_cores(snakemake.input.tiles),
    samples=list(zip(page["sample_titles"], snakemake.input.samples, strict=True)),
    notes=[f"Natural colour: the first frame of period {page['imagery_period']}."],
)
log.info("viewer page: %s", write_page(inputs, snakemake.output.page, max_side=snakemake.params.max_side))
