"""The TerraMind, Clay and DOFA families (lulc.families.{terramind,clay,dofa}, lulc.models.{terramind,clay,dofa}):
tiny random encoders on the demo's 32-pixel, 3-frame chips; checkpoints written in each family's released key
layout load exactly, and any other checkpoint is refused with the key names. Offline: nothing is downloaded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from lulc import families
from lulc.families.cache import cached_release
from lulc.models import WeightsError, build_model, freeze_encoder, resolve_normalization, vit_encoder
from lulc.models.core import encoder_layer_id

FRAMES, CHIP, CLASSES = 3, 32, 9

#: family -> tiny backbone_kwargs for a CPU.
TINY: dict[str, dict[str, Any]] = {
    "terramind": {"depth": 2},
    "clay": {"dim": 64, "depth": 2, "heads": 2, "dim_head": 32},
    "dofa": {"depth": 2},
}
#: TerraMind's S2L2A band order (TerraTorch's PRETRAINED_BANDS["untok_sen2l2a@224"]) and the HLS bands' places.
S2L2A_ORDER = ["COASTAL_AEROSOL", "BLUE", "GREEN", "RED", "RED_EDGE_1", "RED_EDGE_2", "RED_EDGE_3", "NIR_BROAD",
               "NIR_NARROW", "WATER_VAPOR", "SWIR_1", "SWIR_2"]
TM_PROJ = "encoder_embeddings.untok_sen2l2a@224.proj.weight"


def _entry(family: str, **extra: Any) -> dict[str, Any]:
    return {"type": family, "weights": "none", "backbone_kwargs": TINY[family], **extra}


def _build(family: str, **extra: Any) -> Any:
    return build_model("m", _entry(family, **extra), FRAMES, CHIP, CLASSES)


def _encoder(built: Any) -> torch.nn.Module:
    return built.model.net.encoder


# ------------------------------------------------------------- released layouts, built from an encoder's state


def _terramind_release(encoder: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A TerraMind_v1_*.pt-like flat state dict (12-band patch embedding, generative tensors), and the encoder
    tensors it must load as (the 6 HLS columns of the projection)."""
    own = {k: v.clone() for k, v in encoder.state_dict().items()}
    proj = own[TM_PROJ]
    dim = proj.shape[0]
    full = torch.randn(dim, 16 * 16, 12)
    places = [S2L2A_ORDER.index(b) for b in families.terramind.S2L2A_BANDS]
    full[..., places] = proj.view(dim, 16 * 16, 6)
    release = dict(own) | {TM_PROJ: full.reshape(dim, -1)}
    release |= {"decoder.0.norm1.weight": torch.ones(dim), "mask_token": torch.zeros(1, 1, dim),
                "encoder_embeddings.untok_sen1grd@224.proj.weight": torch.zeros(dim, 512)}
    return release, own


