"""The labelled result: kernels with several fields, stitched.nc read back with xarray, and the
figure's field and slice.  Real workers, real files; xarray reads what reduce wrote."""

import json
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
from conftest import HELPERS, engine_missing
from test_bad_input import assert_one_line_error

from jobrunner import JobRunnerError, labels
from jobrunner.compute import compute_tile, probe_kernel
from jobrunner.figures import figure_view, parse_slices, slice_indices
from jobrunner.grid import Grid, Tile, grid_from_options, parse_units
from jobrunner.plan import Plan
from jobrunner.tilefile import check_tile, write_tile

sys.path.insert(0, str(HELPERS))  # the test kernels, for the reference computed in this process

AXES = ["x=-2:2:0.25", "y=0,0.5,1.5,3", "depth=0:40/5"]
AXIS_ARGS = [word for axis in AXES for word in ("--axis", axis)]


def one_process(plan: Plan) -> np.ndarray:
    return compute_tile(plan, Tile((0,) * len(plan.shape), tuple((0, n) for n in plan.shape)))


def probed(kernel: str, pointwise: bool = False, **units) -> Plan:
    return probe_kernel(Plan(grid_from_options(AXES), (1, 1, 1), kernel, {}, pointwise, units=units))


# -- fields, pure ---------------------------------------------------------------------------------------
def test_the_probe_names_the_fields_and_tiles_hold_one_float64_per_field():
    plan = probed("jr_test_kernels:two_fields")
    assert plan.fields == ("wave", "where")
    assert plan.tile_dtype == np.dtype([("wave", "<f8"), ("where", "<f8")])
    assert Plan.from_json(plan.to_json()).fields == ("wave", "where")  # the plan on disk keeps them
    values = one_process(plan)
    shapes = [(-1, 1, 1), (1, -1, 1), (1, 1, -1)]
    x, y, depth = (p.reshape(shape) for p, shape in zip(plan.grid.points(), shapes, strict=True))
    assert np.array_equal(values["where"], np.broadcast_to(x + 10 * y + 100 * depth, plan.shape))
    pointwise = probed("jr_test_kernels:two_fields_at", pointwise=True)
    assert pointwise.fields == ("wave", "where")
    assert np.array_equal(one_process(pointwise)["where"], values["where"])
    assert probed("jr_test_kernels:ripple").fields == ()  # one array: no fields


@pytest.mark.parametrize(
    "kernel, fragment",
    [
        ("jr_test_kernels:field_named_like_an_axis", "field named x, which is also the name of an axis"),
        ("jr_test_kernels:field_not_a_name", "a field's name must be a Python name in ASCII"),
        ("jr_test_kernels:field_not_ascii", "a field's name must be a Python name in ASCII"),  # .npy: Latin-1
        ("jr_test_kernels:no_fields", "a dict of 0 fields"),
        ("jr_test_kernels:many_fields", "a dict of 65 fields: its keys name its fields, from 1 to 64"),
        ("jr_test_kernels:one_array_badly_named", "its field attribute is named 'a/b'"),
        ("jr_test_kernels:badly_marked", "its markers must be (name, {axis: value, ...}) pairs"),
    ],
)
def test_names_and_attributes_that_cannot_be_stitched_are_refused_at_plan(kernel, fragment):
    plan = Plan(Grid.lab(step=0.5), (1, 1), kernel)
    with pytest.raises(JobRunnerError, match=re.escape(fragment)):
        probe_kernel(plan)


def test_an_axis_named_as_the_datasets_mask_is_refused_at_plan():
    plan = Plan(grid_from_options(["complete=0:1/4", "y=0:1/4"]), (1, 1), "jr_test_kernels:two_fields_2d")
    with pytest.raises(JobRunnerError, match="complete is the name of the dataset's mask"):
        probe_kernel(plan)


def test_markers_are_drawn_only_on_a_map_of_their_axes():
    plan = probe_kernel(Plan(grid_from_options(AXES), (1, 1, 1), "jr_test_kernels:marked"))
    assert labels.markers(plan, "x", "y") == [("A", 1.0, 2.0), ("B", -1.0, 0.5)]
    assert labels.markers(plan, "y", "x") == [("A", 2.0, 1.0), ("B", 0.5, -1.0)]  # axes declared the other way
    assert labels.markers(plan, "x", "depth") == []


