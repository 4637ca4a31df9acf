"""The accuracy stage of map regions (lulc/assessment.py): a map's sample from the config, and accuracy or
agreement from a reference, on class maps the tests write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.transform import from_origin

from lulc.assessment import assess_map, sample_map
from lulc.legends import preset
from lulc.schema import section
from tests import io_legend as classes

SIDE = 200
WATER, CROPS, BUILT = (classes.CLASS_NAMES.index(n) for n in ("water", "crops", "built_area"))


def _class_map(path: Path, values: np.ndarray) -> Path:
    profile = {"driver": "GTiff", "width": SIDE, "height": SIDE, "count": 1, "dtype": "uint8", "crs": "EPSG:32615",
               "transform": from_origin(500_000, 4_650_000, 30, 30), "nodata": 255, "tiled": True,
               "blockxsize": 64, "blockysize": 64}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values[None])
        dst.write_colormap(1, classes.index_colormap())
        dst.update_tags(**classes.class_tags())
    return path


@pytest.fixture
def mapped(tmp_path) -> Path:
    values = np.full((SIDE, SIDE), CROPS, dtype=np.uint8)
    values[:, :40] = WATER
    values[:10, 150:] = BUILT  # a rare class: 500 px
    values[-5:, -5:] = 255
    return _class_map(tmp_path / "landcover.tif", values)


def _sample(mapped: Path, tmp_path: Path, **cfg) -> pd.DataFrame:
    folder = tmp_path / "sample"
    sample_map(mapped, folder / "samples.gpkg", folder / "samples.csv", folder / "strata.csv",
               {**section("maps", {})["accuracy"], **cfg})
    return pd.read_csv(folder / "samples.csv", dtype={"id": str})


def test_the_sample_follows_the_allocation_rule(mapped, tmp_path):
    sample = _sample(mapped, tmp_path, total=200, minimum=30)
    per_class = sample.groupby("map_class").size().to_dict()
    # built area (500 px) would get 200 * 500 / 39975 = 2.5 units: it gets the minimum; the rest by area
    assert per_class[BUILT] == 30
    assert per_class[WATER] + per_class[CROPS] == 170
    assert per_class[WATER] == round(170 * 8000 / (8000 + 31475))
    strata = pd.read_csv(tmp_path / "sample" / "strata.csv")
    assert strata["units"].sum() == 200 and strata.loc[strata["class"] == "built_area", "pixels"].item() == 500
    assert (tmp_path / "sample" / "samples.gpkg").is_file()


def test_the_default_total_comes_from_the_target_standard_error(mapped, tmp_path):
    sample = _sample(mapped, tmp_path, target_se=0.02, users_accuracy=0.8, minimum=0)
    assert len(sample) == int(np.ceil((0.4 / 0.02) ** 2))  # eq. 13 with one expected accuracy for every class


def test_a_total_below_the_minimums_names_the_config_keys_and_the_default_total_covers_them(mapped, tmp_path):
    with pytest.raises(ValueError, match=r"maps\.accuracy\.total': 50 units cannot give every class.*90 units"):
        _sample(mapped, tmp_path, total=50, minimum=30)
    sample = _sample(mapped, tmp_path, target_se=0.2, minimum=30)  # eq. 13 alone: 4 units
    assert len(sample) == 90


def test_an_unknown_class_in_per_class_names_the_config_key(mapped, tmp_path):
    with pytest.raises(ValueError, match=r"maps\.accuracy\.per_class.*forest"):
        _sample(mapped, tmp_path, per_class={"forest": 10})


def _assess(mapped: Path, tmp_path: Path, reference: Path, agreement: bool = False) -> tuple[dict, pd.DataFrame, str]:
    outputs = {name: tmp_path / "out" / f"accuracy.{ext}" for name, ext in
               (("report", "md"), ("table", "csv"), ("figure", "png"))}
    outputs["units"] = tmp_path / "out" / "assessed.csv"
    record = assess_map(mapped, tmp_path / "sample" / "samples.csv", tmp_path / "sample" / "strata.csv", reference,
                        outputs, "test map", agreement=agreement)
    return record, pd.read_csv(outputs["table"]), outputs["report"].read_text()


def test_a_perfect_reference_gives_accuracy_one_and_the_mapped_areas(mapped, tmp_path):
    _sample(mapped, tmp_path, total=120, minimum=20)
    record, table, report = _assess(mapped, tmp_path, mapped)
    assert record["overall"] == pytest.approx(1.0) and report.startswith("# Accuracy and area: test map")
    assert table["area_km²"].to_numpy() == pytest.approx(table["mapped_area_km²"].to_numpy())
    assert "not accuracy" not in report


def test_a_reference_that_differs_moves_the_area_estimates(mapped, tmp_path):
    """Half of the mapped crops are built area in the reference: the built-area estimate grows from the mapped
    0.45 km2 towards the true 0.45 + 31475 / 2 px x 0.0009 km2, and the report says agreement when asked."""
    truth = rasterio.open(mapped).read(1)
    truth[100:, 40:] = np.where(truth[100:, 40:] == CROPS, BUILT, truth[100:, 40:])
    reference = _class_map(tmp_path / "truth.tif", truth)
    _sample(mapped, tmp_path, total=400, minimum=40)
    record, table, report = _assess(mapped, tmp_path, reference, agreement=True)
    built = table.set_index(table.columns[0]).loc["built_area"]
    true_km2 = int((truth == BUILT).sum()) * 0.0009
    estimate, half_width = float(built["area_km²"]), float(built["area_ci95_km²"])
    assert float(built["mapped_area_km²"]) == pytest.approx(500 * 0.0009)
    assert abs(estimate - true_km2) <= max(half_width, 0.1 * true_km2), (estimate, half_width, true_km2)
    assert record["overall"] < 0.8
    assert report.startswith("# Agreement with the labels (another map: not accuracy)")
    units = pd.read_csv(tmp_path / "out" / "assessed.csv")
    assert set(units["agree"]) == {True, False} and len(units) == 400


def test_a_reference_raster_of_another_legend_is_refused(mapped, tmp_path):
    _sample(mapped, tmp_path, total=60, minimum=10)
    other = tmp_path / "other.tif"
    _class_map(other, rasterio.open(mapped).read(1))
    with rasterio.open(other, "r+") as dst:
        dst.update_tags(**preset("esa-worldcover").tags())
    with pytest.raises(ValueError, match="other.tif: its classes"):
        _assess(mapped, tmp_path, other)


def test_a_change_pair_is_sampled_by_change_class_and_assessed_with_both_estimators(tmp_path):
    """Crops became built area in a block: the change strata are "to_<class>" and "stable"; with the truth as
    reference in both periods the change classes' estimates equal their mapped areas, and the later map's
    accuracy from the change sample (Stehman) is 1."""
    from lulc.assessment import assess_change, write_change_strata

    before = np.full((SIDE, SIDE), CROPS, dtype=np.uint8)
    before[:, :40] = WATER
    after = before.copy()
    after[120:180, 60:160] = BUILT
    before_path = _class_map(tmp_path / "before.tif", before)
    after_path = _class_map(tmp_path / "after.tif", after)
    strata_map = tmp_path / "change" / "strata.tif"
    write_change_strata(before_path, after_path, strata_map)
    legend = raster_legend_names(strata_map)
    assert legend[-1] == "stable" and legend[BUILT] == "to_built_area"
    with rasterio.open(strata_map) as src:
        change = src.read(1)
    assert (change[120:180, 60:160] == BUILT).all() and (change[:100] == classes.NUM_CLASSES).all()
    folder = tmp_path / "change" / "sample"
    sample_map(strata_map, folder / "samples.gpkg", folder / "samples.csv", folder / "strata.csv",
               {**section("maps", {})["accuracy"], "total": 100, "minimum": 30})
    outputs = {name: tmp_path / "out" / f"{name}.{ext}" for name, ext in
               (("report", "md"), ("table", "csv"), ("figure", "png"), ("after_report", "md"),
                ("after_table", "csv"), ("after_figure", "png"))}
    record = assess_change(strata_map, after_path, folder / "samples.csv", folder / "strata.csv",
                           (before_path, after_path), outputs, "test pair")
    assert record["change_overall"] == pytest.approx(1.0) and record["after_overall"] == pytest.approx(1.0)
    table = pd.read_csv(outputs["table"]).set_index("class")
    assert table.loc["to_built_area", "area_km²"] == pytest.approx(60 * 100 * 0.0009)
    assert "Stehman 2014" in outputs["after_report"].read_text()


def raster_legend_names(path: Path) -> list[str]:
    from lulc.legends import raster_legend

    return [entry["name"] for entry in raster_legend(path)]
