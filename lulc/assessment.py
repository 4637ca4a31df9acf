"""Accuracy assessment of a map region's maps: the sample design (rule ``map_sample``) and the estimates from a
labelled sample (rule ``map_accuracy``), following Olofsson et al. (2014).

**Sample** (:func:`sample_map`). The strata are the map's classes (as the map records them: its ``CLASSES``
tag), counted on the full-resolution map block by block. The total is ``maps.accuracy.total``, or from the
target standard error of overall accuracy and one expected user's accuracy for every class (Olofsson 2014,
eq. 13: :func:`lulc.accuracy.sample_size`); it is allocated with a minimum for rare classes and the rest in
proportion to mapped area, or given per class (:func:`lulc.accuracy.allocate`), and drawn without replacement
within each stratum (:func:`lulc.sampling.draw_stratified_sample`: inclusion probability ``n_h / N_h``,
seeded, never holding the map in memory). Outputs: ``samples.gpkg`` and ``samples.csv`` to label (an empty
``reference`` column, to fill with class names), and ``strata.csv`` (pixels, km2 and units per stratum).

**Estimates** (:func:`assess_map`). The reference class of every unit comes from one of:

* a labelled copy of the sample (GeoPackage or CSV, ``reference`` filled; :func:`lulc.sampling.read_reference`
  refuses an unknown class name, a missing unit or a moved point, naming the unit) or a raster of reference
  classes (read at the units' positions): *accuracy* against that reference;
* the region's labels (``labels: true``): reported as *agreement with the labels*, never as accuracy, since
  the labels are another map.

The error matrix in area proportions, overall, user's and producer's accuracies and the error-adjusted area of
every class with 95 % intervals come from the stratified estimator (:func:`lulc.accuracy.stratified_estimates`)
and are written as ``accuracy.md``, ``accuracy.csv`` and ``accuracy.png``; ``assessed.csv`` keeps every unit
with its map and reference class (the viewer draws them). Units whose reference is missing (nodata in a
reference raster) are left out and counted in the report: that is only unbiased if they are missing at random.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio

from lulc.accuracy import allocate, sample_size, stratified_estimates, write_report
from lulc.io import atomic_path
from lulc.legends import raster_legend
from lulc.sampling import (
    MISSING,
    draw_stratified_sample,
    pixel_km2,
    read_reference,
    reference_from_raster,
    stratum_counts,
)

#: Map nodata (the ignore index): never a stratum.
NODATA = 255
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt")


def allocation_for(counts: np.ndarray, names: list[str], cfg: Mapping[str, Any], where: str) -> np.ndarray:
    """Units per class (in legend order) under the ``maps.accuracy`` settings ``cfg``; errors name ``where``."""
    mapped = counts.astype(np.int64)
    if cfg.get("per_class") is not None:
        per_class = dict(cfg["per_class"])
        unknown = sorted(set(per_class) - set(names))
        if unknown:
            raise ValueError(f"config key 'maps.accuracy.per_class': unknown class(es) {unknown} (legend: {names})")
        missing = [n for n, count in zip(names, mapped, strict=True) if count and n not in per_class]
        if missing:
            raise ValueError(f"config key 'maps.accuracy.per_class': {where} maps class(es) {missing}, not given")
        return allocate(0, mapped.tolist(), per_class=[int(per_class.get(n, 0)) for n in names])
    total = cfg.get("total")
    floor = int(np.minimum(mapped, int(cfg["minimum"])).sum())  # every class its minimum (or all its pixels)
    if total is None:
        present = mapped > 0
        total = max(floor, sample_size([float(cfg["users_accuracy"])] * int(present.sum()), mapped[present].tolist(),
                                       float(cfg["target_se"])))
    elif int(total) < floor:
        raise ValueError(f"config key 'maps.accuracy.total': {total} units cannot give every class of {where} its "
                         f"minimum (maps.accuracy.minimum {cfg['minimum']}: {floor} units)")
    total = min(int(total), int(mapped.sum()))
    try:
        return allocate(total, mapped.tolist(), minimum=int(cfg["minimum"]))
    except ValueError as error:
        raise ValueError(f"config key 'maps.accuracy': cannot allocate the sample of {where}: {error}") from None


def sample_map(
    map_path: str | os.PathLike[str],
    gpkg: str | os.PathLike[str],
    csv: str | os.PathLike[str],
    strata_csv: str | os.PathLike[str],
    cfg: Mapping[str, Any],
) -> dict[str, Any]:
    """Draw the stratified random sample of one map and write it for labelling (module docstring)."""
    from lulc.sampling import write_sample

    legend = raster_legend(map_path)
    names = [entry["name"] for entry in legend]
    indices = [int(entry["index"]) for entry in legend]
    counts = stratum_counts(map_path, nodata=NODATA)[indices]
    units = allocation_for(counts, names, cfg, str(map_path))
    sample = draw_stratified_sample(map_path, {h: int(n) for h, n in zip(indices, units, strict=True) if n},
                                    seed=int(cfg["seed"]), nodata=NODATA)
    with rasterio.open(map_path) as src:
        crs = src.crs
    pixel_area = pixel_km2(map_path)
    strata = pd.DataFrame({
        "stratum": indices, "class": names, "pixels": counts, "km2": counts * pixel_area, "units": units,
        "inclusion_probability": np.where(counts > 0, units / np.maximum(counts, 1), 0.0),
    })
    write_sample(sample, names, crs, gpkg, csv)
    with atomic_path(strata_csv) as tmp:
        strata.to_csv(tmp, index=False, float_format="%.10g")
    return {"units": int(units.sum()), "strata": int((units > 0).sum()), "pixels": int(counts.sum())}


def reference_classes(
    sample: pd.DataFrame, reference: str | os.PathLike[str], names: list[str]
) -> np.ndarray:
    """Reference class indices of the units from a labelled sample file or a raster of reference classes."""
    if Path(reference).suffix.lower() in RASTER_SUFFIXES:
        reference_names = [entry["name"] for entry in raster_legend(reference)]
        if reference_names != names:
            raise ValueError(f"{reference}: its classes {reference_names} are not the map's {names}")
        return reference_from_raster(sample, reference, nodata=NODATA)
    return read_reference(reference, sample, names)


def assess_map(
    map_path: str | os.PathLike[str],
    sample_csv: str | os.PathLike[str],
    strata_csv: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    outputs: Mapping[str, str | os.PathLike[str]],
    title: str,
    agreement: bool = False,
) -> dict[str, Any]:
    """Estimate accuracy and areas of one map from its sample and a reference (module docstring). ``agreement``:
    the reference is another map (labels), and the report says agreement, not accuracy. ``outputs``: paths of
    ``report`` (md), ``table`` (csv), ``figure`` (png) and ``units`` (assessed.csv)."""
    legend = raster_legend(map_path)
    names = [entry["name"] for entry in legend]
    indices = {int(entry["index"]): i for i, entry in enumerate(legend)}
    sample = pd.read_csv(sample_csv, dtype={"id": str})
    sample["reference"] = ""
    strata = pd.read_csv(strata_csv)
    found = reference_classes(sample, reference, names)
    known = found != MISSING
    map_class = np.array([indices[int(v)] for v in sample["map_class"]])
    ref_class = np.array([indices.get(int(v), -1) for v in found])
    counts = np.zeros((len(names), len(names)), dtype=np.int64)
    np.add.at(counts, (map_class[known], ref_class[known]), 1)
    mapped = strata.set_index("stratum").reindex(list(indices))["pixels"].fillna(0).to_numpy(np.int64)
    estimates = stratified_estimates(counts, mapped, names, pixel_area=pixel_km2(map_path), area_unit="km²")
    what = "Agreement with the labels (another map: not accuracy)" if agreement else "Accuracy and area"
    heading = f"{what}: {title}"
    note = (f"\nReference: `{reference}`. {int(known.sum())} of {len(sample)} sample units have a reference class"
            + (f"; {int((~known).sum())} without one are left out." if (~known).any() else ".") + "\n")
    write_report(estimates, outputs["report"], outputs["table"], outputs["figure"], heading, note=note)
    units = sample.drop(columns=["reference"]).assign(
        map_class_name=[names[i] for i in map_class],
        reference_class_name=[names[r] if k else "" for r, k in zip(ref_class, known, strict=True)],
        agree=np.where(known, map_class == ref_class, False),
    )
    with atomic_path(outputs["units"]) as tmp:
        units.to_csv(tmp, index=False, float_format="%.10g")
    return {"overall": float(estimates.overall), "overall_se": float(estimates.overall_se),
            "units": int(known.sum()), "agreement": agreement}


#: The change classes of a change pair: "to <class>" per map class (pixels that became that class), then
#: "stable" (pixels whose class did not change), in that index order.
STABLE = "stable"
STABLE_RGB = (190, 190, 190)


def change_legend(legend: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The legend of a change-strata raster: ``to_<class>`` for every class of the maps, then ``stable``."""
    entries = [{"index": i, "name": f"to_{entry['name']}", "colour": list(entry["colour"])}
               for i, entry in enumerate(legend)]
    return [*entries, {"index": len(legend), "name": STABLE, "colour": list(STABLE_RGB)}]


