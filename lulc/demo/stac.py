"""The files and STAC metadata of the demo catalog: single-band COGs in the workflow's profile, HLS and
label items, and the three collections, shaped like Microsoft Planetary Computer's.

Apart because it is everything a reader of the catalog sees, and nothing of how the pixels were made: ids,
asset keys, titles, ``eo:bands``, ``raster:bands``, ``file:values`` / ``classification:classes`` and tags
follow the real ``hls2-s30``, ``hls2-l30`` and ``io-lulc-annual-v02`` (or, with ``demo.label_legend:
esa-worldcover``, ``esa-worldcover``), so search, download and chipping run exactly the code path real data
takes. One deliberate difference: the WorldCover label asset is keyed ``data`` (as IO's), not ``map`` as on
Planetary Computer, because the download stage reads the label asset ``data``.

Item JSON carries both ``proj:epsg`` and ``proj:code``; note that pystac, when it reads
an item, migrates ``proj:epsg`` away (as it does for the real Planetary Computer items), so readers should
use ``proj:code`` or the rasters' own CRS.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pystac
import rasterio
from rasterio.transform import Affine

from lulc.demo.geometry import HLS_PIXEL_M, LABEL_PIXEL_M, RegionGrid, footprint, utm_bbox
from lulc.demo.labels import (
    DEFAULT_LABEL_LEGEND,
    IO_CLASSES,
    IO_NODATA,
    WORLDCOVER_DESCRIPTIONS,
    check_label_legend,
    class_indices,
    label_codes,
    label_legend,
)
from lulc.demo.render import SyntheticGranule
from lulc.hls import (
    FMASK_ASSET,
    FMASK_NODATA,
    PRITHVI_BANDS,
    REFLECTANCE_NODATA,
    REFLECTANCE_SCALE,
    SENSOR_ASSETS,
    cloud_coverage,
)
from lulc.io import cog_options
from lulc.legends import IGNORE_INDEX

#: Collection ids of the demo catalog, the same as on Planetary Computer.
HLS_COLLECTIONS: dict[str, str] = {"S30": "hls2-s30", "L30": "hls2-l30"}
LABEL_COLLECTION = "io-lulc-annual-v02"
WORLDCOVER_COLLECTION = "esa-worldcover"
#: The label collection of each ``demo.label_legend``.
LABEL_COLLECTIONS: dict[str, str] = {"io-lulc-9": LABEL_COLLECTION, "esa-worldcover": WORLDCOVER_COLLECTION}
#: The collections of the default demo catalog (:func:`demo_collections` for another label legend).
DEMO_COLLECTIONS: tuple[str, ...] = (*HLS_COLLECTIONS.values(), LABEL_COLLECTION)
#: Asset key of the label raster in the label items (IO's; WorldCover's is ``map`` on Planetary Computer).
LABEL_ASSET = "data"

_INSTRUMENTS = {"S30": ["msi"], "L30": ["oli", "tirs"]}
_COG_MEDIA_TYPE = pystac.MediaType.COG  # "image/tiff; application=geotiff; profile=cloud-optimized"

#: Asset title and eo:bands per sensor and key, copied from the real Planetary Computer ``item_assets``.
_BAND_INFO: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "S30": {
        "B02": ("Blue", {"common_name": "blue", "center_wavelength": 0.4966, "full_width_half_max": 0.098}),
        "B03": ("Green", {"common_name": "green", "center_wavelength": 0.56, "full_width_half_max": 0.045}),
        "B04": ("Red", {"common_name": "red", "center_wavelength": 0.6645, "full_width_half_max": 0.038}),
        "B8A": ("NIR Narrow", {"center_wavelength": 0.8648, "full_width_half_max": 0.033}),
        "B11": (
            "SWIR 1",
            {"common_name": "swir16", "center_wavelength": 1.6137, "full_width_half_max": 0.143},
        ),
        "B12": (
            "SWIR 2",
            {"common_name": "swir22", "center_wavelength": 2.22024, "full_width_half_max": 0.242},
        ),
        FMASK_ASSET: ("Fmask", {}),
    },
    "L30": {
        "B02": ("Blue", {"common_name": "blue", "center_wavelength": 0.44, "full_width_half_max": 0.06}),
        "B03": ("Green", {"common_name": "green", "center_wavelength": 0.56, "full_width_half_max": 0.06}),
        "B04": ("Red", {"common_name": "red", "center_wavelength": 0.65, "full_width_half_max": 0.04}),
        "B05": ("NIR Narrow", {"common_name": "nir", "center_wavelength": 0.86, "full_width_half_max": 0.03}),
        "B06": ("SWIR 1", {"common_name": "swir16", "center_wavelength": 1.6, "full_width_half_max": 0.08}),
        "B07": ("SWIR 2", {"common_name": "swir22", "center_wavelength": 2.2, "full_width_half_max": 0.2}),
        FMASK_ASSET: ("Fmask", {}),
    },
}
_FILE_VALUES = [{"values": [IO_NODATA], "summary": "No Data"}] + [
    {"values": [code], "summary": summary}
    for code, summary in zip(
        IO_CLASSES,
        (
            "Water",
            "Trees",
            "Flooded vegetation",
            "Crops",
            "Built area",
            "Bare ground",
            "Snow/ice",
            "Clouds",
            "Rangeland",
        ),
        strict=True,
    )
]
#: Nodata of WorldCover label rasters.
_WORLDCOVER_NODATA = 0
_WORLDCOVER_COLOURS = {cls.codes[0]: cls.colour for cls in label_legend("esa-worldcover").classes}
#: ``classification:classes`` of WorldCover label assets: Planetary Computer's values, descriptions and hints.
_WORLDCOVER_CLASSES = [
    {"value": code, "color-hint": "".join(f"{v:02X}" for v in _WORLDCOVER_COLOURS[code]), "description": text}
    for code, text in WORLDCOVER_DESCRIPTIONS.items()
]
_WORLDCOVER_BANDS = [{"nodata": _WORLDCOVER_NODATA, "spatial_resolution": LABEL_PIXEL_M, "data_type": "uint8"}]
_FMASK_DESCRIPTION = (
    "Bits are listed from the MSB (bit 7) to the LSB (bit 0): \n7-6    aerosol:\n"
    "       00 - climatology\n       01 - low\n       10 - average\n       11 - high\n"
    "5      water\n4      snow/ice\n3      cloud shadow\n2      adjacent to cloud\n1      cloud\n"
    "0      cirrus cloud\n"
)
_HLS_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.2.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/view/v1.0.0/schema.json",
]
_LABEL_EXTENSIONS = [
    "https://stac-extensions.github.io/projection/v1.2.0/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
]
_CLASSIFICATION_EXTENSION = "https://stac-extensions.github.io/classification/v1.0.0/schema.json"


def demo_collections(legend: str = DEFAULT_LABEL_LEGEND) -> tuple[str, ...]:
    """The collections of a demo catalog whose labels are in ``legend`` (``demo.label_legend``)."""
    return (*HLS_COLLECTIONS.values(), LABEL_COLLECTIONS[check_label_legend(legend)])


def label_item_id(grid: RegionGrid, year: int, legend: str = DEFAULT_LABEL_LEGEND) -> str:
    """The id of a region's label item: IO's ``15T-2023``, or WorldCover-like ``ESA_WorldCover_10m_2023_15T``."""
    if check_label_legend(legend) == "esa-worldcover":
        return f"ESA_WorldCover_10m_{year}_{grid.utm_zone}"
    return f"{grid.utm_zone}-{year}"


def hls_item_id(sensor: str, mgrs: str, when: dt.datetime) -> str:
    """HLS v2.0 granule id, e.g. ``HLS.S30.T15TVG.2023145T165901.v2.0``."""
    return f"HLS.{sensor}.T{mgrs}.{when:%Y}{when.timetuple().tm_yday:03d}T{when:%H%M%S}.v2.0"


def _overview_count(shape: tuple[int, int]) -> int:
    """Internal overview levels: halve while the smaller side stays at least 64 px (at least one)."""
    count, side = 0, min(shape)
    while side // 2 >= 64:
        side //= 2
        count += 1
    return max(count, 1)


def _write_cog(
    path: Path,
    array: np.ndarray,
    transform: Affine,
    epsg: int,
    nodata: float,
    resampling: str,
    tags: Mapping[str, str],
    band_tags: Mapping[str, str] | None = None,
    scale: float | None = None,
    colormap: Mapping[int, tuple[int, int, int, int]] | None = None,
) -> None:
    """Write one single-band Cloud Optimized GeoTIFF in the workflow's COG profile (:func:`lulc.io.cog_options`)."""
    profile = {
        **cog_options(resampling, predictor=True, threads=1),
        "width": array.shape[1],
        "height": array.shape[0],
        "count": 1,
        "dtype": array.dtype.name,
        "crs": f"EPSG:{epsg}",
        "transform": transform,
        "nodata": nodata,
        "overview_count": _overview_count(array.shape),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)
        dst.update_tags(**tags)
        if band_tags:
            dst.update_tags(1, **band_tags)
        if scale is not None:
            dst.scales = (scale,)
            dst.offsets = (0.0,)
        if colormap is not None:
            dst.write_colormap(1, colormap)


