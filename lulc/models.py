"""Model registry: Prithvi (TerraTorch) + FCN decoder, a U-Net and a ViT, chosen by name in the config.

Every model is a :class:`LULCModel`: raw int16 chips ``(B, T, 6, H, W)`` (time-major, :mod:`lulc.hls`) go
in, logits ``(B, NUM_CLASSES, H, W)`` come out. The model normalises its own input on the device with the
statistics it was configured with (the Prithvi pretraining mean / std by default), sets HLS nodata
(-9999) to 0 after normalisation, and refuses input that is not what it expects: floats to
:meth:`LULCModel.forward` (already normalised, or reflectance converted by hand), or values in the
thousands to :meth:`LULCModel.forward_normalised` (raw reflectance that skipped normalisation, the classic
silent failure that gives near-chance results with Prithvi).

Model types (``models.<name>.type``, by default the entry's name):

* ``prithvi``: a Prithvi encoder from TerraTorch's ``BACKBONE_REGISTRY`` (``prithvi_eo_v1_100``,
  ``prithvi_eo_v2_300``, ``..._tl``, ``prithvi_eo_tiny``) with ``T`` frames, and TerraTorch's
  ``EncoderDecoderFactory`` decoder (``FCNDecoder``, or ``UperNetDecoder``) behind the necks
  ``SelectIndices`` + ``ReshapeTokensToImage(effective_time_dim=T)``. Weights come from a local file in
  the official Prithvi key layout (the Hugging Face release, or the ``pretrain`` rule's output), loaded by
  :func:`load_prithvi_encoder`, which fails loudly on a missing or unreadable file and on any key that
  does not match. TerraTorch's own loader only warns on mismatched keys, and silently ignores
  ``ckpt_path`` unless ``pretrained=True``, so it is not used.
* ``unet``: segmentation-models-pytorch ``Unet`` from scratch on all ``T x 6`` channels.
* ``vit``: a timm ViT on all ``T x 6`` channels with an FCN decoder built like TerraTorch's; natural-image
  weights only from a local file (timm adapts the input convolution and position embeddings).

TerraTorch, timm and segmentation-models-pytorch are imported only by the builder that needs them
(importing TerraTorch takes about 10 s on a small CPU). Importing TerraTorch also sets the process-wide
``torch.set_float32_matmul_precision("medium")`` (bf16 matmuls on AMX CPUs, TF32 on NVIDIA GPUs); every
import of it goes through :func:`import_terratorch`, which restores :data:`FP32_MATMUL_PRECISION`, so that
"fp32" means fp32 on every machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lulc.classes import NUM_CLASSES
from lulc.config import model_entry
from lulc.hls import PRITHVI_BANDS, REFLECTANCE_NODATA

#: Pretraining statistics of the Prithvi releases (reflectance x 10000), per band in PRITHVI_BANDS order.
NORMALIZATIONS: dict[str, dict[str, tuple[float, ...]]] = {
    "prithvi_v1": {
        "mean": (775.0, 1081.0, 1229.0, 2497.0, 2204.0, 1611.0),
        "std": (1282.0, 1270.0, 1399.0, 1368.0, 1292.0, 1155.0),
    },
    "prithvi_v2": {
        "mean": (1087.0, 1342.0, 1433.0, 2734.0, 1958.0, 1363.0),
        "std": (2248.0, 2179.0, 2178.0, 1850.0, 1242.0, 1049.0),
    },
}

#: Normalised input beyond this absolute value is taken for raw reflectance. Normalised HLS stays within
#: about +-10 (saturated snow: (16000 - 775) / 1282 = 11.9); raw reflectance is in the hundreds to thousands.
MAX_ABS_NORMALISED = 50.0

#: Format tag of the checkpoints written by :func:`save_trained_model`.
CHECKPOINT_FORMAT = "lulc-model/1"

#: The matmul precision of fp32 tensors in every stage (``torch.set_float32_matmul_precision``): full fp32.
#: bf16 / fp16 come only from an explicit autocast (``train.precision``, ``predict.precision``), never from
#: this process-wide flag, which TerraTorch lowers to ``"medium"`` when it is imported.
FP32_MATMUL_PRECISION = "highest"


def enforce_fp32_matmul_precision() -> str:
    """Set :data:`FP32_MATMUL_PRECISION` process-wide and return the effective setting (for the records)."""
    torch.set_float32_matmul_precision(FP32_MATMUL_PRECISION)
    return torch.get_float32_matmul_precision()


def import_terratorch(module: str) -> Any:
    """Import a TerraTorch module, then undo the matmul precision its import sets (TerraTorch 1.2's
    ``clay_v15`` module calls ``torch.set_float32_matmul_precision("medium")`` at import)."""
    imported = importlib.import_module(module)
    enforce_fp32_matmul_precision()
    return imported


#: Keys of a model entry that are training hyperparameters (used by lulc.train, not by the builders).
HPARAM_KEYS: tuple[str, ...] = ("lr", "weight_decay", "epochs", "batch_size")


class WeightsError(RuntimeError):
    """A configured checkpoint is missing, unreadable, or does not match the model's keys."""


