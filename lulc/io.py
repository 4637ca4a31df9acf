"""Atomic file writing (outputs appear complete under their final name or not at all) and COG conversion."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A crash or an exception leaves no file under the final name that a rerun would trust. Temporaries that a
    killed job left for the same final name (``.<name>.*.tmp``, and the ``.tmp.stream.tif`` files written beside
    them) are removed first: only the one job that writes ``path`` ever writes them.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results should be readable like any other file
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_temporaries(final: Path) -> list[Path]:
    """Delete the temporaries of :func:`atomic_path` for ``final`` that a killed job left behind."""
    removed = []
    for pattern in (f".{final.name}.*.tmp", f".{final.name}.*.tmp.*"):
        for stale in final.parent.glob(pattern):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
                removed.append(stale)
    return removed


def remove_stale_folders(parent: str | os.PathLike[str], prefix: str) -> list[Path]:
    """Delete the scratch folders ``<prefix>*`` in ``parent`` that a killed job left behind.

    Call it only where one job owns both the folder and the prefix (the job that writes that folder's outputs,
    as :func:`atomic_path` does for the temporaries of one final name): a job of another rule, or the same job
    running at once elsewhere, never uses them.
    """
    removed: list[Path] = []
    base = Path(parent)
    if not base.is_dir():
        return removed
    for stale in sorted(base.glob(f"{glob.escape(prefix)}*")):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
            removed.append(stale)
    return removed


def write_json(data: Any, path: str | os.PathLike[str]) -> None:
    """Write ``data`` as sorted, indented JSON, atomically (byte-identical for identical data)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def cog_options(
    overview_resampling: str, *, predictor: bool = False, threads: int | None = None, block_size: int = 256
) -> dict[str, str | int]:
    """Creation options of the one COG profile of every raster the workflow writes (GDAL's COG driver):
    DEFLATE, ``block_size`` blocks, internal overviews, BigTIFF where needed. ``predictor``: horizontal
    differencing, for continuous values. ``threads``: GDAL's threads (all CPUs where None)."""
    return {
        "driver": "COG",
        "compress": "DEFLATE",
        "predictor": "2" if predictor else "NO",
        "blocksize": block_size,
        "overview_resampling": overview_resampling,
        "bigtiff": "IF_SAFER",
        "num_threads": "ALL_CPUS" if threads is None else str(max(1, threads)),
    }


def copy_to_cog(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    overview_resampling: str,
    *,
    predictor: bool = False,
    threads: int | None = None,
    block_size: int = 256,
) -> None:
    """Copy a tiled GeoTIFF to a Cloud Optimized GeoTIFF: internal overviews, DEFLATE, ``block_size`` blocks.

    The one COG profile (:func:`cog_options`). Write to a temporary name (:func:`atomic_path`): GDAL writes
    ``destination`` in place.
    """
    import rasterio.shutil

    rasterio.shutil.copy(
        source,
        destination,
        **cog_options(overview_resampling, predictor=predictor, threads=threads, block_size=block_size),
    )