def _hls_item(grid: RegionGrid, acq: SyntheticGranule, item_id: str, cover: int) -> pystac.Item:
    """The STAC item of one HLS granule, shaped like Planetary Computer's (assets added separately)."""
    geometry, bbox = footprint(grid.epsg, grid.hls_transform, grid.hls_shape)
    properties: dict[str, Any] = {
        "platform": acq.platform,
        "instruments": _INSTRUMENTS[acq.sensor],
        "constellation": "sentinel-2" if acq.sensor == "S30" else "landsat",
        "gsd": HLS_PIXEL_M,
        "eo:cloud_cover": cover,
        "view:sun_azimuth": acq.sun_azimuth,
        "view:sun_elevation": acq.sun_elevation,
        "proj:epsg": grid.epsg,
        "proj:code": f"EPSG:{grid.epsg}",
        "proj:shape": list(grid.hls_shape),
        "proj:transform": list(grid.hls_transform)[:6],
        "proj:bbox": utm_bbox(grid.hls_transform, grid.hls_shape),
    }
    return pystac.Item(
        id=item_id,
        geometry=geometry,
        bbox=bbox,
        datetime=acq.datetime,
        properties=properties,
        stac_extensions=list(_HLS_EXTENSIONS),
    )


def _hls_asset(sensor: str, key: str, href: str) -> pystac.Asset:
    """A band or Fmask asset with the real title, eo:bands and raster:bands."""
    title, band = _BAND_INFO[sensor][key]
    if key == FMASK_ASSET:
        raster = {"data_type": "uint8", "nodata": FMASK_NODATA, "spatial_resolution": HLS_PIXEL_M}
    else:
        raster = {
            "data_type": "int16",
            "nodata": REFLECTANCE_NODATA,
            "scale": 1.0 / REFLECTANCE_SCALE,
            "offset": 0.0,
            "spatial_resolution": HLS_PIXEL_M,
        }
    return pystac.Asset(
        href=href,
        title=title,
        media_type=_COG_MEDIA_TYPE,
        roles=["data"],
        extra_fields={"eo:bands": [{"name": key, **band}], "raster:bands": [raster]},
    )


