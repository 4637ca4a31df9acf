"""The workflow on a real SLURM cluster through `--profile profiles/slurm`.

Needs a running SLURM cluster whose jobs run on this machine (CI: `.ci/install_slurm.sh` installs and starts a
single-node one). Where the packages are installed but the daemons are not running, the tests start them
(`.ci/install_slurm.sh start`, as root). Otherwise they are skipped with the reason, or fail where
LULC_REQUIRE_SLURM=1 (CI sets it, so that a broken cluster cannot pass as a skip).

Every run uses the repository's profile followed by profiles/slurm-ci (the first status check after 2 s, GPU
jobs sized for the 2-CPU test node). Checked: every job of the tiny config went through SLURM (job-completion
log, or sacct where the cluster has accounting), the outputs are byte-identical to a local run, a failing rule
fails the workflow after the profile's retries, each with a longer time limit, and a GPU job killed mid-run is
resubmitted to the GPU partition with a longer time limit and continues from the checkpoint it left.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "config" / "tiny.yaml"
PROFILE = REPO / "profiles" / "slurm"
CI_PROFILE = REPO / "profiles" / "slurm-ci"
INSTALL = REPO / ".ci" / "install_slurm.sh"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"

#: Hard limit per snakemake call: the plugin can hang (e.g. on a failing status command) and ignores Ctrl-C.
KILL_AFTER_S = 300
#: Everything up to the splits: demo, search, download, chips (both AOIs) and splits, 8 SLURM jobs.
TARGETS = ("splits",)
FAILING_TARGET = "results/search/tiny_iowa/imagery.json"
#: One retry instead of the profile's two for the failing search: the plugin does not shorten its polling
#: interval after a failed job (only after a finished one), so each further failed attempt is noticed 10 s
#: later than the one before; two attempts show the growing runtime as well as three.
FAILING_RETRIES = ("--retries", "1")
REMOTE_RULES = {"demo": 1, "search": 2, "download": 2, "chips": 2, "splits": 1}
#: Outputs that legitimately differ between two working directories: logs and timings.
NOT_COMPARED = ("logs", "benchmarks")

pytestmark = pytest.mark.slow


def _unavailable(reason: str):
    if os.environ.get("LULC_REQUIRE_SLURM"):
        pytest.fail(f"{reason} (LULC_REQUIRE_SLURM is set)")
    pytest.skip(reason)


def _cluster_up() -> bool:
    return subprocess.run(["bash", str(INSTALL), "status"], capture_output=True, timeout=60).returncode == 0


@pytest.fixture(scope="module")
def cluster():
    """A usable SLURM cluster, started here if installed but not running."""
    missing = [tool for tool in ("sinfo", "sbatch", "squeue", "scontrol") if shutil.which(tool) is None]
    if missing:
        _unavailable(f"SLURM not installed ({', '.join(missing)} not found): run .ci/install_slurm.sh as root")
    if not _cluster_up():
        if shutil.which("slurmctld") is None or os.geteuid() != 0:
            _unavailable("SLURM not running: run .ci/install_slurm.sh as root")
        started = subprocess.run(["bash", str(INSTALL), "start"], capture_output=True, text=True, timeout=180)
        if started.returncode != 0 or not _cluster_up():
            _unavailable(f"SLURM not running: .ci/install_slurm.sh start failed:\n{started.stderr[-2000:]}")
    return _job_record_source()


def _job_record_source() -> dict[str, str]:
    """Where finished jobs are recorded: the job-completion text log, or sacct where accounting is on."""
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    settings = dict(re.findall(r"^(\w+)\s*=\s*(.*?)\s*$", config, flags=re.MULTILINE))
    location = settings.get("JobCompLoc", "")
    if settings.get("JobCompType") == "jobcomp/filetxt" and os.access(location, os.R_OK):
        return {"kind": "jobcomp", "path": location}
    if subprocess.run(["sacct", "-n", "-X", "-j", "1"], capture_output=True).returncode == 0:
        return {"kind": "sacct"}
    _unavailable("this SLURM cluster records finished jobs neither in a readable jobcomp/filetxt log nor in sacct")
    raise AssertionError  # unreachable: the call above skips or fails


def _job_records(source: dict[str, str], job_ids: list[str], wait_s: float = 15.0) -> dict[str, dict[str, str]]:
    """JobState, TimeLimit and WorkDir of finished SLURM jobs, by job id (waits for late records)."""
    deadline = time.monotonic() + wait_s
    while True:
        if source["kind"] == "jobcomp":
            records = {}
            for line in Path(source["path"]).read_text().splitlines():
                fields = dict(re.findall(r"(\w+)=(\S*)", line))
                records[fields.get("JobId", "")] = fields
        else:
            out = subprocess.run(
                ["sacct", "-n", "-X", "-P", "-j", ",".join(job_ids), "--format=JobIDRaw,State,Timelimit,WorkDir"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            records = {}
            for line in out.splitlines():
                job_id, state, limit, workdir = line.split("|")[:4]
                records[job_id] = {"JobState": state.split()[0], "TimeLimit": limit, "WorkDir": workdir}
        found = {job_id: records[job_id] for job_id in job_ids if job_id in records}
        if len(found) == len(job_ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


class Run:
    """A snakemake CLI process in ``workdir`` (also its cwd, so that its SLURM jobs record it as their WorkDir)."""

    def __init__(
        self,
        workdir: Path,
        *args: str,
        configfile: Path | None = TINY,
        snakefile: Path = REPO / "Snakefile",
        slurm: bool = True,
    ):
        self.workdir, self.slurm = workdir, slurm
        command = [str(SNAKEMAKE), "--snakefile", str(snakefile), "--directory", str(workdir)]
        if configfile:
            command += ["--configfile", str(configfile)]
        if slurm:
            command = ["timeout", "-s", "KILL", str(KILL_AFTER_S), *command]
            command += ["--profile", str(PROFILE), "--profile", str(CI_PROFILE)]
        else:
            command += ["--cores", "2"]
        command += args  # last: --configfile takes several values and would swallow a target
        self.output_path = workdir.parent / f"{workdir.name}.snakemake.out"
        self.started = time.monotonic()
        with self.output_path.open("w") as out:
            self.process = subprocess.Popen(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, text=True)

    def wait(self) -> Run:
        return wait_all(self)[0]

    def explain(self) -> str:
        killed = " (killed by timeout: the SLURM plugin hung?)" if self.returncode in (-9, 137) else ""
        return f"exit {self.returncode}{killed} after {self.seconds:.0f} s\n{self.output[-8000:]}"

    def slurm_jobs(self) -> dict[str, str]:
        """SLURM job id -> rule name, from the plugin's 'submitted with SLURM jobid N (log: ...)' lines."""
        return dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/", self.output))


