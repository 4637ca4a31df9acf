"""A real headless browser for the viewer tests: Debian's chromium driven through chromedriver (Selenium).

Skipped, with the reason, where chromium or chromedriver is not installed; failed instead where
LULC_REQUIRE_BROWSER=1 (CI installs both and sets it, so that a missing browser cannot pass as a skip).
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

CHROMIUM = Path(os.environ.get("LULC_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("LULC_CHROMEDRIVER", "/usr/bin/chromedriver"))
#: Flags for a browser that reaches no host by itself (no updates, no background traffic).
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--force-device-scale-factor=1", "--window-size=1280,820",
)


def require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        reason = f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("LULC_REQUIRE_BROWSER"):
            pytest.fail(f"{reason}: the browser tests are required (LULC_REQUIRE_BROWSER is set)")
        pytest.skip(reason)


def open_browser(profile: Path) -> Any:
    """A Chrome WebDriver on ``CHROMIUM`` with browser and network logs, its profile in ``profile``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def load(driver: Any, page: Path) -> None:
    """Open ``page`` from file:// and wait until its layers are decoded and drawn."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("performance")  # drained: what follows is this page's
    driver.get(page.resolve().as_uri())
    WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))


def requests(driver: Any) -> list[tuple[str, str]]:
    """(document, URL) of every request since the page was loaded (Chrome's network log): the browser's own
    pages (chrome://) included, so that a request to any host shows."""
    found = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            params = message["params"]
            found.append((params.get("documentURL", ""), params["request"]["url"]))
    return found


def console_errors(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def screen_point(driver: Any, col: float, row: float) -> tuple[int, int]:
    """The window position (CSS pixels) where the page draws page-grid position (col, row)."""
    x, y = driver.execute_script(
        "const [x, y] = lulcViewer.pixelToScreen(arguments[0], arguments[1]);"
        "const box = document.getElementById('map').getBoundingClientRect(); return [box.left + x, box.top + y];",
        col, row,
    )
    return int(x), int(y)


def drawn_colour(driver: Any, col: float, row: float) -> tuple[int, int, int]:
    """The colour on screen (a screenshot) at page-grid position (col, row)."""
    from PIL import Image

    x, y = screen_point(driver, col, row)
    shot = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB"))
    return tuple(int(v) for v in shot[y, x])  # type: ignore[return-value]


def set_range(driver: Any, element_id: str, value: int) -> None:
    """Move a range input as a user does (its value, then an input event)."""
    driver.execute_script(
        "const el = document.getElementById(arguments[0]); el.value = arguments[1];"
        "el.dispatchEvent(new Event('input', {bubbles: true}));",
        element_id, str(value),
    )


def save_screenshot(driver: Any, name: str) -> None:
    """Keep a screenshot where LULC_SCREENSHOTS names a folder (the README's pictures come from here)."""
    folder = os.environ.get("LULC_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


def assert_offline(driver: Any, page: Path) -> None:
    """Since it was loaded, the page asked for nothing but itself and its own data: URIs, no host was asked for
    anything, and the console shows no error."""
    own = page.resolve().as_uri()
    seen = requests(driver)
    assert (own, own) in seen, seen
    assert all(url.startswith("data:") or url == own for document, url in seen if document == own), seen
    assert not [url for _, url in seen if re.match(r"(https?|wss?|ftp)://", url)], "no request to any host"
    assert console_errors(driver) == []


def check_page(driver: Any, page: Path, maps: dict[str, Path], samples: int = 4) -> str:
    """What every viewer page must do, asserted: it opens from file:// with no request to any host and no console
    error, lists one class layer per map (``maps``: layer title -> the map's COG), and, with
    every map shown, reads out under the cursor the class each COG holds there. Returns the readout last seen."""
    import rasterio
    from selenium.webdriver.common.action_chains import ActionChains

    load(driver, page)
    assert_offline(driver, page)
    layers = driver.execute_script(
        "return lulcViewer.layers.filter(l => l.group === 'maps').map(l => [l.id, l.title])")
    assert sorted(title for _, title in layers) == sorted(maps), "one layer per map"
    for layer_id, _ in layers:
        box = driver.find_element("id", f"visible-{layer_id}")
        if not box.is_selected():
            box.click()
    a, _, c, _, e, f = driver.execute_script("return DATA.grid.transform")
    width, height = driver.execute_script("return [DATA.grid.width, DATA.grid.height]")
    canvas = driver.find_element("id", "map")
    frame = driver.execute_script("return arguments[0].getBoundingClientRect()", canvas)
    sources = {title: rasterio.open(path) for title, path in maps.items()}
    try:
        names = {title: dict(item.split("=", 1) for item in src.tags()["CLASSES"].split(","))
                 for title, src in sources.items()}
        rng = np.random.default_rng(0)
        checked, text = 0, ""
        for _ in range(200):
            col, row = int(rng.integers(0, width)), int(rng.integers(0, height))
            x, y = c + (col + 0.5) * a, f + (row + 0.5) * e
            values = {}
            for title, src in sources.items():
                r, q = src.index(x, y)
                # a pixel inside a patch of its class: the cursor lands within a screen pixel of the target, which
                # at a fitted zoom of ~2 screen pixels per map pixel can be the neighbour
                block = src.read(1, window=((r - 1, r + 2), (q - 1, q + 2)), boundless=True, fill_value=255)
                values[title] = int(block[1, 1]) if (block == block[1, 1]).all() else -1
            if values[next(iter(maps))] == 255 or -1 in values.values():
                continue
            sx, sy = screen_point(driver, col + 0.5, row + 0.5)
            ActionChains(driver).move_to_element_with_offset(
                canvas, int(sx - frame["left"] - frame["width"] / 2), int(sy - frame["top"] - frame["height"] / 2)
            ).perform()
            text = driver.find_element("id", "readout").text
            for title, value in values.items():
                expected = names[title].get(str(value), "no data")
                assert f"{title}: {expected}" in text, (page.name, col, row, title, text)
            checked += 1
            if checked == samples:
                break
        assert checked == samples, f"{page}: fewer than {samples} mapped pixels found"
        return text
    finally:
        for src in sources.values():
            src.close()
