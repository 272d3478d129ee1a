"""Killed workers, failing kernels, hand-edited specs, Ctrl-C: nothing lost, nothing half-written."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import PROCESS_TIMEOUT, wait

from jobrunner.writer import writer_tag

# Only the tests whose behaviour differs by lock mode (how a claim is taken, held, released, taken
# over or read) run with both; the rest are about records, specs and kernels, the same in either.
both_lock_modes = pytest.mark.both_lock_modes

STEP = 0.02


@pytest.mark.slow
@both_lock_modes
def test_sigkill_mid_tile_leaves_no_partial_and_another_worker_finishes(project, serial_reference):
    project.gated_plan("--step", STEP, "--tiles", "2x2")
    victim = project.start("work")
    job_id, attempt = project.wait_for_claim()
    assert attempt["pid"] == victim.pid
    victim.send_signal(signal.SIGKILL)
    wait(victim)
    assert project.claims()[job_id]["pid"] == victim.pid  # what the dead worker left: its claim

    # The job is claimable at once: no lock to clean up, no timeout to wait for.
    project.open_gate()
    result = project.run("work")
    assert "computed 4 tiles" in result.stdout
    record = project.records()[job_id]
    assert [a["outcome"] for a in record["attempts"]] == ["lost", "done"]
    assert record["attempts"][0]["pid"] == victim.pid
    assert project.leftovers() == []
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))


def test_a_failing_kernel_is_recorded_with_its_traceback_and_retried(project, tmp_path, serial_reference):
    tally = tmp_path / "tally"
    tally.mkdir()
    project.run(
        "plan",
        "--step",
        STEP,
        "--tiles",
        "2x2",
        "--kernel",
        "jr_test_kernels:flaky",
        "--param",
        f'tally="{tally}"',
        "--param",
        "fail_times=2",
    )
    result = project.run("work", "--retries", "2")
    assert "computed 4 tiles" in result.stdout
    for record in project.records().values():
        outcomes = [a["outcome"] for a in record["attempts"]]
        assert outcomes == ["failed", "failed", "done"]
        first = record["attempts"][0]
        assert "Traceback" in first["traceback"] and "failing on purpose" in first["traceback"]
        assert first["host"] and first["pid"] and first["attempt"] == 1
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))


@pytest.mark.slow
def test_a_kernel_out_of_retries_is_left_failed_and_the_worker_exits_nonzero(project):
    project.run("plan", "--step", STEP, "--tiles", "1x2", "--kernel", "jr_test_kernels:broken")
    result = project.run("work", "--retries", "1", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    records = project.records()
    assert all(r["state"] == "failed" and len(r["attempts"]) == 2 for r in records.values())
    status = project.run("status").stdout
    assert "failed" in status and "ZeroDivisionError: this kernel always fails" in status
    refused = project.run("reduce", check=False)
    assert refused.returncode == 1 and "--retry-failed" in refused.stderr
    again = project.run("supervise", "--workers", "2", "--retry-failed", "--retries", "0", check=False)
    assert again.returncode == 1
    assert all(len(r["attempts"]) == 3 for r in project.records().values())


def test_a_hand_edited_spec_fails_its_job_and_the_rest_finish(project):
    project.run("plan", "--step", STEP, "--tiles", "2x2", "--kernel", "numpy")
    bad = project.plan_folder / "specs" / "tile-r000-c001.json"
    bad.write_text(json.dumps({"id": "../../escape", "plan": project.plan_id, "ranges": [[0, 100], [0, 100]]}))
    truncated = project.plan_folder / "specs" / "tile-r001-c000.json"
    truncated.write_text(truncated.read_text()[:10])
    result = project.run("work", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    records = project.records()
    assert records["tile-r000-c001"]["state"] == "failed"
    assert str(bad) in records["tile-r000-c001"]["attempts"][-1]["error"]
    assert records["tile-r001-c000"]["state"] == "failed"
    assert records["tile-r000-c000"]["state"] == records["tile-r001-c001"]["state"] == "done"
    assert sorted(p.name for p in project.tiles.iterdir()) == ["tile-r000-c000.npy", "tile-r001-c001.npy"]
    assert not (project.root.parent / "escape.npy").exists()


def test_ranges_outside_the_grid_are_refused(project):
    project.run("plan", "--step", STEP, "--tiles", "1x2", "--kernel", "numpy")
    spec = project.plan_folder / "specs" / "tile-r000-c000.json"
    spec.write_text(json.dumps({"id": "tile-r000-c000", "plan": project.plan_id, "ranges": [[0, 10_000], [0, 100]]}))
    project.run("work", check=False)
    error = project.records()["tile-r000-c000"]["attempts"][-1]["error"]
    assert "range [0, 10000] of axis x" in error and "inside 0..200" in error


def test_a_kernel_returning_the_wrong_shape_fails_its_jobs(project):
    project.run("plan", "--step", STEP, "--tiles", "1x1", "--kernel", "jr_test_kernels:wrong_shape")
    assert project.run("work", "--retries", "0", check=False).returncode == 1
    assert "expected a float array of shape (200, 200)" in project.records()["tile-r000-c000"]["attempts"][0]["error"]
    assert project.leftovers() == [], "a run that ends with failures leaves no folders of partials"


def wait_with_the_gate_shut(project, process: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    """:func:`wait` for a process whose tiles wait on the shut gate.  One that does not end in time
    fails the test, after the gate is opened: its pool processes hold its output pipes, and would
    otherwise wait on the gate, and keep :func:`wait` waiting, forever."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        project.open_gate()
        wait(process)
        raise AssertionError(f"{process.args[3:]} did not end within {timeout} s of the signal") from None
    return process.returncode, stdout, stderr


