"""MPI: `supervise --executor mpi` on mpi4py's MPIPoolExecutor, under a real `mpiexec -n 4` (3 workers).

Needs the `mpi` extra (mpi4py and the mpich wheel, whose mpiexec sits beside this Python).
"""

import subprocess

import numpy as np
import pytest
from conftest import PROCESS_TIMEOUT, assert_each_job_done_once, engine_missing, venv_tool, wait, with_venv_on_path

STEP = 0.02


@pytest.fixture
def mpiexec():
    try:
        import mpi4py.futures  # noqa: F401
    except ImportError as error:
        engine_missing(f"mpi4py does not import ({error}): pip install 'jobrunner[mpi]'")
    tool = venv_tool("mpiexec")
    if not tool.exists():
        engine_missing(f"no mpiexec at {tool}: pip install 'jobrunner[mpi]' (the mpich wheel brings it)")
    return tool


def mpi_supervise(project, mpiexec, ranks: int = 4) -> subprocess.Popen:
    command = [str(mpiexec), "-n", str(ranks), *project.command()[:1], "-m", "mpi4py.futures", "-m", "jobrunner",
               "supervise", "--executor", "mpi"]  # fmt: skip
    return subprocess.Popen(
        command, cwd=project.root, env=with_venv_on_path(project.env), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.slow
def test_mpi_supervise_matches_serial(project, serial_reference, mpiexec):
    project.run("plan", "--step", STEP, "--tiles", "3x4", "--kernel", "loop")
    code, stdout, stderr = wait(mpi_supervise(project, mpiexec), timeout=PROCESS_TIMEOUT)
    assert code == 0, stderr
    assert "supervisor with mpi workers: computed 12 tiles" in stdout and "spool 12/12 done" in stdout
    assert assert_each_job_done_once(project, 12) == {"mpi"}
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))
    assert project.leftovers() == []


@pytest.mark.slow
def test_mpi_and_a_hand_started_worker_drain_one_spool_once(project, serial_reference, mpiexec):
    """Every tile waits in flight until the hand-started worker and two MPI ranks each hold one."""
    project.gated_plan("--step", STEP, "--tiles", "4x5")
    by_hand = project.start("work")
    project.wait_for_claim()
    supervisor = mpi_supervise(project, mpiexec)
    project.wait_for_claims(
        lambda claims: len({c["pid"] for c in claims.values() if c["via"] == "mpi"}) >= 2, "two MPI ranks claim"
    )
    project.open_gate()
    code, _, stderr = wait(supervisor, timeout=PROCESS_TIMEOUT)
    assert code == 0, stderr
    code, _, stderr = wait(by_hand)
    assert code == 0, stderr
    assert assert_each_job_done_once(project, 20) == {"mpi", "work"}
    pids = {r["attempts"][0]["pid"] for r in project.records().values() if r["attempts"][0]["via"] == "mpi"}
    assert len(pids) >= 2, "the tiles should be spread over the MPI ranks"
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))


def test_mpi_refuses_workers(project):
    project.run("plan", "--step", STEP, "--tiles", "1x2", "--kernel", "numpy")
    result = project.run("supervise", "--executor", "mpi", "--workers", "2", check=False)
    assert result.returncode == 1 and "--workers is for --executor process" in result.stderr
    assert "Traceback" not in result.stderr