def test_a_unit_must_name_an_axis_or_a_field():
    assert probed("jr_test_kernels:two_fields", wave="cm").units == {"wave": "cm"}
    with pytest.raises(JobRunnerError, match="--unit names no axis or field: wav .* the fields wave, where"):
        probed("jr_test_kernels:two_fields", wav="cm")


def test_a_kernel_whose_fields_change_after_the_probe_fails_its_tile_with_a_clear_error():
    plan = probe_kernel(Plan(Grid.lab(step=0.5), (1, 1), "jr_test_kernels:fields_change"))
    with pytest.raises(TypeError, match="returned fields a, but its probe returned fields a, b"):
        one_process(plan)


def test_the_figure_slices_at_the_nearest_point_and_refuses_what_is_off_the_grid():
    plan = probed("jr_test_kernels:two_fields")  # depth = 0, 10, 20, 30, 40
    assert slice_indices(plan) == (2,)  # the middle point by default
    assert slice_indices(plan, parse_slices(["depth=12"])) == (1,)
    assert slice_indices(plan, {"depth": 44.9}) == (4,)
    with pytest.raises(JobRunnerError, match="off the axis, which runs from 0 to 40"):
        slice_indices(plan, {"depth": 60})
    with pytest.raises(JobRunnerError, match="slices only the axes after them .depth."):
        slice_indices(plan, {"x": 0})
    with pytest.raises(JobRunnerError, match="names no axis: z"):
        slice_indices(plan, {"z": 0})
    with pytest.raises(JobRunnerError, match="--slice takes NAME=VALUE"):
        parse_slices(["depth"])
    assert figure_view(plan, field="where").field == "where"
    with pytest.raises(JobRunnerError, match="no field 'wav': its fields are wave, where"):
        figure_view(plan, field="wav")


# -- end to end ------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("pointwise", [False, True], ids=["vectorized", "pointwise"])
def test_a_multi_field_kernel_stitches_bit_for_bit_and_reads_back_labelled(project, pointwise):
    kernel = "jr_test_kernels:two_fields_at" if pointwise else "jr_test_kernels:two_fields"
    extra = ["--pointwise"] if pointwise else []
    project.run("plan", *AXIS_ARGS, "--unit", "x=km", "--unit", "depth=m", "--unit", "where=cells", "--tiles",
                "3x2x2", "--kernel", kernel, *extra, "--param", "k=2.5")  # fmt: skip
    project.run("supervise", "--workers", "2")
    reduced = project.run("reduce", "--field", "where", "--slice", "depth=30")
    assert "stitched.nc" in reduced.stdout
    plan = Plan.from_document(json.loads((project.spool / "plan.json").read_text()))
    stitched = project.load("stitched.npy")
    assert stitched.dtype.names == ("wave", "where") and stitched.shape == plan.shape
    assert np.array_equal(stitched, one_process(plan))
    project.run("serial", *AXIS_ARGS, "--kernel", kernel, *extra, "--param", "k=2.5")
    assert np.array_equal(project.load("serial.npy"), stitched)

    with xr.open_dataset(project.outputs / "stitched.nc") as ds:
        assert ds["wave"].dims == ("x", "y", "depth") and set(ds.data_vars) == {"wave", "where"}
        for name, points in zip(plan.grid.names, plan.grid.points(), strict=True):
            assert np.array_equal(ds[name].values, points)  # the plan's axes, every bit
        assert ds["x"].attrs["units"] == "km" and ds["depth"].attrs["units"] == "m" and "units" not in ds["y"].attrs
        assert np.array_equal(ds["wave"].values, stitched["wave"]) and np.array_equal(ds["where"], stitched["where"])
        assert ds["wave"].attrs == {"long_name": "a damped wave", "units": "mm"}
        assert ds["where"].attrs == {"units": "cells"}  # --unit names a field too
        assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["references"] == "A test kernel, after no one"
        planned, reduced = ds.attrs["history"].splitlines()
        assert "jobrunner reduce" in reduced and kernel in ds.attrs["source"]
        assert ds.attrs["jobrunner_tiling"] == "3x2x2" and json.loads(ds.attrs["jobrunner_params"]) == {"k": 2.5}
        assert ds.attrs["jobrunner_hosts"].endswith("(12 tiles)") and "complete" not in ds
        # A point by its coordinates, as a user would look it up: x = 0.5, y = 1.5, depth = 20.
        assert float(ds["where"].sel(x=0.5, y=1.5, depth=20)) == 0.5 + 15 + 2000
    # The history's plan command, run again, makes the same plan.
    words = shlex.split(planned.partition(" ")[2])
    assert words[:2] == ["jobrunner", "plan"]
    project.run(*words[1:], "--spool", str(project.root / "again"), "--outputs", str(project.root / "again out"))
    again = Plan.from_document(json.loads((project.root / "again" / "plan.json").read_text()))
    assert again == plan and again.fields == plan.fields