@pytest.mark.slow
@both_lock_modes
@pytest.mark.parametrize("verb", ["work", "supervise"])
def test_ctrl_c_leaves_nothing_half_done(project, serial_reference, verb):
    project.gated_plan("--step", STEP, "--tiles", "2x2")  # the tiles in flight never finish by themselves
    process = project.start(verb, *(["--workers", "2"] if verb == "supervise" else []))
    project.wait_for_claim()
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    code, _, stderr = wait_with_the_gate_shut(project, process, timeout=30)
    assert code == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert time.monotonic() - started < 2.5, "interrupting should not wait for the tiles in flight"
    assert project.leftovers() == []
    records = project.claims() == {} and project.records()
    assert records, "an interrupted worker must clear its claims"
    assert any(r["attempts"][-1]["outcome"] == "interrupted" for r in records.values())
    project.open_gate()
    project.run("work")
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))


@both_lock_modes
def test_supervise_survives_a_killed_pool_process(project, serial_reference):
    project.gated_plan("--step", STEP, "--tiles", "2x3")
    supervisor = project.start("supervise", "--workers", "2")
    _, attempt = project.wait_for_claim()  # killed in the middle of its tile
    assert attempt["pid"] != supervisor.pid
    os.kill(attempt["pid"], signal.SIGKILL)
    project.open_gate()
    code, stdout, stderr = wait(supervisor, timeout=PROCESS_TIMEOUT)
    assert code == 0, stderr
    outcomes = sorted(a["outcome"] for r in project.records().values() for a in r["attempts"])
    assert outcomes.count("done") == 6 and outcomes.count("lost") + outcomes.count("interrupted") >= 1
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))
    assert project.leftovers() == []


def hold_in_another_process(lock: str, then: str = "time.sleep(600)") -> subprocess.Popen:
    """A process that takes ``lock`` (a filelock constructor call), says so, then runs ``then``."""
    code = f"import filelock, time; lock = {lock}; lock.acquire(); print('held', flush=True); {then}"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.slow
