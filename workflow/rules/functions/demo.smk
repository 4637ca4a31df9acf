# Input functions, identities and targets of the demo stage (demo.smk), defined before its rules.
from lulc.demo import POLYGON_DIR, TRUTH_DIR, polygon_name, truth_name

DEMO_DIR = "results/demo"


def demo_truth_outputs():
    """The true land cover the demo writes for every region and imagery year (outside its catalog)."""
    demo = config["demo"]
    return [
        f"{DEMO_DIR}/{TRUTH_DIR}/{truth_name(name, year)}"
        for name, region in demo["regions"].items()
        for year in (region.get("years") or [demo["year"]])
    ]


def demo_polygon_outputs():
    """The labelled field polygons the demo writes for every labelled region (demo.label_polygons > 0; else
    none), outside its catalog: sparse labels for labels.source: vector."""
    demo = config["demo"]
    if not demo.get("label_polygons"):
        return []
    return [
        f"{DEMO_DIR}/{POLYGON_DIR}/{polygon_name(name)}"
        for name, region in demo["regions"].items()
        if region.get("labels", True)
    ]