def test_a_partial_reduce_marks_the_missing_cells_in_the_dataset(project):
    project.run("plan", *AXIS_ARGS, "--tiles", "2x2x1", "--kernel", "jr_test_kernels:two_fields", "--unit", "wave=µm")
    project.run("supervise", "--workers", "2")
    (project.tiles / "tile-001-001-000.npy").unlink()  # its job is pending again
    project.run("reduce", "--partial")
    with xr.open_dataset(project.outputs / "stitched.nc") as ds:
        complete = ds["complete"]
        assert complete.dims == ("x", "y", "depth") and complete.attrs["flag_meanings"] == "missing computed"
        hole = np.zeros(complete.shape, dtype=bool)
        hole[8:, 2:] = True  # tile 1, 1: the second half of x (16 points) and of y (4)
        assert (complete.values[hole] == 0).all() and (complete.values[~hole] == 1).all()
        wave = ds["wave"].values
        assert np.isnan(wave[hole]).all() and not np.isnan(wave[~hole]).any()
        assert ds.attrs["jobrunner_tiles_missing"] == "1 of 4"
        assert ds["wave"].attrs["units"] == "µm"  # not ASCII: kept as UTF-8 text
    if shutil.which("ncdump") is None:
        engine_missing("ncdump (the netCDF C library's) is not installed: bash scripts/engines.sh installs netcdf-bin")
    header = subprocess.run(["ncdump", "-h", project.outputs / "stitched.nc"], capture_output=True, text=True)
    assert header.returncode == 0, header.stderr  # the reference library reads what h5netcdf wrote
    assert "double wave(x, y, depth)" in header.stdout
    assert 'complete:flag_meanings = "missing computed"' in header.stdout  # classic char text, not string


def test_bad_field_or_slice_is_one_line_and_leaves_the_earlier_result(project):
    project.run("plan", *AXIS_ARGS, "--tiles", "2x1x1", "--kernel", "jr_test_kernels:two_fields")
    project.run("work")
    project.run("reduce")
    before = {name: (project.outputs / name).read_bytes() for name in ("stitched.npy", "stitched.nc")}
    assert_one_line_error(project.run("reduce", "--field", "wav", check=False), "no field 'wav'", "wave, where")
    assert_one_line_error(project.run("reduce", "--slice", "depth=99", check=False), "off the axis")
    assert {name: (project.outputs / name).read_bytes() for name in before} == before


@pytest.mark.slow
def test_without_the_writer_reduce_says_so_and_writes_the_rest(project, tmp_path):
    project.run("plan", "--step", "0.5", "--tiles", "2x2", "--kernel", "numpy")
    project.run("work")
    project.run("reduce")
    assert (project.outputs / "stitched.nc").exists()
    hidden = tmp_path / "no h5netcdf here"
    hidden.mkdir()
    (hidden / "h5netcdf.py").write_text("raise ImportError('not installed in this test')\n")
    project.env["PYTHONPATH"] = f"{hidden}:{project.env['PYTHONPATH']}"
    result = project.run("reduce")
    assert "stitched.nc not written" in result.stdout and "jobrunner[netcdf]" in result.stdout
    assert not (project.outputs / "stitched.nc").exists()  # the old one was not of this reduce
    assert project.load("stitched.npy").shape == (8, 8)


