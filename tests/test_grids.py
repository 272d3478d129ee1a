"""Research grids: named axes of any number (1 to 4 here), given three ways, cut into uneven
tiles, drained by real workers and stitched bit for bit to the kernel run in one process."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import HELPERS
from test_bad_input import assert_one_line_error

from jobrunner import JobRunnerError
from jobrunner.compute import compute_tile
from jobrunner.grid import (
    Axis,
    Grid,
    Spacing,
    Tile,
    field_units,
    grid_from_options,
    parse_tiling,
    parse_units,
    tile_grid,
)
from jobrunner.plan import Plan

sys.path.insert(0, str(HELPERS))  # the test kernels, for the reference computed in this process


def one_process(plan: Plan) -> np.ndarray:
    """The plan's kernel over the whole grid as a single tile: the reference for every tiling."""
    return compute_tile(plan, Tile((0,) * len(plan.shape), tuple((0, n) for n in plan.shape)))


# -- axes, pure --------------------------------------------------------------------------------------
def test_the_three_ways_to_give_an_axis():
    assert np.array_equal(Axis.parse("x=-2:2:0.5").points(), np.arange(-2, 2, 0.5))
    assert np.array_equal(Axis.parse("depth=0:5000/501").points(), np.linspace(0, 5000, 501))
    assert Axis.parse("depth=0:5000/501").points()[-1] == 5000.0  # the end is included
    assert Axis.parse("depth=0,5,10,20,40").points().tolist() == [0, 5, 10, 20, 40]
    assert Axis.parse("v=3").points().tolist() == [3.0]


def test_arange_can_land_on_its_stop_as_the_help_says():
    points = Axis.parse("x=1:1.3:0.1").points()
    assert len(points) == 4 and points[-1] > 1.3  # 1.3000000000000003: np.arange's rounding, the lab's too


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("x", "--axis takes NAME=START:STOP:STEP"),
        ("x=1:2", "--axis takes"),
        ("x=0:1:0", "step must be positive"),
        ("x=1:0:0.1", "is empty"),
        ("x=0:1/0", "whole number >= 1"),
        ("x=0:1/2.5", "--axis takes"),
        ("x=1,1,2", "all increase or all decrease"),
        ("2x=0:1:0.1", "must be a Python name"),
        ("lambda=0:1:0.1", "must be a Python name"),
        ("x=0:nan:0.1", "finite"),
        ("x=0:1e12:1e-3", "more than 1,000,000 points"),
    ],
)
def test_bad_axes_get_one_line(text, fragment):
    with pytest.raises(JobRunnerError, match=fragment):
        Axis.parse(text)


def test_grid_options_and_units():
    units = parse_units(["depth=m", "x=km", "misfit=s"])
    grid = grid_from_options(["x=0:10:1", "depth=0,5,10"], units)
    assert grid.names == ("x", "depth") and grid.shape == (10, 3)
    assert [a.unit for a in grid.axes] == ["km", "m"]
    assert field_units(units, grid) == {"misfit": "s"}  # a field's unit: the probe checks that it names one
    lab = grid_from_options()
    assert lab == Grid.lab() and lab.axes[0].spacing is Spacing.ARANGE
    with pytest.raises(JobRunnerError, match="not both"):
        grid_from_options(["x=0:1:0.1"], step=0.1)
    with pytest.raises(JobRunnerError, match="--unit takes NAME=UNIT"):
        parse_units(["metres"])
    with pytest.raises(JobRunnerError, match="two axes share a name"):
        grid_from_options(["x=0:1:0.1", "x=0,1"])


def test_n_d_tilings_cover_every_cell_once_and_ids_sort():
    shape = (7, 5, 3)
    tiles = tile_grid(shape, parse_tiling("3x2x2"))
    cover = np.zeros(shape, dtype=int)
    for tile in tiles:
        cover[tile.slices] += 1
    assert (cover == 1).all() and len(tiles) == 12
    assert [t.id for t in tiles] == sorted(t.id for t in tiles)
    assert tiles[0].id == "tile-000-000-000" and tiles[-1].id == "tile-002-001-001"
    assert tile_grid((4,), (2,))[1].id == "tile-001"
    with pytest.raises(JobRunnerError, match="one count per axis"):
        Plan(grid_from_options(["x=0:1:0.1", "y=0:1:0.1", "z=0,1"]), (2, 2), "jr_test_kernels:digits")
    with pytest.raises(JobRunnerError, match="more tiles than the grid has points .z has 2"):
        Plan(grid_from_options(["x=0:1:0.1", "y=0:1:0.1", "z=0,1"]), (2, 2, 3), "jr_test_kernels:digits")


def test_a_plan_round_trips_through_its_document():
    plan = Plan(grid_from_options(["x=0:1:0.25", "depth=0:9/4", "v=1,2,4"], {"depth": "m"}), (2, 2, 1), "numpy")
    assert Plan.from_json(plan.to_json()) == plan
    document = json.loads(plan.to_json())
    assert [a["name"] for a in document["axes"]] == ["x", "depth", "v"] and document["shape"] == [4, 4, 3]


def test_an_axis_named_as_a_parameter_is_refused():
    with pytest.raises(JobRunnerError, match="parameter sigma has the name of an axis"):
        Plan(grid_from_options(["sigma=0:1:0.5", "y=0:1:0.5"]), (1, 1), "numpy")


