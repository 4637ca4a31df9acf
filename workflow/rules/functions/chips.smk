# Input functions, identities and targets of the chips stage (chips.smk), defined before its rules.
def export_outputs():
    """Per-chip GeoTIFF exports, when chips.export_geotiff is set."""
    if config["chips"]["export_geotiff"]:
        return expand(rules.export_chips.output.folder, aoi=AOIS)
    return []


def chip_arrays(name):
    """`name` (images, labels or manifest) of every AOI's chip store: the training stages' inputs."""
    return expand(getattr(rules.chips.output, name), aoi=AOIS)
