"""Weights files: their SHA-256 (recorded with every run, so a result names the exact weights it used), reading
a state dict that fails loudly (:func:`read_state_dict`), and where ``models.<name>.weights`` points
(:func:`resolve_weights`).

:func:`load_encoder_state` loads an encoder's state strictly, naming missing, unexpected and mis-shaped keys
(every family's loader ends with it). Shared by the family builders, the trained checkpoints and the dataset
statistics (their file's SHA-256); it imports no other model module, so any of them may import it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lulc import families
from lulc.families.cache import cached_release


class WeightsError(RuntimeError):
    """A configured checkpoint is missing, unreadable, or does not match the model's keys."""


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file (recorded with every run, so a result names the exact weights it used)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    """``torch.load`` a tensor dict (weights only), unwrapping ``state_dict`` / ``model``; fail loudly."""
    if not path.is_file():
        raise WeightsError(f"{what}: checkpoint {path} does not exist")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt / foreign files
        raise WeightsError(f"{what}: cannot read checkpoint {path}: {type(error).__name__}: {error}") from error
    for wrapper in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(wrapper), Mapping):
            loaded = loaded[wrapper]
    if (
        not isinstance(loaded, Mapping)
        or not loaded
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items())
    ):
        raise WeightsError(f"{what}: {path} is not a state dict (a mapping of parameter names to tensors)")
    return dict(loaded)


def format_names(keys: list[str], limit: int = 12) -> str:
    """``keys`` joined for an error message, the first ``limit`` of them and a count of the rest."""
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def resolve_weights(
    spec: Any,
    model_name: str,
    entry: Mapping[str, Any] | None,
    pretrain_checkpoint: str | os.PathLike[str] | None,
) -> tuple[Path | None, dict[str, Any]]:
    """Where the weights of ``models.<name>.weights`` live: ``(path or None, record)``; fail loudly.

    ``none``: random initialisation. ``standin``: random weights standing in for a release (recorded as such).
    ``pretrain``: the ``pretrain`` rule's checkpoint (``pretrain_checkpoint``).
    ``hf``: the release of the entry's backbone (its family's record, :class:`lulc.families.Release`) in the local
    Hugging Face cache (never downloaded). Anything else: a path.
    """
    key = f"config key models.{model_name}.weights"
    if spec in (None, "none"):
        return None, {"source": "none", "note": "random initialisation"}
    if spec == families.WEIGHTS_STANDIN:
        return None, {"source": families.WEIGHTS_STANDIN,
                      "note": "random weights standing in for a release: no claim about the released model"}
    if spec == "pretrain":
        if pretrain_checkpoint is None:
            raise WeightsError(f"{key}: 'pretrain' needs the pretrain rule's checkpoint, none was given")
        return Path(pretrain_checkpoint), {"source": "pretrain"}
    if spec == "hf":
        entry = entry or {}
        record = families.FAMILIES.get(str(entry.get("type")))
        backbone = str(entry.get("backbone"))
        release = record.release(backbone) if record is not None else None
        if release is None:
            released = ", ".join(record.releases) if record is not None and record.releases else "none"
            raise WeightsError(f"{key}: no official release of {backbone!r} (released: {released})")
        cached = cached_release(release)
        if cached is None:
            raise WeightsError(
                f"{key}: {release.repo}/{release.filename} is not in the local Hugging Face cache and nothing is "
                f"downloaded at run time; fetch it once with `{release.fetch_command}` or set the key to a local file"
            )
        return Path(cached), {"source": "huggingface_cache", "repo": release.repo, "filename": release.filename}
    return Path(str(spec)), {"source": "file"}


def load_encoder_state(
    encoder: nn.Module,
    state: dict[str, torch.Tensor],
    path: Path,
    what: str,
    family: str,
    fixed: Mapping[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] | None = None,
    hint: str = "",
) -> dict[str, Any]:
    """Load ``state`` (already mapped to ``encoder``'s key names) strictly; raise :class:`WeightsError` naming the
    missing, unexpected and mis-shaped keys. ``fixed``: key -> function(checkpoint tensor, model tensor) for the
    tensors whose shape legitimately follows the chip size (position tables), applied where the shapes differ."""
    target = encoder.state_dict()
    adapted = []
    for key, adapt in (fixed or {}).items():
        if key in state and key in target and state[key].shape != target[key].shape:
            state[key] = adapt(state[key], target[key])
            adapted.append(key)
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    mismatched = sorted(
        f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(target[k].shape)})"
        for k in set(state) & set(target)
        if state[k].shape != target[k].shape
    )
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"missing keys ({len(missing)}): {format_names(missing)}")
        if unexpected:
            problems.append(f"unexpected keys ({len(unexpected)}): {format_names(unexpected)}")
        if mismatched:
            problems.append(f"shape mismatches ({len(mismatched)}): {format_names(mismatched)}")
        raise WeightsError(
            f"{what}: checkpoint {path} does not match the {family} encoder ({type(encoder).__name__}, "
            f"{len(target)} tensors): " + "; ".join(problems) + ". " + (hint or "Check the backbone and its size")
        )
    encoder.load_state_dict(state, strict=True)
    return {"path": str(path), "sha256": sha256_file(path), "tensors_loaded": len(state) - len(adapted),
            "tensors_rebuilt": adapted}
