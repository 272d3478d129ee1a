"""The vectorized Gaussian gives the loop's bits; the naive vectorization does not."""

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobrunner import Grid
from jobrunner.kernels import gaussian2d, gaussian_loop, gaussian_numpy


def axes(step, extent=(-2, 2, -2, 2)):
    x, y = Grid.lab(*extent, step=step).points()
    return x.reshape(-1, 1), y.reshape(1, -1)


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(
    step=st.sampled_from([0.1, 0.05, 0.03, 0.013, 0.007]),
    sigma=st.sampled_from([1.0, 0.5, 2.0, 0.3]),
    lo=st.floats(-3, 0, allow_nan=False),
    width=st.floats(0.1, 3, allow_nan=False),
)
def test_numpy_kernel_has_the_loops_bits(step, sigma, lo, width):
    x, y = axes(step, (lo, lo + width, -width, 2 * width))
    assert np.array_equal(gaussian_numpy(x, y, sigma), gaussian_loop(x, y, sigma))


def test_the_loop_kernel_is_the_labs_loop():
    x, y = axes(0.05)
    lab = np.array([gaussian2d(xv, yv, 1) for xv in x.ravel() for yv in y.ravel()]).reshape(x.size, y.size)
    assert np.array_equal(gaussian_loop(x, y, 1.0), lab)


@pytest.mark.slow
def test_the_naive_vectorization_is_not_bit_identical():
    """The lesson the README tells: x**2 on a scalar calls pow(), on an array it multiplies."""
    x, y = axes(0.004)
    naive = gaussian2d(x, y, 1.0)
    if np.array_equal(naive, gaussian_loop(x, y, 1.0)):
        pytest.skip("this C library's pow() happens to be correctly rounded on this grid")
    assert not np.array_equal(naive, gaussian_numpy(x, y, 1.0))


HARMONICA_POINT_MASS = """
import sys
import numpy as np, harmonica
east, north, mass, x0, y0, depth = (np.array(v) for v in eval(sys.stdin.read()))
# harmonica's coordinates are easting, northing, upward; its g_z is the downward pull, in mGal.
print(repr(harmonica.point_gravity((east, north, np.zeros_like(east)), (x0, y0, -depth), mass, field="g_z").tolist()))
"""


@pytest.mark.slow
def test_the_buried_sphere_equals_harmonicas_point_mass():
    """An independent check of the gravity kernel: harmonica's point_gravity for the same mass."""
    pytest.importorskip("harmonica", reason="harmonica is in the test extra: bash scripts/test.sh")
    from jobrunner.kernels import buried_sphere

    x, y = np.linspace(-2000, 2000, 41).reshape(-1, 1), np.linspace(-1500, 2500, 31).reshape(1, -1)
    depth, radius, density_contrast, x0, y0 = 300.0, 150.0, 800.0, 200.0, -150.0
    ours = buried_sphere(x, y, depth, radius, density_contrast, x0, y0)
    mass = 4 / 3 * np.pi * radius**3 * density_contrast
    east, north = np.broadcast_arrays(x, y)
    # In a process of its own, without numba's compiler: compiling harmonica's kernels took 10 s
    # of the suite on a fresh venv, and the check is of its formula, not of its speed.
    arguments = repr([east.tolist(), north.tolist(), mass, x0, y0, depth])
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    ran = subprocess.run(
        [sys.executable, "-c", HARMONICA_POINT_MASS], input=arguments, capture_output=True, text=True, env=env
    )
    assert ran.returncode == 0, ran.stderr
    theirs = np.array(eval(ran.stdout))
    assert np.max(np.abs(ours - theirs) / np.abs(theirs)) < 1e-14  # a few units in the last place


def test_the_quake_kernels_travel_times_and_misfit():
    """The linear-gradient time tends to the straight ray as the gradient vanishes, and the picks'
    own source (x 12, y -7, depth 9 km, origin 3 s) is where the misfit is smallest."""
    from jobrunner.kernels import STATIONS, hypocentre_misfit, p_travel_time

    assert p_travel_time(30.0, 40.0, 5.0, 0.0) == 10.0
    assert abs(p_travel_time(30.0, 40.0, 5.0, 1e-9) - 10.0) < 1e-7  # no digits lost to rounding
    assert p_travel_time(30.0, 40.0, 5.0, 0.05) < 10.0  # faster rock below bends the ray through it
    best = hypocentre_misfit(12.0, -7.0, 9.0)
    assert abs(best["origin_time"] - 3.0) < 0.01 and best["misfit"] < 0.012  # the picking errors, 4-12 ms
    for dx, dy, dz in [(1, 0, 0), (0, 1, 0), (0, 0, 1), (-1, 0, 0), (0, -1, 0), (0, 0, -1)]:
        assert hypocentre_misfit(12.0 + dx, -7.0 + dy, 9.0 + dz)["misfit"] > best["misfit"]
    assert len(STATIONS) == 8
