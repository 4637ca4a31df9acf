"""Figures of a land-cover map: the PNG preview with its legend, and the prediction / label comparison.

Read from the finished COGs at a reduced resolution (their overviews), so a figure of a state-sized map costs
about what one of a county does. The comparison marks the test windows (the chips of the test split) and
reports the agreement with the labels inside and outside them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import rasterio
from matplotlib.collections import PatchCollection
from matplotlib.patches import Patch, Rectangle
from rasterio.enums import Resampling
from rasterio.windows import Window

from lulc.figures import save_map_png
from lulc.legends import Legend, dataset_legend, read_legend
from lulc.metrics import metrics_from_confusion, pixel_confusion
from lulc.tiling import check_same_grid


def _colour_lut(legend: Legend) -> np.ndarray:
    """uint8 class index -> RGBA (the colour table of the map's legend; nodata transparent)."""
    lut = np.zeros((256, 4), dtype=np.uint8)
    for index, rgba in legend.colormap().items():
        lut[index] = rgba
    return lut


def _axes_units(crs: Any) -> tuple[float, str, str]:
    """Factor from CRS units to the figure's axis units and the axis labels: km in a projected CRS (its linear
    unit converted), degrees in a geographic one, the raster's own units without a CRS."""
    if crs is None:
        return 1.0, "x", "y"
    if crs.is_geographic:
        return 1.0, "longitude (degrees)", "latitude (degrees)"
    try:
        _, metres = crs.linear_units_factor
    except Exception:
        return 1.0, "x", "y"
    return metres / 1000, "easting (km)", "northing (km)"


def _read_small(
    path: str | os.PathLike[str], max_size: int
) -> tuple[np.ndarray, tuple[float, float, float, float], int]:
    """Band 1 decimated to at most ``max_size`` pixels a side (from the COG's overviews), the extent in the
    axis units of :func:`_axes_units` (left, right, bottom, top) and the decimation factor."""
    with rasterio.open(path) as src:
        factor = max(1, math.ceil(max(src.height, src.width) / max_size))
        shape = (math.ceil(src.height / factor), math.ceil(src.width / factor))
        data = src.read(1, out_shape=shape, resampling=Resampling.nearest)
        b = src.bounds
        unit, _, _ = _axes_units(src.crs)
    return data, (b.left * unit, b.right * unit, b.bottom * unit, b.top * unit), factor


def _legend_handles(legend: Legend, shares: Mapping[str, float] | None = None) -> list[Patch]:
    handles = []
    for name, rgb in zip(legend.names, legend.colours, strict=True):
        colour = (rgb[0] / 255, rgb[1] / 255, rgb[2] / 255)
        label = name.replace("snow_ice", "snow / ice").replace("_", " ")
        if shares is not None:
            label += f" ({100 * shares.get(name, 0.0):.1f} %)"
        handles.append(Patch(facecolor=colour, edgecolor="0.3", linewidth=0.5, label=label))
    return handles


def _class_shares(path: str | os.PathLike[str]) -> tuple[dict[str, float], float]:
    """Share of each class among mapped pixels and the nodata share, from the map's ``CLASS_PIXELS`` tag."""
    with rasterio.open(path) as src:
        tags = src.tags()
        total = src.height * src.width
    counts = {k: int(v) for k, v in (item.split("=") for item in tags.get("CLASS_PIXELS", "").split(",") if item)}
    mapped = sum(counts.values())
    shares = {name: count / mapped for name, count in counts.items()} if mapped else {}
    return shares, (total - mapped) / total if total else 0.0


def _map_axes(
    ax: plt.Axes,
    data: np.ndarray,
    extent: tuple[float, float, float, float],
    title: str,
    labels: tuple[str, str] = ("easting (km)", "northing (km)"),
    legend: Legend | None = None,
) -> None:
    ax.set_facecolor("0.85")  # nodata (transparent) shows as light grey
    ax.imshow(_colour_lut(legend or Legend.generic(1))[data], extent=extent, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.ticklabel_format(useOffset=False, style="plain")


def write_preview(
    landcover: str | os.PathLike[str], png: str | os.PathLike[str], title: str = "", max_size: int = 1024
) -> None:
    """A PNG of the map (read from its overviews) with a legend of the classes and their area shares."""
    data, extent, factor = _read_small(landcover, max_size)
    legend = read_legend(landcover)
    shares, nodata_share = _class_shares(landcover)
    with rasterio.open(landcover) as src:
        crs = src.crs.to_string() if src.crs else "no CRS"
        _, *labels = _axes_units(src.crs)
    fig, ax = plt.subplots(figsize=(9.5, 7))
    _map_axes(ax, data, extent, title or Path(landcover).parent.name, (labels[0], labels[1]), legend)
    handles = _legend_handles(legend, shares)
    handles.append(
        Patch(
            facecolor="0.85", edgecolor="0.3", linewidth=0.5, label=f"no data ({100 * nodata_share:.1f} % of the AOI)"
        )
    )
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.02, 1),
        fontsize=8,
        frameon=False,
        title="class (share of mapped area)",
        title_fontsize=8,
    )
    ax.text(
        0,
        -0.12,
        f"{crs}; shown at 1/{factor} resolution" if factor > 1 else crs,
        transform=ax.transAxes,
        fontsize=7,
        color="0.4",
        va="top",
    )
    save_map_png(fig, png)


