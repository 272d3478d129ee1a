"""User mistakes get one clear line, a non-zero exit, no traceback, and change no finished file."""

import shutil

import numpy as np
import pytest


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["plan", "--step", "0"], ["step must be a positive number"]),
        (["plan", "--step", "-0.1"], ["step must be a positive number"]),
        (["plan", "--step", "nan"], ["step must be a finite number"]),
        (["serial", "--step", "0"], ["step must be a positive number"]),
        (["plan", "--step", "0.1", "--tiles", "0x2"], ["at least 1"]),
        (["plan", "--step", "0.1", "--tiles", "banana"], ["one count per axis", "4x4x2"]),
        (["plan", "--step", "0.1", "--tiles", "41x1"], ["more tiles than the grid has", "40x40"]),
        (["plan", "--step", "0.1", "--extent", "1", "1", "0", "1"], ["is empty"]),
        (["plan", "--step", "0.1", "--kernel", "fortran"], ["unknown kernel 'fortran'", "loop, numpy"]),
        (["plan", "--step", "0.1", "--kernel", "no_such_module:f"], ["cannot import module"]),
        (["plan", "--step", "0.1", "--param", "depth"], ["NAME=VALUE"]),
        (["plan", "--step", "0.1", "--param", "name=bare"], ["JSON literal"]),
        (["plan", "--step", "1e-9"], ["use a larger --step"]),
        (["plan", "--step", "0.1", "--sigma", "2", "--param", "sigma=3"], ["sigma is given twice"]),
    ],
)
def test_bad_plans(project, args, fragments):
    assert_one_line_error(project.run(*args, check=False), *fragments)
    assert not (project.spool / "plan.json").exists()


@pytest.mark.parametrize("verb", ["work", "status", "reduce", "supervise"])
def test_verbs_on_a_spool_that_does_not_exist(project, verb):
    assert_one_line_error(project.run(verb, check=False), "does not exist", "jobrunner plan")


@pytest.mark.slow
def test_workers_zero_and_negative_retries(project):
    project.run("plan", "--step", "0.1", "--tiles", "2x2")
    # typer's own usage box would be fine too; ours says what to do in one line
    for workers in ("0", "-1"):
        result = project.run("supervise", "--workers", workers, check=False)
        assert_one_line_error(result, "--workers must be at least 1")
    assert_one_line_error(project.run("work", "--retries", "-1", check=False), "--retries")


def test_spool_or_outputs_that_is_a_file(project):
    project.root.joinpath("a file").write_text("not a folder")
    assert_one_line_error(
        project.run("plan", "--step", "0.1", "--spool", project.root / "a file", check=False), "is a file", "--spool"
    )
    assert_one_line_error(
        project.run("plan", "--step", "0.1", "--outputs", project.root / "a file", check=False),
        "is a file",
        "--outputs",
    )
    project.run("plan", "--step", "0.1", "--tiles", "2x2")
    assert_one_line_error(project.run("status", "--spool", project.root / "a file", check=False), "is a file")


def test_outputs_not_writable(project, read_only_folder):
    result = project.run("plan", "--step", "0.1", "--tiles", "2x2", "--outputs", read_only_folder, check=False)
    assert_one_line_error(result, "not writable")
    assert_one_line_error(
        project.run("serial", "--step", "0.1", "--outputs", read_only_folder, check=False), "not writable"
    )


def test_outputs_not_writable_even_as_root(project):
    """A path under a file cannot be created by anyone, root included."""
    project.root.joinpath("a file").write_text("x")
    outputs = project.root / "a file" / "outputs"
    result = project.run("plan", "--step", "0.1", "--tiles", "2x2", "--outputs", outputs, check=False)
    assert_one_line_error(result, "cannot create the outputs folder", "--outputs")


