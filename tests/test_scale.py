"""`jobrunner scale` on a tiny grid: the CSV, the figure and the stopping rule."""

import csv

import pytest

from jobrunner import JobRunnerError
from jobrunner.scaling import CSV_COLUMNS, auto_tiling, memory_verdict, parse_bytes, parse_workers


@pytest.mark.slow
def test_a_short_study_writes_its_csv_and_figure_and_stops_at_the_memory_limit(project):
    # ~3 MiB per pool process is measured: 64 processes cannot fit in 40 MiB, 1 and 2 can
    result = project.run(
        "scale",
        "--step",
        "0.05",
        "--workers",
        "1,2,64,128",
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
    assert [int(row["workers"]) for row in timed] == [1, 2]
    for row in timed:
        assert row["runs"] == "2"
        assert float(row["min_s"]) <= float(row["median_s"]) <= float(row["max_s"])
        assert float(row["speedup"]) == pytest.approx(float(row["serial_s"]) / float(row["median_s"]), rel=1e-3)
        assert float(row["efficiency"]) == pytest.approx(float(row["speedup"]) / int(row["workers"]), rel=1e-3)
    stop = rows[-1]
    assert stop["outcome"] == "stopped"
    assert stop["note"].startswith("stopped before 64 workers: would need ~") and "of 40.0 MiB free" in stop["note"]
    figure = project.outputs / "scale.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 20_000
    assert "stopped before 64 workers" in result.stderr


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
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    rows = list(csv.DictReader((project.outputs / "scale.csv").open()))
    assert rows[0]["workers"] == "1" and rows[0]["outcome"] == "failed"
    assert "jobs failed" in rows[0]["note"]
    assert rows[-1]["outcome"] == "stopped" and "stopped at 1 workers" in rows[-1]["note"]


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
