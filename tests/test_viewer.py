"""Viewer pages (lulc/viewer.py): the page data from real COGs the tests write, and the page itself in a real
headless browser (Debian's chromium through chromedriver): opened from file:// with no network request and
no console error, one layer per map, the colours drawn where the COG holds a class, swipe, opacity and the
cursor readout."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from browser import assert_offline, check_page, drawn_colour, load, save_screenshot, screen_point, set_range
from rasterio.transform import from_origin
from rasterio.warp import transform as transform_points

from lulc.legends import raster_legend
from lulc.viewer import (
    CONFIDENCE_GREYS,
    MapInput,
    PageInputs,
    agreement_values,
    box,
    page_data,
    page_grid,
    render_page,
    write_page,
)
from tests import io_legend as classes

SIDE = 120
ORIGIN = (500_000.0, 4_650_000.0)
CROPS, BUILT, WATER, TREES = (classes.CLASS_NAMES.index(n) for n in ("crops", "built_area", "water", "trees"))


def _write(path: Path, array: np.ndarray, *, legend: bool = True, nodata: float = 255, count: int = 1) -> Path:
    profile = {"driver": "GTiff", "width": SIDE, "height": SIDE, "count": count, "dtype": array.dtype.name,
               "crs": "EPSG:32615", "transform": from_origin(*ORIGIN, 30, 30), "nodata": nodata}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array if array.ndim == 3 else array[None])
        if legend:
            dst.write_colormap(1, classes.index_colormap())
            dst.update_tags(**classes.class_tags())
    return path


@pytest.fixture(scope="module")
def region(tmp_path_factory) -> PageInputs:
    """Two years of one run (crops -> built in the lower middle in the second), labels, confidence 77 %,
    imagery, a processing tile and an outline; a nodata corner."""
    folder = tmp_path_factory.mktemp("viewer")
    before = np.full((SIDE, SIDE), WATER, dtype=np.uint8)
    before[:, 40:80], before[:, 80:] = CROPS, TREES
    before[:10, :10] = 255
    after = before.copy()
    after[60:, 40:80] = BUILT
    label = before.copy()
    label[:, 100:] = CROPS  # disagrees with the map on the right edge
    rng = np.random.default_rng(0)
    paths = {
        "before": _write(folder / "2023.tif", before),
        "after": _write(folder / "2024.tif", after),
        "label": _write(folder / "label.tif", label),
        "confidence": _write(folder / "confidence.tif", np.full((SIDE, SIDE), 77, np.uint8), legend=False),
        "image": _write(folder / "image.tif", rng.integers(100, 3000, (18, SIDE, SIDE)).astype(np.int16),
                        legend=False, nodata=-9999, count=18),
    }
    x0, y0 = ORIGIN
    return PageInputs(
        title="test region <b>",
        maps=[MapInput(paths["before"], paths["confidence"], "2023", "unet_f1_s0"),
              MapInput(paths["after"], None, "2024", "unet_f1_s0")],
        labels={"2023": paths["label"]},
        images=[paths["image"]],
        change_pairs=[("2023", "2024")],
        outline=box(x0 + 300, y0 - 3300, x0 + 3300, y0 - 300),
        outline_crs="EPSG:32615",
        tiles=[("EPSG:32615", box(x0, y0 - 1800, x0 + 1800, y0))],
    )


@pytest.fixture(scope="module")
def page(region, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("page") / "viewer.html"
    write_page(region, path)
    return path


def test_the_page_data_takes_classes_from_the_map_and_counts_areas_at_full_resolution(region):
    data = page_data(region)
    legend = {entry["name"]: entry for entry in data["legend"]}
    assert list(legend) == list(classes.CLASS_NAMES)
    assert legend["crops"]["colour"] == list(classes.IO_COLOURS[5])
    maps = [layer for layer in data["layers"] if layer["group"] == "maps"]
    assert [m["title"] for m in maps] == ["unet_f1_s0 2023", "unet_f1_s0 2024"]
    pixel_km2 = 30 * 30 / 1e6
    assert maps[0]["areas_km2"]["crops"] == pytest.approx(40 * SIDE * pixel_km2, abs=1e-3)
    assert maps[1]["areas_km2"]["built_area"] == pytest.approx(60 * 40 * pixel_km2, abs=1e-3)
    kinds = sorted(layer["kind"] for layer in data["layers"])
    assert kinds == ["agreement", "change", "classes", "classes", "classes", "confidence", "imagery"]
    assert {v["id"] for v in data["vectors"]} == {"tiles", "outline"}
    lon, lat = transform_points("EPSG:32615", "EPSG:4326", [ORIGIN[0]], [ORIGIN[1]])
    assert data["lonlat"]["lon"][0] == pytest.approx(lon[0], abs=1e-6)
    assert data["lonlat"]["lat"][0] == pytest.approx(lat[0], abs=1e-6)


def test_confidence_grey_levels_read_back_exactly():
    percent = np.arange(0, 101)
    grey = np.array([CONFIDENCE_GREYS[p][0] for p in percent])
    assert (np.round(grey / 2.55) == percent).all()  # what the page's script computes
    assert 255 not in CONFIDENCE_GREYS  # nodata transparent


def test_agreement_ignores_pixels_without_a_class():
    prediction = np.array([[0, 1, 255]], dtype=np.uint8)
    label = np.array([[0, 2, 0]], dtype=np.uint8)
    assert agreement_values(prediction, label, classes.NUM_CLASSES).tolist() == [[1, 2, 0]]


def test_large_maps_are_coarsened_by_a_whole_factor(region):
    grid = page_grid(region.maps[0].landcover, max_side=50)
    assert (grid.width, grid.height, grid.pixel_m) == (40, 40, 90.0)


def test_a_map_without_class_names_is_refused_by_name(tmp_path):
    bare = _write(tmp_path / "bare.tif", np.zeros((SIDE, SIDE), np.uint8), legend=False)
    with pytest.raises(ValueError, match=r"bare\.tif: no LEGEND or CLASSES tag"):
        raster_legend(bare)
    with pytest.raises(ValueError, match="bare.tif"):
        write_page(PageInputs("x", [MapInput(bare, None, "2023", "r")]), tmp_path / "viewer.html")
    assert not (tmp_path / "viewer.html").exists()


def test_the_page_embeds_its_data_safely(region):
    page = render_page({**page_data(region), "title": "a </script><script>alert(1)</script> title"})
    assert "</script><script>alert(1)" not in page
    assert "DATA = /*" not in page and "const DATA = {" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the page must reference no host"


# ------------------------------------------------------------------------------------------- in a browser


def _reference_colour(path: Path, col: int, row: int) -> tuple[int, int, int]:
    with rasterio.open(path) as src:
        value = int(src.read(1)[row, col])
        return tuple(src.colormap(1)[value][:3])  # type: ignore[return-value]


def test_the_page_opens_offline_with_one_layer_per_map(browser, page, region):
    load(browser, page)
    assert_offline(browser, page)
    titles = browser.execute_script(
        "return lulcViewer.layers.filter(l => l.group === 'maps').map(l => l.title)")
    assert titles == [f"{m.run} {m.period}" for m in region.maps]
    boxes = browser.find_elements("css selector", "#layers input[type=checkbox]")
    assert len(boxes) == len(page_data(region)["layers"])
    save_screenshot(browser, "viewer_test_region")


def test_the_colour_drawn_is_the_colour_of_the_cogs_class_there(browser, page, region):
    load(browser, page)
    for col, row in ((60, 30), (20, 100), (100, 50)):
        assert drawn_colour(browser, col + 0.5, row + 0.5) == _reference_colour(region.maps[0].landcover, col, row)


def test_opacity_and_swipe_change_what_is_drawn(browser, page, region):
    load(browser, page)
    col, row = 60.5, 100.5  # crops in 2023, built area in 2024
    crops = _reference_colour(region.maps[0].landcover, 60, 100)
    built = _reference_colour(region.maps[1].landcover, 60, 100)
    assert drawn_colour(browser, col, row) == crops
    set_range(browser, "opacity-map-2023-unet_f1_s0", 0)
    assert drawn_colour(browser, col, row) not in (crops, built)  # the background shows through
    set_range(browser, "opacity-map-2023-unet_f1_s0", 100)

    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "swipe-left")).select_by_value("map-2023-unet_f1_s0")
    Select(browser.find_element("id", "swipe-right")).select_by_value("map-2024-unet_f1_s0")
    x, _ = screen_point(browser, col, row)
    width = browser.execute_script("return document.getElementById('map').getBoundingClientRect()")
    share = (x - width["left"]) / width["width"]
    set_range(browser, "swipe", int(share * 100) + 5)  # the point is left of the line: the left layer
    assert drawn_colour(browser, col, row) == crops
    set_range(browser, "swipe", int(share * 100) - 5)  # right of it: the right layer
    assert drawn_colour(browser, col, row) == built
    save_screenshot(browser, "viewer_test_swipe")


def test_the_cursor_readout_names_the_class_the_cog_holds_there(browser, page, region):
    from selenium.webdriver.common.action_chains import ActionChains

    load(browser, page)
    canvas = browser.find_element("id", "map")
    box_ = browser.execute_script("return arguments[0].getBoundingClientRect()", canvas)
    for col, row, name in ((60, 30, "crops"), (20, 100, "water"), (100, 50, "trees")):
        x, y = screen_point(browser, col + 0.5, row + 0.5)
        ActionChains(browser).move_to_element_with_offset(
            canvas, int(x - box_["left"] - box_["width"] / 2), int(y - box_["top"] - box_["height"] / 2)
        ).perform()
        text = browser.find_element("id", "readout").text
        assert f"unet_f1_s0 2023: {name} (77 %)" in text, text
        lon, lat = transform_points("EPSG:32615", "EPSG:4326", [ORIGIN[0] + (col + 0.5) * 30],
                                    [ORIGIN[1] - (row + 0.5) * 30])
        shown = re.search(r"lon (-?[0-9.]+)\s+lat (-?[0-9.]+)", text)
        assert shown and float(shown[1]) == pytest.approx(lon[0], abs=2e-4), text
        assert float(shown[2]) == pytest.approx(lat[0], abs=2e-4), text


@pytest.mark.skipif(not os.environ.get("LULC_DEMO_RESULTS"),
                    reason="LULC_DEMO_RESULTS names no demo results folder (set it to check a demo run's pages and, "
                           "with LULC_SCREENSHOTS, keep their screenshots for the README)")
def test_a_demo_runs_pages(browser):
    """The same checks on the pages of a finished demo run; the README's screenshots come from here."""
    results = Path(os.environ["LULC_DEMO_RESULTS"])
    pages = sorted((results / "maps").glob("*/viewer.html")) + sorted((results / "predict").glob("*/viewer.html"))
    assert pages
    for page in pages:
        if page.parent.parent.name == "maps":
            maps = {f"{tif.parent.name} {tif.parent.parent.name}": tif
                    for tif in sorted(page.parent.glob("*/*/landcover.tif"))}
        else:
            maps = {tif.parent.name: tif for tif in sorted(page.parent.glob("*/landcover.tif"))}
        check_page(browser, page, maps)
        save_screenshot(browser, f"viewer_{page.parent.name}")
