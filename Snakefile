# Entry point for `snakemake` run from the repository root; the workflow lives in workflow/.
include: "workflow/Snakefile"


# Snakemake takes the default target only from the main Snakefile, never from an included one.
workflow.default_target = "all"
