"""What the user is told to do next is true of their run: the commands it suggests carry their own
spool, work pasted into their shell, and the end of a run names what is left to do."""

import shlex
from pathlib import Path

import pytest

from jobrunner.paths import SpoolPaths

STEP = "0.1"  # a 40 x 40 grid


def suggested(text: str, verb: str) -> list[str]:
    """The words of the first `jobrunner VERB ...` the text suggests, as a shell would split them."""
    start = text.index(f"`jobrunner {verb}")
    return shlex.split(text[start + 1 : text.index("`", start + 1)])


# -- pure: the command a hint suggests -----------------------------------------------------------------


def test_a_hint_names_the_spool_only_when_it_is_not_the_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert SpoolPaths("jobs", "outputs").command("status") == "jobrunner status"
    assert (
        SpoolPaths("my jobs", "o").command("work", "--retry-failed")
        == "jobrunner work --retry-failed --spool 'my jobs'"
    )
    elsewhere = tmp_path.parent / "elsewhere"
    assert shlex.split(SpoolPaths(elsewhere, "o").command("status"))[-1] == str(elsewhere)
    monkeypatch.chdir(tmp_path.parent)  # the same spool, seen from the folder above: no longer the default
    assert shlex.split(SpoolPaths(tmp_path / "jobs", "o").command("status"))[-2:] == [
        "--spool",
        f"{tmp_path.name}/jobs",
    ]


# -- the end of a run ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["work"], ["supervise", "--workers", "2"]])
def test_a_run_ends_by_naming_each_failed_job_and_what_to_type_next(project, command):
    project.run("plan", "--step", STEP, "--tiles", "1x3", "--kernel", "jr_test_kernels:broken")
    result = project.run(*command, "--retries", "0", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "3 failed for good" in result.stderr
    for job_id in project.records():
        assert f"{job_id}: ZeroDivisionError: this kernel always fails" in result.stderr
    # the commands it suggests carry the user's own spool (the project's is not ./jobs)
    assert suggested(result.stderr, "status")[-2:] == ["--spool", project.spool.name]
    retry = suggested(result.stderr, "work")
    assert "--retry-failed" in retry and retry[-2:] == ["--spool", project.spool.name]


def test_a_job_whose_spec_was_truncated_is_named_with_its_file(project):
    project.run("plan", "--step", STEP, "--tiles", "1x2")
    spec = project.plan_folder / "specs" / "tile-r000-c001.json"
    spec.write_text(spec.read_text()[:20])
    result = project.run("work", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"tile-r000-c001: invalid job spec {spec}" in result.stderr


def test_a_finished_spool_says_so_and_how_to_compute_it_again(project):
    project.run("plan", "--step", STEP, "--tiles", "2x2")
    project.run("work")
    again = project.run("work")
    assert "computed 0" not in again.stdout
    assert "already finished" in again.stdout and "4/4" in again.stdout
    assert suggested(again.stdout, "reduce")[-2:] == ["--spool", project.spool.name]
    replan = suggested(again.stdout, "plan")
    assert "--replace" in replan
    old_plan = project.plan_id
    project.run(*replan[1:])  # the suggestion, pasted: a new plan of the same grid, nothing done yet
    assert project.plan_id != old_plan and project.records() == {}
    project.run("work")
    project.run("reduce")
    assert project.load("stitched.npy").shape == (40, 40)


def test_reduce_of_a_spool_not_started_suggests_starting_workers_on_it(project):
    project.run("plan", "--step", STEP, "--tiles", "2x2")
    result = project.run("reduce", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert suggested(result.stderr, "supervise")[-2:] == ["--spool", project.spool.name]
    assert suggested(result.stderr, "reduce")[-3:] == ["--partial", "--spool", project.spool.name]
    assert not Path(project.outputs / "stitched.npy").exists()
