"""Sliding-window geometry of the predict stage: tile origins, the blending window and the padded scene grid.

Tiles of ``tile x tile`` pixels start every ``stride`` pixels along both axes; the last tile of a row or column
is aligned to the scene edge (:func:`tile_origins`). The scene is mirrored by a margin of half the overlap on
every side (:class:`TileGrid`), so that its outermost pixels are not at a tile edge. Each tile's logits are
weighted by a separable window (:func:`blend_window`): 1 in the interior, a raised-cosine ramp over the
overlap (two neighbouring ramps add up to 1), never below :data:`BLEND_FLOOR`.

The chips stage walks its rasters differently on purpose: it cuts only full chips and leaves a partial chip at
the far edge uncut (a training sample must be whole), while a map must cover every pixel, so its last tile is
aligned to the edge. One walker would have to choose one of the two edge rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Smallest weight of a pixel inside a tile: edge pixels count wherever no other tile covers them.
BLEND_FLOOR = 0.01


def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of the tiles along one axis: every ``stride`` pixels, the last one aligned to the edge.

    A scene no longer than a tile gets a single tile at 0 (padded by the caller).
    """
    if tile < 1 or stride < 1 or stride > tile:
        raise ValueError(f"need 1 <= stride <= tile, got tile {tile}, stride {stride}")
    if length <= tile:
        return [0]
    return [*range(0, length - tile, stride), length - tile]


def blend_window(tile: int, stride: int, floor: float = BLEND_FLOOR, blend: bool = True) -> np.ndarray:
    """1-D weights of a tile (the 2-D window is their outer product).

    1 in the interior; over the ``tile - stride`` overlap at each side a raised-cosine ramp
    ``0.5 - 0.5 cos(pi (i + 0.5) / overlap)``, which adds up to exactly 1 with the neighbour's mirrored ramp;
    never below ``floor``. ``blend=False`` gives uniform weights (plain averaging, for comparison).
    """
    weights = np.ones(tile, dtype=np.float64)
    overlap = tile - stride
    if blend and overlap > 0:
        i = np.arange(tile, dtype=np.float64)
        rise = 0.5 - 0.5 * np.cos(np.pi * np.minimum(i + 0.5, overlap) / overlap)
        weights = np.minimum(rise, rise[::-1])
    return np.maximum(weights, floor).astype(np.float32)


def axis_weight_sum(length: int, origins: Sequence[int], window: np.ndarray) -> np.ndarray:
    """Sum of the 1-D windows of every tile over an axis of ``length`` (padded to at least one tile)."""
    total = np.zeros(max(length, len(window)), dtype=np.float64)
    for origin in origins:
        total[origin : origin + len(window)] += window
    return total.astype(np.float32)


@dataclass(frozen=True)
class TileGrid:
    """The tiling of a ``height x width`` scene, in the coordinates of the scene padded by ``margin``.

    The scene is mirrored by ``margin = (tile - stride) // 2`` pixels on every side (and further on the
    bottom / right where it is smaller than a tile), so its outermost pixels are not at a tile edge, where
    a network's padding artefacts are strongest and no other tile could blend them away. Tiles start at
    :func:`tile_origins` of the padded size; the margin is never written.
    """

    height: int
    width: int
    tile: int
    stride: int
    margin: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    @classmethod
    def of(cls, height: int, width: int, tile: int, stride: int) -> TileGrid:
        margin = (tile - stride) // 2
        rows = tile_origins(height + 2 * margin, tile, stride)
        cols = tile_origins(width + 2 * margin, tile, stride)
        return cls(height, width, tile, stride, margin, tuple(rows), tuple(cols))

    @property
    def padded_height(self) -> int:
        return max(self.height + 2 * self.margin, self.tile)

    @property
    def padded_width(self) -> int:
        return max(self.width + 2 * self.margin, self.tile)

    @property
    def tiles(self) -> int:
        return len(self.rows) * len(self.cols)


__all__ = ["BLEND_FLOOR", "TileGrid", "axis_weight_sum", "blend_window", "tile_origins"]
