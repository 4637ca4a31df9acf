"""Tell complete input files from damaged ones before a stage works on them.

Every output is written under a temporary name and renamed when complete (:func:`lulc.io.atomic_path`), but a
file can still be damaged afterwards: a full disk while copying a results tree, a restore that stopped half way,
a file truncated by hand. Snakemake trusts any file that exists, so without a check the next stage fails deep in
a library with an error that names no file (``JSONDecodeError``, "mmap length is greater than file size",
``RasterioIOError``) and the rule that wrote the file never reruns. Rule scripts call :func:`check_inputs`
first; it reads just enough of each input to know it is complete (the JSON document, the ``.npy`` header
against the file size, a GeoTIFF's last full-resolution block, a zip archive's central directory, a Parquet
footer) and stops with one message naming every damaged file and how to regenerate it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

#: The rule that writes each folder under ``results/`` (the first path part after ``results``).
PRODUCING_RULES = {
    "demo": "demo",
    "search": "search",
    "download": "download",
    "chips": "chips",
    "splits": "splits",
    "stats": "stats",
    "pretrain": "pretrain",
    "train": "train",
    "evaluate": "evaluate",
    "summary": "summary",
    "predict": "predict",
}


class DamagedInputError(RuntimeError):
    """An input file exists but is incomplete or unreadable; the message names it and how to regenerate it."""


def producing_rule(path: str | os.PathLike[str]) -> str | None:
    """The rule that writes ``path`` (``results/<folder>/...``), or None for a file from outside the workflow."""
    parts = Path(path).parts
    if "results" not in parts:
        return None
    index = len(parts) - 1 - parts[::-1].index("results")
    folder = parts[index + 1] if index + 1 < len(parts) else ""
    if folder == "chips" and "geotiff" in parts[index + 2 :]:
        return "export_chips"
    return PRODUCING_RULES.get(folder)


def _npy_damage(path: Path) -> str | None:
    import numpy as np

    np.load(path, mmap_mode="r")  # maps header-declared shape x dtype: fails where the file is shorter
    return None


def _tif_damage(path: Path) -> str | None:
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(path) as src:
        block_height, block_width = src.block_shapes[0]
        # GDAL writes a COG's smallest overview first and the full resolution last: the last full-resolution
        # block of the last band reaches the end of the file, and the first block its start.
        rows, cols = math.ceil(src.height / block_height), math.ceil(src.width / block_width)
        for row, col in ((0, 0), (rows - 1, cols - 1)):
            window = Window(col * block_width, row * block_height, block_width, block_height).intersection(
                Window(0, 0, src.width, src.height)
            )
            src.read(src.count, window=window)
    return None


def _zip_damage(path: Path) -> str | None:
    size = path.stat().st_size
    with zipfile.ZipFile(path) as archive:  # reads the central directory at the end of the file
        for member in archive.infolist():
            if member.header_offset + member.compress_size > size:
                return f"member {member.filename} ends beyond the end of the file"
    return None


def _parquet_damage(path: Path) -> str | None:
    import pyarrow.parquet as pq

    pq.ParquetFile(path).metadata  # noqa: B018  (reads the footer at the end of the file)
    return None


def _json_damage(path: Path) -> str | None:
    json.loads(path.read_text())
    return None


def _csv_damage(path: Path) -> str | None:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return "empty"
    if any(len(row) != len(rows[0]) for row in rows[1:]):
        return "rows with a different number of fields than the header (truncated?)"
    return None


_CHECKS = {
    ".json": _json_damage,
    ".npy": _npy_damage,
    ".tif": _tif_damage,
    ".tiff": _tif_damage,
    ".ckpt": _zip_damage,
    ".pt": _zip_damage,
    ".parquet": _parquet_damage,
    ".csv": _csv_damage,
}


def damage(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is incomplete or unreadable, or None where it looks complete (or has no known format)."""
    path = Path(path)
    check = _CHECKS.get(path.suffix.lower())
    if check is None or not path.is_file():
        return None
    try:
        return check(path)
    except Exception as error:  # every library raises its own types for damaged files
        return f"{type(error).__name__}: {error}"


def regenerate_hint(path: str | os.PathLike[str]) -> str:
    """How to regenerate ``path``: delete it and rerun, or ``--forcerun`` the rule that writes it."""
    rule = producing_rule(path)
    if rule is None:
        return "replace it with a complete copy"
    return f"delete it and rerun snakemake, or run `snakemake --forcerun {rule}` (rule {rule} writes it)"


def check_inputs(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Raise :class:`DamagedInputError` naming every damaged file among ``paths`` (files and lists of files)."""
    problems = []
    for path in _flatten(paths):
        reason = damage(path)
        if reason is not None:
            problems.append(f"{path} is damaged or incomplete ({reason}); {regenerate_hint(path)}")
    if problems:
        raise DamagedInputError("\n".join(problems))


def _flatten(paths: Iterable[str | os.PathLike[str]]) -> list[str | os.PathLike[str]]:
    flat: list[str | os.PathLike[str]] = []
    for item in paths:
        if isinstance(item, str | os.PathLike):
            flat.append(item)
        else:
            flat.extend(_flatten(item))
    return flat


__all__ = ["DamagedInputError", "check_inputs", "damage", "producing_rule", "regenerate_hint"]
