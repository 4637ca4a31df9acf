"""Seeded random generators and the numpy field helpers of the demo: smooth noise, dilation, 3 x 3 block means,
a cubic ease and subsampled quantiles.

Apart because both the landscape (drawn from smooth noise fields) and the renderer (illumination, clouds,
cirrus, seasonal snow) build on them: numpy only, and every draw comes from a generator of :func:`child_rng`,
keyed by (seed, region, purpose, index), so adding a region or a date changes nothing else.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from lulc.demo.geometry import SUB


def child_rng(seed: int, region: str, purpose: str, index: int = 0) -> np.random.Generator:
    """An independent generator per (seed, region, purpose, index), so adding a region or date changes
    nothing else."""
    keys = [int(seed) & 0xFFFFFFFF, zlib.crc32(region.encode()), zlib.crc32(purpose.encode()), int(index)]
    return np.random.default_rng(np.random.SeedSequence(keys))


def _upsample(coarse: np.ndarray, factor: float, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of ``coarse`` by ``factor`` onto ``shape`` (pixel-centre aligned)."""

    def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
        pos = (np.arange(n_out) + 0.5) / factor - 0.5
        i0 = np.clip(np.floor(pos).astype(np.int64), 0, n_in - 2)
        weight = np.clip(pos - i0, 0.0, 1.0).astype(np.float32)
        return i0, weight

    r0, wr = axis(shape[0], coarse.shape[0])
    c0, wc = axis(shape[1], coarse.shape[1])
    rows = coarse[r0] * (1 - wr)[:, None] + coarse[r0 + 1] * wr[:, None]
    return (rows[:, c0] * (1 - wc) + rows[:, c0 + 1] * wc).astype(np.float32)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Gaussian-smoothed white noise with zero mean and unit standard deviation (float32).

    Large scales are drawn on a coarse grid and upsampled: same look, a fraction of the FFT work.
    """
    height, width = shape
    if sigma_px >= 6:
        factor = max(int(sigma_px // 3), 2)
        coarse_shape = (height // factor + 3, width // factor + 3)
        coarse = smooth_noise(rng, coarse_shape, sigma_px / factor)
        return _upsample(coarse, factor, shape)
    noise = rng.standard_normal(shape)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    kernel = np.exp(-2.0 * (np.pi * max(sigma_px, 0.3)) ** 2 * (fy**2 + fx**2))
    field = np.fft.irfft2(np.fft.rfft2(noise) * kernel, s=shape)
    field -= field.mean()
    field /= field.std() + 1e-12
    return field.astype(np.float32)


def _box_sum(mask: np.ndarray, radius: int) -> np.ndarray:
    """Sum over the (2r+1)^2 window around every pixel (zero outside), via an integral image."""
    padded = np.pad(mask.astype(np.int32), radius)
    integral = np.zeros((padded.shape[0] + 1, padded.shape[1] + 1), dtype=np.int32)
    np.cumsum(np.cumsum(padded, axis=0), axis=1, out=integral[1:, 1:])
    k = 2 * radius + 1
    return integral[k:, k:] - integral[:-k, k:] - integral[k:, :-k] + integral[:-k, :-k]


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Square dilation of a boolean mask."""
    return _box_sum(mask, radius) > 0 if radius > 0 else mask.copy()


def block_mean(values: np.ndarray) -> np.ndarray:
    """Mean over each 3 x 3 block of 10 m sub-pixels: the 30 m pixel value (float32)."""
    rows = values[0::SUB].astype(np.float32)
    for offset in range(1, SUB):
        rows += values[offset::SUB]
    total = rows[:, 0::SUB].copy()
    for offset in range(1, SUB):
        total += rows[:, offset::SUB]
    return total * np.float32(1.0 / SUB**2)


def smoothstep(x: np.ndarray | float) -> np.ndarray:
    """Cubic ease from 0 (x <= 0) to 1 (x >= 1)."""
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def quantiles(values: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """Quantiles of a large array, from a regular subsample (fast, deterministic)."""
    sample = values[::3, ::3] if values.ndim == 2 else values
    return np.quantile(sample, q)
