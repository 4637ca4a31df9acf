"""Config validation: defaults filled, unknown keys and wrong types named, AOIs checked at start-up."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from lulc.config import ConfigError, load_config, validate_config

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


@pytest.fixture
def demo_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_shipped_configs_are_valid_and_get_defaults(demo_config):
    config = load_config(demo_config, SCHEMA, REPO)
    assert config["chips"]["export_geotiff"] is False
    assert config["download"]["block_size"] == 1024
    assert config["stac"]["imagery"]["signing"] == "none"
    assert config["splits"]["split_fractions"] == {"train": 0.6, "val": 0.2, "test": 0.2}
    tiny = load_config(yaml.safe_load((REPO / "tests/config/tiny.yaml").read_text()), SCHEMA, REPO)
    assert tiny["chips"]["size"] == 32


def test_defaults_do_not_leak_between_configs(demo_config):
    first = validate_config(copy.deepcopy(demo_config), SCHEMA)
    first["download"]["mask_flags"].append("snow")
    second = validate_config(copy.deepcopy(demo_config), SCHEMA)
    assert second["download"]["mask_flags"] == ["cloud", "adjacent", "shadow"]


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda c: c["chips"].update(size="large"), "chips.size"),
        (lambda c: c["download"].update(frame=3), "download.frame"),
        (lambda c: c.update(chip={}), "chip"),
        (lambda c: c["aois"]["demo_iowa"].update(bbox=[1, 2, 3]), "aois.demo_iowa.bbox"),
        (lambda c: c["aois"]["demo_iowa"].update(file="x.geojson"), "aois.demo_iowa"),
        (lambda c: c["stac"]["imagery"].update(max_cloud_cover=150), "stac.imagery.max_cloud_cover"),
        (lambda c: c["download"].update(mask_flags=["clouds"]), "download.mask_flags.0"),
        (lambda c: c["splits"].update(train_fractions=[1.0, 0.0]), "splits.train_fractions.1"),
    ],
)
def test_schema_errors_name_the_key(demo_config, edit, key):
    edit(demo_config)
    with pytest.raises(ConfigError) as error:
        validate_config(demo_config, SCHEMA)
    assert f"config key '{key}'" in str(error.value)


def test_aoi_semantics_are_checked_at_start_up(demo_config):
    demo_config["aois"]["demo_iowa"]["bbox"] = [-93.3, 42.0, -93.5, 42.1]
    with pytest.raises(ConfigError, match="aois.demo_iowa"):
        load_config(demo_config, SCHEMA, REPO)
