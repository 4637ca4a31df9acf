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

from lulc import families

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
class ConfigError(ValueError):
    """The configuration breaks the schema or a cross-field rule; the message names the key."""


# ------------------------------------------------------------------------------------------- schema


@cache
def _schema_file(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@cache
def _with_families(path: Path, version: int) -> dict[str, Any]:
    """The schema file with what the model families (:mod:`lulc.families`) define filled in: each family's entry
    definition, the enum of ``models.<name>.type`` with one if/then per family, and each family's default
    search space under ``tune.search_space``. Keyed on :func:`lulc.families.version`, so a family registered
    later (a plugin, a test) is in the next schema."""
    root = copy.deepcopy(_schema_file(path))
    definitions = root["definitions"]
    branches = []
    for name, record in families.FAMILIES.items():
        definition = record.definition
        ref = f"{name}_model" if not isinstance(definition, str) else definition
        if not isinstance(definition, str):
            definitions[ref] = copy.deepcopy(dict(definition))
        elif ref not in definitions:
            raise ConfigError(f"model family {name!r}: no schema definition {ref!r} in {path}")
        branches.append({"if": {"properties": {"type": {"const": name}}}, "then": {"$ref": f"#/definitions/{ref}"}})
    extra = root["properties"]["models"]["additionalProperties"]
    extra["properties"]["type"] = {"enum": list(families.FAMILIES)}
    extra["allOf"] = branches
    spaces = root["properties"]["tune"]["properties"]["search_space"]["properties"]
    for name, record in families.FAMILIES.items():
        spaces[name] = {"$ref": "#/definitions/search_space", "default": copy.deepcopy(dict(record.search_space))}
    return root


def _schema(path: Path) -> dict[str, Any]:
    return _with_families(path, families.version())


def schema(path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """The parsed schema with the model families filled in (a copy: callers may not change the cached one)."""
    return copy.deepcopy(_schema(Path(path).resolve()))


def model_definition(model_type: str, path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """The schema definition of a ``models.<name>`` entry of ``model_type``."""
    record = families.family(model_type)
    name = record.definition if isinstance(record.definition, str) else f"{model_type}_model"
    return dict(_schema(Path(path).resolve())["definitions"][name])


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
    if model_type not in families.FAMILIES:
        raise ConfigError(
            f"config key 'models.{name}.type': unknown model type {model_type!r} "
            f"(known: {', '.join(families.FAMILIES)})"
        )
    instance["type"] = model_type
    definition = model_definition(model_type, schema_path)
    _validate(instance, _subschema(root, definition), f"models.{name}")
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


def patch_size(entry: Mapping[str, Any]) -> int | None:
    """Patch size in pixels of an entry of a ViT-like family (the FCN decoder upsamples by it); None for a CNN."""
    return families.family(entry["type"]).patch_size(entry)


def model_rules(name: str, entry: Mapping[str, Any], chip_size: int | None = None) -> Iterator[str]:
    """Rules of one model entry, and of the entry with the chip size where ``chip_size`` is given: the shared
    ones (statistics, weights, patch, decoder options) and its family's own (:attr:`ModelFamily.rules`)."""
    key = f"models.{name}"
    record = families.family(entry["type"], f"{key}.type")
    yield from _normalization_rules(key, entry, record)
    weights = entry.get("weights")
    if weights == families.WEIGHTS_STANDIN and not record.foundation:
        yield (
            f"config key '{key}.weights': standin (random weights standing in for a release) is for foundation "
            f"families; {record.name} is a baseline: use none"
        )
    if weights in ("pretrain", "hf") and weights not in record.weights_specs:
        allowed = ", ".join(["none", *record.weights_specs, "a local file"])
        yield f"config key '{key}.weights': {weights!r} is not available for {record.name} models (give {allowed})"
    if weights == "hf" and "hf" in record.weights_specs and str(entry.get("backbone")) not in record.releases:
        yield (
            f"config key '{key}.weights': hf, but {entry.get('backbone')!r} has no official release "
            f"(released: {', '.join(record.releases)})"
        )
    yield from record.rules(key, entry, chip_size)
    patch = patch_size(entry)
    yield from _decoder_rules(key, entry, record.fcn_decoder(entry), patch)
    if chip_size is not None and patch is not None and chip_size % patch:
        yield f"config key '{key}': chip size {chip_size} (chips.size) is not a multiple of the patch size {patch}"


def _normalization_rules(key: str, entry: Mapping[str, Any], record: families.ModelFamily) -> Iterator[str]:
    spec = entry.get("normalization")
    if not isinstance(spec, str) or spec == "dataset":
        return
    if spec == "backbone":
        if record.backbone_statistics is None:
            yield (
                f"config key '{key}.normalization': 'backbone' needs a family with pretraining statistics; "
                f"{record.name} has none: use dataset, a family's statistics "
                f"({', '.join(families.all_statistics())}) or mean/std"
            )
    elif spec not in families.all_statistics():
        yield (
            f"config key '{key}.normalization': unknown statistics {spec!r} (known: backbone, dataset, "
            f"{', '.join(families.all_statistics())}, or {{mean: [6], std: [6]}})"
        )


def _decoder_rules(key: str, entry: Mapping[str, Any], fcn: bool, patch: int | None) -> Iterator[str]:
    """The FCN decoder options, the auxiliary head, freeze_encoder and layer_decay (entries of ViT-like families)."""
    if "aux_head" not in entry:
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
    node = model_definition(model_type)["properties"].get(key)
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
            known = sorted(set(model_definition(model_type)["properties"]) - set(BUDGET_KEYS))
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
    "PREDICT_RUNTIME_KEYS",
    "SCHEMA_PATH",
    "TRAIN_RUNTIME_KEYS",
    "TRAIN_TUNABLE_KEYS",
    "ConfigError",
    "is_integer_key",
    "model_definition",
    "model_entry",
    "model_rules",
    "patch_size",
    "schema",
    "search_space_rules",
    "section",
    "tunable_key_schema",
    "validate_config",
]