def write_hls_granule(
    item_dir: Path, grid: RegionGrid, acq: SyntheticGranule, bands: np.ndarray, fmask: np.ndarray
) -> pystac.Item:
    """Write the seven COGs of one granule and return its item (asset hrefs relative to the item)."""
    item_id = hls_item_id(acq.sensor, grid.mgrs, acq.datetime)
    item_dir.mkdir(parents=True, exist_ok=False)
    cover = round(cloud_coverage(fmask))
    valid_share = 100.0 * float((fmask != FMASK_NODATA).mean())
    common_tags = {
        "cloud_coverage": str(cover),
        "spatial_coverage": str(round(valid_share)),
        "SPACECRAFT_NAME": acq.platform.replace("sentinel", "Sentinel").replace("landsat", "Landsat"),
        "SENSING_TIME": acq.datetime.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
        "HORIZONTAL_CS_CODE": f"EPSG:{grid.epsg}",
        "SPATIAL_RESOLUTION": str(HLS_PIXEL_M),
        "MEAN_SUN_AZIMUTH_ANGLE": f"{acq.sun_azimuth:.4f}",
        "MEAN_SUN_ZENITH_ANGLE": f"{90.0 - acq.sun_elevation:.4f}",
        "DEMO": "synthetic scene generated by lulc.demo",
    }
    item = _hls_item(grid, acq, item_id, cover)
    for band_index, key in enumerate(SENSOR_ASSETS[acq.sensor]):
        name = f"{item_id}.{key}.tif"
        _write_cog(
            item_dir / name,
            bands[band_index],
            grid.hls_transform,
            grid.epsg,
            REFLECTANCE_NODATA,
            "average",
            common_tags,
            band_tags={
                "long_name": _BAND_INFO[acq.sensor][key][0],
                "prithvi_band": PRITHVI_BANDS[band_index],
                "scale_factor": str(1.0 / REFLECTANCE_SCALE),
                "add_offset": "0.0",
                "_FillValue": str(REFLECTANCE_NODATA),
            },
            scale=1.0 / REFLECTANCE_SCALE,
        )
        item.add_asset(key, _hls_asset(acq.sensor, key, f"./{name}"))
    name = f"{item_id}.{FMASK_ASSET}.tif"
    fmask_tags = {**common_tags, "Fmask description": _FMASK_DESCRIPTION, "_FillValue": str(FMASK_NODATA)}
    _write_cog(item_dir / name, fmask, grid.hls_transform, grid.epsg, FMASK_NODATA, "nearest", fmask_tags)
    item.add_asset(FMASK_ASSET, _hls_asset(acq.sensor, FMASK_ASSET, f"./{name}"))
    return item


