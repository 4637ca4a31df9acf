"""Model registry: strict Prithvi weight loading, normalisation, the raw-input guard and every builder."""

from __future__ import annotations

import os

import pytest
import torch

from lulc.config import ConfigError
from lulc.families.prithvi import STATISTICS
from lulc.hls import REFLECTANCE_NODATA
from lulc.models import (
    HLSNormalize,
    Normalization,
    UnnormalisedInputError,
    WeightsError,
    build_model,
    load_prithvi_encoder,
    resolve_normalization,
)
from tests.io_legend import NUM_CLASSES

os.environ.setdefault("HF_HUB_OFFLINE", "1")
FRAMES, SIZE = 3, 32


@pytest.fixture(autouse=True)
def _small_and_seeded():
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def tiny_encoder_state() -> dict[str, torch.Tensor]:
    """A freshly built prithvi_eo_tiny encoder's state dict (224 px: the release size, not the chip size)."""
    from terratorch.registry import BACKBONE_REGISTRY

    torch.manual_seed(1)
    encoder = BACKBONE_REGISTRY.build("terratorch_prithvi_eo_tiny", pretrained=False, num_frames=FRAMES)
    return {k: v.clone() for k, v in encoder.state_dict().items()}


def official_layout(encoder_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The Prithvi-EO-2.0 / PrithviMAE key layout: ``encoder.*`` plus MAE decoder tensors."""
    state = {f"encoder.{k}": v for k, v in encoder_state.items()}
    state["decoder.mask_token"] = torch.zeros(1, 1, 128)
    state["decoder.decoder_embed.weight"] = torch.zeros(128, 256)
    return state


def raw_chips(batch: int = 2) -> torch.Tensor:
    """Plausible int16 HLS reflectance (x 10000) with a few nodata pixels."""
    generator = torch.Generator().manual_seed(0)
    raw = torch.randint(100, 4000, (batch, FRAMES, 6, SIZE, SIZE), generator=generator, dtype=torch.int16)
    raw[:, :, :, :2, :2] = REFLECTANCE_NODATA
    return raw


def test_official_layout_loads_with_every_key_matched(tiny_encoder_state, tmp_path):
    path = tmp_path / "prithvi_tiny.pt"
    torch.save(official_layout(tiny_encoder_state), path)
    built = build_model("prithvi", {"weights": str(path)}, FRAMES, SIZE)
    weights = built.info["weights"]
    assert weights["source"] == "file" and weights["path"] == str(path) and len(weights["sha256"]) == 64
    assert weights["layout"] == "prithvi_mae" and weights["decoder_tensors_ignored"] == 2
    # every encoder tensor came from the file; only the fixed sin-cos table is rebuilt for 32 px chips
    assert weights["tensors_rebuilt"] == ["pos_embed"]
    assert weights["tensors_loaded"] == len(tiny_encoder_state) - 1
    encoder_state = built.model.net.model.encoder.state_dict()
    for key, value in tiny_encoder_state.items():
        if key != "pos_embed":
            assert torch.equal(encoder_state[key], value), key
    assert built.info["normalization"]["name"] == "prithvi_v2"  # prithvi_eo_tiny uses the v2 statistics


def test_flat_v1_layout_loads_too(tiny_encoder_state, tmp_path):
    from terratorch.registry import BACKBONE_REGISTRY

    state = dict(tiny_encoder_state) | {"mask_token": torch.zeros(1, 1, 128), "decoder_pred.weight": torch.zeros(3)}
    torch.save(state, tmp_path / "flat.pt")
    encoder = BACKBONE_REGISTRY.build("terratorch_prithvi_eo_tiny", pretrained=False, num_frames=FRAMES)
    info = load_prithvi_encoder(encoder, tmp_path / "flat.pt")
    assert info["layout"] == "prithvi_flat" and info["tensors_loaded"] == len(tiny_encoder_state)
    assert info["tensors_rebuilt"] == [] and info["decoder_tensors_ignored"] == 2


def test_missing_checkpoint_fails_with_path(tmp_path):
    missing = tmp_path / "nowhere" / "Prithvi_EO_V1_100M.pt"
    with pytest.raises(WeightsError, match=r"models\.prithvi\.weights.*does not exist") as error:
        build_model("prithvi", {"weights": str(missing)}, FRAMES, SIZE)
    assert str(missing) in str(error.value)


def test_corrupted_checkpoint_fails_with_path(tiny_encoder_state, tmp_path):
    good = tmp_path / "good.pt"
    torch.save(official_layout(tiny_encoder_state), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(WeightsError, match="cannot read checkpoint") as error:
        build_model("prithvi", {"weights": str(truncated)}, FRAMES, SIZE)
    assert str(truncated) in str(error.value)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(WeightsError, match="cannot read checkpoint"):
        build_model("prithvi", {"weights": str(garbage)}, FRAMES, SIZE)
    not_a_state_dict = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], not_a_state_dict)
    with pytest.raises(WeightsError, match="not a state dict"):
        build_model("prithvi", {"weights": str(not_a_state_dict)}, FRAMES, SIZE)


def test_mismatched_keys_fail_and_are_named(tiny_encoder_state, tmp_path):
    state = official_layout(tiny_encoder_state)
    del state["encoder.blocks.1.attn.qkv.weight"]
    state["encoder.blocks.9.mlp.fc1.weight"] = torch.zeros(4, 4)
    state["encoder.norm.weight"] = torch.zeros(7)
    torch.save(state, tmp_path / "mismatch.pt")
    with pytest.raises(WeightsError) as error:
        build_model("prithvi", {"weights": str(tmp_path / "mismatch.pt")}, FRAMES, SIZE)
    message = str(error.value)
    assert "missing keys (1): blocks.1.attn.qkv.weight" in message
    assert "unexpected keys (1): blocks.9.mlp.fc1.weight" in message
    assert "shape mismatches (1): norm.weight (checkpoint (7,), model (256,))" in message
    assert str(tmp_path / "mismatch.pt") in message


def test_checkpoint_of_another_backbone_is_refused(tmp_path):
    from terratorch.registry import BACKBONE_REGISTRY

    other = BACKBONE_REGISTRY.build("terratorch_prithvi_eo_tiny", pretrained=False, num_frames=FRAMES, depth=2)
    torch.save(official_layout(other.state_dict()), tmp_path / "depth2.pt")
    with pytest.raises(WeightsError, match=r"missing keys \(24\): blocks\.2\."):
        build_model("prithvi", {"weights": str(tmp_path / "depth2.pt")}, FRAMES, SIZE)


def test_weights_from_an_empty_hf_cache_fail_loudly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(WeightsError, match="ibm-nasa-geospatial/Prithvi-EO-1.0-100M.*not in the local Hugging Face"):
        build_model("prithvi", {"weights": "hf", "backbone": "prithvi_eo_v1_100"}, FRAMES, SIZE)
    with pytest.raises(ConfigError, match="hf, but 'prithvi_eo_tiny' has no official release"):
        build_model("prithvi", {"weights": "hf"}, FRAMES, SIZE)  # refused with the config, before any build
    with pytest.raises(WeightsError, match="'pretrain' needs"):
        build_model("prithvi", {"weights": "pretrain"}, FRAMES, SIZE)


def test_normalisation_uses_pretraining_statistics_and_zeroes_nodata():
    stats = STATISTICS["prithvi_v1"]
    raw = torch.tensor(stats["mean"], dtype=torch.int16).view(1, 1, 6, 1, 1).repeat(1, 2, 1, 2, 2)
    raw[0, 1, :, 0, 0] = torch.tensor(stats["mean"]) + torch.tensor(stats["std"])
    raw[0, 0, 3, 1, 1] = REFLECTANCE_NODATA
    x = HLSNormalize(resolve_normalization("prithvi_v1", "m"))(raw)
    assert x.dtype == torch.float32
    assert torch.allclose(x[0, 1, :, 0, 0], torch.ones(6))
    assert x[0, 0, 3, 1, 1] == 0 and x.abs().max() <= 1
    for backbone, stats in (("prithvi_eo_v1_100", "prithvi_v1"), ("prithvi_eo_v2_300_tl", "prithvi_v2")):
        assert resolve_normalization("backbone", "m", {"type": "prithvi", "backbone": backbone}).name == stats
    custom = resolve_normalization({"mean": [1] * 6, "std": [2] * 6}, "m")
    assert custom == Normalization("custom", (1.0,) * 6, (2.0,) * 6)
    with pytest.raises(ValueError, match="models.m.normalization"):
        resolve_normalization("imagenet", "m")


@pytest.mark.parametrize("name", ["prithvi", "unet", "vit"])
def test_every_model_maps_raw_chips_to_logits_and_rejects_unnormalised_input(name):
    built = build_model(name, {"weights": "none"} if name != "unet" else {}, FRAMES, SIZE)
    model = built.model.eval()
    raw = raw_chips()
    with torch.no_grad():
        logits = model(raw)
        assert logits.shape == (2, NUM_CLASSES, SIZE, SIZE) and torch.isfinite(logits).all()
        # raw reflectance converted to float (skipping normalisation) is refused, whichever door it uses
        with pytest.raises(UnnormalisedInputError, match="expected raw integer"):
            model(raw.float())
        with pytest.raises(UnnormalisedInputError, match=r"does not look normalised: max \|value\| = 9999"):
            model.forward_normalised(raw.float())
    assert built.info["weights"]["source"] == "none"
    assert built.info["normalization"]["mean"] and built.info["parameters"] > 0


def test_statistics_that_do_not_normalise_are_caught():
    with pytest.raises(UnnormalisedInputError, match=r"do not normalise: valid HLS reflectance would reach 1\.6e\+04"):
        build_model("unet", {"normalization": {"mean": [0] * 6, "std": [1] * 6}}, FRAMES, SIZE)


def test_the_input_bound_follows_the_statistics_so_a_cloud_over_a_quiet_region_passes():
    """Dataset statistics of a homogeneous region have small deviations: a bright cloud is then legitimately
    more than 50 of them from the mean, and must pass; raw reflectance must not."""
    from lulc.models import HLS_VALID_RANGE, MAX_ABS_NORMALISED, normalised_bound

    quiet = {"mean": [540.0, 790.0, 780.0, 2690.0, 2310.0, 1510.0], "std": [150.0, 185.0, 290.0, 730.0, 690.0, 540.0]}
    built = build_model("unet", {"normalization": quiet}, FRAMES, SIZE)
    bound = normalised_bound(built.model.normalization)
    assert bound == pytest.approx((HLS_VALID_RANGE[1] - 540.0) / 150.0) and bound > MAX_ABS_NORMALISED
    cloud = raw_chips()
    cloud[:, :, 0, :4, :4] = 9000  # (9000 - 540) / 150 = 56 standard deviations in the blue band
    with torch.no_grad():
        assert torch.isfinite(built.model.eval()(cloud)).all()
        with pytest.raises(UnnormalisedInputError, match="does not look normalised"):
            built.model.forward_normalised(torch.full((1, FRAMES, 6, SIZE, SIZE), float(HLS_VALID_RANGE[1])))


def test_baselines_see_time_major_channels():
    """Channel ``t * 6 + b`` of the U-Net / ViT input is band ``b`` of frame ``t`` (lulc.hls's order)."""
    built = build_model("unet", {}, FRAMES, SIZE)
    x = torch.zeros(1, FRAMES, 6, SIZE, SIZE)
    x[0, 1, 2] = 1.0  # frame 1, RED
    seen = {}
    built.model.net.model.encoder.register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        built.model.net.eval()(x)
    assert seen["x"].shape[1] == FRAMES * 6
    assert torch.nonzero(seen["x"][0, :, 0, 0]).flatten().tolist() == [1 * 6 + 2]


def test_vit_loads_local_natural_image_weights_and_refuses_mismatches(tmp_path):
    import timm

    rgb = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=4)
    torch.save(rgb.state_dict(), tmp_path / "vit_tiny.pth")
    built = build_model("vit", {"weights": str(tmp_path / "vit_tiny.pth")}, FRAMES, SIZE)
    vit = built.model.net.vit
    assert torch.equal(vit.blocks[3].mlp.fc2.weight, rgb.blocks[3].mlp.fc2.weight)
    assert vit.patch_embed.proj.weight.shape == (192, FRAMES * 6, 8, 8)  # adapted: 3 -> 18 channels, 16 -> 8 px
    assert built.info["weights"]["sha256"] and built.info["weights"]["source"] == "file"
    with pytest.raises(WeightsError, match=r"depth': 3}: unexpected keys \(12\): blocks\.3\."):
        build_model("vit", {"weights": str(tmp_path / "vit_tiny.pth"), "model_kwargs": {"depth": 3}}, FRAMES, SIZE)
    with pytest.raises(WeightsError, match="does not exist"):
        build_model("vit", {"weights": str(tmp_path / "none.pth")}, FRAMES, SIZE)


def test_upernet_decoder_builds():
    built = build_model("prithvi", {"weights": "none", "decoder": "UperNetDecoder"}, FRAMES, SIZE)
    assert built.info["feature_indices"] == [0, 1, 2, 3]
    with torch.no_grad():
        assert built.model.eval()(raw_chips(1)).shape == (1, NUM_CLASSES, SIZE, SIZE)


def test_building_prithvi_leaves_fp32_matmuls_in_fp32():
    """Importing TerraTorch sets torch.set_float32_matmul_precision("medium") process-wide (bf16 matmuls on AMX
    CPUs, TF32 on NVIDIA GPUs). Building a model must restore full fp32, also where the flag was lowered before."""
    import subprocess
    import sys

    torch.set_float32_matmul_precision("medium")  # what an earlier import of TerraTorch leaves behind
    build_model("prithvi", {"weights": "none"}, FRAMES, SIZE)
    assert torch.get_float32_matmul_precision() == "highest"

    # and in a fresh process, where the import itself happens during the build
    script = (
        "import torch; from lulc.models import build_model; "
        "build_model('prithvi', {'weights': 'none'}, 1, 16); print(torch.get_float32_matmul_precision())"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] == "highest"


# ------------------------------------------------------------------ decoder options and the auxiliary head


def _decoder_modules(model: torch.nn.Module, kind: type) -> list[torch.nn.Module]:
    """Modules of ``kind`` outside the ViT encoder (the decoder, the heads)."""
    from lulc.models import vit_encoder

    inside = {id(m) for m in vit_encoder(model).modules()}
    return [m for m in model.modules() if isinstance(m, kind) and id(m) not in inside]


@pytest.mark.parametrize(
    ("name", "cfg", "implementation"),
    [
        ("prithvi", {"weights": "none", "decoder_dropout": 0.1}, "terratorch"),
        ("prithvi", {"weights": "none", "decoder_dropout": 0.1, "decoder_norm": "batch"}, "lulc"),
        ("vit", {"decoder_dropout": 0.1, "decoder_norm": "batch"}, None),
    ],
)
def test_decoder_norm_and_dropout_build_those_modules(name, cfg, implementation):
    built = build_model(name, cfg, FRAMES, SIZE)
    model = built.model
    assert built.info.get("decoder_implementation") == implementation
    assert built.info["decoder_norm"] == cfg.get("decoder_norm", "layer") and built.info["decoder_dropout"] == 0.1
    assert [m.p for m in _decoder_modules(model, torch.nn.Dropout)] == [0.1]
    batch_norms = _decoder_modules(model, torch.nn.BatchNorm2d)
    layer_norms = _decoder_modules(model, torch.nn.LayerNorm)
    blocks = 4 if name == "prithvi" else 3  # one per upsampling block: patch 16 = 2^4 (Prithvi), 8 = 2^3 (ViT)
    if cfg.get("decoder_norm") == "batch":
        assert len(batch_norms) == blocks and not layer_norms
    else:
        assert not batch_norms and len(layer_norms) == blocks
    default = build_model(name, {"weights": "none"} if name == "prithvi" else {}, FRAMES, SIZE).model
    assert not _decoder_modules(default, torch.nn.Dropout)  # dropout 0: no module at all (as before)
    with torch.no_grad():
        assert model.eval()(raw_chips()).shape == (2, NUM_CLASSES, SIZE, SIZE)


@pytest.mark.parametrize("name", ["prithvi", "vit"])
def test_the_auxiliary_head_gives_logits_in_training_only(name):
    cfg = {"aux_head": {"enabled": True, "channels": 16, "num_convs": 1}} | ({"weights": "none"} if name == "prithvi"
                                                                              else {})
    built = build_model(name, cfg, FRAMES, SIZE)
    model = built.model.eval()
    raw = raw_chips()
    with torch.no_grad():
        logits = model(raw)
        main, aux = model.forward_with_aux(raw)
    assert torch.equal(logits, main)  # forward (evaluation, prediction) returns the main logits only
    assert aux is not None and aux.shape == logits.shape and not torch.allclose(aux, logits)
    assert built.info["aux_head"] == {"enabled": True, "channels": 16, "num_convs": 1, "loss_weight": 1.0}
    assert any(key.startswith("net.aux_head.") for key in model.state_dict())
    plain = build_model(name, {"weights": "none"} if name == "prithvi" else {}, FRAMES, SIZE).model.eval()
    with torch.no_grad():
        assert plain.forward_with_aux(raw)[1] is None
    assert not any(".aux_head." in key for key in plain.state_dict())


def test_prithvi_with_the_repository_decoder_computes_what_terratorch_does():
    """With an auxiliary head, Prithvi's FCN decoder is lulc.models.decoders.FCNDecoder behind TerraTorch's necks: on
    the same weights its main logits equal those of TerraTorch's FCNDecoder + SegmentationHead."""
    terratorch_model = build_model("prithvi", {"weights": "none"}, FRAMES, SIZE).model.eval()
    own = build_model("prithvi", {"weights": "none", "aux_head": {"enabled": True}}, FRAMES, SIZE).model.eval()
    source = terratorch_model.state_dict()
    mapped = {}
    for key, value in source.items():
        key = key.replace("net.model.encoder.", "net.encoder.").replace("net.model.head.head.2.", "net.decoder.head.")
        key = key.replace("net.model.decoder.convs.", "net.decoder.convs.").replace(".2.ln.", ".2.")
        mapped[key] = value
    target = own.state_dict()
    assert set(mapped) == {k for k in target if not k.startswith("net.aux_head.")}
    own.load_state_dict(mapped | {k: v for k, v in target.items() if k.startswith("net.aux_head.")})
    raw = raw_chips()
    with torch.no_grad():
        torch.testing.assert_close(own(raw), terratorch_model(raw), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["prithvi", "vit"])
def test_a_saved_model_with_batch_norm_and_aux_head_reloads_with_identical_logits(name, tmp_path):
    from lulc.models import load_trained_model, save_trained_model

    cfg = {"decoder_norm": "batch", "decoder_dropout": 0.1, "aux_head": {"enabled": True}}
    cfg |= {"weights": "none"} if name == "prithvi" else {}
    built = build_model(name, cfg, FRAMES, SIZE)
    built.model.train()
    with torch.no_grad():
        for _ in range(3):  # the batch norms' running statistics move away from their initial values
            built.model.forward_with_aux(raw_chips())
    built.model.eval()
    batch_norm = _decoder_modules(built.model, torch.nn.BatchNorm2d)[0]
    assert int(batch_norm.num_batches_tracked) > 0 and not torch.allclose(batch_norm.running_var, torch.ones(1))
    save_trained_model(built, cfg, tmp_path / "best.ckpt", {})
    reloaded, _ = load_trained_model(tmp_path / "best.ckpt")
    raw = raw_chips()
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(raw), built.model(raw))
        assert torch.equal(reloaded.forward_with_aux(raw)[1], built.model.forward_with_aux(raw)[1])


