"""The configuration contract: one schema owns every key, and the rules that tie keys together live here.

``workflow/schemas/config.schema.yaml`` is the single source of every key, its type, range, default and
description. :func:`load_config` validates the whole Snakemake ``config`` at start-up (filling defaults) and
then runs :func:`check_config`, the cross-field rules no schema can express (fractions summing to one, a U-Net
deeper than the chip allows, an FCN decoder behind a patch that is not a power of two, ...), so that every
mistake stops the run before any job, with a message naming the key.

Stages do not import this module: they ask :mod:`lulc.schema` for their section (validated, defaults from
the schema). This module adds the rules that read AOIs, map regions and other sections; its names re-export
the schema's, so ``lulc.config`` is the one place to import the configuration from outside the stages.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from lulc import families
from lulc.families.cache import cached_release
from lulc.schema import (  # re-exported: the configuration's public names, in one place
    BUDGET_KEYS,
    EVALUATE_RUNTIME_KEYS,
    PREDICT_RUNTIME_KEYS,
    SCHEMA_PATH,
    SECTION_RULES,
    TRAIN_RUNTIME_KEYS,
    TRAIN_TUNABLE_KEYS,
    ConfigError,
    is_integer_key,
    model_entry,
    model_rules,
    patch_size,
    schema,
    search_space_rules,
    section,
    tunable_key_schema,
    validate_config,
)


def _download_crs(download: Mapping[str, Any]) -> Iterator[str]:
    """``download.crs`` is ``utm`` or a known EPSG code whose unit is the metre (``download.resolution`` is in
    metres): a geographic CRS would make a 30-degree pixel."""
    crs = str(download["crs"])
    if crs != "utm":
        yield from _metric_crs(crs, "download.crs", download["resolution"], "utm or ")


def _metric_crs(crs: str, key: str, resolution: float, alternative: str = "") -> Iterator[str]:
    """``crs`` is ``EPSG:<code>`` of a known projected CRS in metres (pixel sizes are in metres)."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    if not crs.upper().startswith("EPSG:") or not crs[5:].isdigit():
        yield f"config key '{key}': expected {alternative}EPSG:<code>, got {crs!r}"
        return
    try:
        parsed = CRS.from_epsg(int(crs[5:]))
    except CRSError:
        yield f"config key '{key}': {crs} is not a known EPSG code"
        return
    if parsed.is_geographic:
        yield (
            f"config key '{key}': {crs} is geographic (degrees), but download.resolution "
            f"({resolution}) is in metres; use {alternative}a projected EPSG code"
        )
    elif abs(parsed.linear_units_factor[1] - 1.0) > 1e-9:
        yield (
            f"config key '{key}': {crs} measures in {parsed.linear_units_factor[0]}, but "
            f"download.resolution is in metres; use {alternative}a projected EPSG code in metres"
        )


def _map_rules(config: Mapping[str, Any], aois: Mapping[str, Any], base_dir: Path) -> Iterator[str]:
    """Each ``maps.regions`` entry: where and when it is, runs that are trained, a metric CRS, change pairs of
    its own periods, and a static imagery catalog that exists."""
    from lulc.maps import MapConfigError, parse_region

    for name, entry in config["maps"]["regions"].items():
        where = f"maps.regions.{name}"
        try:
            region = parse_region(name, entry, aois, base_dir)
        except MapConfigError as error:
            yield str(error)
            continue
        except (ValueError, OSError) as error:
            yield f"config key '{where}': {error}"
            continue
        if entry["runs"] is not None and not entry["runs"]:
            yield (
                f"config key '{where}.runs': an empty list maps the region with no run; give at least one run, or "
                "leave the key out (null) to map it with predict.runs"
            )
        yield from _runs_rules(config, entry["runs"], f"{where}.runs")
        if entry["crs"] is not None:
            yield from _metric_crs(str(entry["crs"]), f"{where}.crs", config["download"]["resolution"])
        labels = [period.label for period in region.periods]
        for i, pair in enumerate(entry["change"] or []):
            for label in (str(v) for v in pair):
                if label not in labels:
                    yield f"config key '{where}.change.{i}': {label!r} is not one of the region's periods {labels}"
        if entry["imagery"] is not None:
            yield from _static_catalog(entry["imagery"]["source"], f"{where}.imagery.source", base_dir)


