"""Checkpoint map_tiles: a map region's processing tiles (zones, cores, halos) as tiles.csv; logic in lulc/maps.py."""

from lulc.logs import setup_script_logging
from lulc.maps import MapRegion, plan_tiles, tile_sizes, write_tiles

log = setup_script_logging(snakemake)
tiling = snakemake.params.tiling
region = MapRegion(snakemake.wildcards.region, tuple(tiling["bbox"]), (), tiling["file"])
resolution = float(tiling["resolution"])
core, halo = tile_sizes(
    tiling["tile_km"], tiling["halo_px"], resolution, tiling["predict_tile"], tiling["predict_stride"]
)
tiles = plan_tiles(region, resolution, core, halo)
log.info(
    "map region %s: %d processing tiles of %d px (%.1f km) + a %d px halo, in EPSG %s",
    region.name, len(tiles), core, core * resolution / 1000, halo, sorted({t.epsg for t in tiles}),
)  # fmt: skip
write_tiles(tiles, snakemake.output.tiles)