@pytest.mark.parametrize(
    ("name", "cfg", "key"),
    [
        ("prithvi", {"decoder": "UperNetDecoder", "aux_head": {"enabled": True}}, "models.prithvi.aux_head.enabled"),
        ("prithvi", {"decoder": "UperNetDecoder", "decoder_norm": "batch"}, "models.prithvi.decoder_norm"),
        ("vit", {"aux_head": {"enabled": True, "num_convs": 4}}, "models.vit.aux_head.num_convs"),
        ("vit", {"freeze_encoder": True, "layer_decay": 0.9}, "models.vit.layer_decay"),
        ("prithvi", {"layer_decay": 1.5}, "models.prithvi.layer_decay"),
        ("unet", {"freeze_encoder": True}, "models.unet.freeze_encoder"),
    ],
)
def test_combinations_that_cannot_work_are_refused_naming_the_key(name, cfg, key):
    from lulc.config import ConfigError, model_entry

    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        model_entry(name, cfg)


def test_equal_models_saved_under_different_temporary_names_are_equal_bytes(tmp_path):
    """An atomic write saves under a random temporary name: the checkpoint's bytes (and the SHA-256 the maps
    tag) must not depend on it, so a rerun or a SLURM run gives byte-identical maps."""
    from lulc.io import atomic_path
    from lulc.models import save_trained_model

    built = build_model("unet", {}, FRAMES, SIZE)
    copies = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        with atomic_path(tmp_path / folder / "best.ckpt") as tmp:
            save_trained_model(built, {"type": "unet"}, tmp, {"epoch": 1})
        copies.append((tmp_path / folder / "best.ckpt").read_bytes())
    assert copies[0] == copies[1]
