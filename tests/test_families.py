"""Model families as data (lulc.families): the records, a family registered in one place and run through tune,
train, evaluate and the answer, and the time / location inputs of Prithvi-EO-2.0 ``_tl`` backbones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
from pyproj import Transformer
from synthetic_chips import CHIP_CRS, FAST, FRAME_DATES, make_dataset
from torch import nn

import lulc.families as families
from lulc.config import ConfigError, model_entry, search_space_rules
from lulc.coords import LOCATION_KEY, TEMPORAL_KEY, batch_coords, temporal_coords
from lulc.dataset import ChipStoreDataset
from lulc.families import FAMILIES, ModelFamily, Release, register_family, unregister_family
from lulc.models import build_model, load_trained_model
from lulc.models.core import BuiltModel, LULCModel
from lulc.models.normalization import resolve_normalization
from lulc.models.weights import WeightsError, read_state_dict, resolve_weights

TINY_TL = {"type": "prithvi", "backbone": "prithvi_eo_v2_tiny_tl", "backbone_kwargs": {"patch_size": [1, 8, 8]},
           "weights": "none", "epochs": 1, "batch_size": 4}  # fmt: skip
TINY = {**TINY_TL, "backbone": "prithvi_eo_tiny"}


# ------------------------------------------------------------------------------------------- the records


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_record_is_complete_and_consistent(name):
    """Each record's entry definition, default search space, statistics and colour hold together."""
    record = FAMILIES[name]
    entry = model_entry(f"my_{name}", {"type": name})  # the defaults of its definition, and its own rules
    assert entry["type"] == name
    assert search_space_rules(name, dict(record.search_space), f"tune.search_space.{name}") == []
    for stats in record.statistics.values():
        assert len(stats["mean"]) == len(stats["std"]) == len(record.bands) and min(stats["std"]) > 0
    if record.backbone_statistics is not None:
        assert record.backbone_statistics(entry) in families.all_statistics()
    assert record.colour.startswith("#") and len(record.colour) == 7
    assert len({f.colour for f in FAMILIES.values()}) == len(FAMILIES), "each family has its own colour"
    for backbone, release in record.releases.items():
        assert release.fetch_command == f"hf download {release.repo} {release.filename}", backbone


def test_prithvi_releases_match_terratorch():
    """The record's releases are those TerraTorch names, so start-up finds them without importing TerraTorch."""
    from lulc.models import import_terratorch

    released = import_terratorch("terratorch.models.backbones.prithvi_vit").pretrained_weights
    for backbone, release in FAMILIES["prithvi"].releases.items():
        assert (release.repo, release.filename) == (released[backbone]["hf_hub_id"],
                                                    released[backbone]["hf_hub_filename"])  # fmt: skip


def test_a_release_missing_from_the_cache_is_refused_with_the_command_that_fetches_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    entry = {"type": "prithvi", "backbone": "prithvi_eo_v2_300_tl"}
    with pytest.raises(WeightsError, match=r"hf download ibm-nasa-geospatial/Prithvi-EO-2.0-300M-TL "
                                           r"Prithvi_EO_V2_300M_TL\.pt"):  # fmt: skip
        resolve_weights("hf", "big", entry, None)
    from lulc.config import _hf_weights_cached

    config = {"train": {"models": ["big"]}, "models": {"big": {**entry, "weights": "hf"}}}
    assert "hf download ibm-nasa-geospatial/Prithvi-EO-2.0-300M-TL" in "".join(_hf_weights_cached(config))


def test_unknown_family_and_unknown_statistics_are_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"models\.m\.type.*unknown model type 'segformer'.*prithvi"):
        model_entry("m", {"type": "segformer"})
    with pytest.raises(ConfigError, match=r"models\.m\.normalization.*unknown statistics 'imagenet'"):
        model_entry("m", {"type": "unet", "normalization": "imagenet"})
    with pytest.raises(ConfigError, match=r"models\.m\.normalization.*'backbone' needs a family"):
        model_entry("m", {"type": "unet", "normalization": "backbone"})
    with pytest.raises(ConfigError, match=r"models\.m\.weights.*'hf' is not available for vit"):
        model_entry("m", {"type": "vit", "weights": "hf"})


