"""Damaged inputs are refused before a stage works on them, with the file and how to regenerate it named;
a killed job's temporaries are removed when its output is next written."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from lulc.integrity import DamagedInputError, check_inputs, damage, producing_rule
from lulc.io import atomic_path, copy_to_cog
from lulc.logs import setup_script_logging


def _truncate(path: Path, keep: float = 0.5) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(int(path.stat().st_size * keep))


def _cog(path: Path) -> Path:
    raw = path.with_suffix(".raw.tif")
    data = np.arange(6 * 600 * 600, dtype=np.int16).reshape(6, 600, 600) % 3000
    with rasterio.open(raw, "w", driver="GTiff", width=600, height=600, count=6, dtype="int16",
                       crs="EPSG:32615", transform=from_origin(500000, 4650000, 30, 30), tiled=True,
                       blockxsize=256, blockysize=256) as dst:  # fmt: skip
        dst.write(data)
    copy_to_cog(raw, path, "nearest", predictor=True, threads=1)
    return path


def _files(root: Path) -> dict[str, Path]:
    """One complete file of every format the stages hand each other, under results/<stage>/."""
    files = {
        "json": root / "results/search/aoi/imagery.json",
        "npy": root / "results/chips/aoi/images.npy",
        "tif": root / "results/download/aoi/image.tif",
        "ckpt": root / "results/train/unet/f1_s0/best.ckpt",
        "parquet": root / "results/chips/aoi/manifest.parquet",
        "csv": root / "results/splits/splits.csv",
    }
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    files["json"].write_text(json.dumps({"type": "FeatureCollection", "features": [{"id": i} for i in range(50)]}))
    np.save(files["npy"], np.ones((20, 3, 6, 32, 32), dtype=np.int16))
    _cog(files["tif"])
    torch.save({"state_dict": {"w": torch.ones(1000, 100)}}, files["ckpt"])
    pd.DataFrame({"chip_id": [f"c{i}" for i in range(500)], "index": range(500)}).to_parquet(files["parquet"])
    pd.DataFrame({"chip_id": [f"c{i}" for i in range(500)], "split": ["train"] * 500}).to_csv(files["csv"])
    return files


def test_complete_files_pass_and_each_truncated_one_is_named_with_its_rule(tmp_path):
    files = _files(tmp_path)
    check_inputs(files.values())  # complete: no error
    for kind, path in files.items():
        original = path.read_bytes()
        _truncate(path, 0.6)  # a copy that stopped: a cut inside a row, a zip or Parquet footer, a tile
        with pytest.raises(DamagedInputError) as error:
            check_inputs([*files.values()])
        message = str(error.value)
        assert str(path) in message and "damaged or incomplete" in message, (kind, message)
        assert f"snakemake --forcerun {producing_rule(path)}" in message, (kind, message)
        assert message.count("damaged") == 1, "only the damaged file is named"
        path.write_bytes(original)


def test_producing_rule_follows_the_results_layout():
    assert producing_rule("results/download/a/image.tif") == "download"
    assert producing_rule("/x/results/chips/a/images.npy") == "chips"
    assert producing_rule("results/chips/a/geotiff/c_image.tif") == "export_chips"
    assert producing_rule("my_weights/prithvi.pt") is None
    assert damage("results/nothing/here.json") is None  # missing files are Snakemake's business


def test_a_rule_script_stops_on_a_damaged_input_and_logs_why(tmp_path, caplog):
    """setup_script_logging, which every rule script calls first, checks the rule's inputs."""
    files = _files(tmp_path)
    _truncate(files["npy"])
    fake = SimpleNamespace(log=[str(tmp_path / "rule.log")], rule="train", input=[str(p) for p in files.values()])
    with pytest.raises(DamagedInputError, match="images.npy is damaged or incomplete"):
        setup_script_logging(fake)
    logging.getLogger().handlers.clear()


def test_temporaries_of_a_killed_job_are_removed_when_the_output_is_written_again(tmp_path):
    final = tmp_path / "landcover.tif"
    stale = [tmp_path / ".landcover.tif.abc123.tmp", tmp_path / ".landcover.tif.abc123.tmp.stream.tif"]
    other = tmp_path / ".confidence.tif.xyz.tmp"  # another output's temporary: left alone
    for path in (*stale, other):
        path.write_bytes(b"half")
    with atomic_path(final) as tmp:
        tmp.write_text("complete")
    assert final.read_text() == "complete"
    assert not any(path.exists() for path in stale) and other.exists()