def wait_all(*runs: Run) -> tuple[Run, ...]:
    """Wait for runs that go on at once, noting when each one ended."""
    try:
        while any(run.process.poll() is None for run in runs):
            for run in runs:
                if run.process.poll() is None and time.monotonic() - run.started > KILL_AFTER_S + 60:
                    run.process.kill()
            time.sleep(0.2)
            for run in runs:
                if run.process.poll() is not None and not hasattr(run, "seconds"):
                    run.seconds = time.monotonic() - run.started
    finally:
        for run in runs:
            run.returncode = run.process.wait()
            run.seconds = getattr(run, "seconds", time.monotonic() - run.started)
            run.output = run.output_path.read_text()
            if run.slurm:
                _cancel_leftover_jobs(run.workdir)
    return runs


def _cancel_leftover_jobs(workdir: Path) -> None:
    """scancel this workdir's jobs that are still queued (only after a killed snakemake), by job id."""
    queue = subprocess.run(["squeue", "-h", "-o", "%i|%Z"], capture_output=True, text=True).stdout
    ids = [line.split("|")[0] for line in queue.splitlines() if line.split("|")[-1] == str(workdir)]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True)


def empty_catalog_config(tmp: Path) -> Path:
    """The tiny config with both STAC queries on a static catalog that holds no items: the search of
    every AOI fails (no upstream job, so the failure comes at once)."""
    catalog = tmp / "empty-catalog" / "catalog.json"
    catalog.parent.mkdir(parents=True)
    catalog.write_text(
        json.dumps(
            {
                "type": "Catalog",
                "id": "empty",
                "stac_version": "1.0.0",
                "description": "a STAC catalog without items",
                "links": [],
            }
        )
    )
    config = yaml.safe_load(TINY.read_text())
    for query in config["stac"].values():
        query["source"] = str(catalog)
    path = tmp / "empty-catalog.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


