"""Atomic file writing (outputs appear complete under their final name or not at all) and COG conversion."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A crash or an exception leaves no file under the final name that a rerun would trust.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
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


def write_json(data: Any, path: str | os.PathLike[str]) -> None:
    """Write ``data`` as sorted, indented JSON, atomically (byte-identical for identical data)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


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

    The one COG profile of every raster the workflow writes. ``predictor``: horizontal differencing, for
    continuous values (not for class maps). ``threads``: GDAL's threads (all CPUs where None). Write to a
    temporary name (:func:`atomic_path`): GDAL writes ``destination`` in place.
    """
    import rasterio.shutil

    rasterio.shutil.copy(
        source,
        destination,
        driver="COG",
        compress="DEFLATE",
        predictor="2" if predictor else "NO",
        blocksize=block_size,
        overview_resampling=overview_resampling,
        bigtiff="IF_SAFER",
        num_threads="ALL_CPUS" if threads is None else str(max(1, threads)),
    )
