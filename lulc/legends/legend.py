"""A legend as data: ordered classes, each with a name, a colour and the source codes that map to it.

A :class:`Legend` is what every stage knows about classes. Class *indices* (0, 1, ... in legend order, and
:data:`IGNORE_INDEX` for "no class") are what rasters, chips and models hold; source *codes* (IO's 1..11,
WorldCover's 10..100, CDL's 1..254, a national map's codes) are only read once, when labels are remapped
(:meth:`Legend.remap`). The legend travels with the data: class rasters record it in their ``LEGEND`` tag
(:meth:`Legend.tags`, :func:`read_legend`), chips in their summary, checkpoints in their hyper-parameters.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Class index of pixels that carry no class (nodata codes, pixels outside vector labels, imagery nodata);
#: excluded from loss and metrics. So a legend has at most 255 classes.
IGNORE_INDEX = 255

#: What a code outside the legend (neither a class code nor a nodata code) does.
UNKNOWN_POLICIES = ("stop", "ignore")

_SLUG = re.compile(r"[^0-9a-z]+")


class LegendError(ValueError):
    """A legend that cannot be used as written (config key or file named in the message)."""


class LegendCodeError(ValueError):
    """Label codes that the legend does not cover, with ``unknown: stop``."""


class LegendMismatchError(ValueError):
    """Two artefacts of different legends used together (a checkpoint and labels, two maps)."""


def class_slug(name: str) -> str:
    """A class name as the workflow writes it in columns and tags: ``"Built area"`` -> ``built_area``."""
    slug = _SLUG.sub("_", str(name).strip().lower()).strip("_")
    if not slug:
        raise LegendError(f"class name {name!r} has no letters or digits")
    return slug


def parse_colour(value: Any, where: str) -> tuple[int, int, int]:
    """An RGB colour from ``"#RRGGBB"``, ``"RRGGBB"`` (STAC's ``color-hint``) or ``[r, g, b]``."""
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        if re.fullmatch(r"[0-9A-Fa-f]{6}", text):
            return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))
    elif isinstance(value, Sequence) and len(value) in (3, 4):
        rgb = tuple(int(v) for v in value[:3])
        if all(0 <= v <= 255 for v in rgb):
            return (rgb[0], rgb[1], rgb[2])
    raise LegendError(f"{where}: colour {value!r} is neither '#RRGGBB' nor [r, g, b] with values 0-255")


