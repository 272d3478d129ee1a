"""Hostile and absurd input: files nested absurdly deep, numbers that are not numbers, limits far
past what the machine has.  Each gets one line and a non-zero exit, never a traceback, a crash or
a hang, and a bad value is refused before it is written anywhere."""

import os
import subprocess
from contextlib import contextmanager

import pytest
from test_bad_input import assert_one_line_error

STEP = "0.1"
DEEP = "[" * 100_000  # json.loads raises RecursionError on it


def plan(project, *extra: str) -> None:
    project.run("plan", "--step", STEP, "--tiles", "2x2", "--kernel", "numpy", *extra)


def test_a_spec_nested_absurdly_deep_fails_only_its_job(project):
    plan(project)
    (project.plan_folder / "specs" / "tile-r000-c001.json").write_text(DEEP)
    result = project.run("work", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    records = project.records()
    assert (
        records["tile-r000-c001"]["state"] == "failed"
        and "invalid job spec" in records["tile-r000-c001"]["attempts"][-1]["error"]
    )
    assert sum(r["state"] == "done" for r in records.values()) == 3


@pytest.mark.slow
@pytest.mark.parametrize("planted", ["plan.json", "locking.json", "claim"])
def test_spool_files_nested_absurdly_deep_get_one_line(project, planted):
    plan(project)
    project.run("work")
    if planted == "claim":
        (project.plan_folder / "locks" / "tile-r000-c000.lock").write_text(DEEP)
        assert "Traceback" not in project.run("status", check=False).stderr
        return
    (project.spool / planted).write_text(DEEP)
    for verb in ("status", "work"):
        assert_one_line_error(project.run(verb, check=False), planted)


@pytest.mark.slow
@pytest.mark.parametrize("lease", ["-1", "nan", "inf", "0"])
def test_an_absurd_lease_is_refused_before_it_is_written(project, lease):
    plan(project)
    assert_one_line_error(project.run("work", "--lock", "lease", "--lease", lease, check=False), "--lease")
    assert not (project.spool / "locking.json").exists()  # so later workers are not stuck with it
    project.run("work", "--lock", "lease")


@pytest.mark.parametrize(
    "args, env, fragment",
    [
        (["work", "--max-time", "inf"], {}, "--max-time"),
        (["work", "--max-time", "nan"], {}, "--max-time"),
        (["work"], {"SLURM_JOB_ID": "7", "SLURM_JOB_END_TIME": "9" * 30}, "SLURM_JOB_END_TIME"),
        (["status", "--watch", "--interval", "-1"], {}, "--interval"),
        (["status", "--watch", "--interval", "nan"], {}, "--interval"),
        (["supervise", "--job-timeout", "nan"], {}, "--job-timeout"),
        (["supervise", "--job-timeout", "inf"], {}, "--job-timeout"),
    ],
)
def test_absurd_numbers_get_one_line(project, args, env, fragment):
    plan(project)
    project.env.update(env)
    assert_one_line_error(project.run(*args, check=False, timeout=60), fragment)
    assert all(r["state"] != "done" for r in project.records().values())  # nothing was started


def test_a_scale_memory_limit_that_is_not_a_number(project):
    assert_one_line_error(project.run("scale", "--memory-limit", "nanG", check=False), "memory size")


def test_a_plan_of_a_trillion_jobs_is_refused_at_once(project):
    result = project.run("plan", "--step", "4e-6", "--tiles", "1000000x1000000", check=False, timeout=60)
    assert_one_line_error(result, "1,000,000,000,000 jobs", "100,000")


def test_more_workers_than_open_files_allow_is_refused_not_hung(project):
    plan(project)
    limited = subprocess.run(
        ["bash", "-c", 'ulimit -n 128 && exec "$@"', "bash", *project.command("supervise", "--workers", "200")],
        cwd=project.root, env=project.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert_one_line_error(limited, "open files", "ulimit -n")


def test_a_link_planted_at_a_lock_file_is_named_not_blamed_on_the_disk(project):
    plan(project)
    lock = project.plan_folder / "locks" / "tile-r000-c000.lock"
    lock.unlink()  # the lock file plan made, swapped for a link
    lock.symlink_to(project.root / "elsewhere")
    result = project.run("work", check=False)
    assert_one_line_error(result, "symbolic link", str(lock))
    assert "does not do flock" not in result.stderr


@contextmanager
def tiny_disk(folder, options: str):
    """``folder`` as a tmpfs this small (``size=``, ``nr_inodes=``): a disk that fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny disk needs root")
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"{options},mode=755", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_spool_disk_at_plan_gets_one_line(project):
    with tiny_disk(project.spool, "size=64k,nr_inodes=40"):
        result = project.run("plan", "--step", "0.01", "--tiles", "20x20", "--kernel", "numpy", check=False)
        assert_one_line_error(result, "disk is full")
        assert not (project.spool / "plan.json").exists() and not list((project.spool / "plans").iterdir())


@pytest.mark.parametrize("leave", [0, 1])
@pytest.mark.parametrize("mode", ["lease", "flock", "auto"])
def test_a_spool_disk_that_fills_up_under_a_worker_gets_one_line(project, mode, leave):
    """The disk fills up after the plan, to its last inode or all but one: whichever file a worker
    makes first on the spool's disk and finds no room for (its probe of flock, which must not be
    taken for a disk without flock; the lock mode's record; its lease and claim; its journal),
    it stops with one line that says the disk is full."""
    with tiny_disk(project.spool, "size=1m,nr_inodes=64"):
        plan(project)
        fill_inodes(project.spool, leave)
        project.env["JOBRUNNER_LOCK"] = mode
        assert_one_line_error(project.run("work", check=False), "the disk is full")


def fill_inodes(folder, leave: int) -> None:
    """Make empty files in ``folder`` until its disk has no inode left, then remove ``leave`` of them."""
    made = []
    try:
        while True:
            made.append(folder / f"filler-{len(made)}")
            made[-1].touch()
    except OSError:
        made.pop()
    for path in made[len(made) - leave :]:
        path.unlink()


@pytest.mark.parametrize("text", ["[bold]mGal[/]", "m$_$", "a[/]b"])
def test_rich_markup_and_tex_in_the_users_words_are_printed_and_drawn_as_written(project, text):
    """Units, folders and errors are the user's words: rich would read [...] as styles (dropping
    them, or raising on [/]) and matplotlib $...$ as maths (failing to parse)."""
    spool = project.root / f"spool {text}"
    result = project.run("plan", "--step", STEP, "--tiles", "1x2", "--kernel", "numpy", "--unit", f"x={text}",
                         "--spool", spool)  # fmt: skip
    assert text in result.stdout and "next:" in result.stdout
    project.run("work", "--spool", spool)
    for command in ("reduce", "report", "status"):
        shown = project.run(command, "--spool", spool)
        assert "Traceback" not in shown.stderr
    assert "x=" + text in project.run("work", "--spool", spool).stdout  # the re-plan hint keeps the unit whole
