"""The tuned-value format: ``best.yaml`` of the tune stage, read back and merged into a run's settings.

The tune stage writes it (:func:`lulc.tune.tune`), the train stage reads it; both depend on this module, not on
each other. ``best.yaml`` holds ``format`` (:data:`TUNED_FORMAT`), the chosen ``params`` and the trial that
chose them; :func:`apply_tuned` says, for every hyperparameter of a run, whether it came from ``tune``, the
config or the schema default (recorded in run.json).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from lulc.schema import BUDGET_KEYS, TRAIN_TUNABLE_KEYS, model_entry, section

#: Format tag of best.yaml.
TUNED_FORMAT = "lulc-tuned/1"


def load_tuned(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``best.yaml`` written by :func:`lulc.tune.tune`; raise ValueError naming the file if it is not one."""
    path = Path(path)
    record = yaml.safe_load(path.read_text())
    valid = isinstance(record, dict) and record.get("format") == TUNED_FORMAT
    if not valid or not isinstance(record.get("params"), dict):
        raise ValueError(f"{path} is not a tune result of this workflow (format {TUNED_FORMAT}); rerun the tune rule")
    return record


def apply_tuned(
    model_name: str,
    model_cfg: Mapping[str, Any],
    train_cfg: Mapping[str, Any],
    tuned: Mapping[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """A run's model entry and train settings with the tuned values in, and each hyperparameter's source.

    ``model_cfg`` and ``train_cfg`` are resolved (defaults filled). Sources: ``tune`` for a tuned value,
    ``default`` where the value is the schema's default for the model family (or ``train:``), ``config``
    otherwise. Covers :data:`lulc.models.registry.HPARAM_KEYS`, :data:`TRAIN_TUNABLE_KEYS` and every tuned key.
    """
    from lulc.models import HPARAM_KEYS

    model_out, train_out = dict(model_cfg), dict(train_cfg)
    params = dict((tuned or {}).get("params", {}))
    for key, value in params.items():
        if key in model_out and key not in BUDGET_KEYS:
            model_out[key] = value
        elif key in TRAIN_TUNABLE_KEYS:
            train_out[key] = value
        else:
            raise ValueError(f"tuned value {key!r} of model {model_name!r} is neither a model nor a train key")
    defaults_model = model_entry(model_name, {"type": model_out["type"]})
    defaults_train = section("train")
    sources: dict[str, str] = {}
    for key in sorted({*HPARAM_KEYS, *TRAIN_TUNABLE_KEYS, *params}):
        if key in params:
            sources[key] = "tune"
        elif key in TRAIN_TUNABLE_KEYS:
            sources[key] = "default" if train_out[key] == defaults_train[key] else "config"
        else:
            sources[key] = "default" if model_out[key] == defaults_model[key] else "config"
    return model_out, train_out, sources


__all__ = ["TUNED_FORMAT", "apply_tuned", "load_tuned"]
