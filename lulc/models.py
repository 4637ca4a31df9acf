"""Model registry: Prithvi (TerraTorch) + FCN decoder, a U-Net and a ViT, chosen by name in the config.

Every model is a :class:`LULCModel`: raw int16 chips ``(B, T, 6, H, W)`` (time-major, :mod:`lulc.hls`) go
in, logits ``(B, NUM_CLASSES, H, W)`` come out. The model normalises its own input on the device with the
statistics it was configured with (the Prithvi pretraining mean / std by default, or the training chips' own
with ``normalization: dataset``, :func:`dataset_normalization`; a trained checkpoint keeps them), sets HLS nodata
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
  ``ckpt_path`` unless ``pretrained=True``, so it is not used. With ``decoder_norm: batch`` or an
  ``aux_head``, which TerraTorch's FCN decoder cannot give, the FCN decoder is this module's
  :class:`FCNDecoder` behind the same necks (:class:`_PrithviFCNNet`); otherwise it is TerraTorch's.
* ``unet``: segmentation-models-pytorch ``Unet`` from scratch on all ``T x 6`` channels.
* ``vit``: a timm ViT on all ``T x 6`` channels with an FCN decoder built like TerraTorch's; natural-image
  weights only from a local file (timm adapts the input convolution and position embeddings).

Prithvi and ViT entries also take ``decoder_dropout`` / ``decoder_norm`` (the FCN decoder), ``aux_head`` (an
auxiliary FCN head on the same features, whose logits only :meth:`LULCModel.forward_with_aux` returns, for
the training loss), and the training options ``freeze_encoder`` / ``layer_decay``, which act on
:func:`vit_encoder` (:func:`freeze_encoder`, :func:`encoder_layer_id`).

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
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from lulc.classes import NUM_CLASSES
from lulc.hls import PRITHVI_BANDS, REFLECTANCE_NODATA
from lulc.schema import model_entry

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

#: Normalised input beyond this absolute value is taken for raw reflectance, whatever the statistics: with the
#: pretraining ones normalised HLS stays within about +-12 (saturated snow: (16000 - 775) / 1282 = 11.9); raw
#: reflectance is in the hundreds to thousands. Statistics with small deviations (``normalization:
#: dataset`` of a homogeneous region) widen the bound to what valid reflectance gives under them
#: (:func:`normalised_bound`).
MAX_ABS_NORMALISED = 50.0
#: The valid range of HLS surface reflectance (x 10000), from the HLS v2.0 user guide.
HLS_VALID_RANGE: tuple[int, int] = (-100, 16000)
#: Statistics under which valid reflectance would normalise beyond this are refused: they do not normalise
#: (a std of 1 reflectance unit, statistics of raw counts, ...). Needs a std of 16 or more in every band.
MAX_PLAUSIBLE_NORMALISED = 1000.0

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
    """Per-band mean and standard deviation (reflectance x 10000) and where they came from.

    ``source`` and ``sha256``: the statistics file of ``normalization: dataset`` (None otherwise).
    """

    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str | None = None
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"name": self.name, "mean": list(self.mean), "std": list(self.std)}
        if self.source is not None:
            record |= {"source": self.source, "sha256": self.sha256}
        return record


#: What ``normalization: dataset`` reads: the stats rule's output (:mod:`lulc.stats`).
DATASET_STATS_FILE = "results/stats/normalization.json"


def _checked_statistics(key: str, spec: Mapping[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    try:
        mean, std = (tuple(float(v) for v in spec[k]) for k in ("mean", "std"))
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{key}: expected {len(PRITHVI_BANDS)} numbers each for mean and std") from None
    if (
        len(mean) != len(PRITHVI_BANDS)
        or len(std) != len(PRITHVI_BANDS)
        or not all(math.isfinite(v) for v in mean + std)
        or min(std) <= 0
    ):
        raise ValueError(f"{key}: mean and std need {len(PRITHVI_BANDS)} finite values each, std > 0")
    return mean, std


def dataset_normalization(stats: Any, model_name: str) -> Normalization:
    """The statistics of ``normalization: dataset``.

    ``stats`` is the stats rule's file (:data:`DATASET_STATS_FILE`, its path and SHA-256 are recorded), a
    :class:`Normalization`, or the record a trained checkpoint keeps (``{name, mean, std, source, sha256}``);
    None raises a ``ValueError`` naming the config key.
    """
    key = f"config key models.{model_name}.normalization"
    if stats is None:
        raise ValueError(
            f"{key}: 'dataset' needs the per-band statistics of the training chips ({DATASET_STATS_FILE}, written "
            "by the stats rule), and none were given"
        )
    if isinstance(stats, Normalization):
        return stats
    if isinstance(stats, Mapping):
        mean, std = _checked_statistics(key, stats)
        return Normalization("dataset", mean, std, stats.get("source"), stats.get("sha256"))
    path = Path(stats)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{key}: cannot read the dataset statistics {path}: {error}") from error
    if not isinstance(record, Mapping):
        raise ValueError(f"{key}: {path} is not a statistics file of the stats rule")
    mean, std = _checked_statistics(f"{key} ({path})", record)
    return Normalization("dataset", mean, std, str(path), sha256_file(path))


def resolve_normalization(
    spec: Any, model_name: str, backbone: str | None = None, dataset_stats: Any = None
) -> Normalization:
    """Turn ``models.<name>.normalization`` into statistics.

    ``spec`` is ``"prithvi_v1"``, ``"prithvi_v2"``, ``"backbone"`` (the pretraining statistics of the
    configured Prithvi backbone: v1 for ``prithvi_eo_v1_*``, v2 otherwise), ``"dataset"`` (the training chips'
    own statistics, from ``dataset_stats``: :func:`dataset_normalization`), ``{mean: [6], std: [6]}``, or an
    already resolved :class:`Normalization`.
    """
    key = f"config key models.{model_name}.normalization"
    if isinstance(spec, Normalization):
        return spec
    if spec == "dataset":
        return dataset_normalization(dataset_stats, model_name)
    if spec == "backbone":
        if not backbone:
            raise ValueError(f"{key}: 'backbone' needs a Prithvi backbone; use prithvi_v1, prithvi_v2 or mean/std")
        spec = "prithvi_v1" if backbone.startswith("prithvi_eo_v1") else "prithvi_v2"
    if isinstance(spec, str):
        if spec not in NORMALIZATIONS:
            raise ValueError(
                f"{key}: unknown statistics {spec!r} (known: backbone, dataset, {', '.join(NORMALIZATIONS)})"
            )
        stats = NORMALIZATIONS[spec]
        return Normalization(spec, stats["mean"], stats["std"])
    if isinstance(spec, Mapping) and set(spec) == {"mean", "std"}:
        mean, std = _checked_statistics(key, spec)
        return Normalization("custom", mean, std)
    raise ValueError(
        f"{key}: expected backbone, prithvi_v1, prithvi_v2, dataset or {{mean: [...], std: [...]}}, got {spec!r}"
    )


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


def normalised_bound(normalization: Normalization) -> float:
    """The largest absolute value valid HLS reflectance (:data:`HLS_VALID_RANGE`) normalises to under
    ``normalization``, and never below :data:`MAX_ABS_NORMALISED`: the plausibility bound of a model's input.

    A cloud over a region of low variance is a legitimate 50 standard deviations from that region's mean;
    the bound follows the statistics so that such pixels pass, while raw reflectance (thousands) does not.
    Statistics under which the bound would exceed :data:`MAX_PLAUSIBLE_NORMALISED` raise
    :class:`UnnormalisedInputError`: they do not normalise.
    """
    low, high = HLS_VALID_RANGE
    reach = max(max(high - m, m - low) / s for m, s in zip(normalization.mean, normalization.std, strict=True))
    if reach > MAX_PLAUSIBLE_NORMALISED:
        raise UnnormalisedInputError(
            f"the statistics {normalization.name!r} (mean {list(normalization.mean)}, std "
            f"{list(normalization.std)}) do not normalise: valid HLS reflectance would reach {reach:.4g} "
            f"standard deviations (at most {MAX_PLAUSIBLE_NORMALISED:g}); HLS reflectance (x 10000) must be "
            "normalised with the pretraining mean / std or the dataset's (models.<name>.normalization)"
        )
    return max(MAX_ABS_NORMALISED, reach)


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
        max_abs: the plausibility bound of :func:`check_normalised`; None = :func:`normalised_bound` of the
            statistics.
    """

    def __init__(self, net: nn.Module, normalization: Normalization, max_abs: float | None = None) -> None:
        super().__init__()
        self.normalize = HLSNormalize(normalization)
        self.net = net
        self.normalization = normalization
        self.max_abs = normalised_bound(normalization) if max_abs is None else max_abs

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.forward_normalised(self.normalize(raw))

    def forward_normalised(self, x: torch.Tensor) -> torch.Tensor:
        check_normalised(x, self.max_abs)
        return self.net(x)

    def forward_with_aux(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Training only: the logits and those of the auxiliary head (``aux_head.enabled``; None without one),
        both ``(B, classes, H, W)``. :meth:`forward` (evaluation, prediction) returns the main logits only."""
        x = self.normalize(raw)
        check_normalised(x, self.max_abs)
        paired = getattr(self.net, "forward_with_aux", None)
        return paired(x) if paired is not None else (self.net(x), None)


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
    """TerraTorch's ``FCNDecoder`` + ``SegmentationHead``, rebuilt here so the ViT baseline does not import it,
    with the two options TerraTorch's lacks or keeps apart: the norm and the dropout.

    ``num_convs`` blocks of (2x transposed conv, 3x3 conv, norm, GELU) upsample a ``(B, C, h, w)`` token grid
    by ``2 ** num_convs``; dropout (``dropout`` > 0, like TerraTorch's ``head_dropout``) and a 1x1 conv give
    the class logits. ``norm``: ``"layer"`` (LayerNorm over channels, TerraTorch's ``Norm2d``) or ``"batch"``
    (``BatchNorm2d``, as mmsegmentation's ``FCNHead``). Neither the norm choice nor the dropout changes the
    state-dict keys of the convolutions and the classifier.
    """

    def __init__(
        self, in_channels: int, channels: int, num_convs: int, num_classes: int, norm: str = "layer",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if norm not in DECODER_NORMS:
            raise ValueError(f"decoder norm {norm!r} is not one of {', '.join(DECODER_NORMS)}")
        blocks: list[nn.Module] = []
        for i in range(num_convs):
            blocks.append(
                nn.Sequential(
                    nn.ConvTranspose2d(in_channels if i == 0 else channels, channels, kernel_size=2, stride=2),
                    nn.Conv2d(channels, channels, kernel_size=3, padding=1),
                    _ChannelLayerNorm(channels) if norm == "layer" else nn.BatchNorm2d(channels),
                    nn.GELU(),
                )
            )
        self.convs = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.convs(x)))


#: ``models.<name>.decoder_norm``: the norm of the FCN decoder's blocks (:class:`FCNDecoder`).
DECODER_NORMS = ("layer", "batch")


class _ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of an image tensor (TerraTorch's ``Norm2d``)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _upscale_convs(patch: int) -> int:
    """Upsampling convolutions of the FCN decoder (a power-of-two patch: :func:`lulc.schema.model_rules`)."""
    return round(math.log2(patch))


class _PrithviNet(nn.Module):
    """TerraTorch's PixelWiseModel on time-major input: ``(B, T, 6, H, W)`` -> ``(B, 6, T, H, W)`` -> logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.transpose(1, 2)).output

    def vit_encoder(self) -> nn.Module:
        return cast(nn.Module, self.model.encoder)


def _terratorch_utils() -> Any:
    """``terratorch.models.utils`` (imported once, by the builder, through :func:`import_terratorch`)."""
    import sys

    return sys.modules.get("terratorch.models.utils") or import_terratorch("terratorch.models.utils")


class _PrithviFCNNet(nn.Module):
    """A Prithvi encoder + TerraTorch's necks + this module's :class:`FCNDecoder` (and an auxiliary FCN head on the
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

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
        utils = _terratorch_utils()
        x = x.transpose(1, 2)
        size_out = (int(x.shape[-2]), int(x.shape[-1]))
        x = utils.pad_images(x, self.patch_size, "reflect")
        size_in = (int(x.shape[-2]), int(x.shape[-1]))
        return self.neck(self.encoder(x), image_size=size_in)[-1], size_in, size_out

    @staticmethod
    def _logits(head: nn.Module, grid: torch.Tensor, size_in: tuple[int, int],
                size_out: tuple[int, int]) -> torch.Tensor:
        logits = head(grid)
        if logits.shape[-2:] != size_in:
            logits = nn.functional.interpolate(logits, size=size_in, mode="bilinear")
        return _terratorch_utils().center_crop(logits, size_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid, size_in, size_out = self._features(x)
        return self._logits(self.decoder, grid, size_in, size_out)

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        grid, size_in, size_out = self._features(x)
        logits = self._logits(self.decoder, grid, size_in, size_out)
        if self.aux_head is None:
            return logits, None
        return logits, self._logits(self.aux_head, grid, size_in, size_out)


def _aux_head(cfg: Mapping[str, Any], in_channels: int, num_classes: int) -> FCNDecoder | None:
    """The auxiliary FCN head of ``aux_head`` (its own channels and blocks; the decoder's norm and dropout)."""
    aux = cfg["aux_head"]
    if not aux["enabled"]:
        return None
    return FCNDecoder(in_channels, int(aux["channels"]), int(aux["num_convs"]), num_classes,
                      norm=cfg["decoder_norm"], dropout=float(cfg["decoder_dropout"]))


def _decoder_info(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """run.json's record of the decoder options and the auxiliary head."""
    aux = cfg["aux_head"]
    return {
        "decoder_norm": cfg["decoder_norm"] if cfg.get("decoder", "FCNDecoder") == "FCNDecoder" else None,
        "decoder_dropout": float(cfg["decoder_dropout"]),
        "aux_head": dict(aux) if aux["enabled"] else None,
    }


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
    net: nn.Module
    own_fcn = cfg["decoder"] == "FCNDecoder" and (cfg["decoder_norm"] != "layer" or cfg["aux_head"]["enabled"])
    if own_fcn:  # batch norm or an auxiliary head: this module's FCNDecoder behind TerraTorch's necks
        neck_list, channels = import_terratorch("terratorch.models.necks").build_neck_list(
            necks, encoder.out_channels
        )
        neck = import_terratorch("terratorch.models.necks").NeckSequential(*neck_list)
        decoder = FCNDecoder(channels[-1], int(cfg["decoder_channels"]), decoder_kwargs["num_convs"], num_classes,
                             norm=cfg["decoder_norm"], dropout=float(cfg["decoder_dropout"]))
        padding_patch = next(m.patch_size for m in encoder.modules() if hasattr(m, "patch_size"))
        net = _PrithviFCNNet(encoder, neck, decoder, _aux_head(cfg, channels[-1], num_classes), padding_patch)
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
    normalization = resolve_normalization(cfg["normalization"], name, backbone_name)
    info = {
        "backbone": backbone_name,
        "decoder": cfg["decoder"],
        "decoder_implementation": "lulc" if own_fcn else "terratorch",
        "feature_indices": indices,
        "encoder_parameters": _count(encoder),
        "weights": weights,
        **_decoder_info(cfg),
    }
    return BuiltModel(LULCModel(net, normalization), info)


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

    depth = int(cfg["encoder_depth"])  # against the chip size: lulc.schema.model_rules
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
                         num_classes, norm=cfg["decoder_norm"], dropout=float(cfg["decoder_dropout"]))
    normalization = resolve_normalization(cfg["normalization"], name)
    info = {"arch": cfg["arch"], "patch_size": kwargs["patch_size"], "weights": weights,
            "encoder_parameters": _count(vit), **_decoder_info(cfg)}
    return BuiltModel(LULCModel(_ViTNet(vit, decoder, _aux_head(cfg, features, num_classes)), normalization), info)


def build_model(
    name: str,
    cfg: Mapping[str, Any] | None,
    frames: int,
    chip_size: int,
    num_classes: int = NUM_CLASSES,
    pretrain_checkpoint: str | os.PathLike[str] | None = None,
    load_weights: bool = True,
    dataset_stats: Any = None,
) -> BuiltModel:
    """Build the model of config entry ``models.<name>`` for ``frames`` x 6-band chips of ``chip_size``.

    ``load_weights=False`` skips pretrained weights (used when a trained checkpoint is loaded next).
    ``dataset_stats``: the statistics of ``normalization: dataset`` (the stats rule's file, or a checkpoint's
    record of them: :func:`dataset_normalization`); ignored for any other normalisation.
    """
    resolved = model_entry(name, cfg, int(chip_size))  # the defaults of its type, from the schema
    if resolved.get("normalization") == "dataset":  # resolved here, so every builder gets the statistics
        resolved["normalization"] = dataset_normalization(dataset_stats, name)
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
    """Write a self-contained trained model: weights, the resolved model config and the build record.

    Written through a file object: given a path, ``torch.save`` names the archive's inner folder after the file,
    and the temporary name of an atomic write would make two equal checkpoints (and the maps that tag their
    SHA-256) differ in their bytes."""
    with open(path, "wb") as file:
        torch.save(
            {
                "format": CHECKPOINT_FORMAT,
                "config": dict(config),
                "info": built.info,
                "state_dict": {k: v.detach().cpu() for k, v in built.model.state_dict().items()},
                **extra,
            },
            file,
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
    # normalization: dataset: the statistics recorded in the checkpoint (the stats file is not needed)
    dataset_stats = info.get("normalization") if info.get("normalization", {}).get("name") == "dataset" else None
    built = build_model(
        info["name"], checkpoint["config"], info["frames"], info["chip_size"], info["num_classes"], load_weights=False,
        dataset_stats=dataset_stats,
    )
    built.model.load_state_dict(checkpoint["state_dict"], strict=True)
    return built.model, checkpoint