class UnnormalisedInputError(ValueError):
    """A model received input that was not normalised (raw reflectance, or the wrong dtype)."""


# ----------------------------------------------------------------------------------- normalisation


@dataclass(frozen=True)
class Normalization:
    """Per-band mean and standard deviation (reflectance x 10000) and where they came from."""

    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "mean": list(self.mean), "std": list(self.std)}


def resolve_normalization(spec: Any, model_name: str, backbone: str | None = None) -> Normalization:
    """Turn ``models.<name>.normalization`` into statistics.

    ``spec`` is ``"prithvi_v1"``, ``"prithvi_v2"``, ``"backbone"`` (the pretraining statistics of the
    configured Prithvi backbone: v1 for ``prithvi_eo_v1_*``, v2 otherwise) or ``{mean: [6], std: [6]}``.
    """
    key = f"config key models.{model_name}.normalization"
    if spec == "backbone":
        if not backbone:
            raise ValueError(f"{key}: 'backbone' needs a Prithvi backbone; use prithvi_v1, prithvi_v2 or mean/std")
        spec = "prithvi_v1" if backbone.startswith("prithvi_eo_v1") else "prithvi_v2"
    if isinstance(spec, str):
        if spec not in NORMALIZATIONS:
            raise ValueError(f"{key}: unknown statistics {spec!r} (known: backbone, {', '.join(NORMALIZATIONS)})")
        stats = NORMALIZATIONS[spec]
        return Normalization(spec, stats["mean"], stats["std"])
    if isinstance(spec, Mapping) and set(spec) == {"mean", "std"}:
        mean, std = (tuple(float(v) for v in spec[k]) for k in ("mean", "std"))
        if len(mean) != len(PRITHVI_BANDS) or len(std) != len(PRITHVI_BANDS) or min(std) <= 0:
            raise ValueError(f"{key}: mean and std need {len(PRITHVI_BANDS)} values each, std > 0")
        return Normalization("custom", mean, std)
    raise ValueError(f"{key}: expected backbone, prithvi_v1, prithvi_v2 or {{mean: [...], std: [...]}}, got {spec!r}")


