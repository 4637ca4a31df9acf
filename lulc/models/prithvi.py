"""The Prithvi family (model type ``prithvi``): the one place for its builder, its weights loading and its
family-specific pieces.

A Prithvi encoder from TerraTorch's ``BACKBONE_REGISTRY`` (``prithvi_eo_v1_100``, ``prithvi_eo_v2_300``,
``..._tl``, ``prithvi_eo_tiny``) with ``T`` frames, and TerraTorch's ``EncoderDecoderFactory`` decoder
(``FCNDecoder``, or ``UperNetDecoder``) behind the necks ``SelectIndices`` +
``ReshapeTokensToImage(effective_time_dim=T)``. Weights come from a local file in the official Prithvi key layout
(the Hugging Face release, or the ``pretrain`` rule's output), loaded by :func:`load_prithvi_encoder`, which fails
loudly on a missing or unreadable file and on any key that does not match. TerraTorch's own loader only warns on
mismatched keys, and silently ignores ``ckpt_path`` unless ``pretrained=True``, so it is not used. With
``decoder_norm: batch`` or an ``aux_head``, which TerraTorch's FCN decoder cannot give, the FCN decoder is
:class:`lulc.models.decoders.FCNDecoder` behind the same necks (:class:`_PrithviFCNNet`); otherwise it is
TerraTorch's. TerraTorch is imported only by the builder (about 10 s on a small CPU), through
:func:`lulc.models.precision.import_terratorch`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from lulc.hls import PRITHVI_BANDS
from lulc.models.core import BuiltModel, LULCModel, count_parameters
from lulc.models.decoders import FCNDecoder, build_aux_head, decoder_info, upscale_convs
from lulc.models.normalization import resolve_normalization
from lulc.models.precision import import_terratorch
from lulc.models.registry import register_model
from lulc.models.weights import load_encoder_state, read_state_dict, resolve_weights


def encoder_state_from_prithvi_checkpoint(
    state: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], list[str], str]:
    """Map a checkpoint in an official Prithvi key layout to encoder keys.

    Layouts: the MAE layout of the Prithvi-EO-2.0 releases and TerraTorch's ``PrithviMAE``
    (``encoder.*`` + ``decoder.*``, also what the ``pretrain`` rule writes), and the flat layout of the
    original Prithvi-100M release (``blocks.*``, ``decoder_*``, ``mask_token``). Returns the encoder
    state, the dropped MAE-decoder keys and the layout name.
    """
    encoder: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    mae_layout = any(k.startswith("encoder.") for k in state)
    for key, value in state.items():
        key = key.replace("_timm_module.", "")  # old TerraTorch checkpoints
        if key.startswith("decoder.") or key.startswith("decoder_") or key == "mask_token":
            dropped.append(key)
        elif mae_layout and key.startswith("encoder."):
            encoder[key.removeprefix("encoder.")] = value
        else:
            encoder[key] = value
    return encoder, dropped, "prithvi_mae" if mae_layout else "prithvi_flat"


#: Encoder buffers that are fixed sin-cos tables of the input size and frame count, not learned weights.
FIXED_PRITHVI_KEYS = ("pos_embed",)


def load_prithvi_encoder(encoder: nn.Module, path: str | os.PathLike[str], what: str = "weights") -> dict[str, Any]:
    """Load a Prithvi checkpoint into a TerraTorch ``PrithviViT``; every key must match.

    Raises :class:`WeightsError` when the file is missing or unreadable, or when the checkpoint lacks
    encoder keys (missing), has keys the encoder does not (unexpected) or tensors of another shape; the
    message names them. Fixed sin-cos position tables are rebuilt for this model's frames and chip size
    when their shape differs. Returns what was loaded (path, SHA-256, layout, counts).
    """
    path = Path(path)
    state, dropped, layout = encoder_state_from_prithvi_checkpoint(read_state_dict(path, what))
    rebuild = {key: (lambda checkpoint, model: model) for key in FIXED_PRITHVI_KEYS}
    record = load_encoder_state(encoder, state, path, what, "Prithvi", rebuild,
                                "Check the backbone (v1 / v2, size, _tl) matches the checkpoint")
    return record | {"layout": layout, "decoder_tensors_ignored": len(dropped)}


class _PrithviNet(nn.Module):
    """TerraTorch's PixelWiseModel on time-major input: ``(B, T, 6, H, W)`` -> ``(B, 6, T, H, W)`` -> logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, **coords: torch.Tensor) -> torch.Tensor:
        return self.model(x.transpose(1, 2), **coords).output

    def vit_encoder(self) -> nn.Module:
        return cast(nn.Module, self.model.encoder)


def _terratorch_utils() -> Any:
    """``terratorch.models.utils`` (imported once, by the builder, through :func:`import_terratorch`)."""
    import sys

    return sys.modules.get("terratorch.models.utils") or import_terratorch("terratorch.models.utils")


