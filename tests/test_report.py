"""`jobrunner report`: the timeline of a run, from the records, while it drains and after."""

import re

import pytest
from conftest import wait


def in_flight_in_three_processes(project) -> None:
    """Wait until the hand-started worker and both pool processes each hold a tile at the shut gate
    (a process holds one at a time), then let every tile finish."""
    project.wait_for_claims(lambda claims: len(claims) == 3, "a tile in flight in each of three processes")
    project.open_gate()


@pytest.mark.slow
def test_report_while_draining_and_after(project):
    project.gated_plan("--step", "0.02", "--tiles", "2x3")
    worker = project.start("work")
    project.wait_for_claim()
    during = project.run("report")
    assert "attempts still running" in during.stdout
    supervisor = project.start("supervise", "--workers", "2")
    in_flight_in_three_processes(project)  # so that each of the three has done a tile, whoever does the rest
    for process in (supervisor, worker):
        code, _, stderr = wait(process)
        assert code == 0, stderr
    after = project.run("report").stdout
    rows = [line for line in after.splitlines() if re.match(r"\s*\S+:\d+\s", line)]
    assert len(rows) == 3, after  # the hand-started worker and two pool processes
    assert sum("supervise" in row for row in rows) == 2 and sum(" work " in row for row in rows) == 1
    assert sum(int(row.split()[-4]) for row in rows) == 6  # every tile done exactly once, by someone
    assert re.search(r"3 workers over [\d.]+ s; load imbalance \(slowest / mean busy time\) [\d.]+", after)
    assert (project.outputs / "timeline.png").stat().st_size > 10_000


def test_report_before_any_work_says_what_to_do(project):
    project.run("plan", "--step", "0.1", "--tiles", "2x2")
    result = project.run("report", check=False)
    assert result.returncode == 1 and "start workers first" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_status_watch_follows_a_run_to_the_end(project):
    project.gated_plan("--step", "0.02", "--tiles", "2x3")
    watcher = project.start("status", "--watch", "--interval", "0.2")
    worker = project.start("work")
    supervisor = project.start("supervise", "--workers", "2")
    in_flight_in_three_processes(project)
    assert wait(supervisor)[0] == 0
    assert wait(worker)[0] == 0
    code, stdout, stderr = wait(watcher, timeout=60)  # it stops by itself once every job is done
    assert code == 0, stderr
    assert re.search(r"done\s+6", stdout)
    assert "supervise" in stdout and "tiles/min" in stdout
    assert stdout.count("█") >= 6  # the tile map, all done
    assert (project.outputs / "tiles.png").stat().st_size > 5_000


@pytest.mark.slow
def test_reduce_while_a_tile_is_running_says_to_wait(project):
    project.gated_plan("--step", "0.02", "--tiles", "1x2")
    worker = project.start("work")
    project.wait_for_claim()
    result = project.run("reduce", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "running: tile-" in result.stderr and "wait for the running ones" in result.stderr
    assert "failed" not in result.stderr
    project.open_gate()
    assert wait(worker)[0] == 0
    project.run("reduce")