def test_tl_backbones_are_accepted_and_take_time_and_location():
    entry = model_entry("p", TINY_TL, 32)
    assert FAMILIES["prithvi"].time_location(entry)
    assert not FAMILIES["prithvi"].time_location(model_entry("p", TINY, 32))


# ------------------------------------------------------------------------- a family registered in one place


class _TinyCNN(nn.Module):
    """Two convolutions on the T x 6 channels: the fake family's network."""

    def __init__(self, channels: int, width: int, classes: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.GELU())
        self.head = nn.Conv2d(width, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x.flatten(1, 2)))

    def vit_encoder(self) -> nn.Module:
        return self.encoder


def build_tiny_cnn(name, cfg, frames, chip_size, num_classes, pretrain_checkpoint, load_weights) -> BuiltModel:
    net = _TinyCNN(frames * 6, int(cfg["width"]), num_classes)
    path, weights = resolve_weights(cfg["weights"] if load_weights else "none", name, cfg, pretrain_checkpoint)
    if path is not None:
        net.encoder.load_state_dict(read_state_dict(path, f"models.{name}.weights"), strict=True)
        weights |= {"path": str(path)}
    normalization = resolve_normalization(cfg["normalization"], name, cfg)
    return BuiltModel(LULCModel(net, normalization), {"weights": weights})


FAKE = ModelFamily(
    name="tinyfm",
    description="a tiny convolutional 'foundation model' registered by a test",
    builder=build_tiny_cnn,
    foundation=True,
    colour="#123456",
    definition={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "type": {"const": "tinyfm", "default": "tinyfm"},
            "width": {"type": "integer", "minimum": 1, "default": 8},
            "weights": {"type": "string", "default": "none"},
            "normalization": {"$ref": "#/definitions/normalization", "default": "backbone"},
            "lr": {"$ref": "#/definitions/learning_rate", "default": 1.0e-3},
            "weight_decay": {"$ref": "#/definitions/weight_decay", "default": 0.01},
            "epochs": {"$ref": "#/definitions/epochs", "default": 1},
            "batch_size": {"$ref": "#/definitions/batch_size", "default": 4},
        },
    },
    search_space={"lr": {"low": 1.0e-3, "high": 1.0e-2, "log": True}},
    encoder_keys=("type", "width"),
    statistics={"tinyfm_stats": {"mean": (1000.0,) * 6, "std": (1500.0,) * 6}},
    backbone_statistics=lambda entry: "tinyfm_stats",
    releases={"tiny": Release("example/tinyfm", "tinyfm.pt")},
)


@pytest.fixture
def fake_family():
    register_family(FAKE)
    yield FAKE
    unregister_family(FAKE.name)


