"""The workflow on a real SLURM cluster through `--profile profiles/slurm`.

Needs a running SLURM cluster whose jobs run on this machine (CI: `.ci/install_slurm.sh` installs and starts a
single-node one). Where the packages are installed but the daemons are not running, the tests start them
(`.ci/install_slurm.sh start`, as root). Otherwise they are skipped with the reason, or fail where
LULC_REQUIRE_SLURM=1 (CI sets it, so that a broken cluster cannot pass as a skip).

Every run uses the repository's profile followed by profiles/slurm-ci (the first status check after 2 s, GPU
jobs sized for the 2-CPU test node, whose one GPU is a placeholder: GPU jobs run on the CPU). Checked, on the
tiny config up to one model's evaluation (data stages, the four unet training runs, their evaluation) and the
map region's mosaic of one year (one download and one predict job per processing tile): every job went
through SLURM (job-completion log, or sacct where the cluster has accounting), the GPU stages (train,
evaluate, map_predict) on the GPU partition with one GPU; the results equal those of a local run (data stages
and maps byte for byte, trained weights and evaluation metrics exactly; only timings differ); nothing is left
to do afterwards; a failing rule fails the workflow after the profile's retries, each with a longer time
limit; and a real training job of the workflow, cancelled by `scancel` once it has saved its first resume
checkpoint (as a preemption or an administrator would), is resubmitted to the GPU partition with a longer time
limit and continues from that checkpoint.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "config" / "tiny.yaml"
PROFILE = REPO / "profiles" / "slurm"
CI_PROFILE = REPO / "profiles" / "slurm-ci"
INSTALL = REPO / ".ci" / "install_slurm.sh"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"

#: Hard limit per snakemake call: the plugin can hang (e.g. on a failing status command) and ignores Ctrl-C.
#: Generous: on the 2-CPU test node the runs of this module share two CPU slots and one (placeholder) GPU, and
#: on a busy machine (another test run beside them) the SLURM run took more than 840 s.
KILL_AFTER_S = 1500
#: One model's evaluation: demo, search, download, chips (both AOIs), splits, the unet's tune job (the tiny
#: config tunes it), its four runs (fractions 1 and 0.5 x seeds 0 and 1) and one evaluate job for all of them:
#: 14 SLURM jobs
#: (`snakemake -n --configfile tests/config/tiny.yaml results/evaluate/unet/f1_s0/metrics.json`).
#: And the tiled map region of one year: its tiles checkpoint, one search, the region's frame choice, and per
#: processing tile (4) one download and one predict job, then the mosaic: 12 more jobs.
TARGETS = ("results/evaluate/unet/f1_s0/metrics.json", "results/maps/tiny_beyond/2023/unet_f1_s0/landcover.tif")
REMOTE_RULES = {"demo": 1, "search": 2, "download": 2, "chips": 2, "splits": 1, "tune": 1, "train": 4,
                "evaluate": 1, "map_tiles": 1, "map_search": 1, "map_frames": 1, "map_download": 4, "map_predict": 4,
                "map_mosaic": 1}  # fmt: skip
#: Rules the profiles send to the GPU partition with a GPU (set-resources).
GPU_RULES = {"tune", "train", "evaluate", "map_predict"}
FAILING_TARGET = "results/search/tiny_iowa/imagery.json"
#: One retry instead of the profile's two for the failing search: the plugin does not shorten its polling
#: interval after a failed job (only after a finished one), so each further failed attempt is noticed 10 s
#: later than the one before; two attempts show the growing runtime as well as three.
FAILING_RETRIES = ("--retries", "1")
#: Outputs that legitimately differ between two working directories: logs and timings.
NOT_COMPARED = ("logs", "benchmarks")
#: Training and evaluation outputs hold timings, which differ between any two runs; they are compared without
#: these fields (everything else in them must be identical). run.json: wall_time_s, train_time_s, samples_per_s;
#: curve.csv: time_s; metrics.json: seconds, and its copy of run.json under "run".
TRAIN_TIMINGS = ("wall_time_s", "train_time_s", "samples_per_s")
CURVE_TIMINGS = ("time_s",)
#: tune's trials.csv: seconds per trial.
TRIAL_TIMINGS = ("time_s",)
EVALUATE_TIMINGS = ("seconds",)

#: The preempted run: one unet training run of the tiny config with more epochs, so that it is still training
#: when its first resume checkpoint appears and the test cancels its SLURM job. patience = epochs: no early
#: stop, so the resumed run must go on to the last epoch.
PREEMPTED_RUN = "results/train/unet/f1_s0"
PREEMPTED_EPOCHS = 10

#: The module's runs start together in its first test: its limit covers them (the suite's 900 s would not).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(KILL_AFTER_S + 240)]


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
    """JobState, Partition, TimeLimit and WorkDir of finished SLURM jobs, by job id (waits for late records)."""
    deadline = time.monotonic() + wait_s
    while True:
        if source["kind"] == "jobcomp":
            records = {}
            for line in Path(source["path"]).read_text().splitlines():
                fields = dict(re.findall(r"(\w+)=(\S*)", line))
                records[fields.get("JobId", "")] = fields
        else:
            out = subprocess.run(
                [
                    "sacct",
                    "-n",
                    "-X",
                    "-P",
                    "-j",
                    ",".join(job_ids),
                    "--format=JobIDRaw,State,Partition,Timelimit,WorkDir",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            records = {}
            for line in out.splitlines():
                job_id, state, partition, limit, workdir = line.split("|")[:5]
                records[job_id] = {
                    "JobState": state.split()[0],
                    "Partition": partition,
                    "TimeLimit": limit,
                    "WorkDir": workdir,
                }
        found = {job_id: records[job_id] for job_id in job_ids if job_id in records}
        if len(found) == len(job_ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


class Run:
    """A snakemake CLI process in ``workdir`` (also its cwd, so that its SLURM jobs record it as their WorkDir).

    Each of ``watch`` is called with the run about every 0.2 s while it goes on (see :func:`wait_all`)."""

    def __init__(
        self,
        workdir: Path,
        *args: str,
        configfile: Path | None = TINY,
        slurm: bool = True,
        watch: tuple[Callable[[Run], None], ...] = (),
    ):
        self.workdir, self.slurm, self.watch = workdir, slurm, watch
        command = [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
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

    def slurm_jobs(self, output: str | None = None) -> dict[str, str]:
        """SLURM job id -> rule name, from the plugin's 'submitted with SLURM jobid N (log: ...)' lines (of the
        output so far while the run goes on)."""
        text = self.output if output is None else output
        return dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/", text))


def wait_all(*runs: Run) -> tuple[Run, ...]:
    """Wait for runs that go on at once, noting when each one ended, calling their watchers meanwhile."""
    try:
        while any(run.process.poll() is None for run in runs):
            for run in runs:
                if run.process.poll() is None and time.monotonic() - run.started > KILL_AFTER_S + 60:
                    run.process.kill()
                if run.process.poll() is None:
                    for watcher in run.watch:
                        watcher(run)
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


def preemption_config(tmp: Path) -> Path:
    """The tiny config with PREEMPTED_EPOCHS epochs for unet and no early stop."""
    config = yaml.safe_load(TINY.read_text())
    config["models"]["unet"]["epochs"] = PREEMPTED_EPOCHS
    config["train"]["patience"] = PREEMPTED_EPOCHS
    config["tune"]["enabled"] = False  # the cancelled job is the training job itself
    path = tmp / "preempted.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class GpuRequests:
    """Watcher: each SLURM job's GPU request as SLURM holds it (`scontrol show job`: TresPerJob, e.g.
    gres:gpu:1; empty without one), read as soon as the run logs the job's submission. The job-completion log
    and sacct record no GRES on this cluster (no AccountingStorageTRES), and slurmctld forgets a job MinJobAge
    after it ended, which can be before a long run ends. A job that scontrol cannot show (yet) is tried again."""

    def __init__(self) -> None:
        self.tres_per_job: dict[str, str] = {}

    def __call__(self, run: Run) -> None:
        for job_id in run.slurm_jobs(run.output_path.read_text()):
            if job_id not in self.tres_per_job:
                shown = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True)
                if shown.returncode == 0:
                    found = re.search(r"\bTresPerJob=(\S*)", shown.stdout)
                    self.tres_per_job[job_id] = found.group(1) if found else ""

    def asks_for_one_gpu(self, job_id: str) -> bool:
        return re.fullmatch(r"gres[:/]gpu:1", self.tres_per_job.get(job_id) or "") is not None


class CancelOnFirstCheckpoint:
    """Watcher of the preempted run: once the training job has written its first resume checkpoint
    (``work/last.ckpt``, saved after every epoch by lulc/train.py, atomically), scancel that SLURM job, as a
    preemption or an administrator would. Only the first attempt is cancelled."""

    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self.job_id: str | None = None
        self.scancel: subprocess.CompletedProcess[str] | None = None

    def __call__(self, run: Run) -> None:
        if self.job_id is not None or not (run.workdir / self.run_dir / "work" / "last.ckpt").is_file():
            return
        train_jobs = [job for job, rule in run.slurm_jobs(run.output_path.read_text()).items() if rule == "train"]
        if not train_jobs:  # the submission line not written yet
            return
        self.job_id = train_jobs[0]
        self.scancel = subprocess.run(["scancel", self.job_id], capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """Four runs at once (most of a SLURM run is waiting for status checks): the targets locally, the same
    through SLURM, a search that fails on every attempt and a training run whose SLURM job is cancelled."""
    local = Run(tmp_path_factory.mktemp("local"), *TARGETS, slurm=False)
    gpu_requests = GpuRequests()
    on_slurm = Run(tmp_path_factory.mktemp("slurm"), *TARGETS, watch=(gpu_requests,))
    failing_dir = tmp_path_factory.mktemp("failing")
    failing = Run(failing_dir, FAILING_TARGET, *FAILING_RETRIES, configfile=empty_catalog_config(failing_dir.parent))
    preempted_dir = tmp_path_factory.mktemp("preempted")
    canceller, preempted_gpu_requests = CancelOnFirstCheckpoint(PREEMPTED_RUN), GpuRequests()
    preempted = Run(
        preempted_dir,
        f"{PREEMPTED_RUN}/run.json",
        configfile=preemption_config(preempted_dir.parent),
        watch=(preempted_gpu_requests, canceller),
    )
    started = time.monotonic()
    wait_all(local, on_slurm, failing, preempted)
    print(
        f"\nlocal run {local.seconds:.0f} s; SLURM runs: tiny config to unet's evaluation {on_slurm.seconds:.0f} s, "
        f"failing search {failing.seconds:.0f} s, preempted training {preempted.seconds:.0f} s; "
        f"all {time.monotonic() - started:.0f} s"
    )
    assert local.returncode == 0, local.explain()
    assert on_slurm.returncode == 0, on_slurm.explain()
    on_slurm.gpu_requests = gpu_requests
    preempted.canceller, preempted.gpu_requests = canceller, preempted_gpu_requests
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
        # the profiles' set-resources: the GPU stages on the GPU partition with one GPU, the others on neither
        gpu_stage = jobs[job_id] in GPU_RULES
        assert (record["Partition"] == "gpu") == gpu_stage, (jobs[job_id], record)
        requested = run.gpu_requests.tres_per_job.get(job_id)
        assert run.gpu_requests.asks_for_one_gpu(job_id) == gpu_stage, (jobs[job_id], f"TresPerJob={requested}")


def _without(record: dict, keys: tuple[str, ...]) -> dict:
    return {key: value for key, value in record.items() if key not in keys}


def _read_json(path: Path, workdir: Path) -> dict:
    # STAC ItemCollections hold absolute hrefs into each run's own demo catalog
    return json.loads(path.read_text().replace(str(workdir), "<workdir>"))


def _same_checkpoint(a: Path, b: Path) -> bool:
    """Two trained checkpoints (lulc.models.save_trained_model) with equal weights and equal records."""
    first, second = (torch.load(path, map_location="cpu", weights_only=True) for path in (a, b))
    weights_a, weights_b = first.pop("state_dict"), second.pop("state_dict")
    return (
        first == second
        and weights_a.keys() == weights_b.keys()
        and all(weights_a[k].dtype == weights_b[k].dtype and torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    )


def _curve_without_timings(path: Path, timings: tuple[str, ...] = CURVE_TIMINGS) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return [_without(row, timings) for row in csv.DictReader(f)]


def test_outputs_identical_to_a_local_run(runs):
    """The same results through SLURM as locally: the data stages byte for byte; the trained weights, training
    records and curves and the evaluation exactly, except for their timings (TRAIN_TIMINGS, CURVE_TIMINGS,
    EVALUATE_TIMINGS: wall-clock seconds and throughput differ between any two runs)."""
    local, on_slurm = runs["local"].workdir, runs["slurm"].workdir

    def outputs(root: Path) -> set[str]:
        return {
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).parts[0] not in NOT_COMPARED
        }

    names = outputs(local / "results")
    assert names == outputs(on_slurm / "results")
    assert {
        "chips/tiny_iowa/manifest.parquet",
        "download/tiny_iowa/image.tif",
        "splits/splits.csv",
        "train/unet/f0.5_s1/best.ckpt",
        "evaluate/unet/f1_s0/metrics.json",
        "maps/tiny_beyond/2023/unet_f1_s0/landcover.tif",
        "maps/tiny_beyond/2023/unet_f1_s0/tiles/32615_r001_c001/landcover.tif",
        "maps/tiny_beyond/2023/tiles/32615_r001_c001/image.tif",
    } <= names
    assert not any("/work/" in name for name in names), "resume state left behind after training"
    different = []
    for name in sorted(names):
        a, b = local / "results" / name, on_slurm / "results" / name
        stage, leaf = Path(name).parts[0], Path(name).name
        if stage == "train" and leaf == "best.ckpt":
            same = _same_checkpoint(a, b)
        elif stage == "train" and leaf == "run.json":
            same = _without(_read_json(a, local), TRAIN_TIMINGS) == _without(_read_json(b, on_slurm), TRAIN_TIMINGS)
        elif stage == "train" and leaf == "curve.csv":
            same = _curve_without_timings(a) == _curve_without_timings(b)
        elif stage == "tune" and leaf == "trials.csv":
            same = _curve_without_timings(a, TRIAL_TIMINGS) == _curve_without_timings(b, TRIAL_TIMINGS)
        elif stage == "evaluate" and leaf == "metrics.json":
            metrics_a, metrics_b = _read_json(a, local), _read_json(b, on_slurm)
            # "run" is a copy of the evaluated run's run.json
            same = _without(metrics_a.pop("run"), TRAIN_TIMINGS) == _without(metrics_b.pop("run"), TRAIN_TIMINGS)
            same = same and _without(metrics_a, EVALUATE_TIMINGS) == _without(metrics_b, EVALUATE_TIMINGS)
        elif leaf.endswith(".json"):
            same = _read_json(a, local) == _read_json(b, on_slurm)
        else:  # data stages and the evaluation's confusion and per-class tables: byte for byte
            same = a.read_bytes() == b.read_bytes()
        if not same:
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


def test_a_cancelled_training_job_is_retried_with_more_time_and_resumes(runs):
    """The workflow's own train rule, its SLURM job cancelled once it has saved a resume checkpoint: the profile's
    retry goes to the GPU partition again with a GPU and the longer time limit of `runtime: 240 * attempt`, and
    continues from the checkpoint (run.json's resumed_from_epoch) to the last epoch."""
    run = runs["preempted"]
    canceller = run.canceller
    assert canceller.job_id is not None, f"the training job was never seen with a resume checkpoint\n{run.explain()}"
    assert canceller.scancel.returncode == 0, f"scancel {canceller.job_id}: {canceller.scancel.stderr}"
    assert run.returncode == 0, run.explain()
    jobs = run.slurm_jobs()
    train_jobs = [job_id for job_id, rule in jobs.items() if rule == "train"]
    assert len(train_jobs) == 2 and train_jobs[0] == canceller.job_id, run.explain()
    records = _job_records(runs["records"], list(jobs))
    assert set(records) == set(jobs), f"finished jobs not recorded by SLURM: {sorted(set(jobs) - set(records))}"
    assert [records[job_id]["JobState"] for job_id in train_jobs] == ["CANCELLED", "COMPLETED"], records
    assert {records[job_id]["Partition"] for job_id in train_jobs} == {"gpu"}, records
    assert all(run.gpu_requests.asks_for_one_gpu(job_id) for job_id in train_jobs), run.gpu_requests.tres_per_job
    assert [_minutes(records[job_id]["TimeLimit"]) for job_id in train_jobs] == [240, 480], records  # 240 * attempt
    others = {job_id: record for job_id, record in records.items() if job_id not in train_jobs}
    assert {record["JobState"] for record in others.values()} == {"COMPLETED"}, others

    out = run.workdir / PREEMPTED_RUN
    result = json.loads((out / "run.json").read_text())
    resumed = result["resumed_from_epoch"]
    assert isinstance(resumed, int) and not isinstance(resumed, bool) and resumed >= 0, result
    # the kill came before the end, and the retry trained on from the checkpoint to the last epoch
    assert resumed < PREEMPTED_EPOCHS - 1, result
    assert result["epochs_run"] == PREEMPTED_EPOCHS and not result["stopped_early"], result
    # the curve of the whole run, epochs before the cancellation (from the checkpoint) and after it
    assert [int(row["epoch"]) for row in _curve_without_timings(out / "curve.csv")] == list(range(PREEMPTED_EPOCHS))
    assert not (out / "work").exists(), "resume state left behind after the retry finished"
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
