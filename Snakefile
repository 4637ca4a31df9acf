# Entry point for `snakemake` run from the repository root; the workflow lives in workflow/.
include: "workflow/Snakefile"
