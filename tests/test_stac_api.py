"""The search stage against a real STAC API: stac-fastapi-pgstac on PostgreSQL 15 + PostGIS + pgstac.

A private PostgreSQL cluster and the API server are started on free loopback ports for this module, the
generated demo catalog is loaded into pgstac, and ``search_items`` must return the same items in the same
order through pystac-client against the API as in-process against the static catalog, for bbox,
datetime, cloud, label (``datetime: null``) and paging queries. Only loopback traffic; the servers are
always torn down. Where PostgreSQL/PostGIS or the server's virtual environment is missing, the module is
skipped with the reason (install them with ``.ci/install_stac_api.sh``), or fails where
``LULC_REQUIRE_STAC_API=1`` says the server must be there (CI after installing it).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pystac
import pytest
import yaml

from lulc.aoi import AOI
from lulc.download import sensor_assets
from lulc.search import SearchError, save_item_collection, search_items

REPO = Path(__file__).resolve().parents[1]
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
POSTGIS_CONTROL = Path("/usr/share/postgresql/15/extension/postgis.control")
INSTALL_HINT = "PostgreSQL/PostGIS or stac-fastapi-pgstac not installed: run .ci/install_stac_api.sh"

# Two tiny demo regions in different UTM zones (as in tests/config/tiny.yaml).
REGIONS = {
    "tiny_iowa": {"center": [-93.45, 42.05], "size_px": 64},
    "tiny_valley": {"center": [-121.05, 38.65], "size_px": 64},
}
IOWA = (-93.47, 42.035, -93.43, 42.065)
VALLEY = (-121.07, 38.635, -121.03, 38.665)
HLS = ["hls2-s30", "hls2-l30"]
IO = ["io-lulc-annual-v02"]


def server_venv() -> Path | None:
    """The stac-fastapi-pgstac virtual environment: $STAC_API_VENV, /opt/stac-api-venv or .venv-stac."""
    candidates = [os.environ.get("STAC_API_VENV"), "/opt/stac-api-venv", str(REPO / ".venv-stac")]
    for candidate in filter(None, candidates):
        venv = Path(candidate)
        if (venv / "bin" / "uvicorn").is_file() and (venv / "bin" / "pypgstac").is_file():
            return venv
    return None


def missing_parts() -> list[str]:
    missing = []
    for tool in ("initdb", "pg_ctl", "createdb"):
        if not (PG_BIN / tool).is_file():
            missing.append(str(PG_BIN / tool))
    if not POSTGIS_CONTROL.is_file():
        missing.append(f"PostGIS ({POSTGIS_CONTROL})")
    if server_venv() is None:
        missing.append("the stac-fastapi-pgstac venv ($STAC_API_VENV, /opt/stac-api-venv or .venv-stac)")
    return missing


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(command: list[str], what: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {' '.join(command)}\n{done.stdout}\n{done.stderr}")
    return done.stdout


@dataclass
class StacApi:
    url: str
    catalog: Path  # the same demo catalog, static
    timings: dict[str, float]


def _as_postgres_user() -> tuple[list[str], int | None, int | None]:
    """The command prefix that runs the database server as a non-root user (initdb refuses root)."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root without a 'postgres' user to run PostgreSQL as (initdb refuses root)")
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("running as root without runuser to start PostgreSQL as the 'postgres' user")
    return [runuser, "-u", "postgres", "--"], user.pw_uid, user.pw_gid


def _write_ndjson(catalog_path: Path, collections_file: Path, items_file: Path) -> int:
    """The demo catalog as pypgstac input: collections and items (absolute asset hrefs) as ndjson."""
    catalog = pystac.Catalog.from_file(str(catalog_path))
    count = 0
    with collections_file.open("w") as collections, items_file.open("w") as items:
        for collection in catalog.get_collections():
            document = collection.to_dict(include_self_link=False, transform_hrefs=False)
            document["links"] = []
            collections.write(json.dumps(document) + "\n")
            for item in collection.get_items():
                clone = item.clone()
                clone.make_asset_hrefs_absolute()
                document = clone.to_dict(include_self_link=False, transform_hrefs=False)
                document["links"] = []
                document["collection"] = collection.id
                items.write(json.dumps(document) + "\n")
                count += 1
    return count


