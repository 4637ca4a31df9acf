"""The DOFA family (model type ``dofa``): its builder and weights loading.

**Network.** TerraTorch's DOFA backbones (``BACKBONE_REGISTRY`` ``terratorch_dofa_{small,base,large}_patch16_224``
of ``terratorch/models/backbones/dofa_vit.py``: torchgeo's ``DOFA`` in a ``DOFAEncoderWrapper``, 16-pixel patches)
on each frame. DOFA is wavelength-aware; TerraTorch looks the wavelengths of ``model_bands`` up in its
``waves_list``, and the HLS band names are its names (BLUE, GREEN, RED, NIR_NARROW, SWIR_1, SWIR_2: 0.49, 0.56,
0.665, 0.864, 1.61, 2.20 µm). The forward pass is the wrapper's (patch embedding from the wavelengths, position
table, class token, blocks; the last block's tokens, no final norm), with the position table resized
(TerraTorch's ``resize_pos_embed``) for an input grid other than the chip size's. The classifier head and the
pooling norm (``fc_norm``), which the wrapper never uses, are removed. torchgeo leaves a fresh model's fixed
position table at zeros (it expects the release to fill it); the builder fills it with the 2-D sin-cos table of
MAE (class token 0) so that a from-scratch control has positions too. ``backbone_kwargs.depth`` keeps the first
``depth`` blocks (torchgeo's constructors fix the depth): the demo's tiny encoders. Frames are folded into the
batch and merged after the last block (:class:`~lulc.models.framewise.FrameTokenNet`).

**Weights.** The releases (torchgeo's ``DOFABase16_Weights.DOFA_MAE`` / ``DOFALarge16_Weights.DOFA_MAE``,
Hugging Face ``torchgeo/dofa``) are DOFA's flat state dict (``patch_embed.*``, ``cls_token``, ``pos_embed``,
``blocks.<i>.*``; TerraTorch's loader allows only ``fc_norm.*`` / ``head.*`` to be missing and nothing
unexpected). :func:`load_dofa_encoder` maps them onto ``dofa_model.*``, sets ``head.*`` / ``fc_norm.*`` /
``norm.*`` aside, resizes ``pos_embed`` to the chip size as TerraTorch does for ``ckpt_data`` (bilinear), and
stops the run on any other key that does not match.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from lulc.families.dofa import DOFA_BANDS, PATCH, WAVELENGTHS
from lulc.models.core import BuiltModel, LULCModel, count_parameters
from lulc.models.decoders import decoder_info
from lulc.models.framewise import (
    FrameTokenNet,
    build_decoders,
    keep_blocks,
    split_prefixes,
    weights_path,
)
from lulc.models.normalization import resolve_normalization
from lulc.models.precision import import_terratorch
from lulc.models.registry import register_model
from lulc.models.weights import load_encoder_state, read_state_dict

#: Tensors of a DOFA checkpoint that the encoder does not use (classification head and pooling norms).
IGNORED_PREFIXES = ("head.", "fc_norm.", "norm.")


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos position table ``(1, 1 + grid * grid, dim)`` with a zero class-token row."""
    if dim % 4:
        raise ValueError(f"a 2-D sin-cos table needs a width divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4.0))
    coords = torch.arange(grid, dtype=torch.float64)
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")

    def one(pos: torch.Tensor) -> torch.Tensor:
        out = pos.reshape(-1)[:, None] * omega[None, :]
        return torch.cat([out.sin(), out.cos()], dim=1)

    table = torch.cat([one(gx), one(gy)], dim=1)  # MAE: the first half of the width from w, the second from h
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), table]).unsqueeze(0).float()


def _resize_pos(checkpoint: torch.Tensor, model: torch.Tensor) -> torch.Tensor:
    """A checkpoint's position table resized to the model's grid (TerraTorch's ``resize_pos_embed``, bilinear)."""
    resize_pos_embed = import_terratorch("terratorch.models.backbones.dofa_vit").resize_pos_embed
    old, new = math.isqrt(checkpoint.shape[1] - 1), math.isqrt(model.shape[1] - 1)
    return resize_pos_embed(checkpoint, (new, new), (old, old), "bilinear")