def _clay_release(encoder: torch.nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A Clay Lightning checkpoint: state_dict with model.encoder.* (+ the MAE decoder)."""
    own = {k: v.clone() for k, v in encoder.state_dict().items()}
    state = {"model.encoder." + k.removeprefix("clay_encoder."): v for k, v in own.items()}
    state["model.decoder.mask_patch"] = torch.zeros(3)
    return {"state_dict": state, "epoch": 1}, own


def _dofa_release(encoder: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """DOFA's flat state dict (torchgeo's release layout; its classifier head is ignored)."""
    own = {k: v.clone() for k, v in encoder.state_dict().items()}
    state = {k.removeprefix("dofa_model."): v for k, v in own.items()}
    state["head.weight"] = torch.zeros(45, 4)
    return state, own


RELEASE_LAYOUT: dict[str, Callable[[torch.nn.Module], tuple[Any, dict[str, torch.Tensor]]]] = {
    "terramind": _terramind_release,
    "clay": _clay_release,
    "dofa": _dofa_release,
}


def _state_of(checkpoint: Any) -> dict[str, torch.Tensor]:
    return checkpoint["state_dict"] if "state_dict" in checkpoint else checkpoint


def _randomised(encoder: torch.nn.Module) -> None:
    with torch.no_grad():
        for tensor in encoder.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor))


@pytest.fixture(scope="module", params=sorted(TINY))
def family_built(request: pytest.FixtureRequest) -> tuple[str, Any]:
    return request.param, _build(request.param)


@pytest.fixture(scope="module")
def prithvi_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = build_model("p", {"type": "prithvi", "backbone": "prithvi_eo_tiny",
                              "backbone_kwargs": {"patch_size": [1, 8, 8]}, "weights": "none"}, FRAMES, CHIP, CLASSES)
    encoder = vit_encoder(built.model)
    assert encoder is not None
    path = tmp_path_factory.mktemp("prithvi") / "prithvi.pt"
    torch.save({f"encoder.{k}": v for k, v in encoder.state_dict().items()}, path)
    return path


# ------------------------------------------------------------------------------------------------------ tests


def test_forward_raw_batch(family_built: tuple[str, Any]) -> None:
    family, built = family_built
    raw = torch.randint(0, 3000, (2, FRAMES, 6, CHIP, CHIP), dtype=torch.int16)
    built.model.eval()
    with torch.no_grad():
        logits = built.model(raw)
    assert logits.shape == (2, CLASSES, CHIP, CHIP)
    assert torch.isfinite(logits).all()
    assert built.info["type"] == family and built.info["weights"]["source"] == "none"
    assert built.info["normalization"]["name"] == f"{family}_s2l2a"


def test_frame_merge_mean_and_aux_head() -> None:
    built = _build("clay", frame_merge="mean", aux_head={"enabled": True, "channels": 16, "num_convs": 2})
    raw = torch.randint(0, 3000, (2, FRAMES, 6, CHIP, CHIP), dtype=torch.int16)
    logits, aux = built.model.forward_with_aux(raw)
    assert logits.shape == aux.shape == (2, CLASSES, CHIP, CHIP)
    assert built.model.net.frame_proj is None


def test_released_layout_loads_exactly(family_built: tuple[str, Any], tmp_path: Path) -> None:
    family, _built = family_built
    source = _build(family)
    _randomised(_encoder(source))
    checkpoint, expected = RELEASE_LAYOUT[family](_encoder(source))
    path = tmp_path / "release.ckpt"
    torch.save(checkpoint, path)
    loaded = build_model("m", _entry(family, weights=str(path)), FRAMES, CHIP, CLASSES)
    state = _encoder(loaded).state_dict()
    assert set(state) == set(expected)
    for key, tensor in expected.items():
        assert torch.equal(state[key], tensor), key
    record = loaded.info["weights"]
    assert record["source"] == "file" and record["path"] == str(path) and len(record["sha256"]) == 64
    assert record["tensors_loaded"] == len(expected) and record["layout"]
    raw = torch.randint(0, 3000, (1, FRAMES, 6, CHIP, CHIP), dtype=torch.int16)
    assert torch.isfinite(loaded.model(raw)).all()


def _one_key(state: dict[str, torch.Tensor], family: str) -> str:
    return next(k for k in state if ("blocks" in k or "encoder.1." in k or "layers.1." in k) and "weight" in k)


@pytest.mark.parametrize("change", ["missing", "unexpected", "shape"])
def test_mismatched_checkpoint_is_refused_naming_the_key(
    family_built: tuple[str, Any], tmp_path: Path, change: str
) -> None:
    family, built = family_built
    checkpoint, _ = RELEASE_LAYOUT[family](_encoder(built))
    state = _state_of(checkpoint)
    key = _one_key(state, family)
    if change == "missing":
        del state[key]
        named = key
    elif change == "unexpected":
        named = {"terramind": "encoder_norm.extra", "clay": "model.encoder.extra", "dofa": "extra"}[family]
        state[named] = torch.zeros(2)
    else:
        state[key] = torch.zeros(3, 3)
        named = key
    path = tmp_path / f"{change}.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(WeightsError, match=change if change != "shape" else "shape mismatches") as error:
        build_model("m", _entry(family, weights=str(path)), FRAMES, CHIP, CLASSES)
    shown = named.removeprefix("model.encoder.")
    assert shown in str(error.value) and "models.m.weights" in str(error.value)


def test_another_familys_checkpoint_is_refused(family_built: tuple[str, Any], prithvi_checkpoint: Path) -> None:
    family, _ = family_built
    with pytest.raises(WeightsError, match="missing keys") as error:
        build_model("m", _entry(family, weights=str(prithvi_checkpoint)), FRAMES, CHIP, CLASSES)
    assert str(prithvi_checkpoint) in str(error.value)


def test_missing_file_and_uncached_release_are_refused(family_built: tuple[str, Any], tmp_path: Path) -> None:
    family, _ = family_built
    with pytest.raises(WeightsError, match="does not exist"):
        build_model("m", _entry(family, weights=str(tmp_path / "nope.pt")), FRAMES, CHIP, CLASSES)
    record = families.family(family)
    backbone, release = next(iter(record.releases.items()))
    if cached_release(release) is not None:
        pytest.skip("release in the local cache")
    with pytest.raises(WeightsError, match="hf download") as error:
        build_model("m", {"type": family, "backbone": backbone, "weights": "hf"}, FRAMES, CHIP, CLASSES)
    assert release.repo in str(error.value) and release.filename in str(error.value)


def test_freeze_encoder_leaves_only_the_decoder_trainable(family_built: tuple[str, Any]) -> None:
    family, _ = family_built
    built = _build(family)
    frozen = freeze_encoder(built.model)
    assert frozen == sum(p.numel() for p in _encoder(built).parameters())
    trainable = {n.split(".")[1] for n, p in built.model.named_parameters() if p.requires_grad}
    assert trainable == {"decoder", "frame_proj"}


def test_layer_decay_names(family_built: tuple[str, Any]) -> None:
    _family, built = family_built
    view: Any = vit_encoder(built.model)
    depth = len(view.blocks)
    assert depth == 2
    layers = {encoder_layer_id(name, depth) for name, _ in view.named_parameters()}
    assert {0, 1, 2} <= layers
    encoder_ids = {id(p) for p in _encoder(built).parameters()}
    assert {id(p) for p in view.parameters()} == encoder_ids


def test_family_records_and_statistics() -> None:
    for family in TINY:
        record = families.family(family)
        assert record.foundation and record.weights_specs == ("hf",)
        assert record.colour not in ("#1f77b4", "#ff7f0e", "#2ca02c")
        entry = {"type": family, "backbone": next(iter(record.releases)), "decoder": "FCNDecoder"}
        name = record.backbone_statistics(entry)
        assert name in record.statistics and name in families.all_statistics()
        stats = record.statistics[name]
        assert len(stats["mean"]) == len(stats["std"]) == 6
        resolved = resolve_normalization("backbone", "m", entry)
        assert resolved.name == name and resolved.mean == tuple(stats["mean"])
        assert resolve_normalization(name, "m", entry).std == tuple(stats["std"])
        assert record.patch_size(entry) in (8, 16) and record.fcn_decoder(entry)
        assert not record.time_location(entry)
    assert len({families.family(f).colour for f in families.FAMILIES}) == len(families.FAMILIES)


def test_releases_match_terratorch() -> None:
    from lulc.models.precision import import_terratorch

    tm = import_terratorch("terratorch.models.backbones.terramind.model.terramind_register")
    for backbone, release in families.terramind.RELEASES.items():
        assert (release.repo, release.filename) == (tm.pretrained_weights[backbone]["hf_hub_id"],
                                                    tm.pretrained_weights[backbone]["hf_hub_filename"])
    stats = families.terramind.STATISTICS["terramind_s2l2a"]
    places = [tm.PRETRAINED_BANDS["untok_sen2l2a@224"].index(b) for b in families.terramind.S2L2A_BANDS]
    assert stats["mean"] == tuple(tm.v1_pretraining_mean["untok_sen2l2a@224"][i] for i in places)
    assert stats["std"] == tuple(tm.v1_pretraining_std["untok_sen2l2a@224"][i] for i in places)
    embedder = import_terratorch("terratorch.models.backbones.clay_v1.embedder")
    clay_cfg = embedder.default_cfgs["clay_v1_base"].default.to_dict()
    assert (clay_cfg["hf_hub_id"], clay_cfg["hf_hub_filename"]) == (
        families.clay.RELEASES["clay_v1_base"].repo, families.clay.RELEASES["clay_v1_base"].filename)
    modules = import_terratorch("terratorch.models.backbones.clay_v1.modules")
    assert families.clay.WAVELENGTHS == tuple(modules.WAVELENGTHS[b] for b in families.clay.CLAY_BANDS)
    dofa_vit = import_terratorch("terratorch.models.backbones.dofa_vit")
    assert families.dofa.WAVELENGTHS == tuple(dofa_vit.get_wavelenghts(list(families.dofa.DOFA_BANDS)))
    from torchgeo.models import dofa

    for backbone, weights in (("dofa_base_patch16_224", dofa.DOFABase16_Weights.DOFA_MAE),
                              ("dofa_large_patch16_224", dofa.DOFALarge16_Weights.DOFA_MAE)):
        release = families.dofa.RELEASES[backbone]
        assert weights.url.startswith(f"https://hf.co/{release.repo}/") and weights.url.endswith(release.filename)


def test_start_up_rules() -> None:
    from lulc.schema import ConfigError, model_entry, model_rules

    with pytest.raises(ConfigError, match=r"config key 'models.c.backbone_kwargs.width'"):
        model_entry("c", {"type": "clay", "backbone_kwargs": {"depth": 2, "width": 3}}, CHIP)
    assert not list(model_rules("t", model_entry("t", _entry("terramind"), CHIP), CHIP))
    with pytest.raises(ConfigError, match="multiple of the patch size 16"):
        model_entry("d", _entry("dofa"), 40)
    with pytest.raises(ConfigError, match="terramind_v1_tiny"):
        model_entry("t", {"type": "terramind", "backbone": "terramind_v2"}, CHIP)


@pytest.mark.parametrize("family", ["terramind", "dofa"])
def test_release_position_table_of_224_pixels_is_adapted(family: str, tmp_path: Path) -> None:
    """Releases are 224-pixel models: TerraMind's fixed sin-cos table is rebuilt for the chip size, DOFA's is
    resized (TerraTorch's resize_pos_embed)."""
    source = _build(family)
    checkpoint, expected = RELEASE_LAYOUT[family](_encoder(source))
    key = {"terramind": "encoder_embeddings.untok_sen2l2a@224.pos_emb", "dofa": "pos_embed"}[family]
    dim = checkpoint[key].shape[-1]
    checkpoint[key] = torch.randn(1, 196 if family == "terramind" else 197, dim)
    path = tmp_path / "release.pt"
    torch.save(checkpoint, path)
    loaded = build_model("m", _entry(family, weights=str(path)), FRAMES, CHIP, CLASSES)
    model_key = key if family == "terramind" else f"dofa_model.{key}"
    assert loaded.info["weights"]["tensors_rebuilt"] == [model_key]
    assert _encoder(loaded).state_dict()[model_key].shape == expected[model_key].shape
