"""`jobrunner report`: the timeline of a run, from the journals and records, while it drains and after."""

import re
import signal

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
    assert re.search(r"1 attempt still running", during.stdout), during.stdout  # one worker, one tile
    supervisor = project.start("supervise", "--workers", "2")
    in_flight_in_three_processes(project)  # so that each of the three has done a tile, whoever does the rest
    for process in (supervisor, worker):
        code, _, stderr = wait(process)
        assert code == 0, stderr
    after = project.run("report").stdout
    rows = [line for line in after.splitlines() if re.match(r"\s*\S+:\d+\s", line)]
    assert len(rows) == 3, after  # the hand-started worker and two pool processes
    assert sum("supervise" in row for row in rows) == 2 and sum(" work " in row for row in rows) == 1
    assert sum(int(row.split()[-5]) for row in rows) == 6  # every tile done exactly once, by someone
    assert re.search(r"3 workers over [\d.]+ s; load imbalance \(slowest / mean busy time\) [\d.]+", after)
    assert (project.outputs / "timeline.png").stat().st_size > 10_000


@pytest.mark.slow
def test_a_worker_restarted_after_ctrl_c_is_busy_over_its_own_lifetime(project):
    """The issue's case: each process of a run interrupted and started again was busy while it lived."""
    project.gated_plan("--step", "0.05", "--tiles", "2x2", first_only=True)
    first = project.start("work")
    project.wait_for_claims(lambda claims: "tile-r000-c000" in claims, "the gated tile in flight")
    first.send_signal(signal.SIGINT)
    assert wait(first)[0] == 130
    project.open_gate()
    project.run("work", process=True)  # the restart: a new process, later, on the same spool
    after = project.run("report").stdout
    rows = {row.split()[0]: row.split() for row in after.splitlines() if re.match(r"\s*\S+:\d+\s", row)}
    attempts: dict[str, list[tuple[float, float]]] = {}  # each worker's, as its records say
    for record in project.records().values():
        for a in record["attempts"]:
            attempts.setdefault(f"{a['host']}:{a['pid']}", []).append((a["started"], a["ended"]))
    assert set(rows) == set(attempts) and len(rows) == 2, after
    every = [span for spans in attempts.values() for span in spans]
    span = max(end for _, end in every) - min(start for start, _ in every)
    for name, spans in attempts.items():
        lived = max(end for _, end in spans) - min(start for start, _ in spans)
        busy = sum(end - start for start, end in spans)  # one process, one tile at a time: no overlaps
        assert lived < span  # each lived only part of the run: a fraction of the run's span would be lower
        assert abs(int(rows[name][-1]) - 100 * busy / lived) <= 1, after
        assert float(rows[name][-3]) == pytest.approx(lived, abs=0.01)


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
    assert "running: tile-" in result.stderr and "wait for them to finish" in result.stderr
    # the other tile is pending, but the worker will take it: starting another one is no advice
    assert "`jobrunner supervise`" not in result.stderr and "`jobrunner work`" not in result.stderr
    assert "failed" not in result.stderr
    project.open_gate()
    assert wait(worker)[0] == 0
    project.run("reduce")