def test_a_family_registered_in_one_place_runs_through_tune_train_evaluate_and_the_answer(
    fake_family, tmp_path, one_torch_thread
):
    from lulc.evaluate import RunToEvaluate, evaluate_runs
    from lulc.schema import section
    from lulc.summary import model_colours, runs_table, write_answer
    from lulc.train import train
    from lulc.tune import tune

    stores, splits = make_dataset(tmp_path / "data", chips_per_aoi=8, seeds=(0, 1), coords=True)
    pretrained = tmp_path / "tinyfm.pt"
    torch.save(_TinyCNN(18, 8, 9).encoder.state_dict(), pretrained)
    # the schema knows the family: its default search space, its entry's defaults and its statistics
    assert section("tune", {})["search_space"]["tinyfm"] == dict(FAKE.search_space)
    assert model_entry("fm", {"type": "tinyfm"})["width"] == 8
    best = tune("fm", {"type": "tinyfm", "weights": str(pretrained)}, FAST, {"trials": 2, "epochs": 1,
                "startup_trials": 2, "pruning": "none"}, stores, splits, tmp_path / "tune" / "fm")  # fmt: skip
    assert 1e-3 <= best["params"]["lr"] <= 1e-2
    models = {"fm": {"type": "tinyfm", "weights": str(pretrained)}, "fm_scratch": {"type": "tinyfm"},
              "unet": {"encoder_depth": 2, "decoder_channels": [8, 8], "epochs": 1, "batch_size": 4}}  # fmt: skip
    to_evaluate = []
    for model, cfg in models.items():
        for seed in (0, 1):
            out = tmp_path / "runs" / f"{model}_s{seed}"
            tuned = tmp_path / "tune" / "fm" / "best.yaml" if model == "fm" else None
            run = train(model, cfg, FAST, stores, splits, 1.0, seed, out, tuned=tuned)
            assert run["model_info"]["normalization"]["name"] == ("tinyfm_stats" if model != "unet" else "prithvi_v1")
            to_evaluate.append(RunToEvaluate(out / "best.ckpt", out / "metrics.json", out / "confusion.csv",
                                             out / "per_class.csv", run))  # fmt: skip
    evaluate_runs(to_evaluate, stores, splits)
    runs = runs_table([r.out_json for r in to_evaluate])
    roles = runs.groupby("model")["role"].first().to_dict()
    assert roles == {"fm": "foundation", "fm_scratch": "scratch", "unet": "baseline"}
    answer = write_answer(runs, tmp_path / "summary")
    pairs = set(zip(answer["model"], answer["reference"], answer["reference_role"], strict=True))
    assert pairs == {("fm", "unet", "baseline"), ("fm", "fm_scratch", "scratch")}
    assert (answer["n_pairs"] == 2).all()
    assert "fm" in (tmp_path / "summary" / "answer.md").read_text()
    assert model_colours(["tinyfm", "unet"])["tinyfm"] == "#123456"


def test_a_checkpoint_of_an_unregistered_family_names_the_family(fake_family, tmp_path, one_torch_thread):
    stores, splits = make_dataset(tmp_path / "data", chips_per_aoi=8, seeds=(0,))
    train("fm", {"type": "tinyfm"}, FAST, stores, splits, 1.0, 0, tmp_path / "run")
    unregister_family(FAKE.name)
    try:
        with pytest.raises(ValueError, match=r"unknown model type 'tinyfm'"):
            load_trained_model(tmp_path / "run" / "best.ckpt")
    finally:
        register_family(FAKE, replace=True)


def train(*args, **kwargs):
    from lulc.train import train as train_run

    return train_run(*args, **kwargs)


# ----------------------------------------------------------------- time and location of _tl backbones


def _raw(batch: int = 2, frames: int = 3, size: int = 32) -> torch.Tensor:
    return torch.randint(0, 3000, (batch, frames, 6, size, size), generator=torch.Generator().manual_seed(0),
                         dtype=torch.int16)  # fmt: skip


def test_a_frame_date_changes_a_tl_models_output_and_not_a_plain_ones():
    torch.manual_seed(0)
    raw = _raw()
    places = np.array([[45.0, 10.0], [46.0, 11.0]])
    dates = list(FRAME_DATES[:3])
    later = [dates[0], "2023-07-21", dates[2]]
    outputs = {}
    for name, cfg in (("tl", TINY_TL), ("plain", TINY)):
        model = build_model(name, cfg, 3, 32, 9).model.eval()
        with torch.no_grad():
            outputs[name] = [model(raw, batch_coords(temporal_coords(d), places)) for d in (dates, later)]
    assert not torch.allclose(outputs["tl"][0], outputs["tl"][1])
    assert torch.equal(outputs["plain"][0], outputs["plain"][1])
    tl = build_model("tl", TINY_TL, 3, 32, 9)
    assert tl.info["time_location"] is True and tl.model.time_location
    with pytest.raises(ValueError, match="takes each frame's date and the sample's location"):
        tl.model(raw)


def test_temporal_coords_are_year_and_day_of_year():
    assert temporal_coords(["2024-01-01", "2024-12-31", "2023-03-01"]).tolist() == [[2024, 1], [2024, 366],
                                                                                      [2023, 60]]  # fmt: skip


