"""Equal work between our code and TerraTorch's (benchmarks/equal_work.py): TerraTorch's tiled inference configured
as ours computes our map, its default tiling does not (the cause of the low agreement once measured), and the
first-batch loss check and its fp32 tolerance."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import rasterio
import torch

from benchmarks.equal_work import interior_agreement, loss_tolerance, read_map, same_loss, terratorch_same_tiling
from benchmarks.predict_speed import write_scene
from lulc.models import build_model
from lulc.predict import predict_scene

TILE, STRIDE, FRAMES = 64, 48, 3
TINY = {"backbone": "prithvi_eo_tiny", "weights": "none", "decoder_channels": 32}


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    """One random Prithvi-tiny: our fp32 map of a synthetic scene, and TerraTorch's, tiled as ours and by its
    defaults (random weights: the strictest case, every logit nearly tied)."""
    from terratorch.tasks.tiled_inference import tiled_inference

    work = tmp_path_factory.mktemp("equal_work")
    scene = work / "scene.tif"
    write_scene(scene, 224)
    torch.manual_seed(0)
    model = build_model("prithvi", TINY, FRAMES, TILE).model.eval()
    ours = copy.deepcopy(model)  # predict_scene prepares its model in place
    predict_scene(ours, scene, work / "ours.tif", tile=TILE, stride=STRIDE, batch_size=4, device="cpu",
                  precision="fp32", progress=False)  # fmt: skip


    with rasterio.open(scene) as src:
        raw = torch.from_numpy(src.read()).view(1, FRAMES, 6, 224, 224)
    with torch.inference_mode():
        same = terratorch_same_tiling(model, raw, TILE, STRIDE, 4, "cpu")[0].argmax(0).numpy()
        default = tiled_inference(model, raw, crop=TILE, stride=STRIDE, batch_size=4, device="cpu")[0].argmax(0)
    return read_map(work / "ours.tif"), same, default.numpy()


def test_terratorch_tiled_as_ours_computes_our_map(maps):
    ours, same, _ = maps
    assert interior_agreement(ours, same, TILE // 2) >= 0.99  # the equal-work target of the speed benchmarks


def test_terratorch_default_tiling_is_another_map_on_random_weights(maps):
    ours, same, default = maps
    # its tiles start 8 px from ours: a random ViT's classes depend on the position in the tile (measured here:
    # 93 % against 99.4 % at 64 px tiles; 27 % against 99.9 % with Prithvi-tiny + FCN(64) at 224 px)
    same_tiling, default_tiling = (interior_agreement(ours, other, TILE // 2) for other in (same, default))
    assert default_tiling < same_tiling - 0.03, (default_tiling, same_tiling)


def test_interior_agreement_leaves_the_edges_out():
    a = np.zeros((10, 10), np.uint8)
    b = a.copy()
    b[0, :] = 1  # differs on the edge only
    assert interior_agreement(a, b, 1) == 1.0 and interior_agreement(a, b, 0) == 0.9


def test_loss_tolerance_covers_reordered_fp32_summation_and_nothing_more():
    generator = torch.Generator().manual_seed(0)
    terms = torch.rand(100_352, generator=generator) * 4  # per-pixel losses of a 2 x 224 x 224 batch
    forward = float(terms.sum() / len(terms))
    backward = float(terms.flip(0).reshape(-1, 7).sum(1).sum() / len(terms))  # another order
    tolerance = loss_tolerance(len(terms), float(terms.abs().mean()))
    assert abs(forward - backward) <= tolerance
    assert loss_tolerance(1, 2.0) == 0.0  # one term: nothing to reorder
    changed = terms.clone()
    changed[0] += 4 * len(terms) * tolerance  # one pixel's loss moved: a real difference
    assert abs(float(changed.sum() / len(terms)) - forward) > tolerance


def test_same_loss_flags_a_difference_beyond_the_tolerance():
    assert same_loss(1.5, 1.5, 1000, 1.5)["equal"]
    assert not same_loss(1.5, 1.51, 1000, 1.5)["equal"]
    assert not same_loss(float("nan"), float("nan"), 1000, 1.5)["equal"]


def test_first_batch_losses_of_both_tasks_agree():
    from benchmarks.equal_work import terratorch_task
    from benchmarks.train_speed import RandomChips, first_batch_losses, our_task

    data = RandomChips(2, frames=FRAMES, size=TILE)
    torch.manual_seed(0)
    theirs = terratorch_task("prithvi", TINY, TILE)
    theirs.configure_metrics()
    ours = our_task("prithvi", TINY, FRAMES, TILE)
    check = first_batch_losses(ours, theirs, data.images, data.masks)
    assert check["equal"] and check["labelled_pixels"] == 2 * TILE * TILE - 2 * 16