#: A stand-in for the training rule (being written) with the contract the profile relies on for resuming after
#: preemption: the resume checkpoint lives outside the rule's declared outputs (Snakemake deletes those before
#: every attempt), and a rerun continues from it. The first attempt saves a checkpoint and is then killed
#: (scancel, as a preemption or an administrator would); the retry finds the checkpoint.
PREEMPTED_TRAIN_SNAKEFILE = """
rule train:
    output:
        "results/train/run.json",
    log:
        "results/logs/train.log",
    params:
        resume="results/train/resume/last.ckpt",
    shell:
        \"\"\"
        mkdir -p results/train/resume
        if [ -f {params.resume} ]; then
            printf '{{"resumed_from": %s, "gpus": "%s", "threads": {threads}}}' \\
                "$(cat {params.resume})" "${{CUDA_VISIBLE_DEVICES:-}}" > {output}
        else
            echo 5 > {params.resume}
            scancel "$SLURM_JOB_ID"
            sleep 120
        fi
        \"\"\"
"""


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """Four runs at once (most of a SLURM run is waiting for status checks): the targets locally, the same
    through SLURM, a search that fails on every attempt and a GPU job killed on its first attempt."""
    local = Run(tmp_path_factory.mktemp("local"), *TARGETS, slurm=False)
    on_slurm = Run(tmp_path_factory.mktemp("slurm"), *TARGETS)
    failing_dir = tmp_path_factory.mktemp("failing")
    failing = Run(failing_dir, FAILING_TARGET, *FAILING_RETRIES, configfile=empty_catalog_config(failing_dir.parent))
    preempted_dir = tmp_path_factory.mktemp("preempted")
    snakefile = preempted_dir.parent / "preempted.smk"
    snakefile.write_text(PREEMPTED_TRAIN_SNAKEFILE)
    preempted = Run(preempted_dir, "results/train/run.json", configfile=None, snakefile=snakefile)
    wait_all(local, on_slurm, failing, preempted)
    assert local.returncode == 0, local.explain()
    assert on_slurm.returncode == 0, on_slurm.explain()
    print(
        f"\nlocal run {local.seconds:.0f} s; SLURM runs: tiny config {on_slurm.seconds:.0f} s, failing search "
        f"{failing.seconds:.0f} s, preempted training {preempted.seconds:.0f} s"
    )
    return {"local": local, "slurm": on_slurm, "failing": failing, "preempted": preempted, "records": cluster}


def test_every_job_went_through_slurm(runs):
    run = runs["slurm"]
    jobs = run.slurm_jobs()
    rules = {rule: list(jobs.values()).count(rule) for rule in set(jobs.values())}
    assert rules == REMOTE_RULES, f"jobs submitted to SLURM per rule: {rules}\n{run.explain()}"
    records = _job_records(runs["records"], list(jobs))
    assert set(records) == set(jobs), f"finished jobs not recorded by SLURM: {sorted(set(jobs) - set(records))}"
    for job_id, record in records.items():
        assert record["JobState"] == "COMPLETED", (jobs[job_id], record)
        assert record["WorkDir"] == str(run.workdir), (jobs[job_id], record)


def test_outputs_identical_to_a_local_run(runs):
    local, on_slurm = runs["local"].workdir, runs["slurm"].workdir

    def outputs(root: Path) -> set[str]:
        return {
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).parts[0] not in NOT_COMPARED
        }

    names = outputs(local / "results")
    assert names == outputs(on_slurm / "results")
    assert {"chips/tiny_iowa/manifest.parquet", "download/tiny_iowa/image.tif", "splits/splits.csv"} <= names
    different = []
    for name in sorted(names):
        a, b = (local / "results" / name).read_bytes(), (on_slurm / "results" / name).read_bytes()
        if name.endswith(".json"):
            # STAC ItemCollections hold absolute hrefs into each run's own demo catalog
            a, b = a.replace(str(local).encode(), b"<workdir>"), b.replace(str(on_slurm).encode(), b"<workdir>")
        if a != b:
            different.append(name)
    assert not different, f"outputs differ between the local and the SLURM run: {different}"


