"""Land-cover legends as data (:class:`Legend`): presets, user legends from the config or a file, the class tables
STAC label collections declare, and the legend a class raster records."""

from lulc.legends.config import load_legend
from lulc.legends.declared import DeclaredTable, collection_table, declared_table, legend_from_table
from lulc.legends.legend import (
    IGNORE_INDEX,
    Legend,
    LegendClass,
    LegendCodeError,
    LegendError,
    LegendMismatchError,
    class_slug,
    dataset_legend,
    legend_from_tags,
    raster_legend,
    read_legend,
)
from lulc.legends.presets import DEFAULT_LEGEND, PRESETS, preset
from lulc.legends.source import LabelSource

__all__ = [
    "DEFAULT_LEGEND",
    "IGNORE_INDEX",
    "PRESETS",
    "DeclaredTable",
    "LabelSource",
    "Legend",
    "LegendClass",
    "LegendCodeError",
    "LegendError",
    "LegendMismatchError",
    "class_slug",
    "collection_table",
    "dataset_legend",
    "declared_table",
    "legend_from_table",
    "legend_from_tags",
    "load_legend",
    "preset",
    "raster_legend",
    "read_legend",
]