@both_lock_modes
def test_a_briefly_held_lock_does_not_strand_its_job(project):
    """Something holds a job's lock without working on it (as status or reduce may, for a moment)."""
    project.run("plan", "--step", STEP, "--tiles", "1x3", "--kernel", "numpy")
    locks = project.plan_folder / "locks"
    if project.env.get("JOBRUNNER_LOCK") == "lease":  # the mode's own lock: a live process's lease marker
        lock = f"filelock.SoftFileLease({str(locks / 'tile-r000-c001.lease')!r}, lease_duration=30)"
    else:
        lock = f"filelock.FileLock({str(locks / 'tile-r000-c001.lock')!r})"
    # Held for a moment longer than the worker needs to reach the job (start-up and two quick tiles).
    holder = hold_in_another_process(lock, then="time.sleep(1.5); lock.release()")
    result = project.run("work")
    wait(holder)
    assert "spool 3/3 done" in result.stdout
    assert all(r["state"] == "done" for r in project.records().values())


@pytest.mark.slow
def test_a_record_that_names_another_job_is_refused(project):
    project.run("plan", "--step", STEP, "--tiles", "1x2", "--kernel", "numpy")
    (project.plan_folder / "records").joinpath("tile-r000-c000.json").write_text(
        json.dumps({"id": "../../escaped", "state": "pending", "failures": 0, "lost": 0, "attempts": []})
    )
    result = project.run("work", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "1/2 done" in result.stderr and "1 failed" in result.stderr  # one unreadable record stops only its job
    status = project.run("status").stdout
    assert "tile-r000-c000.json is unreadable" in status and "delete it" in status
    assert not list(project.root.parent.rglob("escaped*"))
    for planted in ("null", '{"id": "tile-r000-c000", "state": "done", "started": "x"}', "[" * 100_000):
        (project.plan_folder / "records" / "tile-r000-c000.json").write_text(planted)
        for verb in ("status", "work", "reduce"):
            result = project.run(verb, check=False)
            assert "Traceback" not in result.stderr and "RecursionError" not in result.stderr, (verb, planted[:20])
    (project.plan_folder / "records" / "tile-r000-c000.json").unlink()  # as the message says
    project.run("work")
    project.run("reduce")


def test_partials_orphaned_by_a_kill_are_swept_when_the_spool_is_finished(project):
    project.run("plan", "--step", STEP, "--tiles", "1x2", "--kernel", "numpy")
    scratch = project.plan_folder / "records" / ".deadhost-12345.partial"  # a killed writer's own folder
    scratch.mkdir()
    (scratch / "tile-r000-c000.json").write_text("{")
    (project.plan_folder / "records" / ".tile-r000-c001.json.deadhost-12345.partial").write_text(
        "{"
    )  # beside its target
    project.run("work")
    assert project.leftovers() == []


def test_a_run_that_ends_unfinished_removes_only_empty_folders_of_writers_that_are_gone(project):
    project.run("plan", "--step", STEP, "--tiles", "1x1", "--kernel", "jr_test_kernels:wrong_shape")
    gone = subprocess.Popen(["true"])
    gone.wait()
    host = writer_tag(pid=0).rpartition("-")[0]
    tiles = project.tiles
    scratch = {who: tiles / f".{host}-{pid}.partial" for who, pid in (("gone", gone.pid), ("alive", os.getpid()))}
    scratch["elsewhere"] = tiles / ".node-b-12345.partial"  # another host's: nobody here can tell
    for folder in scratch.values():
        folder.mkdir(parents=True)
    assert project.run("work", "--retries", "0", check=False).returncode == 1  # ends with a failed job
    assert not scratch["gone"].exists()
    assert scratch["alive"].is_dir() and scratch["elsewhere"].is_dir()


@both_lock_modes
def test_status_shows_a_running_job_without_disturbing_it(project, serial_reference):
    project.gated_plan("--step", STEP, "--tiles", "1x2")
    worker = project.start("work")
    job_id, claim = project.wait_for_claim()
    status = project.run("status").stdout
    assert re.search(r"running\s+1", status) and re.search(r"pending\s+1", status)
    assert f"running {job_id} on {claim['host']} pid {worker.pid}" in status
    project.open_gate()
    code, stdout, stderr = wait(worker)
    assert code == 0 and "spool 2/2 done" in stdout, stderr
    assert re.search(r"done\s+2", project.run("status").stdout)


def test_a_lease_left_by_a_killed_process_on_this_host_is_taken_over_at_once(project):
    """A worker killed between taking its lease and naming its attempt leaves a marker and no claim."""
    project.env["JOBRUNNER_LOCK"] = "lease"
    project.run("plan", "--step", STEP, "--tiles", "1x2", "--kernel", "numpy")
    marker = project.plan_folder / "locks" / "tile-r000-c001.lease"
    holder = hold_in_another_process(f"filelock.SoftFileLease({str(marker)!r}, lease_duration=30)")
    holder.kill()  # and not reaped yet: a zombie, which filelock's own check takes for a live owner
    try:
        started = time.monotonic()
        result = project.run("work")
        assert "spool 2/2 done" in result.stdout, result.stdout
        assert time.monotonic() - started < 10  # not the whole 30 s lease, nor given up on
    finally:
        holder.wait()


@pytest.mark.slow
def test_an_empty_lease_marker_of_a_worker_killed_while_making_it_is_waited_out_not_left(project):
    """Killed between filelock creating its marker and writing its owner in it: an empty marker,
    no claim, no owner to prove dead.  The job must be taken over when the lease runs out, not
    left pending by a worker that gives up on a "brief" holder (found by the chaos test)."""
    project.env["JOBRUNNER_LOCK"] = "lease"
    project.run("plan", "--step", STEP, "--tiles", "1x2", "--kernel", "numpy")
    project.run("work", "--lease", "1", "--retries", "0", check=False)  # records the lease mode (the shortest), then
    (project.tiles / "tile-r000-c001.npy").unlink()  # one job to do again...
    (project.plan_folder / "locks" / "tile-r000-c001.lease").write_bytes(b"")  # ...under an empty marker
    started = time.time()
    result = project.run("work")
    assert "spool 2/2 done" in result.stdout, result.stdout + result.stderr
    taken_over = project.records()["tile-r000-c001"]["attempts"][-1]["started"]
    assert taken_over - started >= 1  # waited the lease out: nothing proves its holder dead sooner


def test_a_stopped_worker_is_shown_stopped_with_advice_that_reaches_it(project):
    """A hand-started worker suspended with Ctrl-Z holds its job; --job-timeout cannot reach it."""
    project.gated_plan("--step", STEP, "--tiles", "1x2")  # the gate stays shut: the worker is killed
    worker = project.start("work")
    try:
        project.wait_for_claim()
        os.kill(worker.pid, signal.SIGSTOP)
        status = project.run("status").stdout
        assert "stopped" in status and f"kill -CONT {worker.pid}" in status, status
        assert "--job-timeout" not in status
    finally:
        worker.kill()
        os.kill(worker.pid, signal.SIGCONT)
        worker.wait()


@pytest.mark.slow
@both_lock_modes
def test_a_finished_attempt_whose_claim_was_never_cleared_is_not_recorded_again_as_lost(project):
    """Killed between recording done and clearing its claim: after a requeue, no phantom lost attempt."""
    project.run("plan", "--step", STEP, "--tiles", "1x1", "--kernel", "numpy")
    project.run("work")
    attempt = project.records()["tile-r000-c000"]["attempts"][0]
    claim = {key: attempt[key] for key in ("attempt", "host", "pid", "started", "via", "plan")}
    kind = "claim" if project.env.get("JOBRUNNER_LOCK") == "lease" else "lock"  # where each mode keeps it
    (project.plan_folder / "locks" / f"tile-r000-c000.{kind}").write_text(json.dumps(claim))  # never cleared
    tile = project.tiles / "tile-r000-c000.npy"
    tile.write_bytes(tile.read_bytes()[:-8])  # a bad tile, so that reduce puts the job back
    assert project.run("reduce", check=False).returncode == 1
    project.run("work")
    outcomes = [a["outcome"] for a in project.records()["tile-r000-c000"]["attempts"]]
    assert outcomes == ["done", "done"], outcomes
