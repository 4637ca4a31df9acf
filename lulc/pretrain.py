"""Pretrain stage (optional): masked-autoencoder pretraining of a Prithvi encoder on local, unlabelled chips.

The ``pretrain`` rule trains TerraTorch's Prithvi MAE (``FULL_MODEL_REGISTRY``'s ``<backbone>_mae`` where
TerraTorch registers one, its ``PrithviMAE`` class with the backbone's config otherwise) with the same
backbone, frames, chip size and normalisation as the ``models.<name>`` entry it serves, on every chip of
every AOI's chip store (labels unused; all splits, as in self-supervised pretraining on the target region).
It writes the MAE's ``state_dict``: ``encoder.*`` + ``decoder.*``, the key layout of the Prithvi-EO-2.0
releases, so ``models.<name>.weights: pretrain`` loads it through :func:`lulc.models.prithvi.load_prithvi_encoder`,
the same strict loader as the official weights (and the stage checks that before it writes anything).

Outputs: ``checkpoint.pt`` and ``pretrain.json`` (loss curve, settings, wall time, samples/s).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, RandomSampler
from tqdm import tqdm

from lulc.chips import ChipStore
from lulc.dataset import ChipStoreDataset
from lulc.hls import PRITHVI_BANDS
from lulc.io import atomic_path
from lulc.models import (
    HLSNormalize,
    check_normalised,
    import_terratorch,
    load_prithvi_encoder,
    normalised_bound,
    resolve_normalization,
    resolve_precision,
)
from lulc.recipe import augment_batch, chip_geometry, lr_multiplier
from lulc.schema import model_entry, section

logger = logging.getLogger(__name__)

def build_mae(backbone: str, frames: int, chip_size: int, backbone_kwargs: Mapping[str, Any]) -> torch.nn.Module:
    """TerraTorch's Prithvi MAE for ``backbone`` (random init), ``frames`` frames of ``chip_size`` pixels."""
    PrithviMAE = import_terratorch("terratorch.models.backbones.prithvi_mae").PrithviMAE
    prithvi_cfgs = import_terratorch("terratorch.models.backbones.prithvi_vit").prithvi_cfgs
    FULL_MODEL_REGISTRY = import_terratorch("terratorch.registry").FULL_MODEL_REGISTRY

    kwargs = {"num_frames": frames, "img_size": chip_size, **backbone_kwargs}
    if f"terratorch_{backbone}_mae" in FULL_MODEL_REGISTRY:
        return FULL_MODEL_REGISTRY.build(f"terratorch_{backbone}_mae", pretrained=False, **kwargs)
    if backbone not in prithvi_cfgs:
        raise ValueError(f"no Prithvi configuration for backbone {backbone!r} (known: {', '.join(prithvi_cfgs)})")
    return PrithviMAE(**{**prithvi_cfgs[backbone], "in_chans": 6, **kwargs})


def all_chips(stores: Mapping[str, Path]) -> pd.DataFrame:
    """Every chip of every store as an ``aoi, index`` table (the unlabelled pretraining pool)."""
    frames = []
    for aoi, path in sorted(stores.items()):
        n = np.load(ChipStore(Path(path)).images, mmap_mode="r").shape[0]
        frames.append(pd.DataFrame({"aoi": aoi, "index": np.arange(n)}))
    return pd.concat(frames, ignore_index=True)


