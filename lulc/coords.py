"""Time and location inputs of models that take them (Prithvi-EO-2.0 ``_tl`` backbones): each frame's date as
``(year, day of year)`` and a chip's or window's centre as ``(latitude, longitude)`` in degrees, the inputs
TerraTorch's ``PrithviViT`` embeds (``temporal_coords`` ``(B, T, 2)``, ``location_coords`` ``(B, 2)``; the day of
year counts from 1, as in the HLS file names the releases were trained with).

Frame dates come from the download's frame record: the ``FRAME_<t>`` tags of ``image.tif`` (``"<date> <sensor>
<items>"``), which the chip store's ``summary.json`` keeps as ``periods.imagery``. Locations come from the chip
manifest's geometries, or, in sliding-window evaluation and prediction, from each window's own centre pixel:
every window gets its own location (TerraTorch's tiled inference passes one set for a whole scene).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pyproj import CRS, Transformer

#: The keys of a batch's (and a model's ``coords`` argument's) time and location tensors.
TEMPORAL_KEY, LOCATION_KEY = "temporal_coords", "location_coords"


def frame_dates_from_tags(tags: Mapping[str, str], where: str) -> list[str]:
    """The frames' dates (ISO, oldest first) from an image's ``FRAME_<t>`` tags; a ValueError naming ``where``
    when there are none (an image written without the frame record)."""
    frames = sorted((int(k.removeprefix("FRAME_")), v.split()[0]) for k, v in tags.items()
                    if k.startswith("FRAME_") and k.removeprefix("FRAME_").isdigit())  # fmt: skip
    if not frames:
        raise ValueError(
            f"{where}: no FRAME_<t> tags (the frames' dates), which a model with time / location inputs needs; "
            "rebuild it with the download rule"
        )
    return [date for _, date in frames]


def temporal_coords(dates: Sequence[str | datetime.date], where: str = "frames") -> np.ndarray:
    """``(T, 2)`` float32 ``(year, day of year)`` of each frame's date."""
    rows = []
    for value in dates:
        try:
            day = value if isinstance(value, datetime.date) else datetime.date.fromisoformat(str(value)[:10])
        except ValueError:
            raise ValueError(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from None
        rows.append((day.year, day.timetuple().tm_yday))
    if not rows:
        raise ValueError(f"{where}: no frame dates")
    return np.asarray(rows, dtype=np.float32)


def latlon(xs: Any, ys: Any, crs: Any) -> np.ndarray:
    """``(N, 2)`` float32 ``(latitude, longitude)`` of points given in ``crs``."""
    to_wgs84 = Transformer.from_crs(CRS.from_user_input(crs), CRS.from_epsg(4326), always_xy=True)
    lon, lat = to_wgs84.transform(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float))
    return np.stack([np.atleast_1d(lat), np.atleast_1d(lon)], axis=1).astype(np.float32)


def window_latlon(transform: Any, crs: Any, rows: Sequence[int], cols: Sequence[int], height: int,
                  width: int) -> np.ndarray:
    """``(N, 2)`` ``(latitude, longitude)`` of the centres of ``height`` x ``width`` windows whose top-left pixels
    are ``(rows[i], cols[i])`` on a raster with affine ``transform`` in ``crs``."""
    r = np.asarray(rows, dtype=float) + height / 2.0
    c = np.asarray(cols, dtype=float) + width / 2.0
    xs = transform.c + c * transform.a + r * transform.b
    ys = transform.f + c * transform.d + r * transform.e
    return latlon(xs, ys, crs)


def chip_latlon(manifest: Any) -> dict[int, tuple[float, float]]:
    """Chip index -> ``(latitude, longitude)`` of its centre, from a chip manifest (GeoDataFrame in the AOI's CRS)."""
    centres = manifest.geometry.centroid
    coords = latlon(centres.x.to_numpy(), centres.y.to_numpy(), manifest.crs)
    return {int(i): (float(a), float(b)) for i, (a, b) in zip(manifest["index"], coords, strict=True)}


def batch_coords(temporal: np.ndarray, locations: np.ndarray) -> dict[str, Any]:
    """A model's ``coords`` argument for a batch: the frames' ``(T, 2)`` repeated per sample, ``(B, 2)`` locations
    (torch tensors, float32)."""
    import torch

    location = torch.as_tensor(np.asarray(locations, dtype=np.float32))
    time = torch.as_tensor(np.asarray(temporal, dtype=np.float32)).unsqueeze(0).expand(len(location), -1, -1)
    return {TEMPORAL_KEY: time.contiguous(), LOCATION_KEY: location}
