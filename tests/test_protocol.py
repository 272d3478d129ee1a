"""The protocol's cases in one process (jobrunner.protocol): real files, real flocks and leases, no subprocess.

Two ``Spool`` objects opened on one spool are two claim sets: a flock is held per open file,
so one blocks the other exactly as two processes would.  A writer of another host is named in a
claim or a lease marker, which is all any worker ever knows of one.  What only real processes
show (SIGKILL at each step, signals, the engines) is in the subprocess tests.
"""

import json
import os
import time

import numpy as np
import pytest
from conftest import dead_pid

from jobrunner import Plan, Spool, attempt_job
from jobrunner.drain import wait_for_brief_holders, work
from jobrunner.executors import rotated
from jobrunner.records import Attempt
from jobrunner.vocabulary import AttemptResult
from jobrunner.writer import Writer

MODES = ("flock", "lease")


def make_spool(tmp_path, lock: str, tiles=(1, 2)) -> Spool:
    plan = Plan.create(step=0.25, tiles=tiles, kernel="numpy")
    spool, _ = Spool.create(plan, tmp_path / "jobs", tmp_path / "outputs", lock=lock)
    spool.choose_locking()
    spool.prepare_outputs()
    return spool


def second_claim_set(spool: Spool) -> Spool:
    """Another worker's view of the same spool: its own locks, its own descriptors."""
    return Spool.open(spool.paths.spool, lock=spool.locking.mode)


def outcomes(spool: Spool, job_id: str) -> list[str]:
    """How each ended attempt of the job ended: done ones from the journals, others from its record."""
    return [a.outcome for a in spool.history().get(job_id, [])]


def start_attempt(spool: Spool, claim, attempt: Attempt) -> None:
    """Step 5, as a worker does it: the claim names the attempt, and the worker's journal says it started."""
    claim.announce(attempt)
    spool.journal.started(claim.job_id, attempt)


@pytest.mark.parametrize("mode", MODES)
def test_an_attempt_publishes_the_tile_records_it_and_clears_its_claim(tmp_path, mode):
    spool = make_spool(tmp_path, mode)
    job = spool.job_ids[0]
    outcome = attempt_job(spool, job)
    assert outcome.result is AttemptResult.DONE_HERE
    assert outcomes(spool, job) == ["done"]
    assert spool.locks.read_claim(job) is None
    assert np.load(spool.paths.tile(job)).shape == spool.plan.tile_by_id()[job].shape
    assert attempt_job(spool, job).result is AttemptResult.DONE_ELSEWHERE  # step 1: a done job is skipped


@pytest.mark.parametrize("mode", MODES)
def test_a_job_held_by_another_claim_set_is_busy_and_free_again_after(tmp_path, mode):
    spool = make_spool(tmp_path, mode)
    other = second_claim_set(spool)
    job = spool.job_ids[0]
    with other.claim(job) as claim:
        assert claim is not None
        assert attempt_job(spool, job).result is AttemptResult.BUSY
    assert attempt_job(spool, job).result is AttemptResult.DONE_HERE


@pytest.mark.parametrize("mode", MODES)
def test_a_dead_writers_claim_is_recorded_lost_and_its_partials_removed(tmp_path, mode):
    spool = make_spool(tmp_path, mode)
    job = spool.job_ids[0]
    dead = Writer(Writer.this_process().host, dead_pid())
    with spool.claim(job) as claim:  # what a worker killed after step 5 and 7's write left
        claim.announce(Attempt(1, dead.host, dead.pid, 1.0, via="work", plan=spool.plan.id))
    partial = spool.scratch.partial(spool.paths.tile(job), dead)
    partial.parent.mkdir(mode=0o700)
    partial.write_bytes(b"half a tile")
    assert attempt_job(spool, job).result is AttemptResult.DONE_HERE
    assert outcomes(spool, job) == ["lost", "done"]
    assert not partial.exists()
    spool.scratch.remove_empty()
    assert not partial.parent.exists(), "a dead writer's empty scratch folder stays behind"


@pytest.mark.parametrize("mode", MODES)
def test_a_finished_attempt_whose_claim_was_never_cleared_is_not_recorded_again(tmp_path, mode):
    """Killed between step 8 and step 9: the stale claim stays harmless, through a requeue too."""
    spool = make_spool(tmp_path, mode)
    job = spool.job_ids[0]
    attempt_job(spool, job)
    finished = spool.history()[job][0]
    with spool.claim(job) as claim:
        claim.announce(finished)  # the claim step 9 would have cleared
    assert spool.locks.peek(job) is not None  # its writer (this process) is alive...
    assert [s.state for s in spool.statuses() if s.id == job] == ["done"]  # ...but a done job is done
    assert spool.requeue(job, bad_tile=True)  # as reduce puts back a damaged tile
    assert attempt_job(spool, job).result is AttemptResult.DONE_HERE
    assert outcomes(spool, job) == ["done", "done"]
    assert spool.locks.read_claim(job) is None


