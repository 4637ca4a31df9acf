"""The DOFA family record (model type ``dofa``; builder :mod:`lulc.models.dofa`): the Dynamic One-For-All encoders
(TerraTorch's ``dofa_small_patch16_224`` / ``dofa_base_patch16_224`` / ``dofa_large_patch16_224`` of
``terratorch/models/backbones/dofa_vit.py``, on torchgeo's ``DOFA``), one frame at a time.

DOFA is wavelength-aware; TerraTorch names bands and looks their wavelengths up in ``dofa_vit.waves_list``: BLUE 0.49,
GREEN 0.56, RED 0.665, NIR_NARROW 0.864, SWIR_1 1.61, SWIR_2 2.20 µm (the HLS band names, so the builder passes
them as ``model_bands``). DOFA ships no normalisation (torchgeo: "normalization is sensor-dependent and is
therefore left out"); ``dofa_s2l2a`` is chosen here as a global Sentinel-2 L2A statistic of those bands: TerraMind
v1's S2L2A pretraining mean / std (TerraTorch's ``terramind_register.py``). The releases are torchgeo's
``DOFABase16_Weights`` / ``DOFALarge16_Weights`` (Hugging Face ``torchgeo/dofa``), which TerraTorch loads for
``pretrained=True``; there is no released small model.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from lulc.families.record import VIT_SEARCH_SPACE, ModelFamily, Release, depth_rule
from lulc.families.terramind import STATISTICS as TERRAMIND_STATISTICS

#: HLS bands (PRITHVI_BANDS order) as TerraTorch's DOFA names them, and their wavelengths there (µm).
DOFA_BANDS: tuple[str, ...] = ("BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2")
WAVELENGTHS: tuple[float, ...] = (0.49, 0.56, 0.665, 0.864, 1.61, 2.20)
STATISTICS: dict[str, dict[str, tuple[float, ...]]] = {"dofa_s2l2a": dict(TERRAMIND_STATISTICS["terramind_s2l2a"])}
PATCH = 16
#: torchgeo's weights (the URLs of DOFABase16_Weights.DOFA_MAE / DOFALarge16_Weights.DOFA_MAE).
RELEASES: dict[str, Release] = {
    "dofa_base_patch16_224": Release("torchgeo/dofa", "dofa_base_patch16_224-a0275954.pth"),
    "dofa_large_patch16_224": Release("torchgeo/dofa", "dofa_large_patch16_224-0ff904d3.pth"),
}
BACKBONES: tuple[str, ...] = ("dofa_small_patch16_224", "dofa_base_patch16_224", "dofa_large_patch16_224")


def rules(key: str, entry: Mapping[str, Any], chip_size: int | None) -> Iterator[str]:
    kwargs = entry.get("backbone_kwargs", {})
    for bad in ("model_bands", "img_size", "pretrained", "ckpt_data", "weights", "patch_size", "embed_dim",
                "num_heads", "num_classes"):
        if bad in kwargs:
            yield (
                f"config key '{key}.backbone_kwargs.{bad}': set by the builder or fixed by the backbone "
                f"({entry.get('backbone')}); weights come from models.<name>.weights"
            )
    yield from depth_rule(key, kwargs)


FAMILY = ModelFamily(
    name="dofa",
    description="DOFA (TerraTorch dofa_*_patch16_224, wavelength-aware, per frame) + FCN decoder",
    builder="lulc.models.dofa:build_dofa",
    foundation=True,
    colour="#8c564b",
    definition="dofa_model",
    search_space=VIT_SEARCH_SPACE,
    statistics=STATISTICS,
    backbone_statistics=lambda entry: "dofa_s2l2a",
    releases=RELEASES,
    weights_specs=("hf",),
    patch_size=lambda entry: PATCH,
    fcn_decoder=lambda entry: True,
    rules=rules,
    notes="dofa_small / base / large_patch16_224 (base and large released by torchgeo); frames encoded separately "
    "and merged (frame_merge)",
)
