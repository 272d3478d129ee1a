"""Kernels for the tests, imported by worker subprocesses by name (``jr_test_kernels:slow``).

They compute the real Gaussian, so a spool drained with them still stitches to the serial
result bit for bit; they only add delays or failures around it.
"""

import os
import time
from pathlib import Path

from jobrunner.kernels import gaussian_numpy


def slow(x, y, sigma=1.0, delay=0.0):
    """The Gaussian, after sleeping ``delay`` seconds: a tile a test can kill in the middle of."""
    time.sleep(delay)
    return gaussian_numpy(x, y, sigma)


def flaky(x, y, sigma=1.0, tally="", fail_times=1):
    """Raises on the first ``fail_times`` calls for each tile (counted in files under ``tally``)."""
    marker = Path(tally) / f"x{x.ravel()[0]!r}-y{y.ravel()[0]!r}"
    calls = len(marker.read_text()) if marker.exists() else 0
    marker.write_text("." * (calls + 1))
    if calls < fail_times:
        raise RuntimeError(f"flaky kernel failing on purpose (call {calls + 1}, pid {os.getpid()})")
    return gaussian_numpy(x, y, sigma)


def broken(x, y, sigma=1.0):
    raise ZeroDivisionError("this kernel always fails")


def wrong_shape(x, y, sigma=1.0):
    return gaussian_numpy(x, y, sigma)[:-1]
