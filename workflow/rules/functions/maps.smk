# Input functions, identities and targets of the maps stage (maps.smk), defined before its rules.
from lulc.maps import (
    map_predict_geometry,
    map_tiles_in,
    parse_map_regions,
    region_crs,
    training_aois_overlapped,
)

MAPS = config["maps"]
MAP_REGIONS = parse_map_regions(config)  # checked at start-up (lulc.config)
MAP_TILE, MAP_STRIDE = map_predict_geometry(config)
# The download settings of a region's frame choice and tiles (its grids are the region's, not download.crs).
MAP_DOWNLOAD_PARAMS = canonical(
    {k: v for k, v in config["download"].items() if k not in ("crs",)}
)

# Where a region's files go: per region, per period, per period x run, and per processing tile.
REGION = "results/maps/{region}"
PERIOD = f"{REGION}/{{period}}"
PERIOD_RUN = f"{PERIOD}/{RUN}"
TILE = "tiles/{tile}"
REGION_LOGS = "results/logs/maps/{region}"
REGION_BENCHMARKS = "results/benchmarks/maps/{region}"


def map_runs(region):
    """(model, fraction label, seed) of every run that maps `region`: its `runs`, else predict.runs' runs."""
    runs = MAPS["regions"][region]["runs"]
    return predict_runs() if runs is None else run_labels(runs)


def map_periods(region):
    return [period.label for period in MAP_REGIONS[region].periods]


def map_change_pairs(region):
    """(from, to) period pairs of the region's change tables: its `change` pairs, else first -> last."""
    pairs = MAPS["regions"][region]["change"]
    if pairs is not None:
        return [(str(a), str(b)) for a, b in pairs]
    periods = map_periods(region)
    return [(periods[0], periods[-1])] if len(periods) > 1 else []


def map_outputs():
    """Every region's mosaics (map, confidence, preview) per period x run, its comparisons with the labels where
    it has them, and its change tables (rule all)."""
    names = ["landcover.tif", "preview.png"]
    if PREDICT["confidence"]:
        names.append("confidence.tif")
    labelled = ["comparison.png", "agreement.json"]
    outputs = []
    for region in MAP_REGIONS:
        for model, fraction, seed in map_runs(region):
            run = {"region": region, "model": model, "fraction": fraction, "seed": seed}
            periods = map_periods(region)
            outputs += expand(
                f"{PERIOD_RUN}/{{name}}", period=periods, name=names, **run
            )
            if MAPS["regions"][region]["labels"]:
                outputs += expand(
                    f"{PERIOD_RUN}/{{name}}", period=periods, name=labelled, **run
                )
            outputs += [
                path
                for before, after in map_change_pairs(region)
                for path in expand(
                    rules.map_change.output, before=before, after=after, **run
                )
            ]
    return outputs


def map_imagery(region):
    """The region's imagery query: its own `imagery`, else stac.imagery."""
    return MAPS["regions"][region]["imagery"] or config["stac"]["imagery"]


def map_demo_inputs(wildcards):
    """The demo catalog, where the region's imagery comes from it."""
    return demo_catalog_if(map_imagery(wildcards.region))


def map_label_demo_inputs(wildcards):
    """The demo catalog, where the labels come from it."""
    return demo_catalog_if(config["stac"]["labels"])


def map_region_trained_on(wildcards):
    """The training AOIs a labelled region overlaps (its comparison then includes trained-on pixels)."""
    return training_aois_overlapped(MAP_REGIONS[wildcards.region], config)


def map_region_file(wildcards):
    """The region's vector file (tracked: editing it re-tiles the region, chooses its frames again and masks its
    tile maps again)."""
    path = MAP_REGIONS[wildcards.region].file
    return [path] if path else []


def map_tiling_params(wildcards):
    """What the region's tiles depend on: its extent, the tile and halo sizes, the pixel size and the
    predictor's tile and stride (cores and halos are whole strides). Not its years, runs or imagery.
    """
    region = MAP_REGIONS[wildcards.region]
    entry = MAPS["regions"][wildcards.region]
    return canonical(
        {
            "bbox": list(region.bbox),
            "file": entry.get("file"),
            "tile_km": MAPS["tile_km"],
            "halo_px": MAPS["halo_px"],
            "resolution": config["download"]["resolution"],
            "predict_tile": MAP_TILE,
            "predict_stride": MAP_STRIDE,
        }
    )


def map_extent_params(wildcards):
    """Where the region's frames are measured: its extent (bbox, vector file). Not its tiling."""
    region = MAP_REGIONS[wildcards.region]
    return {
        "bbox": list(region.bbox),
        "file": MAPS["regions"][wildcards.region].get("file"),
    }


def map_period_params(wildcards):
    """The region in one period, as the search and download stages take it (name, bbox, dates)."""
    region = MAP_REGIONS[wildcards.region]
    period = region.period(wildcards.period)
    return {
        "bbox": list(region.bbox),
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
    }


def map_tile_ids(region):
    """The region's processing tiles, from its `map_tiles` checkpoint (evaluated once it has run)."""
    tiles_csv = checkpoints.map_tiles.get(region=region).output.tiles
    return map_tiles_in(tiles_csv)


def map_tile_labels(wildcards):
    """Input function: the label of every processing tile's core of the region in one period."""
    return expand(
        rules.map_label.output.label,
        region=wildcards.region,
        period=wildcards.period,
        tile=map_tile_ids(wildcards.region),
    )


def map_tile_maps(name):
    """Input function: `name` (landcover or confidence) of every processing tile of the region in one period
    x run."""

    def tile_maps(wildcards):
        return expand(
            getattr(rules.map_predict.output, name),
            region=wildcards.region,
            period=wildcards.period,
            model=wildcards.model,
            fraction=wildcards.fraction,
            seed=wildcards.seed,
            tile=map_tile_ids(wildcards.region),
        )

    return tile_maps


def map_region_crs(region):
    """The CRS of the region's mosaics: its `crs`, else the UTM zone of its centre."""
    return region_crs(MAP_REGIONS[region], MAPS["regions"][region]["crs"])