def test_a_different_plan_into_a_used_spool_is_refused_and_changes_nothing(project):
    project.run("plan", "--step", "0.1", "--tiles", "2x2", "--kernel", "numpy")
    project.run("supervise", "--workers", "2")
    before = {p: p.read_bytes() for p in project.spool.rglob("*") if p.is_file()}
    tiles_before = {p: p.read_bytes() for p in project.outputs.rglob("*") if p.is_file()}
    result = project.run("plan", "--step", "0.05", "--tiles", "2x2", check=False)
    assert_one_line_error(result, "already holds a different plan", "--replace", "--spool")
    assert before == {p: p.read_bytes() for p in project.spool.rglob("*") if p.is_file()}
    assert tiles_before == {p: p.read_bytes() for p in project.outputs.rglob("*") if p.is_file()}
    # the same plan again is a no-op
    assert "nothing changed" in project.run("plan", "--step", "0.1", "--tiles", "2x2", "--kernel", "numpy").stdout
    assert before == {p: p.read_bytes() for p in project.spool.rglob("*") if p.is_file()}
    # and --replace does what it says
    (project.outputs / "keep me.txt").write_text("not jobrunner's")
    old_plan, old_tiles = project.plan_folder, project.tiles
    project.run("plan", "--step", "0.05", "--tiles", "2x2", "--replace")
    assert '"step": 0.05' in (project.spool / "plan.json").read_text()
    assert not list((project.plan_folder / "records").iterdir())
    assert not old_plan.exists() and not old_tiles.exists()  # the old plan went, with its tiles
    assert (project.outputs / "keep me.txt").exists()


def test_a_corrupt_plan_manifest(project):
    project.run("plan", "--step", "0.1", "--tiles", "2x2")
    (project.spool / "plan.json").write_text('{"format": "jobrunner-plan/1", "grid": ')
    assert_one_line_error(project.run("work", check=False), "plan.json is not a valid jobrunner plan")


@pytest.mark.slow
def test_a_truncated_tile_met_by_reduce(project, serial_reference):
    project.run("plan", "--step", "0.1", "--tiles", "2x2", "--kernel", "numpy")
    project.run("supervise", "--workers", "2")
    project.run("reduce")
    earlier = (project.outputs / "stitched.npy").read_bytes(), (project.outputs / "stitched.png").read_bytes()
    tile = project.tiles / "tile-r001-c000.npy"
    tile.write_bytes(tile.read_bytes()[:100])
    result = project.run("reduce", check=False)
    assert_one_line_error(result, "tile-r001-c000.npy", "jobrunner supervise")
    assert ((project.outputs / "stitched.npy").read_bytes(), (project.outputs / "stitched.png").read_bytes()) == earlier
    # the message's advice works: the job was put back, a worker recomputes it, reduce succeeds
    assert "computed 1 tile in" in project.run("work").stdout
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), serial_reference(0.1))


@pytest.mark.slow
def test_reduce_refuses_missing_tiles_and_partial_stitches_them_as_nan(project, serial_reference):
    project.run("plan", "--step", "0.1", "--tiles", "4x4", "--kernel", "jr_test_kernels:broken")
    project.run("work", "--retries", "0", check=False)
    result = project.run("reduce", check=False)
    assert_one_line_error(result, "16 of 16 tiles are missing", "and 12 more", "--partial")
    assert not (project.outputs / "stitched.npy").exists()
    partial = project.run("reduce", "--partial")
    assert "16 tiles missing" in partial.stdout
    assert np.isnan(project.load("stitched.npy")).all()


@pytest.mark.parametrize("command", ["work", "status"])
def test_a_records_folder_deleted_under_a_plan_is_refused_not_taken_for_no_progress(project, command):
    project.run("plan", "--step", "0.1", "--tiles", "2x2", "--kernel", "numpy")
    project.run("work")
    shutil.rmtree(project.plan_folder / "records")  # every job's failures: failed jobs would be retried
    result = project.run(command, check=False)
    assert_one_line_error(result, "has no records folder", "--replace")
    assert not (project.plan_folder / "records").exists()