def test_nothing_left_to_do_after_the_slurm_run(runs):
    run = Run(runs["slurm"].workdir, *TARGETS, "--dry-run").wait()
    assert run.returncode == 0, run.explain()
    assert "Nothing to be done" in run.output, run.explain()


def test_a_failing_rule_fails_the_workflow_after_retries_with_growing_runtime(runs):
    """A search that finds no items fails on every attempt: SLURM records each attempt as FAILED, each retry is
    resubmitted with the longer time limit of the profile's `runtime: 30 * attempt`, and snakemake exits
    non-zero."""
    run = runs["failing"]
    assert run.returncode not in (0, -9, 137), run.explain()
    jobs = run.slurm_jobs()
    attempts = int(FAILING_RETRIES[1]) + 1
    assert list(jobs.values()) == ["search"] * attempts, run.explain()

    records = _job_records(runs["records"], list(jobs))
    assert [records[job_id]["JobState"] for job_id in jobs] == ["FAILED"] * attempts, records
    limits = [_minutes(records[job_id]["TimeLimit"]) for job_id in jobs]
    assert limits == [30 * attempt for attempt in range(1, attempts + 1)], limits  # default runtime: 30 * attempt
    assert "no STAC items" in (run.workdir / "results/logs/search/tiny_iowa.log").read_text()
    assert not (run.workdir / "results/search/tiny_iowa/imagery.json").exists()
    assert "SLURM-job" in run.output and "failed" in run.output, run.explain()


def test_a_killed_gpu_job_is_retried_with_more_time_and_resumes(runs):
    run = runs["preempted"]
    assert run.returncode == 0, run.explain()
    jobs = run.slurm_jobs()
    assert list(jobs.values()) == ["train", "train"], run.explain()
    records = _job_records(runs["records"], list(jobs))
    assert [records[job_id]["JobState"] for job_id in jobs] == ["CANCELLED", "COMPLETED"], records
    assert {records[job_id]["Partition"] for job_id in jobs} == {"gpu"}, records
    assert [_minutes(records[job_id]["TimeLimit"]) for job_id in jobs] == [240, 480], records  # 240 * attempt
    result = json.loads((run.workdir / "results/train/run.json").read_text())
    assert result["resumed_from"] == 5, result
    assert result["gpus"] != "", "the retry ran without a GPU allocation (CUDA_VISIBLE_DEVICES unset)"
    assert result["threads"] == yaml.safe_load((CI_PROFILE / "config.yaml").read_text())["set-threads"]["train"]


def test_the_ci_profile_overrides_only_sizes():
    """profiles/slurm-ci replaces set-resources and set-threads of profiles/slurm as a whole: it must name the
    same rules and resources, so that what CI runs is the user's profile with smaller numbers."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    ci = yaml.safe_load((CI_PROFILE / "config.yaml").read_text())
    assert set(ci) <= {"slurm-init-seconds-before-status-checks", "set-resources", "set-threads"}
    assert {rule: set(res) for rule, res in ci["set-resources"].items()} == {
        rule: set(res) for rule, res in profile["set-resources"].items()
    }
    for rule, resources in profile["set-resources"].items():
        for key in ("slurm_partition", "gpu", "runtime"):
            assert ci["set-resources"][rule][key] == resources[key], (rule, key)
    assert set(ci["set-threads"]) == set(profile["set-threads"])
    assert profile["slurm-status-command"] == "squeue" and profile["executor"] == "slurm"


def _minutes(limit: str) -> int:
    """A SLURM time limit (minutes, or [days-]hours:minutes:seconds) in minutes."""
    if ":" not in limit:  # the jobcomp log writes plain minutes
        return int(limit)
    days, _, clock = limit.rpartition("-")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return (int(days or 0) * 24 + hours) * 60 + minutes + seconds // 60
