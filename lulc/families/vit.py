"""The ViT family record (model type ``vit``; builder :mod:`lulc.models.vit`): a timm ViT on all ``T x 6``
channels, a baseline whatever its weights (natural-image weights at most)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from lulc.families.record import VIT_SEARCH_SPACE, ModelFamily, power_of_two


def rules(key: str, entry: Mapping[str, Any], chip_size: int | None) -> Iterator[str]:
    if not power_of_two(int(entry["patch_size"])):
        yield (
            f"config key '{key}': the FCN decoder needs a power-of-two patch size, got {entry['patch_size']}; "
            "use another patch size"
        )


FAMILY = ModelFamily(
    name="vit",
    description="a timm ViT on all T x 6 channels + an FCN decoder like TerraTorch's",
    builder="lulc.models.vit:build_vit",
    foundation=False,
    colour="#ff7f0e",
    definition="vit_model",
    search_space=VIT_SEARCH_SPACE,
    encoder_keys=("type", "arch", "patch_size", "model_kwargs"),
    patch_size=lambda entry: int(entry["patch_size"]),
    fcn_decoder=lambda entry: True,
    rules=rules,
    notes="any timm ViT architecture (arch), from scratch or a local natural-image checkpoint",
)
