"""Every file knows its plan: stragglers of a replaced plan are fenced off, racing plans cannot both
win, a killed replace leaves nothing to adopt, outputs belong to one spool, and edited kernel code
is seen.  Each test is one way the promise "the result is exactly the plan's, computed by the
plan's code" broke before plans had an identity; each runs real processes on real folders."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import PROCESS_TIMEOUT, Project, all_threads_stopped, wait
from test_bad_input import assert_one_line_error

from jobrunner import publish
from jobrunner.errors import JobRunnerError
from jobrunner.grid import Grid
from jobrunner.identity import code_fingerprint, new_plan_id
from jobrunner.kernels import gaussian_numpy
from jobrunner.plan import Plan
from jobrunner.publish import Manifest, recorded_outputs
from jobrunner.spool import Spool, refuse_replanning

STEP = 0.05  # an 80 x 80 grid


def expected(sigma: float = 1.0, step: float = STEP) -> np.ndarray:
    """The Gaussian over the default extent (the numpy kernel's bits equal the lab loop's: test_bitwise)."""
    x, y = Grid.lab(step=step).points()
    return gaussian_numpy(x.reshape(-1, 1), y.reshape(1, -1), sigma)


def wait_until(condition, what: str, timeout: float = PROCESS_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def assert_only_plan(project: Project, plan_id: str, foreign_pids=()) -> None:
    """Every record and attempt of the current plan is its own, none by a straggler, none failed."""
    records = project.records()
    assert records, "no records"
    for job_id, record in records.items():
        assert record["plan"] == plan_id, job_id
        assert record["state"] != "failed", (job_id, record["attempts"])
        for attempt in record["attempts"]:
            assert attempt["plan"] == plan_id and attempt["pid"] not in foreign_pids, (job_id, attempt)


def assert_replaced_line(stderr: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert lines and lines[-1].startswith("error: ") and "was replaced" in lines[-1], stderr


def gated_plan_a(project: Project) -> None:
    """Plan A: tiles that wait at the gate; sigma 2, so a leaked tile of it would show in plan B's sigma-1 result."""
    project.gated_plan("--step", STEP, "--tiles", "2x2", "--sigma", "2")


# -- 1. a plan replaced under live workers ------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.both_lock_modes
def test_a_replaced_plans_worker_mid_tile_writes_nothing_into_the_new_plan(project):
    gated_plan_a(project)
    old_plan = project.plan_id
    straggler = project.start("work")
    try:
        project.wait_for_claim()  # its tile waits at the gate
        # A new plan with another tiling: the straggler's job ids exist in it too, with other ranges.
        project.run("plan", "--step", STEP, "--tiles", "4x4", "--kernel", "numpy", "--replace")
        new_plan = project.plan_id
        assert new_plan != old_plan
    finally:
        project.open_gate()  # the straggler finishes its tile now
    code, _, stderr = wait(straggler)
    assert code == 1
    assert_replaced_line(stderr)
    project.run("supervise", "--workers", "2")
    assert_only_plan(project, new_plan, {straggler.pid})
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), expected())


@pytest.mark.slow
def test_a_straggler_waiting_on_a_briefly_held_lock_writes_nothing_into_the_new_plan(project):
    project.run("plan", "--step", STEP, "--tiles", "1x2", "--kernel", "numpy", "--sigma", "2")
    lock = project.plan_folder / "locks" / "tile-r000-c001.lock"
    holder = subprocess.Popen(  # holds one job's lock without working on it, as status may for a moment
        [sys.executable, "-c", f"import filelock, sys; l = filelock.FileLock({str(lock)!r}); l.acquire(); "
         "print('held', flush=True); sys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    straggler = project.start("work")
    wait_until(lambda: project.records().get("tile-r000-c000", {}).get("state") == "done", "the first tile")
    time.sleep(0.3)  # it is waiting on the held lock now (wait_for_brief_holders)
    assert straggler.poll() is None
    project.run("plan", "--step", STEP, "--tiles", "1x2", "--kernel", "numpy", "--replace")
    new_plan = project.plan_id
    holder.communicate("release\n", timeout=PROCESS_TIMEOUT)
    code, _, stderr = wait(straggler)
    assert code == 1
    assert_replaced_line(stderr)
    assert project.records() == {}  # the straggler recorded nothing in the new plan
    project.run("work")
    assert_only_plan(project, new_plan, {straggler.pid})
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), expected())


@pytest.mark.slow
def test_a_straggler_in_its_own_pid_namespace_writes_nothing_into_the_new_plan(project):
    """A worker in a container: same host name, but its pid means nothing on this host."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("a pid namespace needs root and unshare(1)")
    gated_plan_a(project)
    straggler = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", *project.command("work")],
        cwd=project.root, env=project.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _, claim = project.wait_for_claim()  # its tile waits at the gate
        assert claim["pid"] != straggler.pid  # it is a small number inside its namespace
        project.run("plan", "--step", STEP, "--tiles", "2x2", "--kernel", "numpy", "--replace")
        project.run("supervise", "--workers", "2")  # while the straggler still computes its tile
    finally:
        project.open_gate()
    code, _, stderr = wait(straggler)
    assert code == 1
    assert_replaced_line(stderr)
    assert_only_plan(project, project.plan_id)
    assert all(a["host"] == claim["host"] and a["via"].startswith("supervise") for r in project.records().values()
               for a in r["attempts"])  # fmt: skip
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), expected())


@pytest.mark.slow
def test_the_readmes_start_again_under_a_live_worker(project):
    """`rm -rf jobs/* outputs/*` and a new plan, while a worker of the old plan is mid-tile."""
    gated_plan_a(project)
    straggler = project.start("work")
    try:
        project.wait_for_claim()  # its tile waits at the gate
        for folder in (project.spool, project.outputs):
            for child in folder.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        project.run("plan", "--step", STEP, "--tiles", "2x2", "--kernel", "numpy")
    finally:
        project.open_gate()
    code, _, stderr = wait(straggler)
    assert code == 1
    assert_replaced_line(stderr)
    project.run("work")
    assert_only_plan(project, project.plan_id, {straggler.pid})
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), expected())


# -- 2. two plans racing into one empty spool -------------------------------------------------------
@pytest.mark.slow
def test_two_plans_racing_into_an_empty_spool_cannot_both_succeed(project):
    plans = project.spool / "plans"
    # The first is stopped while it writes its 2,500 jobs into the empty spool; the second plans meanwhile.
    first = project.start("plan", "--step", 0.005, "--tiles", "50x50", "--kernel", "numpy", "--sigma", "1")
    try:
        wait_until(lambda: plans.exists() and any(p.name.endswith(".partial") for p in plans.iterdir()), "its folder")
        first.send_signal(signal.SIGSTOP)
        wait_until(lambda: all_threads_stopped(first.pid), "the first plan to stop")
        assert not (project.spool / "plan.json").exists(), "the first plan was published before it stopped"
        second = project.start("plan", "--step", STEP, "--tiles", "2x2", "--kernel", "numpy", "--sigma", "2")
        # A worker started as soon as a plan appears, as a Slurm array queued beforehand would be.
        wait_until(lambda: (project.spool / "plan.json").exists(), "a plan")
        early = project.start("work")
        won = wait(second)
    finally:
        first.send_signal(signal.SIGCONT)  # it finishes writing its folder, then tries to publish it
    lost = wait(first)
    assert (lost[0], won[0]) == (1, 0), (lost, won)
    loser = lost[2]
    assert "Traceback" not in loser
    assert "another plan was published" in loser, loser
    assert len(list((project.spool / "plans").iterdir())) == 1  # the loser removed its folder
    code, _, stderr = wait(early)
    assert code == 0, stderr
    sigma = json.loads((project.spool / "plan.json").read_text())["params"]["sigma"]
    assert sigma == 2
    assert_only_plan(project, project.plan_id)
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), expected(sigma))


# -- 3. a replace killed half-way ---------------------------------------------------------------------
@pytest.mark.slow
def test_a_replace_killed_at_any_step_leaves_nothing_to_adopt(project):
    plan_a = ["plan", "--step", 0.01, "--tiles", "40x40", "--kernel", "numpy"]  # 400 x 400, 1,600 jobs
    plan_b = [*plan_a, "--sigma", "2"]
    # The second replace is killed while it removes A's 1,600 jobs and tiles; its own plan is small, to drain.
    plan_c = ["plan", "--step", 0.01, "--tiles", "2x2", "--kernel", "numpy", "--sigma", "2"]
    project.run(*plan_a)
    project.run("supervise", "--workers", "2")
    old_plan = project.plan_id
    plans = project.spool / "plans"

    # Killed while writing the new plan's folder: the old plan stays, whole, and the new one is refused.
    replacer = project.start(*plan_b, "--replace")
    wait_until(lambda: any(p.name.endswith(".partial") for p in plans.iterdir()), "the new plan's folder")
    replacer.send_signal(signal.SIGKILL)
    wait(replacer)
    assert project.plan_id == old_plan
    assert_one_line_error(project.run(*plan_b, check=False), "already holds a different plan")
    assert sum(r["state"] == "done" for r in project.records().values()) == 1600

    # Killed once the new plan is published, while it removes the old one: nothing of it is adopted.
    replacer = project.start(*plan_c, "--replace")
    wait_until(lambda: project.plan_id != old_plan, "the new plan")
    replacer.send_signal(signal.SIGKILL)
    wait(replacer)
    new_plan = project.plan_id
    assert "nothing changed" in project.run(*plan_c).stdout  # the same plan: no --replace needed
    assert "done     0" in project.run("status").stdout  # nothing adopted from the old plan
    project.run("supervise", "--workers", "2")
    assert_only_plan(project, new_plan)
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), expected(2.0, 0.01))
    # The next plan sweeps what the killed ones left: the unpublished folder, the half-removed old plan.
    project.run(*plan_a, "--replace")
    assert [p.name for p in plans.iterdir()] == [project.plan_id]
    assert {p.name for p in (project.outputs / "tiles").iterdir()} <= {project.plan_id}


# -- 4. spools sharing an outputs folder ---------------------------------------------------------------
@pytest.mark.slow
def test_two_spools_cannot_share_an_outputs_folder(project):
    project.run("plan", "--step", STEP, "--tiles", "2x2", "--kernel", "numpy")
    project.run("supervise", "--workers", "2")
    project.run("reduce")
    before = {p: p.read_bytes() for p in project.outputs.rglob("*") if p.is_file()}
    second = project.root / "second spool"
    result = project.run("plan", "--step", STEP, "--kernel", "numpy", "--sigma", "2", "--spool", second, check=False)
    assert_one_line_error(result, "belongs to the spool", "--outputs 'second spool-outputs'")
    assert not (second / "plan.json").exists()
    # With a folder of its own it works, and replacing it leaves the first spool's results alone.
    own = ["--spool", second, "--outputs", project.root / "second outputs"]
    project.run("plan", "--step", STEP, "--kernel", "numpy", "--sigma", "2", *own)
    project.run("supervise", "--workers", "2", *own)
    project.run("plan", "--step", STEP, "--kernel", "numpy", "--sigma", "3", "--replace", *own)
    assert before == {p: p.read_bytes() for p in project.outputs.rglob("*") if p.is_file()}
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), expected())


# -- 5. reduce with a forgotten or wrong --outputs -----------------------------------------------------
@pytest.mark.slow
def test_reduce_finds_the_outputs_its_plan_records_and_never_requeues_for_a_wrong_folder(project):
    results = project.root / "results"
    project.env["JOBRUNNER_OUTPUTS"] = str(results)  # the workers' shell
    project.run("plan", "--step", STEP, "--tiles", "2x2", "--kernel", "numpy")
    project.run("supervise", "--workers", "2")
    done = project.records()
    del project.env["JOBRUNNER_OUTPUTS"]  # reduce from a shell without it
    assert_one_line_error(project.run("reduce", "--outputs", project.outputs, check=False), str(results))
    tiles = results / "tiles" / project.plan_id
    tiles.rename(results / "moved away")
    assert_one_line_error(project.run("reduce", check=False), "is missing", "nothing was requeued")
    assert project.records() == done
    (results / "moved away").rename(tiles)
    tile = tiles / "tile-r000-c000.npy"
    tile.rename(results / "the tile")
    tile.mkdir()  # something no worker writes is not a bad tile but a plant: refused, not requeued
    assert_one_line_error(project.run("reduce", check=False), "is a folder", "nothing was requeued")
    assert project.records() == done
    tile.rmdir()
    (results / "the tile").rename(tile)
    # A worker started while the tiles are away does not make an empty folder for reduce to trip on.
    tiles.rename(results / "moved away")
    assert_one_line_error(project.run("work", check=False), "is missing", "Move it back")
    assert not tiles.exists()
    (results / "moved away").rename(tiles)
    project.run("reduce")
    assert project.records() == done
    assert np.array_equal(np.load(results / "stitched.npy"), expected())
    assert json.loads((results / "stitched.json").read_text())["plan"] == project.plan_id
    # Planning again needs no --outputs either; --replace keeps the folder and drops the old plan's result.
    plan = ["plan", "--step", STEP, "--tiles", "2x2", "--kernel", "numpy"]
    assert "nothing changed" in project.run(*plan).stdout
    project.run(*plan, "--replace")
    assert (results / "owner.json").exists() and not (project.outputs / "owner.json").exists()
    assert not any((results / name).exists() for name in ("stitched.npy", "stitched.png", "stitched.json"))


# -- 6. a kernel edited after its tiles were computed ---------------------------------------------------
KERNEL_V1 = "def field(x, y):\n    return 0.0 * x + 0.0 * y + 1.0\n"
KERNEL_V2 = "def field(x, y):\n    return 1.0 * x + 2.0 * y  # fixed\n"  # another size: the .pyc is not reused


@pytest.mark.slow
def test_a_kernel_edited_after_planning_is_seen_and_replace_recomputes(project):
    kernels = project.root / "my kernels"
    kernels.mkdir()
    (kernels / "my_model.py").write_text(KERNEL_V1)
    project.env["PYTHONPATH"] = os.pathsep.join([str(kernels), project.env["PYTHONPATH"]])
    plan = ["plan", "--step", STEP, "--tiles", "2x2", "--kernel", "my_model:field"]
    project.run(*plan)
    first_code = json.loads((project.spool / "plan.json").read_text())["code"]
    project.run("supervise", "--workers", "2")
    done = project.records()
    assert {a["code"] for r in done.values() for a in r["attempts"]} == {first_code}

    (kernels / "my_model.py").write_text(KERNEL_V2)
    assert_one_line_error(project.run(*plan, check=False), "code changed", "--replace")
    for verb in ("work", "supervise"):
        assert_one_line_error(project.run(verb, check=False), "edited since", "claims nothing", "--replace")
    assert project.records() == done
    status = project.run("status").stdout
    assert project.plan_id in status and first_code in status

    project.run(*plan, "--replace")
    assert "computed 4 tiles" in project.run("supervise", "--workers", "2").stdout
    project.run("reduce")
    x, y = Grid.lab(step=STEP).points()
    assert np.array_equal(project.load("stitched.npy"), 1.0 * x.reshape(-1, 1) + 2.0 * y.reshape(1, -1))
    # --replace always recomputes, even the same plan with the same code
    again = project.plan_id
    project.run(*plan, "--replace")
    assert project.plan_id != again
    assert "computed 4 tiles" in project.run("supervise", "--workers", "2").stdout


# -- pure logic ---------------------------------------------------------------------------------------
def test_a_manifest_round_trips_and_records_outputs_relative_to_a_shared_parent(tmp_path):
    plan = Plan(Grid.lab(step=0.5), (2, 2), "numpy", id="20260101-000000-00000000", code="sha256:0")
    outputs = recorded_outputs(tmp_path / "jobs", tmp_path / "outputs")
    manifest = Manifest(plan, "20260101-000000-0000000f", outputs, "h-1", 1.0, "v")
    assert manifest.outputs == "../outputs"
    again = Manifest.from_json(manifest.to_json(), "plan.json")
    assert again == manifest and again.plan.same_computation(plan)
    assert manifest.outputs_folder(tmp_path / "jobs") == tmp_path / "outputs"
    assert recorded_outputs(Path("/jobs"), Path("/scratch/out")) == "/scratch/out"  # only / in common: absolute
    for planted in ("../../elsewhere", "x/../../y", ""):  # a plan id names folders: only ours are read
        with pytest.raises(JobRunnerError, match="malformed"):
            Manifest.from_json(manifest.to_json().replace(plan.id, planted), "plan.json")


def test_planning_again_says_what_changed(tmp_path):
    plan = Plan(Grid.lab(step=0.5), (2, 2), "numpy", code="sha256:1")
    manifest = Manifest(dataclass_replace(plan, id="p1"), "s", "../outputs")
    from jobrunner.paths import SpoolPaths

    paths = SpoolPaths(tmp_path / "jobs", tmp_path / "outputs")
    refuse_replanning(manifest, plan, paths)  # the same: fine
    with pytest.raises(JobRunnerError, match="code changed"):
        refuse_replanning(manifest, dataclass_replace(plan, code="sha256:2"), paths)
    with pytest.raises(JobRunnerError, match="different plan"):
        refuse_replanning(manifest, Plan(Grid.lab(step=0.25), (2, 2), "numpy", code="sha256:1"), paths)
    with pytest.raises(JobRunnerError, match="results in"):
        refuse_replanning(manifest, plan, SpoolPaths(tmp_path / "jobs", tmp_path / "elsewhere"))


def test_a_replace_never_swaps_against_a_plan_already_retired(tmp_path):
    """Two replaces of plan A: the slower one finds A retired (its folder gone) and must lose, not publish."""
    spool, _ = Spool.create(Plan(Grid.lab(step=0.5), (2, 2), "numpy"), tmp_path / "jobs", tmp_path / "outputs")
    a = spool.manifest
    b, _ = Spool.create(Plan(Grid.lab(step=0.25), (2, 2), "numpy"), tmp_path / "jobs", replace=True)
    late = dataclass_replace(b.manifest, plan=dataclass_replace(b.manifest.plan, id=new_plan_id()))
    late_paths = b.paths.for_plan(late.plan.id)
    with pytest.raises(JobRunnerError, match="replaced the one"):
        publish.publish(late_paths, late, a)  # it read A as current before B replaced it
    assert publish.current(b.paths).plan.id == b.plan.id and publish.is_current(b.paths)


def test_only_plan_takes_over_an_outputs_folder_and_only_from_a_spool_that_is_gone(tmp_path):
    first, _ = Spool.create(Plan(Grid.lab(step=0.5), (2, 2), "numpy"), tmp_path / "jobs", tmp_path / "outputs")
    paths = first.paths
    with pytest.raises(JobRunnerError, match="belongs to the spool"):
        publish.bind_outputs(paths, new_plan_id())  # a live spool's folder: nobody takes it
    shutil.rmtree(tmp_path / "jobs")  # the spool is gone
    with pytest.raises(JobRunnerError, match="belongs to the spool"):
        publish.bind_outputs(paths, new_plan_id(), take_over=False)  # a straggler never takes over
    publish.bind_outputs(paths, "20260101-000000-0000000a")  # `plan` does
    assert json.loads(paths.owner.read_text())["spool_id"] == "20260101-000000-0000000a"


def test_a_process_refuses_a_kernel_module_edited_after_it_imported_it(tmp_path, monkeypatch):
    """A long-lived Dask or MPI worker keeps the code it imported: a fingerprint of the file would lie."""
    module = tmp_path / "jr_edited_kernel.py"
    module.write_text(KERNEL_V1)
    monkeypatch.syspath_prepend(str(tmp_path))
    first = code_fingerprint("jr_edited_kernel:field")
    assert code_fingerprint("jr_edited_kernel:field") == first
    module.write_text(KERNEL_V2)
    with pytest.raises(JobRunnerError, match="changed on disk since this process imported it"):
        code_fingerprint("jr_edited_kernel:field")


def dataclass_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)
