# Input functions of the download stage (download.smk), defined before its rules; map_label uses them too.
def label_source_files(wildcards):
    """The local files the labels of an AOI or map region come from (a raster or vector file, `{aoi}` in
    labels.path replaced by its name; a legend file), so that editing one reruns what reads it (and the demo
    rule runs first where they are its polygons); URLs and presets are params only."""
    labels = config["labels"]
    files = []
    if labels["source"] != "stac" and "://" not in str(labels["path"]):
        place = wildcards.get("aoi") or wildcards.get("region")
        files.append(str(labels["path"]).replace("{aoi}", place))
    legend = labels["legend"]
    if isinstance(legend, str) and legend.lower().endswith((".yaml", ".yml", ".csv")):
        files.append(legend)
    return files
