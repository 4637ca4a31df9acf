"""The model families at 224 px, for the speed benchmarks (``train_speed.py --families``, ``predict_speed.py
--families``): one configuration per family at a released size (random weights: speed does not depend on them;
nothing is downloaded), its parameters and its forward GFLOPs per sample, counted by
``torch.utils.flop_counter.FlopCounterMode`` (matrix multiplications and convolutions; a training step costs
about three times the forward)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from lulc.coords import batch_coords, temporal_coords
from lulc.models import build_model

FRAMES, SIZE = 3, 224
#: One entry per family, at a released size (the sizes a team would choose between), 224 px, T = 3.
FAMILY_MODELS: dict[str, dict[str, Any]] = {
    "prithvi_eo_v1_100+FCN": {"type": "prithvi", "backbone": "prithvi_eo_v1_100", "weights": "none",
                              "decoder_channels": 256},
    "prithvi_eo_v2_300_tl+FCN": {"type": "prithvi", "backbone": "prithvi_eo_v2_300_tl", "weights": "none",
                                 "decoder_channels": 256},
    "terramind_v1_base+FCN": {"type": "terramind", "backbone": "terramind_v1_base", "weights": "none",
                              "decoder_channels": 256},
    "clay_v1_base+FCN": {"type": "clay", "backbone": "clay_v1_base", "weights": "none", "decoder_channels": 256},
    "dofa_base+FCN": {"type": "dofa", "backbone": "dofa_base_patch16_224", "weights": "none",
                      "decoder_channels": 256},
    "unet_resnet18": {"type": "unet", "encoder": "resnet18", "encoder_depth": 5,
                      "decoder_channels": [256, 128, 64, 32, 16]},
    "vit_small_p16+FCN": {"type": "vit", "arch": "vit_small_patch16_224", "patch_size": 16, "model_kwargs": {},
                          "decoder_channels": 256},
}  # fmt: skip


def sample_coords(batch: int) -> dict[str, torch.Tensor]:
    """Time and location inputs for a batch (used by ``_tl`` models only)."""
    dates = ["2023-04-15", "2023-07-01", "2023-09-20"][:FRAMES]
    return batch_coords(temporal_coords(dates), torch.tensor([[42.0, -93.5]] * batch).numpy())


def build(name: str) -> Any:
    """The built model (random weights) of a family row."""
    return build_model(name.split("+")[0], FAMILY_MODELS[name], FRAMES, SIZE)


def forward_gflops(model: torch.nn.Module) -> float:
    """Forward GFLOPs of one ``T x 6 x 224 x 224`` sample."""
    raw = torch.randint(0, 3000, (1, FRAMES, 6, SIZE, SIZE), dtype=torch.int16)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(raw, sample_coords(1)) if getattr(model, "time_location", False) else model(raw)
    return round(counter.get_total_flops() / 1e9, 2)
