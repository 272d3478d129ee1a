"""Your own kernel: plan probes it; the shipped geoscience kernel agrees with its textbook formula."""

import numpy as np
import pytest

from jobrunner import JobRunnerError, Plan, Spool, reduce, work
from jobrunner.kernels import GRAVITATIONAL_CONSTANT, MGAL, buried_sphere


@pytest.mark.parametrize(
    "kernel, message",
    [
        ("jr_test_kernels_missing:f", "cannot import module"),
        ("jobrunner.kernels:no_such_function", "has no function"),
        ("jr_test_probe_kernels:raises", "failed on a 2 x 3 probe tile: RuntimeError: bad parameters"),
        ("jr_test_probe_kernels:wrong_shape", "expected a float array of shape (2, 3)"),
        ("jr_test_probe_kernels:integers", "expected a float array"),
        ("jr_test_probe_kernels:not_an_array", "returned list"),
    ],
)
def test_plan_refuses_a_kernel_that_fails_its_probe(project, kernel, message):
    result = project.run("plan", "--step", "0.1", "--kernel", kernel, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (project.spool / "plan.json").exists()


def test_a_kernel_with_parameters_end_to_end(project):
    project.run(
        "plan",
        "--kernel",
        "jr_test_probe_kernels:plane",
        "--param",
        "slope=2.5",
        "--param",
        'label="ok"',
        "--step",
        "0.1",
        "--tiles",
        "3x2",
    )
    assert '"slope": 2.5' in (project.spool / "plan.json").read_text()
    project.run("supervise", "--workers", "2")
    project.run("reduce")
    x, y = np.arange(-2.0, 2.0, 0.1), np.arange(-2.0, 2.0, 0.1)
    assert np.array_equal(project.load("stitched.npy"), 2.5 * x[:, None] + y[None, :])


def test_the_buried_sphere_matches_its_formula(tmp_path):
    depth, radius, contrast = 300.0, 150.0, 800.0
    plan = Plan.create(
        step=10,
        tiles=(2, 2),
        kernel="sphere",
        extent=(-1000, 1000, -1000, 1000),
        depth=depth,
        radius=radius,
        density_contrast=contrast,
    )
    spool, _ = Spool.create(plan, tmp_path / "jobs", tmp_path / "outputs")
    work(spool)
    field = np.load(reduce(spool).array)
    x, y = plan.grid.points()
    peak = GRAVITATIONAL_CONSTANT * (4 / 3 * np.pi * radius**3 * contrast) / depth**2 / MGAL
    assert field.max() == pytest.approx(peak, rel=1e-12)  # the grid has a point over the centre
    assert 0.8 < peak < 0.9  # about 0.84 mGal: a plausible ore-body anomaly
    assert x[np.argmax(field.max(axis=1))] == pytest.approx(0, abs=1e-9)
    # the half-maximum is at a horizontal distance of sqrt(2^(2/3) - 1) z0 (about 0.766 z0)
    half = np.sqrt(2 ** (2 / 3) - 1) * depth
    along_x = buried_sphere(np.array([[half]]), np.array([[0.0]]), depth, radius, contrast)
    assert along_x[0, 0] == pytest.approx(peak / 2, rel=1e-12)
    with pytest.raises(ValueError):
        buried_sphere(x[:, None], y[None, :], depth=100, radius=200)
    bad = Plan.create(step=10, tiles=(1, 1), kernel="sphere", extent=(0, 100, 0, 100), depth=1, radius=2)
    with pytest.raises(JobRunnerError, match="need 0 < radius < depth"):
        Spool.create(bad, tmp_path / "refused")  # plan's probe runs the kernel before anything is written
    assert not (tmp_path / "refused").exists()


@pytest.mark.slow
def test_the_gravity_example_script_runs_end_to_end(project):
    import subprocess
    from pathlib import Path

    script = Path(__file__).parents[1] / "scripts" / "gravity_example.sh"
    env = {**project.env, "JOBRUNNER": " ".join(project.command())}
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    field = project.load("stitched.npy")
    assert field.shape == (800, 800)
    peak = GRAVITATIONAL_CONSTANT * (4 / 3 * np.pi * 150.0**3 * 800.0) / 300.0**2 / MGAL
    assert field.max() == pytest.approx(peak, rel=1e-3)  # the grid passes within 5 m of the centre
    x = np.arange(-2000.0, 2000.0, 5.0)
    i, j = np.unravel_index(np.argmax(field), field.shape)
    assert (x[i], x[j]) == (200.0, -150.0)
    assert (project.outputs / "stitched.png").stat().st_size > 20_000
