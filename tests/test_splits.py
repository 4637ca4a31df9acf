"""Tests of the splits stage on small synthetic chip manifests (no rasters, no network)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from lulc.split_table import SPLITS_CSV, load_split, subset_column
from lulc.splits import (
    BALANCE_CSV,
    BALANCE_PNG,
    SUMMARY_JSON,
    balance_training_pool,
    build_splits,
    make_splits,
    normalised_entropy,
    subset_size,
)
from tests.io_legend import CLASS_NAMES, NUM_CLASSES

RESOLUTION_M = 30.0
OUTPUT_NAMES = (SPLITS_CSV, BALANCE_CSV, BALANCE_PNG, SUMMARY_JSON)

#: Chance that a chip holds each class: a natural-looking imbalance with two rare classes.
MIXED_PROBABILITIES = np.array([0.15, 0.5, 0.06, 0.5, 0.2, 0.1, 0.05, 0.08, 0.4])


def synthetic_manifest(
    aoi: str,
    n_rows: int,
    n_cols: int,
    size: int = 32,
    stride: int = 32,
    epsg: int = 32615,
    origin: tuple[float, float] = (500_000.0, 4_650_000.0),
    class_probabilities: np.ndarray = MIXED_PROBABILITIES,
    dominant: np.ndarray | None = None,
    seed: int = 0,
    to_epsg: int | None = None,
) -> gpd.GeoDataFrame:
    """A manifest shaped like the chips stage's: a chip grid with random per-class pixel counts.

    Each chip holds a random subset of classes (``class_probabilities``); with ``dominant`` (a class
    probability vector), a chip is instead 95 % one class drawn from it plus a little of the others.
    ``to_epsg`` reprojects the footprints, to mimic an AOI in a neighbouring UTM zone.
    """
    generator = np.random.default_rng(seed)
    records = []
    x0, y0 = origin
    for row_number in range(n_rows):
        for col_number in range(n_cols):
            row_off, col_off = row_number * stride, col_number * stride
            n_pixels = size * size
            counts = np.zeros(NUM_CLASSES, dtype=np.int64)
            if dominant is not None:
                main = generator.choice(NUM_CLASSES, p=dominant)
                counts[main] = int(0.95 * n_pixels)
                others = generator.random(NUM_CLASSES) < class_probabilities
                others[main] = False
                if others.any():
                    shares = generator.dirichlet(np.ones(others.sum()))
                    counts[others] = np.floor(shares * (n_pixels - counts[main])).astype(np.int64)
            else:
                present = generator.random(NUM_CLASSES) < class_probabilities
                if not present.any():
                    present[np.argmax(class_probabilities)] = True
                shares = generator.dirichlet(np.ones(present.sum()))
                counts[present] = np.maximum(np.floor(shares * n_pixels), 1).astype(np.int64)
            left = x0 + col_off * RESOLUTION_M
            top = y0 - row_off * RESOLUTION_M
            record = {
                "chip_id": f"{aoi}_r{row_off:04d}_c{col_off:04d}",
                "aoi": aoi,
                "index": len(records),
                "row_off": row_off,
                "col_off": col_off,
                "height": size,
                "width": size,
                "geometry": shapely.box(left, top - size * RESOLUTION_M, left + size * RESOLUTION_M, top),
                "valid_fraction": 1.0,
                "cloud_fraction": 0.0,
            }
            record.update({f"px_{name}": int(counts[k]) for k, name in enumerate(CLASS_NAMES)})
            records.append(record)
    frame = gpd.GeoDataFrame(pd.DataFrame.from_records(records), geometry="geometry", crs=epsg)
    return frame.to_crs(to_epsg) if to_epsg is not None else frame


def config(**overrides: object) -> dict:
    """A small, fast ``splits:`` config: 1.92 km blocks (2 x 2 chips of 32 px at 30 m)."""
    cfg = {
        "seed": 7,
        "block_size_km": 1.92,
        "buffer_m": 90.0,
        "split_fractions": {"train": 0.6, "val": 0.2, "test": 0.2},
        "search_attempts": 30,
        "train_fractions": [1.0, 0.5, 0.25, 0.125],
        "seeds": [0, 1, 2],
    }
    cfg.update(overrides)
    return cfg


def write_manifests(directory: Path, *manifests: gpd.GeoDataFrame) -> list[Path]:
    paths = []
    for manifest in manifests:
        path = directory / "chips" / manifest["aoi"].iloc[0] / "manifest.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        manifest.to_parquet(path, index=False)
        paths.append(path)
    return paths


def assert_no_leakage(manifests: list[gpd.GeoDataFrame], table: pd.DataFrame, buffer_m: float) -> int:
    """Brute force over all chip pairs of different splits, in the first manifest's CRS: no shared area
    and at least ``buffer_m`` apart. Returns the number of cross-split pairs checked."""
    crs = manifests[0].crs
    footprints = pd.concat([m.to_crs(crs)[["chip_id", "geometry"]] for m in manifests]).set_index("chip_id")
    kept = table[table["split"].isin(["train", "val", "test"])]
    geoms = footprints.loc[kept["chip_id"], "geometry"].to_numpy()
    splits = kept["split"].to_numpy()
    different = splits[:, None] != splits[None, :]
    distance = shapely.distance(geoms[:, None], geoms[None, :])
    shared = shapely.area(shapely.intersection(geoms[:, None], geoms[None, :]))
    assert not (different & (shared > 1.0)).any(), "chips of different splits share source pixels"
    assert not (different & (distance < buffer_m - 1e-6)).any(), "chips of different splits within the buffer"
    return int(different.sum() // 2)


def pixel_table(manifests: list[gpd.GeoDataFrame]) -> pd.DataFrame:
    """Per-class pixel counts of every chip of every manifest, indexed by chip_id."""
    columns = [f"px_{name}" for name in CLASS_NAMES]
    return pd.concat([pd.DataFrame(m[["chip_id", *columns]]) for m in manifests]).set_index("chip_id")


@pytest.fixture(scope="module")
def mixed() -> tuple[list[gpd.GeoDataFrame], pd.DataFrame, dict]:
    """Two AOIs (different UTM zones), 16 x 16 chips each, no overlap, natural imbalance."""
    manifests = [
        synthetic_manifest("aoi_a", 16, 16, seed=1),
        synthetic_manifest("aoi_b", 16, 16, epsg=32610, origin=(600_000.0, 4_280_000.0), seed=2),
    ]
    result = build_splits(manifests, config())
    return manifests, result.table, result.summary


# ----------------------------------------------------------------------------------------- leakage


@pytest.mark.parametrize(("stride", "buffer_m"), [(32, 0.0), (32, 90.0), (16, 0.0), (16, 90.0), (24, 200.0)])
def test_no_chip_pair_of_different_splits_overlaps_or_lies_within_the_buffer(
    stride: int, buffer_m: float
) -> None:
    manifest = synthetic_manifest("aoi_a", 14, 14, stride=stride, seed=3)
    result = build_splits([manifest], config(buffer_m=buffer_m))
    checked = assert_no_leakage([manifest], result.table, buffer_m)
    assert checked > 1000  # the check saw many cross-split pairs, so it could have failed
    dropped = result.table["excluded_reason"] == "buffer"
    assert result.summary["excluded_by_buffer"] == int(dropped.sum())
    if stride < 32 or buffer_m > 0:
        assert dropped.sum() > 0  # overlapping or touching chips across block edges had to go
    else:
        assert dropped.sum() == 0  # touching, non-overlapping chips share no pixels and need no drop


def test_buffered_chips_are_dropped_not_reassigned(tmp_path: Path) -> None:
    """A chip's split is its block's split or 'excluded': never a third split chosen to dodge the buffer."""
    manifest = synthetic_manifest("aoi_a", 14, 14, stride=16, seed=3)
    table = build_splits([manifest], config(buffer_m=90.0)).table
    kept = table[table["excluded_reason"] != "buffer"]
    splits_per_block = kept.assign(split=kept["split"].replace("excluded", "train")).groupby("block_id")[
        "split"
    ]
    assert (splits_per_block.nunique() == 1).all()
    buffered = table[table["excluded_reason"] == "buffer"]
    assert len(buffered) > 0 and (buffered["split"] == "excluded").all()
    table.to_csv(tmp_path / SPLITS_CSV, index=False)
    for name in ("train", "val", "test"):
        assert set(load_split(tmp_path, name)["chip_id"]).isdisjoint(buffered["chip_id"])


def test_no_leakage_between_overlapping_aois_in_different_utm_zones() -> None:
    """AOI b covers part of AOI a, shifted by half a chip, and is stored in the next UTM zone."""
    origin_a = (740_000.0, 4_650_000.0)  # near the east edge of zone 15 at 42 N
    a = synthetic_manifest("aoi_a", 10, 10, origin=origin_a, seed=4)
    b = synthetic_manifest(
        "aoi_b", 10, 10, origin=(origin_a[0] + 5 * 960 + 480, origin_a[1] - 480), seed=5, to_epsg=32616
    )
    result = build_splits([a, b], config(buffer_m=60.0))
    assert {crs.to_epsg() for crs in (a.crs, b.crs)} == {32615, 32616}
    assert assert_no_leakage([a, b], result.table, 60.0) > 1000
    assert result.summary["excluded_by_buffer"] > 0


# ------------------------------------------------------------------------------------------ stratification


def test_every_class_present_in_the_data_appears_in_every_split(mixed) -> None:
    manifests, table, summary = mixed
    pixels = pixel_table(manifests)
    present = pixels.sum() > 0
    assert present.all()  # the synthetic data holds all nine classes, rare ones included
    for name in ("train", "val", "test"):
        chips = table.loc[table["split"] == name, "chip_id"]
        assert ((pixels.loc[chips].sum() > 0) | ~present).all(), name
    assert summary["search"]["class_split_coverage"] == 3 * NUM_CLASSES
    assert not [w for w in summary["warnings"] if "not in the" in w]


def test_a_class_held_by_only_three_distant_blocks_reaches_all_three_splits() -> None:
    """Chance alone puts three given blocks in three different splits only 3! x 0.6 x 0.2 x 0.2 = 14 % of
    the time; the stratified assignment must do it every time."""
    snow = CLASS_NAMES.index("snow_ice")
    flooded = CLASS_NAMES.index("flooded_vegetation")
    probabilities = MIXED_PROBABILITIES.copy()
    probabilities[[snow, flooded]] = 0.0
    for seed in range(4):
        manifest = synthetic_manifest("aoi_a", 16, 16, class_probabilities=probabilities, seed=seed)
        for column, cells in (
            (f"px_{CLASS_NAMES[snow]}", (0, 7, 15)),
            (f"px_{CLASS_NAMES[flooded]}", (3, 12, 9)),
        ):
            for cell in cells:  # one chip per block, far apart: rows and columns 0, 7, 15 -> blocks apart
                manifest.loc[cell * 16 + (15 - cell), column] = 50
        result = build_splits([manifest], config(seed=seed, buffer_m=0.0))
        pixels = pixel_table([manifest])
        for name in ("train", "val", "test"):
            chips = result.table.loc[result.table["split"] == name, "chip_id"]
            assert pixels.loc[chips, f"px_{CLASS_NAMES[snow]}"].sum() > 0, (seed, name)
            assert pixels.loc[chips, f"px_{CLASS_NAMES[flooded]}"].sum() > 0, (seed, name)


def test_split_sizes_follow_the_target_fractions(mixed) -> None:
    _, _, summary = mixed
    for name, target in summary["target_fractions"].items():
        assert abs(summary["achieved_fractions"][name] - target) < 0.08, name


def test_validation_and_test_are_disjoint_and_independent_of_seed_and_fraction(mixed, tmp_path: Path) -> None:
    _, table, _ = mixed
    table.to_csv(tmp_path / SPLITS_CSV, index=False)
    for name in ("val", "test"):
        reference = load_split(tmp_path, name)
        assert len(reference) > 10
        for seed in (0, 1, 2):
            for fraction in (1.0, 0.5, 0.125):
                pd.testing.assert_frame_equal(
                    load_split(tmp_path, name, fraction=fraction, seed=seed), reference
                )
    val, test = set(load_split(tmp_path, "val")["chip_id"]), set(load_split(tmp_path, "test")["chip_id"])
    train = set(table.loc[table["split"] == "train", "chip_id"])
    assert not val & test and not val & train and not test & train


# ---------------------------------------------------------------------------------------- nested subsets


def test_fractions_are_nested_for_every_seed_and_full_fraction_is_the_balanced_pool(mixed, tmp_path) -> None:
    _, table, summary = mixed
    table.to_csv(tmp_path / SPLITS_CSV, index=False)
    pool = set(table.loc[table["split"] == "train", "chip_id"])
    assert len(pool) == summary["train_pool"] > 100
    for seed in (0, 1, 2):
        subsets = {
            f: set(load_split(tmp_path, "train", fraction=f, seed=seed)["chip_id"])
            for f in (1, 0.5, 0.25, 0.125)
        }
        assert subsets[1] == pool
        assert subsets[0.125] < subsets[0.25] < subsets[0.5] < subsets[1]
        for fraction, chips in subsets.items():
            assert abs(len(chips) - fraction * len(pool)) <= 1
            assert len(chips) == subset_size(fraction, len(pool))


def test_seeds_draw_different_subsets(mixed) -> None:
    _, table, _ = mixed
    firsts = [frozenset(table.loc[table[subset_column(seed, 0.125)] == 1, "chip_id"]) for seed in (0, 1, 2)]
    assert len(set(firsts)) == 3


def test_every_fraction_subset_holds_every_class_of_the_training_pool(mixed) -> None:
    manifests, table, _ = mixed
    pixels = pixel_table(manifests)
    pool_classes = pixels.loc[table.loc[table["split"] == "train", "chip_id"]].sum() > 0
    for seed in (0, 1, 2):
        for fraction in (0.5, 0.25, 0.125):
            chips = table.loc[table[subset_column(seed, fraction)] == 1, "chip_id"]
            assert len(chips) >= NUM_CLASSES
            assert ((pixels.loc[chips].sum() > 0) | ~pool_classes).all(), (seed, fraction)


def test_load_split_names_the_config_keys_for_an_unknown_subset(mixed, tmp_path: Path) -> None:
    _, table, _ = mixed
    table.to_csv(tmp_path / SPLITS_CSV, index=False)
    with pytest.raises(ValueError, match=r"splits\.train_fractions"):
        load_split(tmp_path, "train", fraction=0.3, seed=0)
    with pytest.raises(ValueError, match=r"splits\.seeds"):
        load_split(tmp_path / SPLITS_CSV, "train", fraction=0.5, seed=9)
    with pytest.raises(ValueError, match="train, val, test"):
        load_split(tmp_path, "validation")
    subset = load_split(tmp_path, "train", fraction="0.25", seed="1")  # Snakemake wildcards are strings
    assert list(subset.columns) == ["chip_id", "aoi", "index"] and len(subset) > 10
    assert subset["index"].dtype == np.int64 and subset["aoi"].map(type).eq(str).all()


# ------------------------------------------------------------------------------------- files, determinism


def test_same_input_and_config_give_byte_identical_files(tmp_path: Path) -> None:
    manifests = write_manifests(
        tmp_path,
        synthetic_manifest("aoi_b", 10, 10, stride=16, epsg=32610, seed=8),
        synthetic_manifest("aoi_a", 10, 10, seed=9),
    )
    make_splits(manifests, config(), tmp_path / "first")
    make_splits(list(reversed(manifests)), config(), tmp_path / "second")
    for name in OUTPUT_NAMES:
        first, second = (tmp_path / run / name for run in ("first", "second"))
        assert first.stat().st_size > 0
        assert first.read_bytes() == second.read_bytes(), name
    make_splits(manifests, config(seed=8), tmp_path / "other_seed")
    assert (tmp_path / "other_seed" / SPLITS_CSV).read_bytes() != (
        tmp_path / "first" / SPLITS_CSV
    ).read_bytes()
    assert not list(tmp_path.glob("*/.*.tmp"))  # no temporary file left behind
    summary = json.loads((tmp_path / "first" / SUMMARY_JSON).read_text())
    table = pd.read_csv(tmp_path / "first" / SPLITS_CSV)
    assert summary["chips"] == len(table) == 200
    assert table["chip_id"].is_monotonic_increasing
    assert set(table["split"]) <= {"train", "val", "test", "excluded"}


def test_result_does_not_depend_on_the_order_of_the_manifests() -> None:
    a = synthetic_manifest("aoi_a", 8, 8, seed=9)
    b = synthetic_manifest("aoi_b", 8, 8, stride=16, epsg=32610, seed=8)
    forward, backward = build_splits([a, b], config()), build_splits([b, a], config())
    pd.testing.assert_frame_equal(forward.table, backward.table)
    assert forward.summary == backward.summary


# --------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"train_fractions": [1.0, 0.0]}, "splits.train_fractions"),
        ({"train_fractions": [1.5, 0.5]}, "splits.train_fractions"),
        ({"split_fractions": {"train": 0.8, "val": 0.0, "test": 0.2}}, "splits.split_fractions.val"),
        ({"split_fractions": {"train": 0.6, "val": 0.3, "test": 0.3}}, "splits.split_fractions"),
        ({"split_fractions": {"train": 0.6, "val": 0.4}}, "splits.split_fractions"),
        ({"seeds": []}, "splits.seeds"),
        ({"block_size_km": 0}, "splits.block_size_km"),
        ({"buffer_m": -1}, "splits.buffer_m"),
        ({"balance": {"method": "magic"}}, "splits.balance.method"),
        ({"folds": 5}, "splits.folds"),
    ],
)
def test_bad_config_raises_naming_the_key_and_writes_nothing(
    overrides: dict, key: str, tmp_path: Path
) -> None:
    manifests = write_manifests(tmp_path, synthetic_manifest("aoi_a", 6, 6))
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        make_splits(manifests, config(**overrides), tmp_path / "splits")
    assert not any((tmp_path / "splits" / name).exists() for name in OUTPUT_NAMES)


def test_too_few_chips_raises_naming_the_key_and_writes_nothing(tmp_path: Path) -> None:
    manifests = write_manifests(tmp_path, synthetic_manifest("aoi_a", 2, 2))  # all four chips in one block
    with pytest.raises(ValueError, match=r"splits\.block_size_km.*too few chips"):
        make_splits(manifests, config(), tmp_path / "splits")
    assert not any((tmp_path / "splits" / name).exists() for name in OUTPUT_NAMES)


def test_too_small_a_fraction_raises_naming_the_key(tmp_path: Path) -> None:
    manifests = write_manifests(tmp_path, synthetic_manifest("aoi_a", 6, 6))
    with pytest.raises(ValueError, match=r"splits\.train_fractions.*rounds to 0"):
        make_splits(manifests, config(train_fractions=[1.0, 0.001]), tmp_path / "splits")
    assert not any((tmp_path / "splits" / name).exists() for name in OUTPUT_NAMES)


def test_failed_run_keeps_no_half_written_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lulc.splits

    manifests = write_manifests(tmp_path, synthetic_manifest("aoi_a", 8, 8))

    def broken_plot(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(lulc.splits, "_plot_balance", broken_plot)
    with pytest.raises(RuntimeError, match="disk full"):
        make_splits(manifests, config(), tmp_path / "splits")
    assert list((tmp_path / "splits").iterdir()) == []


def test_a_class_absent_from_all_chips_is_warned_by_name(caplog: pytest.LogCaptureFixture) -> None:
    probabilities = MIXED_PROBABILITIES.copy()
    probabilities[CLASS_NAMES.index("snow_ice")] = 0.0
    manifest = synthetic_manifest("aoi_a", 12, 12, class_probabilities=probabilities, seed=6)
    with caplog.at_level(logging.WARNING, logger="lulc.splits"):
        summary = build_splits([manifest], config()).summary
    absent = [
        r for r in caplog.records if r.levelno == logging.WARNING and "no pixels in any chip" in r.message
    ]
    assert len(absent) == 1 and "'snow_ice'" in absent[0].message
    assert summary["classes_absent"] == ["snow_ice"]
    assert summary["entropy_classes"] == NUM_CLASSES - 1


# ---------------------------------------------------------------------------------------------- balancing


def test_normalised_entropy() -> None:
    assert normalised_entropy(np.array([5, 5, 5, 0]), 3) == pytest.approx(1.0)
    assert normalised_entropy(np.array([10, 0, 0]), 3) == 0.0
    assert 0 < normalised_entropy(np.array([90, 5, 5]), 3) < 0.6


def test_balancing_raises_the_training_entropy_on_an_imbalanced_manifest(tmp_path: Path) -> None:
    dominant = np.array([0.03, 0.05, 0.01, 0.8, 0.03, 0.02, 0.01, 0.0, 0.05])  # crops everywhere
    presence = np.array([0.1, 0.2, 0.05, 0.3, 0.1, 0.05, 0.02, 0.03, 0.2])
    manifest = synthetic_manifest("aoi_a", 16, 16, dominant=dominant, class_probabilities=presence, seed=11)
    manifests = write_manifests(tmp_path, manifest)
    result = make_splits(manifests, config(), tmp_path / "splits")
    summary = json.loads((tmp_path / "splits" / SUMMARY_JSON).read_text())
    before, after = summary["entropy_train_before_balancing"], summary["entropy_train_after_balancing"]
    assert after > before + 0.1
    assert summary["excluded_by_balancing"] > 0
    assert summary["train_pool"] >= 0.5 * summary["train_pool_before_balancing"]  # min_pool_fraction

    balance = pd.read_csv(tmp_path / "splits" / BALANCE_CSV)
    assert set(balance["set"]) == {"all", "train_before_balancing", "train", "val", "test"}
    crops = balance[balance["class"] == "crops"].set_index("set")["pixel_share"]
    assert crops["train"] < crops["train_before_balancing"]
    for name, rows in balance.groupby("set"):
        assert rows["pixel_share"].sum() == pytest.approx(1.0, abs=1e-5), name
    assert (tmp_path / "splits" / BALANCE_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Validation and test keep the natural distribution: balancing touched only training chips.
    balanced_out = result.table[result.table["excluded_reason"] == "balancing"]
    val_test_blocks = set(result.table.loc[result.table["split"].isin(["val", "test"]), "block_id"])
    assert set(balanced_out["block_id"]).isdisjoint(val_test_blocks)


def test_balancing_keeps_every_chip_with_a_rare_class(tmp_path: Path) -> None:
    dominant = np.array([0.03, 0.05, 0.01, 0.8, 0.03, 0.02, 0.01, 0.0, 0.05])
    presence = np.array([0.1, 0.2, 0.05, 0.3, 0.1, 0.05, 0.02, 0.03, 0.2])
    manifest = synthetic_manifest("aoi_a", 16, 16, dominant=dominant, class_probabilities=presence, seed=11)
    table = build_splits([manifest], config()).table
    pixels = manifest.set_index("chip_id")[[f"px_{n}" for n in CLASS_NAMES]]
    before = table[(table["split"] == "train") | (table["excluded_reason"] == "balancing")]
    train_pixels = pixels.loc[before["chip_id"]]
    shares = train_pixels.sum() / train_pixels.sum().sum()
    rare = shares[(shares > 0) & (shares < 0.05)].index
    chip_shares = train_pixels.div(train_pixels.sum(axis=1), axis=0)
    protected = chip_shares[rare].ge(0.01).any(axis=1)
    assert protected.sum() > 5
    dropped = set(table.loc[table["excluded_reason"] == "balancing", "chip_id"])
    assert dropped and dropped.isdisjoint(protected[protected].index)


def test_balancing_never_lowers_entropy_even_with_an_aggressive_cap() -> None:
    """With a 1 % cap and a 10 % floor, dropping dominated chips blindly would overshoot past balance."""
    cfg = {
        "method": "dominance_cap",
        "dominant_share": 0.6,
        "max_class_share": 0.01,
        "rare_class_share": 0.0,
        "rare_min_chip_share": 1.0,
        "min_pool_fraction": 0.1,
    }
    for seed in range(5):
        generator = np.random.default_rng(seed)
        dominant = generator.choice(4, size=300, p=[0.55, 0.25, 0.15, 0.05])
        pixels = generator.integers(0, 30, size=(300, NUM_CLASSES))
        pixels[np.arange(300), dominant] += 1000
        keep = balance_training_pool(pixels, cfg, np.random.default_rng(seed))
        before = normalised_entropy(pixels.sum(axis=0), NUM_CLASSES)
        after = normalised_entropy(pixels[keep].sum(axis=0), NUM_CLASSES)
        assert keep.sum() < 300 and keep.sum() >= 30
        assert after > before


def test_balancing_stops_when_no_drop_would_raise_entropy() -> None:
    """Crops-dominated chips that also carry all the built area: at 98 of them against 50 pure-trees chips
    the class distribution is already at its entropy optimum, so dropping either kind only lowers it."""
    cfg = {
        "method": "dominance_cap",
        "dominant_share": 0.6,
        "max_class_share": 0.2,
        "rare_class_share": 0.0,
        "rare_min_chip_share": 1.0,
        "min_pool_fraction": 0.1,
    }
    crops, trees, built = (CLASS_NAMES.index(name) for name in ("crops", "trees", "built_area"))
    pixels = np.zeros((148, NUM_CLASSES), dtype=np.int64)
    pixels[:98, crops], pixels[:98, built] = 600, 400
    pixels[98:, trees] = 1000
    keep = balance_training_pool(pixels, cfg, np.random.default_rng(0))
    before = normalised_entropy(pixels.sum(axis=0), 3)
    after = normalised_entropy(pixels[keep].sum(axis=0), 3)
    assert after >= before
    assert keep.all()


def test_balance_method_none_keeps_the_whole_training_split() -> None:
    manifest = synthetic_manifest("aoi_a", 12, 12, seed=12)
    result = build_splits([manifest], config(balance={"method": "none"}))
    assert result.summary["excluded_by_balancing"] == 0
    assert result.summary["entropy_train_before_balancing"] == result.summary["entropy_train_after_balancing"]
