"""Frame choice: HLS items grouped into acquisitions (one sensor on one day) and the choice of the frames.

:func:`select_frames` picks the clearest eligible acquisition per window (equal parts of the period, or the
``download.season_windows``) and records what became of every candidate. Pure bookkeeping on clear fractions
computed elsewhere (:mod:`lulc.download.imagery`): nothing here reads a pixel.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pystac

from lulc import hls

log = logging.getLogger(__name__)


@dataclass
class Acquisition:
    """The HLS items of one sensor on one day over the AOI (several tiles are mosaicked)."""

    date: str
    sensor: str
    items: list[pystac.Item]
    clear_fraction: float = float("nan")

    @property
    def key(self) -> str:
        return f"{self.date}_{self.sensor}"


def group_acquisitions(items: Sequence[pystac.Item]) -> list[Acquisition]:
    """Group HLS items by (day, sensor), sorted by date then sensor."""
    groups: dict[tuple[str, str], list[pystac.Item]] = {}
    for item in items:
        if item.datetime is None:
            raise ValueError(f"HLS STAC item {item.id!r} has no datetime")
        sensor = hls.sensor_of(item.collection_id, item.id)
        groups.setdefault((item.datetime.strftime("%Y-%m-%d"), sensor), []).append(item)
    return [
        Acquisition(date, sensor, sorted(its, key=lambda i: i.id)) for (date, sensor), its in sorted(groups.items())
    ]


def _timestamp(day: str) -> float:
    return datetime.fromisoformat(day).timestamp()


def _in_season(day: str, window: tuple[str, str]) -> bool:
    """Whether ``YYYY-MM-DD`` falls in an inclusive ``(MM-DD, MM-DD)`` window (wrapping over New Year)."""
    month_day, (first, last) = day[5:10], window
    if first <= last:
        return first <= month_day <= last
    return month_day >= first or month_day <= last


def select_frames(
    acquisitions: Sequence[Acquisition],
    frames: int,
    min_clear_fraction: float,
    start: str,
    end: str,
    season_windows: Sequence[tuple[str, str]] | None = None,
) -> tuple[list[Acquisition], list[dict[str, Any]]]:
    """Pick ``frames`` acquisitions: the clearest eligible one in each window, windows without an eligible
    date being filled with the clearest remaining dates.

    The windows are ``season_windows`` (one ``(MM-DD, MM-DD)`` pair per frame, config
    ``download.season_windows``) or, without them, ``frames`` equal parts of ``start``..``end``.
    Returns the chosen acquisitions in date order and a record of every candidate: its clear fraction,
    its window, and whether it became a frame or why it was dropped. Raises if fewer than ``frames``
    dates pass ``min_clear_fraction``.
    """
    seasons: list[tuple[str, str]] = [(str(w[0]), str(w[1])) for w in season_windows or []]
    if seasons and len(seasons) != frames:
        raise ValueError(
            f"download.season_windows has {len(seasons)} windows but download.frames = {frames}; "
            "give one window per frame"
        )
    t0, t1 = _timestamp(start), _timestamp(end)
    span = max(t1 - t0, 1.0)

    def windows_of(acq: Acquisition) -> list[int]:
        if seasons:
            return [w for w, season in enumerate(seasons) if _in_season(acq.date, season)]
        t = _timestamp(acq.date)
        w = min(max(int((t - t0) / span * frames), 0), frames - 1)
        return [w]

    def window_label(w: int) -> str:
        if seasons:
            return f"{seasons[w][0]}..{seasons[w][1]}"
        lo = datetime.fromtimestamp(t0 + span * w / frames).date().isoformat()
        hi = datetime.fromtimestamp(t0 + span * (w + 1) / frames).date().isoformat()
        return f"{lo}..{hi}"

    eligible = [a for a in acquisitions if a.clear_fraction >= min_clear_fraction]
    chosen: list[Acquisition] = []
    filled: set[int] = set()  # ids of acquisitions chosen to fill a window without an eligible date
    empty_windows = []
    for window in range(frames):
        in_window = [a for a in eligible if window in windows_of(a) and a not in chosen]
        if in_window:
            chosen.append(max(in_window, key=lambda a: (a.clear_fraction, a.date)))
        else:
            empty_windows.append(window_label(window))
    for acq in sorted(eligible, key=lambda a: (-a.clear_fraction, a.date)):
        if len(chosen) >= frames:
            break
        if acq not in chosen:
            chosen.append(acq)
            filled.add(id(acq))
    if len(chosen) < frames:
        raise ValueError(
            f"only {len(eligible)} of {len(acquisitions)} acquisitions have a clear fraction >= "
            f"{min_clear_fraction} (download.min_clear_fraction), but download.frames = {frames}; "
            "lower one of them, widen the AOI's dates or raise stac.imagery.max_cloud_cover"
        )
    if empty_windows:
        log.warning(
            "no date with clear fraction >= %s in window(s) %s; filled with the clearest remaining date(s)",
            min_clear_fraction,
            ", ".join(empty_windows),
        )
    chosen.sort(key=lambda a: (a.date, a.sensor))
    records = []
    for acq in acquisitions:
        own = windows_of(acq)
        if acq in chosen:
            status = f"frame {chosen.index(acq)}"
            if id(acq) in filled:
                status += " (fills a window without an eligible date)"
        elif acq.clear_fraction < min_clear_fraction:
            status = "dropped: clear fraction below download.min_clear_fraction"
        elif not own:
            status = "dropped: outside every download.season_windows window"
        else:
            status = "dropped: a clearer date was chosen in its window"
        records.append(
            {
                "date": acq.date,
                "sensor": acq.sensor,
                "items": [i.id for i in acq.items],
                "clear_fraction": round(acq.clear_fraction, 6),
                "window": ", ".join(window_label(w) for w in own) if own else None,
                "status": status,
            }
        )
    return chosen, records
