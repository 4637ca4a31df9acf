"""Predict one processing tile of a map region (the ``map_predict`` rule) and keep its core.

A region given as a vector file is mapped inside its features only: the core's pixels whose centre lies outside
every feature are nodata (255) in the class map and the confidence (:func:`lulc.maps.core_mask`), so the
mosaics, the change tables and whatever is counted from them cover the region and nothing else.

Inputs are checked before the model is loaded (:func:`lulc.integrity.check_inputs`): a truncated ``image.tif``
is reported as damaged, naming the file and the rule that writes it. The scratch folder (``lulc-map-tile-*``,
beside the outputs) of a killed run of the same job is removed first.

Kept apart from :mod:`lulc.maps` (tiling and planning, imported by the configuration checks) so that the
planning rules do not run, and are not rerun by edits to, the predictor and the models.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lulc.io import atomic_path, remove_stale_folders
from lulc.maps import ProcessingTile, core_mask, find_tile, predict_geometry

#: Prefix of the scratch folder of a tile's prediction, beside its outputs (only that job uses it).
SCRATCH_PREFIX = "lulc-map-tile-"


def crop_core(source: str | os.PathLike[str], destination: str | os.PathLike[str], tile: ProcessingTile,
              tags: Mapping[str, str] | None = None, rows_per_read: int = 512,
              inside: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Copy the core of a tile's map (a raster on the tile's halo grid) to ``destination``, a tiled GeoTIFF
    (deflate) on the core's grid, strip by strip, atomically. ``inside`` (core-shaped bool): pixels where it is
    False become nodata (255 where the source declares none). Returns the pixels per value (256 bins)."""
    import rasterio
    from rasterio.windows import Window

    counts = np.zeros(256, dtype=np.int64)
    with rasterio.open(source) as src:
        if (src.width, src.height) != (tile.width, tile.height):
            raise ValueError(
                f"{source}: {src.width} x {src.height} px, but processing tile {tile.tile} is {tile.width} x "
                f"{tile.height} px with its halo"
            )
        profile = {
            "driver": "GTiff", "width": tile.core_width, "height": tile.core_height, "count": 1,
            "dtype": src.dtypes[0], "crs": src.crs, "nodata": src.nodata,
            "transform": src.transform * src.transform.translation(tile.core_col, tile.core_row),
            "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate", "zlevel": 1,
            "BIGTIFF": "IF_SAFER",
        }  # fmt: skip
        nodata = 255 if src.nodata is None else int(src.nodata)
        if inside is not None:
            profile["nodata"] = nodata
        if inside is not None and inside.shape != (tile.core_height, tile.core_width):
            raise ValueError(f"region mask of {inside.shape}, but tile {tile.tile}'s core is {tile.core_height} x "
                             f"{tile.core_width} px")  # fmt: skip
        colormap = None
        try:
            colormap = src.colormap(1)
        except ValueError:  # no colour table
            pass
        with atomic_path(destination) as tmp:
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.set_band_description(1, src.descriptions[0] or "")
                for row in range(0, tile.core_height, rows_per_read):
                    rows = min(rows_per_read, tile.core_height - row)
                    data = src.read(1, window=Window(tile.core_col, tile.core_row + row, tile.core_width, rows))
                    if inside is not None:
                        data[~inside[row : row + rows]] = nodata
                    dst.write(data, 1, window=Window(0, row, tile.core_width, rows))
                    counts += np.bincount(data.ravel(), minlength=256)[:256]
                if colormap is not None:
                    dst.write_colormap(1, colormap)
                dst.update_tags(**src.tags(), **(tags or {}))
    return counts


def predict_tile(
    checkpoint: str | os.PathLike[str],
    image: str | os.PathLike[str],
    tiles_csv: str | os.PathLike[str],
    tile_id: str,
    landcover: str | os.PathLike[str],
    cfg: Mapping[str, Any],
    confidence: str | os.PathLike[str] | None = None,
    run_name: str = "",
    region: str = "",
    threads: int | None = None,
    region_file: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The ``map_predict`` rule: predict a tile's image (core + halo) with :func:`lulc.predict.predict_scene`
    and keep the core (class map, and the confidence where ``confidence`` is given). ``region_file``: the
    region's vector file, outside whose features the core is nodata (None: a bbox region, all of it mapped).
    Outputs appear atomically; on failure none is left."""
    import tempfile

    import torch

    from lulc.integrity import check_inputs
    from lulc.models import checkpoint_legend, load_trained_model, sha256_file
    from lulc.predict import check_image, predict_scene
    from lulc.schema import section

    cfg = section("predict", cfg)
    if threads:
        torch.set_num_threads(int(threads))
    check_inputs([image, tiles_csv])  # a truncated image is damaged, not "not georeferenced"
    tile = find_tile(tiles_csv, tile_id)
    outputs = [Path(p) for p in (landcover, confidence) if p is not None]
    import rasterio

    with rasterio.open(image) as src:
        frames = check_image(image, src)
        if (src.width, src.height) != (tile.width, tile.height):
            raise ValueError(
                f"{image}: {src.width} x {src.height} px, but processing tile {tile_id} of {tiles_csv} is "
                f"{tile.width} x {tile.height} px"
            )
    inside = None if region_file is None else core_mask(region_file, tile)
    model, record = load_trained_model(checkpoint)
    legend = checkpoint_legend(record, checkpoint)
    info = record["info"]
    if frames != info["frames"]:
        raise ValueError(
            f"{image} has {frames} frames but {checkpoint} was trained on {info['frames']} (download.frames)"
        )
    tile_px, stride = predict_geometry(cfg, int(info["chip_size"]))
    tags = {
        "REGION": region,
        "MODEL_RUN": run_name,
        "MODEL": f"{info['name']} ({info['type']})",
        "CHECKPOINT_SHA256": sha256_file(checkpoint),
        "PROCESSING_TILE": tile_id,
    }
    if inside is not None:
        tags["REGION_MASK"] = "pixels whose centre lies outside every feature of the region's file are nodata"
    folder = Path(landcover).parent
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_folders(folder, SCRATCH_PREFIX)  # a killed run of this job left it; no other job uses it
    try:
        with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=folder) as work:
            whole = Path(work) / "landcover.tif"
            whole_confidence = Path(work) / "confidence.tif" if confidence is not None else None
            result = predict_scene(
                model, image, whole, tile=tile_px, stride=stride, batch_size=cfg["batch_size"],
                device=cfg["device"], precision=cfg["precision"], confidence_path=whole_confidence,
                min_valid_frames=cfg["min_valid_frames"], tags={k: v for k, v in tags.items() if v},
                threads=threads or cfg["threads"], progress=False, legend=legend,
            )  # fmt: skip
            counts = crop_core(whole, landcover, tile, inside=inside)
            if confidence is not None and whole_confidence is not None:
                crop_core(whole_confidence, confidence, tile, inside=inside)
    except BaseException:
        for path in outputs:
            path.unlink(missing_ok=True)
        raise
    from lulc.legends import IGNORE_INDEX

    result["core_class_pixels"] = {name: int(counts[i]) for i, name in enumerate(legend.names)}
    result["core_nodata_pixels"] = int(counts[IGNORE_INDEX])
    result["tile"] = tile_id
    return result
