"""The configuration schema and what each stage asks of it: one schema owns every key.

``workflow/schemas/config.schema.yaml`` is the single source of every key, its type, range, default and
description. Stages ask this module for their section: :func:`section` (``"train"``, ``"splits"``,
``"predict"``, ...) and :func:`model_entry` (one ``models.<name>`` entry, with the defaults of its type)
validate a possibly partial dict against the same schema, fill its defaults and check the section's own
cross-field rules, so a stage called from Python (a test, a notebook, a benchmark) gets exactly what the
workflow would give it. There are no per-module default tables to drift.

The rules that tie sections together (AOIs, map regions, runs, tuning) are :mod:`lulc.config`'s, run once at
start-up. They live there, not here, because they read AOIs and map regions: a rule script imports this
module, and editing the map-region code must not rerun the training chain (:mod:`lulc.code_version`).
"""

from __future__ import annotations

import copy
import datetime
import math
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

#: The schema file: next to the rules, where Snakemake workflows keep it.
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"

#: Keys of ``train:`` that change how a run executes, not its result: the train rule leaves them out of its
#: ``params`` (so changing them reruns nothing) and resume fingerprints ignore them. ``models`` only selects
#: runs.
TRAIN_RUNTIME_KEYS: tuple[str, ...] = ("models", "progress_bar", "num_workers", "threads")
#: Keys of ``predict:`` that do not change the map (only which runs are mapped, and how fast).
PREDICT_RUNTIME_KEYS: tuple[str, ...] = ("runs", "batch_size", "threads")
#: Keys of ``evaluate:`` that do not change the metrics (only how fast they are computed).
EVALUATE_RUNTIME_KEYS: tuple[str, ...] = ("batch_size",)
#: Model types of ``models.<name>.type`` (each has a ``<type>_model`` definition in the schema).
MODEL_TYPES: tuple[str, ...] = ("prithvi", "unet", "vit")
#: Patch size (pixels) of TerraTorch's Prithvi backbones where it is not 16; checked against TerraTorch's
#: own ``prithvi_cfgs`` by a test, so that start-up needs no TerraTorch import (10 s).
PRITHVI_PATCH_SIZES: dict[str, int] = {"prithvi_eo_v2_600": 14, "prithvi_eo_v2_600_tl": 14}
PRITHVI_DEFAULT_PATCH = 16
#: Hugging Face repository and file of the released Prithvi weights (``weights: hf``), as TerraTorch's
#: ``pretrained_weights`` names them (a test keeps them in step), so start-up can check the local cache.
PRITHVI_RELEASES: dict[str, tuple[str, str]] = {
    "prithvi_eo_v1_100": ("ibm-nasa-geospatial/Prithvi-EO-1.0-100M", "Prithvi_EO_V1_100M.pt"),
    "prithvi_eo_v2_300": ("ibm-nasa-geospatial/Prithvi-EO-2.0-300M", "Prithvi_EO_V2_300M.pt"),
    "prithvi_eo_v2_600": ("ibm-nasa-geospatial/Prithvi-EO-2.0-600M", "Prithvi_EO_V2_600M.pt"),
    "prithvi_eo_v2_tiny_tl": ("ibm-nasa-geospatial/Prithvi-EO-2.0-tiny-TL", "Prithvi_EO_V2_tiny_TL.pt"),
    "prithvi_eo_v2_100_tl": ("ibm-nasa-geospatial/Prithvi-EO-2.0-100M-TL", "Prithvi_EO_V2_100M_TL.pt"),
    "prithvi_eo_v2_300_tl": ("ibm-nasa-geospatial/Prithvi-EO-2.0-300M-TL", "Prithvi_EO_V2_300M_TL.pt"),
    "prithvi_eo_v2_600_tl": ("ibm-nasa-geospatial/Prithvi-EO-2.0-600M-TL", "Prithvi_EO_V2_600M_TL.pt"),
}


class ConfigError(ValueError):
    """The configuration breaks the schema or a cross-field rule; the message names the key."""


# ------------------------------------------------------------------------------------------- schema


