"""The record of a model family (:class:`ModelFamily`) and of a released checkpoint (:class:`Release`): plain,
torch-free data that the family modules of :mod:`lulc.families` fill in and :mod:`lulc.families` registers."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lulc.hls import PRITHVI_BANDS

#: Roles in the study's question.
FOUNDATION, SCRATCH, BASELINE, OTHER = "foundation", "scratch", "baseline", "other"

#: ``models.<name>.weights`` specs every family understands: random initialisation (a foundation family's
#: from-scratch control), and random weights standing in for a release (a foundation model in the answer, named as
#: such: for trying a family's pipeline and cost without its release, never for a claim about it).
WEIGHTS_NONE = "none"
WEIGHTS_STANDIN = "standin"


@dataclass(frozen=True)
class Release:
    """A released checkpoint on the Hugging Face Hub, found in the local cache only (never downloaded:
    :func:`lulc.families.cache.cached_release`)."""

    repo: str
    filename: str

    @property
    def fetch_command(self) -> str:
        """The command a user runs once to put the release into the local cache."""
        return f"hf download {self.repo} {self.filename}"



Entry = Mapping[str, Any]


def _no_rules(key: str, entry: Entry, chip_size: int | None) -> Iterator[str]:
    return iter(())


@dataclass(frozen=True)
class ModelFamily:
    """The record of one model family (see the module docstring)."""

    name: str
    description: str
    #: ``"module:function"`` of the builder (or the function itself, for a plugin); see lulc.models.registry.
    builder: str | Callable[..., Any]
    #: True: pretrained weights make an entry a foundation model, random ones its from-scratch control.
    foundation: bool
    colour: str
    #: The schema definition of a ``models.<name>`` entry of this type: a definition of the schema file
    #: (``"prithvi_model"``) or the definition itself.
    definition: str | Mapping[str, Any]
    search_space: Mapping[str, Any]
    #: Config keys that define the encoder: a foundation model and its from-scratch control agree on them.
    encoder_keys: tuple[str, ...] = ("type", "backbone", "backbone_kwargs")
    #: The HLS bands the model reads, in the chips' order (every family reads all six today).
    bands: tuple[str, ...] = PRITHVI_BANDS
    #: Named per-band statistics (reflectance x 10000, :data:`bands` order) this family brings.
    statistics: Mapping[str, Mapping[str, tuple[float, ...]]] = field(default_factory=dict)
    #: The statistics ``normalization: backbone`` means for an entry; None: the family has none.
    backbone_statistics: Callable[[Entry], str] | None = None
    #: Released weights per backbone (``weights: hf``).
    releases: Mapping[str, Release] = field(default_factory=dict)
    #: The ``weights`` specs besides none and a local file: ``hf``, ``pretrain``.
    weights_specs: tuple[str, ...] = ()
    #: The patch size in pixels of an entry (a ViT), or None (a CNN: no patch).
    patch_size: Callable[[Entry], int | None] = lambda entry: None
    #: Whether an entry's decoder is the FCN decoder (its options and auxiliary head apply).
    fcn_decoder: Callable[[Entry], bool] = lambda entry: False
    #: Whether an entry takes each frame's date (year, day of year) and the chip's centre (lat, lon).
    time_location: Callable[[Entry], bool] = lambda entry: False
    #: The family's own rules of an entry (and of the entry with the chip size, where given).
    rules: Callable[[str, Entry, int | None], Iterator[str]] = _no_rules
    #: Where the supported backbones, weights and tests are documented (README's families table).
    notes: str = ""

    def build(self) -> Callable[..., Any]:
        """The builder function (imports its module, which imports torch)."""
        if callable(self.builder):
            return self.builder
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(module), function)

    def release(self, backbone: str) -> Release | None:
        return self.releases.get(backbone)


def power_of_two(value: int) -> bool:
    return value > 0 and 2 ** round(math.log2(value)) == value


#: The default search space of the ViT-like families (Prithvi, ViT, TerraMind, Clay, DOFA): one range for all, so an
#: equal budget also means equal ranges.
VIT_SEARCH_SPACE: dict[str, Any] = {
    "lr": {"low": 1.0e-5, "high": 1.0e-3, "log": True},
    "weight_decay": {"low": 1.0e-4, "high": 0.1, "log": True},
    "warmup_epochs": {"choices": [0, 1, 2]},
    "decoder_channels": {"choices": [64, 128, 256]},
}


def depth_rule(key: str, kwargs: Mapping[str, Any]) -> Iterator[str]:
    """``backbone_kwargs.depth`` (the blocks kept of a backbone whose builder fixes its size) is a positive integer."""
    depth = kwargs.get("depth")
    if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool) or depth < 1):
        yield f"config key '{key}.backbone_kwargs.depth': expected a positive integer (blocks kept), got {depth!r}"
