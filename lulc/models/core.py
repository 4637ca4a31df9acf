"""The model wrapper every family builds: :class:`LULCModel` (normalisation + a segmentation network, raw int16
chips ``(B, T, 6, H, W)`` in, logits ``(B, classes, H, W)`` out), :class:`BuiltModel` (a model and the record of
how it was built), and what training does to a wrapped model's ViT encoder (:func:`vit_encoder`,
:func:`freeze_encoder`, :func:`encoder_layer_id`).

The families and the registry build on these, and training uses them whatever the family, so they belong to no
family module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lulc.coords import LOCATION_KEY, TEMPORAL_KEY
from lulc.models.normalization import HLSNormalize, Normalization, check_normalised, normalised_bound


class LULCModel(nn.Module):
    """Normalisation + a segmentation network: raw int16 chips in, logits out.

    Args:
        net: maps normalised ``(B, T, 6, H, W)`` float input to logits ``(B, classes, H, W)``; a net whose
            family takes time and location also takes ``temporal_coords`` / ``location_coords`` keywords.
        normalization: the statistics (kept as buffers, so checkpoints carry them).
        max_abs: the plausibility bound of :func:`check_normalised`; None = :func:`normalised_bound` of the
            statistics.
        time_location: the net takes each frame's date and the sample's location (``coords`` of
            :meth:`forward`, :mod:`lulc.coords`); they are then required, never silently left out.
    """

    def __init__(self, net: nn.Module, normalization: Normalization, max_abs: float | None = None,
                 time_location: bool = False) -> None:
        super().__init__()
        self.normalize = HLSNormalize(normalization)
        self.net = net
        self.normalization = normalization
        self.max_abs = normalised_bound(normalization) if max_abs is None else max_abs
        self.time_location = time_location
        self.family = ""  # the model family (set by lulc.models.build_model)

    def forward(self, raw: torch.Tensor, coords: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        return self.forward_normalised(self.normalize(raw), coords)

    def forward_normalised(self, x: torch.Tensor, coords: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        check_normalised(x, self.max_abs)
        return self.net(x, **self.net_coords(x, coords))

    def net_coords(self, x: torch.Tensor, coords: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        """The keywords the net takes: none for a plain model (``coords`` is ignored), the checked time and
        location tensors on ``x``'s device for one with :attr:`time_location`."""
        if not self.time_location:
            return {}
        if coords is None or TEMPORAL_KEY not in coords or LOCATION_KEY not in coords:
            raise ValueError(
                "this model takes each frame's date and the sample's location (time / location embeddings); "
                f"pass coords with {TEMPORAL_KEY} (B, T, 2) and {LOCATION_KEY} (B, 2)"
            )
        time, place = coords[TEMPORAL_KEY], coords[LOCATION_KEY]
        batch, frames = x.shape[0], x.shape[1]
        if tuple(time.shape) != (batch, frames, 2) or tuple(place.shape) != (batch, 2):
            raise ValueError(
                f"coords for {batch} samples of {frames} frames must be {TEMPORAL_KEY} ({batch}, {frames}, 2) and "
                f"{LOCATION_KEY} ({batch}, 2); got {tuple(time.shape)} and {tuple(place.shape)}"
            )
        return {TEMPORAL_KEY: time.to(x.device, torch.float32), LOCATION_KEY: place.to(x.device, torch.float32)}

    def forward_with_aux(
        self, raw: torch.Tensor, coords: Mapping[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Training only: the logits and those of the auxiliary head (``aux_head.enabled``; None without one),
        both ``(B, classes, H, W)``. :meth:`forward` (evaluation, prediction) returns the main logits only."""
        x = self.normalize(raw)
        check_normalised(x, self.max_abs)
        extra = self.net_coords(x, coords)
        paired = getattr(self.net, "forward_with_aux", None)
        return paired(x, **extra) if paired is not None else (self.net(x, **extra), None)


def batch_coords_of(batch: Mapping[str, Any]) -> dict[str, torch.Tensor] | None:
    """The time / location tensors of a DataLoader batch (None when the dataset gave none)."""
    if TEMPORAL_KEY in batch and LOCATION_KEY in batch:
        return {TEMPORAL_KEY: batch[TEMPORAL_KEY], LOCATION_KEY: batch[LOCATION_KEY]}
    return None


def vit_encoder(model: nn.Module) -> nn.Module | None:
    """The ViT encoder (a TerraTorch ``PrithviViT`` or a timm ``VisionTransformer``, with ``blocks``) of a Prithvi
    or ViT :class:`LULCModel`, or None (a U-Net). ``freeze_encoder`` and ``layer_decay`` act on it."""
    net = model.net if isinstance(model, LULCModel) else model
    getter = getattr(net, "vit_encoder", None)
    return getter() if callable(getter) else None


#: Top-level names of a ViT encoder's embedding parameters (patch, position, time / location embeddings and
#: the class / register / mask tokens): the layer below the first block for :func:`encoder_layer_id`.
EMBEDDING_NAMES = ("patch_embed", "pos_embed", "cls_token", "reg_token", "mask_token", "temporal_embed_enc",
                   "location_embed_enc")


def encoder_layer_id(name: str, depth: int) -> int:
    """Layer of an encoder parameter for layer-wise learning-rate decay (mmsegmentation's ``get_layer_id_for_vit``,
    the BEiT convention): 0 for the embeddings (:data:`EMBEDDING_NAMES`), ``i + 1`` for ``blocks.<i>.*``, and
    ``depth + 1`` for the rest (the final norm), which the decoder and heads share. The learning rate of layer
    ``k`` is ``lr * layer_decay ** (depth + 1 - k)``."""
    head, _, rest = name.partition(".")
    if head == "blocks":
        return int(rest.partition(".")[0]) + 1
    if head in EMBEDDING_NAMES:
        return 0
    return depth + 1


def freeze_encoder(model: nn.Module) -> int:
    """``freeze_encoder``: turn off the gradients of the ViT encoder's parameters (the decoder and the auxiliary
    head still train; the optimiser gets only parameters that require gradients). Returns the parameters
    frozen; raises ValueError for a model without a ViT encoder."""
    encoder = vit_encoder(model)
    if encoder is None:
        raise ValueError(f"{type(model).__name__}: freeze_encoder needs a Prithvi or ViT encoder")
    frozen = 0
    for param in encoder.parameters():
        param.requires_grad_(False)
        frozen += param.numel()
    return frozen


@dataclass
class BuiltModel:
    """A model and the record of how it was built (weights, normalisation, sizes) for run.json."""

    model: LULCModel
    info: dict[str, Any]


def count_parameters(module: nn.Module) -> int:
    """The number of parameters of ``module`` (run.json's ``parameters`` and ``encoder_parameters``)."""
    return sum(p.numel() for p in module.parameters())