def test_a_chips_location_is_its_centre_and_its_dates_are_the_frames(tmp_path):
    stores, _ = make_dataset(tmp_path, chips_per_aoi=4, seeds=(0,), coords=True)
    chips = pd.DataFrame({"aoi": ["aoi_a", "aoi_b"], "index": [2, 3]})
    dataset = ChipStoreDataset(stores, chips, coords=True)
    import geopandas as gpd

    to_wgs84 = Transformer.from_crs(CHIP_CRS, "EPSG:4326", always_xy=True)
    for i, (aoi, index) in enumerate(zip(chips["aoi"], chips["index"], strict=True)):
        sample = dataset[i]
        square = gpd.read_parquet(stores[aoi] / "manifest.parquet").set_index("index").geometry[index]
        lon, lat = to_wgs84.transform(*square.centroid.coords[0])
        assert sample[LOCATION_KEY].tolist() == pytest.approx([lat, lon], abs=1e-5)
        assert sample[TEMPORAL_KEY].tolist() == temporal_coords(FRAME_DATES[:3]).tolist()
    assert LOCATION_KEY not in ChipStoreDataset(stores, chips)[0], "plain models get no coords"


class _RecordingTL(nn.Module):
    """A net with time / location inputs that records what each call receives and predicts class 0."""

    def __init__(self, classes: int = 9) -> None:
        super().__init__()
        self.classes = classes
        self.bias = nn.Parameter(torch.zeros(1))
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x, temporal_coords, location_coords):
        self.calls.append((temporal_coords.clone(), location_coords.clone()))
        return torch.zeros((x.shape[0], self.classes, *x.shape[-2:])) + self.bias


def test_every_map_tile_gets_its_own_centre_and_the_images_frame_dates(tmp_path):
    """Sliding-window prediction: the location a tile receives is that of its centre pixel (its window on the
    scene, mirrored margin included), and the dates those of the image's frames."""
    from lulc.predict import predict_scene
    from lulc.tiling import TileGrid

    height, width, tile, stride = 40, 56, 16, 12
    transform = rasterio.transform.from_origin(600_000, 4_100_000, 10, 10)
    image = tmp_path / "image.tif"
    pixels = np.full((18, height, width), 1200, dtype=np.int16)
    with rasterio.open(image, "w", driver="GTiff", width=width, height=height, count=18, dtype="int16",
                       crs="EPSG:32611", transform=transform, nodata=-9999) as dst:  # fmt: skip
        dst.write(pixels)
        dst.update_tags(**{f"FRAME_{t}": f"{d} S30 item{t}" for t, d in enumerate(FRAME_DATES[:3])})
    net = _RecordingTL()
    model = LULCModel(net, resolve_normalization("prithvi_v2", "m"), time_location=True)
    predict_scene(model, image, tmp_path / "map.tif", tile=tile, stride=stride, batch_size=3, progress=False)
    grid = TileGrid.of(height, width, tile, stride)
    origins = [(r, c) for r in grid.rows for c in grid.cols]
    received = torch.cat([loc for _, loc in net.calls]).numpy()
    assert len(received) == len(origins) == grid.tiles
    to_wgs84 = Transformer.from_crs("EPSG:32611", "EPSG:4326", always_xy=True)
    for (row, col), (lat, lon) in zip(origins, received, strict=True):
        centre_row, centre_col = row - grid.margin + tile / 2, col - grid.margin + tile / 2
        x, y = transform * (centre_col, centre_row)
        want_lon, want_lat = to_wgs84.transform(x, y)
        assert (lat, lon) == pytest.approx((want_lat, want_lon), abs=1e-5)
    assert len({(round(a, 6), round(b, 6)) for a, b in received}) == grid.tiles, "one location per tile"
    for dates, _ in net.calls:
        assert (dates == torch.from_numpy(temporal_coords(FRAME_DATES[:3]))).all()


def test_sliding_window_evaluation_gives_each_window_its_own_centre():
    from lulc.evaluate import slide_logits

    net = _RecordingTL(classes=3)
    model = LULCModel(net, resolve_normalization("prithvi_v2", "m"), time_location=True)
    temporal = temporal_coords(FRAME_DATES[:3])
    seen: list[list[tuple[int, int]]] = []

    def window_coords(origins):
        seen.append(list(origins))
        return batch_coords(temporal, np.array([[r, c] for r, c in origins], dtype=np.float32))

    slide_logits(model, torch.full((3, 6, 40, 40), 1000, dtype=torch.int16), 16, 12, 4, "cpu", window_coords)
    flat = [origin for batch in seen for origin in batch]
    received = torch.cat([loc for _, loc in net.calls]).tolist()
    assert received == [[float(r), float(c)] for r, c in flat] and len(set(flat)) == len(flat) == 3 * 3