@pytest.mark.parametrize("mode", MODES)
def test_a_worker_that_finds_a_job_held_goes_on_half_way_through_the_rest(tmp_path, mode):
    """Its holder, going through the same jobs in the same order, takes the next one as soon as it
    is done: a worker that tried the next one too would leapfrog it, one failed lock per job."""
    spool = make_spool(tmp_path, mode, tiles=(1, 9))
    order = rotated(spool.job_ids)  # this worker's order: from a place of its own
    tried = []
    with second_claim_set(spool).claim(order[0]) as claim:
        me = Writer.this_process()  # alive: the run leaves the job to it, rather than wait for it
        claim.announce(Attempt(1, me.host, me.pid, time.time(), via="work", plan=spool.plan.id))
        work(spool, on_progress=lambda progress: progress.last and tried.append(progress.last))
    assert (tried[0].job_id, tried[0].result) == (order[0], AttemptResult.BUSY)
    assert [outcome.job_id for outcome in tried[1:9]] == order[5:] + order[1:5]  # the half skipped comes last
    assert all(outcome.result is AttemptResult.DONE_HERE for outcome in tried[1:9])


@pytest.mark.slow
def test_a_lease_held_on_another_host_is_busy_until_it_runs_out_then_taken_over(tmp_path):
    plan = Plan.create(step=0.25, tiles=(1, 2), kernel="numpy")
    spool, _ = Spool.create(plan, tmp_path / "jobs", tmp_path / "outputs", lock="lease")
    spool.lease_request = 1.0  # the shortest lease a spool may choose
    spool.choose_locking()
    spool.prepare_outputs()
    job = spool.job_ids[0]
    lease = spool.paths.lease(job)
    lease.write_text("host=another-node\npid=4242\ntoken=theirs\n")  # a marker only a heartbeat there keeps fresh
    elsewhere = Attempt(1, "another-node", 4242, 1.0, via="slurm 7_1", plan=spool.plan.id)
    spool.locks.scratch.publish_text(spool.paths.claim(job), elsewhere.claim_json().decode())
    assert spool.locks.peek(job) is not None  # status: refreshed within its lease, so running
    os.utime(lease, (1.0, 1.0))  # not refreshed for ages, by this host's clock...
    assert spool.locks.peek(job) is None  # ...which status may judge by
    assert not spool.locks.owner_is_provably_live(elsewhere)  # a worker waits rather than leave it stranded
    # A contender judges by its own clock only: the marker unchanged for a whole lease, watched from here.
    assert attempt_job(spool, job).result is AttemptResult.BUSY  # first sight: the lease starts to count
    time.sleep(1.2)
    assert attempt_job(spool, job).result is AttemptResult.DONE_HERE
    assert outcomes(spool, job) == ["lost", "done"]


@pytest.mark.slow
def test_a_lock_held_without_an_attempt_is_waited_on_not_left(tmp_path):
    """status or reduce holding a job's lock for a moment: a worker waits on the lock, then goes on."""
    spool = make_spool(tmp_path, "flock")
    other = second_claim_set(spool)
    job = spool.job_ids[0]
    with other.claim(job):
        assert attempt_job(spool, job).result is AttemptResult.BUSY
        assert wait_for_brief_holders(spool, [job], rounds_waited=0)  # worth another pass: nobody works on it
    summary = work(spool)
    assert summary.done == summary.total and summary.ok


def test_a_claim_naming_a_live_writer_is_running_and_one_naming_a_dead_one_is_pending(tmp_path):
    spool = make_spool(tmp_path, "flock")
    job = spool.job_ids[0]
    other = second_claim_set(spool)
    with other.claim(job) as claim:
        start_attempt(other, claim, Attempt(1, Writer.this_process().host, os.getpid(), 1.0, plan=spool.plan.id))
        assert {s.id: s.state for s in spool.statuses()}[job] == "running"
    with spool.claim(job) as claim:
        start_attempt(spool, claim, Attempt(1, Writer.this_process().host, dead_pid(), 1.0, plan=spool.plan.id))
    assert {s.id: s.state for s in spool.statuses()}[job] == "pending"


def test_a_claim_written_into_the_lock_file_outlives_its_release(tmp_path):
    """flock mode keeps the claim in the lock file: releasing must neither truncate nor unlink it."""
    spool = make_spool(tmp_path, "flock")
    job = spool.job_ids[0]
    attempt = Attempt(1, "node", 42, 1.0, plan=spool.plan.id)
    with spool.claim(job) as claim:
        claim.announce(attempt)
    assert json.loads(spool.paths.lock(job).read_text())["pid"] == 42
    assert spool.locks.read_claim(job).pid == 42
