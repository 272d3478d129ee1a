"""Slurm: the batch script `jobrunner slurm` writes, and a real job array on a real slurmctld/slurmd.

The array tests need a Slurm that answers `sinfo` (`bash scripts/engines.sh`, as root, starts a
one-node one here); without one they skip, and under CI they fail.
"""

import json
import re
import shlex
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import PROCESS_TIMEOUT, assert_each_job_done_once, engine_missing, wait

from jobrunner.slurm import job_end_time

STEP = 0.02

# The arrays share the one Slurm node's two CPUs: under scripts/test.sh's two test processes, one of
# them runs these tests one after another rather than two arrays queueing behind each other.
pytestmark = pytest.mark.xdist_group("slurm")


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    missing = [tool for tool in ("sinfo", "sbatch", "squeue", "scancel") if shutil.which(tool) is None]
    if missing:  # every Slurm command these tests call
        engine_missing(f"no Slurm here ({', '.join(missing)} not on PATH): run `bash scripts/engines.sh` as root")
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20).stdout
    except subprocess.TimeoutExpired:
        states = ""
    if not re.search(r"^(idle|mixed|allocated)", states, re.M):
        engine_missing(f"no Slurm node is up (sinfo says {states.strip()!r}): run `bash scripts/engines.sh` as root")


@pytest.mark.slow
def test_the_script_runs_this_python_on_this_spool_and_drains_it(project, serial_reference):
    project.run("plan", "--step", STEP, "--tiles", "2x3", "--kernel", "numpy")
    result = project.run(
        "slurm", "--array", "3", "--throttle", "2", "--time", "00:10:00", "--mem", "1G", "--partition", "debug",
        "--account", "lab", "--cpus-per-task", "1", "--extra", "#SBATCH --nice=10",
    )  # fmt: skip
    script = project.spool / "slurm" / "jobrunner.sbatch"
    assert f"submit it with: sbatch {shlex.quote(str(script))}" in result.stdout
    text = script.read_text()
    directives = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    assert directives == [
        "#SBATCH --job-name=jobrunner",
        "#SBATCH --array=0-2%2",
        "#SBATCH --output=/dev/null",
        "#SBATCH --time=00:10:00",
        "#SBATCH --mem=1G",
        "#SBATCH --partition=debug",
        "#SBATCH --account=lab",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --nice=10",
    ]
    worker = next(line for line in text.splitlines() if line.startswith("worker=("))
    # no --outputs: the worker uses the folder the plan records
    assert shlex.split(worker[len("worker=(") : -1]) == [
        sys.executable,
        "-m",
        "jobrunner",
        "work",
        "--spool",
        str(project.spool),
    ]
    log = next(line for line in text.splitlines() if "--log" in line)
    task_log = f"{project.spool}/slurm/logs/task-${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}.log"
    assert log.strip() == f'exec "${{worker[@]}}" --log "{task_log}"'  # the worker opens it, not Slurm

    assert (project.spool / "slurm" / "logs").is_dir()

    # Outside Slurm it is a plain bash script: run from elsewhere, without our variables, it drains the spool.
    env = {k: v for k, v in project.env.items() if not k.startswith(("JOBRUNNER_", "SLURM_"))}
    ran = subprocess.run(["bash", str(script)], cwd="/", env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert "spool 6/6 done" in ran.stdout
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--array", "0"], "--array takes the number of tasks"),
        (["--array", "2", "--throttle", "0"], "--throttle must be at least 1"),
        (["--array", "2", "--extra", "--nice=10"], "--extra takes one whole '#SBATCH --option' line"),
        (["--array", "2", "--time", "1 hour"], "--time '1 hour' is not a Slurm value"),
    ],
)
def test_bad_array_options_are_one_line_errors(project, args, message):
    project.run("plan", "--step", STEP, "--tiles", "1x2", "--kernel", "numpy")
    result = project.run("slurm", *args, check=False)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert not (project.spool / "slurm" / "jobrunner.sbatch").exists()


