"""LULC mapping with geospatial foundation models: the importable half of the Snakemake workflow.

One module per stage (``demo``, ``search``, ``download``, ``chips``, ``splits``, ...); the rule
scripts in ``scripts/`` are thin wrappers that call into these modules.
"""

__version__ = "0.1.0"
