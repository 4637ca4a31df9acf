"""The ViT family (model type ``vit``): the one place for its builder, its weights loading and its family-specific
pieces.

A timm ViT on all ``T x 6`` channels with the FCN decoder of :mod:`lulc.models.decoders` (built like
TerraTorch's); natural-image weights only from a local file (timm adapts the input convolution and position
embeddings, after the key names are checked here). timm is imported only by the builder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from lulc.hls import PRITHVI_BANDS
from lulc.models.core import BuiltModel, LULCModel, count_parameters
from lulc.models.decoders import FCNDecoder, build_aux_head, decoder_info, upscale_convs
from lulc.models.normalization import resolve_normalization
from lulc.models.registry import register_model
from lulc.models.weights import WeightsError, format_names, read_state_dict, resolve_weights, sha256_file


class _ViTNet(nn.Module):
    """timm ViT tokens -> ``(B, D, h, w)`` grid -> FCN decoder (and the auxiliary FCN head, where configured);
    input is the ``T x 6`` channels."""

    def __init__(self, vit: nn.Module, decoder: FCNDecoder, aux_head: FCNDecoder | None = None) -> None:
        super().__init__()
        self.vit = vit
        self.decoder = decoder
        self.aux_head = aux_head

    def vit_encoder(self) -> nn.Module:
        return self.vit

    def _grid(self, x: torch.Tensor) -> torch.Tensor:
        vit: Any = self.vit  # a timm VisionTransformer (typed as a plain Module)
        tokens = vit.forward_features(x.flatten(1, 2))[:, vit.num_prefix_tokens :]
        h, w = vit.patch_embed.grid_size
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[-1], h, w)

    @staticmethod
    def _logits(head: nn.Module, grid: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logits = head(grid)
        if logits.shape[-2:] != x.shape[-2:]:
            logits = nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._logits(self.decoder, self._grid(x), x)

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        grid = self._grid(x)
        aux = self._logits(self.aux_head, grid, x) if self.aux_head is not None else None
        return self._logits(self.decoder, grid, x), aux


@register_model("vit")
def build_vit(
    name: str,
    cfg: dict[str, Any],
    frames: int,
    chip_size: int,
    num_classes: int,
    pretrain_checkpoint: Path | None,
    load_weights: bool,
) -> BuiltModel:
    """timm ViT with ``in_chans = T x 6`` + FCN decoder; natural-image weights only from a local file."""
    import timm

    kwargs = {
        "in_chans": frames * len(PRITHVI_BANDS),
        "img_size": chip_size,
        "patch_size": int(cfg["patch_size"]),
        "num_classes": 0,
        "global_pool": "",
        **cfg["model_kwargs"],
    }
    spec = cfg["weights"] if load_weights else "none"
    path, weights = resolve_weights(spec, name, cfg, pretrain_checkpoint)
    if path is not None:
        what = f"config key models.{name}.weights"
        # timm only warns about mismatched keys: check the names first (shapes of the input convolution and
        # position embeddings legitimately differ; timm adapts those), ignoring the classifier head.
        names = {k for k in read_state_dict(path, what) if not k.startswith("head.")}
        expected = set(timm.create_model(cfg["arch"], pretrained=False, **kwargs).state_dict())
        missing, unexpected = sorted(expected - names), sorted(names - expected)
        if missing or unexpected:
            problems = [f"{kind} keys ({len(keys)}): {format_names(keys)}"
                        for kind, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
            raise WeightsError(
                f"{what}: checkpoint {path} does not match {cfg['arch']} with {cfg['model_kwargs']}: "
                + "; ".join(problems)
            )
        try:  # timm adapts the RGB input convolution to in_chans and resamples patch / position embeddings
            vit = timm.create_model(cfg["arch"], pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)
        except Exception as error:
            raise WeightsError(
                f"config key models.{name}.weights: cannot load {path} into {cfg['arch']}: {type(error).__name__}: "
                f"{error}"
            ) from error
        weights |= {"path": str(path), "sha256": sha256_file(path), "note": "natural-image weights, adapted by timm"}
    else:
        vit = timm.create_model(cfg["arch"], pretrained=False, **kwargs)
        if not load_weights:
            weights = {"source": "trained checkpoint"}
    features: int = vit.num_features  # type: ignore[assignment]  # timm models are typed as plain Modules
    decoder = FCNDecoder(features, int(cfg["decoder_channels"]), upscale_convs(kwargs["patch_size"]),
                         num_classes, norm=cfg["decoder_norm"], dropout=float(cfg["decoder_dropout"]))
    normalization = resolve_normalization(cfg["normalization"], name)
    info = {"arch": cfg["arch"], "patch_size": kwargs["patch_size"], "weights": weights,
            "encoder_parameters": count_parameters(vit), **decoder_info(cfg)}
    net = _ViTNet(vit, decoder, build_aux_head(cfg, features, num_classes))
    return BuiltModel(LULCModel(net, normalization), info)