class HLSNormalize(nn.Module):
    """Raw HLS reflectance ``(B, T, 6, H, W)`` (int16, x 10000) -> float32 ``(x - mean) / std``, nodata -> 0."""

    mean: torch.Tensor
    inv_std: torch.Tensor

    def __init__(self, normalization: Normalization, nodata: int = REFLECTANCE_NODATA) -> None:
        super().__init__()
        shape = (1, 1, len(PRITHVI_BANDS), 1, 1)
        self.register_buffer("mean", torch.tensor(normalization.mean, dtype=torch.float32).view(shape))
        self.register_buffer("inv_std", 1.0 / torch.tensor(normalization.std, dtype=torch.float32).view(shape))
        self.nodata = nodata

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        if raw.is_floating_point() or raw.dtype == torch.bool:
            raise UnnormalisedInputError(
                f"expected raw integer HLS reflectance (int16, x 10000), got {raw.dtype}; a model normalises its "
                "own input, pass already-normalised tensors to forward_normalised()"
            )
        if raw.dim() != 5 or raw.shape[2] != len(PRITHVI_BANDS):
            raise ValueError(f"expected chips shaped (B, T, {len(PRITHVI_BANDS)}, H, W), got {tuple(raw.shape)}")
        x = (raw.float() - self.mean) * self.inv_std
        return x.masked_fill(raw == self.nodata, 0.0)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast is fast.

    Training (``train.precision: auto``) and prediction (``predict.precision: auto``) use bf16 autocast on such
    CPUs; on others bf16 is emulated and slower than fp32.
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    with contextlib.suppress(Exception):  # private PyTorch helpers: absent means "do not assume"
        return any(getattr(torch.cpu, name)() for name in checks if hasattr(torch.cpu, name))
    return False


