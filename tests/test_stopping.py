"""Stopping between tiles: `jobrunner drain` / `resume`, `work --max-time`, and SIGTERM's exit code."""

import re
import signal

import numpy as np
import pytest
from conftest import wait

from jobrunner.errors import JobRunnerError
from jobrunner.stopping import Deadline, next_tile_fits, parse_duration

STEP = 0.02


@pytest.mark.parametrize(
    "text, seconds",
    [("3h", 10800), ("90m", 5400), ("45s", 45), ("1h30m", 5400), ("01:00:00", 3600), ("10:30", 630),
     ("2-00:00:00", 172800), ("0.5", 0.5), ("1d", 86400)],
)  # fmt: skip
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "3x", "h", "-5", "0", "1:2:3:4", "soon"])
def test_bad_durations_are_refused_with_examples(text):
    with pytest.raises(JobRunnerError, match="such as 3h, 90m, 45s or 01:00:00"):
        parse_duration(text)


def test_a_tile_is_claimed_only_if_its_median_duration_fits():
    deadline = Deadline(100.0, "--max-time")
    assert next_tile_fits(50.0, deadline, [])  # nothing to judge by yet: until the deadline itself
    assert not next_tile_fits(100.5, deadline, [])
    assert next_tile_fits(90.0, deadline, [1.0, 10.0, 30.0])
    assert not next_tile_fits(90.5, deadline, [1.0, 10.0, 30.0])


@pytest.mark.slow
def test_drain_lets_the_tile_in_flight_finish_then_resume_lets_workers_claim(project, serial_reference):
    project.gated_plan("--step", STEP, "--tiles", "2x2")
    worker = project.start("work")
    job_id, _ = project.wait_for_claim()  # its tile waits for the gate: the drain comes in the middle of it
    assert "draining" in project.run("drain").stdout
    assert "draining" in project.run("status").stdout
    project.open_gate()
    code, stdout, stderr = wait(worker)
    assert code == 0, stderr
    assert "computed 1 tile in" in stdout and "stopped claiming: the spool is being drained" in stdout
    records = project.records()
    assert list(records) == [job_id] and [a["outcome"] for a in records[job_id]["attempts"]] == ["done"]

    # While drained, new workers and supervisors claim nothing and say why.
    assert "being drained" in project.run("work").stdout
    assert "being drained" in project.run("supervise", "--workers", "2").stdout
    assert list(project.records()) == [job_id]

    assert "resumed" in project.run("resume").stdout
    assert "draining" not in project.run("status").stdout
    assert "spool 4/4 done" in project.run("supervise", "--workers", "2").stdout
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))


def test_supervise_stops_submitting_when_drained(project):
    project.gated_plan("--step", STEP, "--tiles", "3x3")
    supervisor = project.start("supervise", "--workers", "2")
    project.wait_for_claim()
    project.run("drain")  # no tile can have finished yet: each pool process holds at most one, at the gate
    project.open_gate()
    code, stdout, stderr = wait(supervisor)
    assert code == 0, stderr
    assert "stopped claiming: the spool is being drained" in stdout
    outcomes = [a["outcome"] for r in project.records().values() for a in r["attempts"]]
    assert outcomes and set(outcomes) == {"done"}, "tiles in flight finish; nothing is interrupted"
    assert len(outcomes) <= 2, f"the pool went on claiming after the drain: {len(outcomes)} tiles"


@pytest.mark.slow
def test_max_time_lets_through_only_the_tiles_that_fit(project):
    """1 s tiles and --max-time 2.5s: the first (no median yet) and the second fit; a third would end at ~3 s."""
    project.run("plan", "--step", STEP, "--tiles", "1x4", "--kernel", "jr_test_kernels:slow", "--param", "delay=1")
    result = project.run("work", "--max-time", "2.5s")
    assert "(--max-time 2.5s)" in result.stderr
    assert "computed 2 tiles" in result.stdout, result.stdout
    stopped = r"stopped claiming: the next tile \(median 1\.\d s\) would not finish before --max-time 2\.5s"
    assert re.search(stopped, result.stdout)
    assert sorted(r["state"] for r in project.records().values()) == ["done", "done"]
    # Another worker, knowing the median from the spool's records, takes none with too little time.
    assert "computed 0 tiles" in project.run("work", "--max-time", "0.5s").stdout


@pytest.mark.slow
def test_supervise_max_time_starts_no_tile_that_would_end_past_it(project):
    """2 s tiles, 2 workers, --max-time 5s: the jobs queued in the pool up front are not started late
    (two rounds fit, claimed by 3 s; a third round would start at ~4 s and end at ~6 s)."""
    project.run("plan", "--step", STEP, "--tiles", "1x8", "--kernel", "jr_test_kernels:slow", "--param", "delay=2")
    result = project.run("supervise", "--workers", "2", "--max-time", "5s")
    assert "(--max-time 5s)" in result.stderr
    assert re.search(r"stopped claiming: .*--max-time 5s", result.stdout), result.stdout
    attempts = [a for r in project.records().values() for a in r["attempts"]]
    assert attempts and {a["outcome"] for a in attempts} == {"done"}
    assert len(attempts) < 8, "every tile was started, deadline or not"
    # The run started before its first attempt did, so its deadline is at most 5 s after that attempt's start.
    deadline_at_most = min(a["started"] for a in attempts) + 5
    assert max(a["ended"] for a in attempts) <= deadline_at_most + 0.5, "a tile was started that ended past --max-time"


def test_sigterm_abandons_the_tile_cleanly_and_exits_143(project):
    project.gated_plan("--step", STEP, "--tiles", "1x2")  # the gate stays shut: the tile is in flight at SIGTERM
    worker = project.start("work")
    job_id, _ = project.wait_for_claim()
    worker.send_signal(signal.SIGTERM)
    code, _, stderr = wait(worker, timeout=30)
    assert code == 143 and "SIGTERM" in stderr and "Traceback" not in stderr
    assert project.records()[job_id]["attempts"][-1]["outcome"] == "interrupted"
    assert project.claims() == {} and project.leftovers() == []
