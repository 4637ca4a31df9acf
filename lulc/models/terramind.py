"""The TerraMind family (model type ``terramind``): its builder and weights loading (the per-frame network and the
strict loader it shares with Clay and DOFA are :mod:`lulc.models.framewise`'s).

**Network.** TerraTorch's ``TerraMindViT`` (``BACKBONE_REGISTRY`` ``terratorch_terramind_v1_*``) on the raw
Sentinel-2 L2A modality (``untok_sen2l2a@224``, 16-pixel patches). The six HLS bands are S2L2A's BLUE, GREEN, RED,
NIR_NARROW, SWIR_1, SWIR_2 (B02, B03, B04, B8A, B11, B12); TerraTorch's own band selection
(``select_modality_patch_embed_weights``) keeps their columns of the 12-band patch embedding, so no band is
zero-filled. TerraMind is a single-image encoder: the ``T`` frames are folded into the batch, encoded one by one,
and their last-block token grids merged (:class:`FrameTokenNet`: ``frame_merge: concat``, a 1x1 convolution of the
stacked ``T x D`` channels back to ``D``, or ``mean``) before :class:`~lulc.models.decoders.FCNDecoder` (log2(16) =
4 upsampling blocks) and the optional auxiliary head.

**Weights.** The release (``TerraMind_v1_*.pt``) is the whole TerraMind encoder-decoder's flat state dict.
TerraTorch's loader (``checkpoint_filter_fn``) keeps the keys the ViT has and only warns about the rest; here
(:func:`load_terramind_encoder`) the 12-band encoder is loaded before the band selection (TerraTorch's order), the
tensors of the generative parts (``decoder*``, ``mask_token``, tokenizers, other modalities' embeddings) are set
aside and counted, the fixed sin-cos position table is rebuilt for the chip size, and any other key that does
not match (missing, unexpected, another shape) stops the run with its name
(:func:`lulc.models.weights.load_encoder_state`).

``backbone_kwargs.depth`` keeps the first ``depth`` blocks (TerraTorch's builders fix the sizes): the demo's tiny
encoders. TerraTorch is imported only by the builder, through :func:`lulc.models.precision.import_terratorch`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lulc.families.terramind import PATCH, S2L2A_BANDS
from lulc.models.core import BuiltModel, LULCModel, count_parameters
from lulc.models.decoders import decoder_info
from lulc.models.framewise import (
    EncoderView,
    FrameTokenNet,
    build_decoders,
    check_view,
    keep_blocks,
    split_prefixes,
    weights_path,
)
from lulc.models.normalization import resolve_normalization
from lulc.models.precision import import_terratorch
from lulc.models.registry import register_model
from lulc.models.weights import load_encoder_state, read_state_dict

#: TerraMind's modality of the HLS bands (TerraTorch's ``MODALITY_INFO`` key for ``S2L2A``).
MODALITY = "untok_sen2l2a@224"


def terramind_ignored_prefixes(encoder: Any) -> tuple[str, ...]:
    """Key prefixes of a TerraMind release that the ViT encoder does not have: the generative decoder, the mask
    token, tokenizers and the embeddings of the other modalities (TerraTorch's filter drops them too)."""
    ours = tuple(f"encoder_embeddings.{m}." for m in encoder.encoder_embeddings)
    return ("decoder_embeddings.", "decoder.", "decoder_norm.", "decoder_proj_context.", "mask_token", "tokenizer.",
            *[f"encoder_embeddings.{m}." for m in _known_modalities() if f"encoder_embeddings.{m}." not in ours])


def _known_modalities() -> list[str]:
    return list(import_terratorch("terratorch.models.backbones.terramind.model.modality_info").MODALITY_INFO)


def load_terramind_encoder(encoder: nn.Module, path: str | os.PathLike[str], what: str = "weights") -> dict[str, Any]:
    """Load a TerraMind release (or a file in its layout: the flat state dict of TerraMind, ``encoder.<i>.*``,
    ``encoder_embeddings.<modality>.*``, ``encoder_norm.*``) into a 12-band ``TerraMindViT``; every encoder key
    must match. The sin-cos position table is rebuilt for the chip size."""
    path = Path(path)
    state, ignored = split_prefixes(read_state_dict(path, what), terramind_ignored_prefixes(encoder))
    fixed = {k: (lambda ckpt, model: model) for k in encoder.state_dict() if k.endswith(".pos_emb")}
    record = load_encoder_state(encoder, state, path, what, "TerraMind", fixed,
                                "Check the backbone (tiny / small / base / large) and depth match the checkpoint, "
                                "a TerraMind release (TerraMind_v1_*.pt)")
    return record | {"layout": "terramind", "generative_tensors_ignored": ignored}


class _TerraMindNet(FrameTokenNet):
    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder({"S2L2A": x})[-1]  # merge_method mean over the one modality: (N, L, D), normed

    def vit_encoder(self) -> nn.Module:
        tm: Any = self.encoder
        view = EncoderView(tm.encoder, patch_embed=tm.encoder_embeddings, reg_token=tm.register_tokens,
                           norm=tm.encoder_norm)
        return view


@register_model("terramind")
def build_terramind(
    name: str,
    cfg: dict[str, Any],
    frames: int,
    chip_size: int,
    num_classes: int,
    pretrain_checkpoint: Path | None,
    load_weights: bool,
) -> BuiltModel:
    """TerraMind 1.0 encoder (the six HLS bands as S2L2A) per frame + frame merge + FCN decoder."""
    registry = import_terratorch("terratorch.registry").BACKBONE_REGISTRY
    tm_register = import_terratorch("terratorch.models.backbones.terramind.model.terramind_register")
    backbone = cfg["backbone"]
    kwargs = dict(cfg["backbone_kwargs"])
    depth = kwargs.pop("depth", None)
    # pretrained=False: the weights are loaded below, every key checked; the band selection comes after loading
    # (TerraTorch's order), so the 12-band release fits.
    encoder = registry.build(f"terratorch_{backbone}", pretrained=False, modalities=["S2L2A"], img_size=chip_size,
                             merge_method="mean", **kwargs)
    encoder.encoder = keep_blocks(encoder.encoder, depth, f"models.{name}")
    encoder.out_channels = encoder.out_channels[: len(encoder.encoder)]
    path, weights = weights_path(cfg, name, load_weights)
    if path is not None:
        weights |= load_terramind_encoder(encoder, path, what=f"config key models.{name}.weights")
    encoder = tm_register.select_modality_patch_embed_weights(encoder, {"S2L2A": list(S2L2A_BANDS)},
                                                             tm_register.PRETRAINED_BANDS)
    dim = int(encoder.out_channels[-1])
    decoder, aux_head = build_decoders(cfg, dim, PATCH, num_classes)
    net = _TerraMindNet(encoder, dim, PATCH, frames, cfg["frame_merge"], decoder, aux_head)
    check_view(net.vit_encoder(), encoder)
    normalization = resolve_normalization(cfg["normalization"], name, cfg)
    info = {
        "backbone": backbone,
        "decoder": cfg["decoder"],
        "patch_size": PATCH,
        "depth": len(encoder.encoder),
        "bands": {"modality": "S2L2A", "names": list(S2L2A_BANDS), "sentinel2": ["B02", "B03", "B04", "B8A", "B11",
                                                                                    "B12"]},
        "frame_merge": cfg["frame_merge"],
        "encoder_parameters": count_parameters(encoder),
        "weights": weights,
        **decoder_info(cfg),
    }
    return BuiltModel(LULCModel(net, normalization), info)
