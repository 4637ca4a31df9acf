"""Lightning checkpoints that are complete or absent: atomic writes with a checksum record, safe loads.

Lightning writes a checkpoint in place, so a full disk or a killed job leaves a truncated file under the final
name, and it loads checkpoints with pickle. The resume state of a training run (``work/last.ckpt``) is written
and read through :class:`VerifiedCheckpointIO` instead, and :func:`verified_checkpoint` tells a complete
checkpoint from a damaged or foreign one before a run resumes from it.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lulc.io import atomic_path
from lulc.models import sha256_file


class VerifiedCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written atomically, each with a ``<name>.sha256`` record (digest and size) written
    last, and read with ``weights_only=True``.

    Lightning writes a checkpoint in place: a full disk or a killed job leaves a truncated file under the final
    name. Here the file appears complete or not at all, and :func:`verified_checkpoint` tells a complete
    checkpoint from a damaged or foreign one before a run resumes from it.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("VerifiedCheckpointIO takes no storage_options")
        buffer = io.BytesIO()  # serialised once: written, and hashed without reading the file back
        torch.save(checkpoint, buffer)
        data = buffer.getbuffer()
        final = Path(path)
        with atomic_path(final) as tmp:
            tmp.write_bytes(data)
        write_checksum_record(final, hashlib.sha256(data).hexdigest(), len(data))

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)

    def remove_checkpoint(self, path: Any) -> None:
        super().remove_checkpoint(path)
        checksum_record(Path(path)).unlink(missing_ok=True)


def checksum_record(path: Path) -> Path:
    """The ``<name>.sha256`` record beside a checkpoint."""
    return path.with_name(path.name + ".sha256")


def write_checksum_record(path: Path, digest: str | None = None, size: int | None = None) -> None:
    """Write ``<sha256> <size>`` of ``path`` (computed from the file where not given) to its record, atomically:
    the record is the completion marker."""
    digest = sha256_file(path) if digest is None else digest
    size = path.stat().st_size if size is None else size
    with atomic_path(checksum_record(path)) as tmp:
        tmp.write_text(f"{digest} {size}\n")


def verified_checkpoint(path: Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be trusted (missing, no record, size or checksum mismatch, not
    loadable with ``weights_only=True``), or None where it is complete and safe to load."""
    record = checksum_record(path)
    if not path.is_file():
        return f"{path} does not exist"
    if not record.is_file():
        return f"{path} has no checksum record {record.name} (written last, after a complete save)"
    try:
        digest, size = record.read_text().split()
    except (OSError, ValueError):
        return f"{record} is unreadable"
    if path.stat().st_size != int(size):
        return f"{path} has {path.stat().st_size} bytes, its checksum record says {size} (truncated?)"
    if sha256_file(path) != digest:
        return f"{path} does not match its checksum record (damaged)"
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch raises many types for damaged or foreign files
        return f"{path} cannot be loaded as tensors and plain types ({type(error).__name__}: {error})"
    return None


__all__ = ["VerifiedCheckpointIO", "checksum_record", "verified_checkpoint", "write_checksum_record"]