def default_colour(index: int) -> tuple[int, int, int]:
    """A distinct colour for a class that declares none (matplotlib's tab20, cycled)."""
    palette = [
        (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
        (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (174, 199, 232), (255, 187, 120),
        (152, 223, 138), (255, 152, 150), (197, 176, 213), (196, 156, 148), (247, 182, 210), (199, 199, 199),
        (219, 219, 141), (158, 218, 229),
    ]  # fmt: skip
    return palette[index % len(palette)]


@dataclass(frozen=True)
class LegendClass:
    """One class: its name (a slug), RGB colour and the source codes that map to it (many-to-one)."""

    name: str
    colour: tuple[int, int, int]
    codes: tuple[int, ...] = ()


@dataclass(frozen=True)
class Legend:
    """Ordered classes (index ``i`` is ``classes[i]``), the source's nodata codes, and what an uncovered code
    does: ``stop`` (an error naming it) or ``ignore`` (its pixels become :data:`IGNORE_INDEX`, counted)."""

    name: str
    classes: tuple[LegendClass, ...]
    nodata: tuple[int, ...] = ()
    unknown: str = "stop"
    _lookup: dict[int, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    # the class codes sorted and their indices: what remap searches, built once (remap runs per raster block)
    _codes: np.ndarray = field(init=False, repr=False, compare=False)
    _indices: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"legend {self.name!r}"
        if not self.classes:
            raise LegendError(f"{where}: no classes")
        if len(self.classes) >= IGNORE_INDEX:
            raise LegendError(f"{where}: {len(self.classes)} classes; at most {IGNORE_INDEX - 1} (index 255 = ignore)")
        if self.unknown not in UNKNOWN_POLICIES:
            raise LegendError(f"{where}: unknown: {self.unknown!r}; use one of {list(UNKNOWN_POLICIES)}")
        names = [c.name for c in self.classes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise LegendError(f"{where}: class names {duplicates} appear more than once")
        seen: dict[int, str] = {}
        for index, cls in enumerate(self.classes):
            for code in cls.codes:
                if code in seen:
                    raise LegendError(f"{where}: code {code} maps to both {seen[code]!r} and {cls.name!r}")
                seen[code] = cls.name
                self._lookup[int(code)] = index
        codes = sorted(self._lookup)
        object.__setattr__(self, "_codes", np.array(codes, dtype=np.int64))
        object.__setattr__(self, "_indices", np.array([self._lookup[c] for c in codes], dtype=np.uint8))
        both = sorted(set(seen) & set(self.nodata))
        if both:
            raise LegendError(f"{where}: codes {both} are both class codes and nodata codes")

    # -- what the classes are -------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def colours(self) -> tuple[tuple[int, int, int], ...]:
        return tuple(c.colour for c in self.classes)

    def table(self) -> list[dict[str, Any]]:
        """The class table: index, name, colour (``#rrggbb``) and codes, in index order."""
        return [
            {"index": i, "name": c.name, "colour": "#" + "".join(f"{v:02x}" for v in c.colour), "codes": list(c.codes)}
            for i, c in enumerate(self.classes)
        ]

    def entries(self) -> list[dict[str, Any]]:
        """Index, name and RGB colour list per class (what pages and reports draw)."""
        return [{"index": i, "name": c.name, "colour": list(c.colour)} for i, c in enumerate(self.classes)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form that :meth:`from_dict` reads back (checkpoints, summaries, raster tags)."""
        return {"name": self.name, "classes": self.table(), "nodata": list(self.nodata), "unknown": self.unknown}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "legend") -> Legend:
        """The legend of :meth:`to_dict`, or of a user's legend mapping (``classes`` with ``name``, ``colour``,
        ``codes``; ``nodata``; ``unknown``)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("classes"), list):
            raise LegendError(f"{where}: a legend needs a list 'classes' of {{name, colour, codes}}")
        entries = []
        for i, entry in enumerate(data["classes"]):
            here = f"{where}: classes[{i}]"
            if not isinstance(entry, Mapping) or "name" not in entry:
                raise LegendError(f"{here}: needs a 'name'")
            codes = entry.get("codes", entry.get("code", []))
            codes = [codes] if isinstance(codes, int | str) else list(codes or [])
            try:
                code_values = tuple(int(c) for c in codes)
            except (TypeError, ValueError):
                raise LegendError(f"{here}: codes {codes!r} are not integers") from None
            colour = parse_colour(entry["colour"], here) if entry.get("colour") is not None else default_colour(i)
            entries.append(LegendClass(class_slug(entry["name"]), colour, code_values))
        nodata = data.get("nodata", [])
        nodata = [nodata] if isinstance(nodata, int) else list(nodata or [])
        return cls(
            name=str(data.get("name") or "custom"),
            classes=tuple(entries),
            nodata=tuple(int(c) for c in nodata),
            unknown=str(data.get("unknown", "stop")),
        )

    @classmethod
    def generic(cls, num_classes: int) -> Legend:
        """``class_0`` .. ``class_<n-1>`` in default colours, no codes: the legend of a model whose classes are not
        known (a benchmark's random model)."""
        return cls("generic", tuple(LegendClass(f"class_{i}", default_colour(i)) for i in range(num_classes)))

    # -- source codes -> class indices ----------------------------------------------------------------------
    def index_of(self, code: int) -> int | None:
        """The class index of a source code, or None where the legend does not map it."""
        return self._lookup.get(int(code))

    def uncovered(self, codes: Iterable[int]) -> list[int]:
        """The codes among ``codes`` that are neither class codes nor nodata codes, sorted."""
        nodata = set(self.nodata)
        return sorted({int(c) for c in codes if int(c) not in self._lookup and int(c) not in nodata})

    def check_codes(self, codes: Iterable[int] | Mapping[int, str], where: str) -> None:
        """Refuse (with ``unknown: stop``) codes the legend does not cover, naming them, their declared names
        and ``where`` they come from (a collection and item, a file)."""
        if self.unknown != "stop":
            return
        uncovered = self.uncovered(codes)
        if uncovered:
            names = codes if isinstance(codes, Mapping) else {}
            described = ", ".join(f"{c} ({names[c]})" if names.get(c) else str(c) for c in uncovered)
            raise LegendCodeError(
                f"label codes {described} in {where} are not in legend {self.name!r} (classes "
                f"{self.describe_codes()}; nodata {list(self.nodata)}): map them to a class in the legend "
                "(labels.legend), or set labels.legend's unknown: ignore to turn them into 'no class'"
            )

    def describe_codes(self) -> str:
        """``water=1, trees=2, ...`` (``corn=1+12+13``) for messages."""
        return ", ".join(f"{c.name}={'+'.join(str(v) for v in c.codes) or '?'}" for c in self.classes)

    def remap(self, codes: np.ndarray, nodata: Iterable[int] = ()) -> np.ndarray:
        """Class indices (uint8) of a raster of integer source codes; nodata codes (the legend's and the file's
        ``nodata``, which may coincide with a class code) and uncovered codes become :data:`IGNORE_INDEX`. With
        ``unknown: stop`` uncovered codes are the caller's to refuse first (:meth:`check_codes`); here they are
        never mapped to a class."""
        codes = np.asarray(codes)
        if not np.issubdtype(codes.dtype, np.integer):
            raise TypeError(f"class codes must be an integer array, got {codes.dtype}")
        out = np.full(codes.shape, IGNORE_INDEX, dtype=np.uint8)
        if self._codes.size == 0:
            return out
        flat = codes.astype(np.int64, copy=False)
        position = np.clip(np.searchsorted(self._codes, flat), 0, self._codes.size - 1)
        hit = self._codes[position] == flat
        for value in nodata:
            hit &= flat != int(value)
        out[hit] = self._indices[position[hit]]
        return out

    # -- rasters -------------------------------------------------------------------------------------------
    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """A GDAL colour table for rasters of class indices (RGBA; the ignore index transparent black)."""
        cmap = {i: (*c.colour, 255) for i, c in enumerate(self.classes)}
        cmap[IGNORE_INDEX] = (0, 0, 0, 0)
        return cmap

    def tags(self) -> dict[str, str]:
        """GDAL metadata of every class-index raster (labels, maps): class names, the legend, the ignore index."""
        return {
            "CLASSES": ",".join(f"{i}={name}" for i, name in enumerate(self.names)),
            "LEGEND": json.dumps(self.to_dict(), separators=(",", ":")),
            "IGNORE_INDEX": str(IGNORE_INDEX),
        }

    def same_classes(self, other: Legend) -> bool:
        """Whether two legends have the same class table (names in the same order): indices mean the same."""
        return self.names == other.names

    def require_same(self, other: Legend, mine: str, theirs: str) -> None:
        """Refuse to use artefacts of two legends together, naming both."""
        if not self.same_classes(other):
            raise LegendMismatchError(
                f"{mine} has legend {self.name!r} ({self.num_classes} classes: {', '.join(self.names)}) but "
                f"{theirs} has legend {other.name!r} ({other.num_classes} classes: {', '.join(other.names)}); "
                "a model predicts the classes it was trained on, so it cannot be scored against or compared "
                "with labels of another legend"
            )


def legend_from_tags(tags: Mapping[str, str], colormap: Mapping[int, Sequence[int]] | None, where: str) -> Legend:
    """The legend a class raster records: its ``LEGEND`` tag, or (rasters written before legends were recorded)
    its ``CLASSES`` tag and colour table, with no source codes."""
    if "LEGEND" in tags:
        try:
            return Legend.from_dict(json.loads(tags["LEGEND"]), where=f"{where}: LEGEND tag")
        except json.JSONDecodeError as error:
            raise LegendError(f"{where}: LEGEND tag is not JSON ({error})") from None
    if "CLASSES" not in tags:
        raise LegendError(f"{where}: no LEGEND or CLASSES tag (class names); not a class raster of this workflow")
    if colormap is None:
        raise LegendError(f"{where}: no colour table; not a class raster of this workflow")
    entries = []
    for item in tags["CLASSES"].split(","):
        index, name = item.split("=", 1)
        rgba = colormap.get(int(index))
        if rgba is None:
            raise LegendError(f"{where}: class {name!r} (index {index}) has no colour in the colour table")
        entries.append(LegendClass(name, (int(rgba[0]), int(rgba[1]), int(rgba[2]))))
    return Legend("recorded", tuple(entries))


def dataset_legend(src: Any, where: str) -> Legend:
    """The legend an open class-index raster (a rasterio dataset) records: for readers that have it open anyway."""
    try:
        colormap = src.colormap(1)
    except ValueError:
        colormap = None
    return legend_from_tags(src.tags(), colormap, where)


def read_legend(path: str | os.PathLike[str]) -> Legend:
    """The legend of a class-index raster (labels, a map, a mosaic) as the raster records it."""
    import rasterio

    with rasterio.open(path) as src:
        return dataset_legend(src, str(path))


def raster_legend(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The classes of a class-index raster as it records them: index, name and colour per class."""
    return read_legend(path).entries()