def map_warnings(config: Mapping[str, Any], base_dir: str | Path = ".") -> list[str]:
    """What a valid config does that its author may not expect, per map region (naming it and the key): a
    ``maps.tile_km`` that is rounded to whole predict strides, and more than :data:`lulc.maps.MANY_TILES`
    processing tiles (one download job per tile and period, one predict job per tile, period and run)."""
    from lulc.maps import MANY_TILES, MapConfigError, parse_region, predict_geometry, tile_count, tile_sizes

    aois, _ = _parse_aois(config, Path(base_dir))
    maps, resolution = config["maps"], float(config["download"]["resolution"])
    tile, stride = predict_geometry(config["predict"], int(config["chips"]["size"]))
    core, _ = tile_sizes(float(maps["tile_km"]), maps["halo_px"], resolution, tile, stride)
    wanted_px = float(maps["tile_km"]) * 1000.0 / resolution
    notes = []
    for name, entry in maps["regions"].items():
        try:
            region = parse_region(name, entry, aois, Path(base_dir))
        except (MapConfigError, ValueError, OSError):  # reported as an error by check_config
            continue
        where = f"config key 'maps.tile_km' (map region {name})"
        if abs(wanted_px - core) > 1e-6:
            notes.append(
                f"{where}: {maps['tile_km']:g} km ({wanted_px:g} px of {resolution:g} m) is not a whole number of "
                f"predict strides ({stride} px); the processing tiles are {core} px ({core * resolution / 1000:g} km)"
            )
        count = tile_count(region, resolution, core)
        if count > MANY_TILES:
            notes.append(
                f"{where}: the region makes {count} processing tiles of {core * resolution / 1000:g} km (more than "
                f"{MANY_TILES}), so {count} download jobs per period and {count} predict jobs per period and run; "
                "a larger maps.tile_km makes fewer, larger jobs"
            )
    return notes


