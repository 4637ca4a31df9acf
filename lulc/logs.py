"""Route a rule script's logging and uncaught exceptions to the rule's log file.

Rule scripts call :func:`setup_script_logging` first. Run outside Snakemake (for debugging), they log to
stderr instead, so ``python -c "from lulc import download; download.run(...)"`` works the same way. Under
Snakemake it then checks that the rule's input files are complete (:func:`lulc.integrity.check_inputs`), so a
damaged upstream output stops the job with a message that names the file and how to regenerate it. A mistake in
the input (:func:`is_user_error`) prints one line on the console and leaves its traceback in the rule's log; a
bug prints its traceback in both places.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` reports a mistake in the input (a config value, a file, a STAC item): the ValueError
    and OSError families and the workflow's own error types. Anything else is a bug and keeps its traceback
    on the console."""
    return isinstance(error, ValueError | OSError) or type(error).__module__.startswith("lulc.")


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

    log_file = log_files[0] if log_files else None

    def log_uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if log_file is None or not is_user_error(value):
            logging.getLogger("lulc").error("uncaught exception", exc_info=(kind, value, tb))
            return
        # A mistake in the input: the one-line message on the console, the traceback in the rule's log only.
        with open(log_file, "a") as handle:
            handle.write("".join(traceback.format_exception(kind, value, tb)))
        print(f"ERROR: {value}\n(the traceback is in {log_file})", file=sys.stderr)

    sys.excepthook = log_uncaught
    rule = getattr(snakemake, "rule", "script")
    inputs = getattr(snakemake, "input", None)
    if inputs:
        from lulc.integrity import check_inputs

        check_inputs(inputs)
    return logging.getLogger(f"lulc.{rule}")