def test_a_tile_without_the_plans_fields_is_a_bad_tile(tmp_path):
    plan = probed("jr_test_kernels:two_fields")
    path = tmp_path / "tile.npy"
    with open(path, "wb") as file:
        checksum = write_tile(file, np.zeros((2, 3)))  # one float64 per cell, as a one-array kernel's
    why = check_tile(path, (2, 3), checksum, dtype=plan.tile_dtype)
    assert why == "holds float64 (2, 3), expected float64 fields wave, where (2, 3)"
    with open(path, "wb") as file:
        checksum = write_tile(file, np.zeros((2, 3), dtype=plan.tile_dtype), plan.tile_dtype)
    assert check_tile(path, (2, 3), checksum, dtype=plan.tile_dtype) is None


@pytest.mark.slow
def test_a_disk_that_fills_while_the_dataset_is_written_fails_in_one_line(project):
    """stitched.npy has its room reserved before it is written; stitched.nc cannot be sized in
    advance, so a disk that fills under it (here: a file-size limit between the two) must fail
    with one line, keep the earlier products and leave no partial (h5netcdf crashed here once)."""
    project.run("plan", "--step", "0.004", "--tiles", "2x2", "--kernel", "numpy")
    project.run("work")
    project.run("reduce")
    before = {p.name: p.read_bytes() for p in project.outputs.glob("stitched.*")}
    npy = (project.outputs / "stitched.npy").stat().st_size
    assert (project.outputs / "stitched.nc").stat().st_size > npy + 1024  # room for the limit between them
    limit_blocks = npy // 1024 + 1  # ulimit -f counts 1024-byte blocks
    command = " ".join(f"'{word}'" for word in project.command("reduce"))
    result = subprocess.run(
        ["bash", "-c", f"ulimit -f {limit_blocks}; exec {command}"],
        cwd=project.root, env=project.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, (result.returncode, result.stderr)  # not 139: no segfault
    assert_one_line_error(result, "cannot write the stitched result", "File too large")
    assert {p.name: p.read_bytes() for p in project.outputs.glob("stitched.*")} == before
    assert project.leftovers() == []


@pytest.mark.slow
def test_reduce_needs_neither_the_kernel_nor_its_dependencies(project):
    """The plan keeps what the kernel says of its result: a reduce where the kernel cannot be
    imported (moved away, or a dependency missing on this node) stitches and labels as before."""
    (project.root / "mykernel.py").write_text(
        "import numpy as np\n\n"
        "def wave(x, y, scale=np.float32(1.5)):\n    return {'height': scale * (x + y)}\n\n"
        "wave.units = {'height': 'm'}\nwave.title = 'My wave'\n"
    )
    project.run("plan", "--axis", "x=0:1/4", "--axis", "y=0:1/3", "--tiles", "2x1", "--kernel", "mykernel:wave")
    project.run("work")
    (project.root / "mykernel.py").rename(project.root / "elsewhere.py")
    project.run("reduce", "--field", "height")
    with xr.open_dataset(project.outputs / "stitched.nc") as ds:
        assert ds["height"].attrs["units"] == "m" and ds.attrs["title"].startswith("My wave")
        assert json.loads(ds.attrs["jobrunner_params"]) == {"scale": "np.float32(1.5)"}  # not JSON: its repr


def test_repeated_options_and_the_slices_tolerance(project):
    grid = grid_from_options(["x=0:1:0.5", "y=0,1", "depth=0,5,10,20,40"])
    plan = probe_kernel(Plan(grid, (1, 1, 1), "jr_test_kernels:ripple"))
    with pytest.raises(JobRunnerError, match="--slice depth is given twice"):
        parse_slices(["depth=1", "depth=2"])
    with pytest.raises(JobRunnerError, match="--unit x is given twice"):
        parse_units(["x=m", "x=km"])
    assert slice_indices(plan, {"depth": 49.9}) == (4,)  # within half the last spacing (20 to 40)
    with pytest.raises(JobRunnerError, match="off the axis"):
        slice_indices(plan, {"depth": 50.1})
    with pytest.raises(JobRunnerError, match="off the axis"):
        slice_indices(plan, {"depth": -2.6})  # half the first spacing is 2.5


def test_a_kernel_module_that_fails_as_it_is_imported_gets_one_line(project):
    (project.root / "broken_kernel.py").write_text("def f(x, y):\n    return x +* y\n")
    result = project.run("plan", "--step", "0.5", "--tiles", "1x1", "--kernel", "broken_kernel:f", check=False)
    assert_one_line_error(result, "importing module 'broken_kernel' raised SyntaxError", "line 2 of")
