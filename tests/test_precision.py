"""`precision: auto` chooses bf16 only where the measured table has it faster, per family, stage and hardware class,
and says why (lulc.models.precision)."""

from __future__ import annotations

import pytest
import torch

import lulc.models.precision as precision
from lulc import predict
from lulc.models.precision import (
    CPU_AMX,
    CPU_AVX512_BF16,
    CPU_NO_BF16,
    CUDA_BF16,
    MEASURED_PRECISION,
    choose_precision,
    resolve_precision,
)
from lulc.train import training_precision, training_precision_choice

CPU = torch.device("cpu")


@pytest.fixture
def hardware(monkeypatch):
    """Pretend to be on a hardware class."""

    def use(name: str) -> None:
        monkeypatch.setattr(precision, "hardware_class", lambda device_type: name)

    return use


@pytest.mark.parametrize("key", sorted(MEASURED_PRECISION))
def test_every_measurement_decides_its_own_case(key, hardware):
    hardware_name, stage, family = key
    measured = MEASURED_PRECISION[key]
    hardware(hardware_name)
    choice = choose_precision(stage, family, "cpu")
    assert choice.precision == ("bf16" if measured.bf16 > measured.fp32 else "fp32")
    assert f"{measured.bf16:g}" in choice.reason and f"{measured.fp32:g}" in choice.reason
    assert choice.hardware == hardware_name


def test_intel_amx_trains_unet_in_fp32_because_bf16_was_measured_slower(hardware):
    hardware(CPU_AMX)
    choice = training_precision_choice("auto", "cpu", "unet")
    assert choice.precision == "32-true"
    assert "measured slower" in choice.reason and "119" in choice.reason and "133" in choice.reason


def test_avx512_bf16_cpus_train_the_measured_families_in_bf16(hardware):
    hardware(CPU_AVX512_BF16)
    for family in ("prithvi", "unet", "vit"):
        assert training_precision("auto", "cpu", family) == "bf16-mixed"
    assert predict.inference_precision("auto", CPU, "prithvi") == "bf16"


def test_unmeasured_cases_run_fp32_and_say_so(hardware):
    hardware(CPU_AVX512_BF16)
    choice = predict.inference_precision_choice("auto", CPU, "clay")  # no Clay measurement on any CPU
    assert choice.precision == "fp32" and "not measured" in choice.reason and "clay maps" in choice.reason
    hardware(CPU_AMX)
    assert training_precision("auto", "cpu", "prithvi") == "32-true"  # AMX: only U-Net was measured
    assert choose_precision("train", None, "cpu").precision == "fp32"


def test_cpus_without_bf16_always_run_fp32(hardware):
    hardware(CPU_NO_BF16)
    for family in ("prithvi", "unet", "vit", "terramind", "clay", "dofa"):
        assert training_precision("auto", "cpu", family) == "32-true"
        assert predict.inference_precision("auto", CPU, family) == "fp32"


def test_gpus_with_bf16_use_it_and_say_it_is_not_measured_here(hardware):
    hardware(CUDA_BF16)
    choice = choose_precision("train", "prithvi", "cuda")
    assert choice.precision == "bf16" and "not measured" in choice.reason


def test_an_explicit_setting_is_kept(hardware):
    hardware(CPU_AMX)
    assert training_precision("bf16-mixed", "cpu", "unet") == "bf16-mixed"
    choice = resolve_precision("fp32", "predict", "prithvi", "cpu")
    assert choice.precision == "fp32" and choice.reason == "set in the config"
    record = predict.inference_precision_choice("bf16", CPU, "unet").record("bf16")
    assert record == {"setting": "bf16", "chosen": "bf16", "reason": "set in the config (predict.precision)",
                      "hardware": CPU_AMX}  # fmt: skip
    with pytest.raises(ValueError, match="predict.precision"):
        predict.inference_precision_choice("fp16", CPU, "unet")


def test_this_machine_has_a_hardware_class():
    assert precision.hardware_class("cpu") in (CPU_AMX, CPU_AVX512_BF16, CPU_NO_BF16)
