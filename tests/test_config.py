"""Config validation: defaults filled, unknown keys and wrong types named, AOIs checked at start-up."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from lulc.config import ConfigError, load_config, model_entry, patch_size, section, validate_config

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


# ------------------------------------------------------------------ sections: the schema owns the defaults


def test_a_section_gets_the_schema_defaults_and_errors_name_the_key():
    train = section("train", {"augment": {"rot90": False}})
    assert train["augment"] == {"hflip": True, "vflip": True, "rot90": False}
    assert train["class_weights"] == {"method": "inverse_sqrt", "scale": "mean_pixel", "cap": 10}
    assert section("train") == section("train", {}) and section("train")["samples_per_epoch"] == 32
    with pytest.raises(ConfigError, match="config key 'train.epochs'"):
        section("train", {"epochs": 3})
    with pytest.raises(ConfigError, match="config key 'train.class_weights.method'"):
        section("train", {"class_weights": {"method": "median"}})
    with pytest.raises(ConfigError, match="config key 'splits.split_fractions': train \\+ val \\+ test must sum to 1"):
        section("splits", {"split_fractions": {"train": 0.5, "val": 0.2, "test": 0.2}})


def test_a_model_entry_gets_the_defaults_of_its_type():
    assert model_entry("unet")["encoder_depth"] == 4 and model_entry("unet")["type"] == "unet"
    scratch = model_entry("prithvi_scratch", {"type": "prithvi", "weights": "none"})
    assert scratch["backbone"] == "prithvi_eo_tiny" and scratch["type"] == "prithvi" and scratch["weights"] == "none"
    with pytest.raises(ConfigError, match="config key 'models.unet.lr_max'"):
        model_entry("unet", {"lr_max": 1})
    with pytest.raises(ConfigError, match="config key 'models.foo.type': unknown model type 'foo'"):
        model_entry("foo", {})
    with pytest.raises(ConfigError, match="config key 'models.prithvi.backbone'"):
        model_entry("prithvi", {"backbone": "resnet50"})
    with pytest.raises(ConfigError, match="config key 'models.vit.epochs'"):
        model_entry("vit", {"epochs": 0})


def test_chip_stride_defaults_to_the_chip_size(demo_config):
    """`chips: {size: 64}` alone cuts adjacent 64-pixel chips (the schema once filled a fixed stride of 224)."""
    demo_config["chips"] = {"size": 64}
    config = load_config(demo_config, SCHEMA, REPO)
    assert config["chips"]["stride"] is None
    assert section("chips", {"size": 64})["stride"] is None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["chips"].update(size=40), "models.unet.encoder_depth': chip size 40 (chips.size) is not"),
        (lambda c: c["models"]["unet"].update(decoder_channels=[8, 8]), "models.unet.decoder_channels': need 4"),
        (lambda c: c["models"]["prithvi"].update(backbone="prithvi_eo_v2_600", backbone_kwargs={}),
         "models.prithvi': the FCN decoder needs a power-of-two patch size, got 14"),
        (lambda c: c["models"]["vit"].update(patch_size=12), "models.vit': the FCN decoder needs a power-of-two"),
        (lambda c: c["models"]["vit"].update(patch_size=64), "models.vit': chip size 32 (chips.size) is not"),
        (lambda c: c["models"]["unet"].update(normalization="backbone"), "models.unet.normalization'"),
        (lambda c: c["models"]["vit"].update(weights="hf"), "models.vit.weights'"),
        (lambda c: c["chips"].update(stride=64), "chips.stride': 64 is larger than chips.size 32"),
        (lambda c: c.update(predict={"tile": 64, "stride": 80}), "predict.stride': 80 is larger than predict.tile"),
        (lambda c: c.update(splits={"split_fractions": {"train": 0.7, "val": 0.2, "test": 0.2}}),
         "splits.split_fractions': train + val + test must sum to 1"),
        (lambda c: c["train"].update(models=["prithvi", "segformer"]), "train.models': 'segformer' has no entry"),
        (lambda c: c.update(download={"frames": 2, "season_windows": [["03-01", "05-31"]]}),
         "download.season_windows': 1 window(s) given but download.frames = 2"),
    ],
)
def test_cross_field_rules_stop_the_run_at_start_up(demo_config, edit, message):
    """Rules that tie keys together run in lulc.config at start-up, before any job (and before a 2.6 GB
    checkpoint is read, for Prithvi-EO-2.0-600M's 14-pixel patches behind the FCN decoder)."""
    edit(demo_config)
    with pytest.raises(ConfigError) as error:
        load_config(demo_config, SCHEMA, REPO)
    assert f"config key '{message}" in str(error.value)


def test_prithvi_patch_sizes_match_terratorch():
    """lulc.config knows the backbones' patch sizes without importing TerraTorch (10 s at every start-up)."""
    from lulc.models import import_terratorch

    prithvi_cfgs = import_terratorch("terratorch.models.backbones.prithvi_vit").prithvi_cfgs
    for backbone, cfg in prithvi_cfgs.items():
        patch = cfg.get("patch_size", 16)
        patch = patch[-1] if isinstance(patch, list | tuple) else patch
        assert patch_size({"type": "prithvi", "backbone": backbone, "backbone_kwargs": {}}) == patch, backbone


# ---------------------------------------------------------------- config/README.md documents the schema


def _schema_keys(node: dict, definitions: dict, prefix: str = "") -> dict[str, object]:
    """Leaf keys of a schema node (dotted) with their default (``required`` where there is none)."""
    if "$ref" in node:
        node = {**definitions[node["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
    keys: dict[str, object] = {}
    for name, child in node.get("properties", {}).items():
        if "$ref" in child:
            resolved = {**definitions[child["$ref"].rsplit("/", 1)[-1]], **child}
        else:
            resolved = child
        nested = resolved.get("properties") if resolved.get("type") == "object" else None
        if nested and name not in ("split_fractions",):
            keys |= _schema_keys(resolved, definitions, f"{prefix}{name}.")
        else:
            keys[f"{prefix}{name}"] = resolved.get("default", "required")
    return keys


def _readme_tables() -> dict[str, dict[str, str]]:
    """config/README.md's key tables: section (or models type) -> key -> default cell."""
    tables: dict[str, dict[str, str]] = {}
    current = None
    for line in (REPO / "config" / "README.md").read_text().splitlines():
        if heading := re.match(r"^## `(\w+)`", line):
            current = heading.group(1)
        elif model_type := re.match(r"^`type: (\w+)`", line):
            current = f"models.{model_type.group(1)}"
        elif line.startswith("## "):
            current = None
        elif current and line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            for key in re.findall(r"`([\w.<>]+)`", cells[0]):
                tables.setdefault(current, {})[key] = cells[1] if len(cells) > 2 else ""
    return tables


def _value(text: str) -> object:
    value = yaml.safe_load(text.strip().strip("`"))
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _as_value(cell: str) -> list[object]:
    return [_value(part) for part in re.split(r",\s(?![^\[{]*[\]}])", cell)]


def test_config_readme_documents_every_schema_key_with_its_default():
    """config/README.md cannot drift from the schema (with what the model families fill in): the same keys, and
    the same defaults."""
    from lulc.families import FAMILIES
    from lulc.schema import schema

    root = schema(SCHEMA)
    definitions = root["definitions"]
    tables = _readme_tables()
    sections = {
        "demo": root["properties"]["demo"],
        "stac": definitions["stac_query"],
        "download": root["properties"]["download"],
        "labels": root["properties"]["labels"],
        "chips": root["properties"]["chips"],
        "splits": root["properties"]["splits"],
        "train": root["properties"]["train"],
        "tune": root["properties"]["tune"],
        "pretrain": root["properties"]["pretrain"],
        "evaluate": root["properties"]["evaluate"],
        "predict": root["properties"]["predict"],
        "maps": root["properties"]["maps"],
        **{f"models.{t}": definitions[f"{t}_model"] for t in FAMILIES},
    }
    for name, node in sections.items():
        expected = _schema_keys(node, definitions)
        expected.pop("type", None)  # a model entry's type is the table's heading
        region_keys: set[str] = set()  # regions.<name>.* of maps: a table of meanings, without defaults
        if name == "demo":  # regions.<name>.* are documented per region
            expected.pop("regions")
            expected |= {"regions.<name>.center": "required", "regions.<name>.size_px": 512,
                         "regions.<name>.landscape": "agricultural", "regions.<name>.labels": True,
                         "regions.<name>.years": None}  # fmt: skip
        if name == "maps":
            expected.pop("regions")
            entry = root["properties"]["maps"]["properties"]["regions"]["additionalProperties"]
            region_keys = {f"regions.<name>.{key}" for key in entry["properties"]}
        documented = tables.get(name, {})
        keys = set(expected) | region_keys
        assert set(documented) == keys, (name, sorted(keys ^ set(documented)))
        rows: dict[str, list[str]] = {}
        for key, cell in documented.items():
            if key in region_keys:
                continue
            rows.setdefault(cell, []).append(key)
        for cell, keys in rows.items():
            values = _as_value(cell) if len(keys) > 1 else [_value(cell)]
            for key, value in zip(keys, values if len(values) == len(keys) else values * len(keys), strict=True):
                default = expected[key]
                if default == "required" or cell == "required":
                    assert cell == "required" and default == "required", (name, key, cell, default)
                else:
                    assert value == default, (name, key, cell, default)
    aoi_keys = set(_schema_keys(root["properties"]["aois"]["additionalProperties"], definitions))
    assert set(tables["aois"]) == aoi_keys


def test_training_rules_do_not_run_the_map_region_or_start_up_check_code():
    """Stages import lulc.schema, not lulc.config (whose start-up checks parse map regions): an edit to the
    map-region code must not change the code version of any rule of the training chain."""
    from lulc.code_version import package_modules

    scripts = Path(__file__).parents[1] / "scripts"
    for rule in ("download", "chips", "splits", "stats", "tune", "train", "evaluate", "predict", "summary"):
        modules = package_modules(scripts / f"{rule}.py")
        assert not {"config", "maps", "map_predict", "mosaic"} & set(modules), (rule, modules)
    assert "maps" in package_modules(scripts / "map_tiles.py")
    assert "predict" not in package_modules(scripts / "map_tiles.py"), "planning tiles runs no predictor"
