"""The IO LULC 9-class legend (the ``io-lulc-9`` preset) under the names tests use: the demo's labels and most
synthetic test data are IO-coded, so tests that build such data read its classes from here."""

from __future__ import annotations

import numpy as np

from lulc.legends import IGNORE_INDEX, preset

IO = preset("io-lulc-9")
#: IO code -> class name, class names, contiguous codes, colours, nodata.
IO_CLASSES: dict[int, str] = {cls.codes[0]: cls.name for cls in IO.classes}
IO_COLOURS: dict[int, tuple[int, int, int]] = {cls.codes[0]: cls.colour for cls in IO.classes}
IO_NODATA = IO.nodata[0]
CLASS_CODES: tuple[int, ...] = tuple(IO_CLASSES)
CLASS_NAMES: tuple[str, ...] = IO.names
NUM_CLASSES = IO.num_classes

__all__ = ["CLASS_CODES", "CLASS_NAMES", "IGNORE_INDEX", "IO", "IO_CLASSES", "IO_COLOURS", "IO_NODATA",
           "NUM_CLASSES", "class_tags", "index_colormap", "remap_codes"]  # fmt: skip


def remap_codes(codes: np.ndarray) -> np.ndarray:
    """IO codes -> class indices (255 for nodata)."""
    return IO.remap(codes)


def index_colormap() -> dict[int, tuple[int, int, int, int]]:
    """The IO colour table of class-index rasters."""
    return IO.colormap()


def class_tags() -> dict[str, str]:
    """The tags of an IO class-index raster (CLASSES, LEGEND, IGNORE_INDEX)."""
    return IO.tags()

