# Input functions, identities and targets of the search stage (search.smk), defined before its rules.
def search_demo_input(wildcards):
    """The demo catalog, where the imagery or label search reads it."""
    return demo_catalog_if(config["stac"]["imagery"], config["stac"]["labels"])
