"""The U-Net family (model type ``unet``): the one place for its builder and its family-specific pieces.

A segmentation-models-pytorch ``Unet`` trained from scratch on all ``T x 6`` channels (no pretrained weights);
segmentation-models-pytorch is imported only by the builder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from lulc.hls import PRITHVI_BANDS
from lulc.models.core import BuiltModel, LULCModel
from lulc.models.normalization import resolve_normalization
from lulc.models.registry import register_model


class _UNetNet(nn.Module):
    """smp U-Net on the ``T x 6`` channels of time-major input (channel ``t * 6 + b``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.flatten(1, 2))


@register_model("unet")
def build_unet(
    name: str,
    cfg: dict[str, Any],
    frames: int,
    chip_size: int,
    num_classes: int,
    pretrain_checkpoint: Path | None,
    load_weights: bool,
) -> BuiltModel:
    """segmentation-models-pytorch U-Net from scratch (``encoder_weights=None``), ``T x 6`` input channels."""
    import segmentation_models_pytorch as smp

    depth = int(cfg["encoder_depth"])  # against the chip size: lulc.schema.model_rules
    model = smp.Unet(
        encoder_name=cfg["encoder"],
        encoder_weights=None,
        encoder_depth=depth,
        decoder_channels=list(cfg["decoder_channels"]),
        in_channels=frames * len(PRITHVI_BANDS),
        classes=num_classes,
    )
    # smp keeps the ResNet stages beyond encoder_depth although forward() never runs them: drop them, so
    # checkpoints and optimiser state do not carry millions of unused parameters.
    for stage in range(depth, 5):
        if hasattr(model.encoder, f"layer{stage}"):
            delattr(model.encoder, f"layer{stage}")
    normalization = resolve_normalization(cfg["normalization"], name)
    info = {"encoder": cfg["encoder"], "weights": {"source": "none", "note": "U-Net trained from scratch"}}
    return BuiltModel(LULCModel(_UNetNet(model), normalization), info)