def auto_precision(device_type: str) -> str:
    """The precision ``auto`` picks on a device type, for training, pretraining and prediction alike.

    ``"bf16"`` on CUDA GPUs with bf16 (``"fp16"`` on older ones) and on CPUs with native bf16
    (:func:`cpu_has_native_bf16`); ``"fp32"`` elsewhere, where bf16 would be emulated and slower.
    """
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device_type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def channels_last_convolutions(model: nn.Module) -> nn.Module:
    """Store the 2-D (transposed) convolutions' weights channels-last, in place; returns ``model``.

    Under bf16 autocast oneDNN's convolutions are fastest on channels-last tensors (the decoder's activations
    follow the weights' layout); the arithmetic and the state-dict keys are unchanged.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            module.to(memory_format=torch.channels_last)
    return model


def check_normalised(x: torch.Tensor, max_abs: float = MAX_ABS_NORMALISED) -> None:
    """Raise :class:`UnnormalisedInputError` unless ``x`` is a float tensor within ``+-max_abs``."""
    if not x.is_floating_point():
        raise UnnormalisedInputError(f"expected normalised float input, got {x.dtype} (raw reflectance?)")
    peak = float(x.detach().abs().amax()) if x.numel() else 0.0
    if not math.isfinite(peak) or peak > max_abs:
        raise UnnormalisedInputError(
            f"input does not look normalised: max |value| = {peak:.4g} > {max_abs:g}. HLS reflectance "
            "(x 10000) must be normalised with the pretraining mean / std first (models.<name>.normalization)"
        )


class LULCModel(nn.Module):
    """Normalisation + a segmentation network: raw int16 chips in, logits out.

    Args:
        net: maps normalised ``(B, T, 6, H, W)`` float input to logits ``(B, classes, H, W)``.
        normalization: the statistics (kept as buffers, so checkpoints carry them).
        max_abs: the plausibility bound of :func:`check_normalised`.
    """

    def __init__(self, net: nn.Module, normalization: Normalization, max_abs: float = MAX_ABS_NORMALISED) -> None:
        super().__init__()
        self.normalize = HLSNormalize(normalization)
        self.net = net
        self.normalization = normalization
        self.max_abs = max_abs

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.forward_normalised(self.normalize(raw))

    def forward_normalised(self, x: torch.Tensor) -> torch.Tensor:
        check_normalised(x, self.max_abs)
        return self.net(x)


# --------------------------------------------------------------------------------------- weights


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file (recorded with every run, so a result names the exact weights it used)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _read_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    """``torch.load`` a tensor dict (weights only), unwrapping ``state_dict`` / ``model``; fail loudly."""
    if not path.is_file():
        raise WeightsError(f"{what}: checkpoint {path} does not exist")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt / foreign files
        raise WeightsError(f"{what}: cannot read checkpoint {path}: {type(error).__name__}: {error}") from error
    for wrapper in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(wrapper), Mapping):
            loaded = loaded[wrapper]
    if (
        not isinstance(loaded, Mapping)
        or not loaded
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items())
    ):
        raise WeightsError(f"{what}: {path} is not a state dict (a mapping of parameter names to tensors)")
    return dict(loaded)


def _names(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


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
    state, dropped, layout = encoder_state_from_prithvi_checkpoint(_read_state_dict(path, what))
    target = encoder.state_dict()
    rebuilt = []
    for key in FIXED_PRITHVI_KEYS:
        if key in state and key in target and state[key].shape != target[key].shape:
            state[key] = target[key]
            rebuilt.append(key)
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    mismatched = sorted(
        f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(target[k].shape)})"
        for k in set(state) & set(target)
        if state[k].shape != target[k].shape
    )
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"missing keys ({len(missing)}): {_names(missing)}")
        if unexpected:
            problems.append(f"unexpected keys ({len(unexpected)}): {_names(unexpected)}")
        if mismatched:
            problems.append(f"shape mismatches ({len(mismatched)}): {_names(mismatched)}")
        raise WeightsError(
            f"{what}: checkpoint {path} does not match the encoder ({type(encoder).__name__}, {len(target)} tensors): "
            + "; ".join(problems)
            + ". Check the backbone (v1 / v2, size, _tl) matches the checkpoint"
        )
    encoder.load_state_dict(state, strict=True)
    return {
        "path": str(path),
        "sha256": sha256_file(path),
        "layout": layout,
        "tensors_loaded": len(state) - len(rebuilt),
        "tensors_rebuilt": rebuilt,
        "decoder_tensors_ignored": len(dropped),
    }


def resolve_weights(
    spec: Any, model_name: str, backbone: str | None, pretrain_checkpoint: str | os.PathLike[str] | None
) -> tuple[Path | None, dict[str, Any]]:
    """Where the weights of ``models.<name>.weights`` live: ``(path or None, record)``; fail loudly.

    ``none``: random initialisation. ``pretrain``: the ``pretrain`` rule's checkpoint (``pretrain_checkpoint``).
    ``hf``: the official release in the local Hugging Face cache (never downloaded). Anything else: a path.
    """
    key = f"config key models.{model_name}.weights"
    if spec in (None, "none"):
        return None, {"source": "none", "note": "random initialisation"}
    if spec == "pretrain":
        if pretrain_checkpoint is None:
            raise WeightsError(f"{key}: 'pretrain' needs the pretrain rule's checkpoint, none was given")
        return Path(pretrain_checkpoint), {"source": "pretrain"}
    if spec == "hf":
        from huggingface_hub import try_to_load_from_cache

        pretrained_weights = import_terratorch("terratorch.models.backbones.prithvi_vit").pretrained_weights

        if backbone not in pretrained_weights:
            raise WeightsError(
                f"{key}: no official release of {backbone!r} (released: {', '.join(pretrained_weights)})"
            )
        repo, filename = pretrained_weights[backbone]["hf_hub_id"], pretrained_weights[backbone]["hf_hub_filename"]
        cached = try_to_load_from_cache(repo, filename)
        if not isinstance(cached, str):
            raise WeightsError(
                f"{key}: {repo}/{filename} is not in the local Hugging Face cache and nothing is downloaded at run "
                f"time; fetch it once with `hf download {repo} {filename}` or set the key to a local file"
            )
        return Path(cached), {"source": "huggingface_cache", "repo": repo, "filename": filename}
    return Path(str(spec)), {"source": "file"}


# --------------------------------------------------------------------------------------- builders


@dataclass
class BuiltModel:
    """A model and the record of how it was built (weights, normalisation, sizes) for run.json."""

    model: LULCModel
    info: dict[str, Any]


Builder = Callable[[str, dict[str, Any], int, int, int, "Path | None", bool], BuiltModel]
#: Model type -> builder ``(name, cfg, frames, chip_size, num_classes, pretrain_checkpoint, load_weights)``.
MODEL_BUILDERS: dict[str, Builder] = {}


def register_model(model_type: str) -> Callable[[Builder], Builder]:
    """Register a builder under a model type (like TerraTorch's registries, one entry per name)."""

    def decorator(builder: Builder) -> Builder:
        if model_type in MODEL_BUILDERS:
            raise KeyError(f"model type {model_type!r} is already registered")
        MODEL_BUILDERS[model_type] = builder
        return builder

    return decorator


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class FCNDecoder(nn.Module):
    """TerraTorch's ``FCNDecoder`` + ``SegmentationHead``, rebuilt here so the ViT baseline does not import it.

    ``num_convs`` blocks of (2x transposed conv, 3x3 conv, LayerNorm over channels, GELU) upsample a
    ``(B, C, h, w)`` token grid by ``2 ** num_convs``; a 1x1 conv gives the class logits.
    """

    def __init__(self, in_channels: int, channels: int, num_convs: int, num_classes: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for i in range(num_convs):
            blocks.append(
                nn.Sequential(
                    nn.ConvTranspose2d(in_channels if i == 0 else channels, channels, kernel_size=2, stride=2),
                    nn.Conv2d(channels, channels, kernel_size=3, padding=1),
                    _ChannelLayerNorm(channels),
                    nn.GELU(),
                )
            )
        self.convs = nn.Sequential(*blocks)
        self.head = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(x))


class _ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of an image tensor (TerraTorch's ``Norm2d``)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _upscale_convs(patch: int) -> int:
    """Upsampling convolutions of the FCN decoder (a power-of-two patch: :func:`lulc.config.model_rules`)."""
    return round(math.log2(patch))


class _PrithviNet(nn.Module):
    """TerraTorch's PixelWiseModel on time-major input: ``(B, T, 6, H, W)`` -> ``(B, 6, T, H, W)`` -> logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.transpose(1, 2)).output


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
    path, weights = resolve_weights(spec, name, backbone_name, pretrain_checkpoint)
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
        decoder_kwargs = {"channels": cfg["decoder_channels"], "num_convs": _upscale_convs(patch[-1])}
    model = EncoderDecoderFactory().build_model(
        task="segmentation",
        backbone=encoder,
        decoder=cfg["decoder"],
        decoder_kwargs=decoder_kwargs,
        num_classes=num_classes,
        necks=necks,
        rescale=True,
    )
    normalization = resolve_normalization(cfg["normalization"], name, backbone_name)
    info = {
        "backbone": backbone_name,
        "decoder": cfg["decoder"],
        "feature_indices": indices,
        "encoder_parameters": _count(encoder),
        "weights": weights,
    }
    return BuiltModel(LULCModel(_PrithviNet(model), normalization), info)


class _UNetNet(nn.Module):
    """smp U-Net on the ``T x 6`` channels of time-major input (channel ``t * 6 + b``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.flatten(1, 2))


@register_model("unet")
def build_unet(
    name: str,
    cfg: dict[str, Any],
    frames: int,
    chip_size: int,
    num_classes: int,
    pretrain_checkpoint: Path | None,
    load_weights: bool,
) -> BuiltModel:
    """segmentation-models-pytorch U-Net from scratch (``encoder_weights=None``), ``T x 6`` input channels."""
    import segmentation_models_pytorch as smp

    depth = int(cfg["encoder_depth"])  # against the chip size: lulc.config.model_rules
    model = smp.Unet(
        encoder_name=cfg["encoder"],
        encoder_weights=None,
        encoder_depth=depth,
        decoder_channels=list(cfg["decoder_channels"]),
        in_channels=frames * len(PRITHVI_BANDS),
        classes=num_classes,
    )
    # smp keeps the ResNet stages beyond encoder_depth although forward() never runs them: drop them, so
    # checkpoints and optimiser state do not carry millions of unused parameters.
    for stage in range(depth, 5):
        if hasattr(model.encoder, f"layer{stage}"):
            delattr(model.encoder, f"layer{stage}")
    normalization = resolve_normalization(cfg["normalization"], name)
    info = {"encoder": cfg["encoder"], "weights": {"source": "none", "note": "U-Net trained from scratch"}}
    return BuiltModel(LULCModel(_UNetNet(model), normalization), info)


class _ViTNet(nn.Module):
    """timm ViT tokens -> ``(B, D, h, w)`` grid -> FCN decoder; input is the ``T x 6`` channels."""

    def __init__(self, vit: nn.Module, decoder: FCNDecoder) -> None:
        super().__init__()
        self.vit = vit
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vit: Any = self.vit  # a timm VisionTransformer (typed as a plain Module)
        tokens = vit.forward_features(x.flatten(1, 2))[:, vit.num_prefix_tokens :]
        h, w = vit.patch_embed.grid_size
        grid = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[-1], h, w)
        logits = self.decoder(grid)
        if logits.shape[-2:] != x.shape[-2:]:
            logits = nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits


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
    path, weights = resolve_weights(spec, name, None, pretrain_checkpoint)
    if path is not None:
        what = f"config key models.{name}.weights"
        # timm only warns about mismatched keys: check the names first (shapes of the input convolution and
        # position embeddings legitimately differ; timm adapts those), ignoring the classifier head.
        names = {k for k in _read_state_dict(path, what) if not k.startswith("head.")}
        expected = set(timm.create_model(cfg["arch"], pretrained=False, **kwargs).state_dict())
        missing, unexpected = sorted(expected - names), sorted(names - expected)
        if missing or unexpected:
            problems = [f"{kind} keys ({len(keys)}): {_names(keys)}"
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
    decoder = FCNDecoder(features, int(cfg["decoder_channels"]), _upscale_convs(kwargs["patch_size"]),
                         num_classes)
    normalization = resolve_normalization(cfg["normalization"], name)
    info = {"arch": cfg["arch"], "patch_size": kwargs["patch_size"], "weights": weights}
    return BuiltModel(LULCModel(_ViTNet(vit, decoder), normalization), info)


def build_model(
    name: str,
    cfg: Mapping[str, Any] | None,
    frames: int,
    chip_size: int,
    num_classes: int = NUM_CLASSES,
    pretrain_checkpoint: str | os.PathLike[str] | None = None,
    load_weights: bool = True,
) -> BuiltModel:
    """Build the model of config entry ``models.<name>`` for ``frames`` x 6-band chips of ``chip_size``.

    ``load_weights=False`` skips pretrained weights (used when a trained checkpoint is loaded next).
    """
    resolved = model_entry(name, cfg, int(chip_size))  # the defaults of its type, from the schema
    builder = MODEL_BUILDERS[resolved["type"]]
    built = builder(
        name,
        resolved,
        int(frames),
        int(chip_size),
        int(num_classes),
        Path(pretrain_checkpoint) if pretrain_checkpoint is not None else None,
        load_weights,
    )
    built.info = {
        "name": name,
        "type": resolved["type"],
        "frames": int(frames),
        "chip_size": int(chip_size),
        "num_classes": int(num_classes),
        "parameters": _count(built.model),
        "normalization": built.model.normalization.to_dict(),
        **built.info,
    }
    return built


# ------------------------------------------------------------------------------ trained checkpoints


def save_trained_model(built: BuiltModel, config: Mapping[str, Any], path: Path, extra: Mapping[str, Any]) -> None:
    """Write a self-contained trained model: weights, the resolved model config and the build record."""
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "config": dict(config),
            "info": built.info,
            "state_dict": {k: v.detach().cpu() for k, v in built.model.state_dict().items()},
            **extra,
        },
        path,
    )


def load_trained_model(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[LULCModel, dict[str, Any]]:
    """Rebuild a model written by :func:`save_trained_model` (for evaluation and prediction); strict keys."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"trained checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise WeightsError(f"cannot read trained checkpoint {path}: {type(error).__name__}: {error}") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path} is not a trained model checkpoint of this workflow (format {CHECKPOINT_FORMAT})")
    info = checkpoint["info"]
    built = build_model(
        info["name"], checkpoint["config"], info["frames"], info["chip_size"], info["num_classes"], load_weights=False
    )
    built.model.load_state_dict(checkpoint["state_dict"], strict=True)
    return built.model, checkpoint
