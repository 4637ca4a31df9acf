"""What the single-image foundation families (TerraMind, Clay, DOFA: :mod:`lulc.models.terramind`,
:mod:`lulc.models.clay`, :mod:`lulc.models.dofa`) share: the per-frame network (:class:`FrameTokenNet`: the ``T``
frames folded into the batch, encoded one by one, their last-block token grids merged by ``frame_merge`` before
the FCN decoder) and the encoder view that ``freeze_encoder`` / ``layer_decay`` act on. Their loaders end with
:func:`lulc.models.weights.load_encoder_state` (missing, unexpected and mis-shaped keys named), as Prithvi's does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lulc.models.decoders import FCNDecoder, build_aux_head, upscale_convs
from lulc.models.weights import format_names, resolve_weights


class EncoderView(nn.Module):
    """The parameters of an encoder under the names :func:`lulc.models.core.encoder_layer_id` reads (``blocks.<i>``,
    ``patch_embed``, ``cls_token``, ...), sharing them (not a copy): what ``vit_encoder()`` returns for an encoder whose
    own names differ (TerraMind's ``encoder.<i>``, Clay's ``transformer.layers.<i>``), for ``freeze_encoder`` and
    ``layer_decay``. Never part of a state dict."""

    def __init__(self, blocks: nn.ModuleList, **parts: nn.Module | nn.Parameter | None) -> None:
        super().__init__()
        self.blocks = blocks
        for name, part in parts.items():
            if part is not None:
                setattr(self, name, part)


def check_view(view: nn.Module, encoder: nn.Module) -> None:
    """A view must hold every parameter of its encoder (so freeze_encoder freezes them all)."""
    left = {id(p) for p in encoder.parameters()} - {id(p) for p in view.parameters()}
    if left:
        names = [n for n, p in encoder.named_parameters() if id(p) in left]
        raise RuntimeError(f"encoder view misses parameters: {format_names(names)}")


class FrameTokenNet(nn.Module):
    """A single-image ViT encoder on each of ``T`` frames + frame merge + FCN decoder (and auxiliary head).

    Normalised ``(B, T, 6, H, W)`` -> reflect-padded to a multiple of the patch -> ``(B*T, 6, H, W)`` -> the
    family's :meth:`tokens` (patch tokens of the last block, ``(B*T, h*w, D)``) -> ``(B, T, D, h, w)`` -> merged to
    ``(B, D, h, w)`` (``concat``: 1x1 convolution of the ``T x D`` stacked channels; ``mean``) -> logits, bilinearly
    resized to the padded size where the decoder's upsampling falls short, and cropped to ``H x W``.
    """

    def __init__(self, encoder: nn.Module, dim: int, patch: int, frames: int, merge: str, decoder: FCNDecoder,
                 aux_head: FCNDecoder | None) -> None:
        super().__init__()
        self.encoder = encoder
        self.patch = patch
        self.frames = frames
        self.merge = merge
        self.frame_proj = nn.Conv2d(frames * dim, dim, kernel_size=1) if merge == "concat" else None
        self.decoder = decoder
        self.aux_head = aux_head

    def tokens(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - every family overrides it
        raise NotImplementedError

    def vit_encoder(self) -> nn.Module:
        return self.encoder

    def _grid(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        batch, frames, bands, height, width = x.shape
        if frames != self.frames:
            raise ValueError(f"this model was built for {self.frames} frames, got {frames}")
        pad_h, pad_w = (-height) % self.patch, (-width) % self.patch
        flat = x.reshape(batch * frames, bands, height, width)
        if pad_h or pad_w:
            flat = nn.functional.pad(flat, (0, pad_w, 0, pad_h), mode="reflect")
        h, w = flat.shape[-2] // self.patch, flat.shape[-1] // self.patch
        tokens = self.tokens(flat)
        if tokens.shape[1] != h * w:
            raise RuntimeError(f"expected {h * w} patch tokens, the encoder gave {tokens.shape[1]}")
        grid = tokens.transpose(1, 2).reshape(batch, frames, tokens.shape[-1], h, w)
        if self.frame_proj is not None:
            merged = self.frame_proj(grid.flatten(1, 2))
        else:
            merged = grid.mean(dim=1)
        return merged, (height, width)

    def _logits(self, head: nn.Module, grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        logits = head(grid)
        padded = (grid.shape[-2] * self.patch, grid.shape[-1] * self.patch)
        if logits.shape[-2:] != padded:
            logits = nn.functional.interpolate(logits, size=padded, mode="bilinear", align_corners=False)
        return logits[..., : size[0], : size[1]]

    def forward(self, x: torch.Tensor, **coords: torch.Tensor) -> torch.Tensor:
        grid, size = self._grid(x)
        return self._logits(self.decoder, grid, size)

    def forward_with_aux(self, x: torch.Tensor, **coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        grid, size = self._grid(x)
        aux = self._logits(self.aux_head, grid, size) if self.aux_head is not None else None
        return self._logits(self.decoder, grid, size), aux


def build_decoders(cfg: Mapping[str, Any], dim: int, patch: int, num_classes: int) -> tuple[FCNDecoder,
                                                                                             FCNDecoder | None]:
    """The FCN decoder (log2(patch) upsampling blocks) and the auxiliary head of an entry."""
    decoder = FCNDecoder(dim, int(cfg["decoder_channels"]), upscale_convs(patch), num_classes,
                         norm=cfg["decoder_norm"], dropout=float(cfg["decoder_dropout"]))
    return decoder, build_aux_head(cfg, dim, num_classes)


def keep_blocks(blocks: nn.ModuleList, depth: Any, key: str) -> nn.ModuleList:
    """``backbone_kwargs.depth``: the first ``depth`` blocks (the demo's tiny encoders)."""
    if depth is None:
        return blocks
    if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= len(blocks):
        raise ValueError(f"config key {key}.backbone_kwargs.depth: expected 1..{len(blocks)}, got {depth!r}")
    return nn.ModuleList(list(blocks)[:depth])


def weights_path(cfg: Mapping[str, Any], name: str, load_weights: bool) -> tuple[Path | None, dict[str, Any]]:
    """``models.<name>.weights``: ``none``, ``hf`` (the family's release in the local cache) or a file."""
    spec = cfg["weights"] if load_weights else "none"  # pretrain: refused with the config (the family's record)
    path, record = resolve_weights(spec, name, cfg, None)
    if not load_weights:
        record = {"source": "trained checkpoint"}
    return path, record


def split_prefixes(state: Mapping[str, torch.Tensor], ignored: Iterable[str]) -> tuple[dict[str, torch.Tensor], int]:
    """``state`` without the keys starting with any of ``ignored``, and how many those were."""
    ignored = tuple(ignored)
    kept = {k: v for k, v in state.items() if not k.startswith(ignored)}
    return kept, len(state) - len(kept)


# ----------------------------------------------------------------------------------------------------- TerraMind

