"""Map viewer pages: one self-contained HTML page per map region (and per training AOI), opened from ``file://``.

A page embeds everything it shows, so it needs no server, no network and no JavaScript library: every raster
layer is an image in a ``data:`` URI drawn on a canvas by the page's own script (``viewer_page.html`` beside
this module), and the vectors, the legend, the coordinates and the areas are a JSON document in the page.

Layers, all resampled onto one page grid (the grid of the region's mosaics, coarsened by a whole factor so that
no side exceeds ``max_side`` pixels; classes by nearest neighbour, the imagery bilinearly):

* every map (period x run): class colours from the map's own colour table, class names from its ``CLASSES``
  tag, and each class's mapped area counted on the full-resolution map;
* each map's confidence (percent, grey), read out under the cursor with the map's class;
* the labels and each map's agreement with them (green agree, red differ), where the region has labels;
* each change pair of a run: pixels whose class changed, in the colour of the class they became;
* a natural-colour composite of the imagery (red, green, blue of the first frame, each band stretched to its
  2-98 % range);
* the processing tiles' cores and the region's outline, as lines.

The page's script reads the class under the cursor back from the drawn colours (every class has its own
colour), the confidence from the grey level (percent x 2.55, which rounds back exactly), and lon/lat by
interpolating a grid of control points transformed here (exact at the points, well under a pixel between them
for a region in one UTM zone).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from PIL import Image
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform as transform_points
from rasterio.warp import transform_geom

from lulc import hls
from lulc.io import atomic_path
from lulc.legends import raster_legend

#: The page's template: its markup, style and script; the page data replaces :data:`DATA_PLACEHOLDER`.
TEMPLATE = Path(__file__).with_name("viewer_page.html")
DATA_PLACEHOLDER = "/*__LULC_PAGE_DATA__*/null"
#: No side of a page's rasters exceeds this (a 16-tile region of 10 km tiles at 30 m is 1 334 px a side).
MAX_SIDE = 2048
#: Class and confidence rasters' nodata (the ignore index).
NODATA = 255
#: Control points per side of the lon/lat grid.
LONLAT_POINTS = 9


@dataclass(frozen=True)
class PageGrid:
    """The grid every layer of a page is drawn on."""

    crs: str
    transform: Affine
    width: int
    height: int

    @property
    def pixel_m(self) -> float:
        """Pixel width in CRS units (metres for the UTM grids of maps)."""
        return float(abs(self.transform.a))


@dataclass
class Layer:
    """One raster layer of a page: an image and what the script needs to draw and read it."""

    id: str
    title: str
    kind: str  # classes | confidence | agreement | change | imagery
    image: str  # data: URI
    group: str
    visible: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "kind": self.kind, "image": self.image, "group": self.group,
                "visible": self.visible, **self.extra}


@dataclass(frozen=True)
class MapInput:
    """One map of a page: its class COG, its optional confidence COG, and the period and run it shows."""

    landcover: Path
    confidence: Path | None
    period: str
    run: str


def page_grid(reference: str | os.PathLike[str], max_side: int = MAX_SIDE) -> PageGrid:
    """The grid of ``reference`` (a map), coarsened by the smallest whole factor that keeps both sides within
    ``max_side``."""
    with rasterio.open(reference) as src:
        factor = max(1, math.ceil(max(src.width, src.height) / max_side))
        return PageGrid(
            crs=src.crs.to_string(),
            transform=src.transform * Affine.scale(factor),
            width=math.ceil(src.width / factor),
            height=math.ceil(src.height / factor),
        )


def read_on_grid(
    path: str | os.PathLike[str], grid: PageGrid, resampling: Resampling, bands: Sequence[int] = (1,),
    nodata: float | None = None,
) -> np.ndarray:
    """``bands`` of ``path`` warped onto ``grid`` (GDAL picks the overview level), shape (bands, height, width);
    pixels outside the source are the source's nodata (or ``nodata``)."""
    with rasterio.open(path) as src:
        fill = src.nodata if nodata is None else nodata
        with WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                       resampling=resampling, nodata=fill) as vrt:
            return vrt.read(list(bands))