def _wait_for_ping(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the STAC API server exited ({process.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_mgmt/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the STAC API at {url} did not answer /_mgmt/ping within {timeout} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def stac_api() -> Iterator[StacApi]:
    missing = missing_parts()
    if missing:
        reason = f"{INSTALL_HINT} (missing: {'; '.join(missing)})"
        if os.environ.get("LULC_REQUIRE_STAC_API") == "1":  # CI that installed the server: never skip
            pytest.fail(reason)
        pytest.skip(reason)
    venv = server_venv()
    assert venv is not None
    prefix, uid, gid = _as_postgres_user()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    # /tmp, not pytest's tmp_path: the postgres user must be able to reach the data directory
    base = Path(tempfile.mkdtemp(prefix="lulc-pgstac-"))
    data, sockets, pg_log, api_log = base / "pgdata", base / "sockets", base / "postgres.log", base / "api.log"
    sockets.mkdir()
    if uid is not None:
        for path in (base, sockets):
            os.chown(path, uid, gid or -1)
    pg_port, api_port = free_port(), free_port()
    env = {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(pg_port),
        "PGUSER": "stac",
        "PGPASSWORD": "stac",  # required by the server even with trust authentication
        "PGDATABASE": "stac",
    }
    api: subprocess.Popen[bytes] | None = None
    postgres_started = False
    no_proxy = pytest.MonkeyPatch()  # loopback traffic must not go to a configured proxy
    for variable in ("NO_PROXY", "no_proxy"):
        no_proxy.setenv(variable, "127.0.0.1,localhost")
        env[variable] = "127.0.0.1,localhost"
    try:
        run([*prefix, str(PG_BIN / "initdb"), "-D", str(data), "--auth=trust", "-U", "stac", "-E", "UTF8",
             "--no-sync"], "initdb")  # fmt: skip
        options = (
            f"-p {pg_port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off"
        )
        run([*prefix, str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(pg_log), "-w", "-t", "60",
             "start"], "pg_ctl start")  # fmt: skip
        postgres_started = True
        run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(pg_port), "-U", "stac", "stac"], "createdb", env)
        timings["postgres"] = time.perf_counter() - start
        run([str(venv / "bin" / "pypgstac"), "migrate"], "pypgstac migrate", env)
        timings["migrate"] = time.perf_counter() - start - sum(timings.values())

        from lulc.demo import generate_demo

        catalog = generate_demo(base / "demo", REGIONS, year=2023, seed=7, dates_per_sensor=4, cloudy_dates=1)
        collections_file, items_file = base / "collections.ndjson", base / "items.ndjson"
        n_items = _write_ndjson(catalog, collections_file, items_file)
        assert n_items >= 10
        pypgstac = str(venv / "bin" / "pypgstac")
        run([pypgstac, "load", "collections", str(collections_file), "--method", "upsert"], "load collections", env)
        run([pypgstac, "load", "items", str(items_file), "--method", "upsert"], "load items", env)
        timings["demo_and_load"] = time.perf_counter() - start - sum(timings.values())

        url = f"http://127.0.0.1:{api_port}"
        with api_log.open("wb") as log:
            api = subprocess.Popen(
                [str(venv / "bin" / "uvicorn"), "stac_fastapi.pgstac.app:create_app", "--factory",
                 "--host", "127.0.0.1", "--port", str(api_port)],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        _wait_for_ping(url, api, api_log)
        timings["api"] = time.perf_counter() - start - sum(timings.values())
        timings["total_start"] = time.perf_counter() - start
        print(f"\nSTAC API {url} (pgstac on port {pg_port}) ready: " + json.dumps(timings))
        yield StacApi(url=url, catalog=catalog, timings=timings)
    finally:
        if api is not None:
            api.terminate()
            try:
                api.wait(timeout=15)
            except subprocess.TimeoutExpired:
                api.kill()
                api.wait(timeout=15)
        if postgres_started:
            subprocess.run([*prefix, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                           capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)
        no_proxy.undo()


# ----------------------------------------------------------------------------------- queries


def year(bbox: tuple[float, float, float, float], name: str, which: int = 2023) -> AOI:
    return AOI(name, bbox, date(which, 1, 1), date(which, 12, 31))


CASES: dict[str, tuple[AOI, dict[str, Any]]] = {
    "iowa_hls_cloud80": (year(IOWA, "iowa"), {"collections": HLS, "max_cloud_cover": 80}),
    "iowa_hls_cloud5": (year(IOWA, "iowa"), {"collections": HLS, "max_cloud_cover": 5}),
    "iowa_hls_any_cloud": (year(IOWA, "iowa"), {"collections": HLS, "max_cloud_cover": None}),
    "iowa_s30_only": (year(IOWA, "iowa"), {"collections": ["hls2-s30"], "max_cloud_cover": 80}),
    "valley_hls_summer": (
        AOI("valley", VALLEY, date(2023, 4, 1), date(2023, 9, 30)),
        {"collections": HLS, "max_cloud_cover": 80},
    ),
    "both_regions_one_bbox": (year((-122.0, 38.0, -93.0, 43.0), "west"), {"collections": HLS, "max_cloud_cover": 80}),
    "iowa_paged_by_2": (year(IOWA, "iowa"), {"collections": HLS, "max_cloud_cover": None, "page_size": 2}),
    "iowa_cloud_filter_local": (
        year(IOWA, "iowa"),
        {"collections": HLS, "max_cloud_cover": 30, "cloud_filter": "local", "page_size": 3},
    ),
    "iowa_labels_null_datetime": (year(IOWA, "iowa"), {"collections": IO}),
    "valley_labels_with_cloud_limit": (year(VALLEY, "valley"), {"collections": IO, "max_cloud_cover": None}),
    "all_collections": (year(VALLEY, "valley"), {"collections": [*HLS, *IO], "max_cloud_cover": None}),
}


def both(stac_api: StacApi, aoi: AOI, query: dict[str, Any]) -> tuple[pystac.ItemCollection, pystac.ItemCollection]:
    api = search_items(aoi, {**query, "source": stac_api.url})
    static = search_items(aoi, {**query, "source": str(stac_api.catalog)})
    return api, static


@pytest.mark.parametrize("case", list(CASES))
def test_api_and_static_catalog_return_the_same_items(stac_api: StacApi, case: str) -> None:
    aoi, query = CASES[case]
    api, static = both(stac_api, aoi, query)
    assert [i.id for i in api] == [i.id for i in static]
    assert len(api) > 0
    for from_api, from_static in zip(api, static, strict=True):
        assert from_api.collection_id == from_static.collection_id
        assert {k: a.href for k, a in from_api.assets.items()} == {k: a.href for k, a in from_static.assets.items()}
        assert from_api.properties.get("eo:cloud_cover") == from_static.properties.get("eo:cloud_cover")
        if from_api.collection_id in HLS:
            assert sensor_assets(from_api) == sensor_assets(from_static)
        else:
            assert from_api.datetime is None and from_static.datetime is None
    cloud = query.get("max_cloud_cover")
    if cloud is not None:
        assert all(i.properties["eo:cloud_cover"] <= cloud for i in api if i.collection_id in HLS)


def test_the_filters_really_narrow_the_result(stac_api: StacApi) -> None:
    """Guards against a vacuous comparison: each filter removes items on both backends."""
    iowa = year(IOWA, "iowa")
    every = both(stac_api, iowa, {"collections": HLS, "max_cloud_cover": None})[0]
    clear = both(stac_api, iowa, {"collections": HLS, "max_cloud_cover": 5})[0]
    summer = both(stac_api, AOI("iowa", IOWA, date(2023, 6, 1), date(2023, 8, 31)), {"collections": HLS})[0]
    assert len(clear) < len(every) and len(summer) < len(every)
    assert {i.id for i in clear} < {i.id for i in every}
    both_zones = both(stac_api, year((-122.0, 38.0, -93.0, 43.0), "west"), {"collections": HLS})[0]
    assert {i.id.split(".")[2] for i in both_zones} == {"T15TVG", "T10SFH"}  # two MGRS tiles, two UTM zones


@pytest.mark.parametrize(
    ("aoi", "query"),
    [
        (year(IOWA, "iowa", 2024), {"collections": IO}),  # the 2023 map ends at 2024-01-01T00:00:00Z: no overlap
        (year(IOWA, "iowa", 2022), {"collections": IO}),
        (year((10.0, 45.0, 10.1, 45.1), "alps"), {"collections": HLS}),
        (AOI("iowa", IOWA, date(2023, 1, 1), date(2023, 1, 5)), {"collections": HLS}),
    ],
    ids=["labels_2024", "labels_2022", "far_bbox", "empty_dates"],
)
def test_api_and_static_catalog_agree_on_empty_results(stac_api: StacApi, aoi: AOI, query: dict[str, Any]) -> None:
    for source in (stac_api.url, str(stac_api.catalog)):
        with pytest.raises(SearchError, match="no STAC items"):
            search_items(aoi, {**query, "source": source})


def test_api_max_items_guard(stac_api: StacApi) -> None:
    with pytest.raises(SearchError, match="more than max_items=2"):
        search_items(year(IOWA, "iowa"), {"collections": HLS, "source": stac_api.url, "max_items": 2, "page_size": 1})


@pytest.mark.slow
def test_search_stage_through_snakemake_then_no_rerun(stac_api: StacApi, tmp_path: Path) -> None:
    """The real `search` rule against the API writes the same ItemCollections as the static catalog gives;
    afterwards nothing is pending, so a rerun makes no network call."""
    config = yaml.safe_load((REPO / "tests" / "config" / "tiny.yaml").read_text())
    for kind in ("imagery", "labels"):
        config["stac"][kind]["source"] = stac_api.url
        config["stac"][kind]["page_size"] = 2
    configfile = tmp_path / "api.yaml"
    configfile.write_text(yaml.safe_dump(config))
    snakemake = Path(sys.executable).parent / "snakemake"
    base = [str(snakemake), "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path)]
    base += ["--configfile", str(configfile), "--cores", "1"]
    targets = [f"results/search/{aoi}/{kind}.json" for aoi in config["aois"] for kind in ("imagery", "labels")]
    done = subprocess.run([*base, *targets], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rule demo" not in done.stdout + done.stderr  # the API source needs no demo
    for aoi_name, aoi_cfg in config["aois"].items():
        aoi = AOI.from_config(aoi_name, aoi_cfg)
        for kind in ("imagery", "labels"):
            written = json.loads((tmp_path / f"results/search/{aoi_name}/{kind}.json").read_text())
            query = {**config["stac"][kind], "source": str(stac_api.catalog)}
            reference = tmp_path / "reference" / f"{aoi_name}_{kind}.json"
            save_item_collection(search_items(aoi, query), reference)
            expected = json.loads(reference.read_text())
            assert [f["id"] for f in written["features"]] == [f["id"] for f in expected["features"]]
            assert [f["assets"] for f in written["features"]] == [f["assets"] for f in expected["features"]]
    dry = subprocess.run([*base, "-n", *targets], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr
