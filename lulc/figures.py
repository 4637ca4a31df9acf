"""Writing a matplotlib figure as a PNG target: one place for the backend, the atomic write and the metadata
that keeps PNG bytes free of the matplotlib version (so a figure is the same file on every machine)."""

from __future__ import annotations

import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from lulc.io import atomic_path


def save_png(fig: plt.Figure, path: str | os.PathLike[str], **savefig: Any) -> None:
    """Write ``fig`` to ``path`` as PNG through a temporary name (never a half-written target), then close it.
    ``savefig`` passes options such as ``dpi`` or ``bbox_inches`` to :meth:`matplotlib.figure.Figure.savefig`."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None}, **savefig)
    plt.close(fig)


def save_map_png(fig: plt.Figure, path: str | os.PathLike[str]) -> None:
    """A map figure (preview, comparison, transition table): 110 dpi, cropped to what is drawn."""
    save_png(fig, path, dpi=110, bbox_inches="tight")


__all__ = ["save_map_png", "save_png"]