def test_submit_without_slurm_says_where_the_script_is(project, tmp_path):
    project.run("plan", "--step", STEP, "--tiles", "1x2", "--kernel", "numpy")
    project.env["PATH"] = str(tmp_path / "no commands here")
    result = project.run("slurm", "--array", "2", "--submit", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "sbatch is not on PATH" in result.stderr and "jobrunner.sbatch" in result.stderr


def test_a_worker_in_a_slurm_job_reads_its_end_time_and_outside_one_does_not():
    assert job_end_time({}) is None
    assert job_end_time({"SLURM_JOB_ID": "7", "SLURM_JOB_END_TIME": "1800000000"}).at == 1800000000.0


def squeue(job: str) -> list[str]:
    result = subprocess.run(["squeue", "-h", "-j", job, "-o", "%i %T"], capture_output=True, text=True, timeout=30)
    return result.stdout.split("\n") if result.stdout.strip() else []


def wait_for_a_claim_by(project, via: str, timeout: float = PROCESS_TIMEOUT) -> None:
    """Block until a worker whose claims say ``via...`` (e.g. ``slurm 12_1``) is computing a tile."""
    deadline = time.monotonic() + timeout
    while not any(c.get("via", "").startswith(via) for c in project.claims().values()):
        assert time.monotonic() < deadline, f"no worker {via}... claimed a tile within {timeout} s"
        time.sleep(0.05)


def wait_for_the_array(job: str, timeout: float = PROCESS_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while squeue(job):
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job])
            raise AssertionError(f"Slurm job {job} did not finish in {timeout} s")
        time.sleep(0.5)


@pytest.mark.slow
def test_a_real_array_drains_the_spool_and_survives_scancel_of_a_task(project, serial_reference, slurm_cluster):
    project.gated_plan("--step", STEP, "--tiles", "4x4")  # every tile waits in flight until the gate opens
    submitted = project.run("slurm", "--array", "2", "--time", "00:05:00", "--submit").stdout
    job = re.search(r"submitted job array (\d+) \(2 tasks\)", submitted).group(1)
    try:
        # Task 1 claims a tile: status names the array task; then scancel stops that task mid-tile.
        wait_for_a_claim_by(project, f"slurm {job}_1")
        status = project.run("status").stdout
        assert re.search(rf"running tile-r\d+-c\d+ on \S+ pid \d+ \(slurm {job}_1\)", status), status
        subprocess.run(["scancel", f"{job}_1"], check=True, timeout=30)
        # scancel returns before slurmd delivers the signal: the gate opens only once the task has
        # stopped, or a loaded machine lets the tile finish first (and the test see no interruption).
        wait_for_the_array(f"{job}_1")
        project.open_gate()
        wait_for_the_array(job)
    finally:
        subprocess.run(["scancel", job], timeout=30)

    records = project.records()
    assert len(records) == 16 and all(r["state"] == "done" for r in records.values())
    attempts = [a for r in records.values() for a in r["attempts"]]
    for record in records.values():
        assert [a["outcome"] for a in record["attempts"]].count("done") == 1
    interrupted = [a for a in attempts if a["outcome"] == "interrupted"]
    assert len(interrupted) == 1 and interrupted[0]["via"] == f"slurm {job}_1", json.dumps(attempts)
    assert {a["via"] for a in attempts if a["outcome"] == "done"} >= {f"slurm {job}_0"}

    logs = project.spool / "slurm" / "logs"
    cancelled, survivor = (logs / f"task-{job}_1.log").read_text(), (logs / f"task-{job}_0.log").read_text()
    assert "SIGTERM" in cancelled and "Traceback" not in cancelled
    assert "(the Slurm job's end)" in survivor, "a task reads its job's end time once, at start"
    assert "spool 16/16 done" in survivor
    assert project.leftovers() == []
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))


@pytest.mark.slow
def test_a_slurm_array_a_supervisor_and_a_hand_started_worker_drain_one_spool_once(
    project, serial_reference, slurm_cluster
):
    project.gated_plan("--step", STEP, "--tiles", "4x6")  # every tile waits in flight until the gate opens
    submitted = project.run("slurm", "--array", "2", "--submit").stdout
    job = re.search(r"submitted job array (\d+)", submitted).group(1)
    try:
        # Each way of running holds a tile at once before any tile can finish: none is left out by chance.
        by_hand, supervisor = project.start("work"), project.start("supervise", "--workers", "1")
        for via in (f"slurm {job}_", "work", "supervise"):
            wait_for_a_claim_by(project, via)
        project.open_gate()
        for process in (by_hand, supervisor):
            code, _, stderr = wait(process)
            assert code == 0, stderr
        wait_for_the_array(job)
    finally:
        subprocess.run(["scancel", job], timeout=30)
    vias = assert_each_job_done_once(project, 24)
    assert "work" in vias and any(v.startswith("supervise") for v in vias), vias
    assert any(v.startswith(f"slurm {job}_") for v in vias), vias
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))
