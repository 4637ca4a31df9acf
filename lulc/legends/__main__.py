"""``python -m lulc.legends``: look at a legend, or start one from a STAC collection's declared class table.

    python -m lulc.legends show esa-worldcover              # a preset, a .yaml/.csv file: its class table
    python -m lulc.legends from-stac collection.json map    # the table a collection declares, as legend YAML

``from-stac`` reads a collection (or item) document saved to a file (one class per declared code, named and
coloured as declared): regroup its classes in the YAML it prints and give that file to ``labels.legend``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from lulc.legends.config import load_legend
from lulc.legends.declared import collection_table, declared_table, legend_from_table
from lulc.legends.legend import Legend, LegendError


def describe(legend: Legend) -> str:
    """The class table as aligned text: index, name, colour, codes; then the nodata codes."""
    lines = [f"legend {legend.name!r}: {legend.num_classes} classes, nodata {list(legend.nodata)}, "
             f"unknown codes: {legend.unknown}"]  # fmt: skip
    for row in legend.table():
        codes = " ".join(str(c) for c in row["codes"]) or "-"
        lines.append(f"  {row['index']:>3}  {row['name']:<28} {row['colour']}  {codes}")
    return "\n".join(lines)


def from_stac(document: Path, asset: str) -> Legend:
    """The legend a collection's ``item_assets`` (or an item's asset) declares for ``asset``."""
    data = json.loads(document.read_text())
    if data.get("type") == "Feature":
        entry = (data.get("assets") or {}).get(asset)
        table = declared_table(entry) if isinstance(entry, dict) else None
    else:
        table = collection_table(data, asset)
    if table is None:
        raise LegendError(f"{document}: asset {asset!r} declares no class table (classification:classes or "
                          "file:values)")  # fmt: skip
    return legend_from_table(table, str(data.get("id") or document.stem))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lulc.legends", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show", help="print a legend's class table")
    show.add_argument("legend", help="a preset name or a .yaml/.csv legend file")
    stac = commands.add_parser("from-stac", help="print the legend a STAC collection or item declares, as YAML")
    stac.add_argument("document", type=Path, help="a collection or item JSON file")
    stac.add_argument("asset", help="the label asset key (data, map, cropland, ...)")
    args = parser.parse_args(argv)
    try:
        if args.command == "show":
            print(describe(load_legend(args.legend)))
        else:
            legend = from_stac(args.document, args.asset)
            print(yaml.safe_dump(legend.to_dict(), sort_keys=False, width=120), end="")
    except (LegendError, OSError, json.JSONDecodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