def write_truth(path: Path, grid: RegionGrid, classes_io: np.ndarray, legend: str = DEFAULT_LABEL_LEGEND) -> None:
    """Write a region's true land cover of one year (the latent landscape, no label noise) as class indices of
    the label legend (``demo.label_legend``; tags and colour table from :class:`lulc.legends.Legend`) on the
    label grid: the reference of the demo's accuracy assessment. Not a STAC item, so no search finds it and no
    model trains on it. IO classes without a class in the legend (WorldCover: clouds) are
    :data:`lulc.legends.IGNORE_INDEX`."""
    classes = label_legend(legend)
    path.parent.mkdir(parents=True, exist_ok=True)
    tags = {"DEMO": "true land cover of the synthetic region (lulc.demo)", **classes.tags()}
    indices = class_indices(classes_io, legend)
    _write_cog(path, indices, grid.label_transform, grid.epsg, IGNORE_INDEX, "mode", tags, colormap=classes.colormap())


def _label_colormap(legend: str) -> dict[int, tuple[int, int, int, int]]:
    """The colour table of a label raster: the legend's colour per source code, nodata transparent."""
    classes = label_legend(legend)
    colormap = {cls.codes[0]: (*cls.colour, 255) for cls in classes.classes}
    colormap[classes.nodata[0]] = (0, 0, 0, 0)
    return colormap


def _label_asset(legend: str, href: str, size: int) -> pystac.Asset:
    """The label asset (key :data:`LABEL_ASSET`) of an IO item (``file:values``) or a WorldCover item
    (``classification:classes`` with ``color-hint``, as Planetary Computer's ``map`` asset)."""
    if legend == "esa-worldcover":
        fields: dict[str, Any] = {
            "file:size": size,
            "raster:bands": _WORLDCOVER_BANDS,
            "classification:classes": _WORLDCOVER_CLASSES,
        }
        title = "Land Cover Classes"
    else:
        fields = {
            "file:size": size,
            "raster:bands": [{"nodata": IO_NODATA, "spatial_resolution": LABEL_PIXEL_M, "data_type": "uint8"}],
            "file:values": _FILE_VALUES,
        }
        title = "Global land cover data"
    return pystac.Asset(href=href, title=title, media_type=_COG_MEDIA_TYPE, roles=["data"], extra_fields=fields)


