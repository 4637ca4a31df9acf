"""The Clay family (model type ``clay``): its builder and weights loading.

**Network.** The Clay v1 encoder of TerraTorch (``terratorch/models/backbones/clay_v1``: ``EmbeddingEncoder``, the
encoder TerraTorch's ``Embedder`` of ``clay_v1_base`` wraps as ``clay_encoder``, 8-pixel patches) on each frame.
``Embedder`` fixes the base sizes (dim 768, depth 12, 12 heads of 64, mlp ratio 4) and ignores other arguments, so
the builder makes the same ``EmbeddingEncoder`` itself, with those sizes unless ``backbone_kwargs`` overrides them
(the demo's tiny encoders); the key names are ``Embedder``'s (``clay_encoder.*``). Clay is wavelength-aware: its
dynamic patch embedding is generated from the bands' centre wavelengths, Clay's own for blue, green, red, nir08
(B8A), swir16, swir22 (:data:`lulc.families.clay.WAVELENGTHS`). As TerraTorch's ``Datacuber`` does, time and
location are zeros; the ground sample distance of the position encoding is HLS's 30 m (``backbone_kwargs.gsd``;
TerraTorch's default is 1). Frames are folded into the batch and merged after the last block
(:class:`~lulc.models.framewise.FrameTokenNet`); the class token is dropped.

**Weights.** The release (``made-with-clay/Clay-legacy`` ``v1/clay-v1-base.ckpt``) is a Lightning checkpoint whose
``state_dict`` holds the whole Clay MAE (``model.encoder.*``, ``model.decoder.*``, ...). TerraTorch's
``Embedder.transform_state_dict`` keeps ``model.encoder.*`` as ``clay_encoder.*``; so does
:func:`load_clay_encoder`, which counts the rest as ignored and stops the run on any encoder key that does not
match.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lulc.families.clay import CLAY_BANDS, OTHER_KWARGS, PATCH, SIZE_KWARGS, WAVELENGTHS
from lulc.models.core import BuiltModel, LULCModel, count_parameters
from lulc.models.decoders import decoder_info
from lulc.models.framewise import (
    EncoderView,
    FrameTokenNet,
    build_decoders,
    check_view,
    weights_path,
)
from lulc.models.normalization import resolve_normalization
from lulc.models.precision import import_terratorch
from lulc.models.registry import register_model
from lulc.models.weights import load_encoder_state, read_state_dict

#: The prefix of the encoder's tensors in a Clay Lightning checkpoint (TerraTorch: ``^model\.encoder\.``).
RELEASE_PREFIX = "model.encoder."


class ClayEncoder(nn.Module):
    """TerraTorch's Clay ``EmbeddingEncoder`` under ``Embedder``'s key names (``clay_encoder.*``), with the
    wavelengths and ground sample distance of the HLS bands."""

    waves: torch.Tensor

    def __init__(self, clay_encoder: nn.Module, wavelengths: tuple[float, ...], gsd: float) -> None:
        super().__init__()
        self.clay_encoder = clay_encoder
        self.register_buffer("waves", torch.tensor(wavelengths, dtype=torch.float32), persistent=False)
        self.gsd = float(gsd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 6, H, W)`` -> the last block's patch tokens ``(N, H/8 * W/8, D)`` (class token dropped)."""
        encoder: Any = self.clay_encoder
        encoder.grid_size = x.shape[-1] // encoder.patch_size  # the position encoding of this input's grid
        if x.shape[-2] != x.shape[-1]:
            raise ValueError(f"Clay's position encoding needs square input, got {tuple(x.shape[-2:])}")
        zeros = torch.zeros(x.shape[0], 4, device=x.device, dtype=x.dtype)
        cube = {"pixels": x, "time": zeros, "latlon": zeros, "gsd": self.gsd, "waves": self.waves}
        return encoder(cube)[-1][:, 1:, :]


def load_clay_encoder(encoder: ClayEncoder, path: str | os.PathLike[str], what: str = "weights") -> dict[str, Any]:
    """Load a Clay v1 checkpoint (a Lightning ``state_dict`` with ``model.encoder.*``) into ``encoder``; every
    encoder key must match."""
    path = Path(path)
    raw = read_state_dict(path, what)
    state = {"clay_encoder." + k[len(RELEASE_PREFIX):]: v for k, v in raw.items() if k.startswith(RELEASE_PREFIX)}
    hint = "Check the backbone_kwargs sizes match the checkpoint"
    if not state:
        hint = (f"It has no {RELEASE_PREFIX}* tensors: not a Clay v1 checkpoint (a Lightning checkpoint whose "
                "state_dict holds model.encoder.*, like v1/clay-v1-base.ckpt)")
    record = load_encoder_state(encoder, state, path, what, "Clay", hint=hint)
    return record | {"layout": "clay_lightning", "non_encoder_tensors_ignored": len(raw) - len(state)}


class _ClayNet(FrameTokenNet):
    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def vit_encoder(self) -> nn.Module:
        clay: Any = self.encoder.clay_encoder
        return EncoderView(clay.transformer.layers, patch_embed=clay.patch_embedding, cls_token=clay.cls_token,
                           norm=clay.transformer.norm)


@register_model("clay")
def build_clay(
    name: str,
    cfg: dict[str, Any],
    frames: int,
    chip_size: int,
    num_classes: int,
    pretrain_checkpoint: Path | None,
    load_weights: bool,
) -> BuiltModel:
    """Clay v1 encoder (HLS wavelengths) per frame + frame merge + FCN decoder."""
    modules = import_terratorch("terratorch.models.backbones.clay_v1.modules")
    kwargs = dict(cfg["backbone_kwargs"])
    unknown = sorted(set(kwargs) - set(SIZE_KWARGS) - set(OTHER_KWARGS))
    if unknown:
        raise ValueError(f"config key models.{name}.backbone_kwargs: unknown Clay arguments {', '.join(unknown)}")
    sizes = {k: kwargs.get(k, v) for k, v in SIZE_KWARGS.items()}
    gsd = float(kwargs.get("gsd", OTHER_KWARGS["gsd"]))
    clay = modules.EmbeddingEncoder(img_size=chip_size, patch_size=PATCH, **sizes)
    encoder = ClayEncoder(clay, WAVELENGTHS, gsd)
    path, weights = weights_path(cfg, name, load_weights)
    if path is not None:
        weights |= load_clay_encoder(encoder, path, what=f"config key models.{name}.weights")
    dim = int(sizes["dim"])
    decoder, aux_head = build_decoders(cfg, dim, PATCH, num_classes)
    net = _ClayNet(encoder, dim, PATCH, frames, cfg["frame_merge"], decoder, aux_head)
    check_view(net.vit_encoder(), encoder)
    normalization = resolve_normalization(cfg["normalization"], name, cfg)
    info = {
        "backbone": cfg["backbone"],
        "decoder": cfg["decoder"],
        "patch_size": PATCH,
        "sizes": sizes,
        "gsd": gsd,
        "bands": {"names": list(CLAY_BANDS), "wavelengths_um": list(WAVELENGTHS)},
        "frame_merge": cfg["frame_merge"],
        "encoder_parameters": count_parameters(encoder),
        "weights": weights,
        **decoder_info(cfg),
    }
    return BuiltModel(LULCModel(net, normalization), info)

