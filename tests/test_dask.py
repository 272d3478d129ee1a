"""Dask: `supervise --executor dask` on a distributed.Client, with a real `dask scheduler` and two
`dask worker` processes on 127.0.0.1, started here and stopped at teardown.

Needs the `dask` extra (dask[distributed], whose `dask` command sits beside this Python).
"""

import json
import subprocess
import time

import numpy as np
import pytest
from conftest import PROCESS_TIMEOUT, assert_each_job_done_once, engine_missing, venv_tool, wait

STEP = 0.02


@pytest.fixture
def dask_scheduler(project, tmp_path):
    """The address of a Dask scheduler with two single-threaded workers that can import the test kernels."""
    try:
        import distributed
    except ImportError as error:
        engine_missing(f"distributed does not import ({error}): pip install 'jobrunner[dask]'")
    dask = venv_tool("dask")
    if not dask.exists():
        engine_missing(f"no dask command at {dask}: pip install 'jobrunner[dask]'")
    address_file = tmp_path / "scheduler.json"
    common = dict(cwd=tmp_path, env=project.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    processes = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0",
             "--scheduler-file", address_file], **common,
        )
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while not address_file.exists() or not address_file.read_text().strip():
            assert processes[0].poll() is None, "dask scheduler exited"
            assert time.monotonic() < deadline, "dask scheduler did not start"
            time.sleep(0.1)
        address = json.loads(address_file.read_text())["address"]
        for n in range(2):
            processes.append(
                subprocess.Popen(
                    [dask, "worker", address, "--nthreads", "1", "--nworkers", "1", "--no-nanny",
                     "--local-directory", tmp_path / f"worker {n}", "--host", "127.0.0.1",
                     "--dashboard-address", "127.0.0.1:0"], **common,
                )
            )  # fmt: skip
        with distributed.Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=PROCESS_TIMEOUT)
        yield address
    finally:
        # Workers first, while their scheduler is there to say goodbye to; then the scheduler.
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.slow
def test_dask_supervise_matches_serial(project, serial_reference, dask_scheduler):
    """Every tile waits in flight until both Dask workers hold one: the tiles are spread over them."""
    project.gated_plan("--step", STEP, "--tiles", "3x4")
    supervisor = project.start("supervise", "--executor", "dask", "--scheduler", dask_scheduler)
    project.wait_for_claims(
        lambda claims: len({c["pid"] for c in claims.values() if c["via"] == "dask"}) == 2, "both Dask workers claim"
    )
    project.open_gate()
    code, stdout, stderr = wait(supervisor)
    assert code == 0, stderr
    assert "supervisor with dask workers: computed 12 tiles" in stdout, stdout
    assert assert_each_job_done_once(project, 12) == {"dask"}
    pids = {r["attempts"][0]["pid"] for r in project.records().values()}
    assert len(pids) == 2, "both Dask workers should have computed tiles"
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))
    assert project.leftovers() == []


@pytest.mark.slow
def test_dask_and_a_hand_started_worker_drain_one_spool_once(project, serial_reference, dask_scheduler):
    project.gated_plan("--step", STEP, "--tiles", "4x5")  # tiles wait until both sides hold one
    by_hand = project.start("work")
    project.wait_for_claim()
    project.env["DASK_SCHEDULER_ADDRESS"] = dask_scheduler  # the option's environment variable
    supervisor = project.start("supervise", "--executor", "dask")
    project.wait_for_claims(lambda claims: any(c["via"] == "dask" for c in claims.values()), "a Dask worker claims")
    project.open_gate()
    code, _, stderr = wait(supervisor)
    assert code == 0, stderr
    code, _, stderr = wait(by_hand)
    assert code == 0, stderr
    assert assert_each_job_done_once(project, 20) == {"dask", "work"}
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--executor", "dask"], "--executor dask needs the scheduler's address: --scheduler tcp://HOST:8786"),
        (["--executor", "spark"], "--executor takes one of process, mpi, dask, not 'spark'"),
        (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler is for --executor dask"),
        (["--executor", "mpi", "--job-timeout", "5"], "--job-timeout is for --executor process"),
    ],
)
def test_executor_mistakes_are_one_line_errors(project, args, message):
    project.run("plan", "--step", STEP, "--tiles", "1x2", "--kernel", "numpy")
    env = {k: v for k, v in project.env.items() if k != "DASK_SCHEDULER_ADDRESS"}
    project.env = env
    result = project.run("supervise", *args, check=False)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
