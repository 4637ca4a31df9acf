"""The Prithvi family record (model type ``prithvi``; builder :mod:`lulc.models.prithvi`): IBM/NASA's Prithvi-EO
encoders from TerraTorch's registry, their pretraining statistics, releases and patch sizes.

``_tl`` backbones (Prithvi-EO-2.0 with temporal and location embeddings) take each frame's year and day of year
and each chip's or window's centre latitude / longitude (:mod:`lulc.coords`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from lulc.families.record import VIT_SEARCH_SPACE, ModelFamily, Release, power_of_two

#: Pretraining statistics of the Prithvi releases (reflectance x 10000), per band in PRITHVI_BANDS order.
STATISTICS: dict[str, dict[str, tuple[float, ...]]] = {
    "prithvi_v1": {
        "mean": (775.0, 1081.0, 1229.0, 2497.0, 2204.0, 1611.0),
        "std": (1282.0, 1270.0, 1399.0, 1368.0, 1292.0, 1155.0),
    },
    "prithvi_v2": {
        "mean": (1087.0, 1342.0, 1433.0, 2734.0, 1958.0, 1363.0),
        "std": (2248.0, 2179.0, 2178.0, 1850.0, 1242.0, 1049.0),
    },
}
#: Patch size (pixels) of TerraTorch's Prithvi backbones where it is not 16; checked against TerraTorch's
#: own ``prithvi_cfgs`` by a test, so that start-up needs no TerraTorch import (10 s).
PATCH_SIZES: dict[str, int] = {"prithvi_eo_v2_600": 14, "prithvi_eo_v2_600_tl": 14}
DEFAULT_PATCH = 16
_ORG = "ibm-nasa-geospatial"
#: The released weights (``weights: hf``), as TerraTorch's ``pretrained_weights`` names them (a test keeps them
#: in step), so start-up can check the local cache.
RELEASES: dict[str, Release] = {
    "prithvi_eo_v1_100": Release(f"{_ORG}/Prithvi-EO-1.0-100M", "Prithvi_EO_V1_100M.pt"),
    "prithvi_eo_v2_300": Release(f"{_ORG}/Prithvi-EO-2.0-300M", "Prithvi_EO_V2_300M.pt"),
    "prithvi_eo_v2_600": Release(f"{_ORG}/Prithvi-EO-2.0-600M", "Prithvi_EO_V2_600M.pt"),
    "prithvi_eo_v2_tiny_tl": Release(f"{_ORG}/Prithvi-EO-2.0-tiny-TL", "Prithvi_EO_V2_tiny_TL.pt"),
    "prithvi_eo_v2_100_tl": Release(f"{_ORG}/Prithvi-EO-2.0-100M-TL", "Prithvi_EO_V2_100M_TL.pt"),
    "prithvi_eo_v2_300_tl": Release(f"{_ORG}/Prithvi-EO-2.0-300M-TL", "Prithvi_EO_V2_300M_TL.pt"),
    "prithvi_eo_v2_600_tl": Release(f"{_ORG}/Prithvi-EO-2.0-600M-TL", "Prithvi_EO_V2_600M_TL.pt"),
}


def patch_size(entry: Mapping[str, Any]) -> int:
    """The patch size of an entry: ``backbone_kwargs.patch_size`` where given, else its backbone's."""
    configured = entry.get("backbone_kwargs", {}).get("patch_size")
    if configured is not None:
        return int(configured[-1] if isinstance(configured, list | tuple) else configured)
    return PATCH_SIZES.get(str(entry["backbone"]), DEFAULT_PATCH)


def time_location(entry: Mapping[str, Any]) -> bool:
    """``_tl`` backbones have temporal and location embeddings (unless turned off in ``backbone_kwargs``)."""
    kwargs = entry.get("backbone_kwargs", {})
    tl = str(entry["backbone"]).endswith("_tl")
    return bool(kwargs.get("coords_encoding", ["time", "location"] if tl else []))


def backbone_statistics(entry: Mapping[str, Any]) -> str:
    """v1 statistics for ``prithvi_eo_v1_*``, v2 otherwise."""
    return "prithvi_v1" if str(entry["backbone"]).startswith("prithvi_eo_v1") else "prithvi_v2"


def rules(key: str, entry: Mapping[str, Any], chip_size: int | None) -> Iterator[str]:
    if entry["decoder"] == "FCNDecoder" and not power_of_two(patch_size(entry)):
        yield (
            f"config key '{key}': the FCN decoder needs a power-of-two patch size, got {patch_size(entry)} "
            f"({entry['backbone']}); use decoder: UperNetDecoder or another patch size"
        )


FAMILY = ModelFamily(
    name="prithvi",
    description="IBM/NASA Prithvi-EO 1.0 / 2.0 (TerraTorch BACKBONE_REGISTRY, T frames) + FCN or UPerNet decoder",
    builder="lulc.models.prithvi:build_prithvi",
    foundation=True,
    colour="#1f77b4",
    definition="prithvi_model",
    search_space=VIT_SEARCH_SPACE,
    statistics=STATISTICS,
    backbone_statistics=backbone_statistics,
    releases=RELEASES,
    weights_specs=("hf", "pretrain"),
    patch_size=patch_size,
    fcn_decoder=lambda entry: entry["decoder"] == "FCNDecoder",
    time_location=time_location,
    rules=rules,
    notes="prithvi_eo_v1_100, prithvi_eo_v2_300 / 600 and their _tl variants, prithvi_eo_v2_tiny_tl / 100_tl, "
    "prithvi_eo_tiny",
)