def _parse_aois(config: Mapping[str, Any], base_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """Every AOI parsed once (bbox or vector file, dates): the AOIs that parse, and the problems of the others."""
    from lulc.aoi import AOI

    aois, problems = {}, []
    for name, entry in config["aois"].items():
        try:
            aois[name] = AOI.from_config(name, entry, base_dir=base_dir)
        except (ValueError, OSError) as error:
            problems.append(f"config key 'aois.{name}': {error}")
    return aois, problems


def _aoi_grid_sizes(config: Mapping[str, Any], aois: Mapping[str, Any]) -> Iterator[str]:
    """Every AOI's grid holds at least one chip (the AOI bbox projected as the download stage does)."""
    from rasterio.warp import transform_bounds

    from lulc.hls import utm_epsg

    size, resolution = int(config["chips"]["size"]), float(config["download"]["resolution"])
    crs = str(config["download"]["crs"])
    for name, aoi in aois.items():
        lon, lat = (aoi.bbox[0] + aoi.bbox[2]) / 2, (aoi.bbox[1] + aoi.bbox[3]) / 2
        target = f"EPSG:{utm_epsg(lon, lat)}" if crs == "utm" else crs
        try:
            left, bottom, right, top = transform_bounds("EPSG:4326", target, *aoi.bbox, densify_pts=21)
        except Exception:  # a bad download.crs is reported by its own rule
            continue
        width, height = math.ceil((right - left) / resolution), math.ceil((top - bottom) / resolution)
        if min(width, height) < size:
            yield (
                f"config key 'chips.size': {size} pixels is larger than the grid of aois.{name} ({width} x "
                f"{height} pixels of {resolution:g} m); enlarge the AOI or use smaller chips"
            )


def _static_catalogs(config: Mapping[str, Any], base_dir: Path) -> Iterator[str]:
    for kind in ("imagery", "labels"):
        yield from _static_catalog(str(config["stac"][kind]["source"]), f"stac.{kind}.source", base_dir)


def _static_catalog(source: str, key: str, base_dir: Path) -> Iterator[str]:
    """A source that is not ``demo`` or a URL is an existing static catalog."""
    if source == "demo" or source.lower().startswith(("http://", "https://")):
        return
    path = Path(source).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not (path / "catalog.json" if path.is_dir() else path).is_file():
        yield (
            f"config key '{key}': {source!r} is neither 'demo', an http(s) URL of a STAC API, nor "
            f"an existing static catalog.json (looked for {path})"
        )


def _hf_weights_cached(config: Mapping[str, Any]) -> Iterator[str]:
    """``weights: hf`` of a model that will be trained needs its family's release in the local Hugging Face cache
    (nothing is downloaded at run time): say so before any job, not after the data stages, with the command that
    fetches it. An unreleased backbone is :func:`lulc.schema.model_rules`' error."""
    for name in config["train"]["models"]:
        entry = config["models"].get(name, {})
        if entry.get("weights") != "hf" or entry.get("type") not in families.FAMILIES:
            continue
        release = families.FAMILIES[entry["type"]].release(str(entry.get("backbone")))
        if release is not None and cached_release(release) is None:
            yield (
                f"config key 'models.{name}.weights': hf, but {release.repo}/{release.filename} is not in the local "
                "Hugging Face cache and nothing is downloaded at run time; fetch it once with "
                f"`{release.fetch_command}` or set the key to a local checkpoint"
            )


def _predict_runs(config: Mapping[str, Any]) -> Iterator[str]:
    """Each run of ``predict.runs`` is trained: its model in train.models, its fraction and seed configured."""
    yield from _runs_rules(config, config["predict"]["runs"], "predict.runs")


def _runs_rules(config: Mapping[str, Any], runs: Sequence[Mapping[str, Any]] | None, where: str) -> Iterator[str]:
    """Each run of a list of runs to map (``predict.runs``, ``maps.regions.<name>.runs``) is trained."""
    fractions = [f"{float(f):g}" for f in config["splits"]["train_fractions"]]
    for i, run in enumerate(runs or []):
        key = f"config key '{where}.{i}'"
        if run["model"] not in config["train"]["models"]:
            yield f"{key}: model {run['model']!r} is not trained (train.models: {list(config['train']['models'])})"
        if f"{float(run.get('fraction', 1.0)):g}" not in fractions:
            yield (
                f"{key}: fraction {run.get('fraction', 1.0):g} is not one of splits.train_fractions "
                f"({', '.join(fractions)})"
            )
        if "seed" in run and run["seed"] not in config["splits"]["seeds"]:
            yield f"{key}: seed {run['seed']} is not one of splits.seeds {list(config['splits']['seeds'])}"


def _tune_rules(config: Mapping[str, Any]) -> Iterator[str]:
    """tune.models are trained, tune.fraction and tune.seed are configured, and the search space of every family
    a model entry uses is valid."""
    tune = config["tune"]
    if not tune["enabled"]:  # nothing is tuned: its settings are not used
        return
    for name in tune["models"] or []:
        if name not in config["train"]["models"]:
            yield f"config key 'tune.models': {name!r} is not trained (train.models: {list(config['train']['models'])})"
    fractions = [f"{float(f):g}" for f in config["splits"]["train_fractions"]]
    if f"{float(tune['fraction']):g}" not in fractions:
        yield (
            f"config key 'tune.fraction': {tune['fraction']:g} is not one of splits.train_fractions "
            f"({', '.join(fractions)})"
        )
    if tune["seed"] is not None and tune["seed"] not in config["splits"]["seeds"]:
        yield f"config key 'tune.seed': {tune['seed']} is not one of splits.seeds {list(config['splits']['seeds'])}"
    # the families of the configured models: the spaces of families no model entry uses are never read
    searched = {entry.get("type", name) for name, entry in config["models"].items()}
    for family, space in tune["search_space"].items():
        if family not in searched:
            continue
        yield from search_space_rules(family, space, f"tune.search_space.{family}")
        if "warmup_epochs" in space and config["train"]["warmup_iters"] is not None:
            yield (
                f"config key 'tune.search_space.{family}.warmup_epochs': train.warmup_iters "
                f"({config['train']['warmup_iters']}) sets the warm-up, so warmup_epochs has no effect; search "
                "warmup_iters instead"
            )


def _label_source(config: Mapping[str, Any], aois: Mapping[str, Any], base_dir: Path) -> Iterator[str]:
    """The ``labels`` section resolves (a legend that loads, a path where the source needs one) and a local label
    file exists for every AOI, before any job runs. Files the workflow writes itself (the demo's polygons) are
    checked when they are read."""
    from lulc.legends import LabelSource, LegendError

    try:
        source = LabelSource.from_config(config["labels"], base_dir)
    except ConfigError as error:
        yield str(error).removeprefix("invalid configuration:\n  ")
        return
    except LegendError as error:
        yield f"config key 'labels.legend': {str(error).removeprefix('labels.legend: ')}"
        return
    if source.kind == "stac" or source.path is None or "://" in source.path or source.path.startswith("results/"):
        return
    for name in aois:
        path = base_dir / source.for_place(name).path  # type: ignore[operator]
        if not path.is_file():
            yield f"config key 'labels.path': {path} (the labels of AOI {name}) does not exist"


def check_config(config: Mapping[str, Any], base_dir: str | Path = ".") -> list[str]:
    """Every cross-field rule of a validated, default-filled config; one :class:`ConfigError` naming them all.
    Returns the warnings of a valid config (:func:`map_warnings`)."""
    base_dir = Path(base_dir)
    aois, problems = _parse_aois(config, base_dir)
    crs_problems = list(_download_crs(config["download"]))
    problems += crs_problems
    if not crs_problems:  # a grid in a wrong CRS says nothing
        problems += _aoi_grid_sizes(config, aois)
    problems += _static_catalogs(config, base_dir)
    problems += _label_source(config, aois, base_dir)
    problems += _hf_weights_cached(config)
    for name, rules in SECTION_RULES.items():
        problems += rules(config[name])
    chip_size = int(config["chips"]["size"])
    stride = config["chips"]["stride"]
    if stride is not None and stride > chip_size:
        problems.append(
            f"config key 'chips.stride': {stride} is larger than chips.size {chip_size} (pixels between chips "
            "would never be seen)"
        )
    evaluate = config["evaluate"]
    if evaluate["crop"] is None and evaluate["stride"] is not None and evaluate["stride"] > chip_size:
        problems.append(
            f"config key 'evaluate.stride': {evaluate['stride']} is larger than the crop, which is the chip size "
            f"{chip_size} (evaluate.crop: null); pixels between windows would get no prediction"
        )
    for name, entry in config["models"].items():
        problems += model_rules(name, entry, chip_size)
    problems += _predict_runs(config)
    problems += _map_rules(config, aois, base_dir)
    problems += _tune_rules(config)
    for name in config["train"]["models"]:
        if name not in config["models"]:
            problems.append(
                f"config key 'train.models': {name!r} has no entry under 'models' (known: {sorted(config['models'])})"
            )
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return map_warnings(config, base_dir)


# ----------------------------------------------------------------------------------- the whole config


def load_config(
    config: dict[str, Any], schema_path: str | Path = SCHEMA_PATH, base_dir: str | Path = "."
) -> dict[str, Any]:
    """Validate and fill defaults, then check the AOIs and the cross-field rules of a Snakemake ``config``; the
    warnings of a valid config (:func:`map_warnings`) are printed on stderr, one ``WARNING:`` line each."""
    import sys

    validate_config(config, schema_path)
    for note in check_config(config, base_dir):
        print(f"WARNING: {note}", file=sys.stderr)
    return config


def check_file(path: str | Path, base_dir: str | Path = ".") -> dict[str, Any]:
    """Load and check a config file as the workflow would; YAML errors name the file, line and column.

    Snakemake reads ``--configfile`` itself, and its message for invalid YAML names neither the file nor the
    line: ``python -m lulc.config my.yaml`` does.
    """
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(path)
        raise ConfigError(f"invalid YAML in {where}: {getattr(error, 'problem', None) or error}") from None
    except OSError as error:
        raise ConfigError(f"cannot read the configuration {path}: {error.strerror}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of config sections, got {type(config).__name__}")
    return load_config(config, SCHEMA_PATH, base_dir)


def main(argv: list[str] | None = None) -> int:
    """``python -m lulc.config FILE...``: check configuration files without running the workflow."""
    import sys

    files = sys.argv[1:] if argv is None else argv
    if not files:
        print("usage: python -m lulc.config CONFIG.yaml [...]", file=sys.stderr)
        return 2
    status = 0
    for name in files:
        try:
            check_file(name)
            print(f"{name}: valid")
        except ConfigError as error:
            print(f"{name}: {error}", file=sys.stderr)
            status = 1
    return status


__all__ = [
    "BUDGET_KEYS",
    "EVALUATE_RUNTIME_KEYS",
    "PREDICT_RUNTIME_KEYS",
    "SCHEMA_PATH",
    "TRAIN_RUNTIME_KEYS",
    "TRAIN_TUNABLE_KEYS",
    "ConfigError",
    "check_config",
    "check_file",
    "is_integer_key",
    "load_config",
    "map_warnings",
    "model_entry",
    "model_rules",
    "patch_size",
    "schema",
    "search_space_rules",
    "section",
    "tunable_key_schema",
    "validate_config",
]


if __name__ == "__main__":
    raise SystemExit(main())
