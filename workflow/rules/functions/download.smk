# Input functions of the download stage (download.smk), defined before its rules; map_label uses them too.
def label_place(wildcards):
    """The name `{aoi}` in labels.path stands for: the AOI, or a map region's own AOI (`aoi:`), or its name."""
    if "aoi" in wildcards.keys():
        return wildcards.aoi
    region = config["maps"]["regions"][wildcards.region]
    return region.get("aoi") or wildcards.region


def label_source_files(wildcards):
    """The local files the labels of an AOI or map region come from (a raster or vector file, `{aoi}` in
    labels.path replaced by its name; a legend file), so that editing one reruns what reads it (and the demo
    rule runs first where they are its polygons); URLs and presets are params only."""
    labels = config["labels"]
    files = []
    if labels["source"] != "stac" and "://" not in str(labels["path"]):
        files.append(str(labels["path"]).replace("{aoi}", label_place(wildcards)))
    legend = labels["legend"]
    if isinstance(legend, str) and legend.lower().endswith((".yaml", ".yml", ".csv")):
        files.append(legend)
    return files
