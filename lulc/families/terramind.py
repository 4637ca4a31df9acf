"""The TerraMind family record (model type ``terramind``; builder :mod:`lulc.models.terramind`): IBM / ESA's
TerraMind 1.0 encoders (TerraTorch's ``terramind_v1_*`` backbones, ``TerraMindViT`` on the raw Sentinel-2 L2A
modality), one frame at a time.

The six HLS bands are the Sentinel-2 L2A bands B02, B03, B04, B8A, B11, B12 (TerraTorch's names BLUE, GREEN, RED,
NIR_NARROW, SWIR_1, SWIR_2); TerraTorch's ``bands`` argument keeps only their columns of the 12-band patch
embedding (``select_modality_patch_embed_weights``), so no band is zero-filled. The statistics are TerraMind v1's
S2L2A pretraining mean / std of those bands (``v1_pretraining_mean`` / ``v1_pretraining_std["untok_sen2l2a@224"]``
of ``terratorch/models/backbones/terramind/model/terramind_register.py``), the releases its ``pretrained_weights``.
The patch is 16 pixels (``MODALITY_INFO["untok_sen2l2a@224"]``), whatever ``patch_size`` TerraMindViT is given.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from lulc.families.record import VIT_SEARCH_SPACE, ModelFamily, Release, depth_rule

#: HLS band (PRITHVI_BANDS order) -> TerraTorch's TerraMind S2L2A band name (``PRETRAINED_BANDS``).
S2L2A_BANDS: tuple[str, ...] = ("BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2")
#: TerraMind v1 S2L2A pretraining statistics (reflectance x 10000) of B02, B03, B04, B8A, B11, B12.
STATISTICS: dict[str, dict[str, tuple[float, ...]]] = {
    "terramind_s2l2a": {
        "mean": (1503.317, 1718.197, 1853.91, 3132.22, 2424.884, 1857.648),
        "std": (2141.107, 2038.973, 2134.138, 1753.829, 1434.261, 1334.311),
    },
}
PATCH = 16
_ORG = "ibm-esa-geospatial"
#: TerraTorch's ``pretrained_weights`` of the TerraMind 1.0 backbones (a test keeps them in step).
RELEASES: dict[str, Release] = {
    "terramind_v1_tiny": Release(f"{_ORG}/TerraMind-1.0-tiny", "TerraMind_v1_tiny.pt"),
    "terramind_v1_small": Release(f"{_ORG}/TerraMind-1.0-small", "TerraMind_v1_small.pt"),
    "terramind_v1_base": Release(f"{_ORG}/TerraMind-1.0-base", "TerraMind_v1_base.pt"),
    "terramind_v1_large": Release(f"{_ORG}/TerraMind-1.0-large", "TerraMind_v1_large.pt"),
}
#: ``backbone_kwargs`` the builder takes itself (TerraTorch's builders fix the sizes; ``depth`` keeps the first
#: blocks of the built encoder).
OWN_KWARGS = ("depth",)


def rules(key: str, entry: Mapping[str, Any], chip_size: int | None) -> Iterator[str]:
    kwargs = entry.get("backbone_kwargs", {})
    for bad in ("bands", "modalities", "img_size", "pretrained", "ckpt_path", "patch_size"):
        if bad in kwargs:
            yield (
                f"config key '{key}.backbone_kwargs.{bad}': set by the builder (the six HLS bands as S2L2A, the chip "
                "size, weights through models.<name>.weights, the 16-pixel patch of S2L2A)"
            )
    yield from depth_rule(key, kwargs)


FAMILY = ModelFamily(
    name="terramind",
    description="IBM/ESA TerraMind 1.0 (TerraTorch terramind_v1_*, S2L2A bands, per frame) + FCN decoder",
    builder="lulc.models.terramind:build_terramind",
    foundation=True,
    colour="#d62728",
    definition="terramind_model",
    search_space=VIT_SEARCH_SPACE,
    statistics=STATISTICS,
    backbone_statistics=lambda entry: "terramind_s2l2a",
    releases=RELEASES,
    weights_specs=("hf",),
    patch_size=lambda entry: PATCH,
    fcn_decoder=lambda entry: True,
    rules=rules,
    notes="terramind_v1_tiny / small / base / large (raw S2L2A input, B02 B03 B04 B8A B11 B12); frames encoded "
    "separately and merged (frame_merge)",
)
