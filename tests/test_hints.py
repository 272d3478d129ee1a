"""What the user is told to do next is true of their run: the commands it suggests carry their own
spool, work pasted into their shell, and the end of a run names what is left to do."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from jobrunner.paths import SpoolPaths

STEP = "0.1"  # a 40 x 40 grid


@pytest.fixture
def project(project):
    """The project, its folders passed as --spool and --outputs, not in the environment: as a user
    who types them (with JOBRUNNER_SPOOL set, a hint rightly leaves --spool out)."""
    for variable in ("JOBRUNNER_SPOOL", "JOBRUNNER_OUTPUTS"):
        project.env.pop(variable)
    run = project.run

    def run_with_folders(*args, **kwargs):
        folders = ["--spool", project.spool] + (["--outputs", project.outputs] if args[0] == "plan" else [])
        return run(*args, *folders, **kwargs)

    project.run, project.run_as_typed = run_with_folders, run
    return project


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
    monkeypatch.setenv("JOBRUNNER_SPOOL", str(elsewhere))  # pasted where that is set, it finds the spool itself
    assert SpoolPaths(elsewhere, "o").command("status") == "jobrunner status"
    assert "--spool" in SpoolPaths("jobs", "o").command("status"), "./jobs is no longer the default there"
    monkeypatch.delenv("JOBRUNNER_SPOOL")
    assert SpoolPaths("-odd", "o").command("status").endswith("--spool ./-odd")  # not read as an option
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
    before = json.loads((project.spool / "plan.json").read_text())
    project.run_as_typed(*replan[1:])  # the suggestion, pasted: a new plan, nothing done yet...
    after = json.loads((project.spool / "plan.json").read_text())
    assert after["id"] != before["id"] and project.records() == {}
    same = ("code", "axes", "shape", "tiles", "kernel", "pointwise", "kernel_folder", "params", "fields", "units")
    assert {key: after[key] for key in same} == {key: before[key] for key in same}  # ...of the same computation
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


def test_a_replan_hint_for_a_kernel_of_ones_own_folder_plans_it_from_there(project, tmp_path, monkeypatch):
    from jobrunner.spool import Spool

    (project.root / "my_misfit.py").write_text("def misfit(x, y):\n    return x + 0 * y\n")
    project.env["PYTHONPATH"] = ""  # found as a module of the folder `plan` runs in, as a user's is
    project.run("plan", "--step", STEP, "--tiles", "1x2", "--kernel", "my_misfit:misfit")
    before = json.loads((project.spool / "plan.json").read_text())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "my_misfit.py").write_text("def misfit(x, y):\n    return x - y\n")  # another module, same name
    monkeypatch.chdir(elsewhere)
    hint = Spool.open(project.spool).paths.replan_command(Spool.open(project.spool).plan)
    assert hint.startswith("cd ")
    bin_folder = Path(sys.executable).parent
    env = {**project.env, "PATH": f"{bin_folder}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["bash", "-c", hint], cwd=elsewhere, env=env, check=True, capture_output=True)
    after = json.loads((project.spool / "plan.json").read_text())
    assert after["id"] != before["id"] and after["code"] == before["code"]  # the user's module, not the other
    assert after["kernel_folder"] == before["kernel_folder"] == str(project.root)


def test_supervise_names_the_pool_it_starts_not_more_workers_than_jobs(project):
    project.run("plan", "--step", STEP, "--tiles", "1x1", "--kernel", "numpy")
    result = project.run("supervise", "--workers", "3")
    assert "supervisor with 1 worker, one per job of the plan" in result.stdout, result.stdout