def change_classes(before: np.ndarray, after: np.ndarray, num_classes: int) -> np.ndarray:
    """Change class per pixel: the class it became where it changed, ``num_classes`` (stable) where it did not,
    NODATA where either map has no class."""
    valid = (before < num_classes) & (after < num_classes)
    return np.where(valid, np.where(before == after, num_classes, after), NODATA).astype(np.uint8)


def write_change_strata(
    before_path: str | os.PathLike[str], after_path: str | os.PathLike[str], out_path: str | os.PathLike[str]
) -> dict[str, Any]:
    """The change classes of two maps of one region on one grid (:func:`change_classes`), as a COG with its own
    legend (``CLASSES`` tag and colour table): the strata of a change pair's sample. Read block by block."""
    from lulc.io import copy_to_cog
    from lulc.tiling import check_same_grid

    legend = raster_legend(before_path)
    if [e["name"] for e in raster_legend(after_path)] != [e["name"] for e in legend]:
        raise ValueError(f"{before_path} and {after_path} have different legends: no change classes between them")
    strata_legend = change_legend(legend)
    with rasterio.open(before_path) as src_a, rasterio.open(after_path) as src_b:
        check_same_grid(before_path, src_a, after_path, src_b)
        profile = {**src_a.profile, "driver": "GTiff", "count": 1, "dtype": "uint8", "nodata": NODATA,
                   "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate"}
        with atomic_path(out_path) as final:
            stream = final.with_name(final.name + ".stream.tif")  # removed by atomic_path if a job is killed
            with rasterio.open(stream, "w", **profile) as dst:
                for _, window in dst.block_windows(1):
                    dst.write(change_classes(src_a.read(1, window=window), src_b.read(1, window=window),
                                             len(legend)), 1, window=window)
                colours = {e["index"]: (*e["colour"], 255) for e in strata_legend}
                dst.write_colormap(1, colours | {NODATA: (0, 0, 0, 0)})
                dst.update_tags(CLASSES=",".join(f"{e['index']}={e['name']}" for e in strata_legend),
                                IGNORE_INDEX=str(NODATA))
            copy_to_cog(stream, final, "mode")
            stream.unlink()
    return {"strata": len(strata_legend)}


