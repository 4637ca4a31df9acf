"""The labels of the download stage: IO LULC class checks and the lazy label raster on the output grid.

Label items are refused before anything is read when their declared class table holds codes the workflow does
not map (:func:`declared_label_codes`, :func:`check_label_classes`, :func:`checked_labels`); the codes of their
pixels are counted while the raster is written (:class:`CodeCounter`) and refused afterwards the same way.
:func:`label_stack` reprojects the items with mode resampling and remaps IO codes to class indices.
"""

from __future__ import annotations

import copy
import re
import threading
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import dask.array as da
import numpy as np
import pystac
import stackstac
from rasterio.enums import Resampling

from lulc import classes
from lulc.download.items import check_local_assets, offline_item, plain
from lulc.grid import Grid

#: The asset key of IO LULC label items.
LABEL_ASSET = "data"


class LabelCodeError(ValueError):
    """Label items whose class codes are not the IO LULC v02 classes the workflow maps (:mod:`lulc.classes`)."""


def _label_item(item: pystac.Item) -> pystac.Item:
    """A copy of a label item with ``datetime`` filled from ``start_datetime`` (stackstac needs one)."""
    item = copy.deepcopy(item)
    if item.datetime is None:
        start = item.common_metadata.start_datetime
        if start is None:
            raise ValueError(f"label STAC item {item.id!r} has neither datetime nor start_datetime")
        item.datetime = start
    return item


def _io_codes() -> str:
    """The IO LULC v02 codes the workflow maps, for messages: ``1 2 4 5 7 8 9 10 11``."""
    return " ".join(str(code) for code in classes.CLASS_CODES)


def _describe_codes(codes: Iterable[int], names: dict[int, str] | None = None) -> str:
    """``3 (Grass), 6 (Scrub)``, or ``3, 6`` without names."""
    names = names or {}
    return ", ".join(f"{code} ({names[code]})" if names.get(code) else str(code) for code in sorted(codes))


_NODATA_NAME = re.compile(r"^\s*no[\s_-]*data\s*$", re.IGNORECASE)


def _code(value: Any) -> int | None:
    """An integer class code from metadata (``3``, ``3.0``, ``"3"``), else None."""
    try:
        code = float(value)
    except (TypeError, ValueError):
        return None
    return int(code) if code.is_integer() else None


def declared_label_codes(item: pystac.Item, asset: str = LABEL_ASSET) -> dict[int, str] | None:
    """The class table a label item declares for ``asset``: ``{code: name}`` without the nodata code(s),
    or None where it declares none.

    Read from the classification extension (``classification:classes`` on the asset or in its
    ``raster:bands`` / ``bands`` entries; entries with ``nodata: true`` are nodata) and from the file
    extension's ``file:values`` (what Planetary Computer's ``io-lulc-annual-v02`` items carry: ``0 No Data``,
    ``1 Water``, ..., ``11 Rangeland``). IO's nodata code 0, the bands' ``nodata`` values and entries named
    "No Data" are left out.
    """
    if asset not in item.assets:
        return None
    fields = item.assets[asset].extra_fields
    bands = [b for key in ("raster:bands", "bands") for b in fields.get(key) or [] if isinstance(b, dict)]
    table: dict[int, str] = {}
    nodata = {classes.IO_NODATA}
    declared = False
    for entry_set in [fields, *bands]:
        band_nodata = _code(entry_set.get("nodata"))
        if band_nodata is not None:
            nodata.add(band_nodata)
        entries = entry_set.get("classification:classes")
        if not isinstance(entries, list):
            continue
        declared = True
        for entry in entries:
            value = _code(entry.get("value")) if isinstance(entry, dict) else None
            if value is None:
                continue
            name = str(entry.get("name") or entry.get("description") or "")
            if entry.get("nodata") or _NODATA_NAME.match(name):
                nodata.add(value)
            else:
                table.setdefault(value, name)
    values = fields.get("file:values")
    if isinstance(values, list):
        declared = True
        for entry in values:
            if not isinstance(entry, dict):
                continue
            name = str(entry.get("summary") or "")
            for code in (_code(v) for v in entry.get("values") or []):
                if code is None:
                    continue
                if _NODATA_NAME.match(name):
                    nodata.add(code)
                else:
                    table.setdefault(code, name)
    if not declared:
        return None
    return {code: name for code, name in sorted(table.items()) if code not in nodata}


