"""Input normalisation, shared by every model family: the Prithvi pretraining statistics, the
``models.<name>.normalization`` setting (:func:`resolve_normalization`, :func:`dataset_normalization`), the
on-device :class:`HLSNormalize` and the plausibility check of normalised input (:func:`normalised_bound`,
:func:`check_normalised`).

A model normalises its own input with the statistics it was configured with (the Prithvi pretraining mean / std
by default, or the training chips' own with ``normalization: dataset``; a trained checkpoint keeps them), sets
HLS nodata (-9999) to 0 after normalisation, and refuses input that is not what it expects: floats where raw
int16 reflectance belongs, or values in the thousands where normalised input belongs (raw reflectance that
skipped normalisation, the classic silent failure that gives near-chance results with Prithvi).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lulc import families
from lulc.hls import PRITHVI_BANDS, REFLECTANCE_NODATA
from lulc.models.weights import sha256_file

#: Normalised input beyond this absolute value is taken for raw reflectance, whatever the statistics: with the
#: pretraining ones normalised HLS stays within about +-12 (saturated snow: (16000 - 775) / 1282 = 11.9); raw
#: reflectance is in the hundreds to thousands. Statistics with small deviations (``normalization:
#: dataset`` of a homogeneous region) widen the bound to what valid reflectance gives under them
#: (:func:`normalised_bound`).
MAX_ABS_NORMALISED = 50.0
#: The valid range of HLS surface reflectance (x 10000), from the HLS v2.0 user guide.
HLS_VALID_RANGE: tuple[int, int] = (-100, 16000)
#: Statistics under which valid reflectance would normalise beyond this are refused: they do not normalise
#: (a std of 1 reflectance unit, statistics of raw counts, ...). Needs a std of 16 or more in every band.
MAX_PLAUSIBLE_NORMALISED = 1000.0


class UnnormalisedInputError(ValueError):
    """A model received input that was not normalised (raw reflectance, or the wrong dtype)."""


@dataclass(frozen=True)
class Normalization:
    """Per-band mean and standard deviation (reflectance x 10000) and where they came from.

    ``source`` and ``sha256``: the statistics file of ``normalization: dataset`` (None otherwise).
    """

    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str | None = None
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"name": self.name, "mean": list(self.mean), "std": list(self.std)}
        if self.source is not None:
            record |= {"source": self.source, "sha256": self.sha256}
        return record


#: What ``normalization: dataset`` reads: the stats rule's output (:mod:`lulc.stats`).
DATASET_STATS_FILE = "results/stats/normalization.json"


def _checked_statistics(key: str, spec: Mapping[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    try:
        mean, std = (tuple(float(v) for v in spec[k]) for k in ("mean", "std"))
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{key}: expected {len(PRITHVI_BANDS)} numbers each for mean and std") from None
    if (
        len(mean) != len(PRITHVI_BANDS)
        or len(std) != len(PRITHVI_BANDS)
        or not all(math.isfinite(v) for v in mean + std)
        or min(std) <= 0
    ):
        raise ValueError(f"{key}: mean and std need {len(PRITHVI_BANDS)} finite values each, std > 0")
    return mean, std


def dataset_normalization(stats: Any, model_name: str) -> Normalization:
    """The statistics of ``normalization: dataset``.

    ``stats`` is the stats rule's file (:data:`DATASET_STATS_FILE`, its path and SHA-256 are recorded), a
    :class:`Normalization`, or the record a trained checkpoint keeps (``{name, mean, std, source, sha256}``);
    None raises a ``ValueError`` naming the config key.
    """
    key = f"config key models.{model_name}.normalization"
    if stats is None:
        raise ValueError(
            f"{key}: 'dataset' needs the per-band statistics of the training chips ({DATASET_STATS_FILE}, written "
            "by the stats rule), and none were given"
        )
    if isinstance(stats, Normalization):
        return stats
    if isinstance(stats, Mapping):
        mean, std = _checked_statistics(key, stats)
        return Normalization("dataset", mean, std, stats.get("source"), stats.get("sha256"))
    path = Path(stats)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{key}: cannot read the dataset statistics {path}: {error}") from error
    if not isinstance(record, Mapping):
        raise ValueError(f"{key}: {path} is not a statistics file of the stats rule")
    mean, std = _checked_statistics(f"{key} ({path})", record)
    return Normalization("dataset", mean, std, str(path), sha256_file(path))


def resolve_normalization(
    spec: Any, model_name: str, entry: Mapping[str, Any] | None = None, dataset_stats: Any = None
) -> Normalization:
    """Turn ``models.<name>.normalization`` into statistics.

    ``spec`` is the name of a model family's statistics (``"prithvi_v1"``, ``"prithvi_v2"``,
    ``"terramind_s2l2a"``, ...: :func:`lulc.families.all_statistics`), ``"backbone"`` (those the family of
    ``entry``, the resolved model entry, names for its backbone: v1 for ``prithvi_eo_v1_*``, ...), ``"dataset"``
    (the training chips' own statistics, from ``dataset_stats``: :func:`dataset_normalization`),
    ``{mean: [6], std: [6]}``, or an already resolved :class:`Normalization`.
    """
    key = f"config key models.{model_name}.normalization"
    if isinstance(spec, Normalization):
        return spec
    if spec == "dataset":
        return dataset_normalization(dataset_stats, model_name)
    known = families.all_statistics()
    if spec == "backbone":
        record = families.FAMILIES.get(str((entry or {}).get("type")))
        if record is None or record.backbone_statistics is None:
            raise ValueError(
                f"{key}: 'backbone' needs a model family with pretraining statistics; use dataset, "
                f"{', '.join(known)} or mean/std"
            )
        spec = record.backbone_statistics(entry or {})
    if isinstance(spec, str):
        if spec not in known:
            raise ValueError(f"{key}: unknown statistics {spec!r} (known: backbone, dataset, {', '.join(known)})")
        stats = known[spec]
        return Normalization(spec, tuple(stats["mean"]), tuple(stats["std"]))
    if isinstance(spec, Mapping) and set(spec) == {"mean", "std"}:
        mean, std = _checked_statistics(key, spec)
        return Normalization("custom", mean, std)
    raise ValueError(
        f"{key}: expected backbone, dataset, {', '.join(known)} or {{mean: [...], std: [...]}}, got {spec!r}"
    )


class HLSNormalize(nn.Module):
    """Raw HLS reflectance ``(B, T, 6, H, W)`` (int16, x 10000) -> float32 ``(x - mean) / std``, nodata -> 0."""

    mean: torch.Tensor
    inv_std: torch.Tensor

    def __init__(self, normalization: Normalization, nodata: int = REFLECTANCE_NODATA) -> None:
        super().__init__()
        shape = (1, 1, len(PRITHVI_BANDS), 1, 1)
        self.register_buffer("mean", torch.tensor(normalization.mean, dtype=torch.float32).view(shape))
        self.register_buffer("inv_std", 1.0 / torch.tensor(normalization.std, dtype=torch.float32).view(shape))
        self.nodata = nodata

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        if raw.is_floating_point() or raw.dtype == torch.bool:
            raise UnnormalisedInputError(
                f"expected raw integer HLS reflectance (int16, x 10000), got {raw.dtype}; a model normalises its "
                "own input, pass already-normalised tensors to forward_normalised()"
            )
        if raw.dim() != 5 or raw.shape[2] != len(PRITHVI_BANDS):
            raise ValueError(f"expected chips shaped (B, T, {len(PRITHVI_BANDS)}, H, W), got {tuple(raw.shape)}")
        x = (raw.float() - self.mean) * self.inv_std
        return x.masked_fill(raw == self.nodata, 0.0)


def normalised_bound(normalization: Normalization) -> float:
    """The largest absolute value valid HLS reflectance (:data:`HLS_VALID_RANGE`) normalises to under
    ``normalization``, and never below :data:`MAX_ABS_NORMALISED`: the plausibility bound of a model's input.

    A cloud over a region of low variance is a legitimate 50 standard deviations from that region's mean;
    the bound follows the statistics so that such pixels pass, while raw reflectance (thousands) does not.
    Statistics under which the bound would exceed :data:`MAX_PLAUSIBLE_NORMALISED` raise
    :class:`UnnormalisedInputError`: they do not normalise.
    """
    low, high = HLS_VALID_RANGE
    reach = max(max(high - m, m - low) / s for m, s in zip(normalization.mean, normalization.std, strict=True))
    if reach > MAX_PLAUSIBLE_NORMALISED:
        raise UnnormalisedInputError(
            f"the statistics {normalization.name!r} (mean {list(normalization.mean)}, std "
            f"{list(normalization.std)}) do not normalise: valid HLS reflectance would reach {reach:.4g} "
            f"standard deviations (at most {MAX_PLAUSIBLE_NORMALISED:g}); HLS reflectance (x 10000) must be "
            "normalised with the pretraining mean / std or the dataset's (models.<name>.normalization)"
        )
    return max(MAX_ABS_NORMALISED, reach)


def check_normalised(x: torch.Tensor, max_abs: float = MAX_ABS_NORMALISED) -> None:
    """Raise :class:`UnnormalisedInputError` unless ``x`` is a float tensor within ``+-max_abs``."""
    if not x.is_floating_point():
        raise UnnormalisedInputError(f"expected normalised float input, got {x.dtype} (raw reflectance?)")
    peak = float(x.detach().abs().amax()) if x.numel() else 0.0
    if not math.isfinite(peak) or peak > max_abs:
        raise UnnormalisedInputError(
            f"input does not look normalised: max |value| = {peak:.4g} > {max_abs:g}. HLS reflectance "
            "(x 10000) must be normalised with the pretraining mean / std first (models.<name>.normalization)"
        )
