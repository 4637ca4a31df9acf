"""The Clay family record (model type ``clay``; builder :mod:`lulc.models.clay`): the Clay v1 encoder
(TerraTorch's ``clay_v1_base``, timm source of ``BACKBONE_REGISTRY``; code in ``terratorch/models/backbones/clay_v1``),
one frame at a time.

Clay is wavelength-aware: each band is given by its centre wavelength, by Clay's own band names (TerraTorch's
``clay_v1.modules.WAVELENGTHS``, the same as Clay's ``configs/metadata.yaml`` for ``sentinel-2-l2a``): blue 0.493,
green 0.56, red 0.665, nir08 0.865 (B8A; Clay's ``nir`` is B08, 0.842), swir16 1.61, swir22 2.19 µm. The statistics
are Clay's ``sentinel-2-l2a`` mean / std of those bands (``configs/metadata.yaml`` of Clay-foundation/model; TerraTorch
ships none). The patch is 8 pixels (TerraTorch's ``Embedder``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from lulc.families.record import VIT_SEARCH_SPACE, ModelFamily, Release

#: HLS band (PRITHVI_BANDS order) -> Clay's band name and its centre wavelength (µm) in Clay's metadata.
CLAY_BANDS: tuple[str, ...] = ("blue", "green", "red", "nir08", "swir16", "swir22")
WAVELENGTHS: tuple[float, ...] = (0.493, 0.56, 0.665, 0.865, 1.61, 2.19)
#: Clay's sentinel-2-l2a statistics (reflectance x 10000) of blue, green, red, nir08, swir16, swir22.
STATISTICS: dict[str, dict[str, tuple[float, ...]]] = {
    "clay_s2l2a": {
        "mean": (1105.0, 1355.0, 1552.0, 2785.0, 2388.0, 1835.0),
        "std": (1809.0, 1757.0, 1888.0, 1648.0, 1470.0, 1379.0),
    },
}
PATCH = 8
#: TerraTorch's ``default_cfgs`` of ``clay_v1_base`` (``terratorch/models/backbones/clay_v1/embedder.py``).
RELEASES: dict[str, Release] = {
    "clay_v1_base": Release("made-with-clay/Clay-legacy", "v1/clay-v1-base.ckpt"),
}
#: The encoder sizes TerraTorch's ``Embedder`` fixes for clay_v1_base; ``backbone_kwargs`` may override them.
SIZE_KWARGS: dict[str, Any] = {"dim": 768, "depth": 12, "heads": 12, "dim_head": 64, "mlp_ratio": 4.0}
#: Besides the sizes: the ground sample distance (m) given to Clay's position encoding (HLS: 30 m).
OTHER_KWARGS: dict[str, Any] = {"gsd": 30.0}


def rules(key: str, entry: Mapping[str, Any], chip_size: int | None) -> Iterator[str]:
    kwargs = entry.get("backbone_kwargs", {})
    for bad in sorted(set(kwargs) - set(SIZE_KWARGS) - set(OTHER_KWARGS)):
        yield (
            f"config key '{key}.backbone_kwargs.{bad}': not an argument of the Clay encoder (known: "
            f"{', '.join([*SIZE_KWARGS, *OTHER_KWARGS])})"
        )
    dim, heads = kwargs.get("dim", SIZE_KWARGS["dim"]), kwargs.get("heads", SIZE_KWARGS["heads"])
    if isinstance(dim, int) and (dim <= 8 or (dim - 8) % 4):
        yield (
            f"config key '{key}.backbone_kwargs.dim': {dim}: Clay's position encoding needs dim - 8 to be a "
            "positive multiple of 4"
        )
    if not isinstance(heads, int) or heads < 1:
        yield f"config key '{key}.backbone_kwargs.heads': expected a positive integer, got {heads!r}"


FAMILY = ModelFamily(
    name="clay",
    description="Clay v1 (TerraTorch clay_v1_base encoder, wavelength-aware, per frame) + FCN decoder",
    builder="lulc.models.clay:build_clay",
    foundation=True,
    colour="#9467bd",
    definition="clay_model",
    search_space=VIT_SEARCH_SPACE,
    statistics=STATISTICS,
    backbone_statistics=lambda entry: "clay_s2l2a",
    releases=RELEASES,
    weights_specs=("hf",),
    patch_size=lambda entry: PATCH,
    fcn_decoder=lambda entry: True,
    rules=rules,
    notes="clay_v1_base (Clay-legacy v1 release; sizes overridable in backbone_kwargs for the demo); frames encoded "
    "separately and merged (frame_merge)",
)