def pretrain(
    model_name: str,
    model_cfg: Mapping[str, Any] | None,
    cfg: Mapping[str, Any] | None,
    stores: Mapping[str, str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    threads: int | None = None,
    progress: bool = True,
    dataset_stats: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """MAE-pretrain the encoder of ``models.<model_name>``; write ``checkpoint.pt`` + ``pretrain.json``.

    ``dataset_stats``: the stats rule's file, where the entry's normalization is ``dataset``.
    """
    start = time.perf_counter()
    model_cfg = model_entry(model_name, model_cfg)
    if model_cfg["type"] != "prithvi":
        raise ValueError(f"pretraining {model_name!r}: it is a {model_cfg['type']} model, not prithvi")
    cfg = section("pretrain", cfg)
    if threads:
        torch.set_num_threads(int(threads))
    store_paths = {aoi: Path(path) for aoi, path in stores.items()}
    out_dir = Path(out_dir)
    frames, chip_size = chip_geometry(store_paths)
    backbone = model_cfg["backbone"]
    torch.manual_seed(cfg["seed"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    mae = build_mae(backbone, frames, chip_size, model_cfg["backbone_kwargs"]).to(device)
    normalization = resolve_normalization(model_cfg["normalization"], model_name, model_cfg, dataset_stats)
    normalize = HLSNormalize(normalization).to(device)
    bound = normalised_bound(normalization)

    dataset = ChipStoreDataset(store_paths, all_chips(store_paths))
    generator = torch.Generator().manual_seed(cfg["seed"])
    loader = DataLoader(
        dataset, batch_size=cfg["batch_size"], sampler=RandomSampler(dataset, generator=generator), generator=generator
    )
    steps = cfg["epochs"] * len(loader)
    warmup = min(cfg["warmup_epochs"] * len(loader), max(0, steps - 1))
    decay = [p for p in mae.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in mae.parameters() if p.requires_grad and p.dim() <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg["lr"],
        betas=(0.9, 0.95),
        fused=True,  # one kernel for all parameters (CUDA and CPU)
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_multiplier(s, warmup, steps, 0.01))
    # pretrain.precision: auto = bf16 autocast where Prithvi training was measured faster in bf16 (the choice of
    # `train.precision: auto`); fp32 elsewhere (also on GPUs without bf16: fp16 would need a gradient scaler)
    precision_choice = resolve_precision(cfg["precision"], "train", "prithvi", device.type)
    use_bf16 = precision_choice.precision == "bf16"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()
    logger.info(
        "MAE pretraining of %s (%d frames, %d px) on %d unlabelled chips: %d epochs x %d steps on %s",
        backbone, frames, chip_size, len(dataset), cfg["epochs"], len(loader), device,
    )
    curve = []
    samples, train_seconds = 0, 0.0
    mae.train()
    for epoch in tqdm(range(cfg["epochs"]), desc=f"pretrain {model_name}", unit="epoch", disable=not progress):
        epoch_start, losses, weights = time.perf_counter(), [], []
        for batch in loader:
            image, _ = augment_batch(batch["image"].to(device), batch["mask"].to(device))
            x = normalize(image).transpose(1, 2)  # (B, 6, T, H, W): Prithvi's layout
            check_normalised(x, bound)
            with autocast:
                loss = mae(x, mask_ratio=cfg["mask_ratio"])[0]["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            weights.append(x.shape[0])
            samples += x.shape[0]
        train_seconds += time.perf_counter() - epoch_start
        curve.append({"epoch": epoch, "loss": round(float(np.average(losses, weights=weights)), 6),
                      "lr": optimizer.param_groups[0]["lr"], "time_s": round(time.perf_counter() - start, 3)})
        logger.info("epoch %d: reconstruction loss %.4f", epoch, curve[-1]["loss"])

    summary = {
        "model": model_name,
        "backbone": backbone,
        "backbone_kwargs": model_cfg["backbone_kwargs"],
        "frames": frames,
        "chip_size": chip_size,
        "chips": len(dataset),
        "normalization": normalization.to_dict(),
        "config": cfg,
        "curve": curve,
        "key_layout": "prithvi_mae (encoder.*, decoder.*)",
        "wall_time_s": None,
        "train_time_s": round(train_seconds, 3),
        "samples_per_s": round(samples / train_seconds, 3) if train_seconds else None,
        "device": str(device),
        "precision": "bf16-mixed" if use_bf16 else "32-true",
        "precision_choice": precision_choice.record(cfg["precision"]),
        "matmul_precision": torch.get_float32_matmul_precision(),
    }
    checkpoint = out_dir / "checkpoint.pt"
    with atomic_path(checkpoint) as tmp_checkpoint, atomic_path(out_dir / "pretrain.json") as tmp_json:
        with open(tmp_checkpoint, "wb") as file:  # a file object: the archive is not named after the temp file
            torch.save({k: v.detach().cpu() for k, v in mae.state_dict().items()}, file)
        # The fine-tuning loader must accept what we write: check it with the very same function.
        encoder = import_terratorch("terratorch.registry").BACKBONE_REGISTRY.build(
            f"terratorch_{backbone}", pretrained=False, num_frames=frames, img_size=chip_size,
            bands=list(PRITHVI_BANDS), **model_cfg["backbone_kwargs"],
        )
        loaded = load_prithvi_encoder(encoder, tmp_checkpoint, what="pretrain checkpoint")
        summary["tensors"] = {"encoder": loaded["tensors_loaded"], "decoder": loaded["decoder_tensors_ignored"]}
        summary["wall_time_s"] = round(time.perf_counter() - start, 3)
        tmp_json.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    logger.info("wrote %s (final loss %.4f, %.1f s)", checkpoint, curve[-1]["loss"], summary["wall_time_s"])
    return summary
