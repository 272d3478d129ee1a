"""Kernels for the tests, imported by worker subprocesses by name (``jr_test_kernels:slow``).

They compute the real Gaussian, so a spool drained with them still stitches to the serial
result bit for bit; they only add delays or failures around it.
"""

import math
import os
import time
from pathlib import Path

import numpy as np

from jobrunner.kernels import gaussian_numpy


def slow(x, y, sigma=1.0, delay=0.0):
    """The Gaussian, after sleeping ``delay`` seconds: a tile a test can kill in the middle of.

    ``plan`` probes a kernel on a 2 x 3 tile; that probe is not slowed down.
    """
    if x.size * y.size > 6:
        time.sleep(delay)
    return gaussian_numpy(x, y, sigma)


def gated(x, y, sigma=1.0, gate="", first_only=False):
    """The Gaussian, once the file ``gate`` exists: a tile stays in flight exactly as long as a test
    needs (kill it, look at it), then every tile finishes at once when the test creates the file.

    ``first_only``: only the tile holding the grid's first point waits; the others run at once.
    ``plan``'s 2 x 3 probe never waits.
    """
    waits = x.size * y.size > 6 and (not first_only or (x.ravel()[0] == -2.0 and y.ravel()[0] == -2.0))
    while waits and not os.path.exists(gate):
        time.sleep(0.01)
    return gaussian_numpy(x, y, sigma)


def flaky(x, y, sigma=1.0, tally="", fail_times=1):
    """Raises on the first ``fail_times`` calls for each tile (counted in files under ``tally``)."""
    if x.size * y.size <= 6:
        return gaussian_numpy(x, y, sigma)  # plan's probe: not counted
    marker = Path(tally) / f"x{x.ravel()[0]!r}-y{y.ravel()[0]!r}"
    calls = len(marker.read_text()) if marker.exists() else 0
    marker.write_text("." * (calls + 1))
    if calls < fail_times:
        raise RuntimeError(f"flaky kernel failing on purpose (call {calls + 1}, pid {os.getpid()})")
    return gaussian_numpy(x, y, sigma)


def broken(x, y, sigma=1.0):
    if x.size * y.size <= 6:
        return gaussian_numpy(x, y, sigma)  # passes plan's probe, fails on every real tile
    raise ZeroDivisionError("this kernel always fails")


def wrong_shape(x, y, sigma=1.0):
    if x.size * y.size <= 6:
        return gaussian_numpy(x, y, sigma)
    return gaussian_numpy(x, y, sigma)[:-1]


def stuck(x, y, sigma=1.0, delay=0.0, hang=60.0, tally="", hang_times=1_000_000):
    """The Gaussian after ``delay`` seconds, but the tile holding the grid's first point hangs for
    ``hang`` seconds, on its first ``hang_times`` calls (counted in files under ``tally``)."""
    if x.size * y.size > 6:
        first_tile = x.ravel()[0] == -2.0 and y.ravel()[0] == -2.0
        calls = 0
        if first_tile and tally:
            marker = Path(tally) / "hangs"
            calls = len(marker.read_text()) if marker.exists() else 0
            marker.write_text("." * (calls + 1))
        time.sleep(hang if first_tile and calls < hang_times else delay)
    return gaussian_numpy(x, y, sigma)


def counted(x, y, sigma=1.0, tally="", delay=0.0):
    """The Gaussian, appending one line per computed tile to the file ``tally`` (O_APPEND: whole lines)."""
    if x.size * y.size > 6:
        time.sleep(delay)
        line = f"{x.ravel()[0]!r},{y.ravel()[0]!r},{os.getpid()}\n".encode()
        fd = os.open(tally, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    return gaussian_numpy(x, y, sigma)


def fails_in_workers(x, y, sigma=1.0):
    """The Gaussian in the process named by $JR_TEST_PARENT_PID, and on the tile at the grid's first
    row (``scale`` measures a worker's memory on it); an error on any other tile in any other process."""
    in_parent = str(os.getpid()) == os.environ.get("JR_TEST_PARENT_PID")
    if x.size * y.size > 6 and not in_parent and x.ravel()[0] != -2.0:
        raise RuntimeError("this kernel fails in pool processes, on purpose")
    return gaussian_numpy(x, y, sigma)


# -- research grids: any number of named axes --------------------------------------------------------
def line(x, a=1.0):
    """A 1-D field."""
    return a * x * x - x


def ripple(x, y, depth, k=1.0):
    """A 3-D field, vectorized: each axis arrives by its name, shaped to broadcast."""
    return np.sin(k * x) * np.cos(y) * np.exp(-depth / 10.0)


def ripple_at(x, y, depth, k=1.0):
    """The same field one cell at a time, with the math module, which refuses arrays: ``--pointwise``."""
    return math.sin(k * x) * math.cos(y) * math.exp(-depth / 10.0)


def digits(a, b, c, d):
    """A 4-D field whose every cell says where it is: a + 10 b + 100 c + 1000 d."""
    return a + 10 * b + 100 * c + 1000 * d


# -- kernels with several fields ----------------------------------------------------------------------
def two_fields(x, y, depth, k=1.0):
    """Two fields at once, vectorized: a dict of arrays of the tile's shape."""
    return {"wave": np.sin(k * x) * np.cos(y) * np.exp(-depth / 10.0), "where": x + 10 * y + 100 * depth}


two_fields.long_name = {"wave": "a damped wave"}
two_fields.units = {"wave": "mm"}
two_fields.references = "A test kernel, after no one"


def two_fields_at(x, y, depth, k=1.0):
    """The same fields one cell at a time: a dict of numbers."""
    return {"wave": math.sin(k * x) * math.cos(y) * math.exp(-depth / 10.0), "where": x + 10 * y + 100 * depth}


two_fields_at.long_name, two_fields_at.units = two_fields.long_name, two_fields.units
two_fields_at.references = two_fields.references


def fields_change(x, y):
    """Fields on the probe, other fields on every real tile."""
    if x.size * y.size <= 6:
        return {"a": x + y, "b": x - y}
    return {"a": x + y}


def field_named_like_an_axis(x, y):
    return {"x": x + y}


def field_not_a_name(x, y):
    return {"the misfit": x + y}


def field_not_ascii(x, y):
    return {"σ": x + y}


def no_fields(x, y):
    return {}


def many_fields(x, y):
    return {f"f{k}": x + y for k in range(65)}


def one_array_badly_named(x, y):
    return x + y


one_array_badly_named.field = "a/b"


def badly_marked(x, y):
    return x + y


badly_marked.markers = "abc"


def marked(x, y, depth):
    """Stations on the x, y map; none of them on a section through depth."""
    return x + y + depth


marked.markers = [("A", {"x": 1.0, "y": 2.0}), ("B", {"x": -1.0, "y": 0.5})]


def two_fields_2d(complete, y):
    return {"a": complete + y}
