"""`jobrunner scale` on a tiny grid: the CSV, the figure and the stopping rule; the baselines and flags."""

import csv
import inspect

import pytest

from jobrunner import JobRunnerError
from jobrunner.cpus import CpuCount, usable_cpus
from jobrunner.figures import save_scale_figure
from jobrunner.grid import Grid
from jobrunner.plan import Plan
from jobrunner.scaling import (
    ABOVE_CPUS,
    ABOVE_N,
    CSV_COLUMNS,
    DEFAULT_STEP,
    ScaleRow,
    ScaleStudy,
    TimedRun,
    auto_tiling,
    default_workers,
    memory_verdict,
    parse_bytes,
    parse_workers,
    rows_that_fit,
    stop_at,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_a_short_study_writes_its_csv_and_figure_and_stops_at_the_memory_limit(project):
    # ~3 MiB per pool process is measured: 64 processes cannot fit in 40 MiB, 1, 2 and 3 can
    result = project.run(
        "scale",
        "--step",
        "0.05",
        "--workers",
        "1,2,3,64,128",
        "--repeat",
        "2",
        "--kernel",
        "numpy",
        "--memory-limit",
        "40M",
    )
    rows = list(csv.DictReader((project.outputs / "scale.csv").open()))
    assert tuple(rows[0]) == CSV_COLUMNS
    timed = [row for row in rows if row["outcome"] == "ok"]
    assert [int(row["workers"]) for row in timed] == [1, 2, 3]
    cpus = usable_cpus()
    for row in timed:
        workers, serial, speedup = int(row["workers"]), float(row["serial_s"]), float(row["speedup"])
        assert row["runs"] == "2" and int(row["cpus"]) == cpus.count
        assert float(row["min_s"]) <= float(row["median_s"]) <= float(row["max_s"])
        assert float(row["serial_min_s"]) <= serial <= float(row["serial_max_s"])
        # the baselines come from the serial runs, never from jobrunner's own one-worker run
        assert float(row["ideal_speedup"]) == min(workers, cpus.count)
        assert float(row["ideal_s"]) == pytest.approx(serial / min(workers, cpus.count), rel=1e-3)
        assert speedup == pytest.approx(serial / float(row["median_s"]), rel=1e-3)
        assert float(row["efficiency"]) == pytest.approx(speedup / workers, rel=1e-3)
        assert float(row["median_tile_s"]) > 0  # read from each run's records
        flags = set(filter(None, row["flags"].split(";")))
        assert flags == {flag for flag, limit in ((ABOVE_N, workers), (ABOVE_CPUS, cpus.count)) if speedup > limit}
    stop = rows[-1]
    assert stop["outcome"] == "stopped"
    assert stop["note"].startswith("stopped before 64 workers: would need ~") and "of 40.0 MiB free" in stop["note"]
    figure = project.outputs / "scale.png"
    assert figure.read_bytes()[:8] == PNG and figure.stat().st_size > 20_000
    assert "stopped before 64 workers" in result.stderr
    assert f"CPUs: {cpus.count} logical CPU" in result.stdout and f"from {cpus.source}" in result.stdout
    # 12x12: at least as many tiles as 128 workers
    assert "overhead per tile, the run's fixed costs included (144 tiles of" in result.stdout


def _study(serial: list[float], seconds: dict[int, list[float]], cpus: int = 2) -> ScaleStudy:
    """A study with chosen timings on a 2x2-tile plan, as if measured on ``cpus`` CPUs; its 4 tiles took
    ``workers`` times 0.1 s, 0.2 s, 0.3 s and 0.4 s in each run."""
    plan = Plan(Grid.lab(step=0.5), (2, 2), "numpy")
    tiles = (0.1, 0.2, 0.3, 0.4)
    rows = [
        ScaleRow(workers, [TimedRun(time, tuple(workers * t for t in tiles)) for time in times])
        for workers, times in seconds.items()
    ]
    return ScaleStudy(plan, CpuCount(cpus, "a test"), serial, 2**20, 2**30, rows)


def test_the_ideal_is_built_from_the_serial_runs_and_capped_at_the_cpus():
    study = _study([9.0, 10.0, 14.0], {1: [12.0], 2: [6.0, 7.0, 5.5], 8: [5.0]})
    assert study.serial_seconds == 10.0  # the median of the serial runs, not the one-worker time
    assert [study.ideal_speedup(n) for n in (1, 2, 8)] == [1, 2, 2]
    assert [study.ideal_seconds(n) for n in (1, 2, 8)] == [10.0, 5.0, 5.0]
    rows = {int(row["workers"]): row for row in csv.DictReader(study.to_csv().splitlines())}
    assert rows[2]["serial_min_s"] == "9" and rows[2]["serial_max_s"] == "14" and rows[2]["serial_s"] == "10"
    assert rows[8]["ideal_s"] == "5" and rows[8]["ideal_speedup"] == "2" and rows[8]["cpus"] == "2"
    assert rows[2]["median_tile_s"] == "0.5" and rows[8]["median_tile_s"] == "2"
    assert study.tile_overhead == pytest.approx((12.0 - 10.0) / 4)  # one worker minus serial, over 4 tiles
    assert study.tile_overhead_from_records == pytest.approx((12.0 - 1.0) / 4)  # the run outside its tiles
    assert study.expected_tile_seconds(1) == study.expected_tile_seconds(2) == pytest.approx(10.0 / 4)
    assert study.expected_tile_seconds(8) == pytest.approx(10.0 / 4 * 4 / 2)  # 8 workers, but only 4 tiles


def test_a_speedup_beyond_its_ideal_is_flagged_in_the_csv_and_the_notes(tmp_path):
    # 1 worker faster than serial (above N); 4 workers 2.5x faster on 2 CPUs (above the CPUs only)
    study = _study([10.0], {1: [9.0], 2: [5.5], 4: [4.0]})
    assert [study.flags(row) for row in study.rows] == [[ABOVE_N], [], [ABOVE_CPUS]]
    flags = {row["workers"]: row["flags"] for row in csv.DictReader(study.to_csv().splitlines())}
    assert flags == {"1": ABOVE_N, "2": "", "4": ABOVE_CPUS}
    notes = "\n".join(study.notes())
    assert "flagged: 1 worker, speedup 1.11" in notes and "flagged: 4 workers, speedup 2.50" in notes
    assert "flagged: 2 workers" not in notes
    assert "below the timing noise" in notes  # the one-worker run beat serial: no overhead can be read
    assert "CPUs: 2 logical CPUs from a test, physical cores unknown" in notes
    # each tile took twice as long with 2 workers as with 1 (see _study): the CPUs would not be independent
    assert study.contention == pytest.approx(2.0)
    assert "a tile took 100% longer with 2 workers than with 1" in notes and "at most ~1.00x faster" in notes
    save_scale_figure(study, tmp_path / "scale.png")
    assert (tmp_path / "scale.png").read_bytes()[:8] == PNG


def test_the_study_plans_its_rows_up_to_the_first_count_that_would_not_fit_and_ends_at_a_failure():
    rows, reason = rows_that_fit([1, 2, 8, 64], 4, 3 * 2**20, 40 * 2**20, 1024)  # 64 x 3 MiB > 40 MiB
    assert [row.workers for row in rows] == [1, 2, 8] and reason.startswith("stopped before 64 workers: would need")
    assert [row.note for row in rows] == ["", "", "only 4 tiles: the pool is capped at that"]
    assert rows_that_fit([1, 2], 4, 3 * 2**20, 40 * 2**20, 1024)[1] is None
    study = _study([10.0], {1: [9.0], 2: [5.5], 4: [4.0]})
    stop_at(study, study.rows[1], "OSError: too many open files")  # an earlier round had timed 4 workers too
    assert [(row.workers, row.outcome) for row in study.rows] == [(1, "ok"), (2, "failed")]
    assert study.stop_reason == "stopped at 2 workers: the run failed (OSError: too many open files)"
    assert study.to_csv().splitlines()[-1].endswith(",stopped,," + study.stop_reason)


def test_the_default_workers_go_one_by_one_past_the_cpus_then_far_past_them_with_a_tile_for_each():
    from jobrunner.cli.commands import scale

    assert default_workers(2) == [1, 2, 3, 4, 8, 16, 32]  # the lab: one by one past the cores, then bigger steps
    assert default_workers(1) == [1, 2, 4, 8, 16]
    assert default_workers(64)[:10] == [*range(1, 10), 16] and default_workers(64)[-4:] == [128, 256, 512, 1024]
    assert {64, 65} <= set(default_workers(64))  # the CPUs and one past them, even when not one by one
    parameters = inspect.signature(scale).parameters
    assert parameters["step"].default == DEFAULT_STEP and parameters["workers"].default is None
    for cpus in (1, 2, 8, 64):
        rows, cols = auto_tiling(Grid.lab(step=DEFAULT_STEP).shape, default_workers(cpus))
        assert rows * cols >= max(default_workers(cpus))


def _scale_in_process(project, preamble: str, *args: str):
    import subprocess
    import sys

    command = f"import sys; sys.argv = ['jobrunner', 'scale', *{list(args)!r}]; from jobrunner.cli import main; main()"
    script = f"{preamble}; {command}"
    return subprocess.run(
        [sys.executable, "-c", script], cwd=project.root, env=project.env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_a_run_that_fails_becomes_a_row_with_its_error(project):
    """Tiles that fail in the pool processes (not in the serial baseline): the study records the run."""
    result = _scale_in_process(
        project,
        "import os; os.environ['JR_TEST_PARENT_PID'] = str(os.getpid())",
        *("--step", "0.05", "--workers", "1,2", "--repeat", "1", "--kernel", "jr_test_kernels:fails_in_workers"),
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr  # no count was timed: a failed study
    assert "error: stopped at 1 worker: the run failed" in result.stderr
    rows = list(csv.DictReader((project.outputs / "scale.csv").open()))
    assert rows[0]["workers"] == "1" and rows[0]["outcome"] == "failed"
    assert "jobs failed" in rows[0]["note"]
    assert rows[-1]["outcome"] == "stopped" and "stopped at 1 worker:" in rows[-1]["note"]


@pytest.mark.slow
def test_too_few_file_descriptors_for_the_pool_stop_the_study_before_it(project):
    """`ulimit -n 40`: 64 pool processes would run out of file descriptors, so the study stops before."""
    result = _scale_in_process(
        project,
        "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))",
        *("--step", "0.05", "--workers", "1,64", "--repeat", "1", "--kernel", "numpy", "--tiles", "8x8"),
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((project.outputs / "scale.csv").open()))
    assert rows[0]["workers"] == "1" and rows[0]["outcome"] == "ok"
    assert "stopped before 64 workers: would need ~208 open files of 40 allowed" in result.stderr
    assert rows[-1]["outcome"] == "stopped"


def test_the_stopping_rule_and_parsers():
    assert memory_verdict(8, 3 * 2**20, 2**30) is None
    assert memory_verdict(8192, 3.5 * 2**30 / 1024, 20 * 2**30) == (
        "would need ~28.0 GiB of 20.0 GiB free (3.5 MiB per worker, measured)"
    )
    assert parse_workers("1, 2,4,2") == [1, 2, 4]
    assert parse_bytes("4G") == 4 * 2**30 and parse_bytes("512MiB") == 512 * 2**20 and parse_bytes("1000") == 1000
    assert auto_tiling((2000, 2000), [1, 256]) == (16, 16) and auto_tiling((10, 2000), [100]) == (10, 10)
    for bad in ("", "0", "a,b"):
        with pytest.raises(JobRunnerError):
            parse_workers(bad)
    with pytest.raises(JobRunnerError):
        parse_bytes("lots")
