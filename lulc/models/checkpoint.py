"""Trained checkpoints: :func:`save_trained_model` writes a self-contained model (weights, the resolved model
config and the build record), :func:`load_trained_model` rebuilds it through the registry for evaluation and
prediction.

Kept apart from :mod:`lulc.models.weights` (pretrained weights files) because rebuilding needs the registry.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lulc.legends import Legend
from lulc.models.core import BuiltModel, LULCModel
from lulc.models.registry import build_model
from lulc.models.weights import WeightsError

#: Format tag of the checkpoints written by :func:`save_trained_model`.
CHECKPOINT_FORMAT = "lulc-model/1"


def save_trained_model(built: BuiltModel, config: Mapping[str, Any], path: Path, extra: Mapping[str, Any]) -> None:
    """Write a self-contained trained model: weights, the resolved model config and the build record.

    Written through a file object: given a path, ``torch.save`` names the archive's inner folder after the file,
    and the temporary name of an atomic write would make two equal checkpoints (and the maps that tag their
    SHA-256) differ in their bytes."""
    with open(path, "wb") as file:
        torch.save(
            {
                "format": CHECKPOINT_FORMAT,
                "config": dict(config),
                "info": built.info,
                "state_dict": {k: v.detach().cpu() for k, v in built.model.state_dict().items()},
                **extra,
            },
            file,
        )


def load_trained_model(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[LULCModel, dict[str, Any]]:
    """Rebuild a model written by :func:`save_trained_model` (for evaluation and prediction); strict keys."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"trained checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise WeightsError(f"cannot read trained checkpoint {path}: {type(error).__name__}: {error}") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path} is not a trained model checkpoint of this workflow (format {CHECKPOINT_FORMAT})")
    info = checkpoint["info"]
    # normalization: dataset: the statistics recorded in the checkpoint (the stats file is not needed)
    dataset_stats = info.get("normalization") if info.get("normalization", {}).get("name") == "dataset" else None
    built = build_model(
        info["name"], checkpoint["config"], info["frames"], info["chip_size"], info["num_classes"], load_weights=False,
        dataset_stats=dataset_stats,
    )
    built.model.load_state_dict(checkpoint["state_dict"], strict=True)
    return built.model, checkpoint


def checkpoint_legend(checkpoint: Mapping[str, Any], path: str | os.PathLike[str]) -> Legend:
    """The legend a trained checkpoint was trained on (its class table: names, colours, source codes)."""
    if "legend" not in checkpoint:
        raise WeightsError(f"trained checkpoint {path} records no legend (written before legends were recorded): "
                           "retrain it")  # fmt: skip
    return Legend.from_dict(checkpoint["legend"], where=f"trained checkpoint {path}")
