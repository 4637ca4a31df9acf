"""Rule map_download: one processing tile (core + halo) of a map region's imagery, no labels, built from the frames
chosen for the whole region (rule map_frames); lulc/download/."""

import json
from datetime import date
from pathlib import Path

from lulc.download import write_imagery_stack
from lulc.logs import setup_script_logging
from lulc.maps import find_tile
from lulc.search import load_item_collection

setup_script_logging(snakemake)
wildcards, place = snakemake.wildcards, snakemake.params.place
write_imagery_stack(
    f"map region {wildcards.region} {wildcards.period} tile {wildcards.tile}",
    date.fromisoformat(place["start"]),
    date.fromisoformat(place["end"]),
    find_tile(snakemake.input.tiles, wildcards.tile).grid(),
    load_item_collection(snakemake.input.imagery),
    snakemake.params.download,
    Path(snakemake.output.image).parent,
    imagery_signing=snakemake.params.imagery_signing,
    frames=json.loads(Path(snakemake.input.frames).read_text(encoding="utf-8")),
)