def test_a_tl_model_trains_evaluates_and_records_its_coordinates(tmp_path, one_torch_thread):
    from lulc.evaluate import RunToEvaluate, evaluate_runs

    stores, splits = make_dataset(tmp_path / "data", chips_per_aoi=8, seeds=(0,), coords=True)
    out = tmp_path / "run"
    run = train("tl", TINY_TL, FAST, stores, splits, 1.0, 0, out)
    assert run["model_info"]["time_location"] is True
    assert json.loads((out / "run.json").read_text())["model_info"]["time_location"] is True
    model, _ = load_trained_model(out / "best.ckpt")
    assert model.time_location
    result = evaluate_runs([RunToEvaluate(out / "best.ckpt", out / "m.json", out / "c.csv", out / "p.csv", run)],
                           stores, splits)[0]  # fmt: skip
    assert 0.0 <= result["miou"] <= 1.0
    # chips without frame dates cannot feed a _tl model: the error names the file
    summary = Path(stores["aoi_a"]) / "summary.json"
    record = json.loads(summary.read_text())
    record["periods"] = None
    summary.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"summary\.json: no frame dates"):
        train("tl", TINY_TL, FAST, stores, splits, 1.0, 0, tmp_path / "run2")


@pytest.mark.parametrize("encoder", ["efficientnet-b0", "tu-regnetx_002"])
def test_the_unet_baseline_takes_smp_and_timm_encoders(encoder):
    """U-Net encoders as TerraTorch's SMP factory offers them: smp's own, and timm's through the tu- prefix."""
    built = build_model("u", {"type": "unet", "encoder": encoder, "decoder_channels": [32, 16, 16, 8]}, 3, 32, 9)
    logits = built.model(_raw())
    assert logits.shape == (2, 9, 32, 32) and torch.isfinite(logits).all()
    assert built.info["encoder"] == encoder


def test_the_families_command_lists_each_family_and_its_releases_cache_status(tmp_path, monkeypatch, capsys):
    """``python -m lulc.families``: a release in the local cache is found; a missing one comes with its command."""
    import huggingface_hub.constants

    from lulc.families.__main__ import main

    cache = tmp_path / "hub"
    release = FAMILIES["prithvi"].releases["prithvi_eo_v2_tiny_tl"]
    snapshot = cache / f"models--{release.repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / release.filename).write_bytes(b"weights")
    (cache / f"models--{release.repo.replace('/', '--')}" / "refs").mkdir()
    (cache / f"models--{release.repo.replace('/', '--')}" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert main(["prithvi"]) == 0
    out = capsys.readouterr().out
    assert f"release prithvi_eo_v2_tiny_tl: {release.repo}/{release.filename} (cached: {snapshot}" in out
    assert "not cached: hf download ibm-nasa-geospatial/Prithvi-EO-2.0-300M Prithvi_EO_V2_300M.pt" in out
    assert main([]) == 0
    listing = capsys.readouterr().out
    assert all(f"{name}: " in listing for name in FAMILIES)
    assert main(["segformer"]) == 2 and "unknown model family 'segformer'" in capsys.readouterr().err


def test_the_families_demo_overlay_passes_start_up_with_every_family():
    """config/families.yaml merged onto the demo config (as `--configfile config/config.yaml
    config/families.yaml` merges them) passes start-up, trains every family and tunes each with its space."""
    import yaml
    from snakemake.utils import update_config

    from lulc.config import load_config

    repo = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    update_config(config, yaml.safe_load((repo / "config" / "families.yaml").read_text()))
    load_config(config, repo / "workflow" / "schemas" / "config.schema.yaml", repo)
    trained = {config["models"][m]["type"] for m in config["train"]["models"]}
    assert trained == set(FAMILIES)
    assert set(config["tune"]["search_space"]) == set(FAMILIES)
