"""The model registry: model type -> builder (:data:`MODEL_BUILDERS`, filled by :func:`register_model` in each
family's builder module), and :func:`build_model`, which builds the model of a config entry through it.

The registry knows no family: a builder module registers its builder when it is imported, and
:mod:`lulc.models` imports every built-in one, so importing :mod:`lulc.models` registers them all. A family whose
builder is not registered here (a plugin's) is built through its record's :attr:`~lulc.families.ModelFamily.builder`.
What a family is (its role, statistics, releases, search space) is its record in :mod:`lulc.families`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lulc import families
from lulc.legends import DEFAULT_LEGEND, preset
from lulc.models.core import BuiltModel, count_parameters
from lulc.models.normalization import dataset_normalization
from lulc.schema import model_entry

#: Keys of a model entry that are training hyperparameters (used by lulc.train, not by the builders).
HPARAM_KEYS: tuple[str, ...] = ("lr", "weight_decay", "epochs", "batch_size")


Builder = Callable[[str, dict[str, Any], int, int, int, "Path | None", bool], BuiltModel]
#: Model type -> builder ``(name, cfg, frames, chip_size, num_classes, pretrain_checkpoint, load_weights)``.
MODEL_BUILDERS: dict[str, Builder] = {}


def register_model(model_type: str) -> Callable[[Builder], Builder]:
    """Register a builder under a model type (like TerraTorch's registries, one entry per name)."""

    def decorator(builder: Builder) -> Builder:
        if model_type in MODEL_BUILDERS:
            raise KeyError(f"model type {model_type!r} is already registered")
        MODEL_BUILDERS[model_type] = builder
        return builder

    return decorator


def build_model(
    name: str,
    cfg: Mapping[str, Any] | None,
    frames: int,
    chip_size: int,
    num_classes: int | None = None,
    pretrain_checkpoint: str | os.PathLike[str] | None = None,
    load_weights: bool = True,
    dataset_stats: Any = None,
) -> BuiltModel:
    """Build the model of config entry ``models.<name>`` for ``frames`` x 6-band chips of ``chip_size``.

    ``num_classes``: the classes of the legend the model is trained on (default: those of the default legend, for
    tests and benchmarks; training passes its chips' legend). ``load_weights=False`` skips pretrained weights (used
    when a trained checkpoint is loaded next).
    ``dataset_stats``: the statistics of ``normalization: dataset`` (the stats rule's file, or a checkpoint's
    record of them: :func:`dataset_normalization`); ignored for any other normalisation.
    """
    num_classes = preset(DEFAULT_LEGEND).num_classes if num_classes is None else num_classes
    resolved = model_entry(name, cfg, int(chip_size))  # the defaults of its type, from the schema
    if resolved.get("normalization") == "dataset":  # resolved here, so every builder gets the statistics
        resolved["normalization"] = dataset_normalization(dataset_stats, name)
    family = families.family(resolved["type"], f"models.{name}.type")
    builder = MODEL_BUILDERS.get(family.name) or family.build()
    built = builder(
        name,
        resolved,
        int(frames),
        int(chip_size),
        int(num_classes),
        Path(pretrain_checkpoint) if pretrain_checkpoint is not None else None,
        load_weights,
    )
    built.model.time_location = family.time_location(resolved)
    built.model.family = family.name  # what `precision: auto` looks up (lulc.models.precision.choose_precision)
    built.info = {
        "name": name,
        "type": resolved["type"],
        "time_location": built.model.time_location,
        "frames": int(frames),
        "chip_size": int(chip_size),
        "num_classes": int(num_classes),
        "parameters": count_parameters(built.model),
        "normalization": built.model.normalization.to_dict(),
        **built.info,
    }
    return built