def check_label_classes(items: Sequence[pystac.Item], asset: str = LABEL_ASSET) -> None:
    """Refuse label items whose declared class table (:func:`declared_label_codes`) has codes the workflow
    does not map (the older 10-class ``io-lulc`` collection: 3 Grass, 6 Scrub), before anything is read.
    Items that declare no table pass; their pixels are checked as they are written (:class:`CodeCounter`)."""
    problems = []
    for item in items:
        table = declared_label_codes(item, asset)
        unknown = sorted(set(table or {}) - set(classes.CLASS_CODES))
        if unknown:
            problems.append(
                f"label codes {_describe_codes(unknown, table)} in item {item.id!r} (collection "
                f"{item.collection_id!r}, declared by its {asset!r} asset)"
            )
    if problems:
        raise LabelCodeError(
            f"{'; '.join(problems)} are not IO LULC v02 classes ({_io_codes()}; 0 = nodata): the workflow maps "
            "only these 9 classes and would otherwise turn such pixels into 'ignore' without a word. Use the "
            "io-lulc-annual-v02 collection (the older 10-class io-lulc has 3 Grass and 6 Scrub where v02 has "
            "11 Rangeland) or labels with the same codes"
        )


class CodeCounter:
    """Pixel counts per label code of each label item's layer on the AOI grid, gathered while the label raster
    is written (a pass-through step of the dask graph, so nothing is read twice). Counts are kept per block,
    so a block computed twice is not counted twice."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blocks: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}

    def observe(self, layer: da.Array, item_id: str) -> da.Array:
        """``layer`` (IO codes of one item), counting the codes of each block as it is computed."""

        def count(block: np.ndarray, block_info: dict[Any, Any] | None = None) -> np.ndarray:
            location = tuple(block_info[0]["chunk-location"]) if block_info else (len(self._blocks),)
            counts = np.bincount(np.asarray(block, dtype=np.uint8).ravel(), minlength=256)
            with self._lock:
                self._blocks[(item_id, location)] = counts
            return block

        return da.map_blocks(count, layer, dtype=layer.dtype, name=f"count-label-codes-{uuid.uuid4().hex}")

    def counts(self) -> dict[str, np.ndarray]:
        """Item id -> pixel count per code (256 entries), over the blocks computed so far."""
        totals: dict[str, np.ndarray] = {}
        with self._lock:
            for (item_id, _), counts in self._blocks.items():
                totals[item_id] = totals.get(item_id, np.zeros(256, np.int64)) + counts
        return totals

    def check(self, resolution: float) -> None:
        """Raise :class:`LabelCodeError` naming every item with codes outside the IO LULC v02 classes."""
        known = {classes.IO_NODATA, *classes.CLASS_CODES}
        problems = []
        for item_id, counts in sorted(self.counts().items()):
            unknown = [code for code in np.flatnonzero(counts).tolist() if code not in known]
            if unknown:
                pixels = ", ".join(f"{int(counts[code])} pixels of code {code}" for code in unknown)
                problems.append(
                    f"label codes {_describe_codes(unknown)} in item {item_id!r} ({pixels} in the AOI window at "
                    f"{resolution:g} m)"
                )
        if problems:
            raise LabelCodeError(
                f"{'; '.join(problems)} are not IO LULC v02 classes ({_io_codes()}; 0 = nodata): the workflow "
                "maps only these 9 classes and would otherwise turn such pixels into 'ignore' without a word. Use the "
                "io-lulc-annual-v02 collection (the older 10-class io-lulc has 3 Grass and 6 Scrub) or labels "
                "with the same codes"
            )


def label_stack(
    items: Sequence[pystac.Item],
    grid: Grid,
    block_size: int,
    asset: str = LABEL_ASSET,
    env: stackstac.rio_env.LayeredEnv | None = None,
    code_counter: CodeCounter | None = None,
) -> da.Array:
    """Lazy (H, W) uint8 class indices: label tiles reprojected onto ``grid`` with mode resampling,
    mosaicked (first tile wins), and remapped from IO codes to contiguous indices (255 = ignore).

    With ``code_counter``, the IO codes of every item's layer are counted as the array is computed, so that
    codes outside the mapped classes (which the remap turns into 255) can be refused afterwards."""
    if not items:
        raise ValueError("no label items to download")
    stack = stackstac.stack(
        [plain(_label_item(i)) for i in items],
        assets=[asset],
        epsg=grid.epsg,
        resolution=grid.resolution,
        bounds=grid.bounds,
        snap_bounds=False,
        dtype="uint8",
        fill_value=np.uint8(classes.IO_NODATA),
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
        mosaic = da.where(mosaic == classes.IO_NODATA, layer, mosaic)
    return mosaic.map_blocks(classes.remap_codes, dtype=np.uint8)


def checked_labels(labels: pystac.ItemCollection, where: str) -> pystac.ItemCollection:
    """The label items without their links (:func:`offline_item`), after the checks that need no request: not
    empty, the label asset on every item, local files present, the declared classes those of IO LULC."""
    if not len(labels):
        raise ValueError(f"{where}: the labels ItemCollection is empty")
    labels = pystac.ItemCollection([offline_item(i) for i in labels], clone_items=False)
    for item in labels:
        if LABEL_ASSET not in item.assets:
            raise ValueError(
                f"{where}: label STAC item {item.id!r} has no asset {LABEL_ASSET!r}; its assets: {sorted(item.assets)}"
            )
    check_local_assets(labels, [LABEL_ASSET], f"{where}: labels")
    check_label_classes(list(labels))
    return labels
