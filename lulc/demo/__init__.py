"""The offline demo region: synthetic HLS v2.0 scenes and IO-LULC-like (or WorldCover-like) labels in a static
STAC catalog, with optional sparse labelled field polygons beside it.

Without network (CI, laptops, the default config) the workflow runs on regions that this package generates
deterministically from a seed, with the file formats, asset keys and STAC structure of the real sources
(Microsoft Planetary Computer ``hls2-s30``, ``hls2-l30`` and ``io-lulc-annual-v02`` or ``esa-worldcover``), so
search, download and chipping run exactly the code path real data takes. Its modules, each importing only those
above it:

* :mod:`lulc.demo.geometry`: where a region lies (UTM zone, MGRS tile, the 30 m imagery and 10 m label grids).
* :mod:`lulc.demo.arrays`: seeded generators and numpy field helpers (smooth noise, dilation, block means).
* :mod:`lulc.demo.labels`: the legends the labels can be written in (``demo.label_legend``) and the IO ->
  WorldCover mapping.
* :mod:`lulc.demo.landscape`: the latent 10 m land-cover map of a region, its change between years, its labels.
* :mod:`lulc.demo.render`: the acquisition plan and the 30 m bands and Fmask of each acquisition.
* :mod:`lulc.demo.stac`: the COGs, STAC items and collections, shaped like Planetary Computer's.
* :mod:`lulc.demo.polygons`: sparse labelled field polygons per labelled region (``demo.label_polygons``).
* :mod:`lulc.demo.generate`: :func:`generate_demo`, which validates ``demo.regions`` and ties the others together.
"""

from __future__ import annotations

from lulc.demo.generate import MIN_REGION_PX, POLYGON_DIR, TRUTH_DIR, generate_demo, truth_name
from lulc.demo.geometry import LABEL_GRID_OFFSET_M, TILE_MARGIN_PX, mgrs_tile, region_grid
from lulc.demo.labels import DEFAULT_LABEL_LEGEND, IO_TO_WORLDCOVER, LABEL_LEGENDS
from lulc.demo.landscape import BUILT, CLASS_MIXING, RANGELAND, Landscape, landscape_in_year, make_landscape
from lulc.demo.polygons import polygon_name
from lulc.demo.render import CLASS_REFLECTANCE
from lulc.demo.stac import (
    DEMO_COLLECTIONS,
    HLS_COLLECTIONS,
    LABEL_ASSET,
    LABEL_COLLECTION,
    LABEL_COLLECTIONS,
    WORLDCOVER_COLLECTION,
    demo_collections,
)

__all__ = [
    "BUILT",
    "CLASS_MIXING",
    "CLASS_REFLECTANCE",
    "DEFAULT_LABEL_LEGEND",
    "DEMO_COLLECTIONS",
    "HLS_COLLECTIONS",
    "IO_TO_WORLDCOVER",
    "LABEL_ASSET",
    "LABEL_COLLECTION",
    "LABEL_COLLECTIONS",
    "LABEL_GRID_OFFSET_M",
    "LABEL_LEGENDS",
    "MIN_REGION_PX",
    "POLYGON_DIR",
    "RANGELAND",
    "TILE_MARGIN_PX",
    "TRUTH_DIR",
    "WORLDCOVER_COLLECTION",
    "Landscape",
    "demo_collections",
    "generate_demo",
    "landscape_in_year",
    "make_landscape",
    "mgrs_tile",
    "polygon_name",
    "region_grid",
    "truth_name",
]
