"""The U-Net family record (model type ``unet``; builder :mod:`lulc.models.unet`): segmentation-models-pytorch's
U-Net from scratch on all ``T x 6`` channels, with any of its encoders: its own (``resnet18``,
``efficientnet-b0``, ...) or a timm one through its ``tu-`` prefix (``tu-convnext_atto``, ...), the encoders
TerraTorch's SMP factory offers. A baseline."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from lulc.families.record import ModelFamily


def rules(key: str, entry: Mapping[str, Any], chip_size: int | None) -> Iterator[str]:
    if len(entry["decoder_channels"]) != int(entry["encoder_depth"]):
        yield (
            f"config key '{key}.decoder_channels': need {entry['encoder_depth']} values (encoder_depth), "
            f"got {len(entry['decoder_channels'])}"
        )
    if chip_size is not None and chip_size % 2 ** int(entry["encoder_depth"]):
        yield (
            f"config key '{key}.encoder_depth': chip size {chip_size} (chips.size) is not divisible by "
            f"2^{entry['encoder_depth']}"
        )


FAMILY = ModelFamily(
    name="unet",
    description="segmentation-models-pytorch U-Net trained from scratch on all T x 6 channels",
    builder="lulc.models.unet:build_unet",
    foundation=False,
    colour="#2ca02c",
    definition="unet_model",
    search_space={
        "lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True},
        "weight_decay": {"low": 1.0e-4, "high": 0.1, "log": True},
        "warmup_epochs": {"choices": [0, 1, 2]},
    },
    encoder_keys=("type", "encoder", "encoder_depth"),
    rules=rules,
    notes="smp encoders (resnet18, efficientnet-b0, ...) and timm encoders as tu-<name>",
)