def write_label_item(
    item_dir: Path, grid: RegionGrid, year: int, labels: np.ndarray, legend: str = DEFAULT_LABEL_LEGEND
) -> pystac.Item:
    """Write the label COG of IO-coded ``labels`` in the codes of ``legend`` (``demo.label_legend``) and return
    its item, IO-LULC-like or WorldCover-like (``datetime: null`` with start/end either way)."""
    worldcover = check_label_legend(legend) == "esa-worldcover"
    item_id = label_item_id(grid, year, legend)
    item_dir.mkdir(parents=True, exist_ok=False)
    tags = {"DEMO": "synthetic labels generated by lulc.demo"}
    if worldcover:
        name = f"{item_id}_Map.tif"
        tile = {"esa_worldcover:product_tile": grid.utm_zone}
    else:
        name = f"{grid.utm_zone}_{year}0101-{year + 1}0101.tif"
        tags["io:tile_id"] = grid.utm_zone
        tile = {"io:tile_id": grid.utm_zone, "supercell": grid.utm_zone}
    nodata, colormap = label_legend(legend).nodata[0], _label_colormap(legend)
    codes = label_codes(labels, legend)
    _write_cog(item_dir / name, codes, grid.label_transform, grid.epsg, nodata, "mode", tags, colormap=colormap)
    geometry, bbox = footprint(grid.epsg, grid.label_transform, grid.label_shape)
    properties: dict[str, Any] = {
        "start_datetime": f"{year}-01-01T00:00:00Z",
        "end_datetime": f"{year + 1}-01-01T00:00:00Z",
        **tile,
        "proj:epsg": grid.epsg,
        "proj:code": f"EPSG:{grid.epsg}",
        "proj:shape": list(grid.label_shape),
        "proj:transform": list(grid.label_transform)[:6],
        "proj:bbox": utm_bbox(grid.label_transform, grid.label_shape),
    }
    extensions = [*_LABEL_EXTENSIONS, _CLASSIFICATION_EXTENSION] if worldcover else list(_LABEL_EXTENSIONS)
    item = pystac.Item(
        id=item_id, geometry=geometry, bbox=bbox, datetime=None, properties=properties, stac_extensions=extensions
    )
    item.add_asset(LABEL_ASSET, _label_asset(legend, f"./{name}", (item_dir / name).stat().st_size))
    return item


class _CollectionParts(NamedTuple):
    """What differs between the demo's collections."""

    title: str
    description: str
    start: dt.datetime
    end: dt.datetime
    item_assets: dict[str, pystac.ItemAssetDefinition]
    summaries: dict[str, Any]
    keywords: list[str]
    extensions: list[str]


def _label_collection_parts(collection_id: str, empty: bool, year: int) -> _CollectionParts:
    """The parts of the label collection, IO LULC's or (``esa-worldcover``) WorldCover's."""
    if collection_id == WORLDCOVER_COLLECTION:
        title = "ESA WorldCover"
        description = (
            "SYNTHETIC stand-in for ESA WorldCover 10 m land cover (11 classes, codes 10 20 ... 100, nodata 0), "
            "generated by lulc.demo for offline runs: the demo landscape's IO classes remapped to WorldCover "
            "(clouds are nodata). Yearly items with datetime null and start/end datetimes, one per UTM zone and "
            "latitude band. The label asset is keyed 'data' (Planetary Computer's is 'map')."
        )
        asset_title = "Land Cover Classes"
        fields: dict[str, Any] = {"classification:classes": _WORLDCOVER_CLASSES, "raster:bands": _WORLDCOVER_BANDS}
        nodata, keywords = _WORLDCOVER_NODATA, ["Global", "Land Cover", "Sentinel", "ESA"]
    else:
        title = "10m Annual Land Use Land Cover (9-class) V2"
        description = (
            "SYNTHETIC stand-in for Impact Observatory / Esri's 10 m annual land use / land cover maps "
            "(9 classes, IO codes 1 2 4 5 7 8 9 10 11, nodata 0), generated by lulc.demo for offline runs. "
            "Yearly items with datetime null and start/end datetimes, one per UTM zone and latitude band."
        )
        asset_title, fields = "Global land cover data", {"file:values": _FILE_VALUES}
        nodata, keywords = IO_NODATA, ["Global", "Land Cover", "Land Use", "Sentinel"]
    if empty:
        description += " No demo region has labels in this catalog: the collection is empty."
    item_assets = {
        LABEL_ASSET: pystac.ItemAssetDefinition.create(
            title=asset_title, description=None, media_type=_COG_MEDIA_TYPE, roles=["data"], extra_fields=fields
        )
    }
    extensions = [
        "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    ]
    if collection_id == WORLDCOVER_COLLECTION:
        extensions.append(_CLASSIFICATION_EXTENSION)
    return _CollectionParts(
        title=title,
        description=description,
        start=dt.datetime(year, 1, 1, tzinfo=dt.UTC),
        end=dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC),
        item_assets=item_assets,
        summaries={"raster:bands": [{"nodata": nodata, "spatial_resolution": LABEL_PIXEL_M}]},
        keywords=keywords,
        extensions=extensions,
    )


