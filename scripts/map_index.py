"""Rule map_index: results/maps/index.html, a link to every viewer page; lulc/viewer.py."""

import os
from pathlib import Path

from lulc.logs import setup_script_logging
from lulc.viewer import write_index

log = setup_script_logging(snakemake)
index_dir = Path(snakemake.output.index).parent
pages = [
    (title, text, os.path.relpath(page, index_dir))
    for (title, text), page in zip(snakemake.params.titles, snakemake.input.pages, strict=True)
]
write_index(pages, snakemake.output.index)
log.info("index of %d pages", len(pages))