class _PrithviFCNNet(nn.Module):
    """A Prithvi encoder + TerraTorch's necks + lulc's own :class:`FCNDecoder` (and an auxiliary FCN head on the
    same features), for the FCN options TerraTorch's decoder lacks (``decoder_norm: batch``, ``aux_head``).

    The input is handled as TerraTorch's PixelWiseModel does (reflect padding to the patch size, bilinear
    rescaling of the logits to the padded size, centre crop), so both Prithvi paths take the same tiles.
    """

    def __init__(self, encoder: nn.Module, neck: nn.Module, decoder: FCNDecoder, aux_head: FCNDecoder | None,
                 patch_size: Any) -> None:
        super().__init__()
        self.encoder = encoder
        self.neck = neck  # TerraTorch's NeckSequential: SelectIndices + ReshapeTokensToImage (no parameters)
        self.decoder = decoder
        self.aux_head = aux_head
        self.patch_size = patch_size

    def vit_encoder(self) -> nn.Module:
        return self.encoder

    def _features(
        self, x: torch.Tensor, coords: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
        utils = _terratorch_utils()
        x = x.transpose(1, 2)
        size_out = (int(x.shape[-2]), int(x.shape[-1]))
        x = utils.pad_images(x, self.patch_size, "reflect")
        size_in = (int(x.shape[-2]), int(x.shape[-1]))
        return self.neck(self.encoder(x, **coords), image_size=size_in)[-1], size_in, size_out

    @staticmethod
    def _logits(head: nn.Module, grid: torch.Tensor, size_in: tuple[int, int],
                size_out: tuple[int, int]) -> torch.Tensor:
        logits = head(grid)
        if logits.shape[-2:] != size_in:
            logits = nn.functional.interpolate(logits, size=size_in, mode="bilinear")
        return _terratorch_utils().center_crop(logits, size_out)

    def forward(self, x: torch.Tensor, **coords: torch.Tensor) -> torch.Tensor:
        grid, size_in, size_out = self._features(x, coords)
        return self._logits(self.decoder, grid, size_in, size_out)

    def forward_with_aux(self, x: torch.Tensor, **coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        grid, size_in, size_out = self._features(x, coords)
        logits = self._logits(self.decoder, grid, size_in, size_out)
        if self.aux_head is None:
            return logits, None
        return logits, self._logits(self.aux_head, grid, size_in, size_out)


@register_model("prithvi")
def build_prithvi(
    name: str,
    cfg: dict[str, Any],
    frames: int,
    chip_size: int,
    num_classes: int,
    pretrain_checkpoint: Path | None,
    load_weights: bool,
) -> BuiltModel:
    """Prithvi encoder (TerraTorch BACKBONE_REGISTRY, ``frames`` frames) + EncoderDecoderFactory decoder."""
    EncoderDecoderFactory = import_terratorch("terratorch.models").EncoderDecoderFactory
    BACKBONE_REGISTRY = import_terratorch("terratorch.registry").BACKBONE_REGISTRY

    backbone_name = cfg["backbone"]
    # pretrained=False: weights are loaded below by load_prithvi_encoder, which checks every key.
    encoder = BACKBONE_REGISTRY.build(
        f"terratorch_{backbone_name}",
        pretrained=False,
        num_frames=frames,
        img_size=chip_size,
        bands=list(PRITHVI_BANDS),
        **cfg["backbone_kwargs"],
    )
    spec = cfg["weights"] if load_weights else "none"
    path, weights = resolve_weights(spec, name, cfg, pretrain_checkpoint)
    if not load_weights:
        weights = {"source": "trained checkpoint"}
    if path is not None:
        weights |= load_prithvi_encoder(encoder, path, what=f"config key models.{name}.weights")

    depth = len(encoder.blocks)
    patch = encoder.patch_embed.patch_size
    effective_time = frames // patch[0]
    if cfg["decoder"] == "UperNetDecoder":
        indices = [round((i + 1) * depth / 4) - 1 for i in range(4)]
        necks = [
            {"name": "SelectIndices", "indices": indices},
            {"name": "ReshapeTokensToImage", "effective_time_dim": effective_time},
            {"name": "LearnedInterpolateToPyramidal"},
        ]
        decoder_kwargs = {"channels": cfg["decoder_channels"]}
    else:
        indices = [depth - 1]
        necks = [
            {"name": "SelectIndices", "indices": indices},
            {"name": "ReshapeTokensToImage", "effective_time_dim": effective_time},
        ]
        decoder_kwargs = {"channels": cfg["decoder_channels"], "num_convs": upscale_convs(patch[-1])}
    net: nn.Module
    own_fcn = cfg["decoder"] == "FCNDecoder" and (cfg["decoder_norm"] != "layer" or cfg["aux_head"]["enabled"])
    if own_fcn:  # batch norm or an auxiliary head: lulc's FCNDecoder behind TerraTorch's necks
        neck_list, channels = import_terratorch("terratorch.models.necks").build_neck_list(
            necks, encoder.out_channels
        )
        neck = import_terratorch("terratorch.models.necks").NeckSequential(*neck_list)
        decoder = FCNDecoder(channels[-1], int(cfg["decoder_channels"]), decoder_kwargs["num_convs"], num_classes,
                             norm=cfg["decoder_norm"], dropout=float(cfg["decoder_dropout"]))
        padding_patch = next(m.patch_size for m in encoder.modules() if hasattr(m, "patch_size"))
        net = _PrithviFCNNet(encoder, neck, decoder, build_aux_head(cfg, channels[-1], num_classes), padding_patch)
    else:  # TerraTorch's decoder (FCN with LayerNorm, or UPerNet) and SegmentationHead
        dropout = float(cfg["decoder_dropout"])
        model = EncoderDecoderFactory().build_model(
            task="segmentation",
            backbone=encoder,
            decoder=cfg["decoder"],
            decoder_kwargs=decoder_kwargs,
            num_classes=num_classes,
            necks=necks,
            rescale=True,
            **({"head_kwargs": {"dropout": dropout}} if dropout else {}),
        )
        net = _PrithviNet(model)
    normalization = resolve_normalization(cfg["normalization"], name, cfg)
    info = {
        "backbone": backbone_name,
        "decoder": cfg["decoder"],
        "decoder_implementation": "lulc" if own_fcn else "terratorch",
        "feature_indices": indices,
        "encoder_parameters": count_parameters(encoder),
        "weights": weights,
        **decoder_info(cfg),
    }
    return BuiltModel(LULCModel(net, normalization), info)