def reference_change_classes(
    sample: pd.DataFrame, before: str | os.PathLike[str], after: str | os.PathLike[str], names: list[str]
) -> np.ndarray:
    """Reference change class of every unit from reference rasters of both periods; MISSING where either has
    no class there."""
    ref_before = reference_classes(sample, before, names)
    ref_after = reference_classes(sample, after, names)
    known = (ref_before != MISSING) & (ref_after != MISSING)
    change = np.where(ref_before == ref_after, len(names), ref_after)
    return np.where(known, change, MISSING)


def assess_change(
    strata_map: str | os.PathLike[str],
    after_map: str | os.PathLike[str],
    sample_csv: str | os.PathLike[str],
    strata_csv: str | os.PathLike[str],
    reference: tuple[str | os.PathLike[str], str | os.PathLike[str]],
    outputs: Mapping[str, str | os.PathLike[str]],
    title: str,
) -> dict[str, Any]:
    """Estimates of a change pair from its sample (strata: the change classes of :func:`write_change_strata`).

    ``reference``: the reference rasters of both periods; a unit's reference change class follows from them.
    Writes the change classes' report (``report``, ``table``, ``figure``: stratified estimator, strata = change
    classes), and, from the same units, the accuracy and areas of the later period's map (``after_report``,
    ``after_table``, ``after_figure``) with the Stehman (2014) estimator, since its strata are not that map's
    classes."""
    from lulc.accuracy import stehman_estimates

    change_names = [entry["name"] for entry in raster_legend(strata_map)]
    names = [entry["name"] for entry in raster_legend(after_map)]
    sample = pd.read_csv(sample_csv, dtype={"id": str})
    sample["reference"] = ""
    strata = pd.read_csv(strata_csv)
    found = reference_change_classes(sample, reference[0], reference[1], names)
    after_reference = reference_classes(sample, reference[1], names)
    known = found != MISSING
    unit_class = sample["map_class"].to_numpy(np.int64)
    counts = np.zeros((len(change_names), len(change_names)), dtype=np.int64)
    np.add.at(counts, (unit_class[known], found[known]), 1)
    mapped = strata.set_index("stratum").reindex(range(len(change_names)))["pixels"].fillna(0).to_numpy(np.int64)
    pixel_area = pixel_km2(strata_map)
    change = stratified_estimates(counts, mapped, change_names, pixel_area=pixel_area, area_unit="km²")
    note = (f"\nReference: {', '.join(f'`{r}`' for r in reference)}. {int(known.sum())} of {len(sample)} units "
            "have a reference change class.\n")
    write_report(change, outputs["report"], outputs["table"], outputs["figure"], f"Change classes: {title}",
                 note=note)
    after_class = reference_classes(sample, after_map, names)  # the later map's class at every unit
    use = (after_reference != MISSING) & (after_class != MISSING)
    sizes = dict(zip(strata["stratum"], strata["pixels"], strict=True))
    after = stehman_estimates(unit_class[use], after_class[use], after_reference[use], sizes, names,
                              pixel_area=pixel_area, area_unit="km²")
    write_report(after, outputs["after_report"], outputs["after_table"], outputs["after_figure"],
                 f"Accuracy and area of the later map from the change sample: {title}",
                 note=f"\nStrata: the change classes, not this map's classes (Stehman 2014). {note}")
    return {"change_overall": float(change.overall), "after_overall": float(after.overall), "units": int(known.sum())}


__all__ = [
    "allocation_for",
    "assess_change",
    "assess_map",
    "change_classes",
    "change_legend",
    "reference_change_classes",
    "reference_classes",
    "sample_map",
    "write_change_strata",
]
