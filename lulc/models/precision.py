"""Precision helpers: the fp32 matmul precision of every stage, the TerraTorch import that keeps it, the precision
``auto`` picks on a device, and channels-last convolution weights.

Training, pretraining and prediction share these and need none of the model families, so they live apart from
the builders. Importing TerraTorch sets the process-wide ``torch.set_float32_matmul_precision("medium")`` (bf16
matmuls on AMX CPUs, TF32 on NVIDIA GPUs); every import of it goes through :func:`import_terratorch`, which
restores :data:`FP32_MATMUL_PRECISION`, so that "fp32" means fp32 on every machine.
"""

from __future__ import annotations

import contextlib
import importlib
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
