"""The legends the demo's labels can be written in (config ``demo.label_legend``) and how the landscape's IO
classes map into them.

The landscape is drawn in Impact Observatory codes (:mod:`lulc.demo.landscape`); its labels are written either
as they are (``io-lulc-9``: an ``io-lulc-annual-v02`` collection, the default) or remapped to ESA WorldCover
codes (``esa-worldcover``: an ``esa-worldcover`` collection) through :data:`IO_TO_WORLDCOVER`. The truth
rasters follow the same legend, so a map trained on either can be scored against them.

Apart because it is the one place that knows both code sets: numpy and :mod:`lulc.legends` only.

IO -> WorldCover (codes): water 1 -> permanent water bodies 80, trees 2 -> tree cover 10, flooded vegetation 4
-> herbaceous wetland 90, crops 5 -> cropland 40, built area 7 -> built-up 50, bare ground 8 -> bare / sparse
vegetation 60, snow/ice 9 -> snow and ice 70, rangeland 11 -> grassland 30, and clouds 10 -> nodata 0 (WorldCover
has no cloud class; the landscape always holds a few small cloud blobs, which become unlabelled pixels).
WorldCover's shrubland 20, mangroves 95 and moss and lichen 100 never occur in the demo.
"""

from __future__ import annotations

import numpy as np

from lulc.legends import IGNORE_INDEX, Legend, preset

#: The IO legend the landscape is drawn in, its code -> class name (code order) and nodata code.
IO_LEGEND: Legend = preset("io-lulc-9")
IO_CLASSES: dict[int, str] = {cls.codes[0]: cls.name for cls in IO_LEGEND.classes}
IO_NODATA: int = IO_LEGEND.nodata[0]

#: ``demo.label_legend`` values, the default first.
LABEL_LEGENDS: tuple[str, ...] = ("io-lulc-9", "esa-worldcover")
DEFAULT_LABEL_LEGEND = LABEL_LEGENDS[0]

#: IO code -> WorldCover code of the demo's labels and truth (0: nodata; clouds have no WorldCover class).
IO_TO_WORLDCOVER: dict[int, int] = {
    IO_NODATA: 0,
    1: 80,  # water -> permanent water bodies
    2: 10,  # trees -> tree cover
    4: 90,  # flooded vegetation -> herbaceous wetland
    5: 40,  # crops -> cropland
    7: 50,  # built area -> built-up
    8: 60,  # bare ground -> bare / sparse vegetation
    9: 70,  # snow/ice -> snow and ice
    10: 0,  # clouds -> nodata
    11: 30,  # rangeland -> grassland
}

#: WorldCover code -> class description, as Planetary Computer's ``esa-worldcover`` collection declares them.
WORLDCOVER_DESCRIPTIONS: dict[int, str] = {
    10: "Tree cover",
    20: "Shrubland",
    30: "Grassland",
    40: "Cropland",
    50: "Built-up",
    60: "Bare / sparse vegetation",
    70: "Snow and ice",
    80: "Permanent water bodies",
    90: "Herbaceous wetland",
    95: "Mangroves",
    100: "Moss and lichen",
}


def check_label_legend(name: object) -> str:
    """``demo.label_legend`` as given, refused with the allowed values where it is not one."""
    if name not in LABEL_LEGENDS:
        raise ValueError(f"demo.label_legend must be one of {list(LABEL_LEGENDS)}, got {name!r}")
    return str(name)


def label_legend(name: str) -> Legend:
    """The legend of the demo's labels, polygons and truth for ``demo.label_legend``."""
    return preset(check_label_legend(name))


def label_codes(io_codes: np.ndarray, name: str) -> np.ndarray:
    """IO codes (uint8, with IO nodata) in the codes of legend ``name`` (uint8, nodata 0)."""
    if check_label_legend(name) == "io-lulc-9":
        return np.asarray(io_codes, dtype=np.uint8)
    lut = np.zeros(256, dtype=np.uint8)
    for io_code, code in IO_TO_WORLDCOVER.items():
        lut[io_code] = code
    return lut[np.asarray(io_codes, dtype=np.uint8)]


def class_indices(io_codes: np.ndarray, name: str) -> np.ndarray:
    """Class indices of legend ``name`` (:data:`lulc.legends.IGNORE_INDEX` where no class) of IO codes."""
    return label_legend(name).remap(label_codes(io_codes, name))


def labelled_io_codes(name: str) -> list[int]:
    """The IO codes that have a class in legend ``name`` (those a field survey can label)."""
    codes = np.array(sorted(IO_CLASSES), dtype=np.uint8)
    return [int(c) for c, i in zip(codes, class_indices(codes, name), strict=True) if i != IGNORE_INDEX]
