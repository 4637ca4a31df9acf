"""Download stage: HLS items + label items -> one T x 6-band image, a cloud mask and a label raster per AOI.

Everything lands on one grid per AOI (CRS, resolution, bounds snapped to the resolution) through stackstac,
so imagery from several tiles, both sensors and labels on their own 10 m grid all line up pixel for pixel.
Work is done in dask chunks of ``block_size`` pixels, so a full 3660 x 3660 HLS tile never sits in memory
whole; the GeoTIFFs are written window by window and converted to COGs at the end.

Outputs (``write_aoi_stack``):

* ``image.tif``: int16 reflectance x 10000, nodata -9999, ``T * 6`` bands in the time-major order of
  :mod:`lulc.hls` (band descriptions ``t0_BLUE ... t{T-1}_SWIR_2``); Fmask-flagged pixels are nodata.
* ``mask.tif``: uint8, ``T`` bands, 0 clear, 1 masked by the Fmask flags, 255 no data.
* ``label.tif``: uint8 class indices of the labels' legend (:mod:`lulc.legends`), 255 = ignore; the legend in its
  ``LEGEND`` tag, its colours in the colour table. Labels come from STAC items, a categorical raster or a vector
  file (:class:`LabelSource`, the ``labels`` config section).
* ``frames.json``: every candidate date with its clear fraction, the chosen frames and the dropped ones.
* ``dates.csv``: the same per-date report as a table (date, sensor, clear fraction, status, items).

``write_imagery_stack`` writes the same files but ``label.tif`` (:data:`IMAGERY_OUTPUT_NAMES`) on a grid it is
given (a tile of a map region without labels), never touching a label source; dates of which no item overlaps
that grid are not candidates there (a region's imagery holds tiles that miss some of its map tiles). A map
region's frames are chosen once for the whole region (``write_region_frames``: the clear fraction of each date
over the region's pixels that have imagery, read from Fmask on a coarse grid, then the same choice as for an
AOI), and ``write_imagery_stack`` given that record builds every tile from exactly those dates (nodata where a
date has no item over the tile), so a region's map does not depend on its tiling.

Real data (Planetary Computer, NASA CMR-STAC):

* Credentials are checked before anything is downloaded (:func:`lulc.access.check_signing`). Planetary
  Computer items are signed (SAS tokens in the URLs, redacted from every message); NASA Earthdata
  credentials go to GDAL only (:func:`gdal_env`: a bearer-token header file or the netrc file, in a private
  temporary folder that is removed afterwards), only for the imagery source, and are never logged.
* Items without ``proj:epsg`` (NASA CMR items; pystac also migrates ``proj:epsg`` to ``proj:code`` when it
  reads an item) get it on an in-memory copy from ``proj:code`` or, failing that, from the header of one
  asset per MGRS tile (:func:`with_projection`), so stackstac knows each asset's exact footprint.
* GDAL retries transient HTTP failures (429, 5xx, connection errors) :data:`GDAL_HTTP_MAX_RETRY` times with
  exponential backoff; a read that still fails raises :class:`DownloadError` naming the URL. A failure
  removes every output of the stage, so a rerun never trusts a partial result; ``frames.json`` and
  ``dates.csv`` are written last.
* The per-date clear fraction is computed from Fmask alone (one asset per date instead of seven).

Inputs, and what is refused before or while reading them:

* Only the items' assets are used. Their links (``root``, ``self``, ``parent``, ``collection``) are dropped
  and stackstac gets plain dicts (:func:`lulc.download.items.plain`): ``Item.to_dict()`` would otherwise
  fetch the STAC API's landing page once per item, and fail when the API is down although the asset hosts
  are up. The cached search results (read with :func:`lulc.search.load_item_collection`, which resolves the
  relative local hrefs it stores) and the asset hosts are all the stage needs.
* Before anything is read: every needed asset key exists; local asset files exist (a relative href, i.e.
  search results read without resolving them, is refused too); the label items' declared class tables
  (``file:values`` or ``classification:classes``, :func:`declared_label_codes`) hold only codes the legend
  covers (``labels.legend``); items that declare none need a legend given in the config.
* Failures that are not the network (a multi-band asset where one band is expected, a damaged or truncated
  file) raise :class:`AssetContentError` naming the item, the asset key and the problem, without the
  retry wording of network errors. An HTTP 404 is an error, not nodata (stackstac's default).
* The label raster is written first; the source codes of every label item's layer on the AOI grid are counted
  while it is written, and codes outside the legend (IO's 10-class ``io-lulc`` Grass 3 and Scrub 6 under
  ``io-lulc-9``, say) raise :class:`LabelCodeError` naming the codes and the item instead of silently becoming
  "ignore" (unless the legend says ``unknown: ignore``).

The stage is a package, one module per concern, each importing only those listed before it:

* :mod:`lulc.download.environment`: the GDAL environment (retries, credentials) and the errors of a failed read.
* :mod:`lulc.download.items`: STAC item hygiene (offline copies, plain dicts, local-file checks, projections).
* :mod:`lulc.download.frames`: acquisitions and the choice of the frames.
* :mod:`lulc.download.imagery`: the lazy HLS stack of an acquisition, its Fmask mask and clear fraction.
* :mod:`lulc.download.labels`: the label source, the class checks and the lazy label raster of STAC items.
* :mod:`lulc.download.label_files`: labels from a categorical raster or a vector file, onto a grid.
* :mod:`lulc.download.cog`: streaming a lazy array into a COG.
* :mod:`lulc.download.stack`: the orchestration (``write_aoi_stack``, ``write_region_frames``,
  ``write_imagery_stack``, ``write_label_raster``).

The output grid (:class:`~lulc.grid.Grid`, :func:`~lulc.grid.aoi_grid`) lives in :mod:`lulc.grid`, shared with
the map stage; it is re-exported here. Settings read at run time (``GDAL_HTTP_MAX_RETRY``,
``CLEAR_FRACTION_BATCH``) are not: change them in the module that reads them.
"""

from __future__ import annotations

from lulc.download.environment import AssetContentError, DownloadError, gdal_env
from lulc.download.frames import Acquisition, group_acquisitions, select_frames
from lulc.download.imagery import clear_fraction
from lulc.download.items import item_epsg, sensor_assets, with_projection
from lulc.download.labels import (
    LABEL_ASSET,
    LabelCodeError,
    check_label_classes,
    declared_label_codes,
    label_stack,
)
from lulc.download.stack import (
    IMAGERY_OUTPUT_NAMES,
    OUTPUT_NAMES,
    write_aoi_stack,
    write_imagery_stack,
    write_label_raster,
    write_region_frames,
)
from lulc.grid import Grid, aoi_grid
from lulc.legends import LabelSource

__all__ = [
    "IMAGERY_OUTPUT_NAMES",
    "LABEL_ASSET",
    "OUTPUT_NAMES",
    "Acquisition",
    "AssetContentError",
    "DownloadError",
    "Grid",
    "LabelCodeError",
    "LabelSource",
    "aoi_grid",
    "check_label_classes",
    "clear_fraction",
    "declared_label_codes",
    "gdal_env",
    "group_acquisitions",
    "item_epsg",
    "label_stack",
    "select_frames",
    "sensor_assets",
    "with_projection",
    "write_aoi_stack",
    "write_imagery_stack",
    "write_label_raster",
    "write_region_frames",
]
