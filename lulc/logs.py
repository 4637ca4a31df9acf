"""Route a rule script's logging and uncaught exceptions to the rule's log file.

Rule scripts call :func:`setup_script_logging` first. Run outside Snakemake (for debugging), they log to
stderr instead, so ``python -c "from lulc import download; download.run(...)"`` works the same way. Under
Snakemake it then checks that the rule's input files are complete (:func:`lulc.integrity.check_inputs`), so a
damaged upstream output stops the job with a message that names the file and how to regenerate it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import TracebackType
from typing import Any


def setup_script_logging(snakemake: Any | None = None, level: int = logging.INFO) -> logging.Logger:
    """Send log records (and any uncaught exception with its traceback) to ``snakemake.log[0]``."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    log_files = list(getattr(snakemake, "log", []) or [])
    if log_files:
        Path(log_files[0]).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_files[0], mode="w"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    for noisy in ("rasterio", "urllib3", "fiona", "pyogrio", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    def log_uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        logging.getLogger("lulc").error("uncaught exception", exc_info=(kind, value, tb))

    sys.excepthook = log_uncaught
    rule = getattr(snakemake, "rule", "script")
    inputs = getattr(snakemake, "input", None)
    if inputs:
        from lulc.integrity import check_inputs

        check_inputs(inputs)
    return logging.getLogger(f"lulc.{rule}")
