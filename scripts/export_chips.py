"""Rule export_chips: write the chip store as GeoTIFF image/label pairs (QGIS, TerraTorch)."""

from pathlib import Path

from lulc.chips import export_geotiff_chips
from lulc.logs import setup_script_logging

log = setup_script_logging(snakemake)
n = export_geotiff_chips(Path(snakemake.input.manifest).parent, Path(snakemake.input.image), Path(snakemake.output[0]))
log.info("%d GeoTIFF chip pairs written", n)
