"""The labels of the download stage: class checks against the legend and the lazy label raster on the grid.

Label items are refused before anything is read when their declared class table holds codes the legend does
not cover (:func:`declared_label_codes`, :func:`check_label_classes`, :func:`checked_labels`); the codes of their
pixels are counted while the raster is written (:class:`CodeCounter`) and refused afterwards the same way.
:func:`label_stack` reprojects the items with mode resampling and remaps source codes to class indices.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import pystac
import stackstac
from rasterio.enums import Resampling

from lulc.download.items import check_local_assets, offline_item, plain
from lulc.grid import Grid
from lulc.legends import DEFAULT_LEGEND, Legend, LegendCodeError, declared_table, preset

#: The default asset key of label items (IO LULC's; ``labels.asset`` names another: WorldCover ``map``, CDL
#: ``cropland``).
LABEL_ASSET = "data"


#: Label codes outside the legend (:class:`lulc.legends.LegendCodeError`), under the name this stage used first.
LabelCodeError = LegendCodeError


def _label_item(item: pystac.Item) -> pystac.Item:
    """A copy of a label item with ``datetime`` filled from ``start_datetime`` (stackstac needs one)."""
    item = copy.deepcopy(item)
    if item.datetime is None:
        start = item.common_metadata.start_datetime
        if start is None:
            raise ValueError(f"label STAC item {item.id!r} has neither datetime nor start_datetime")
        item.datetime = start
    return item


def declared_label_codes(item: pystac.Item, asset: str = LABEL_ASSET) -> dict[int, str] | None:
    """The class table a label item declares for ``asset``: ``{code: name}`` without the nodata code(s),
    or None where it declares none (:func:`lulc.legends.declared_table`: ``classification:classes`` or
    ``file:values``)."""
    if asset not in item.assets:
        return None
    table = declared_table(item.assets[asset].extra_fields)
    return None if table is None else table.names


def check_label_classes(
    items: Sequence[pystac.Item], legend: Legend, asset: str = LABEL_ASSET, legend_given: bool = True
) -> None:
    """Refuse label items whose declared class table (:func:`declared_label_codes`) has codes ``legend`` does not
    cover, naming the codes, the item and its collection, before anything is read. Items that declare no table
    are refused where no legend was given (``legend_given``: their codes would be guessed); otherwise their
    pixels are checked as they are written (:class:`CodeCounter`)."""
    problems = []
    for item in items:
        table = declared_label_codes(item, asset)
        where = f"item {item.id!r} (collection {item.collection_id!r}, declared by its {asset!r} asset)"
        if table is None and not legend_given:
            raise LabelCodeError(
                f"label STAC item {item.id!r} (collection {item.collection_id!r}) declares no class table "
                f"(classification:classes or file:values on its {asset!r} asset) and labels.legend is not set: "
                "its codes would be guessed. Set labels.legend to the legend of the labels (docs/labels.md)"
            )
        try:
            legend.check_codes(table or {}, where)
        except LegendCodeError as error:
            problems.append(str(error))
    if problems:
        raise LabelCodeError("; ".join(problems))


class CodeCounter:
    """Pixel counts per label code of each label item's layer on the AOI grid, gathered while the label raster
    is written (a pass-through step of the dask graph, so nothing is read twice). Counts are kept per block,
    so a block computed twice is not counted twice."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blocks: dict[tuple[str, tuple[int, ...]], dict[int, int]] = {}

    def observe(self, layer: da.Array, item_id: str) -> da.Array:
        """``layer`` (source codes of one item), counting the codes of each block as it is computed."""

        def count(block: np.ndarray, block_info: dict[Any, Any] | None = None) -> np.ndarray:
            location = tuple(block_info[0]["chunk-location"]) if block_info else (len(self._blocks),)
            values, counts = np.unique(np.asarray(block), return_counts=True)
            with self._lock:
                self._blocks[(item_id, location)] = dict(zip(values.tolist(), counts.tolist(), strict=True))
            return block

        return da.map_blocks(count, layer, dtype=layer.dtype, name=f"count-label-codes-{uuid.uuid4().hex}")

    def counts(self) -> dict[str, dict[int, int]]:
        """Item id -> pixel count per code, over the blocks computed so far."""
        totals: dict[str, dict[int, int]] = {}
        with self._lock:
            for (item_id, _), counts in self._blocks.items():
                total = totals.setdefault(item_id, {})
                for code, n in counts.items():
                    total[int(code)] = total.get(int(code), 0) + int(n)
        return totals

    def check(self, resolution: float, legend: Legend, fill: int) -> None:
        """Raise :class:`LabelCodeError` naming every item with codes ``legend`` does not cover (``fill``, the
        value of pixels no item covers, aside)."""
        if legend.unknown != "stop":
            return
        problems = []
        for item_id, counts in sorted(self.counts().items()):
            unknown = [code for code in legend.uncovered(counts) if code != fill]
            if unknown:
                pixels = ", ".join(f"{counts[code]} pixels of code {code}" for code in unknown)
                try:
                    legend.check_codes(unknown, f"item {item_id!r} ({pixels} in the AOI window at {resolution:g} m)")
                except LegendCodeError as error:
                    problems.append(str(error))
        if problems:
            raise LabelCodeError("; ".join(problems))


