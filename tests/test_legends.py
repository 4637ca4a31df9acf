"""Legends as data: presets, user legends (config mapping, YAML, CSV), the class tables STAC collections declare
(both spellings, real Planetary Computer documents), and the legend a class raster records."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from lulc.legends import (
    IGNORE_INDEX,
    Legend,
    LegendCodeError,
    LegendError,
    LegendMismatchError,
    collection_table,
    declared_table,
    legend_from_table,
    load_legend,
    preset,
    read_legend,
)


def _fixture_collection(name: str) -> dict:
    from tests.conftest import require_fixtures

    return json.loads((require_fixtures() / f"stac/pc/collection_{name}.json").read_text())


def test_io_preset_maps_every_io_code_and_ignores_nodata():
    io = preset("io-lulc-9")
    codes = np.array([[0, 1, 2, 4, 5], [7, 8, 9, 10, 11]], dtype=np.uint8)
    assert io.remap(codes).tolist() == [[IGNORE_INDEX, 0, 1, 2, 3], [4, 5, 6, 7, 8]]
    assert io.uncovered([0, 1, 3, 6, 11]) == [3, 6]  # Grass and Scrub of the 10-class collection
    with pytest.raises(LegendCodeError, match=r"label codes 3 \(Grass\), 6 in item 'x' are not in legend 'io-lulc-9'"):
        io.check_codes({3: "Grass", 6: "", 1: "Water"}, "item 'x'")
    assert preset("io-lulc-10").uncovered([0, 1, 3, 6, 10]) == []


def test_remap_reads_any_integer_type_and_the_file_nodata():
    legend = Legend.from_dict({"name": "national", "classes": [
        {"name": "Forest", "codes": [1100, 1200]}, {"name": "Water", "colour": "#0000ff", "codes": [3000]}],
        "nodata": [-1]})  # fmt: skip
    codes = np.array([1100, 1200, 3000, -1, 9999, -32768], dtype=np.int16)
    assert legend.remap(codes, nodata=[-32768]).tolist() == [0, 0, 1, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]
    assert legend.names == ("forest", "water") and legend.colours[1] == (0, 0, 255)
    assert legend.uncovered([1100, -1, 9999]) == [9999]
    ignoring = Legend.from_dict({**legend.to_dict(), "unknown": "ignore"})
    ignoring.check_codes([9999], "file x")  # ignore: no error; the pixels become IGNORE_INDEX


def test_cdl_example_remap_maps_every_declared_code_as_specified():
    """The usda-cdl preset covers all 133 classes Planetary Computer's CDL collection declares (spelled
    ``color_hint``), many-to-one: corn / soybeans / other crops / not crop."""
    table = collection_table(_fixture_collection("usda-cdl"), "cropland")
    assert table is not None and len(table.classes) == 133
    assert table.classes[1] == ("Corn", (0xFF, 0xD2, 0x00))  # color_hint read
    cdl = preset("usda-cdl")
    assert cdl.uncovered(table.classes) == []
    names = {code: cdl.names[cdl.index_of(code)] for code in table.names if cdl.index_of(code) is not None}
    assert {code for code, n in names.items() if n == "corn"} == {1, 12, 13}
    assert {code for code, n in names.items() if n == "soybeans"} == {5}
    assert names[24] == names[241] == names[69] == "other_crops"  # winter wheat, corn/soybeans double crop, grapes
    assert names[63] == names[82] == names[111] == names[176] == "not_crop"  # forest, developed, water, grassland
    assert cdl.index_of(81) is None and 81 in cdl.nodata  # clouds / no data
    derived = legend_from_table(table, "usda-cdl-declared")  # one class per declared code, names made unique
    assert derived.num_classes == 133 and len(set(derived.names)) == 133


def test_worldcover_collection_reads_into_the_preset():
    """ESA WorldCover's collection spells its colours ``color-hint``; read into a legend they are the preset's."""
    table = collection_table(_fixture_collection("esa-worldcover"), "map")
    assert table is not None and table.nodata == {0}
    declared = legend_from_table(table, "esa-worldcover")
    worldcover = preset("esa-worldcover")
    assert declared.colours == worldcover.colours
    assert [c.codes for c in declared.classes] == [c.codes for c in worldcover.classes]
    assert worldcover.uncovered(table.classes) == []


def test_file_values_and_classification_classes_give_the_same_legend():
    """IO declares its table in ``file:values``; the same table in the classification extension gives the same
    legend (names and codes)."""
    io_asset = _fixture_collection("io-lulc-annual-v02")["item_assets"]["data"]
    from_file_values = legend_from_table(declared_table(io_asset), "io")
    entries = [{"value": v["values"][0], "description": v["summary"]} for v in io_asset["file:values"]]
    classification = {"raster:bands": [{"nodata": 0, "classification:classes": entries}]}
    from_classification = legend_from_table(declared_table(classification), "io")
    assert from_file_values.names == from_classification.names == preset("io-lulc-9").names
    assert [c.codes for c in from_file_values.classes] == [c.codes for c in from_classification.classes]


def test_user_legends_from_the_config_yaml_and_csv(tmp_path):
    mapping = {"classes": [{"name": "Crop", "colour": [255, 200, 0], "codes": [1, 5]},
                           {"name": "Other", "colour": "#336633", "codes": [2, 3, 4]}], "nodata": [0]}  # fmt: skip
    from_config = load_legend(mapping)
    (tmp_path / "mine.yaml").write_text(json.dumps(mapping))  # JSON is YAML
    from_yaml = load_legend("mine.yaml", base=tmp_path)
    (tmp_path / "mine.csv").write_text("code,class,colour\n0,nodata,\n1,Crop,#ffc800\n2,Other,#336633\n3,Other,\n"
                                       "4,Other,\n5,Crop,\n")  # fmt: skip
    from_csv = load_legend("mine.csv", base=tmp_path)
    for legend in (from_config, from_yaml, from_csv):
        assert legend.names == ("crop", "other") and legend.nodata == (0,)
        assert legend.remap(np.arange(6)).tolist() == [IGNORE_INDEX, 0, 1, 1, 1, 0]
        assert legend.colours == ((255, 200, 0), (51, 102, 51))
    assert from_yaml.name == "mine" and from_csv.name == "mine"
    assert load_legend(None) == preset("io-lulc-9") and load_legend("esa-worldcover") == preset("esa-worldcover")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("io-lulc-11", r"labels.legend: 'io-lulc-11' is neither a preset \(io-lulc-9, io-lulc-10"),
        ("missing.csv", r"labels.legend: legend file .*missing.csv does not exist"),
        ({"classes": [{"name": "a", "codes": [1]}, {"name": "b", "codes": [1]}]}, r"code 1 maps to both 'a' and 'b'"),
        ({"classes": [{"name": "a", "codes": [1]}], "nodata": [1]}, r"codes \[1\] are both class codes and nodata"),
        ({"classes": [{"name": "a", "colour": "red", "codes": [1]}]}, r"colour 'red' is neither"),
        ({"classes": [{"name": "a", "codes": [1]}], "unknown": "guess"}, r"unknown: 'guess'"),
        ({"classes": []}, r"no classes"),
    ],
)
def test_bad_legends_are_refused_naming_the_problem(value, message, tmp_path):
    with pytest.raises(LegendError, match=message):
        load_legend(value, base=tmp_path)


def test_a_class_raster_records_its_legend(tmp_path):
    worldcover = preset("esa-worldcover")
    path = tmp_path / "map.tif"
    profile = {"driver": "GTiff", "width": 4, "height": 3, "count": 1, "dtype": "uint8", "nodata": IGNORE_INDEX,
               "crs": "EPSG:32615", "transform": from_origin(0, 0, 30, 30)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.zeros((1, 3, 4), np.uint8))
        dst.write_colormap(1, worldcover.colormap())
        dst.update_tags(**worldcover.tags())
    assert read_legend(path) == worldcover
    with rasterio.open(path) as src:
        assert src.colormap(1)[3] == (240, 150, 255, 255) and src.tags()["CLASSES"].startswith("0=tree_cover,")
    with pytest.raises(LegendMismatchError, match=r"legend 'io-lulc-9' \(9 classes.*legend 'esa-worldcover'"):
        preset("io-lulc-9").require_same(worldcover, "checkpoint x", "the labels y")


def test_the_legend_command_shows_a_preset_and_starts_a_legend_from_a_collection(tmp_path, capsys):
    """``python -m lulc.legends``: a preset's table, and a collection's declared table as legend YAML that loads
    back into the same legend."""
    from lulc.legends.__main__ import main

    assert main(["show", "usda-cdl"]) == 0
    shown = capsys.readouterr().out
    assert "legend 'usda-cdl': 4 classes, nodata [0, 81]" in shown and "corn" in shown and " 1 12 13" in shown
    from tests.conftest import require_fixtures

    collection = require_fixtures() / "stac/pc/collection_esa-worldcover.json"
    assert main(["from-stac", str(collection), "map"]) == 0
    (tmp_path / "wc.yaml").write_text(capsys.readouterr().out)
    started = load_legend("wc.yaml", base=tmp_path)
    assert started.colours == preset("esa-worldcover").colours and started.num_classes == 11
    assert main(["from-stac", str(collection), "nothing"]) == 1
    assert "asset 'nothing' declares no class table" in capsys.readouterr().err
