"""The FCN decoder shared by the Prithvi and ViT families (:class:`FCNDecoder`, rebuilt from TerraTorch's with a
choice of norm and dropout), the auxiliary FCN head of ``aux_head`` and run.json's record of the decoder options.

Two families use these, so they live outside both family modules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


class FCNDecoder(nn.Module):
    """TerraTorch's ``FCNDecoder`` + ``SegmentationHead``, rebuilt here so the ViT baseline does not import it,
    with the two options TerraTorch's lacks or keeps apart: the norm and the dropout.

    ``num_convs`` blocks of (2x transposed conv, 3x3 conv, norm, GELU) upsample a ``(B, C, h, w)`` token grid
    by ``2 ** num_convs``; dropout (``dropout`` > 0, like TerraTorch's ``head_dropout``) and a 1x1 conv give
    the class logits. ``norm``: ``"layer"`` (LayerNorm over channels, TerraTorch's ``Norm2d``) or ``"batch"``
    (``BatchNorm2d``, as mmsegmentation's ``FCNHead``). Neither the norm choice nor the dropout changes the
    state-dict keys of the convolutions and the classifier.
    """

    def __init__(
        self, in_channels: int, channels: int, num_convs: int, num_classes: int, norm: str = "layer",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if norm not in DECODER_NORMS:
            raise ValueError(f"decoder norm {norm!r} is not one of {', '.join(DECODER_NORMS)}")
        blocks: list[nn.Module] = []
        for i in range(num_convs):
            blocks.append(
                nn.Sequential(
                    nn.ConvTranspose2d(in_channels if i == 0 else channels, channels, kernel_size=2, stride=2),
                    nn.Conv2d(channels, channels, kernel_size=3, padding=1),
                    _ChannelLayerNorm(channels) if norm == "layer" else nn.BatchNorm2d(channels),
                    nn.GELU(),
                )
            )
        self.convs = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.convs(x)))


#: ``models.<name>.decoder_norm``: the norm of the FCN decoder's blocks (:class:`FCNDecoder`).
DECODER_NORMS = ("layer", "batch")


class _ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of an image tensor (TerraTorch's ``Norm2d``)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def upscale_convs(patch: int) -> int:
    """Upsampling convolutions of the FCN decoder (a power-of-two patch: :func:`lulc.schema.model_rules`)."""
    return round(math.log2(patch))


def build_aux_head(cfg: Mapping[str, Any], in_channels: int, num_classes: int) -> FCNDecoder | None:
    """The auxiliary FCN head of ``aux_head`` (its own channels and blocks; the decoder's norm and dropout)."""
    aux = cfg["aux_head"]
    if not aux["enabled"]:
        return None
    return FCNDecoder(in_channels, int(aux["channels"]), int(aux["num_convs"]), num_classes,
                      norm=cfg["decoder_norm"], dropout=float(cfg["decoder_dropout"]))


def decoder_info(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """run.json's record of the decoder options and the auxiliary head."""
    aux = cfg["aux_head"]
    return {
        "decoder_norm": cfg["decoder_norm"] if cfg.get("decoder", "FCNDecoder") == "FCNDecoder" else None,
        "decoder_dropout": float(cfg["decoder_dropout"]),
        "aux_head": dict(aux) if aux["enabled"] else None,
    }