def label_dtype_and_fill(legend: Legend) -> tuple[str, int]:
    """The dtype the label items are read as and the value of pixels no item covers: uint8 and the first nodata
    code where every code fits a byte (IO, WorldCover, CDL), else int32 and a value no code uses."""
    codes = [code for cls in legend.classes for code in cls.codes] + list(legend.nodata)
    if codes and min(codes) >= 0 and max(codes) <= 255 and legend.nodata:
        return "uint8", int(legend.nodata[0])
    if legend.nodata:
        return "int32", int(legend.nodata[0])
    return "int32", min([*codes, 0]) - 1


def label_stack(
    items: Sequence[pystac.Item],
    grid: Grid,
    block_size: int,
    asset: str = LABEL_ASSET,
    env: stackstac.rio_env.LayeredEnv | None = None,
    code_counter: CodeCounter | None = None,
    legend: Legend | None = None,
) -> da.Array:
    """Lazy (H, W) uint8 class indices: label tiles reprojected onto ``grid`` with mode resampling,
    mosaicked (first tile wins), and remapped from the legend's source codes to class indices (255 = ignore).

    With ``code_counter``, the source codes of every item's layer are counted as the array is computed, so that
    codes outside the legend (which the remap turns into 255) can be refused afterwards. ``legend`` defaults to
    the IO LULC 9-class preset."""
    legend = legend or preset(DEFAULT_LEGEND)
    dtype, fill = label_dtype_and_fill(legend)
    if not items:
        raise ValueError("no label items to download")
    stack = stackstac.stack(
        [plain(_label_item(i)) for i in items],
        assets=[asset],
        epsg=grid.epsg,
        resolution=grid.resolution,
        bounds=grid.bounds,
        snap_bounds=False,
        dtype=dtype,
        fill_value=np.dtype(dtype).type(fill),
        rescale=False,
        resampling=Resampling.mode,
        chunksize=block_size,
        properties=False,
        gdal_env=env,
        errors_as_nodata=(),  # stackstac's default turns an HTTP 404 into nodata: a missing asset is an error
    )
    if stack.shape[0] == 0 or stack.shape[1] == 0:
        raise ValueError(
            f"none of the label items {[i.id for i in items]} overlaps the AOI grid (EPSG:{grid.epsg}, bounds "
            f"{grid.bounds}) according to its footprint metadata"
        )
    codes = stack.data[:, 0]
    layers = [codes[t] for t in range(codes.shape[0])]
    if code_counter is not None:
        ids = [str(i) for i in np.atleast_1d(stack["id"].values)]
        layers = [code_counter.observe(layer, item_id) for layer, item_id in zip(layers, ids, strict=True)]
    mosaic = layers[0]
    for layer in layers[1:]:
        mosaic = da.where(da.isin(mosaic, [fill, *legend.nodata]), layer, mosaic)
    return mosaic.map_blocks(legend.remap, dtype=np.uint8)


def checked_labels(
    labels: pystac.ItemCollection,
    where: str,
    legend: Legend | None = None,
    legend_given: bool = True,
    asset: str = LABEL_ASSET,
) -> pystac.ItemCollection:
    """The label items without their links (:func:`offline_item`), after the checks that need no request: not
    empty, the label ``asset`` on every item, local files present, the declared classes covered by ``legend``
    (default: the IO LULC 9-class preset)."""
    if not len(labels):
        raise ValueError(f"{where}: the labels ItemCollection is empty")
    labels = pystac.ItemCollection([offline_item(i) for i in labels], clone_items=False)
    for item in labels:
        if asset not in item.assets:
            raise ValueError(
                f"{where}: label STAC item {item.id!r} has no asset {asset!r} (labels.asset); its assets: "
                f"{sorted(item.assets)}"
            )
    check_local_assets(labels, [asset], f"{where}: labels")
    check_label_classes(list(labels), legend or preset(DEFAULT_LEGEND), asset, legend_given=legend_given)
    return labels
