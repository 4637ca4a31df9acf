"""Validate the workflow configuration against its JSON schema, fill defaults, and check AOIs.

Snakemake calls :func:`load_config` at start-up, so a typo or a wrong type stops the run before any
job starts, with a message that names the offending key (``aois.demo_iowa.bbox``, ``chips.size``, ...).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

#: Keys of ``train:`` that change how a run executes, not its result: the train rule leaves them out of its
#: ``params`` (so changing them reruns nothing) and resume fingerprints ignore them. ``models`` only selects
#: runs. Defined here, in a module without torch, for the workflow and :mod:`lulc.train` alike.
TRAIN_RUNTIME_KEYS: tuple[str, ...] = ("models", "progress_bar", "num_workers", "threads")
#: Keys of ``predict:`` that do not change the map (only which runs are mapped, and how fast).
PREDICT_RUNTIME_KEYS: tuple[str, ...] = ("runs", "batch_size", "threads")


class ConfigError(ValueError):
    """The configuration does not match the schema; the message names the key."""


def _with_defaults(validator_class: type[jsonschema.protocols.Validator]) -> type:
    """A validator class that also fills ``default`` values into the instance while validating."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(
        validator: Any, properties: Mapping[str, Any], instance: Any, schema: Mapping[str, Any]
    ) -> Iterator[jsonschema.ValidationError]:
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = yaml.safe_load(yaml.safe_dump(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _key_path(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - allowed) if allowed else []
        if unknown:
            path = ".".join(filter(None, [path, unknown[0]]))
    return path or "<top level>"


def validate_config(config: dict[str, Any], schema_path: str | Path) -> dict[str, Any]:
    """Validate ``config`` in place (filling defaults) and return it; raise :class:`ConfigError`."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = _with_defaults(jsonschema.Draft202012Validator)(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for error in errors:
            message = error.message
            if error.validator == "oneOf":
                message = "give exactly one of 'bbox' or 'file'"
            lines.append(f"config key '{_key_path(error)}': {message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    return config


def check_aois(config: dict[str, Any], base_dir: str | Path = ".") -> None:
    """Parse every AOI once so bad bboxes, dates or vector files stop the run at start-up."""
    from lulc.search import AOI

    for name, aoi_cfg in config["aois"].items():
        try:
            AOI.from_config(name, aoi_cfg, base_dir=Path(base_dir))
        except (ValueError, OSError) as error:
            raise ConfigError(f"config key 'aois.{name}': {error}") from error


def load_config(config: dict[str, Any], schema_path: str | Path, base_dir: str | Path = ".") -> dict[str, Any]:
    """Validate, fill defaults and check the AOIs of a Snakemake ``config`` dict."""
    validate_config(config, schema_path)
    check_aois(config, base_dir)
    return config