def _hls_collection_parts(collection_id: str, items: list[pystac.Item]) -> _CollectionParts:
    """The parts of an HLS collection."""
    sensor = "S30" if collection_id == HLS_COLLECTIONS["S30"] else "L30"
    source = "Sentinel-2" if sensor == "S30" else "Landsat"
    description = (
        f"SYNTHETIC stand-in for HLS v2.0 {sensor} ({source}) surface reflectance, generated by "
        "lulc.demo for offline runs: 30 m UTM tiles, int16 reflectance x 10000 (nodata -9999, "
        "scale 0.0001) and an Fmask quality band (uint8, nodata 255) with the HLS bit semantics; "
        "eo:cloud_cover is the cloud + cloud-shadow share of valid Fmask pixels, as NASA computes it."
    )
    datetimes = [item.datetime for item in items if item.datetime is not None]
    item_assets = {}
    for key in (*SENSOR_ASSETS[sensor], FMASK_ASSET):
        asset = _hls_asset(sensor, key, "")
        item_assets[key] = pystac.ItemAssetDefinition.create(
            title=asset.title,
            description=None,
            media_type=asset.media_type,
            roles=asset.roles,
            extra_fields={"eo:bands": asset.extra_fields["eo:bands"]},
        )
    return _CollectionParts(
        title=f"Harmonized Landsat Sentinel-2 (HLS) Version 2.0, {source} Data",
        description=description,
        start=min(datetimes),
        end=max(datetimes),
        item_assets=item_assets,
        summaries={
            "gsd": [HLS_PIXEL_M],
            "platform": sorted({str(item.properties["platform"]) for item in items}),
            "instruments": _INSTRUMENTS[sensor],
        },
        keywords=["Sentinel", "Landsat", "HLS", "Satellite", "Global", "Imagery"],
        extensions=[
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.2.0/schema.json",
            "https://stac-extensions.github.io/view/v1.0.0/schema.json",
        ],
    )


def collection(
    collection_id: str, items: list[pystac.Item], year: int, tile_bboxes: Sequence[Sequence[float]]
) -> pystac.Collection:
    """A collection shaped like the real one, with ``item_assets`` for the assets we write only.

    Only the label collection can be empty (no region has labels): its spatial extent is then the
    regions' tiles (``tile_bboxes``), the area it was asked for.
    """
    if collection_id in LABEL_COLLECTIONS.values():
        parts = _label_collection_parts(collection_id, not items, year)
    else:
        parts = _hls_collection_parts(collection_id, items)
    bboxes = [item.bbox for item in items if item.bbox is not None] or [list(b) for b in tile_bboxes]
    spatial = [
        min(b[0] for b in bboxes),
        min(b[1] for b in bboxes),
        max(b[2] for b in bboxes),
        max(b[3] for b in bboxes),
    ]
    collection = pystac.Collection(
        id=collection_id,
        description=parts.description,
        extent=pystac.Extent(pystac.SpatialExtent([spatial]), pystac.TemporalExtent([[parts.start, parts.end]])),
        title=parts.title,
        license="CC0-1.0",
        keywords=parts.keywords,
        providers=[
            pystac.Provider(
                name="lulc.demo (synthetic data)",
                roles=[pystac.ProviderRole.PRODUCER, pystac.ProviderRole.PROCESSOR],
                description="Generated offline and deterministically from a seed by the LULC workflow.",
            )
        ],
        summaries=pystac.Summaries(parts.summaries),
        stac_extensions=parts.extensions,
    )
    collection.item_assets = dict(parts.item_assets)
    for item in items:
        collection.add_item(item)
    return collection
