"""The stitched array equals `jobrunner serial` bit for bit, however the tiles were made."""

import numpy as np
import pytest
from conftest import wait

STEP = 0.02  # a 200 x 200 grid: every tiling below is quick, and one row per tile is 200 jobs


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["loop", "numpy"])
@pytest.mark.parametrize("tiles", ["1x1", "2x2", "3x5", "7x1", "200x1"])
def test_supervise_matches_serial(project, serial_reference, kernel, tiles):
    project.run("plan", "--step", STEP, "--tiles", tiles, "--kernel", kernel)
    project.run("supervise", "--workers", "2")
    project.run("reduce")
    stitched, serial = project.load("stitched.npy"), serial_reference(STEP)
    assert stitched.dtype == serial.dtype and stitched.shape == serial.shape == (200, 200)
    assert np.array_equal(stitched, serial)
    assert project.leftovers() == []


@pytest.mark.slow
def test_uneven_extent_and_sigma_match_serial(project, tmp_path):
    extent = ("-1.5", "2.25", "-0.7", "1.3")
    project.run("plan", "--step", "0.013", "--tiles", "3x4", "--kernel", "numpy", "--sigma", "0.7", "--extent", *extent)
    project.run("supervise", "--workers", "2")
    project.run("reduce")
    project.run("serial", "--step", "0.013", "--sigma", "0.7", "--extent", *extent)
    assert np.array_equal(project.load("stitched.npy"), project.load("serial.npy"))


@pytest.mark.slow
def test_hand_started_workers_and_supervise_together(project, serial_reference):
    """Three hand-started workers and a supervisor drain one spool; every job is done exactly once."""
    # Each of the five processes holds a tile at the gate before any tile finishes, so the work is
    # shared by arrangement, not by luck (quick tiles may all go to whichever process starts first).
    project.gated_plan("--step", STEP, "--tiles", "4x4")
    processes = [project.start("work") for _ in range(3)] + [project.start("supervise", "--workers", "2")]
    try:
        project.wait_for_claims(lambda claims: len({c["pid"] for c in claims.values()}) == 5, "a tile held by each")
    finally:
        project.open_gate()  # even if the wait failed: no process is left waiting at the gate
    for process in processes:
        code, _, stderr = wait(process)
        assert code == 0, stderr
    records = project.records()
    assert len(records) == 16
    for job_id, record in records.items():
        assert record["state"] == "done"
        assert [a["outcome"] for a in record["attempts"]] == ["done"], f"{job_id} ran more than once"
    pids = {record["attempts"][0]["pid"] for record in records.values()}
    assert len(pids) == 5, "the work should have been shared between processes"
    assert {record["attempts"][0]["via"].split()[0] for record in records.values()} == {"work", "supervise"}
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))
    assert project.leftovers() == []


@pytest.mark.slow
def test_a_shell_loop_of_workers(project, serial_reference):
    """The lab's Task 2: workers started by a shell script (scripts/run_workers.sh)."""
    import pathlib
    import subprocess

    script = pathlib.Path(__file__).parents[1] / "scripts" / "run_workers.sh"
    project.run("plan", "--step", STEP, "--tiles", "4x4", "--kernel", "numpy")
    env = {**project.env, "JOBRUNNER": " ".join(project.command())}
    result = subprocess.run(
        ["bash", str(script), "3"], cwd=project.root, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))