# -- end to end, real workers ------------------------------------------------------------------------
CASES = {
    "1-D, count axis": (["x=-3:3/1001"], "7", "jr_test_kernels:line", []),
    "3-D, arange values and count": (
        ["x=-2:2:0.05", "y=0,0.5,1.5,3,3.2,4", "depth=0:50/9"],
        "3x2x4",
        "jr_test_kernels:ripple",
        ["--param", "k=2.5"],
    ),
    "3-D, pointwise": (
        ["x=-2:2:0.1", "y=0:1:0.25", "depth=0,10,30"],
        "2x3x2",
        "jr_test_kernels:ripple_at",
        ["--pointwise"],
    ),
    "4-D": (["a=0:5:1", "b=0:3:1", "c=0,1", "d=0:9/4"], "2x3x1x3", "jr_test_kernels:digits", []),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_n_d_plans_stitch_bit_for_bit_to_one_process(project, case):
    axes, tiles, kernel, extra = CASES[case]
    args = [a for axis in axes for a in ("--axis", axis)]
    project.run("plan", *args, "--tiles", tiles, "--kernel", kernel, *extra)
    project.run("supervise", "--workers", "2")
    project.run("reduce")
    document = json.loads((project.spool / "plan.json").read_text())
    plan = Plan.from_document(document)
    stitched = project.load("stitched.npy")
    assert stitched.shape == plan.shape == tuple(len(Axis.parse(a).points()) for a in axes)
    assert np.array_equal(stitched, one_process(plan))
    assert (project.outputs / "stitched.png").stat().st_size > 0
    project.run("serial", *args, "--kernel", kernel, *extra)  # the command-line reference, for any kernel
    assert np.array_equal(project.load("serial.npy"), stitched)


def test_the_4_d_result_is_indexed_in_the_declared_order(project):
    project.run("plan", "--axis", "a=0:5:1", "--axis", "b=0:3:1", "--axis", "c=0,1", "--axis", "d=0:9/4",
                "--tiles", "2x1x1x2", "--kernel", "jr_test_kernels:digits")  # fmt: skip
    project.run("work")
    project.run("reduce")
    stitched = project.load("stitched.npy")
    assert stitched[4, 2, 1, 3] == 4 + 10 * 2 + 100 * 1 + 1000 * 9  # a[4] = 4, b[2] = 2, c[1] = 1, d[3] = 9


def test_a_scalar_kernel_without_pointwise_is_told_to_pass_it(project):
    result = project.run(
        "plan", "--axis", "x=0:1:0.1", "--axis", "y=0:1:0.1", "--axis", "depth=0,1",
        "--kernel", "jr_test_kernels:ripple_at", "--tiles", "1x1x1", check=False,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "pass --pointwise" in result.stderr


@pytest.mark.slow
def test_the_gaussian_pointwise_equals_the_labs_loop_bit_for_bit(project):
    project.run("plan", "--step", "0.05", "--tiles", "3x2", "--kernel", "jobrunner.kernels:gaussian2d",
                "--pointwise", "--param", "sigma=1.0")  # fmt: skip
    project.run("supervise", "--workers", "2")
    project.run("reduce")
    loop = one_process(Plan(Grid.lab(step=0.05), (1, 1), "loop"))
    assert np.array_equal(project.load("stitched.npy"), loop)


KERNEL_HERE = '''
import math

def misfit(x, depth, v=2.0):
    """A kernel in the project's own folder: no package, no PYTHONPATH."""
    return math.hypot(x - 3.0, depth - 10.0) / v
'''


@pytest.mark.slow
def test_a_kernel_module_in_the_planning_folder_is_found_by_workers_started_anywhere(project, tmp_path):
    (project.root / "mykernels.py").write_text(KERNEL_HERE)
    project.run("plan", "--axis", "x=0:6:0.5", "--axis", "depth=0,5,10,20,40", "--kernel", "mykernels:misfit",
                "--pointwise", "--tiles", "2x2")  # fmt: skip
    elsewhere = tmp_path / "another terminal"
    elsewhere.mkdir()
    worker = subprocess.run(
        project.command("work"), cwd=elsewhere, env=project.env, capture_output=True, text=True, timeout=120
    )
    assert worker.returncode == 0, worker.stderr
    project.run("reduce")
    stitched = project.load("stitched.npy")
    x, depth = np.arange(0, 6, 0.5), np.array([0, 5, 10, 20, 40.0])
    assert stitched[6, 2] == 0.0 and stitched.shape == (12, 5)  # x = 3, depth = 10
    assert np.array_equal(stitched, [[math.hypot(a - 3.0, d - 10.0) / 2.0 for d in depth] for a in x])


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--kernel", "sphere", "--param", "dept=100"], ["has no parameter dept", "did you mean depth?", "radius"]),
        (["--kernel", "numpy", "--sigma", "0"], ["sigma must be positive"]),
        (["--kernel", "jobrunner.kernels:gaussian2d", "--pointwise"], ["needs sigma", "--param sigma=VALUE"]),
        (["--axis", "x=0:1:0.1", "--step", "0.1"], ["not both"]),
        (["--axis", "x=0:1:0.1", "--tiles", "2x2"], ["one count per axis"]),
    ],
)
def test_kernel_and_grid_mistakes_get_one_line(project, args, fragments):
    assert_one_line_error(project.run("plan", *args, check=False), *fragments)


def test_kernels_lists_the_built_in_ones_with_their_parameters(project):
    listing = project.run("kernels").stdout
    for fragment in ("loop", "numpy", "sphere", "sigma=1.0", "depth=250.0", "--pointwise"):
        assert fragment in listing


def test_a_long_values_axis_is_shown_short_but_planned_exactly():
    axis = Axis.parse("depth=" + ",".join(str(v) for v in range(5000)))
    assert axis.describe() == "depth=0,1,2,3,4,...,4999 (5000 values)"  # titles and messages
    assert Axis.parse(axis.describe(exact=True)) == axis  # the dataset's history: every value
