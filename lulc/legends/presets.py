"""Named legends a config can ask for by name (``labels.legend: esa-worldcover``).

* ``io-lulc-9``: Impact Observatory / Esri 10 m annual LULC v02 (Planetary Computer ``io-lulc-annual-v02``),
  9 classes, 0 = nodata. The default.
* ``io-lulc-10``: the older 10-class IO collection (``io-lulc``), with Grass (3) and Scrub (6).
* ``esa-worldcover``: ESA WorldCover 10 m (``esa-worldcover``), 11 classes coded 10..100, 0 = nodata; colours
  as its collection's ``color-hint``.
* ``usda-cdl``: an example remap of the USDA Cropland Data Layer's ~130 codes (``usda-cdl`` ``cropland``) into
  corn / soybeans / other crops / not crop; 0 (background) and 81 (clouds / no data) are nodata. Copy it into
  a config to regroup otherwise.
"""

from __future__ import annotations

from lulc.legends.legend import Legend, LegendClass

_IO_9 = Legend(
    "io-lulc-9",
    (
        LegendClass("water", (65, 155, 223), (1,)),
        LegendClass("trees", (57, 125, 73), (2,)),
        LegendClass("flooded_vegetation", (122, 135, 198), (4,)),
        LegendClass("crops", (228, 150, 53), (5,)),
        LegendClass("built_area", (196, 40, 27), (7,)),
        LegendClass("bare_ground", (165, 155, 143), (8,)),
        LegendClass("snow_ice", (168, 235, 255), (9,)),
        LegendClass("clouds", (97, 97, 97), (10,)),
        LegendClass("rangeland", (227, 226, 195), (11,)),
    ),
    nodata=(0,),
)

_IO = {cls.name: cls for cls in _IO_9.classes}  # the classes both IO collections share: same codes, colours
_IO_10 = Legend(
    "io-lulc-10",
    (
        _IO["water"],
        _IO["trees"],
        LegendClass("grass", (136, 176, 83), (3,)),
        _IO["flooded_vegetation"],
        _IO["crops"],
        LegendClass("scrub_shrub", (223, 195, 90), (6,)),
        *(_IO[name] for name in ("built_area", "bare_ground", "snow_ice", "clouds")),
    ),
    nodata=(0,),
)

_WORLDCOVER = Legend(
    "esa-worldcover",
    (
        LegendClass("tree_cover", (0, 100, 0), (10,)),
        LegendClass("shrubland", (255, 187, 34), (20,)),
        LegendClass("grassland", (255, 255, 76), (30,)),
        LegendClass("cropland", (240, 150, 255), (40,)),
        LegendClass("built_up", (250, 0, 0), (50,)),
        LegendClass("bare_sparse_vegetation", (180, 180, 180), (60,)),
        LegendClass("snow_and_ice", (240, 240, 240), (70,)),
        LegendClass("permanent_water_bodies", (0, 100, 200), (80,)),
        LegendClass("herbaceous_wetland", (0, 150, 160), (90,)),
        LegendClass("mangroves", (0, 207, 117), (95,)),
        LegendClass("moss_and_lichen", (250, 230, 160), (100,)),
    ),
    nodata=(0,),
)

#: CDL codes grouped for the example remap (every class the ``usda-cdl`` collection declares, plus 62
#: Pasture/Grass of some years): crops are the annual and perennial crop codes and double crops.
_CDL_CORN = (1, 12, 13)
_CDL_SOYBEANS = (5,)
_CDL_NOT_CROP = (62, 63, 64, 65, 82, 83, 87, 88, 92, 111, 112, 121, 122, 123, 124, 131, 141, 142, 143, 152, 176,
                 190, 195)  # fmt: skip
_CDL_OTHER_CROPS = tuple(
    code
    for code in (*range(2, 62), *range(66, 81), *range(204, 255))
    if code not in _CDL_CORN + _CDL_SOYBEANS + _CDL_NOT_CROP
)

_CDL = Legend(
    "usda-cdl",
    (
        LegendClass("corn", (255, 210, 0), _CDL_CORN),
        LegendClass("soybeans", (38, 112, 0), _CDL_SOYBEANS),
        LegendClass("other_crops", (255, 158, 10), _CDL_OTHER_CROPS),
        LegendClass("not_crop", (147, 204, 147), _CDL_NOT_CROP),
    ),
    nodata=(0, 81),
)

#: Preset name -> legend.
PRESETS: dict[str, Legend] = {legend.name: legend for legend in (_IO_9, _IO_10, _WORLDCOVER, _CDL)}

#: The default legend (``labels.legend``).
DEFAULT_LEGEND = "io-lulc-9"


def preset(name: str) -> Legend:
    """A named legend; an unknown name is refused listing the presets."""
    if name not in PRESETS:
        from lulc.legends.legend import LegendError

        raise LegendError(f"labels.legend: {name!r} is neither a preset ({', '.join(PRESETS)}) nor a .yaml/.csv file")
    return PRESETS[name]
