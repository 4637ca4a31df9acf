"""Model families as data: one torch-free record per family (:class:`ModelFamily`), read by the schema, the
start-up checks, tune, the summary's answer and the figures.

A family is what ``models.<name>.type`` names. Its record says, without importing torch:

* its **role** in the study's question: a *foundation* family's entries are foundation models with pretrained
  weights and from-scratch controls without; any other family's entries are baselines, whatever their weights
  (:func:`role`). A role follows from the family and the weights, never from an entry's name;
* its **inputs**: the HLS bands it reads (all six, time-major), the named normalisation statistics it brings and
  which of them ``normalization: backbone`` means for a backbone, whether a backbone takes each frame's date and
  the chip's location (``_tl`` Prithvi), and the patch-size and chip-size rules;
* its **released weights** (:class:`Release`: Hugging Face repository and file per backbone) and how start-up
  finds them in the local cache (:meth:`Release.cached`), with the command that fetches them;
* its **config entry** (the schema definition of ``models.<name>``), its **default tune search space**, the
  config keys that define its encoder (a foundation model and its control must agree on them) and its
  **figure colour**;
* its **builder**: the function that builds the network (in :mod:`lulc.models`, which imports torch), by name.

The built-in families are in this package, one module each (:mod:`lulc.families.prithvi`, ...); a plugin (or a
test) adds one with :func:`register_family`. Registering bumps :func:`version`, so the schema is rebuilt.
"""

from __future__ import annotations

from collections.abc import Mapping

from lulc.families import clay, dofa, prithvi, terramind, unet, vit
from lulc.families.record import (
    BASELINE,
    FOUNDATION,
    OTHER,
    SCRATCH,
    WEIGHTS_NONE,
    WEIGHTS_STANDIN,
    ModelFamily,
    Release,
    power_of_two,
)

#: Family name -> record, in registration order (the built-ins first: the order of figures and tables).
FAMILIES: dict[str, ModelFamily] = {}
_VERSION = [0]


def register_family(family: ModelFamily, replace: bool = False) -> ModelFamily:
    """Add a family (a plugin's, or a test's); ``replace`` allows re-registering one name."""
    if family.name in FAMILIES and not replace:
        raise KeyError(f"model family {family.name!r} is already registered")
    FAMILIES[family.name] = family
    _VERSION[0] += 1
    return family


def unregister_family(name: str) -> None:
    """Remove a family (tests that registered one)."""
    FAMILIES.pop(name, None)
    _VERSION[0] += 1


def version() -> int:
    """Bumped by every (un)registration: what the schema cache keys on."""
    return _VERSION[0]


def family(model_type: str, key: str | None = None) -> ModelFamily:
    """The record of ``model_type``; a ValueError naming ``key`` (a config key) and the known families."""
    try:
        return FAMILIES[model_type]
    except KeyError:
        where = f"config key '{key}': " if key else ""
        raise ValueError(f"{where}unknown model type {model_type!r} (known: {', '.join(FAMILIES)})") from None


def role(model_type: str | None, weights_source: str | None) -> str:
    """A model's role from its family and its weights: a foundation family's entry is a ``foundation`` model with
    pretrained weights and a ``scratch`` control with ``none``; any other family's is a ``baseline``; an unknown
    family, or a foundation entry whose weights are not recorded, is ``other`` (not compared rather than guessed).
    """
    known = FAMILIES.get(str(model_type))
    if known is None:
        return OTHER
    if not known.foundation:
        return BASELINE
    if not weights_source:
        return OTHER
    return SCRATCH if weights_source == WEIGHTS_NONE else FOUNDATION


def all_statistics() -> dict[str, Mapping[str, tuple[float, ...]]]:
    """Every family's named statistics (``models.<name>.normalization`` names)."""
    merged: dict[str, Mapping[str, tuple[float, ...]]] = {}
    for known in FAMILIES.values():
        merged.update(known.statistics)
    return merged


for _builtin in (prithvi, vit, unet, terramind, clay, dofa):  # this order: figures', tables' and the answer's
    register_family(_builtin.FAMILY)

__all__ = [
    "BASELINE",
    "FAMILIES",
    "FOUNDATION",
    "OTHER",
    "SCRATCH",
    "WEIGHTS_NONE",
    "WEIGHTS_STANDIN",
    "ModelFamily",
    "Release",
    "all_statistics",
    "clay",
    "dofa",
    "family",
    "power_of_two",
    "prithvi",
    "register_family",
    "role",
    "terramind",
    "unet",
    "unregister_family",
    "version",
]
