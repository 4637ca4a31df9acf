"""``python -m lulc.families``: the model families a config can name, what each takes and which releases are in
the local Hugging Face cache (never downloaded: the command that fetches a missing one is printed).

    python -m lulc.families            # every family: role, statistics, search space, releases and cache status
    python -m lulc.families terramind  # one family
"""

from __future__ import annotations

import argparse
import sys

from lulc.families import FAMILIES, ModelFamily
from lulc.families.cache import cached_release


def describe(record: ModelFamily) -> str:
    """A family's record as text: role, inputs, statistics, default search space, releases (cached or not)."""
    role = "foundation (pretrained weights) / scratch control (weights: none)" if record.foundation else "baseline"
    lines = [
        f"{record.name}: {record.description}",
        f"  role:          {role}",
        f"  bands:         {', '.join(record.bands)} (every frame)",
        f"  statistics:    {', '.join(record.statistics) or '- (use dataset or mean/std)'}",
        f"  search space:  {', '.join(record.search_space)}",
        f"  encoder keys:  {', '.join(record.encoder_keys)}",
        f"  colour:        {record.colour}",
    ]
    if record.notes:
        lines.append(f"  backbones:     {record.notes}")
    for backbone, release in record.releases.items():
        where = cached_release(release)
        status = f"cached: {where}" if where else f"not cached: {release.fetch_command}"
        lines.append(f"  release {backbone}: {release.repo}/{release.filename} ({status})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lulc.families", description=__doc__.split("\n\n")[0])
    parser.add_argument("family", nargs="?", help="one family (default: all)")
    args = parser.parse_args(argv)
    if args.family and args.family not in FAMILIES:
        print(f"unknown model family {args.family!r} (known: {', '.join(FAMILIES)})", file=sys.stderr)
        return 2
    names = [args.family] if args.family else list(FAMILIES)
    print("\n\n".join(describe(FAMILIES[name]) for name in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
