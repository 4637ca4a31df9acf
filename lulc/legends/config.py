"""The legend a config asks for (``labels.legend``): a preset name, a mapping, or a small YAML / CSV file.

A YAML file holds the mapping (``classes: [{name, colour, codes}]``, ``nodata``, ``unknown``). A CSV file has one
row per source code, ``code,class,colour`` (colour optional; many rows may name one class, the class order is the
order of first appearance; rows whose class is ``nodata`` list the nodata codes).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from lulc.legends.legend import Legend, LegendError, class_slug
from lulc.legends.presets import PRESETS, preset

#: Config key of the legend, for messages.
KEY = "labels.legend"


def _legend_from_csv(path: Path) -> Legend:
    """A legend from ``code,class,colour`` rows (module docstring)."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"code", "class"} <= set(rows[0]):
        raise LegendError(f"{KEY}: {path}: a legend CSV needs the columns code,class (and optionally colour)")
    classes: dict[str, dict[str, Any]] = {}
    nodata: list[int] = []
    for line, row in enumerate(rows, start=2):
        try:
            code = int(str(row["code"]).strip())
        except ValueError:
            raise LegendError(f"{KEY}: {path}, line {line}: code {row['code']!r} is not an integer") from None
        name = str(row["class"]).strip()
        if name.lower() == "nodata":
            nodata.append(code)
            continue
        entry = classes.setdefault(class_slug(name), {"name": name, "codes": []})
        entry["codes"].append(code)
        if row.get("colour"):
            entry.setdefault("colour", row["colour"])
    return Legend.from_dict({"name": path.stem, "classes": list(classes.values()), "nodata": nodata},
                            where=f"{KEY}: {path}")


def load_legend(value: str | Mapping[str, Any] | None, base: str | os.PathLike[str] = ".") -> Legend:
    """The legend of ``labels.legend``: None (the default preset), a preset name, a mapping, or a path (relative
    to ``base``) to a ``.yaml`` / ``.yml`` / ``.csv`` file."""
    if value is None:
        return preset("io-lulc-9")
    if isinstance(value, Mapping):
        return Legend.from_dict(value, where=KEY)
    text = str(value)
    if text in PRESETS:
        return PRESETS[text]
    path = Path(base) / text
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".csv"):
        return preset(text)  # the error listing the presets
    if not path.is_file():
        raise LegendError(f"{KEY}: legend file {path} does not exist")
    if suffix == ".csv":
        return _legend_from_csv(path)
    data = yaml.safe_load(path.read_text())
    if isinstance(data, Mapping) and "name" not in data:
        data = {**data, "name": path.stem}
    return Legend.from_dict(data, where=f"{KEY}: {path}")
