# Input functions, identities and targets of the demo stage (demo.smk), defined before its rules.
from lulc.demo import TRUTH_DIR, truth_name

DEMO_DIR = "results/demo"


def demo_truth_outputs():
    """The true land cover the demo writes for every region and imagery year (outside its catalog)."""
    demo = config["demo"]
    return [
        f"{DEMO_DIR}/{TRUTH_DIR}/{truth_name(name, year)}"
        for name, region in demo["regions"].items()
        for year in (region.get("years") or [demo["year"]])
    ]