def class_areas_km2(path: str | os.PathLike[str], legend: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Mapped area per class (km2), counted on the full-resolution map block by block
    (:func:`lulc.sampling.stratum_counts`, the counts the accuracy sample is drawn from)."""
    from lulc.sampling import pixel_km2, stratum_counts

    counts, area = stratum_counts(path, nodata=NODATA), pixel_km2(path)
    return {entry["name"]: round(float(counts[entry["index"]] * area), 4) for entry in legend}


def data_uri(rgb: np.ndarray) -> str:
    """An (H, W, 3) uint8 image (the imagery) as a JPEG ``data:`` URI."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), mode="RGB").save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def palette_uri(values: np.ndarray, colours: Mapping[int, Sequence[int]]) -> str:
    """A uint8 raster as a palette PNG ``data:`` URI: value -> RGB from ``colours``, every other value
    transparent. One byte a pixel before compression: a fraction of what RGBA costs, decoded by the browser to
    exactly these colours."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    alpha = np.zeros(256, dtype=np.uint8)
    for value, rgb in colours.items():
        palette[value], alpha[value] = rgb[:3], 255
    image = Image.fromarray(np.ascontiguousarray(values, dtype=np.uint8), mode="P")
    image.putpalette(palette.ravel().tolist())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=alpha.tobytes(), compress_level=9)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def class_colours(legend: Sequence[Mapping[str, Any]]) -> dict[int, Sequence[int]]:
    """Class index -> RGB of a legend."""
    return {int(entry["index"]): entry["colour"] for entry in legend}


#: Confidence percent -> grey level (percent x 2.55, so the page reads the percent back exactly).
CONFIDENCE_GREYS: dict[int, Sequence[int]] = {p: (round(p * 2.55),) * 3 for p in range(101)}


def agreement_values(prediction: np.ndarray, label: np.ndarray, num_classes: int) -> np.ndarray:
    """1 where map and labels agree, 2 where they differ, 0 where either has no class (see AGREEMENT_COLOURS)."""
    both = (prediction < num_classes) & (label < num_classes)
    return np.where(both, np.where(prediction == label, 1, 2), 0).astype(np.uint8)


#: Agreement values -> colours: green agree, red differ.
AGREEMENT_COLOURS: dict[int, Sequence[int]] = {1: (26, 152, 80), 2: (215, 48, 39)}


def change_values(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The class a pixel became where it changed; NODATA (transparent) where it did not or either has none."""
    changed = (before != after) & (before < NODATA) & (after < NODATA)
    return np.where(changed, after, NODATA).astype(np.uint8)


def natural_colour(
    images: Iterable[str | os.PathLike[str]], grid: PageGrid, frame: int = 0
) -> np.ndarray | None:
    """Red, green, blue of ``frame`` of the image stacks (an AOI's, or a region's tiles: the first valid value
    wins where they overlap), warped onto ``grid`` and stretched to each band's 2-98 % range; None without any
    valid pixel. Imagery nodata is black."""
    bands = [frame * len(hls.PRITHVI_BANDS) + hls.PRITHVI_BANDS.index(name) + 1 for name in ("RED", "GREEN", "BLUE")]
    composite = np.full((3, grid.height, grid.width), np.nan, dtype=np.float32)
    for path in images:
        values = read_on_grid(path, grid, Resampling.bilinear, bands, nodata=hls.REFLECTANCE_NODATA).astype(np.float32)
        values[values == hls.REFLECTANCE_NODATA] = np.nan
        empty = np.isnan(composite)
        composite[empty] = values[empty]
    valid = ~np.isnan(composite).any(axis=0)
    if not valid.any():
        return None
    rgb = np.zeros((grid.height, grid.width, 3), dtype=np.uint8)
    for band in range(3):
        low, high = np.percentile(composite[band][valid], (2, 98))
        scaled = (composite[band] - low) / max(float(high - low), 1e-6)
        rgb[..., band] = np.where(valid, np.clip(scaled * 255, 0, 255), 0).astype(np.uint8)
    return rgb


def lonlat_points(grid: PageGrid, points: int = LONLAT_POINTS) -> dict[str, Any]:
    """Lon/lat of a ``points`` x ``points`` lattice of page pixel positions (corners included), for the
    script's cursor readout."""
    cols = np.linspace(0, grid.width, points)
    rows = np.linspace(0, grid.height, points)
    cc, rr = np.meshgrid(cols, rows)
    t = grid.transform
    xs = t.c + t.a * cc.ravel() + t.b * rr.ravel()
    ys = t.f + t.d * cc.ravel() + t.e * rr.ravel()
    lon, lat = transform_points(grid.crs, "EPSG:4326", list(xs), list(ys))
    return {"cols": cols.tolist(), "rows": rows.tolist(), "lon": [round(v, 7) for v in lon],
            "lat": [round(v, 7) for v in lat]}


def geometry_paths(geometry: Mapping[str, Any], crs: str, grid: PageGrid) -> list[list[list[float]]]:
    """The rings / lines of a GeoJSON geometry in ``crs`` as page pixel paths."""
    projected = transform_geom(crs, grid.crs, geometry)
    inverse = ~grid.transform
    coordinates = projected["coordinates"]
    kind = projected["type"]
    rings = {"Polygon": coordinates, "MultiPolygon": [r for p in coordinates for r in p],
             "LineString": [coordinates], "MultiLineString": coordinates}.get(kind)
    if rings is None:
        raise ValueError(f"cannot draw a {kind} as an outline")
    return [[[round(v, 2) for v in inverse * (x, y)] for x, y, *_ in ring] for ring in rings]


def box(left: float, bottom: float, right: float, top: float) -> dict[str, Any]:
    """A GeoJSON polygon of a box."""
    return {"type": "Polygon", "coordinates": [[(left, bottom), (right, bottom), (right, top), (left, top),
                                                 (left, bottom)]]}


def map_layers(maps: Sequence[MapInput], grid: PageGrid, legend: Sequence[Mapping[str, Any]]) -> tuple[
        list[Layer], dict[str, np.ndarray]]:
    """A class layer (and a confidence layer) per map; the first map visible. Returns the layers and each map's
    class indices on the page grid, by layer id."""
    layers: list[Layer] = []
    indices: dict[str, np.ndarray] = {}
    for number, item in enumerate(maps):
        layer_id = f"map-{item.period}-{item.run}"
        classes = read_on_grid(item.landcover, grid, Resampling.nearest, nodata=NODATA)[0]
        indices[layer_id] = classes
        confidence_id = f"confidence-{item.period}-{item.run}" if item.confidence else None
        title = f"{item.run} {item.period}".strip()
        layers.append(Layer(layer_id, title, "classes", palette_uri(classes, class_colours(legend)), "maps",
                            visible=number == 0,
                            extra={"areas_km2": class_areas_km2(item.landcover, legend), "confidence": confidence_id,
                                   "period": item.period, "run": item.run}))
        if item.confidence is not None and confidence_id is not None:
            percent = read_on_grid(item.confidence, grid, Resampling.nearest, nodata=NODATA)[0]
            image = palette_uri(percent, CONFIDENCE_GREYS)
            layers.append(Layer(confidence_id, f"confidence {title}", "confidence", image, "confidence",
                                extra={"map": layer_id}))
    return layers, indices


def label_layers(
    labels: Mapping[str, Path], maps: Sequence[MapInput], indices: Mapping[str, np.ndarray], grid: PageGrid,
    legend: Sequence[Mapping[str, Any]],
) -> list[Layer]:
    """The labels (per period) and each map's agreement with the labels of its period."""
    layers: list[Layer] = []
    for period, path in labels.items():
        label = read_on_grid(path, grid, Resampling.nearest, nodata=NODATA)[0]
        label_id = f"labels-{period}" if period else "labels"
        image = palette_uri(label, class_colours(legend))
        layers.append(Layer(label_id, f"labels {period}".strip(), "classes", image, "labels",
                            extra={"areas_km2": class_areas_km2(path, legend)}))
        for item in maps:
            if item.period != period:
                continue
            map_id = f"map-{item.period}-{item.run}"
            image = palette_uri(agreement_values(indices[map_id], label, len(legend)), AGREEMENT_COLOURS)
            layers.append(Layer(f"agreement-{item.period}-{item.run}", f"agreement {item.run} {period}".strip(),
                                "agreement", image, "agreement", extra={"map": map_id, "labels": label_id}))
    return layers


def change_layers(
    pairs: Sequence[tuple[str, str]], runs: Sequence[str], indices: Mapping[str, np.ndarray],
    legend: Sequence[Mapping[str, Any]],
) -> list[Layer]:
    """Per run and change pair, the pixels whose class changed, coloured by the class they became."""
    layers = []
    for run in runs:
        for before, after in pairs:
            a, b = f"map-{before}-{run}", f"map-{after}-{run}"
            if a not in indices or b not in indices:
                continue
            layers.append(Layer(f"change-{before}-{after}-{run}", f"change {run} {before} → {after}", "change",
                                palette_uri(change_values(indices[a], indices[b]), class_colours(legend)), "change",
                                extra={"before": a, "after": b}))
    return layers


def sample_points(title: str, assessed_csv: str | os.PathLike[str], grid: PageGrid) -> dict[str, Any]:
    """An accuracy-assessment sample as page points (``assessed.csv`` of :mod:`lulc.assessment`): position, whether
    map and reference agree, and both classes."""
    import pandas as pd

    units = pd.read_csv(assessed_csv, dtype={"id": str}, keep_default_na=False)
    xs, ys = transform_points("EPSG:4326", grid.crs, units["lon"].tolist(), units["lat"].tolist())
    inverse = ~grid.transform
    points = []
    for x, y, agree, mapped, reference in zip(xs, ys, units["agree"], units["map_class_name"],
                                              units["reference_class_name"], strict=True):
        col, row = inverse * (x, y)
        points.append([round(col, 2), round(row, 2), str(agree) == "True", mapped, reference])
    return {"id": f"sample-{title}".replace(" ", "-"), "title": f"sample {title} (green: agrees)", "colour": "#000000",
            "points": points}


@dataclass
class PageInputs:
    """What one page shows: its maps, labels, imagery, change pairs and vectors."""

    title: str
    maps: list[MapInput]
    labels: dict[str, Path] = field(default_factory=dict)
    images: list[Path] = field(default_factory=list)
    change_pairs: list[tuple[str, str]] = field(default_factory=list)
    outline: dict[str, Any] | None = None  # GeoJSON geometry in outline_crs
    outline_crs: str = "EPSG:4326"
    tiles: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (CRS, GeoJSON box) per tile core
    samples: list[tuple[str, Path]] = field(default_factory=list)  # (title, assessed.csv) per assessed map
    notes: list[str] = field(default_factory=list)


def page_data(inputs: PageInputs, max_side: int = MAX_SIDE) -> dict[str, Any]:
    """The JSON document a page's script draws: grid, coordinates, legend, layers and vectors."""
    if not inputs.maps:
        raise ValueError(f"{inputs.title}: a viewer page needs at least one map")
    grid = page_grid(inputs.maps[0].landcover, max_side)
    legend = raster_legend(inputs.maps[0].landcover)
    layers: list[Layer] = []
    rgb = natural_colour(inputs.images, grid) if inputs.images else None
    if rgb is not None:
        layers.append(Layer("imagery", "natural colour (frame 1)", "imagery", data_uri(rgb), "imagery"))
    maps, indices = map_layers(inputs.maps, grid, legend)
    layers += maps
    layers += label_layers(inputs.labels, inputs.maps, indices, grid, legend)
    layers += change_layers(inputs.change_pairs, sorted({m.run for m in inputs.maps}), indices, legend)
    vectors = []
    if inputs.tiles:
        vectors.append({"id": "tiles", "title": "processing tiles", "colour": "#202020",
                        "paths": [p for crs, geometry in inputs.tiles for p in geometry_paths(geometry, crs, grid)]})
    for title, path in inputs.samples:
        vectors.append(sample_points(title, path, grid))
    if inputs.outline is not None:
        vectors.append({"id": "outline", "title": "outline", "colour": "#ff00ff",
                        "paths": geometry_paths(inputs.outline, inputs.outline_crs, grid)})
    return {
        "title": inputs.title,
        "grid": {"crs": grid.crs, "width": grid.width, "height": grid.height, "pixel_m": grid.pixel_m,
                 "transform": list(grid.transform)[:6]},
        "lonlat": lonlat_points(grid),
        "legend": legend,
        "layers": [layer.record() for layer in layers],
        "vectors": vectors,
        "notes": inputs.notes,
    }


def render_page(data: Mapping[str, Any]) -> str:
    """The page: the template with the data embedded (``</`` escaped, so no string closes the script)."""
    document = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    template = TEMPLATE.read_text(encoding="utf-8")
    if DATA_PLACEHOLDER not in template:
        raise RuntimeError(f"{TEMPLATE} has no {DATA_PLACEHOLDER} placeholder")
    return template.replace("__LULC_TITLE__", html.escape(str(data["title"]))).replace(DATA_PLACEHOLDER, document)


def write_page(inputs: PageInputs, path: str | os.PathLike[str], max_side: int = MAX_SIDE) -> dict[str, Any]:
    """Write one viewer page atomically; returns its size and layer count for the log."""
    data = page_data(inputs, max_side)
    page = render_page(data)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return {"page": str(path), "bytes": len(page.encode("utf-8")), "layers": len(data["layers"]),
            "grid": [data["grid"]["width"], data["grid"]["height"]]}


def write_index(pages: Sequence[tuple[str, str, str]], path: str | os.PathLike[str]) -> None:
    """``results/maps/index.html``: a link to every page, as (title, description, href relative to it)."""
    items = "\n".join(
        f'    <li><a href="{html.escape(href)}">{html.escape(title)}</a> <span>{html.escape(text)}</span></li>'
        for title, text, href in pages
    )
    document = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Land-cover maps</title>
<style>body{{font:15px system-ui,sans-serif;margin:2em;max-width:50em}}li{{margin:.4em 0}}span{{color:#555}}</style>
</head><body>
<h1>Land-cover maps</h1>
<p>One page per map region and per training AOI: open it from this folder, no server needed.</p>
<ul>
{items}
</ul>
</body></html>
"""
    with atomic_path(path) as tmp:
        tmp.write_text(document, encoding="utf-8")


__all__ = [
    "MapInput",
    "PageGrid",
    "PageInputs",
    "box",
    "page_data",
    "page_grid",
    "render_page",
    "write_index",
    "write_page",
]


def run_maps(
    landcovers: Sequence[str | os.PathLike[str]], confidences: Sequence[str | os.PathLike[str]],
    labels: Sequence[tuple[str, str]],
) -> list[MapInput]:
    """Map inputs from parallel lists of class COGs, confidence COGs (empty: none) and (period, run) labels."""
    if confidences and len(confidences) != len(landcovers):
        raise ValueError(f"{len(landcovers)} maps but {len(confidences)} confidence rasters")
    return [
        MapInput(Path(landcover), Path(confidences[i]) if confidences else None, period, run)
        for i, (landcover, (period, run)) in enumerate(zip(landcovers, labels, strict=True))
    ]


def region_outline(bbox: Sequence[float], file: str | os.PathLike[str] | None) -> tuple[dict[str, Any], str]:
    """A map region's outline: the union of its vector file's features (in the file's CRS), else its bbox
    (lon/lat)."""
    if file is None:
        return box(*bbox), "EPSG:4326"
    import geopandas
    from shapely.geometry import mapping

    frame = geopandas.read_file(file)
    if frame.crs is None:
        raise ValueError(f"{file}: no CRS; a region's vector file needs one")
    return dict(mapping(frame.geometry.union_all())), frame.crs.to_string()


def tile_cores(tiles_csv: str | os.PathLike[str]) -> list[tuple[str, dict[str, Any]]]:
    """(CRS, core box) of every processing tile of a region's ``tiles.csv``."""
    from lulc.maps import read_tiles

    return [(f"EPSG:{tile.epsg}", box(*tile.core_bounds())) for tile in read_tiles(tiles_csv)]
