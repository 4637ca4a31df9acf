"""Rule map_frames: the frames of a whole map region and period, chosen once for all its tiles; lulc/download/."""

from datetime import date

from lulc.download import write_region_frames
from lulc.logs import setup_script_logging
from lulc.maps import MapRegion, frame_grids
from lulc.search import load_item_collection

setup_script_logging(snakemake)
wildcards, place = snakemake.wildcards, snakemake.params.place
region_files = list(snakemake.input.region)  # the region's vector file; none for a bbox or an AOI region
region = MapRegion(wildcards.region, tuple(place["bbox"]), (), region_files[0] if region_files else None)
write_region_frames(
    f"map region {wildcards.region} {wildcards.period}",
    date.fromisoformat(place["start"]),
    date.fromisoformat(place["end"]),
    frame_grids(region, float(snakemake.params.download["resolution"])),
    load_item_collection(snakemake.input.imagery),
    snakemake.params.download,
    snakemake.output.frames,
    imagery_signing=snakemake.params.imagery_signing,
)
