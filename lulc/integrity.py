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
    if folder == "maps":
        return _map_rule(parts[index + 2 :])
    return PRODUCING_RULES.get(folder)


#: The rule that writes each file of a map region (``results/maps/{region}/...``), by its place in the layout.
_REGION_FILES = {"tiles.csv": "map_tiles"}
_PERIOD_FILES = {"imagery.json": "map_search", "labels.json": "map_label_search", "frames.json": "map_frames",
                 "label.tif": "map_label_mosaic"}  # fmt: skip
_RUN_FILES = {"landcover.tif": "map_mosaic", "confidence.tif": "map_mosaic", "preview.png": "map_mosaic",
              "agreement.json": "map_compare", "comparison.png": "map_compare"}  # fmt: skip


def _map_rule(parts: tuple[str, ...]) -> str | None:
    """The rule that writes ``results/maps/<parts>``: a region's tiling, a period's search, frames and label
    mosaic, a tile's download (``{period}/tiles/{tile}/``) or prediction (``{period}/{run}/tiles/{tile}/``), a
    run's mosaic and comparison, the change tables."""
    if not parts:
        return None
    name = parts[-1]
    if "tiles" in parts[:-1]:
        depth = parts.index("tiles")  # 2: {region}/{period}/tiles, 3: {region}/{period}/{run}/tiles
        if depth == 2:
            return "map_label" if name == "label.tif" else "map_download"
        return "map_predict" if depth == 3 else None
    if len(parts) == 2:
        return _REGION_FILES.get(name)
    if len(parts) == 3:
        return "map_change" if name.startswith("change_") else _PERIOD_FILES.get(name)
    return _RUN_FILES.get(name) if len(parts) == 4 else None


def _npy_damage(path: Path) -> str | None:
    import numpy as np

    np.load(path, mmap_mode="r")  # maps header-declared shape x dtype: fails where the file is shorter
    return None


#: Bytes per value of each TIFF field type (TIFF 6.0 and BigTIFF).
_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8,
                    18: 8}  # fmt: skip
#: TIFF tags holding (offsets, byte counts) of the image data: strips and tiles.
_TIFF_DATA_TAGS = ((273, 279), (324, 325))
_TIFF_STRUCTURE = {"II": "<", "MM": ">"}


def _tiff_beyond_end(path: Path) -> str | None:
    """Where a TIFF's structure (its directories, their out-of-line values, its strips or tiles) reaches beyond
    the end of the file, or None. A GeoTIFF cut after its image data but inside its directory still opens, with
    its georeferencing silently dropped: only its structure tells that it is truncated. Reads the directories
    and the block offset tables only, never the image data."""
    import struct

    size = path.stat().st_size
    with open(path, "rb") as handle:

        def read(at: int, length: int) -> bytes:
            handle.seek(at)
            return handle.read(length)

        header = read(0, 16)
        order = _TIFF_STRUCTURE.get(header[:2].decode("latin-1"))
        if order is None or size < 16:
            return "not a TIFF (no byte-order mark)"
        big = struct.unpack(order + "H", header[2:4])[0] == 43
        count_fmt, entry_fmt, off_fmt = ("Q", "HHQ8s", "Q") if big else ("H", "HHI4s", "I")
        entry_size, inline, head = (20, 8, 8) if big else (12, 4, 2)
        link = struct.calcsize(order + off_fmt)
        offset = struct.unpack(order + off_fmt, header[8:16] if big else header[4:8])[0]
        seen: set[int] = set()
        while offset and offset not in seen and len(seen) < 10_000:
            seen.add(offset)
            if offset + head > size:
                return f"a directory starts at byte {offset}, beyond the end ({size} bytes)"
            entries = struct.unpack(order + count_fmt, read(offset, head))[0]
            end = offset + head + entries * entry_size + link
            if end > size:
                return f"a directory ends at byte {end}, beyond the end ({size} bytes)"
            table = read(offset + head, entries * entry_size + link)
            values: dict[int, tuple[int, ...]] = {}
            for i in range(entries):
                tag, kind, count, raw = struct.unpack(order + entry_fmt, table[i * entry_size : (i + 1) * entry_size])
                length = _TIFF_TYPE_SIZES.get(kind, 1) * count
                where = struct.unpack(order + off_fmt, raw)[0] if length > inline else None
                if where is not None and where + length > size:
                    return f"tag {tag} reaches byte {where + length}, beyond the end ({size} bytes)"
                if kind in (3, 4, 16) and any(tag in pair for pair in _TIFF_DATA_TAGS):
                    blob = raw[:length] if where is None else read(where, length)
                    values[tag] = struct.unpack(order + {3: "H", 4: "I", 16: "Q"}[kind] * count, blob)
            for offsets_tag, counts_tag in _TIFF_DATA_TAGS:
                for block, nbytes in zip(values.get(offsets_tag, ()), values.get(counts_tag, ()), strict=False):
                    if nbytes and block + nbytes > size:
                        return f"image data reaches byte {block + nbytes}, beyond the end ({size} bytes)"
            offset = struct.unpack(order + off_fmt, table[-link:])[0]
    return None


def _tif_damage(path: Path) -> str | None:
    import rasterio
    from rasterio.windows import Window

    beyond = _tiff_beyond_end(path)
    if beyond is not None:
        return f"truncated or not a GeoTIFF: {beyond}"
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
