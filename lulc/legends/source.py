"""Where a study's labels come from and in which legend: the ``labels`` config section, resolved once
(:class:`LabelSource`), for the download stage, map regions and the start-up checks."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lulc.legends.config import load_legend
from lulc.legends.legend import Legend
from lulc.legends.presets import DEFAULT_LEGEND, PRESETS, preset
from lulc.schema import ConfigError, section


@dataclass(frozen=True)
class LabelSource:
    """Where the labels come from and in which legend: the ``labels`` config section, resolved."""

    legend: Legend = field(default_factory=lambda: preset(DEFAULT_LEGEND))
    legend_given: bool = True  # False: labels.legend is null (io-lulc-9 only for items declaring its table)
    kind: str = "stac"  # stac | raster | vector
    asset: str = "data"  # stac: the label items' asset key
    path: str | None = None
    nodata: int | None = None
    attribute: str = "class"
    layer: str | None = None
    point_size_px: int = 1
    year: int | None = None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None, base: str | os.PathLike[str] = ".") -> LabelSource:
        """The source of the ``labels`` section (defaults filled from the schema); a raster or vector source
        needs ``labels.path`` and a legend."""
        cfg = section("labels", cfg)
        kind = cfg["source"]
        if kind != "stac" and cfg["path"] is None:
            raise ConfigError(f"config key 'labels.path': labels.source is {kind!r}, which needs the file")
        if kind != "stac" and cfg["legend"] is None:
            raise ConfigError(
                f"config key 'labels.legend': labels.source {kind!r} declares no class table; name the legend of "
                f"its codes (a preset: {', '.join(PRESETS)}, a .yaml/.csv file or a mapping)"
            )
        return cls(
            legend=load_legend(cfg["legend"], base),
            legend_given=cfg["legend"] is not None,
            kind=kind,
            asset=cfg["asset"],
            path=cfg["path"],
            nodata=cfg["nodata"],
            attribute=cfg["attribute"],
            layer=cfg["layer"],
            point_size_px=int(cfg["point_size_px"]),
            year=cfg["year"],
        )

    def for_place(self, name: str) -> LabelSource:
        """The source of one AOI or map region: ``{aoi}`` in ``labels.path`` replaced by its name (one vector or
        raster file per AOI)."""
        if self.path is None or "{aoi}" not in self.path:
            return self
        return dataclasses.replace(self, path=self.path.replace("{aoi}", name))