def test_windows(splits: str | os.PathLike[str], manifest: str | os.PathLike[str], aoi: str) -> list[Window]:
    """The pixel windows of the AOI's test-split chips (``splits.csv`` + the chips stage's manifest)."""
    from lulc.split_table import load_split

    test = load_split(splits, "test")
    test = test[test["aoi"] == aoi]
    chips = pd.read_parquet(manifest, columns=["chip_id", "row_off", "col_off", "height", "width"])
    merged = test.merge(chips, on="chip_id", how="inner")
    if len(merged) != len(test):
        raise ValueError(f"{manifest}: {len(test) - len(merged)} test chip(s) of {aoi} from {splits} are missing")
    return [Window(int(r.col_off), int(r.row_off), int(r.width), int(r.height)) for r in merged.itertuples()]


def agreement(
    landcover: str | os.PathLike[str],
    label: str | os.PathLike[str],
    windows: Sequence[Window] | None = None,
    rows_per_read: int = 1024,
) -> np.ndarray:
    """Confusion matrix (rows: label, columns: map) over labelled, mapped pixels at full resolution: inside
    ``windows`` only, or the whole scene (read in strips of ``rows_per_read`` rows)."""
    with rasterio.open(landcover) as pred_src, rasterio.open(label) as label_src:
        check_same_grid(landcover, pred_src, label, label_src)  # the tolerance of the predict stage's check
        if windows is None:
            windows = [
                Window(0, row, pred_src.width, min(rows_per_read, pred_src.height - row))
                for row in range(0, pred_src.height, rows_per_read)
            ]
        n = dataset_legend(pred_src, str(landcover)).num_classes
        confusion = np.zeros((n, n), dtype=np.int64)
        for window in windows:
            confusion += pixel_confusion(pred_src.read(1, window=window), label_src.read(1, window=window), n)
    return confusion


def _describe(confusion: np.ndarray, legend: Legend) -> str:
    if not confusion.sum():
        return "no labelled pixels"
    metrics = metrics_from_confusion(confusion, legend.names)
    return (
        f"accuracy {100 * metrics['pixel_accuracy']:.1f} %, mIoU {100 * metrics['miou']:.1f} % "
        f"({metrics['pixels']:,} px)"
    )


def write_comparison(
    landcover: str | os.PathLike[str],
    label: str | os.PathLike[str],
    png: str | os.PathLike[str],
    windows: Sequence[Window] | None = None,
    title: str = "",
    max_size: int = 768,
    whole: str = "whole AOI (includes training areas)",
) -> dict[str, Any]:
    """Prediction | label | agreement, side by side; the test chips (``windows``) outlined, and the agreement
    outside them faded. Accuracy and mIoU are computed at full resolution over the test chips (the only
    pixels no model trained or selected on) and, for reference, over the whole map (``whole`` names it).
    Returns both confusions."""
    legend = read_legend(landcover)
    legend.require_same(read_legend(label), f"the map {landcover}", f"the labels {label}")
    pred, extent, factor = _read_small(landcover, max_size)
    truth, _, _ = _read_small(label, max_size)
    if pred.shape != truth.shape:
        raise ValueError(f"{landcover} and {label} are not on the same grid")
    whole_confusion = agreement(landcover, label)
    test = agreement(landcover, label, windows) if windows else None

    in_test = np.zeros(pred.shape, dtype=bool)
    rectangles = []
    with rasterio.open(landcover) as src:
        transform = src.transform
        unit, *labels = _axes_units(src.crs)
    for w in windows or []:
        r0, c0 = int(w.row_off) // factor, int(w.col_off) // factor
        in_test[r0 : math.ceil((w.row_off + w.height) / factor), c0 : math.ceil((w.col_off + w.width) / factor)] = True
        left, top = transform * (w.col_off, w.row_off)
        rectangles.append(
            Rectangle(
                (left * unit, (top - w.height * abs(transform.e)) * unit),
                w.width * transform.a * unit,
                w.height * abs(transform.e) * unit,
            )
        )
    labelled = (truth < legend.num_classes) & (pred < legend.num_classes)
    colours = np.zeros((*pred.shape, 4), dtype=np.float32)
    colours[labelled & (pred == truth)] = (0.10, 0.60, 0.31, 1.0)
    colours[labelled & (pred != truth)] = (0.84, 0.19, 0.15, 1.0)
    if windows:
        colours[~in_test, 3] *= 0.3

    fig, axes = plt.subplots(1, 3, figsize=(16, 5.8), sharex=True, sharey=True)
    _map_axes(axes[0], pred, extent, "prediction", (labels[0], labels[1]), legend)
    _map_axes(axes[1], truth, extent, f"label ({legend.name}, ignore = grey)", (labels[0], labels[1]), legend)
    axes[2].set_facecolor("0.85")
    axes[2].imshow(colours, extent=extent, interpolation="nearest")
    axes[2].set_xlabel(labels[0])
    axes[2].set_title(
        "agreement (green) / disagreement (red)" + ("; test chips outlined" if windows else ""), fontsize=10
    )
    for ax in axes:
        if rectangles:
            ax.add_collection(PatchCollection(rectangles, facecolor="none", edgecolor="black", linewidth=0.6))
    test_line = "no test chips in this AOI" if windows is not None else None  # a map region has no split
    summary = [
        *([f"test chips: {_describe(test, legend)}"] if test is not None else [test_line] if test_line else []),
        f"{whole}: {_describe(whole_confusion, legend)}",
    ]
    fig.suptitle((title + "\n" if title else "") + " | ".join(summary), fontsize=10)
    fig.legend(
        handles=_legend_handles(legend),
        loc="lower center",
        ncol=min(len(legend.names), 9),
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, -0.02),
    )
    save_map_png(fig, png)
    return {"whole": whole_confusion, "test": test}


__all__ = ["agreement", "test_windows", "write_comparison", "write_preview"]