def load_dofa_encoder(encoder: nn.Module, path: str | os.PathLike[str], what: str = "weights") -> dict[str, Any]:
    """Load a DOFA checkpoint (DOFA's flat state dict) into TerraTorch's ``DOFAEncoderWrapper``; every encoder
    key must match; ``pos_embed`` is resized to the chip size."""
    path = Path(path)
    flat, ignored = split_prefixes(read_state_dict(path, what), IGNORED_PREFIXES)
    state = {f"dofa_model.{k}": v for k, v in flat.items()}
    record = load_encoder_state(encoder, state, path, what, "DOFA", {"dofa_model.pos_embed": _resize_pos},
                                "Check the backbone (small / base / large) and depth match the checkpoint, a DOFA "
                                "release (torchgeo/dofa dofa_*_patch16_224-*.pth)")
    return record | {"layout": "dofa", "head_tensors_ignored": ignored}


class _DOFANet(FrameTokenNet):
    waves: torch.Tensor

    def __init__(self, *args: Any, wavelengths: tuple[float, ...], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("waves", torch.tensor(wavelengths, dtype=torch.float32), persistent=False)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``DOFAEncoderWrapper.forward``'s last block, the class token dropped."""
        model: Any = self.encoder.dofa_model
        tokens, _ = model.patch_embed(x, self.waves)
        pos = model.pos_embed
        if pos.shape[1] - 1 != tokens.shape[1]:
            pos = _resize_pos(pos, torch.empty(1, tokens.shape[1] + 1, 1))
        tokens = tokens + pos[:, 1:, :]
        cls = (model.cls_token + pos[:, :1, :]).expand(tokens.shape[0], -1, -1)
        tokens = torch.cat((cls, tokens), dim=1)
        for block in model.blocks:
            tokens = block(tokens)
        return tokens[:, 1:, :]

    def vit_encoder(self) -> nn.Module:
        # blocks, patch_embed, pos_embed, cls_token: all the wrapper holds
        return cast(nn.Module, self.encoder.dofa_model)


@register_model("dofa")
def build_dofa(
    name: str,
    cfg: dict[str, Any],
    frames: int,
    chip_size: int,
    num_classes: int,
    pretrain_checkpoint: Path | None,
    load_weights: bool,
) -> BuiltModel:
    """DOFA encoder (HLS wavelengths) per frame + frame merge + FCN decoder."""
    registry = import_terratorch("terratorch.registry").BACKBONE_REGISTRY
    backbone = cfg["backbone"]
    kwargs = dict(cfg["backbone_kwargs"])
    depth = kwargs.pop("depth", None)
    # pretrained=False: the weights are loaded below, every key checked.
    encoder = registry.build(f"terratorch_{backbone}", model_bands=list(DOFA_BANDS), pretrained=False, weights=None,
                             img_size=chip_size, num_classes=0, **kwargs)
    model: Any = encoder.dofa_model
    model.blocks = keep_blocks(model.blocks, depth, f"models.{name}")
    for unused in ("fc_norm", "norm", "head"):  # the wrapper's forward uses none of them
        if hasattr(model, unused):
            setattr(model, unused, nn.Identity())
    with torch.no_grad():
        model.pos_embed.copy_(sincos_2d(model.pos_embed.shape[-1], chip_size // PATCH))
    path, weights = weights_path(cfg, name, load_weights)
    if path is not None:
        weights |= load_dofa_encoder(encoder, path, what=f"config key models.{name}.weights")
    dim = int(model.embed_dim)
    decoder, aux_head = build_decoders(cfg, dim, PATCH, num_classes)
    net = _DOFANet(encoder, dim, PATCH, frames, cfg["frame_merge"], decoder, aux_head, wavelengths=WAVELENGTHS)
    normalization = resolve_normalization(cfg["normalization"], name, cfg)
    info = {
        "backbone": backbone,
        "decoder": cfg["decoder"],
        "patch_size": PATCH,
        "depth": len(model.blocks),
        "bands": {"names": list(DOFA_BANDS), "wavelengths_um": list(WAVELENGTHS)},
        "frame_merge": cfg["frame_merge"],
        "encoder_parameters": count_parameters(encoder),
        "weights": weights,
        **decoder_info(cfg),
    }
    return BuiltModel(LULCModel(net, normalization), info)
