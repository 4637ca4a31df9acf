"""Reading ``results/splits/splits.csv``: which chips belong to a split, a training fraction and a seed.

The reader side of the splits stage (:mod:`lulc.splits` computes and writes the table). Training, evaluation
and prediction only read the table, so they import this small module and not the split algorithm: editing the
algorithm changes ``splits.csv`` (and so reruns them), editing the reader reruns them through their code
version.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

#: Split names, in the order used for indices everywhere in the splits stage.
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: The split table's file name in ``results/splits/``.
SPLITS_CSV = "splits.csv"


def fraction_label(fraction: float | str) -> str:
    """The text of a training fraction in column names: ``0.125`` -> ``"0.125"``, ``1.0`` -> ``"1"``."""
    return f"{float(fraction):g}"


def subset_column(seed: int, fraction: float | str) -> str:
    """Column of the split table that marks membership of the training subset (seed, fraction)."""
    return f"train_s{int(seed)}_f{fraction_label(fraction)}"


def load_split(
    splits: str | os.PathLike[str], split: str, fraction: float | str = 1.0, seed: int | str = 0
) -> pd.DataFrame:
    """The chips of one split as a DataFrame of ``chip_id``, ``aoi``, ``index`` (in ``chip_id`` order).

    ``splits`` is the split table (``splits.csv``) or the directory holding it. ``fraction`` and
    ``seed`` select the nested training subset and are ignored for ``val`` and ``test``, which are the
    same for every fraction and seed by construction. Strings (Snakemake wildcards) are accepted.
    """
    path = Path(splits)
    if path.is_dir():
        path = path / SPLITS_CSV
    if split not in SPLITS:
        raise ValueError(f"load_split: split must be one of {', '.join(SPLITS)}, got {split!r}")
    table = pd.read_csv(
        path,
        dtype={"chip_id": str, "aoi": str, "index": np.int64, "block_id": str, "split": str},
        keep_default_na=False,
    )
    if split != "train":
        rows = table["split"] == split
    else:
        column = subset_column(int(seed), float(fraction))
        seed_known = any(c.startswith(f"train_s{int(seed)}_f") for c in table.columns)
        if column in table.columns:
            rows = table[column] == 1
        elif float(fraction) == 1.0 and seed_known:  # the balanced pool, even if 1.0 is not configured
            rows = table["split"] == "train"
        else:
            available = sorted(c for c in table.columns if c.startswith("train_s"))
            raise ValueError(
                f"load_split: no training subset for seed {seed} and fraction {fraction} in {path} "
                f"(available: {', '.join(available)}; see config keys splits.seeds, splits.train_fractions)"
            )
    return table.loc[rows, ["chip_id", "aoi", "index"]].reset_index(drop=True)


__all__ = ["SPLITS", "SPLITS_CSV", "fraction_label", "load_split", "subset_column"]
