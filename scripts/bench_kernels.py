"""Kernels for the benchmarks: importable by worker processes when scripts/ is on PYTHONPATH."""

import numpy as np


def zeros(x, y):
    """A trivial kernel: all the time a job takes is jobrunner's own."""
    return np.zeros((x.shape[0], y.shape[1]))
