"""The class table a STAC label collection or item declares, read before any pixel is.

Two spellings exist in the wild: the classification extension (``classification:classes`` on an asset, in its
``raster:bands`` / ``bands`` entries, or in a collection's ``item_assets``; colour hints spelled ``color-hint``
by ESA WorldCover and ``color_hint`` by USDA CDL), and the file extension's ``file:values`` (Impact Observatory:
``{"values": [1], "summary": "Water"}``). Entries marked ``nodata: true``, named "No Data", or equal to a band's
``nodata`` value are nodata codes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lulc.legends.legend import Legend, LegendClass, class_slug, default_colour, parse_colour

_NODATA_NAME = re.compile(r"^\s*no[\s_-]*data\s*$", re.IGNORECASE)


@dataclass
class DeclaredTable:
    """Codes with their declared names and colours (None where no hint), and the declared nodata codes."""

    classes: dict[int, tuple[str, tuple[int, int, int] | None]] = field(default_factory=dict)
    nodata: set[int] = field(default_factory=set)

    @property
    def names(self) -> dict[int, str]:
        """Code -> declared name, nodata codes left out."""
        return {code: name for code, (name, _) in sorted(self.classes.items()) if code not in self.nodata}


def _code(value: Any) -> int | None:
    """An integer class code from metadata (``3``, ``3.0``, ``"3"``), else None."""
    try:
        code = float(value)
    except (TypeError, ValueError):
        return None
    return int(code) if code.is_integer() else None


def _hint(entry: Mapping[str, Any]) -> tuple[int, int, int] | None:
    """The colour hint of a classification entry, either spelling, or None."""
    for key in ("color-hint", "color_hint"):
        if entry.get(key):
            return parse_colour(str(entry[key]), f"classification entry {entry.get('value')!r}")
    return None


def declared_table(asset: Mapping[str, Any]) -> DeclaredTable | None:
    """The class table an asset (or ``item_assets`` entry) declares, or None where it declares none."""
    bands = [b for key in ("raster:bands", "bands") for b in asset.get(key) or [] if isinstance(b, Mapping)]
    table = DeclaredTable()
    declared = False
    for entry_set in [asset, *bands]:
        band_nodata = _code(entry_set.get("nodata"))
        if band_nodata is not None:
            table.nodata.add(band_nodata)
        entries = entry_set.get("classification:classes")
        if not isinstance(entries, list):
            continue
        declared = True
        for entry in entries:
            value = _code(entry.get("value")) if isinstance(entry, Mapping) else None
            if value is None:
                continue
            name = str(entry.get("name") or entry.get("description") or "")
            if entry.get("nodata") or _NODATA_NAME.match(name):
                table.nodata.add(value)
            else:
                table.classes.setdefault(value, (name, _hint(entry)))
    values = asset.get("file:values")
    if isinstance(values, list):
        declared = True
        for entry in values:
            if not isinstance(entry, Mapping):
                continue
            name = str(entry.get("summary") or "")
            for code in (_code(v) for v in entry.get("values") or []):
                if code is None:
                    continue
                if _NODATA_NAME.match(name):
                    table.nodata.add(code)
                else:
                    table.classes.setdefault(code, (name, None))
    return table if declared else None


def collection_table(collection: Mapping[str, Any], asset: str) -> DeclaredTable | None:
    """The class table a collection document declares for ``asset`` in its ``item_assets``."""
    entry = (collection.get("item_assets") or {}).get(asset)
    return declared_table(entry) if isinstance(entry, Mapping) else None


def legend_from_table(table: DeclaredTable, name: str) -> Legend:
    """One class per declared code, in code order, named and coloured as declared (a default colour where no
    hint): the legend a source declares about itself, before any regrouping."""
    classes = []
    used: set[str] = set()
    for index, (code, (label, colour)) in enumerate(sorted(table.classes.items())):
        if code in table.nodata:
            continue
        slug = class_slug(label or f"class_{code}")
        if slug in used:  # CDL declares "Barren" and "Shrubland" twice (65/131, 64/152)
            slug = f"{slug}_{code}"
        used.add(slug)
        classes.append(LegendClass(slug, colour or default_colour(index), (code,)))
    return Legend(name, tuple(classes), nodata=tuple(sorted(table.nodata)))