@cache
def _schema(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def schema(path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """The parsed schema (a copy: callers may not change the cached one)."""
    return copy.deepcopy(_schema(Path(path).resolve()))


def _with_defaults(validator_class: type[jsonschema.protocols.Validator]) -> type:
    """A validator class that also fills ``default`` values into the instance while validating."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(
        validator: Any, properties: Mapping[str, Any], instance: Any, schema: Mapping[str, Any]
    ) -> Iterator[jsonschema.ValidationError]:
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_FillingValidator = _with_defaults(jsonschema.Draft202012Validator)


def _key_path(error: jsonschema.ValidationError, prefix: str) -> str:
    parts = [prefix] if prefix else []
    parts += [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - allowed) if allowed else []
        if unknown:
            parts.append(unknown[0])
    return ".".join(parts) or "<top level>"


def _validate(instance: Any, subschema: Mapping[str, Any], prefix: str = "") -> None:
    """Validate ``instance`` in place (filling defaults); raise one :class:`ConfigError` listing every error."""
    validator = _FillingValidator(subschema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = []
        for error in errors:
            message = error.message
            if error.validator == "oneOf":  # jsonschema's message repeats the whole instance
                message = error.schema.get("x-error", "give exactly one of 'bbox' or 'file'")
            lines.append(f"config key '{_key_path(error, prefix)}': {message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))


def _subschema(root: Mapping[str, Any], node: Mapping[str, Any]) -> dict[str, Any]:
    return {"definitions": root["definitions"], **node}


# ------------------------------------------------------------------------------------- the sections


def section(
    name: str, value: Mapping[str, Any] | None = None, schema_path: str | Path = SCHEMA_PATH
) -> dict[str, Any]:
    """The ``name:`` section validated against the schema with every default filled, and its own cross-field
    rules checked; ``value`` may be partial (or None: all defaults). Raises :class:`ConfigError`."""
    root = _schema(Path(schema_path).resolve())
    if name not in root["properties"]:
        raise ConfigError(f"config key '{name}': no such section (known: {', '.join(root['properties'])})")
    instance = copy.deepcopy(dict(value or {}))
    _validate(instance, _subschema(root, root["properties"][name]), name)
    problems = list(SECTION_RULES.get(name, lambda _: iter(()))(instance))
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return instance


def model_entry(
    name: str,
    entry: Mapping[str, Any] | None = None,
    chip_size: int | None = None,
    schema_path: str | Path = SCHEMA_PATH,
) -> dict[str, Any]:
    """One ``models.<name>`` entry with the defaults of its type (``type``, by default the entry's name) filled
    from the schema, validated, and its own cross-field rules checked (against ``chip_size`` too, where given).
    Raises :class:`ConfigError`."""
    root = _schema(Path(schema_path).resolve())
    instance = copy.deepcopy(dict(entry or {}))
    model_type = instance.get("type", name)
    if model_type not in MODEL_TYPES:
        raise ConfigError(
            f"config key 'models.{name}.type': unknown model type {model_type!r} (known: {', '.join(MODEL_TYPES)})"
        )
    instance["type"] = model_type
    _validate(instance, _subschema(root, {"$ref": f"#/definitions/{model_type}_model"}), f"models.{name}")
    problems = list(model_rules(name, instance, chip_size))
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return instance


# ---------------------------------------------------------------------------------- cross-field rules


def _splits_rules(splits: Mapping[str, Any]) -> Iterator[str]:
    total = sum(float(v) for v in splits["split_fractions"].values())
    if abs(total - 1) > 1e-6:
        yield f"config key 'splits.split_fractions': train + val + test must sum to 1, got {total:g}"
    labels = [f"{float(f):g}" for f in splits["train_fractions"]]
    if len(set(labels)) != len(labels):
        yield f"config key 'splits.train_fractions': contains duplicates: {list(splits['train_fractions'])!r}"


def _predict_rules(predict: Mapping[str, Any]) -> Iterator[str]:
    tile, stride = predict["tile"], predict["stride"]
    if tile and stride and stride > tile:
        yield (
            f"config key 'predict.stride': {stride} is larger than predict.tile {tile} "
            "(pixels between tiles would get no prediction)"
        )
    if predict["precision"] == "fp16" and predict["device"] == "cpu":
        yield "config key 'predict.precision': fp16 needs a CUDA device; use bf16 or fp32 with device cpu"


def _download_rules(download: Mapping[str, Any]) -> Iterator[str]:
    from lulc.aoi import parse_season_windows

    try:
        parse_season_windows(download["season_windows"], int(download["frames"]))
    except ValueError as error:
        key, _, message = str(error).partition(": ")
        yield f"config key '{key}': {message}"


def _evaluate_rules(evaluate: Mapping[str, Any]) -> Iterator[str]:
    crop, stride = evaluate["crop"], evaluate["stride"]
    if crop and stride and stride > crop:
        yield (
            f"config key 'evaluate.stride': {stride} is larger than evaluate.crop {crop} "
            "(pixels between windows would get no prediction)"
        )


#: Cross-field rules per config section (beyond the schema), run by section() and the start-up check.
SECTION_RULES = {
    "splits": _splits_rules,
    "predict": _predict_rules,
    "download": _download_rules,
    "evaluate": _evaluate_rules,
}


def patch_size(entry: Mapping[str, Any]) -> int:
    """Patch size in pixels of a Prithvi or ViT entry (the FCN decoder upsamples by it)."""
    if entry["type"] == "vit":
        return int(entry["patch_size"])
    configured = entry.get("backbone_kwargs", {}).get("patch_size")
    if configured is not None:
        return int(configured[-1] if isinstance(configured, list | tuple) else configured)
    return PRITHVI_PATCH_SIZES.get(entry["backbone"], PRITHVI_DEFAULT_PATCH)


def model_rules(name: str, entry: Mapping[str, Any], chip_size: int | None = None) -> Iterator[str]:
    """Rules of one model entry, and of the entry with the chip size where ``chip_size`` is given."""
    key = f"models.{name}"
    model_type = entry["type"]
    if model_type != "prithvi" and entry.get("normalization") == "backbone":
        yield (
            f"config key '{key}.normalization': 'backbone' needs a Prithvi model; "
            "use prithvi_v1, prithvi_v2 or mean/std"
        )
    if model_type == "vit" and entry.get("weights") in ("pretrain", "hf"):
        yield f"config key '{key}.weights': {entry['weights']!r} is for Prithvi models; give none or a local timm file"
    if model_type == "unet" and len(entry["decoder_channels"]) != int(entry["encoder_depth"]):
        yield (
            f"config key '{key}.decoder_channels': need {entry['encoder_depth']} values (encoder_depth), "
            f"got {len(entry['decoder_channels'])}"
        )
    if model_type == "prithvi" and str(entry["backbone"]).endswith("_tl"):
        yield (
            f"config key '{key}.backbone': {entry['backbone']!r} needs each frame's date and each chip's location "
            "(time / location embeddings), which this workflow does not pass to the model yet; use the variant "
            f"without _tl ({str(entry['backbone']).removesuffix('_tl')})"
        )
    fcn = model_type == "vit" or (model_type == "prithvi" and entry["decoder"] == "FCNDecoder")
    patch = patch_size(entry) if model_type in ("prithvi", "vit") else None
    if fcn and patch is not None and 2 ** round(math.log2(patch)) != patch:
        yield (
            f"config key '{key}': the FCN decoder needs a power-of-two patch size, got {patch}"
            + (f" ({entry['backbone']})" if model_type == "prithvi" else "")
            + "; use decoder: UperNetDecoder or another patch size"
        )
    yield from _decoder_rules(key, entry, fcn, patch)
    if chip_size is None:
        return
    if model_type == "unet" and chip_size % 2 ** int(entry["encoder_depth"]):
        yield (
            f"config key '{key}.encoder_depth': chip size {chip_size} (chips.size) is not divisible by "
            f"2^{entry['encoder_depth']}"
        )
    if patch is not None and chip_size % patch:
        yield f"config key '{key}': chip size {chip_size} (chips.size) is not a multiple of the patch size {patch}"


def _decoder_rules(key: str, entry: Mapping[str, Any], fcn: bool, patch: int | None) -> Iterator[str]:
    """The FCN decoder options, the auxiliary head, freeze_encoder and layer_decay (Prithvi and ViT entries)."""
    if entry["type"] not in ("prithvi", "vit"):
        return
    aux = entry["aux_head"]
    if not fcn and entry["decoder_norm"] != "layer":
        yield (
            f"config key '{key}.decoder_norm': {entry['decoder_norm']} is an option of the FCN decoder; "
            f"{entry['decoder']} brings its own norms (use decoder: FCNDecoder, or leave decoder_norm at layer)"
        )
    if aux["enabled"] and not fcn:
        yield (
            f"config key '{key}.aux_head.enabled': the auxiliary head is built with the FCN decoder on the last "
            f"block's features; use decoder: FCNDecoder (not {entry['decoder']})"
        )
    if aux["enabled"] and fcn and patch is not None and 2 ** int(aux["num_convs"]) > patch:
        yield (
            f"config key '{key}.aux_head.num_convs': {aux['num_convs']} upsampling blocks "
            f"(x{2 ** int(aux['num_convs'])}) overshoot the patch size {patch}: at most log2(patch) = "
            f"{round(math.log2(patch))}"
        )
    if entry["freeze_encoder"] and entry["layer_decay"] is not None:
        yield (
            f"config key '{key}.layer_decay': {entry['layer_decay']} scales the learning rates of encoder layers, "
            "but freeze_encoder trains none of them; set layer_decay: null or freeze_encoder: false"
        )


#: Keys of ``train:`` that a search space may name; a tuned value overrides it for that model's runs only.
TRAIN_TUNABLE_KEYS: tuple[str, ...] = ("warmup_epochs", "warmup_iters")
#: The per-trial budget: the same for every model, so never searched.
BUDGET_KEYS: tuple[str, ...] = ("epochs", "batch_size", "type")

def tunable_key_schema(model_type: str, key: str) -> dict[str, Any] | None:
    """The schema node of a searchable key (the family's model entry, then ``train:``); None if unknown."""
    root = schema()
    node = root["definitions"][f"{model_type}_model"]["properties"].get(key)
    if node is None and key in TRAIN_TUNABLE_KEYS:
        node = root["properties"]["train"]["properties"].get(key)
    if node is not None and "$ref" in node:
        node = {**root["definitions"][node["$ref"].rsplit("/", 1)[-1]], **node}
    return node


def is_integer_key(node: Mapping[str, Any]) -> bool:
    kind = node.get("type")
    return kind == "integer" or (isinstance(kind, list) and "integer" in kind and "number" not in kind)


def search_space_rules(model_type: str, space: Mapping[str, Any], where: str) -> list[str]:
    """Problems of one family's search space (unknown or budget keys, empty ranges), each naming the key."""
    problems = []
    if not space:
        problems.append(f"config key '{where}': an empty search space (name at least one hyperparameter)")
    for key, spec in space.items():
        node = tunable_key_schema(model_type, key)
        if key in BUDGET_KEYS:
            problems.append(f"config key '{where}.{key}': {key} is the per-trial budget (tune.epochs, the model's "
                            "batch_size), the same for every model; it cannot be searched")
        elif node is None:
            known = sorted(set(schema()["definitions"][f"{model_type}_model"]["properties"]) - set(BUDGET_KEYS))
            problems.append(f"config key '{where}.{key}': not a hyperparameter of a {model_type} model "
                            f"(searchable: {', '.join(known + list(TRAIN_TUNABLE_KEYS))})")
        elif "low" in spec:
            low, high = spec["low"], spec["high"]
            if not low < high:
                problems.append(f"config key '{where}.{key}': low ({low}) must be below high ({high})")
            elif spec.get("log") and low <= 0:
                problems.append(f"config key '{where}.{key}': a log range needs low > 0 (got {low})")
            elif is_integer_key(node) and (low != int(low) or high != int(high)):
                problems.append(f"config key '{where}.{key}': {key} is an integer; low and high must be whole")
            else:
                problems += _values_allowed(node, {"low": low, "high": high}, f"{where}.{key}")
        else:
            problems += _values_allowed(node, dict(enumerate(spec["choices"])), f"{where}.{key}.choices")
    return problems


def _values_allowed(node: Mapping[str, Any], values: Mapping[Any, Any], where: str) -> list[str]:
    """Each value a search may draw checked against the key's own schema (a range's ends, every choice): a value
    the key refuses would fail every trial that draws it, after the start-up."""
    validator = jsonschema.Draft202012Validator(_subschema(schema(), node))
    problems = []
    for label, value in values.items():
        for error in validator.iter_errors(copy.deepcopy(value)):
            problems.append(f"config key '{where}': {label} {value!r} is not a valid value: {error.message}")
            break
    return problems


def validate_config(config: dict[str, Any], schema_path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """Validate ``config`` in place against the schema (filling defaults, model entries with the defaults of
    their type) and return it; raise :class:`ConfigError`."""
    regions = (config.get("maps") or {}).get("regions") or {} if isinstance(config.get("maps"), dict) else {}
    for entry in [*(config.get("aois") or {}).values(), *regions.values()]:  # YAML reads 2023-03-01 as a date
        if isinstance(entry, dict):
            for key in ("start", "end"):
                if isinstance(entry.get(key), datetime.date):
                    entry[key] = entry[key].isoformat()
    _validate(config, _schema(Path(schema_path).resolve()))
    return config


__all__ = [
    "BUDGET_KEYS",
    "EVALUATE_RUNTIME_KEYS",
    "MODEL_TYPES",
    "PREDICT_RUNTIME_KEYS",
    "PRITHVI_DEFAULT_PATCH",
    "PRITHVI_PATCH_SIZES",
    "PRITHVI_RELEASES",
    "SCHEMA_PATH",
    "TRAIN_RUNTIME_KEYS",
    "TRAIN_TUNABLE_KEYS",
    "ConfigError",
    "is_integer_key",
    "model_entry",
    "model_rules",
    "patch_size",
    "schema",
    "search_space_rules",
    "section",
    "tunable_key_schema",
    "validate_config",
]
