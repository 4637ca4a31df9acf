"""Impact Observatory / Esri 10 m annual LULC classes: codes, contiguous indices, names and colours; and the legend
a class raster records (its CLASSES tag and colour table), which readers of maps take instead of these constants."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

#: IO LULC code -> class name, in code order (0 = nodata is not a class).
IO_CLASSES: dict[int, str] = {
    1: "water",
    2: "trees",
    4: "flooded_vegetation",
    5: "crops",
    7: "built_area",
    8: "bare_ground",
    9: "snow_ice",
    10: "clouds",
    11: "rangeland",
}

#: IO LULC nodata code.
IO_NODATA = 0

#: Contiguous training index -> IO code; index ``i`` is class ``CLASS_NAMES[i]``.
CLASS_CODES: tuple[int, ...] = tuple(IO_CLASSES)
CLASS_NAMES: tuple[str, ...] = tuple(IO_CLASSES.values())
NUM_CLASSES = len(CLASS_CODES)

#: Label value for pixels that carry no class (IO nodata, imagery nodata); excluded from loss and metrics.
IGNORE_INDEX = 255

#: The colours of Esri's / Impact Observatory's published 9-class palette, per IO code (RGB).
IO_COLOURS: dict[int, tuple[int, int, int]] = {
    1: (65, 155, 223),
    2: (57, 125, 73),
    4: (122, 135, 198),
    5: (228, 150, 53),
    7: (196, 40, 27),
    8: (165, 155, 143),
    9: (168, 235, 255),
    10: (97, 97, 97),
    11: (227, 226, 195),
}


def remap_lut() -> np.ndarray:
    """A 256-entry lookup table: IO code -> contiguous index, anything else -> :data:`IGNORE_INDEX`."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for index, code in enumerate(CLASS_CODES):
        lut[code] = index
    return lut


def remap_codes(codes: np.ndarray) -> np.ndarray:
    """Map an IO LULC code raster to contiguous class indices with :data:`IGNORE_INDEX` for nodata."""
    codes = np.asarray(codes)
    if codes.dtype != np.uint8:
        codes = np.where((codes >= 0) & (codes < 256), codes, IO_NODATA).astype(np.uint8)
    return remap_lut()[codes]


def index_colormap() -> dict[int, tuple[int, int, int, int]]:
    """A GDAL colour table for rasters of contiguous indices (RGBA; ignore index transparent black)."""
    cmap = {i: (*IO_COLOURS[code], 255) for i, code in enumerate(CLASS_CODES)}
    cmap[IGNORE_INDEX] = (0, 0, 0, 0)
    return cmap


def class_tags() -> dict[str, str]:
    """GDAL metadata of every class-index raster (labels, maps): class names, their IO codes, the ignore index."""
    return {
        "CLASSES": ",".join(f"{i}={name}" for i, name in enumerate(CLASS_NAMES)),
        "IO_LULC_CODES": ",".join(f"{i}={code}" for i, code in enumerate(CLASS_CODES)),
        "IGNORE_INDEX": str(IGNORE_INDEX),
    }


def raster_legend(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The classes of a class-index raster as it records them: index, name (``CLASSES`` tag) and colour (its
    colour table)."""
    import rasterio

    with rasterio.open(path) as src:
        tags = src.tags()
        if "CLASSES" not in tags:
            raise ValueError(f"{path}: no CLASSES tag (class names); not a class map of this workflow")
        try:
            colormap = src.colormap(1)
        except ValueError:
            raise ValueError(f"{path}: no colour table; not a class map of this workflow") from None
    legend = []
    for item in tags["CLASSES"].split(","):
        index, name = item.split("=", 1)
        rgba = colormap.get(int(index))
        if rgba is None:
            raise ValueError(f"{path}: class {name!r} (index {index}) has no colour in the colour table")
        legend.append({"index": int(index), "name": name, "colour": list(rgba[:3])})
    return legend
