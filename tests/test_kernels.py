"""The vectorized Gaussian gives the loop's bits; the naive vectorization does not."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobrunner import Grid
from jobrunner.kernels import gaussian2d, gaussian_loop, gaussian_numpy


def axes(step, extent=(-2, 2, -2, 2)):
    x, y = Grid.lab(*extent, step=step).points()
    return x.reshape(-1, 1), y.reshape(1, -1)


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


def test_the_naive_vectorization_is_not_bit_identical():
    """The lesson the README tells: x**2 on a scalar calls pow(), on an array it multiplies."""
    x, y = axes(0.004)
    naive = gaussian2d(x, y, 1.0)
    if np.array_equal(naive, gaussian_loop(x, y, 1.0)):
        pytest.skip("this C library's pow() happens to be correctly rounded on this grid")
    assert not np.array_equal(naive, gaussian_numpy(x, y, 1.0))
