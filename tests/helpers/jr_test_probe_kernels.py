"""Kernels that plan's probe must refuse, and one well-behaved kernel with parameters."""

import numpy as np


def raises(x, y):
    raise RuntimeError("bad parameters")


def wrong_shape(x, y):
    return np.zeros((x.shape[0] + 1, y.shape[1]))


def integers(x, y):
    return np.zeros((x.shape[0], y.shape[1]), dtype=int)


def not_an_array(x, y):
    return [[0.0] * y.shape[1]] * x.shape[0]


def plane(x, y, slope=1.0, label=""):
    return slope * x + y
