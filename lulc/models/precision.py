"""Precision helpers: the fp32 matmul precision of every stage, the TerraTorch import that keeps it, the precision
``auto`` picks (from the measured table :data:`MEASURED_PRECISION`, per hardware class, stage and model family),
and channels-last convolution weights.

Training, pretraining and prediction share these and need none of the model families, so they live apart from
the builders. Importing TerraTorch sets the process-wide ``torch.set_float32_matmul_precision("medium")`` (bf16
matmuls on AMX CPUs, TF32 on NVIDIA GPUs); every import of it goes through :func:`import_terratorch`, which
restores :data:`FP32_MATMUL_PRECISION`, so that "fp32" means fp32 on every machine.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

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


def _torch_cpu_flag(name: str) -> bool:
    """A private ``torch.cpu`` capability check (``_is_amx_tile_supported``...); absent means "do not assume"."""
    with contextlib.suppress(Exception):
        check = getattr(torch.cpu, name, None)
        return bool(check()) if check is not None else False
    return False


#: The hardware classes of the precision table: bf16 speed differs between them, not within one.
CPU_AMX = "cpu-amx"  # Intel AMX tiles (Sapphire Rapids and later): bf16 matmuls on the AMX unit
CPU_AVX512_BF16 = "cpu-avx512-bf16"  # AVX512-BF16 without AMX (AMD Zen 4 / Zen 5, Intel Cooper Lake)
CPU_NO_BF16 = "cpu-no-bf16"  # no native bf16 (AVX2-only or AVX-512 without BF16): bf16 is emulated
CUDA_BF16 = "cuda-bf16"  # NVIDIA GPUs with bf16 (Ampere and later)
CUDA_NO_BF16 = "cuda-no-bf16"  # older NVIDIA GPUs: fp16 autocast


def hardware_class(device_type: str) -> str:
    """The hardware class of a device type (``cpu`` or ``cuda``), the row key of :data:`MEASURED_PRECISION`."""
    if device_type == "cuda":
        return CUDA_BF16 if torch.cuda.is_bf16_supported() else CUDA_NO_BF16
    if _torch_cpu_flag("_is_amx_tile_supported"):
        return CPU_AMX
    if _torch_cpu_flag("_is_avx512_bf16_supported"):
        return CPU_AVX512_BF16
    return CPU_NO_BF16


@dataclass(frozen=True)
class Measurement:
    """fp32 and bf16 throughput of one model family at one stage on one hardware class, and where it was measured."""

    fp32: float
    bf16: float
    unit: str  # samples/s (training) or km2/s (maps)
    source: str  # the benchmark, the model and the machine

    @property
    def bf16_speedup(self) -> float:
        return self.bf16 / self.fp32


_TRAIN_DEMO = "benchmarks/train_speed.py, demo size (32 px, 3 frames, batch 8, 2 threads)"
_TRAIN_100M = "benchmarks/train_speed.py, Prithvi-EO-1.0-100M + FCN, 224 px, 3 frames, batch 2, 2 threads"
_PREDICT = "benchmarks/predict_speed.py, 224 px tiles, stride 192, batch 8, 2 threads"
_AMD = ", 2-core AMD EPYC with AVX512-BF16"
_AMX = ", Intel Xeon with AMX"
_PRECISION = "benchmarks/precision.py, demo size (32 px, 3 frames, batch 8), 2 threads, machine shared"
_AVX2 = ", 2-core AMD EPYC without bf16 (AVX2)"
#: What ``auto`` is chosen from: ``(hardware class, stage, family) -> Measurement``; stage ``train`` (also
#: tuning and pretraining) or ``predict`` (maps). bf16 is chosen only where its entry is faster than fp32; a
#: family, stage or hardware class without an entry runs fp32. Add a row with ``benchmarks/precision.py``.
MEASURED_PRECISION: dict[tuple[str, str, str], Measurement] = {
    (CPU_AVX512_BF16, "train", "prithvi"): Measurement(0.315, 0.68, "samples/s", _TRAIN_100M + _AMD),
    (CPU_AVX512_BF16, "train", "unet"): Measurement(251, 319, "samples/s", _TRAIN_DEMO + _AMD),
    (CPU_AVX512_BF16, "train", "vit"): Measurement(257, 324, "samples/s", _TRAIN_DEMO + _AMD),
    (CPU_AVX512_BF16, "predict", "prithvi"): Measurement(15.7, 23.7, "km2/s", _PREDICT + ", Prithvi-100M" + _AMD),
    (CPU_AMX, "train", "unet"): Measurement(133, 119, "samples/s", _TRAIN_DEMO + _AMX),
    # bf16 is emulated without native support: measured 2.5-5x slower (fp32 is chosen there in any case)
    (CPU_NO_BF16, "train", "prithvi"): Measurement(2.499, 0.499, "samples/s", _PRECISION + _AVX2),
    (CPU_NO_BF16, "train", "unet"): Measurement(3.424, 1.355, "samples/s", _PRECISION + _AVX2),
    (CPU_NO_BF16, "predict", "prithvi"): Measurement(6.686, 1.434, "km2/s", _PRECISION + _AVX2),
    (CPU_NO_BF16, "predict", "unet"): Measurement(23.56, 5.556, "km2/s", _PRECISION + _AVX2),
}  # fmt: skip


def channels_last_convolutions(model: nn.Module) -> nn.Module:
    """Store the 2-D (transposed) convolutions' weights channels-last, in place; returns ``model``.

    Under bf16 autocast oneDNN's convolutions are fastest on channels-last tensors (the decoder's activations
    follow the weights' layout); the arithmetic and the state-dict keys are unchanged.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            module.to(memory_format=torch.channels_last)
    return model


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a stage runs in (``fp32``, ``bf16`` or ``fp16``), why, and on which hardware class."""

    precision: str
    reason: str
    hardware: str

    def record(self, setting: str) -> dict[str, str]:
        """For run.json and the map records: the setting, the choice, the reason and the hardware class."""
        return {"setting": setting, "chosen": self.precision, "reason": self.reason, "hardware": self.hardware}


def choose_precision(stage: str, family: str | None, device_type: str) -> PrecisionChoice:
    """What ``precision: auto`` runs ``stage`` (``train`` or ``predict``) of a model ``family`` in on a device type.

    CPUs: bf16 only where :data:`MEASURED_PRECISION` has bf16 faster than fp32 for that family, stage and
    hardware class; fp32 where it was measured slower or not measured. GPUs with bf16: bf16 (tensor cores; not
    measured by this project yet: ``benchmarks/gpu_check.sh`` measures it); older GPUs: fp16.
    """
    hardware = hardware_class(device_type)
    if hardware == CUDA_BF16:
        return PrecisionChoice("bf16", "GPU with bf16 tensor cores (not measured by this project; "
                               "benchmarks/gpu_check.sh measures it)", hardware)  # fmt: skip
    if hardware == CUDA_NO_BF16:
        return PrecisionChoice("fp16", "GPU without bf16: fp16 autocast", hardware)
    what = f"{family or 'this model'} {'training' if stage == 'train' else 'maps'} on {hardware}"
    measured = MEASURED_PRECISION.get((hardware, stage, family or ""))
    if measured is None:
        return PrecisionChoice("fp32", f"bf16 not measured for {what}", hardware)
    figures = f"bf16 {measured.bf16:g} vs fp32 {measured.fp32:g} {measured.unit} ({measured.source})"
    if measured.bf16 > measured.fp32:
        return PrecisionChoice("bf16", f"bf16 measured {measured.bf16_speedup:.2f}x faster for {what}: {figures}",
                               hardware)  # fmt: skip
    return PrecisionChoice("fp32", f"bf16 measured slower for {what}: {figures}", hardware)


def resolve_precision(setting: str, stage: str, family: str | None, device_type: str) -> PrecisionChoice:
    """``auto``: :func:`choose_precision`; an explicit setting (``fp32``, ``bf16``, ``fp16``) is kept, as set."""
    if setting == "auto":
        return choose_precision(stage, family, device_type)
    return PrecisionChoice(setting, "set in the config", hardware_class(device_type))
